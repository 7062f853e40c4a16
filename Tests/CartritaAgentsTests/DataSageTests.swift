import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaAgents

final class DataSageTests: XCTestCase {
    let agent = DataSage()

    /// Quoted delimiter, escaped quotes, a line break inside quotes, CRLF, a padded field, a row
    /// one field short and a row with extra empty fields, and every column type.
    static let sample =
        "id,name,score,comment,flag,note\r\n"
        + "1,\"Smith, John\",10,\"said \"\"hi\"\"\",true,\r\n"
        + "2, Alice ,20,,false,\r\n"
        + "3,Bob,,\"multi\nline\",TRUE,\r\n"
        + "4,Alice,30.5,plain,,,\r\n"
        + "5,\"Bob\",-4,plain,false\r\n"

    /// Every figure worked out by hand:
    /// - id 1…5: sum 15, mean 3, median 3, population variance (4+1+0+1+4)/5 = 2.
    /// - score 10, 20, 30.5, −4 (one missing): sum 56.5, mean 14.125, median (10+20)/2 = 15;
    ///   deviations −4.125, 5.875, 16.375, −18.125 square to 17.015625 + 34.515625 + 268.140625
    ///   + 328.515625 = 648.1875, variance 162.046875.
    /// - name: Alice 2 and Bob 2 tie (Alice first by bytes), then "Smith, John" (11 characters).
    /// - comment: plain 2, then the ties at 1 by bytes: "multi\nline" (10) before "said \"hi\"" (9).
    /// - flag: true, false, TRUE, false, and one missing. note: nothing but empty fields.
    static let expected: MCPValue = .map([
        "rows": 5,
        "column_count": 6,
        "header": true,
        "delimiter": ",",
        "ragged_rows": 2,
        "columns": [
            .map([
                "name": "id", "type": "integer", "count": 5, "missing": 0, "distinct": 5,
                "min": 1, "max": 5, "sum": 15, "mean": 3.0, "median": 3.0,
                "stddev": .double(Double(2).squareRoot()), "stddev_kind": "population",
            ]),
            .map([
                "name": "name", "type": "text", "count": 5, "missing": 0, "distinct": 3,
                "top": [.map(["value": "Alice", "count": 2]), .map(["value": "Bob", "count": 2]), .map(["value": "Smith, John", "count": 1])],
                "min_length": 3, "max_length": 11,
            ]),
            .map([
                "name": "score", "type": "number", "count": 4, "missing": 1, "distinct": 4,
                "min": -4.0, "max": 30.5, "sum": 56.5, "mean": 14.125, "median": 15.0,
                "stddev": .double(Double(162.046875).squareRoot()), "stddev_kind": "population",
            ]),
            .map([
                "name": "comment", "type": "text", "count": 4, "missing": 1, "distinct": 3,
                "top": [.map(["value": "plain", "count": 2]), .map(["value": "multi\nline", "count": 1]), .map(["value": "said \"hi\"", "count": 1])],
                "min_length": 5, "max_length": 10,
            ]),
            .map(["name": "flag", "type": "boolean", "count": 4, "missing": 1, "distinct": 2, "true_count": 2, "false_count": 2]),
            .map(["name": "note", "type": "empty", "count": 0, "missing": 5, "distinct": 0]),
        ],
    ])

    func testProfilesEveryColumnExactly() {
        let outcome = deliver(self.agent, request("data.csv-stats", data: .string(Self.sample)))
        XCTAssertEqual(outcome.result, Self.expected)
        guard case .completed(_, let metrics) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(metrics, TaskMetrics(processingTimeMilliseconds: 0, costUSD: 0, tokensUsed: 0, qualityScore: 1))
    }

    func testDataAnalyzeDoesTheSameWork() {
        XCTAssertEqual(deliver(self.agent, request("data.analyze", data: .string(Self.sample))).result, Self.expected)
    }

    func testSameInputGivesTheSameOutcome() {
        let first = deliver(self.agent, request("data.csv-stats", data: .string(Self.sample)))
        let second = deliver(self.agent, request("data.csv-stats", data: .string(Self.sample)))
        XCTAssertEqual(first, second)
    }

    func testInlineFileWithByteOrderMarkAndCharset() {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(Self.sample.utf8)
        let file = inlineFile(bytes, contentType: "Text/CSV; charset=utf-8")
        XCTAssertEqual(deliver(self.agent, request("data.csv-stats", files: [file])).result, Self.expected)
    }

    func testDelimiterAndNoHeader() {
        let outcome = deliver(self.agent, request("data.csv-stats", ["delimiter": ";", "header": false], data: "1;x\n2;y\n3;x"))
        let result = outcome.result
        XCTAssertEqual(int(value(result, "rows")), 3)
        XCTAssertEqual(string(value(result, "columns", 0, "name")), "column_1")
        XCTAssertEqual(string(value(result, "columns", 1, "name")), "column_2")
        XCTAssertEqual(value(result, "columns", 0, "sum"), 6)
        XCTAssertEqual(value(result, "columns", 1, "top", 0), .map(["value": "x", "count": 2]))
        // Tab works too; a quoted field keeps its spaces, an unquoted one is trimmed.
        let tabbed = deliver(self.agent, request("data.csv-stats", ["delimiter": "\t"], data: "a\tb\n\" x \"\t y \n"))
        XCTAssertEqual(value(tabbed.result, "columns", 0, "top", 0, "value"), " x ")
        XCTAssertEqual(value(tabbed.result, "columns", 1, "top", 0, "value"), "y")
    }

    func testEdgeCasesOfTheFormat() {
        // LF only, no final newline, blank lines skipped, lone CR, empty header names.
        let outcome = deliver(self.agent, request("data.csv-stats", data: "a,\n\n1,2\r3,4\n\n"))
        XCTAssertEqual(int(value(outcome.result, "rows")), 2)
        XCTAssertEqual(string(value(outcome.result, "columns", 1, "name")), "column_2")
        XCTAssertEqual(value(outcome.result, "columns", 1, "mean"), 3.0)
        // `""` in a one-column file is a (missing) value, not a blank line.
        let single = deliver(self.agent, request("data.csv-stats", data: "a\n1\n\"\"\n3"))
        XCTAssertEqual(int(value(single.result, "rows")), 3)
        XCTAssertEqual(int(value(single.result, "columns", 0, "missing")), 1)
        // An integer too large for Int64 makes the column "number"; 1e3 and .5 are numbers.
        let wide = deliver(self.agent, request("data.csv-stats", data: "n\n99999999999999999999\n1e3\n.5"))
        XCTAssertEqual(string(value(wide.result, "columns", 0, "type")), "number")
        XCTAssertEqual(value(wide.result, "columns", 0, "min"), 0.5)
        // Distinct numeric values: 1, 1.0 and 01 are one value; a lone value has stddev 0.
        let same = deliver(self.agent, request("data.csv-stats", data: "n\n1\n1.0\n01"))
        XCTAssertEqual(int(value(same.result, "columns", 0, "distinct")), 1)
        XCTAssertEqual(value(same.result, "columns", 0, "stddev"), 0.0)
        // An integer sum past Int64 is reported as a double; integers that share a double
        // (2^53 and 2^53 + 1) are still two distinct values.
        let big = deliver(self.agent, request("data.csv-stats", data: "n\n9223372036854775807\n1\n9007199254740992\n9007199254740993")).result
        XCTAssertEqual(string(value(big, "columns", 0, "type")), "integer")
        XCTAssertEqual(value(big, "columns", 0, "max"), .int(.max))
        XCTAssertEqual(value(big, "columns", 0, "min"), 1)
        XCTAssertEqual(int(value(big, "columns", 0, "distinct")), 4)
        guard case .double(let sum) = value(big, "columns", 0, "sum") else { return XCTFail("sum should be a double") }
        XCTAssertEqual(sum, 9223372036854775807.0 + 1 + 9007199254740992.0 * 2, accuracy: 4096)
    }

    func testDecimalGrammar() {
        let accepted: [(String, Double)] = [("1e3", 1000), (".5", 0.5), ("5.", 5), ("+1.5", 1.5), ("-0", 0), ("1E+2", 100), ("2.5e-1", 0.25)]
        for (text, number) in accepted { XCTAssertEqual(ColumnProfile.decimal(text), number, text) }
        for text in ["nan", "inf", "0x10", "1e", "e5", "1.2.3", "--1", "1-", ".", "+", "1e999", "1 2", "١٢"] {
            XCTAssertNil(ColumnProfile.decimal(text), text)
        }
    }

    func testTextValuesAreComparedByTheirBytes() {
        // "é" precomposed and decomposed are two different values in the file.
        let outcome = deliver(self.agent, request("data.csv-stats", data: "w\n\u{E9}\ne\u{301}\n\u{E9}"))
        XCTAssertEqual(int(value(outcome.result, "columns", 0, "distinct")), 2)
        XCTAssertEqual(value(outcome.result, "columns", 0, "top", 0), .map(["value": "\u{E9}", "count": 2]))
        XCTAssertEqual(int(value(outcome.result, "columns", 0, "max_length")), 1)
    }

    /// `top` (a selection pass) agrees with a full sort by (count descending, bytes), on seeded
    /// random columns full of ties.
    func testTopMatchesAFullSort() {
        var rng = SplitMix64(seed: 99)
        let pool = ["b", "a", "ab", "é", "e\u{301}", "Z", "zz", "日本", "a a", "B"]
        for _ in 0..<50 {
            let values = (0..<Int(1 + rng.next64() % 40)).map { _ in pool[Int(rng.next64() % UInt64(pool.count))] }
            let csv = "w\n" + values.map { "\"\($0)\"" }.joined(separator: "\n")
            var counts: [(String, Int64)] = []
            for text in values {
                if let index = counts.firstIndex(where: { $0.0.utf8.elementsEqual(text.utf8) }) { counts[index].1 += 1 } else { counts.append((text, 1)) }
            }
            counts.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            let expected: MCPValue = .array(counts.prefix(3).map { .map(["value": .string($0.0), "count": .int($0.1)]) })
            let result = deliver(self.agent, request("data.csv-stats", data: .string(csv))).result
            XCTAssertEqual(value(result, "columns", 0, "top"), expected, "\(values)")
        }
    }

    func testLongValuesAreClipped() {
        let long = String(repeating: "ab", count: 100)
        let outcome = deliver(self.agent, request("data.csv-stats", data: .string("c\n\(long)")))
        let top = value(outcome.result, "columns", 0, "top", 0)
        XCTAssertEqual(string(value(top, "value")), String(long.prefix(DataSage.maxReportedBytes)))
        XCTAssertEqual(value(top, "truncated"), true)
        XCTAssertEqual(int(value(outcome.result, "columns", 0, "max_length")), 200)
    }

    func testBadInputIsInvalidInput() {
        let cases: [(TaskRequest, String)] = [
            (request("data.csv-stats", data: ""), "no records"),
            (request("data.csv-stats", data: "\n\n"), "no records"),
            (request("data.csv-stats", data: "a,b\n"), "no data rows"),
            (request("data.csv-stats", data: "a,b\n1,2,3\n"), "line 2 has 3 fields"),
            (request("data.csv-stats", data: "a,b\n\"1,2\n3,4\n"), "unterminated quoted field starting on line 2"),
            (request("data.csv-stats", data: "a,b\n\"1\"x,2\n"), "after a closing quote on line 2"),
            (request("data.csv-stats", ["delimiter": "ab"], data: "a"), "delimiter"),
            (request("data.csv-stats", ["delimiter": "\""], data: "a"), "delimiter"),
            (request("data.csv-stats", ["delimiter": "é"], data: "a"), "delimiter"),
            (request("data.csv-stats", ["header": "yes"], data: "a"), "header"),
            (request("data.csv-stats", ["sep": ","], data: "a"), "unknown parameter \"sep\""),
            (request("data.csv-stats", data: 42), "must be a string"),
            (request("data.csv-stats"), "no input"),
            (request("data.csv-stats", data: "a", files: [inlineFile([0x61])]), "not both"),
            (request("data.csv-stats", files: [inlineFile([0x61, 0xFF, 0x0A, 0x31])]), "not valid UTF-8"),
            (request("data.csv-stats", files: [inlineFile([0x61], contentType: "image/png")]), "content type"),
            (request("data.csv-stats", files: [inlineFile([0x61]), inlineFile([0x61])]), "exactly one file"),
        ]
        for (request, fragment) in cases {
            assertFailed(deliver(self.agent, request), "invalid_input", fragment)
        }
    }

    /// A file by URL is not read by the agent: it asks the runtime's `files` service, then
    /// resumes with the bytes (or fails with the service's error).
    func testAFileByURLIsFetchedThroughTheFilesServiceThenProfiled() throws {
        let byURL = request("data.csv-stats", files: [FileInput(name: "x.csv", contentType: "text/csv", sizeBytes: 1, source: .url("file:///data/x.csv"))])
        var state = EmptyState()
        let context = DeliveryContext(seq: 1, clockMilliseconds: 0, entropy: 1)
        guard case .call(let call) = self.agent.handle(byURL, state: &state, context: context) else { return XCTFail("expected an I/O call") }
        XCTAssertEqual(call.service, "files")
        XCTAssertEqual(call.operation, "read")
        XCTAssertEqual(call.arguments["url"], .string("file:///data/x.csv"))
        let content = MCPValue.map([MCPValue.MapEntry("content", .binary(Array("a,b\n1,2\n3,4\n".utf8)))])
        let done = self.agent.resume(byURL, continuation: call.continuation, result: .success(content), state: &state, context: context)
        XCTAssertEqual(int(value(done.result, "rows")), 2)
        let failed = self.agent.resume(
            byURL, continuation: .null, result: .failure(TaskError(code: .ioError, message: "no such file", retryable: false)), state: &state,
            context: context)
        assertFailed(failed, "io_error", "no such file")
    }

    func testLimits() {
        let wide = (1...1_001).map { "c\($0)" }.joined(separator: ",")
        assertFailed(deliver(self.agent, request("data.csv-stats", data: .string(wide + "\n" + wide))), "invalid_input", "more than 1000 fields")
        let tall = "n\n" + String(repeating: "1\n", count: DataSage.maxRows + 1)
        assertFailed(deliver(self.agent, request("data.csv-stats", data: .string(tall))), "invalid_input", "more than 100000 data rows")
        let exactlyTall = "n\n" + String(repeating: "1\n", count: DataSage.maxRows)
        XCTAssertEqual(int(value(deliver(self.agent, request("data.csv-stats", data: .string(exactlyTall))).result, "rows")), 100_000)
        let huge = String(repeating: "a", count: DataSage.maxInputBytes + 1)
        assertFailed(deliver(self.agent, request("data.csv-stats", data: .string(huge))), "invalid_input", "larger than 16 MiB")
    }

    /// 1,000 columns (the maximum) with long names and values: the reply still validates
    /// (`run` checks it) and stays within the entry limit.
    func testWidestTableGivesAValidReply() {
        let header = (1...DataSage.maxColumns).map { "column name \($0) " + String(repeating: "n", count: 200) }.joined(separator: ",")
        let row = (1...DataSage.maxColumns).map { "value \($0) " + String(repeating: "v", count: 200) }.joined(separator: ",")
        let outcome = deliver(self.agent, request("data.csv-stats", data: .string(header + "\n" + row + "\n" + row)))
        guard case .array(let columns) = value(outcome.result, "columns") else { return XCTFail("\(outcome)") }
        XCTAssertEqual(columns.count, DataSage.maxColumns)
        XCTAssertLessThan(msgpackUpperBound(outcome.result!), 1 << 20)
    }

    func testUnknownTaskType() {
        assertFailed(deliver(self.agent, request("data.pivot", data: "a")), "unknown_task_type", "data.csv-stats")
    }

    func testStatelessSnapshot() throws {
        XCTAssertEqual(self.agent.encodeState(EmptyState()), [])
        XCTAssertThrowsError(try self.agent.decodeState([1]))
    }

    /// A typed column's values are tallied as text only once it turns out to be text; the
    /// statistics equal those of tallying every value as it comes, on random columns that turn
    /// text early, late or never, with non-ASCII spellings and CRLF inside values.
    func testDeferredTextStatisticsEqualEagerOnes() {
        let pieces = ["1", "2", "-3", "2.5", "1e5", "true", "FALSE", "", "x", "r0", "é", "e\u{301}", "a\r\nb", "ab\r", "日本", "007"]
        var random = SplitMix64(seed: 99)
        for round in 0..<3_000 {
            let values = (0..<(1 + Int(random.next64() % 12))).map { _ in pieces[Int(random.next64() % UInt64(pieces.count))] }
            var deferred = ColumnProfile()
            for value in values { deferred.add(value) }
            var eager = ColumnProfile()
            for value in values {
                guard !value.isEmpty else {
                    eager.missing += 1
                    continue
                }
                eager.count += 1
                eager.addToTypes(value)
                eager.frequencies[ExactText(text: value), default: 0] += 1
                eager.minLength = min(eager.minLength, value.count)
                eager.maxLength = max(eager.maxLength, value.count)
            }
            XCTAssertEqual(deferred.result(name: "c"), eager.result(name: "c"), "round \(round): \(values)")
        }
        for value in pieces { XCTAssertEqual(ColumnProfile.characterCount(value), value.count, value.debugDescription) }
    }

    /// The shortcuts of `addToTypes` agree with what they replace: `boolean` with comparing
    /// `lowercased()` to "true" and "false", and an integer's double with `decimal`'s strtod
    /// (including -0, the extremes of Int64 and integers past 2^53, where both must round).
    func testTypeShortcutsAgreeWithTheTextForms() {
        let words = [
            "true", "TRUE", "True", "tRuE", "false", "FALSE", "False", "fAlSe", "truE ", " true", "tru", "falsee", "ture", "t\u{212A}ue",
            "\u{212A}", "truë", "fals\u{E9}", "1", "", "yes", "TRUE\u{301}", "FALSE!",
        ]
        for word in words {
            let expected: Bool? = switch word.lowercased() {
            case "true": true
            case "false": false
            default: nil
            }
            XCTAssertEqual(ColumnProfile.boolean(word), expected, word.debugDescription)
        }
        var random = SplitMix64(seed: 5)
        var integers = ["0", "-0", "+0", "-00", "007", "+12", "-12", "9223372036854775807", "-9223372036854775808", "9007199254740993"]
        for _ in 0..<2_000 {
            let magnitude = random.next64() >> (random.next64() % 64)
            integers.append((random.next64() % 2 == 0 ? "-" : "") + String(magnitude % UInt64(Int64.max)))
        }
        for text in integers {
            guard let integer = Int64(text) else { return XCTFail("\(text) should parse") }
            var column = ColumnProfile()
            column.addToTypes(text)
            XCTAssertEqual(column.numbers.first?.bitPattern, ColumnProfile.decimal(text)?.bitPattern, "\(text) (\(integer))")
        }
    }
}
