import CMsgPack
import CartritaCodec
import CartritaEnvelope
import XCTest

/// `MsgPackWriter` is our own, for speed; msgpack-c's packer is the reference. Every kind of
/// token, at every size boundary where the encoding changes form, must come out byte for byte
/// as msgpack-c writes it: the log's hash chain and every determinism test compare bytes.
final class NativeWriterTests: XCTestCase {
    /// msgpack-c's packer over its simple buffer.
    final class Reference {
        let buffer = UnsafeMutablePointer<msgpack_sbuffer>.allocate(capacity: 1)
        let packer = UnsafeMutablePointer<msgpack_packer>.allocate(capacity: 1)

        init() {
            msgpack_sbuffer_init(self.buffer)
            msgpack_packer_init(self.packer, self.buffer, msgpack_sbuffer_write)
        }

        deinit {
            msgpack_sbuffer_destroy(self.buffer)
            self.buffer.deallocate()
            self.packer.deallocate()
        }

        var bytes: [UInt8] {
            [UInt8](UnsafeRawBufferPointer(start: self.buffer.pointee.data, count: self.buffer.pointee.size))
        }
    }

    func check(_ name: String, _ native: (MsgPackWriter) -> Void, _ reference: (UnsafeMutablePointer<msgpack_packer>) -> Void) {
        let writer = MsgPackWriter(initialCapacityBytes: 8)  // small: growth is exercised too
        native(writer)
        let expected = Reference()
        reference(expected.packer)
        XCTAssertEqual(writer.bytes, expected.bytes, name)
    }

    static let signedSamples: [Int64] = {
        var values: [Int64] = [0, 1, -1, Int64.max, Int64.min]
        for bits in [5, 7, 8, 15, 16, 31, 32, 63] {
            let edge = bits == 63 ? Int64.max : (Int64(1) << bits)
            for delta: Int64 in [-1, 0, 1] {
                values.append(edge &+ delta)
                values.append(-edge &+ delta)
            }
        }
        return values
    }()

    func testIntegersAtEveryWidthBoundary() {
        for value in Self.signedSamples {
            self.check("int64 \(value)", { $0.write(value) }, { _ = msgpack_pack_int64($0, value) })
        }
        var unsigned: [UInt64] = [0, 1, UInt64.max, UInt64.max - 1]
        for bits in [7, 8, 16, 32, 63] {
            let edge = UInt64(1) << bits
            unsigned += [edge - 1, edge, edge + 1]
        }
        for value in unsigned {
            self.check("uint64 \(value)", { $0.write(value) }, { _ = msgpack_pack_uint64($0, value) })
        }
    }

    func testFloatsNilAndBooleans() {
        for value in [0.0, -0.0, 1.5, -2.25e300, .infinity, -.infinity, .nan, .leastNonzeroMagnitude] {
            self.check("double \(value)", { $0.write(value) }, { _ = msgpack_pack_double($0, value) })
            let narrow = Float(value)
            self.check("float \(narrow)", { $0.write(narrow) }, { _ = msgpack_pack_float($0, narrow) })
        }
        self.check("nil", { $0.writeNil() }, { _ = msgpack_pack_nil($0) })
        self.check("true", { $0.write(true) }, { _ = msgpack_pack_true($0) })
        self.check("false", { $0.write(false) }, { _ = msgpack_pack_false($0) })
    }

    func testStringsBinariesAndHeadersAtEveryLengthBoundary() {
        for length in [0, 1, 15, 16, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let text = String(repeating: "é", count: length / 2) + String(repeating: "a", count: length % 2)
            let utf8 = Array(text.utf8)
            self.check("string of \(utf8.count) bytes", { $0.write(text) }) { packer in
                _ = msgpack_pack_str_with_body(packer, utf8, utf8.count)
            }
            let bytes = [UInt8]((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            self.check("binary of \(length) bytes", { $0.writeBinary(bytes) }) { packer in
                _ = msgpack_pack_bin_with_body(packer, bytes, bytes.count)
            }
            self.check("map header \(length)", { $0.writeMapHeader(length) }, { _ = msgpack_pack_map($0, length) })
            self.check("array header \(length)", { $0.writeArrayHeader(length) }, { _ = msgpack_pack_array($0, length) })
        }
        self.check("key", { $0.writeKey("correlation_id") }) { packer in
            _ = msgpack_pack_str_with_body(packer, "correlation_id", 14)
        }
    }

    /// Every length of the short-copy path (1 to 32 bytes) and just past it, for strings and
    /// binaries, after a one-byte prefix so the stores are unaligned.
    func testShortCopiesAtEveryLength() {
        for length in 0...40 {
            let bytes = [UInt8]((0..<length).map { UInt8(truncatingIfNeeded: 0x41 + $0 * 7 % 26) })
            let text = String(decoding: bytes, as: UTF8.self)
            self.check("string of \(length) bytes", {
                $0.write(true)
                $0.write(text)
                $0.writeBinary(bytes)
            }) { packer in
                _ = msgpack_pack_true(packer)
                _ = msgpack_pack_str_with_body(packer, bytes, bytes.count)
                _ = msgpack_pack_bin_with_body(packer, bytes, bytes.count)
            }
        }
    }

    /// Ids are written with plain stores (no memmove): the same bytes as msgpack-c's 16-byte bin,
    /// and the raw forms (no marker) are the id's and the integer's big-endian bytes.
    func testIdsAndRawWritesMatchThePlainBytes() {
        var random = SplitMix64(seed: 11)
        let samples = [MessageID(high: 0, low: 0), MessageID(high: .max, low: .max), MessageID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)]
            + (0..<200).map { _ in MessageID(high: random.next64(), low: random.next64()) }
        for id in samples {
            let bytes = id.bytes
            self.check("id \(id)", { $0.write(id) }) { packer in
                _ = msgpack_pack_bin_with_body(packer, bytes, bytes.count)
            }
            let writer = MsgPackWriter(initialCapacityBytes: 8)
            writer.write(true)  // unaligned from here on
            writer.writeRaw(id)
            writer.writeRawBigEndian(id.low)
            XCTAssertEqual(writer.bytes, [0xc3] + bytes + bytes.suffix(8), "raw \(id)")
        }
    }

    /// A mixed stream after a reset: reset keeps the memory but forgets the bytes.
    func testResetAndAMixedStream() {
        let writer = MsgPackWriter(initialCapacityBytes: 16)
        writer.write("left over from a previous message, long enough to grow the buffer twice over")
        writer.reset()
        XCTAssertEqual(writer.count, 0)
        let value: MCPValue = .map([
            .init("a", .array([.int(-200), .uint(UInt64.max), .float(0.5), .double(-1e-9), .null, .bool(true)])),
            .init("b", .binary([1, 2, 3])), .init(String(repeating: "k", count: 40), .string(String(repeating: "v", count: 300))),
        ])
        writer.write(value)
        let reference = Reference()
        let packer = reference.packer
        _ = msgpack_pack_map(packer, 3)
        _ = msgpack_pack_str_with_body(packer, "a", 1)
        _ = msgpack_pack_array(packer, 6)
        _ = msgpack_pack_int64(packer, -200)
        _ = msgpack_pack_uint64(packer, UInt64.max)
        _ = msgpack_pack_float(packer, 0.5)
        _ = msgpack_pack_double(packer, -1e-9)
        _ = msgpack_pack_nil(packer)
        _ = msgpack_pack_true(packer)
        _ = msgpack_pack_str_with_body(packer, "b", 1)
        _ = msgpack_pack_bin_with_body(packer, [1, 2, 3] as [UInt8], 3)
        let key = Array(String(repeating: "k", count: 40).utf8)
        _ = msgpack_pack_str_with_body(packer, key, key.count)
        let text = Array(String(repeating: "v", count: 300).utf8)
        _ = msgpack_pack_str_with_body(packer, text, text.count)
        XCTAssertEqual(writer.bytes, reference.bytes)
        // And the decoder reads the value back.
        XCTAssertEqual(try EnvelopeDecoder().decodeValue(writer.bytes), value)
    }
}
