import CMsgPack
import CartritaEnvelope
import XCTest

@testable import CartritaCodec

/// The decoder reads msgpack through its own parse (`MsgPackTape`), which replaced msgpack-c's
/// object tree: every input the structural scan accepts must come out of it exactly as it comes
/// out of msgpack-c (same types, values, bytes and shape), so that everything the decoder
/// accepts or refuses, and how, stays as it was.
final class TapeParityTests: XCTestCase {
    /// Compares one value of each parse, recursively; returns the first difference.
    func difference(_ reference: msgpack_object, _ object: MsgPackObject, _ path: String) -> String? {
        let expected: MsgPackKind? =
            switch reference.type {
            case MSGPACK_OBJECT_NIL: .nil_
            case MSGPACK_OBJECT_BOOLEAN: .boolean
            case MSGPACK_OBJECT_POSITIVE_INTEGER: .positiveInteger
            case MSGPACK_OBJECT_NEGATIVE_INTEGER: .negativeInteger
            case MSGPACK_OBJECT_FLOAT32: .float32
            case MSGPACK_OBJECT_FLOAT64: .float64
            case MSGPACK_OBJECT_STR: .string
            case MSGPACK_OBJECT_BIN: .binary
            case MSGPACK_OBJECT_ARRAY: .array
            case MSGPACK_OBJECT_MAP: .map
            case MSGPACK_OBJECT_EXT: .ext
            default: nil
            }
        guard expected == object.kind else { return "\(path): msgpack-c type \(reference.type.rawValue), tape \(object.kind)" }
        func bytes(_ pointer: UnsafePointer<CChar>?, _ count: UInt32) -> [UInt8] {
            count == 0 ? [] : [UInt8](UnsafeRawBufferPointer(start: pointer, count: Int(count)))
        }
        switch object.kind {
        case .nil_: return nil
        case .boolean: return reference.via.boolean == object.boolean ? nil : "\(path): bool"
        case .positiveInteger: return reference.via.u64 == object.u64 ? nil : "\(path): \(reference.via.u64) vs \(object.u64)"
        case .negativeInteger: return reference.via.i64 == object.i64 ? nil : "\(path): \(reference.via.i64) vs \(object.i64)"
        case .float32, .float64:
            return reference.via.f64.bitPattern == object.f64.bitPattern ? nil : "\(path): \(reference.via.f64) vs \(object.f64)"
        case .string:
            return bytes(reference.via.str.ptr, reference.via.str.size) == [UInt8](object.bytes) ? nil : "\(path): string bytes"
        case .binary:
            return bytes(reference.via.bin.ptr, reference.via.bin.size) == [UInt8](object.bytes) ? nil : "\(path): binary bytes"
        case .ext:
            guard reference.via.ext.type == object.extType else { return "\(path): ext type" }
            return bytes(reference.via.ext.ptr, reference.via.ext.size) == [UInt8](object.bytes) ? nil : "\(path): ext bytes"
        case .array:
            guard Int(reference.via.array.size) == object.count else { return "\(path): array size" }
            for (index, item) in object.items.enumerated() {
                if let found = self.difference(reference.via.array.ptr[index], item, "\(path)[\(index)]") { return found }
            }
            return nil
        case .map:
            guard Int(reference.via.map.size) == object.count else { return "\(path): map size" }
            for (index, pair) in object.pairs.enumerated() {
                let expected = reference.via.map.ptr[index]
                if let found = self.difference(expected.key, pair.key, "\(path){key \(index)}") { return found }
                if let found = self.difference(expected.val, pair.val, "\(path){value \(index)}") { return found }
            }
            return nil
        }
    }

    /// Parses `input` both ways when the scan accepts it; nil when they agree (or it is refused).
    func compare(_ input: [UInt8], _ tape: MsgPackTape, _ zone: UnsafeMutablePointer<msgpack_zone>) -> String? {
        input.withUnsafeBytes { raw -> String? in
            guard raw.count > 0, Preflight.fastScan(raw, limits: .default) else { return nil }
            var offset = 0
            var root = msgpack_object()
            defer { msgpack_zone_clear(zone) }
            let result = msgpack_unpack(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count, &offset, zone, &root)
            guard result == MSGPACK_UNPACK_SUCCESS else { return "msgpack-c refused what the scan accepted (\(result.rawValue))" }
            do {
                return self.difference(root, try tape.parse(raw), "$")
            } catch {
                return "the tape refused what msgpack-c read: \(error)"
            }
        }
    }

    func testEveryFormAtItsBoundaries() {
        let tape = MsgPackTape(initialCapacity: 1)  // small: growth is exercised too
        let zone = msgpack_zone_new(Int(MSGPACK_ZONE_CHUNK_SIZE))!
        defer { msgpack_zone_free(zone) }
        let writer = MsgPackWriter()
        var inputs: [[UInt8]] = [
            [0xc0], [0xc2], [0xc3], [0x00], [0x7f], [0xe0], [0xff],
            [0xcc, 0xff], [0xcd, 0xff, 0xff], [0xce, 0xff, 0xff, 0xff, 0xff], [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            [0xd0, 0x05], [0xd0, 0x80], [0xd1, 0x00, 0x05], [0xd1, 0x80, 0x00], [0xd2, 0x7f, 0xff, 0xff, 0xff], [0xd2, 0x80, 0, 0, 0],
            [0xd3, 0, 0, 0, 0, 0, 0, 0, 1], [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
            [0xca, 0x3f, 0xc0, 0x00, 0x00], [0xca, 0x7f, 0xc0, 0x00, 0x01], [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
            [0xa0], [0xa3, 0x61, 0x62, 0x63], [0xd9, 0x01, 0x61], [0xda, 0x00, 0x01, 0x61], [0xdb, 0, 0, 0, 1, 0x61],
            [0xc4, 0x00], [0xc4, 0x02, 1, 2], [0xc5, 0x00, 0x01, 9], [0xc6, 0, 0, 0, 1, 9],
            [0xd4, 0x05, 1], [0xd5, 0xfe, 1, 2], [0xd6, 0x01, 1, 2, 3, 4], [0xd7, 0x7f] + [UInt8](repeating: 7, count: 8),
            [0xd8, 0x80] + [UInt8](repeating: 7, count: 16), [0xc7, 0x00, 0x03], [0xc7, 0x02, 0xff, 1, 2], [0xc8, 0x00, 0x01, 0x09, 1],
            [0xc9, 0, 0, 0, 1, 0x09, 1],
            [0x90], [0x80], [0x92, 0x90, 0x80], [0xdc, 0x00, 0x02, 0x01, 0x02], [0xdd, 0, 0, 0, 1, 0xc0],
            [0xde, 0x00, 0x01, 0xa1, 0x6b, 0x80], [0xdf, 0, 0, 0, 1, 0x01, 0x92, 0x81, 0xa0, 0x90, 0xc3],
            [0x82, 0xa1, 0x61, 0x91, 0x91, 0x91, 0x80, 0xa1, 0x62, 0x93, 0x01, 0x82, 0xc0, 0xc0, 0x90, 0x90, 0xa0],
        ]
        // Nested as deep as the default limits allow.
        var deep: [UInt8] = [0xc0]
        for level in 0..<(CodecLimits.default.maxDepth) { deep = (level % 2 == 0 ? [0x91] : [0x81, 0xa1, 0x6b]) + deep }
        inputs.append(deep)
        for value: MCPValue in [
            .map([.init("a", .array((0..<300).map { .int(Int64($0) * 997 - 50_000) })), .init("b", .string(String(repeating: "é", count: 200)))]),
            .array([.binary([UInt8](repeating: 1, count: 70_000)), .double(-0.0), .float(.infinity), .uint(.max), .int(.min)]),
        ] {
            writer.reset()
            writer.write(value)
            inputs.append(writer.bytes)
        }
        for input in inputs {
            XCTAssertTrue(input.withUnsafeBytes { Preflight.fastScan($0, limits: .default) }, "the scan refuses \(Hex.encode(input))")
            if let found = self.compare(input, tape, zone) { XCTFail("\(Hex.encode(input)): \(found)") }
        }
    }

    /// Valid envelopes and records, and random damage to them: wherever the scan lets the
    /// input through, both parses agree.
    func testMutatedEncodingsParseAlike() throws {
        var generator = EnvelopeGenerator(seed: 0xF022_0101)
        generator.allowNaN = true
        generator.allowBig = false
        let encoder = EnvelopeEncoder()
        let writer = MsgPackWriter()
        var pool: [[UInt8]] = []
        for index in 0..<200 {
            let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
            pool.append(try encoder.encode(envelope))
            writer.reset()
            writer.writeRecord(header: generator.header(), envelope: try encoder.encodeBody(envelope))
            pool.append(writer.bytes)
        }
        let tape = MsgPackTape()
        let zone = msgpack_zone_new(Int(MSGPACK_ZONE_CHUNK_SIZE))!
        defer { msgpack_zone_free(zone) }
        var mutator = MutationRobustnessTests.Mutator(random: SplitMix64(seed: 0xF022_0101))
        var compared = 0
        for iteration in 0..<20_000 {
            let base = pool[mutator.int(pool.count)]
            let input = iteration < pool.count ? pool[iteration] : mutator.mutate(base, donor: pool[mutator.int(pool.count)])
            if input.withUnsafeBytes({ $0.count > 0 && Preflight.fastScan($0, limits: .default) }) { compared += 1 }
            if let found = self.compare(input, tape, zone) { XCTFail("iteration \(iteration), \(Hex.encode(input)): \(found)") }
        }
        XCTAssertGreaterThan(compared, 1_000)
    }

    /// Limits set field by field can allow more nesting than msgpack-c reads: refused, as
    /// msgpack-c refused it, instead of read past its stack.
    func testNestingPastMsgPackCsLimitIsRefused() {
        var limits = CodecLimits.default
        limits.maxDepth = 40
        var input: [UInt8] = [0xc0]
        for _ in 0..<33 { input = [0x91] + input }
        XCTAssertThrowsError(try EnvelopeDecoder(limits: limits).decodeValue(input)) { error in
            XCTAssertEqual((error as? CodecError)?.code, .outOfMemory)
        }
        input.removeFirst()
        XCTAssertEqual(try EnvelopeDecoder(limits: limits).decodeValue(input).depth, 32)
    }
}
