import CartritaEnvelope
import XCTest

@testable import CartritaCodec

/// Random damage to valid encodings: the decoder either succeeds or throws a `CodecError`, never
/// crashes; and whatever it accepts re-encodes to bytes that decode to the same value.
final class MutationRobustnessTests: XCTestCase {
    static let seed: UInt64 = 0xF022_0001
    static let iterations = 50_000

    static let interesting: [UInt8] = [
        0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb,
        0xcc, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
    ]

    struct Mutator {
        var random: SplitMix64

        mutating func int(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(self.random.next64() % UInt64(bound)) }

        mutating func mutate(_ input: [UInt8], donor: [UInt8]) -> [UInt8] {
            var bytes = input
            for _ in 0..<(1 + self.int(3)) {
                switch self.int(9) {
                case 0, 1:  // bit flip
                    guard !bytes.isEmpty else { continue }
                    bytes[self.int(bytes.count)] ^= 1 << UInt8(self.int(8))
                case 2:  // interesting byte
                    guard !bytes.isEmpty else { continue }
                    bytes[self.int(bytes.count)] = MutationRobustnessTests.interesting[self.int(MutationRobustnessTests.interesting.count)]
                case 3:  // random byte
                    guard !bytes.isEmpty else { continue }
                    bytes[self.int(bytes.count)] = UInt8(truncatingIfNeeded: self.random.next64())
                case 4:  // insertion
                    let count = 1 + self.int(4)
                    let at = self.int(bytes.count + 1)
                    bytes.insert(contentsOf: (0..<count).map { _ in UInt8(truncatingIfNeeded: self.random.next64()) }, at: at)
                case 5:  // deletion
                    guard !bytes.isEmpty else { continue }
                    let at = self.int(bytes.count)
                    bytes.removeSubrange(at..<min(bytes.count, at + 1 + self.int(8)))
                case 6:  // truncation
                    bytes = Array(bytes.prefix(self.int(bytes.count + 1)))
                case 7:  // duplicate a chunk in place
                    guard !bytes.isEmpty else { continue }
                    let start = self.int(bytes.count)
                    let end = min(bytes.count, start + 1 + self.int(32))
                    bytes.insert(contentsOf: bytes[start..<end], at: self.int(bytes.count + 1))
                default:  // splice in a chunk of another encoding
                    guard !donor.isEmpty, !bytes.isEmpty else { continue }
                    let start = self.int(donor.count)
                    let chunk = donor[start..<min(donor.count, start + 1 + self.int(48))]
                    let at = self.int(bytes.count)
                    bytes.replaceSubrange(at..<min(bytes.count, at + chunk.count), with: chunk)
                }
            }
            return bytes
        }
    }

    func testMutatedInputsNeverCrashAndAcceptedOnesRoundTrip() throws {
        var generator = EnvelopeGenerator(seed: Self.seed)
        generator.allowNaN = true
        generator.allowBig = false
        let encoder = EnvelopeEncoder()
        let decoder = EnvelopeDecoder()
        let writer = MsgPackWriter()
        // A pool of valid inputs: envelopes of every type, and records.
        var envelopes: [[UInt8]] = []
        var records: [[UInt8]] = []
        for index in 0..<280 {
            let envelope = generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count])
            envelopes.append(try encoder.encode(envelope))
            writer.reset()
            writer.writeRecord(header: generator.header(), envelope: try encoder.encodeBody(envelope))
            records.append(writer.bytes)
        }
        var mutator = Mutator(random: SplitMix64(seed: Self.seed))
        var accepted = 0
        var acceptedRecords = 0
        var codes: [String: Int] = [:]
        for iteration in 0..<Self.iterations {
            let asRecord = iteration % 3 == 2
            let pool = asRecord ? records : envelopes
            let base = pool[mutator.int(pool.count)]
            let donor = (envelopes + records)[mutator.int(envelopes.count + records.count)]
            let input = mutator.mutate(base, donor: donor)
            let context = "seed \(Self.seed) iteration \(iteration) input \(Hex.encode(input))"
            if asRecord {
                do {
                    let record = try decoder.decodeRecord(input)
                    acceptedRecords += 1
                    writer.reset()
                    writer.writeRecord(header: record.header, envelope: try encoder.encodeBody(record.envelope))
                    let again = try decoder.decodeRecord(writer.bytes)
                    XCTAssertEqual(again.header, record.header, context)
                    XCTAssertTrue(sameBytes(again.envelope, record.envelope), context)
                } catch {
                    codes[error.code.rawValue, default: 0] += 1
                }
            } else {
                do {
                    let envelope = try decoder.decode(input)
                    accepted += 1
                    let reencoded = try encoder.encode(envelope)
                    let again = try decoder.decode(reencoded)
                    XCTAssertEqual(try encoder.encode(again), reencoded, context)
                    if !sameBytes(again, envelope) { XCTFail("re-encode round trip differs, \(context)") }
                } catch {
                    codes[error.code.rawValue, default: 0] += 1
                }
            }
            // Never crash on the generic value API either.
            _ = try? decoder.decodeValue(input)
            // The fast structural scan accepts exactly what the path-tracking scan accepts.
            input.withUnsafeBytes { raw in
                guard raw.count > 0 else { return }
                var slow = Preflight(bytes: raw, limits: .default)
                let slowAccepts = (try? slow.run()) != nil
                if Preflight.fastScan(raw, limits: .default) != slowAccepts {
                    XCTFail("fast scan says \(!slowAccepts), slow scan says \(slowAccepts), \(context)")
                }
            }
        }
        print("mutation test (seed \(Self.seed)): \(Self.iterations) inputs, \(accepted) envelopes and \(acceptedRecords) records accepted; errors: \(codes.sorted { $0.key < $1.key })")
        XCTAssertGreaterThan(accepted + acceptedRecords, 100, "some mutations (e.g. flipped bits inside strings) should still decode")
        XCTAssertGreaterThan(codes.count, 8, "mutations should reach many different checks")
    }

    /// The fast and slow structural scans agree under tight limits too (every limit is hit).
    func testFastAndSlowScansAgreeUnderTightLimits() throws {
        var generator = EnvelopeGenerator(seed: 0xF022_0003)
        generator.allowBig = false
        let encoder = EnvelopeEncoder()
        var mutator = Mutator(random: SplitMix64(seed: 0xF022_0003))
        let limitSets = [
            CodecLimits(maxStringBytes: 8, maxBinaryBytes: 8, maxDepth: 3, maxContainerEntries: 4),
            CodecLimits(maxStringBytes: 0, maxBinaryBytes: 0, maxDepth: 1, maxContainerEntries: 15),
            CodecLimits(maxDepth: 0),
            CodecLimits(maxDepth: -3, maxContainerEntries: -1),
        ]
        var disagreements = 0
        for index in 0..<3_000 {
            let base = try encoder.encode(generator.envelope(type: MessageType.allCases[index % MessageType.allCases.count]))
            let input = index % 2 == 0 ? base : mutator.mutate(base, donor: base)
            for limits in limitSets {
                input.withUnsafeBytes { raw in
                    guard raw.count > 0 else { return }
                    var slow = Preflight(bytes: raw, limits: limits)
                    let slowAccepts = (try? slow.run()) != nil
                    if Preflight.fastScan(raw, limits: limits) != slowAccepts { disagreements += 1 }
                }
                // And decoding under nonsense limits fails cleanly instead of crashing.
                _ = try? EnvelopeDecoder(limits: limits).decode(input)
            }
        }
        XCTAssertEqual(disagreements, 0)
    }

    /// Pure random bytes, of every small length, never crash.
    func testRandomBytes() {
        var random = SplitMix64(seed: 0xF022_0002)
        let decoder = EnvelopeDecoder()
        for _ in 0..<20_000 {
            let count = Int(random.next64() % 64)
            let input = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next64()) }
            _ = try? decoder.decode(input)
            _ = try? decoder.decodeRecord(input)
        }
    }
}
