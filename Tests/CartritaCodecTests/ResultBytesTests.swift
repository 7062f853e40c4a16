import CartritaEnvelope
import XCTest

@testable import CartritaCodec

/// An encoder that reuses the bytes of results it wrote before writes exactly what a plain one
/// writes: for results forwarded unchanged (found again), for copies changed after they were
/// written (copy-on-write gives them new storage), and for everything else.
final class ResultBytesTests: XCTestCase {
    func testReusedResultBytesEqualPlainEncoding() throws {
        var generator = EnvelopeGenerator(seed: 11)
        let plain = EnvelopeEncoder()
        let reusing = EnvelopeEncoder(reusesResultBytes: true)
        var earlier: [Envelope] = []
        for step in 0..<3_000 {
            var envelope: Envelope
            switch step % 4 {
            case 0:
                // A new answer with a result large enough to be kept.
                envelope = generator.envelope(type: .taskResponse)
                let entries = (0..<(1 + step % 7)).map { MCPValue.MapEntry("key_\($0)", generator.value(depth: 2)) }
                envelope.payload = .taskResponse(TaskResponse(status: .completed, result: .map(entries)))
            case 1, 2:
                // An earlier answer forwarded: same result storage, other envelope fields.
                guard let previous = earlier.last else { continue }
                envelope = generator.envelope(type: .taskResponse)
                envelope.payload = previous.payload
            default:
                // An earlier answer whose result was changed after it was written.
                guard let previous = earlier.last, case .taskResponse(var response) = previous.payload,
                    case .map(var entries)? = response.result
                else { continue }
                entries[0].value = .int(Int64(step))
                response.result = .map(entries)
                envelope = generator.envelope(type: .taskResponse)
                envelope.payload = .taskResponse(response)
            }
            earlier.append(envelope)
            if earlier.count > 600 { earlier.removeFirst(300) }
            XCTAssertEqual(try reusing.encode(envelope), try plain.encode(envelope), "step \(step)")
        }
    }

    /// Other payloads and every other envelope are untouched by the option.
    func testOtherEnvelopesEncodeAsBefore() throws {
        var generator = EnvelopeGenerator(seed: 12)
        let plain = EnvelopeEncoder()
        let reusing = EnvelopeEncoder(reusesResultBytes: true)
        for step in 0..<2_000 {
            let envelope = generator.envelope()
            XCTAssertEqual(try reusing.encode(envelope), try plain.encode(envelope), "step \(step)")
            XCTAssertEqual(try reusing.encode(envelope), try plain.encode(envelope), "step \(step), again")
        }
    }
}
