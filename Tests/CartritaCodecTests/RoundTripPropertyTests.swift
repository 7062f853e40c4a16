import CartritaCodec
import CartritaEnvelope
import XCTest

/// decode(encode(e)) == e over thousands of generated envelopes, and the same for records.
final class RoundTripPropertyTests: XCTestCase {
    static let seeds: [UInt64] = [0x5EED_0001, 0x5EED_0002, 0xC0FF_EE00_1234, 42]
    static let perSeed = 1_600  // 6,400 envelopes in all

    func testEnvelopeRoundTripProperty() throws {
        let encoder = EnvelopeEncoder()
        let otherEncoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        var typesSeen = Set<MessageType>()
        var count = 0
        for seed in Self.seeds {
            var generator = EnvelopeGenerator(seed: seed)
            for index in 0..<Self.perSeed {
                let type = MessageType.allCases[index % MessageType.allCases.count]
                let envelope = generator.envelope(type: type)
                let context = "seed \(seed) index \(index) type \(type)"
                do {
                    try envelope.validate()
                } catch {
                    XCTFail("generator made an invalid envelope (\(error)), \(context)")
                    continue
                }
                let bytes = try encoder.encode(envelope)
                XCTAssertEqual(try encoder.encode(envelope), bytes, "encode is not deterministic, \(context)")
                XCTAssertEqual(try otherEncoder.encode(envelope), bytes, "two encoders disagree, \(context)")
                let decoded: Envelope
                do {
                    decoded = try decoder.decode(bytes)
                } catch {
                    XCTFail("decode failed: \(error), \(context)")
                    continue
                }
                if decoded != envelope {
                    XCTFail("round trip changed the envelope, \(context)\n\(envelope)\n\(decoded)")
                    return
                }
                XCTAssertEqual(try encoder.encode(decoded), bytes, "re-encoding differs, \(context)")
                // encodeBody is the same pairs without the map header.
                let body = try encoder.encodeBody(envelope)
                XCTAssertEqual(body.fieldCount, envelope.parentID == nil ? 14 : 15)
                XCTAssertEqual([UInt8(0x80 | body.fieldCount)] + body.body, bytes, context)
                typesSeen.insert(decoded.type)
                count += 1
            }
        }
        XCTAssertGreaterThanOrEqual(count, 5_000)
        XCTAssertEqual(typesSeen, Set(MessageType.allCases))
    }

    /// With NaN allowed in free-form values `==` cannot hold, but the bytes must.
    /// `append` writes exactly `encode`'s bytes after whatever the writer holds, envelope after
    /// envelope (the simulator's trace digest hashes them that way).
    func testAppendedEnvelopesAreTheEncodedBytes() throws {
        let encoder = EnvelopeEncoder()
        let gatherer = EnvelopeEncoder(initialCapacityBytes: 64)  // small: growth is exercised too
        gatherer.writer.writeRawBigEndian(0xAB)
        var expected: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0xAB]
        var generator = EnvelopeGenerator(seed: 0xA99E_4D)
        for index in 0..<800 {
            let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
            expected += try encoder.encode(envelope)
            gatherer.append(envelope)
            if index % 100 == 99 {
                XCTAssertEqual(gatherer.writer.bytes, expected, "after \(index + 1) envelopes")
                gatherer.writer.reset()
                expected = []
            }
        }
        XCTAssertEqual(gatherer.writer.bytes, expected)
    }

    func testRoundTripWithNaNIsByteExact() throws {
        let encoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        var generator = EnvelopeGenerator(seed: 0xBAD_F00D)
        generator.allowNaN = true
        var sawNaN = false
        for index in 0..<1_000 {
            let envelope = generator.envelope(type: index % 2 == 0 ? .taskRequest : .taskResponse)
            let bytes = try encoder.encode(envelope)
            let decoded = try decoder.decode(bytes)
            XCTAssertEqual(try encoder.encode(decoded), bytes, "seed 0xBAD_F00D index \(index)")
            if decoded != envelope { sawNaN = true }
        }
        XCTAssertTrue(sawNaN, "the generator should have produced some NaN")
    }

    func testRecordRoundTripProperty() throws {
        let encoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        let writer = MsgPackWriter()
        var count = 0
        for seed: UInt64 in [7, 8, 9] {
            var generator = EnvelopeGenerator(seed: seed)
            for index in 0..<1_700 {
                let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
                let header = generator.header()
                let context = "seed \(seed) index \(index)"
                let body = try encoder.encodeBody(envelope)
                writer.reset()
                writer.writeRecord(header: header, envelope: body)
                let bytes = writer.bytes
                let record: LogRecord
                do {
                    record = try decoder.decodeRecord(bytes)
                } catch {
                    XCTFail("decodeRecord failed: \(error), \(context)")
                    continue
                }
                XCTAssertEqual(record.header, header, context)
                if record.envelope != envelope {
                    XCTFail("record round trip changed the envelope, \(context)")
                    return
                }
                XCTAssertEqual(record, LogRecord(header: header, envelope: envelope))
                // Writing the same record twice gives the same bytes; the raw-pointer API agrees.
                writer.reset()
                body.body.withUnsafeBytes { raw in writer.writeRecord(header: header, envelopeBody: raw, envelopeFieldCount: body.fieldCount) }
                XCTAssertEqual(writer.bytes, bytes, context)
                // An independent reader sees one flat map: header keys, then the envelope keys.
                let (tree, minimal) = try MiniReader.read(bytes)
                XCTAssertTrue(minimal, context)
                XCTAssertEqual(tree, SpecTree.record(header, envelope), context)
                count += 1
            }
        }
        XCTAssertGreaterThanOrEqual(count, 5_000)
    }

    /// The decoder's zone is reused: decoding many envelopes with one decoder, interleaved with
    /// failures, never lets one input leak into the next.
    func testDecoderReuseAcrossFailures() throws {
        let encoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        var generator = EnvelopeGenerator(seed: 31337)
        for index in 0..<500 {
            let envelope = generator.envelope()
            let bytes = try encoder.encode(envelope)
            XCTAssertThrowsError(try decoder.decode(Array(bytes.dropLast())))
            XCTAssertThrowsError(try decoder.decode(bytes + [0]))
            XCTAssertEqual(try decoder.decode(bytes), envelope, "index \(index)")
        }
    }

    func testBigStringsAndBinariesRoundTrip() throws {
        var envelope = sampleEnvelope()
        let big = String(repeating: "é", count: 40_000)  // 80,000 bytes: str32
        envelope.context.userID = String(repeating: "u", count: 65_536)
        envelope.payload = .streamData(StreamData(streamID: envelope.id, index: 3, chunk: [UInt8](repeating: 7, count: 70_000)))
        let encoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        XCTAssertEqual(try decoder.decode(try encoder.encode(envelope)), envelope)
        envelope.payload = .taskResponse(TaskResponse(status: .completed, result: .map([.init(big, .string(big))])))
        XCTAssertEqual(try decoder.decode(try encoder.encode(envelope)), envelope)
        let (tree, minimal) = try MiniReader.read(try encoder.encode(envelope))
        XCTAssertTrue(minimal)
        XCTAssertEqual(tree, SpecTree.envelope(envelope))
    }
}
