import CartritaEnvelope
import XCTest

final class TextTests: XCTestCase {
    func testISO8601KnownInstants() {
        let cases: [(Int64, String)] = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_001, "1969-12-30T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_234_567_890_123, "2009-02-13T23:31:30.123Z"),
            (1_645_557_742_000, "2022-02-22T19:22:22.000Z"),
            (1_764_000_000_000, "2025-11-24T16:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            ((1 << 48) - 1, "10889-08-02T05:31:50.655Z"),
            (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        ]
        for (milliseconds, text) in cases {
            XCTAssertEqual(ISO8601Milliseconds.format(milliseconds), text, "\(milliseconds)")
        }
    }

    func testHex() {
        XCTAssertEqual(Hex.encode([0x00, 0x0f, 0xa0, 0xff]), "000fa0ff")
        XCTAssertEqual(Hex.decode("000FA0ff"), [0x00, 0x0f, 0xa0, 0xff])
        XCTAssertEqual(Hex.decode(""), [])
        XCTAssertNil(Hex.decode("abc"))
        XCTAssertNil(Hex.decode("zz"))
    }

    func testJSONStringEscapes() {
        XCTAssertEqual(JSON.string("plain").rendered(), #""plain""#)
        XCTAssertEqual(JSON.string("say \"hi\"").rendered(), #""say \"hi\"""#)
        XCTAssertEqual(JSON.string("back\\slash").rendered(), #""back\\slash""#)
        XCTAssertEqual(JSON.string("a\nb\rc\td").rendered(), #""a\nb\rc\td""#)
        XCTAssertEqual(JSON.string("\u{0}\u{1}\u{8}\u{c}\u{1f}").rendered(), #""\u0000\u0001\u0008\u000c\u001f""#)
        XCTAssertEqual(JSON.string("\u{7f}é中🎉/").rendered(), "\"\u{7f}é中🎉/\"")
        XCTAssertEqual(JSON.object([("k\"", .string("v\n"))]).rendered(), #"{"k\"":"v\n"}"#)
        // Escapes between multi-byte characters: the runs around them are copied whole.
        XCTAssertEqual(JSON.string("é\"中\n🎉\u{1}x").rendered(), "\"é\\\"中\\n🎉\\u0001x\"")
        XCTAssertEqual(JSON.string("").rendered(), #""""#)
    }

    func testJSONNumbersAndContainers() {
        XCTAssertEqual(JSON.double(1.0).rendered(), "1")
        XCTAssertEqual(JSON.double(-0.0).rendered(), "0")
        XCTAssertEqual(JSON.double(0.5).rendered(), "0.5")
        XCTAssertEqual(JSON.double(.nan).rendered(), "null")
        XCTAssertEqual(JSON.double(-.infinity).rendered(), "null")
        XCTAssertEqual(JSON.double(1e20).rendered(), "1e+20")
        XCTAssertEqual(JSON.int(.min).rendered(), "-9223372036854775808")
        XCTAssertEqual(JSON.uint(.max).rendered(), "18446744073709551615")
        XCTAssertEqual(JSON.array([.null, .bool(true), .bool(false), .array([]), .object([])]).rendered(), "[null,true,false,[],{}]")
        XCTAssertEqual(JSON.object([("b", .int(1)), ("a", .int(2))]).rendered(), #"{"b":1,"a":2}"#, "key order is kept")
        XCTAssertEqual(JSON.object([("b", .int(1))]), JSON.object([("b", .int(1))]))
        XCTAssertNotEqual(JSON.object([("b", .int(1)), ("a", .int(2))]), JSON.object([("a", .int(2)), ("b", .int(1))]))
    }

    func testMCPValueJSON() {
        let value: MCPValue = .map([
            .init("bin", .binary([0xde, 0xad])), .init("f", .float(0.5)), .init("big", .uint(UInt64.max)),
            .init("list", [1, "x", nil, true]),
        ])
        XCTAssertEqual(
            value.json.rendered(), #"{"bin":{"$binary":"dead"},"f":0.5,"big":18446744073709551615,"list":[1,"x",null,true]}"#)
        XCTAssertEqual(value["f"], .float(0.5))
        XCTAssertNil(value["missing"])
        XCTAssertEqual(value.depth, 2)
        XCTAssertEqual(MCPValue.int(1).depth, 0)
    }

    func testEnvelopeJSON() {
        let id = MessageID(string: "017f22e2-79b0-7cc3-98c4-dc0c0c07398f")!
        let correlation = MessageID(string: "017f22e2-79b0-7cc3-98c4-dc0c0c073990")!
        var envelope = Envelope(
            id: id, parentID: correlation, correlationID: correlation, sender: .orchestrator,
            recipient: Address("agent.visionmaster@v1.3"), timestampMilliseconds: 1_645_557_742_000, ttlMilliseconds: 5000,
            priority: .high,
            context: MessageContext(
                traceID: TraceID(hex: "0af7651916cd43dd8448eb211c80319c")!, spanID: SpanID(hex: "b7ad6b7169203331")!,
                userID: "u\"1", customAttributes: [StringPair("tenant", "acme")]),
            payload: .taskRequest(
                TaskRequest(
                    task: TaskSpec(type: "vision.classify", parameters: [.init("top_k", 3)]),
                    input: TaskInput(files: [FileInput(name: "a.png", contentType: "image/png", sizeBytes: 2, source: .inline([1, 255]))]))),
            deliveryMode: .exactlyOnce, retryCount: 1, maxRetries: 2)
        XCTAssertNoThrow(try envelope.validate())
        XCTAssertEqual(
            envelope.json.rendered(),
            #"{"id":"017f22e2-79b0-7cc3-98c4-dc0c0c07398f","parent_id":"017f22e2-79b0-7cc3-98c4-dc0c0c073990","#
                + #""correlation_id":"017f22e2-79b0-7cc3-98c4-dc0c0c073990","sender":"orchestrator@v1.0","#
                + #""recipient":"agent.visionmaster@v1.3","broadcast":false,"timestamp":"2022-02-22T19:22:22.000Z","#
                + #""timestamp_ms":1645557742000,"ttl_ms":5000,"priority":"high","#
                + #""context":{"trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","user_id":"u\"1","#
                + #""custom_attributes":{"tenant":"acme"}},"type":"task_request","#
                + #""payload":{"task":{"type":"vision.classify","parameters":{"top_k":3}},"#
                + #""input":{"files":[{"name":"a.png","content_type":"image/png","size_bytes":2,"inline_data":"01ff"}]}},"#
                + #""delivery_mode":"exactly_once","retry_count":1,"max_retries":2}"#)
        envelope.payload = .streamEnd(StreamEnd(streamID: id, count: 2, digest: [UInt8](repeating: 0xab, count: 32)))
        XCTAssertEqual(
            envelope.payload.json.rendered(),
            #"{"stream_id":"017f22e2-79b0-7cc3-98c4-dc0c0c07398f","count":2,"digest":""# + String(repeating: "ab", count: 32) + #""}"#)
        envelope.payload = .taskProgress(TaskProgress(fraction: 0.25, message: "tab\there"))
        XCTAssertEqual(envelope.payload.json.rendered(), #"{"fraction":0.25,"message":"tab\there"}"#)
    }

    func testPriorityOrder() {
        XCTAssertEqual(Priority.allCases.sorted(), [.low, .normal, .high, .critical])
        XCTAssertTrue(Priority.critical > Priority.high)
    }
}
