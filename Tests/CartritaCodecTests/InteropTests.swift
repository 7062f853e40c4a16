import CartritaCodec
import CartritaEnvelope
import XCTest

/// The encoder's bytes read by an independent msgpack reader, and hand-made bytes (other key
/// orders, explicit nils, non-minimal forms) read by the decoder.
final class InteropTests: XCTestCase {
    static let envelopeKeys = [
        "id", "parent_id", "correlation_id", "sender", "recipient", "broadcast", "timestamp", "ttl_ms", "priority", "context", "type",
        "payload", "delivery_mode", "retry_count", "max_retries",
    ]

    func testTopLevelIsAMapOfTheSpecsFieldsWithTheirTypes() throws {
        let envelope = sampleEnvelope()
        let (tree, minimal) = try MiniReader.read(try EnvelopeEncoder().encode(envelope))
        XCTAssertTrue(minimal, "integers and lengths in their shortest form")
        XCTAssertEqual(tree.mapKeys, Self.envelopeKeys)
        func type(_ key: String) -> String? { tree[key]?.typeName }
        for key in ["id", "parent_id", "correlation_id"] {
            guard case .bin(let bytes)? = tree[key] else { return XCTFail("\(key) is not bin: \(String(describing: tree[key]))") }
            XCTAssertEqual(bytes.count, 16, key)
        }
        XCTAssertEqual(tree["id"], .bin(envelope.id.bytes))
        for key in ["sender", "recipient", "priority", "type", "delivery_mode"] { XCTAssertEqual(type(key), "str", key) }
        XCTAssertEqual(tree["priority"], .s("high"))
        XCTAssertEqual(tree["type"], .s("task_request"))
        XCTAssertEqual(tree["delivery_mode"], .s("exactly_once"))
        XCTAssertEqual(tree["sender"], .s("orchestrator@v1.0"))
        XCTAssertEqual(tree["broadcast"], .bool(true))
        XCTAssertEqual(tree["timestamp"], .uint(1_764_000_000_000))
        XCTAssertEqual(tree["ttl_ms"], .uint(30_000))
        XCTAssertEqual(tree["retry_count"], .uint(0))
        XCTAssertEqual(tree["max_retries"], .uint(2))
        let context = try XCTUnwrap(tree["context"])
        XCTAssertEqual(context.mapKeys, ["trace_id", "span_id", "user_id", "custom_attributes"])
        XCTAssertEqual(context["trace_id"], .bin(Hex.decode("0af7651916cd43dd8448eb211c80319c")!))
        XCTAssertEqual(context["span_id"], .bin(Hex.decode("b7ad6b7169203331")!))
        XCTAssertEqual(context["custom_attributes"], .object([("tenant", .s("acme"))]))
        let payload = try XCTUnwrap(tree["payload"])
        XCTAssertEqual(payload.mapKeys, ["task", "input", "preferences"])
        XCTAssertEqual(payload["task"]?["type"], .s("llm.chat"))
        XCTAssertEqual(payload["task"]?["parameters"]?["options"]?["temperature"], .double(0.2))
        XCTAssertEqual(payload["task"]?["constraints"], .object([("max_execution_time_ms", .uint(5000))]))
        XCTAssertEqual(
            payload["input"]?["files"],
            .array([.object([("name", .s("a.txt")), ("content_type", .s("text/plain")), ("size_bytes", .uint(2)), ("inline_data", .bin([0x68, 0x69]))])]))
        XCTAssertEqual(payload["preferences"]?["quality_level"], .s("fast"))
        // The whole tree, field for field.
        XCTAssertEqual(tree, SpecTree.envelope(envelope))
        // No parent: the key is omitted, not nil.
        var orphan = envelope
        orphan.parentID = nil
        let (orphanTree, _) = try MiniReader.read(try EnvelopeEncoder().encode(orphan))
        XCTAssertEqual(orphanTree.mapKeys, Self.envelopeKeys.filter { $0 != "parent_id" })
    }

    /// Every generated envelope, read independently, is exactly the spec layout.
    func testGeneratedEnvelopesMatchTheSpecLayout() throws {
        let encoder = EnvelopeEncoder()
        for seed: UInt64 in [101, 102] {
            var generator = EnvelopeGenerator(seed: seed)
            for index in 0..<1_000 {
                let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
                let bytes = try encoder.encode(envelope)
                let (tree, minimal) = try MiniReader.read(bytes)
                XCTAssertTrue(minimal, "seed \(seed) index \(index)")
                if tree != SpecTree.envelope(envelope) {
                    XCTFail("seed \(seed) index \(index):\n\(tree)\n\(SpecTree.envelope(envelope))")
                    return
                }
            }
        }
    }

    /// Hand-made bytes: keys in reverse order, absent optionals as explicit nil, and (every
    /// other time) integers, strings and containers in their widest forms.
    func testHandMadeBytesDecode() throws {
        let decoder = EnvelopeDecoder()
        for seed: UInt64 in [201, 202] {
            var generator = EnvelopeGenerator(seed: seed)
            for index in 0..<1_000 {
                let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
                let tree = SpecTree.envelope(envelope, SpecStyle(reverseKeys: true, explicitNils: true))
                let bytes = MiniWriter.encode(tree, wide: index % 2 == 1)
                do {
                    let decoded = try decoder.decode(bytes)
                    if decoded != envelope {
                        XCTFail("seed \(seed) index \(index): decoded differs\n\(envelope)\n\(decoded)")
                        return
                    }
                } catch {
                    XCTFail("seed \(seed) index \(index): \(error)\n\(tree)")
                    return
                }
            }
        }
    }

    func testExplicitNilForEveryOptionalTopLevelField() throws {
        var envelope = sampleEnvelope()
        envelope.parentID = nil
        envelope.broadcast = false
        envelope.retryCount = 0
        envelope.maxRetries = 0
        var tree = SpecTree.envelope(envelope)
        for key in ["parent_id", "broadcast", "retry_count", "max_retries"] { tree = tree.setting(key, .null) }
        XCTAssertEqual(try EnvelopeDecoder().decode(bytes(tree)), envelope)
        // And absent altogether.
        for key in ["parent_id", "broadcast", "retry_count", "max_retries"] { tree = tree.setting(key, nil) }
        XCTAssertEqual(try EnvelopeDecoder().decode(bytes(tree)), envelope)
    }

    /// In `input.data` and `result`, msgpack nil is the value null, while absence is no value.
    func testNilInFreeFormFieldsIsAValue() throws {
        let decoder = EnvelopeDecoder()
        let encoder = EnvelopeEncoder()
        for data: MCPValue? in [nil, .null, .int(1)] {
            var envelope = sampleEnvelope()
            if case .taskRequest(var request) = envelope.payload {
                request.input.data = data
                envelope.payload = .taskRequest(request)
            }
            XCTAssertEqual(try decoder.decode(try encoder.encode(envelope)), envelope, "data \(String(describing: data))")
            envelope.payload = .taskResponse(TaskResponse(status: .completed, result: data))
            XCTAssertEqual(try decoder.decode(try encoder.encode(envelope)), envelope, "result \(String(describing: data))")
        }
    }

    /// Floats where doubles are expected, integers where doubles are expected: accepted and
    /// widened (other encoders write 2.0 as 2).
    func testNumericLeniencyInDoubleFields() throws {
        var envelope = sampleEnvelope()
        envelope.payload = .taskProgress(TaskProgress(fraction: 0.5, message: "half"))
        var tree = SpecTree.envelope(envelope)
        tree = tree.setting("payload.fraction", .f32(Float(0.5).bitPattern))
        XCTAssertEqual(try EnvelopeDecoder().decode(bytes(tree)), envelope)
        envelope.payload = .taskProgress(TaskProgress(fraction: 1, message: "done"))
        tree = tree.setting("payload.fraction", .uint(1)).setting("payload.message", .s("done"))
        XCTAssertEqual(try EnvelopeDecoder().decode(bytes(tree)), envelope)
    }

    /// A record is readable by any msgpack reader as one map: header keys, then the envelope's.
    func testRecordLayout() throws {
        let envelope = sampleEnvelope()
        let header = RecordHeader(
            seq: 42, prevHash: Digest32([UInt8](repeating: 0xEE, count: 32))!, actorPrevSeq: 41, clockMilliseconds: -5, entropy: .max)
        let writer = MsgPackWriter()
        writer.writeRecord(header: header, envelope: try EnvelopeEncoder().encodeBody(envelope))
        let (tree, minimal) = try MiniReader.read(writer.bytes)
        XCTAssertTrue(minimal)
        XCTAssertEqual(tree.mapKeys, ["v", "seq", "prev_hash", "actor_prev_seq", "clock_ms", "entropy"] + Self.envelopeKeys)
        XCTAssertEqual(tree["v"], .uint(1))
        XCTAssertEqual(tree["seq"], .uint(42))
        XCTAssertEqual(tree["prev_hash"], .bin([UInt8](repeating: 0xEE, count: 32)))
        XCTAssertEqual(tree["clock_ms"], .int(-5))
        XCTAssertEqual(tree["entropy"], .uint(.max))
        XCTAssertEqual(tree, SpecTree.record(header, envelope))
        // Hand-made record in another key order decodes.
        guard case .map(let pairs) = tree else { return XCTFail() }
        let shuffled = MP.map(Array(pairs.reversed()))
        let record = try EnvelopeDecoder().decodeRecord(MiniWriter.encode(shuffled, wide: true))
        XCTAssertEqual(record.header, header)
        XCTAssertEqual(record.envelope, envelope)
        XCTAssertEqual(Digest32([UInt8](repeating: 0xEE, count: 32))!.description, String(repeating: "ee", count: 32))
        XCTAssertNil(Digest32([1, 2, 3]))
    }
}
