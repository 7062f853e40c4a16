import CartritaCodec
import CartritaEnvelope
import XCTest

/// Every kind of bad input gets its named code and the path of the field.
final class HardenedDecoderTests: XCTestCase {
    let tree = sampleTree()

    // MARK: Structure (Preflight)

    func testEmptyInput() {
        let error = assertDecodeError([], .truncated, at: "$")
        XCTAssertEqual(error?.offset, 0)
        assertDecodeError([], .truncated, at: "$", record: true)
        XCTAssertThrowsError(try EnvelopeDecoder().decode(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    func testEveryPrefixIsTruncated() throws {
        let decoder = EnvelopeDecoder()
        let full = try EnvelopeEncoder().encode(sampleEnvelope())
        for length in 0..<full.count {
            assertDecodeError(Array(full.prefix(length)), .truncated, decoder: decoder)
        }
        XCTAssertEqual(try decoder.decode(full), sampleEnvelope())
        // Records too, and generated envelopes of every type.
        let writer = MsgPackWriter()
        var generator = EnvelopeGenerator(seed: 555)
        generator.allowBig = false
        for index in 0..<MessageType.allCases.count * 3 {
            let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
            writer.reset()
            writer.writeRecord(header: generator.header(), envelope: try EnvelopeEncoder().encodeBody(envelope))
            let record = writer.bytes
            for length in 0..<record.count {
                assertDecodeError(Array(record.prefix(length)), .truncated, decoder: decoder, record: true)
            }
            let bytes = try EnvelopeEncoder().encode(envelope)
            for length in 0..<bytes.count {
                assertDecodeError(Array(bytes.prefix(length)), .truncated, decoder: decoder)
            }
        }
    }

    func testTrailingBytes() throws {
        let full = try EnvelopeEncoder().encode(sampleEnvelope())
        let error = assertDecodeError(full + [0xc0], .trailingBytes, at: "$")
        XCTAssertEqual(error?.offset, full.count)
        assertDecodeError(full + full, .trailingBytes, at: "$")
        assertDecodeError([0x80, 0x80], .trailingBytes, at: "$")
    }

    func testTopLevelNotAMap() {
        assertDecodeError([0x93, 1, 2, 3], .wrongType, at: "$")
        assertDecodeError([0xc0], .wrongType, at: "$")
        assertDecodeError([0x01], .wrongType, at: "$")
        assertDecodeError(bytes(.s("orchestrator@v1.0")), .wrongType, at: "$")
        assertDecodeError([0x93, 1, 2, 3], .wrongType, at: "$", record: true)
    }

    /// The emergency override: every action round-trips; an unknown action, a missing reason
    /// and an extra key are refused with their paths.
    func testOverridePayloadsRoundTripAndBadOnesAreNamed() throws {
        var envelope = sampleEnvelope()
        envelope.context.userID = "ada"
        for action in OverrideAction.allCases {
            envelope.payload = .override(Override(action: action, reason: "incident 42"))
            let bytes = try EnvelopeEncoder().encode(envelope)
            XCTAssertEqual(try EnvelopeDecoder().decode(bytes), envelope, action.rawValue)
            XCTAssertEqual(try EnvelopeEncoder().encode(try EnvelopeDecoder().decode(bytes)), bytes, "canonical bytes")
        }
        envelope.payload = .override(Override(action: .pause, reason: "x"))
        let bytes = try EnvelopeEncoder().encode(envelope)
        // The msgpack key or value with its fixstr header byte (0xA0 | length).
        func replacing(_ old: String, _ new: String) -> [UInt8] {
            let (from, to) = ([0xA0 | UInt8(old.utf8.count)] + Array(old.utf8), [0xA0 | UInt8(new.utf8.count)] + Array(new.utf8))
            precondition(from.count == to.count)
            var out = bytes
            let start = (0...(out.count - from.count)).first { Array(out[$0..<($0 + from.count)]) == from }!
            out.replaceSubrange(start..<(start + from.count), with: to)
            return out
        }
        assertDecodeError(replacing("pause", "frozn"), .invalidEnumValue, at: "payload.action")
        assertDecodeError(replacing("reason", "motive"), .unknownKey, at: "payload.motive")
    }

    func testByteC1IsMalformed() {
        assertDecodeError([0xc1], .malformed, at: "$")
        let error = assertDecodeError(bytes(self.tree.setting("ttl_ms", .raw([0xc1]))), .malformed, at: "ttl_ms")
        XCTAssertNotNil(error?.offset)
        assertDecodeError(
            bytes(self.tree.setting("payload.task.parameters.model", .array([.uint(1), .raw([0xc1])]))), .malformed,
            at: "payload.task.parameters.model[1]")
    }

    func testLyingLengthsFailFastWithoutAllocating() {
        // Five bytes claiming 2^32 - 1 elements: msgpack-c would allocate ~96 GB for this.
        for header: UInt8 in [0xdd, 0xdf, 0xdb, 0xc6, 0xc9] {
            let start = ContinuousClock.now
            assertDecodeError([header, 0xff, 0xff, 0xff, 0xff], .truncated, at: "$")
            XCTAssertLessThan(ContinuousClock.now - start, .milliseconds(100))
        }
        // Even when the limits would allow it.
        let generous = EnvelopeDecoder(limits: CodecLimits(maxStringBytes: .max, maxBinaryBytes: .max, maxContainerEntries: .max))
        assertDecodeError([0xdd, 0xff, 0xff, 0xff, 0xff], .truncated, at: "$", decoder: generous)
        assertDecodeError([0xdf, 0xff, 0xff, 0xff, 0xff], .truncated, at: "$", decoder: generous)
        // Inside an envelope, the path names the field.
        assertDecodeError(
            bytes(self.tree.setting("payload.task.parameters", .raw([0xdf, 0xff, 0xff, 0xff, 0xff]))), .truncated,
            at: "payload.task.parameters")
        assertDecodeError(
            bytes(self.tree.setting("payload.input.files", .raw([0xdc, 0xff, 0xff]))), .truncated, at: "payload.input.files")
        assertDecodeError(bytes(self.tree.setting("sender", .raw([0xda, 0x10, 0x00, 0x61]))), .truncated, at: "sender")
    }

    func testDeepNesting() {
        let deep = [UInt8](repeating: 0x91, count: 1000) + [0xc0]
        let error = assertDecodeError(deep, .nestingTooDeep)
        XCTAssertEqual(error?.path, "$" + String(repeating: "[0]", count: 30))
        var nested: MP = .null
        for _ in 0..<1000 { nested = .array([nested]) }
        let inside = assertDecodeError(bytes(self.tree.setting("payload.task.parameters.model", nested)), .nestingTooDeep)
        XCTAssertTrue(inside?.path.hasPrefix("payload.task.parameters.model[0][0]") ?? false, inside?.path ?? "")
        // Deep maps too.
        var maps: MP = .null
        for _ in 0..<100 { maps = .object([("k", maps)]) }
        let mapError = assertDecodeError(bytes(self.tree.setting("payload.input.data", maps)), .nestingTooDeep)
        XCTAssertTrue(mapError?.path.hasPrefix("payload.input.data.k.k") ?? false, mapError?.path ?? "")
        // Within the codec's limit but deeper than the envelope rules allow: decoded, then refused.
        var rulesDeep: MP = .null
        for _ in 0..<24 { rulesDeep = .array([rulesDeep]) }
        assertDecodeError(
            bytes(self.tree.setting("payload.task.parameters.model", rulesDeep)), .invalidEnvelope,
            at: "payload.task.parameters.model" + String(repeating: "[0]", count: 23), envelopeCode: .nestingTooDeep)
    }

    func testTooManyEntries() {
        let decoder = EnvelopeDecoder(limits: CodecLimits(maxContainerEntries: 16))
        let list = MP.array((0..<17).map { MP.uint(UInt64($0)) })
        assertDecodeError(bytes(self.tree.setting("payload.task.parameters.model", list)), .tooManyEntries, at: "payload.task.parameters.model", decoder: decoder)
        // The envelope's own 15 fields fit.
        XCTAssertNoThrow(try decoder.decode(bytes(self.tree)))
    }

    func testOversizedStringAndBinary() {
        let limits = CodecLimits(maxStringBytes: 64, maxBinaryBytes: 64)
        let decoder = EnvelopeDecoder(limits: limits)
        let long = String(repeating: "x", count: 65)
        let error = assertDecodeError(bytes(self.tree.setting("context.user_id", .s(long))), .stringTooLong, at: "context.user_id", decoder: decoder)
        XCTAssertNotNil(error?.offset, "found by the structural scan, before msgpack-c")
        XCTAssertNoThrow(try decoder.decode(bytes(self.tree.setting("context.user_id", .s(String(long.dropLast()))))))
        let chunk = MP.bin([UInt8](repeating: 1, count: 65))
        assertDecodeError(bytes(self.tree.setting("payload.input.data", chunk)), .binaryTooLong, at: "payload.input.data", decoder: decoder)
        assertDecodeError(
            bytes(self.tree.setting("payload.task.parameters", .object([(long, .null)]))), .stringTooLong,
            at: "payload.task.parameters{key}", decoder: decoder)
        // The default limits: a string longer than 1 MiB inside a 2 MiB envelope limit.
        let big = EnvelopeDecoder(limits: CodecLimits(maxEnvelopeBytes: 4 << 20))
        assertDecodeError(
            bytes(self.tree.setting("payload.input.data", .s(String(repeating: "y", count: (1 << 20) + 1)))), .stringTooLong,
            at: "payload.input.data", decoder: big)
    }

    func testTooLarge() throws {
        let full = try EnvelopeEncoder().encode(sampleEnvelope())
        let small = EnvelopeDecoder(limits: CodecLimits(maxEnvelopeBytes: full.count - 1))
        assertDecodeError(full, .tooLarge, at: "$", decoder: small)
        XCTAssertNoThrow(try EnvelopeDecoder(limits: CodecLimits(maxEnvelopeBytes: full.count)).decode(full))
        // Refused before anything is read: even garbage over the limit says too_large.
        assertDecodeError([UInt8](repeating: 0xc1, count: (1 << 20) + 1), .tooLarge, at: "$")
        // A record may be the envelope limit plus its header.
        let writer = MsgPackWriter()
        let header = RecordHeader(seq: .max, prevHash: .zero, actorPrevSeq: .max, clockMilliseconds: .min, entropy: .max)
        writer.writeRecord(header: header, envelope: try EnvelopeEncoder().encodeBody(sampleEnvelope()))
        XCTAssertEqual(try small.decodeRecord(writer.bytes).envelope, sampleEnvelope())
        assertDecodeError(writer.bytes + [UInt8](repeating: 0, count: 200), .tooLarge, at: "$", decoder: small, record: true)
    }

    func testEncoderRefusesOversizedEnvelopes() throws {
        let full = try EnvelopeEncoder().encode(sampleEnvelope())
        let encoder = EnvelopeEncoder(limits: CodecLimits(maxEnvelopeBytes: full.count - 1))
        XCTAssertThrowsError(try encoder.encode(sampleEnvelope())) { error in
            XCTAssertEqual((error as? CodecError)?.code, .tooLarge)
            XCTAssertEqual((error as? CodecError)?.path, "$")
        }
        XCTAssertThrowsError(try encoder.encodeBody(sampleEnvelope())) { error in
            XCTAssertEqual((error as? CodecError)?.code, .tooLarge)
        }
        XCTAssertEqual(try EnvelopeEncoder(limits: CodecLimits(maxEnvelopeBytes: full.count)).encode(sampleEnvelope()), full)
        // The same encoder still works for a smaller envelope after refusing one.
        var ping = sampleEnvelope()
        ping.payload = .ping(Ping(nonce: 1))
        XCTAssertEqual(try EnvelopeDecoder().decode(try encoder.encode(ping)), ping)
        // With the default limit, a 2 MiB chunk is refused.
        var huge = sampleEnvelope()
        huge.payload = .streamData(StreamData(streamID: huge.id, index: 0, chunk: [UInt8](repeating: 0, count: 2 << 20)))
        XCTAssertThrowsError(try EnvelopeEncoder().encode(huge)) { XCTAssertEqual(($0 as? CodecError)?.code, .tooLarge) }
    }

    // MARK: Types and values

    func testWrongTypes() {
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .s("30000"))), .wrongType, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .f64(1.0.bitPattern))), .wrongType, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .null)), .wrongType, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("broadcast", .uint(1))), .wrongType, at: "broadcast")
        assertDecodeError(bytes(self.tree.setting("id", .s("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"))), .wrongType, at: "id")
        assertDecodeError(bytes(self.tree.setting("sender", .bin(Array("orchestrator@v1.0".utf8)))), .wrongType, at: "sender")
        assertDecodeError(bytes(self.tree.setting("context", .array([]))), .wrongType, at: "context")
        assertDecodeError(bytes(self.tree.setting("payload", .s("ping"))), .wrongType, at: "payload")
        assertDecodeError(bytes(self.tree.setting("priority", .uint(2))), .wrongType, at: "priority")
        assertDecodeError(bytes(self.tree.setting("context.trace_id", .s("0af7651916cd43dd8448eb211c80319c"))), .wrongType, at: "context.trace_id")
        assertDecodeError(bytes(self.tree.setting("context.custom_attributes.tenant", .uint(1))), .wrongType, at: "context.custom_attributes.tenant")
        assertDecodeError(bytes(self.tree.setting("payload.task.parameters", .array([]))), .wrongType, at: "payload.task.parameters")
        assertDecodeError(bytes(self.tree.setting("payload.input.files", .object([]))), .wrongType, at: "payload.input.files")
        assertDecodeError(bytes(self.tree.setting("payload.task.constraints.max_execution_time_ms", .bool(true))), .wrongType,
            at: "payload.task.constraints.max_execution_time_ms")
        assertDecodeError(bytes(self.tree.setting("payload.preferences.streaming", .uint(0))), .wrongType, at: "payload.preferences.streaming")
        // Keys that are not strings.
        assertDecodeError(bytes(self.tree.appending([], key: .uint(1), value: .null)), .wrongType, at: "$")
        assertDecodeError(bytes(self.tree.appending(["payload", "task", "parameters"], key: .uint(1), value: .null)), .wrongType, at: "payload.task.parameters")
        // Files need the right shape per element.
        assertDecodeError(bytes(self.tree.setting("payload.input.files", .array([.s("a.txt")]))), .wrongType, at: "payload.input.files[0]")
    }

    func testIntegerRanges() {
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .uint(1 << 40))), .integerOutOfRange, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .int(-(1 << 40)))), .integerOutOfRange, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("retry_count", .uint(UInt64(Int32.max) + 1))), .integerOutOfRange, at: "retry_count")
        assertDecodeError(bytes(self.tree.setting("timestamp", .uint(UInt64(Int64.max) + 1))), .integerOutOfRange, at: "timestamp")
        var ping = sampleEnvelope()
        ping.payload = .ping(Ping(nonce: 0))
        let pingTree = SpecTree.envelope(ping)
        assertDecodeError(bytes(pingTree.setting("payload.nonce", .int(-1))), .integerOutOfRange, at: "payload.nonce")
        XCTAssertEqual(try EnvelopeDecoder().decode(bytes(pingTree.setting("payload.nonce", .uint(.max)))).payload, .ping(Ping(nonce: .max)))
        // In range but breaking a rule: decoded, then refused with the rule.
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .int(-1))), .invalidEnvelope, at: "ttl_ms", envelopeCode: .invalidTTL)
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .uint(0))), .invalidEnvelope, at: "ttl_ms", envelopeCode: .invalidTTL)
    }

    func testInvalidEnumValues() {
        assertDecodeError(bytes(self.tree.setting("priority", .s("urgent"))), .invalidEnumValue, at: "priority")
        assertDecodeError(bytes(self.tree.setting("priority", .s("HIGH"))), .invalidEnumValue, at: "priority")
        assertDecodeError(bytes(self.tree.setting("type", .s("teleport"))), .invalidEnumValue, at: "type")
        assertDecodeError(bytes(self.tree.setting("delivery_mode", .s("twice"))), .invalidEnumValue, at: "delivery_mode")
        assertDecodeError(bytes(self.tree.setting("payload.preferences.quality_level", .s("perfect"))), .invalidEnumValue,
            at: "payload.preferences.quality_level")
        var response = sampleEnvelope()
        response.payload = .taskResponse(TaskResponse(status: .completed))
        assertDecodeError(bytes(SpecTree.envelope(response).setting("payload.status", .s("done"))), .invalidEnumValue, at: "payload.status")
    }

    func testFixedLengthBinaries() {
        assertDecodeError(bytes(self.tree.setting("id", .bin([UInt8](repeating: 1, count: 15)))), .invalidLength, at: "id")
        assertDecodeError(bytes(self.tree.setting("id", .bin([UInt8](repeating: 1, count: 17)))), .invalidLength, at: "id")
        assertDecodeError(bytes(self.tree.setting("parent_id", .bin([]))), .invalidLength, at: "parent_id")
        assertDecodeError(bytes(self.tree.setting("correlation_id", .bin([1]))), .invalidLength, at: "correlation_id")
        assertDecodeError(bytes(self.tree.setting("context.trace_id", .bin([UInt8](repeating: 1, count: 8)))), .invalidLength, at: "context.trace_id")
        assertDecodeError(bytes(self.tree.setting("context.span_id", .bin([UInt8](repeating: 1, count: 16)))), .invalidLength, at: "context.span_id")
        var start = sampleEnvelope()
        start.payload = .streamStart(StreamStart(streamID: start.id, contentType: "text/plain"))
        assertDecodeError(bytes(SpecTree.envelope(start).setting("payload.stream_id", .bin([1, 2]))), .invalidLength, at: "payload.stream_id")
        // A 16-byte id that is not a UUIDv7 decodes, then breaks the rule.
        assertDecodeError(
            bytes(self.tree.setting("id", .bin([UInt8](repeating: 0, count: 16)))), .invalidEnvelope, at: "id", envelopeCode: .notUUIDv7)
    }

    // MARK: Keys

    func testDuplicateKeys() {
        assertDecodeError(bytes(self.tree.appending([], key: .s("ttl_ms"), value: .uint(5))), .duplicateKey, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.appending([], key: .s("parent_id"), value: .null)), .duplicateKey, at: "parent_id")
        assertDecodeError(bytes(self.tree.appending(["context"], key: .s("user_id"), value: .s("x"))), .duplicateKey, at: "context.user_id")
        assertDecodeError(
            bytes(self.tree.appending(["context", "custom_attributes"], key: .s("tenant"), value: .s("y"))), .duplicateKey,
            at: "context.custom_attributes.tenant")
        assertDecodeError(bytes(self.tree.appending(["payload"], key: .s("task"), value: .object([]))), .duplicateKey, at: "payload.task")
        assertDecodeError(bytes(self.tree.appending(["payload", "task"], key: .s("type"), value: .s("llm.x"))), .duplicateKey, at: "payload.task.type")
        assertDecodeError(
            bytes(self.tree.appending(["payload", "task", "parameters"], key: .s("model"), value: .s("large"))), .duplicateKey,
            at: "payload.task.parameters.model")
        assertDecodeError(
            bytes(self.tree.appending(["payload", "task", "parameters", "options"], key: .s("temperature"), value: .uint(1))), .duplicateKey,
            at: "payload.task.parameters.options.temperature")
        // A file with both url and inline_data.
        let both = MP.object([
            ("name", .s("a")), ("content_type", .s("b")), ("size_bytes", .uint(1)), ("url", .s("https://x")), ("inline_data", .bin([1])),
        ])
        assertDecodeError(bytes(self.tree.setting("payload.input.files", .array([both]))), .duplicateKey, at: "payload.input.files[0].inline_data")
        // Records: a header key twice.
        let record = SpecTree.record(RecordHeader(seq: 1, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 0, entropy: 0), sampleEnvelope())
        assertDecodeError(bytes(record.appending([], key: .s("seq"), value: .uint(2))), .duplicateKey, at: "seq", record: true)
    }

    func testUnknownKeys() {
        assertDecodeError(bytes(self.tree.setting("color", .s("red"))), .unknownKey, at: "color")
        assertDecodeError(bytes(self.tree.setting("context.color", .s("red"))), .unknownKey, at: "context.color")
        assertDecodeError(bytes(self.tree.setting("payload.color", .s("red"))), .unknownKey, at: "payload.color")
        assertDecodeError(bytes(self.tree.setting("payload.task.color", .s("red"))), .unknownKey, at: "payload.task.color")
        assertDecodeError(bytes(self.tree.setting("payload.task.constraints.color", .uint(1))), .unknownKey, at: "payload.task.constraints.color")
        // The payload of another type.
        assertDecodeError(bytes(self.tree.setting("type", .s("ping"))), .unknownKey, at: "payload.task")
        // Record fields inside a bare envelope, and keys that are prefixes of real ones.
        assertDecodeError(bytes(self.tree.setting("seq", .uint(1))), .unknownKey, at: "seq")
        assertDecodeError(bytes(self.tree.setting("ttl", .uint(1))), .unknownKey, at: "ttl")
        assertDecodeError(bytes(self.tree.setting("ttl_ms_", .uint(1))), .unknownKey, at: "ttl_ms_")
        assertDecodeError(bytes(self.tree.setting([""], .uint(1))), .unknownKey, at: "")
    }

    func testMissingKeys() {
        for key in ["id", "correlation_id", "sender", "recipient", "timestamp", "ttl_ms", "priority", "context", "type", "payload", "delivery_mode"] {
            assertDecodeError(bytes(self.tree.setting(key, nil)), .missingKey, at: key)
        }
        assertDecodeError(bytes(self.tree.setting("context.trace_id", nil)), .missingKey, at: "context.trace_id")
        assertDecodeError(bytes(self.tree.setting("context.span_id", nil)), .missingKey, at: "context.span_id")
        assertDecodeError(bytes(self.tree.setting("payload.task.type", nil)), .missingKey, at: "payload.task.type")
        assertDecodeError(bytes(self.tree.setting("payload.task", nil)), .missingKey, at: "payload.task")
        assertDecodeError(bytes(self.tree.setting("payload.input.files", nil)), .missingKey, at: "payload.input.files")
        assertDecodeError(bytes(self.tree.setting("payload.preferences.streaming", nil)), .missingKey, at: "payload.preferences.streaming")
        let file = MP.object([("name", .s("a")), ("content_type", .s("b")), ("size_bytes", .uint(1))])
        assertDecodeError(bytes(self.tree.setting("payload.input.files", .array([file]))), .missingKey, at: "payload.input.files[0].url")
        // A required key given as nil is the wrong type, not absent.
        assertDecodeError(bytes(self.tree.setting("payload.task.type", .null)), .wrongType, at: "payload.task.type")
        // Records: the version first, then the rest.
        let record = SpecTree.record(RecordHeader(seq: 1, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 0, entropy: 0), sampleEnvelope())
        assertDecodeError(bytes(record.setting("v", nil)), .missingKey, at: "v", record: true)
        assertDecodeError(bytes(record.setting("v", nil).setting("id", nil)), .missingKey, at: "v", record: true)
        assertDecodeError(bytes(record.setting("prev_hash", nil)), .missingKey, at: "prev_hash", record: true)
        assertDecodeError(bytes(record.setting("ttl_ms", nil)), .missingKey, at: "ttl_ms", record: true)
    }

    // MARK: Text, extensions, versions, rules

    func testInvalidUTF8() {
        for bad: [UInt8] in [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x61, 0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]] {
            assertDecodeError(bytes(self.tree.setting("sender", .str(bad))), .invalidUTF8, at: "sender")
            assertDecodeError(bytes(self.tree.setting("context.user_id", .str(bad))), .invalidUTF8, at: "context.user_id")
            assertDecodeError(bytes(self.tree.setting("payload.task.type", .str(bad))), .invalidUTF8, at: "payload.task.type")
            assertDecodeError(bytes(self.tree.setting("payload.task.parameters.model", .str(bad))), .invalidUTF8, at: "payload.task.parameters.model")
            assertDecodeError(
                bytes(self.tree.setting("payload.task.parameters", .map([MP.Pair(.str(bad), .null)]))), .invalidUTF8,
                at: "payload.task.parameters.{key}")
            assertDecodeError(
                bytes(self.tree.setting("context.custom_attributes", .map([MP.Pair(.str(bad), .s("v"))]))), .invalidUTF8,
                at: "context.custom_attributes.{key}")
        }
        // An unknown key that is not UTF-8 is still an unknown key (and does not crash the message).
        assertDecodeError(bytes(self.tree.appending([], key: .str([0xff, 0xfe]), value: .null)), .unknownKey)
    }

    func testExtensionTypes() {
        assertDecodeError(bytes(self.tree.setting("payload.task.parameters.model", .ext(1, [1, 2, 3, 4]))), .unsupportedType,
            at: "payload.task.parameters.model")
        assertDecodeError(bytes(self.tree.setting("payload.input.data", .ext(-1, [0, 0, 0, 0]))), .unsupportedType, at: "payload.input.data")
        assertDecodeError(bytes(self.tree.setting("ttl_ms", .ext(5, [1]))), .unsupportedType, at: "ttl_ms")
        assertDecodeError(bytes(self.tree.setting("id", .ext(5, [UInt8](repeating: 1, count: 16)))), .unsupportedType, at: "id")
        assertDecodeError(bytes(.ext(1, [1])), .unsupportedType, at: "$")
        assertDecodeError(MiniWriter.encode(self.tree.setting("payload.input.data", .ext(7, [UInt8](repeating: 9, count: 300))), wide: true),
            .unsupportedType, at: "payload.input.data")
    }

    func testRecordVersions() {
        let header = RecordHeader(seq: 1, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 0, entropy: 0)
        XCTAssertNoThrow(try EnvelopeDecoder().decodeRecord(bytes(SpecTree.record(header, sampleEnvelope()))))
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope(), version: 2)), .unsupportedVersion, at: "v", record: true)
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope(), version: 0)), .unsupportedVersion, at: "v", record: true)
        // A v2 record may have fields v1 does not know; the version is what is reported.
        let future = SpecTree.record(header, sampleEnvelope(), version: 2)
        guard case .map(var pairs) = future else { return XCTFail() }
        pairs.append(MP.Pair(.s("signature"), .bin([1, 2])))
        assertDecodeError(bytes(.map(pairs)), .unsupportedVersion, at: "v", record: true)
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope()).setting("v", .int(-1))), .integerOutOfRange, at: "v", record: true)
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope()).setting("seq", .s("1"))), .wrongType, at: "seq", record: true)
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope()).setting("prev_hash", .bin([0]))), .invalidLength, at: "prev_hash", record: true)
        // A bare envelope is not a record, and a record is not a bare envelope.
        assertDecodeError(bytes(self.tree), .missingKey, at: "v", record: true)
        assertDecodeError(bytes(SpecTree.record(header, sampleEnvelope())), .unknownKey, at: "v")
    }

    func testDecodedEnvelopeBreakingARule() {
        let cases: [(String, MP, String, EnvelopeError.Code)] = [
            ("ttl_ms", .uint(0), "ttl_ms", .invalidTTL),
            ("retry_count", .uint(3), "retry_count", .retryCountExceedsMax),
            ("sender", .s("Orchestrator"), "sender", .invalidAddress),
            ("recipient", .s("agent.x@v1.0"), "broadcast", .broadcastToNonSupervisor),
            ("payload.task.type", .s("nodot"), "payload.task.type", .invalidTaskType),
            ("context.trace_id", .bin([UInt8](repeating: 0, count: 16)), "context.trace_id", .invalidTraceID),
            ("payload.task.constraints.max_execution_time_ms", .int(-5), "payload.task.constraints.max_execution_time_ms", .invalidConstraint),
        ]
        for (field, value, path, code) in cases {
            let error = assertDecodeError(bytes(self.tree.setting(field, value)), .invalidEnvelope, at: path, envelopeCode: code)
            XCTAssertTrue(error?.description.contains("[\(code)]") ?? false)
        }
        var progress = sampleEnvelope()
        progress.payload = .taskProgress(TaskProgress(fraction: 0.5, message: ""))
        assertDecodeError(
            bytes(SpecTree.envelope(progress).setting("payload.fraction", .double(1.5))), .invalidEnvelope, at: "payload.fraction",
            envelopeCode: .invalidProgress)
        assertDecodeError(
            bytes(SpecTree.envelope(progress).setting("payload.fraction", .double(.nan))), .invalidEnvelope, at: "payload.fraction",
            envelopeCode: .notFinite)
        var end = sampleEnvelope()
        end.payload = .streamEnd(StreamEnd(streamID: end.id, count: 1, digest: [UInt8](repeating: 0, count: 32)))
        assertDecodeError(
            bytes(SpecTree.envelope(end).setting("payload.digest", .bin([1]))), .invalidEnvelope, at: "payload.digest", envelopeCode: .invalidStream)
        // The codec's envelope limits are the ones applied.
        let strict = EnvelopeDecoder(limits: CodecLimits(envelope: EnvelopeLimits(maxTextBytes: 4)))
        assertDecodeError(bytes(self.tree), .invalidEnvelope, at: "context.user_id", envelopeCode: .stringTooLong, decoder: strict)
    }

    func testErrorDescriptions() {
        let error = CodecError(.truncated, path: "payload.task", offset: 12, "input ends inside a value")
        XCTAssertEqual(error.description, "truncated at payload.task (byte 12): input ends inside a value")
        let invalid = CodecError(invalid: EnvelopeError(.invalidTTL, path: "ttl_ms", "must be > 0"))
        XCTAssertEqual(invalid.code, .invalidEnvelope)
        XCTAssertEqual(invalid.envelopeCode, .invalidTTL)
        XCTAssertEqual(invalid.path, "ttl_ms")
        XCTAssertEqual(invalid.description, "invalid_envelope at ttl_ms [invalid_ttl]: invalid_ttl: must be > 0")
    }
}

/// The record's `v` is judged before any other key, wherever it sits in the map.
final class RecordVersionOrderTests: XCTestCase {
    /// A hand-written record map: `pairs` are (key, msgpack bytes of the value).
    func record(_ pairs: [(String, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = [0xde, UInt8(pairs.count >> 8), UInt8(pairs.count & 0xff)]
        for (key, value) in pairs {
            bytes.append(0xa0 | UInt8(key.utf8.count))
            bytes += Array(key.utf8)
            bytes += value
        }
        return bytes
    }

    func testNewerVersionAfterAnUnknownKeyIsUnsupportedVersion() {
        let bytes = self.record([("future_field", [0x01]), ("v", [0x02])])
        XCTAssertThrowsError(try EnvelopeDecoder().decodeRecord(bytes)) { error in
            XCTAssertEqual((error as? CodecError)?.code, .unsupportedVersion, "\(error)")
        }
    }

    func testMissingVersionWithAnUnknownKeyIsMissingKey() {
        let bytes = self.record([("future_field", [0x01]), ("seq", [0x01])])
        XCTAssertThrowsError(try EnvelopeDecoder().decodeRecord(bytes)) { error in
            XCTAssertEqual((error as? CodecError)?.code, .missingKey, "\(error)")
            XCTAssertEqual((error as? CodecError)?.path, "v")
        }
    }

    func testVersionOneAfterOtherKeysStillDecodesByVersionOneRules() {
        let bytes = self.record([("future_field", [0x01]), ("v", [0x01])])
        XCTAssertThrowsError(try EnvelopeDecoder().decodeRecord(bytes)) { error in
            XCTAssertEqual((error as? CodecError)?.code, .unknownKey, "\(error)")
        }
    }
}
