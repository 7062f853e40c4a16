import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import CartritaLog
import Foundation
import XCTest

/// `verify()` and `cartrita log verify` against logs damaged behind the log's back, through raw
/// LMDB on the closed folder.
final class VerifyTamperTests: XCTestCase {
    static let count = 120

    /// A closed log of `count` records, and its envelopes.
    func makeLog(_ directory: TemporaryDirectory) async throws -> [Envelope] {
        let envelopes = sampleEnvelopes(seed: 101, count: Self.count, payloadBytes: 96)
        let log = try EventLog(path: directory.path)
        do {
            let got = try await appendAll(log, envelopes)
            XCTAssertEqual(got, Array(1...UInt64(Self.count)))
        }
        try await log.flush()
        try assertVerifies(log, records: Self.count)
        log.close()
        return envelopes
    }

    func verifyReadOnly(_ path: String) throws -> VerifyReport {
        let log = try EventLog(path: path, configuration: config(readOnly: true))
        defer { log.close() }
        return try log.verify()
    }

    func describe(_ report: VerifyReport) -> String {
        report.firstProblem.map { "\($0)" } ?? "passed"
    }

    func testFlippedByteInARecordIsNamed() async throws {
        // Several records and several byte positions past the header, one tampering at a time.
        let directory = TemporaryDirectory("tamper-byte")
        _ = try await self.makeLog(directory)
        let original = try withRawLog(directory.path) { txn, open in try XCTUnwrap(try txn.getBytes(try open("log"), key: bigEndianBytes(37))) }
        var random = SplitMix64(seed: 102)
        for (k, offsetFromEnd) in [(UInt64(37), 1), (37, 5), (37, 40), (1, 1), (60, 20), (37, Int.min)] {
            var restore: [UInt8] = []
            try withRawLog(directory.path) { txn, open in
                let log = try open("log")
                var bytes = try XCTUnwrap(try txn.getBytes(log, key: bigEndianBytes(k)))
                restore = bytes
                // Int.min: a random position anywhere in the record (header included).
                let position = offsetFromEnd == Int.min ? Int(random.next64() % UInt64(bytes.count)) : bytes.count - offsetFromEnd
                bytes[position] ^= 0x01
                try txn.put(log, key: bigEndianBytes(k), value: bytes)
            }
            let report = try self.verifyReadOnly(directory.path)
            XCTAssertFalse(report.passed, "record \(k) changed at \(offsetFromEnd) from the end")
            let problem = try XCTUnwrap(report.firstProblem)
            XCTAssertTrue([.hashMismatch, .undecodable, .seqMismatch, .backPointer, .idIndex].contains(problem.kind), "\(problem)")
            if offsetFromEnd != Int.min {
                // A flip in the envelope part: the record itself is named.
                XCTAssertTrue([.hashMismatch, .undecodable].contains(problem.kind), "\(problem)")
                XCTAssertEqual(problem.seq, k, "the tampered record is named: \(problem)")
            } else {
                // Anywhere: the tampered record, or (a flip inside its own prev_hash) the link before it.
                XCTAssertTrue(problem.seq == k || problem.seq == k - 1, "\(problem)")
            }
            try withRawLog(directory.path) { txn, open in try txn.put(try open("log"), key: bigEndianBytes(k), value: restore) }
            XCTAssertTrue(try self.verifyReadOnly(directory.path).passed, "restored")
        }
        XCTAssertEqual(
            try withRawLog(directory.path) { txn, open in try txn.getBytes(try open("log"), key: bigEndianBytes(37)) }, original)
    }

    func testTamperingKindsAndTheCLI() async throws {
        let last = UInt64(Self.count)

        // The last record: no later record chains to it, the head hash does.
        do {
            let directory = TemporaryDirectory("tamper-last")
            _ = try await self.makeLog(directory)
            try withRawLog(directory.path) { txn, open in
                let log = try open("log")
                var bytes = try XCTUnwrap(try txn.getBytes(log, key: bigEndianBytes(last)))
                bytes[bytes.count - 1] ^= 0x01
                try txn.put(log, key: bigEndianBytes(last), value: bytes)
            }
            let report = try self.verifyReadOnly(directory.path)
            XCTAssertTrue(report.firstProblem?.kind == .hashMismatch || report.firstProblem?.kind == .undecodable, self.describe(report))
            XCTAssertEqual(report.firstProblem?.seq, last, self.describe(report))
            try self.assertCLIFails(directory.path, seq: last)
        }

        // A deleted middle record.
        do {
            let directory = TemporaryDirectory("tamper-gap")
            _ = try await self.makeLog(directory)
            try withRawLog(directory.path) { txn, open in XCTAssertTrue(try txn.delete(try open("log"), key: bigEndianBytes(50))) }
            let report = try self.verifyReadOnly(directory.path)
            XCTAssertEqual(report.firstProblem?.kind, .gap, self.describe(report))
            XCTAssertEqual(report.firstProblem?.seq, 50, self.describe(report))
            try self.assertCLIFails(directory.path, seq: 50)
            // A writer opened on it does not paper over the gap.
            let log = try EventLog(path: directory.path)
            XCTAssertFalse(try log.verify().passed)
            log.close()
        }

        // A wrong id index entry (points at another record), and an extra one.
        do {
            let directory = TemporaryDirectory("tamper-id")
            let envelopes = try await self.makeLog(directory)
            try withRawLog(directory.path) { txn, open in
                try txn.put(try open("ids"), key: envelopes[29].id.bytes, value: bigEndianBytes(31))
            }
            var report = try self.verifyReadOnly(directory.path)
            XCTAssertEqual(report.firstProblem?.kind, .idIndex, self.describe(report))
            XCTAssertEqual(report.firstProblem?.seq, 30, self.describe(report))
            try self.assertCLIFails(directory.path, seq: 30)

            try withRawLog(directory.path) { txn, open in
                let ids = try open("ids")
                try txn.put(ids, key: envelopes[29].id.bytes, value: bigEndianBytes(30))
                try txn.put(ids, key: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0042).bytes, value: bigEndianBytes(5))
            }
            report = try self.verifyReadOnly(directory.path)
            XCTAssertEqual(report.firstProblem?.kind, .idIndex, "an id the log does not hold: \(self.describe(report))")
        }

        // A record whose own seq disagrees with its key, a wrong head, a missing head hash.
        do {
            let directory = TemporaryDirectory("tamper-misc")
            let envelopes = try await self.makeLog(directory)
            let recipient = envelopes[9].recipient.rawValue
            try withRawLog(directory.path) { txn, open in
                try txn.put(try open("heads"), key: Array(recipient.utf8), value: bigEndianBytes(3))
            }
            var report = try self.verifyReadOnly(directory.path)
            XCTAssertEqual(report.firstProblem?.kind, .heads, self.describe(report))

            try withRawLog(directory.path) { txn, open in
                let heads = try open("heads")
                let lastOfRecipient = UInt64(envelopes.lastIndex { $0.recipient.rawValue == recipient }! + 1)
                try txn.put(heads, key: Array(recipient.utf8), value: bigEndianBytes(lastOfRecipient))
                XCTAssertTrue(try txn.delete(try open("meta"), key: Array("head.hash".utf8)))
            }
            report = try self.verifyReadOnly(directory.path)
            XCTAssertEqual(report.firstProblem?.kind, .hashMismatch, "missing head hash: \(self.describe(report))")
            XCTAssertEqual(report.firstProblem?.seq, last)
        }
    }

    /// `cartrita log verify` exits non-zero and names the record, in text and in JSON.
    func assertCLIFails(_ path: String, seq: UInt64, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try runCartrita(["log", "verify", "--data", path])
        XCTAssertNotEqual(text.status, 0, "exit status; stdout: \(text.stdout) stderr: \(text.stderr)", file: file, line: line)
        XCTAssertTrue(text.stdout.contains("first bad record \(seq) "), "names record \(seq): \(text.stdout)", file: file, line: line)
        let json = try runCartrita(["log", "verify", "--data", path, "--json"])
        XCTAssertNotEqual(json.status, 0, file: file, line: line)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["passed"] as? Bool, false, file: file, line: line)
        let bad = object?["first_bad_record"] as? [String: Any]
        XCTAssertEqual((bad?["seq"] as? NSNumber)?.uint64Value, seq, "JSON names record \(seq): \(json.stdout)", file: file, line: line)
    }

    func testCLIVerifyPassesOnAGoodLog() async throws {
        let directory = TemporaryDirectory("verify-cli")
        _ = try await self.makeLog(directory)
        let output = try runCartrita(["log", "verify", "--data", directory.path])
        XCTAssertEqual(output.status, 0, "\(output.stdout) \(output.stderr)")
        XCTAssertTrue(output.stdout.hasPrefix("OK: \(Self.count) records"), output.stdout)
        let stat = try runCartrita(["log", "stat", "--data", directory.path, "--json"])
        XCTAssertEqual(stat.status, 0, stat.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(stat.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((object?["records"] as? NSNumber)?.intValue, Self.count)
        XCTAssertEqual((object?["last_seq"] as? NSNumber)?.intValue, Self.count)
    }
}
