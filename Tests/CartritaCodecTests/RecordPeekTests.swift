import CartritaCodec
import CartritaEnvelope
import XCTest

/// `RecordPeek` reads what the record writer wrote: the same header and routing fields as a full
/// decode, and the envelope's pairs exactly as `encodeBody` writes them (recovery compares
/// replayed copies with those bytes). Anything it cannot read is nil, never a crash.
final class RecordPeekTests: XCTestCase {
    func record(_ envelope: Envelope, seq: UInt64, clock: Int64) throws -> [UInt8] {
        let encoded = try EnvelopeEncoder().encodeBody(envelope)
        let writer = MsgPackWriter()
        let header = RecordHeader(
            seq: seq, prevHash: Digest32(words: (seq, 2, 3, 4)), actorPrevSeq: seq / 2, clockMilliseconds: clock, entropy: seq &* 77)
        writer.writeRecord(header: header, envelope: encoded)
        return writer.bytes
    }

    func testThePeekAgreesWithTheDecoderOnGeneratedTraffic() throws {
        var traffic = SampleTraffic(seed: 9, payloadBytes: 300)
        let decoder = EnvelopeDecoder()
        let encoder = EnvelopeEncoder()
        // Clocks of every integer width, negative ones too (a clock may be set before 1970).
        let clocks: [Int64] = [0, 5, -1, -100, 200, 70_000, -70_000, 1_764_028_800_000, Int64.min, Int64.max]
        for index in 0..<300 {
            let envelope = traffic.next()
            let seq = UInt64(index) * 1_234_567 + 1
            let bytes = try self.record(envelope, seq: seq, clock: clocks[index % clocks.count])
            let decoded = try decoder.decodeRecord(bytes)
            let peek = try XCTUnwrap(bytes.withUnsafeBytes { RecordPeek($0) }, "record \(index)")
            XCTAssertEqual(peek.header, decoded.header)
            XCTAssertEqual(peek.id, envelope.id)
            XCTAssertEqual(peek.correlationID, envelope.correlationID)
            XCTAssertEqual(String(decoding: bytes[peek.sender], as: UTF8.self), envelope.sender.rawValue)
            XCTAssertEqual(String(decoding: bytes[peek.recipient], as: UTF8.self), envelope.recipient.rawValue)
            let same = encoder.withEncodedBody(envelope) { body, fields in
                fields == peek.envelopeFieldCount && Array(body) == Array(bytes[peek.envelopeBodyStart...])
            }
            XCTAssertTrue(same, "the envelope's pairs are the record's tail, as encodeBody writes them")
        }
    }

    func testAnythingElseIsNilNotACrash() throws {
        var traffic = SampleTraffic(seed: 3)
        let bytes = try self.record(traffic.next(), seq: 42, clock: 1_000)
        // Every truncation.
        for cut in 0..<bytes.count where cut < 160 {
            _ = Array(bytes.prefix(cut)).withUnsafeBytes { RecordPeek($0) }
        }
        XCTAssertNil([UInt8]().withUnsafeBytes { RecordPeek($0) })
        // Every single-byte change in the part the peek reads: nil, or a peek whose fields
        // still lie inside the bytes.
        for position in 0..<min(160, bytes.count) {
            for value: UInt8 in [0x00, 0x7f, 0xa1, 0xc4, 0xcf, 0xd3, 0xde, 0xff] {
                var changed = bytes
                changed[position] = value
                if let peek = changed.withUnsafeBytes({ RecordPeek($0) }) {
                    XCTAssertLessThanOrEqual(peek.sender.upperBound, changed.count)
                    XCTAssertLessThanOrEqual(peek.recipient.upperBound, changed.count)
                    XCTAssertLessThanOrEqual(peek.envelopeBodyStart, changed.count)
                }
            }
        }
        // Another layout (a record of a future format, keys in another order): nil.
        var other = bytes
        let v = try XCTUnwrap(other.firstIndex(of: UInt8(ascii: "v")))
        other[v + 1] = 2  // format version 2
        XCTAssertNil(other.withUnsafeBytes { RecordPeek($0) })
    }
}
