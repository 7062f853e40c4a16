import CartritaEnvelope
import XCTest

final class MessageIDTests: XCTestCase {
    /// An entropy source that counts, so the random bits are predictable.
    struct Counting: EntropySource {
        var value: UInt64
        mutating func next64() -> UInt64 {
            defer { self.value &+= 1 }
            return self.value
        }
    }

    func testLayoutVersionVariantAndTimestamp() {
        var entropy = SplitMix64(seed: 42)
        var generator = UUIDv7Generator()
        let milliseconds: Int64 = 0x0123_4567_89AB
        for _ in 0..<1000 {
            let id = generator.next(milliseconds: milliseconds, entropy: &entropy)
            let bytes = id.bytes
            XCTAssertEqual(bytes.count, 16)
            XCTAssertEqual(Array(bytes[0..<6]), [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB], "48-bit big-endian unix_ts_ms")
            XCTAssertEqual(bytes[6] >> 4, 7, "version nibble")
            XCTAssertEqual(bytes[8] >> 6, 0b10, "RFC 9562 variant")
            XCTAssertEqual(id.version, 7)
            XCTAssertTrue(id.hasRFCVariant)
            XCTAssertTrue(id.isUUIDv7)
            XCTAssertEqual(id.unixMilliseconds, milliseconds)
        }
    }

    func testFixedEntropyGivesExactBits() {
        // Counter = entropy & (2^41 - 1) = 0x1_2345_6789 -> counter_high 12 bits, counter_low 30 bits;
        // the 32 random bits come from the second draw.
        var entropy = Counting(value: 0x1_2345_6789)
        var generator = UUIDv7Generator()
        let id = generator.next(milliseconds: 1, entropy: &entropy)
        let counter: UInt64 = 0x1_2345_6789
        let expectedHigh: UInt64 = (1 << 16) | (7 << 12) | ((counter >> 30) & 0xFFF)
        let expectedLow: UInt64 = (0b10 << 62) | ((counter & 0x3FFF_FFFF) << 32) | (0x1_2345_678A & 0xFFFF_FFFF)
        XCTAssertEqual(id.high, expectedHigh)
        XCTAssertEqual(id.low, expectedLow)
    }

    func testMonotonicWithinOneMillisecond() {
        var entropy = SplitMix64(seed: 7)
        var generator = UUIDv7Generator()
        var previous = generator.next(milliseconds: 1_700_000_000_000, entropy: &entropy)
        for index in 1..<100_000 {
            let id = generator.next(milliseconds: 1_700_000_000_000, entropy: &entropy)
            if !(previous < id) {
                XCTFail("id \(index) \(id) does not follow \(previous)")
                return
            }
            XCTAssertEqual(id.unixMilliseconds, 1_700_000_000_000)
            previous = id
        }
        // Byte order agrees with Comparable order.
        let first = generator.next(milliseconds: 1_700_000_000_000, entropy: &entropy)
        let second = generator.next(milliseconds: 1_700_000_000_000, entropy: &entropy)
        XCTAssertTrue(first.bytes.lexicographicallyPrecedes(second.bytes))
    }

    func testMonotonicWhenTheClockStepsBack() {
        var entropy = SplitMix64(seed: 8)
        var generator = UUIDv7Generator()
        var clock = ManualClock(milliseconds: 5_000_000)
        var ids = [generator.next(clock: &clock, entropy: &entropy)]
        clock.milliseconds = 4_000_000  // NTP stepped the clock back by 1000 s
        for _ in 0..<1000 { ids.append(generator.next(clock: &clock, entropy: &entropy)) }
        clock.milliseconds = 5_000_001  // and forward again
        ids.append(generator.next(clock: &clock, entropy: &entropy))
        for index in 1..<ids.count {
            XCTAssertLessThan(ids[index - 1], ids[index], "at \(index)")
        }
        XCTAssertEqual(ids[1].unixMilliseconds, 5_000_000, "the timestamp never goes back")
        XCTAssertEqual(ids.last!.unixMilliseconds, 5_000_001)
        XCTAssertTrue(ids.allSatisfy(\.isUUIDv7))
    }

    func testTimestampClampsToItsRange() {
        var entropy = SplitMix64(seed: 9)
        var generator = UUIDv7Generator()
        XCTAssertEqual(generator.next(milliseconds: -5, entropy: &entropy).unixMilliseconds, 0)
        var other = UUIDv7Generator()
        XCTAssertEqual(other.next(milliseconds: Int64.max, entropy: &entropy).unixMilliseconds, (1 << 48) - 1)
    }

    func testSameSeedGivesSameIDs() {
        func run(seed: UInt64) -> [MessageID] {
            var entropy = SplitMix64(seed: seed)
            var generator = UUIDv7Generator()
            return (0..<500).map { generator.next(milliseconds: 1_000 + Int64($0 / 7), entropy: &entropy) }
        }
        XCTAssertEqual(run(seed: 1234), run(seed: 1234))
        XCTAssertNotEqual(run(seed: 1234), run(seed: 1235))
    }

    func testSplitMix64KnownValues() {
        // Reference values of SplitMix64 with seed 0 (Vigna's splitmix64.c).
        var random = SplitMix64(seed: 0)
        XCTAssertEqual(random.next64(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(random.next64(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(random.next64(), 0x06C4_5D18_8009_454F)
    }

    func testTextRoundTrip() {
        var entropy = SplitMix64(seed: 11)
        var generator = UUIDv7Generator()
        for index in 0..<2000 {
            let id = generator.next(milliseconds: Int64(index) * 977, entropy: &entropy)
            let text = id.description
            XCTAssertEqual(text.utf8.count, 36)
            XCTAssertEqual(text, text.lowercased())
            XCTAssertEqual(MessageID(string: text), id)
            XCTAssertEqual(MessageID(string: text.uppercased()), id)
            XCTAssertEqual(MessageID(bytes: id.bytes), id)
        }
    }

    func testRFC9562ExampleValue() {
        // RFC 9562 Appendix A.6: 017F22E2-79B0-7CC3-98C4-DC0C0C07398F, 2022-02-22T19:22:22Z.
        let id = MessageID(string: "017F22E2-79B0-7CC3-98C4-DC0C0C07398F")!
        XCTAssertEqual(id.description, "017f22e2-79b0-7cc3-98c4-dc0c0c07398f")
        XCTAssertTrue(id.isUUIDv7)
        XCTAssertEqual(id.unixMilliseconds, 0x017F_22E2_79B0)
        XCTAssertEqual(ISO8601Milliseconds.format(id.unixMilliseconds), "2022-02-22T19:22:22.000Z")
        // A v4 UUID is not a v7.
        XCTAssertFalse(MessageID(string: "f47ac10b-58cc-4372-a567-0e02b2c3d479")!.isUUIDv7)
        XCTAssertEqual(MessageID(string: "f47ac10b-58cc-4372-a567-0e02b2c3d479")!.version, 4)
    }

    func testMalformedTextIsRejected() {
        let bad = [
            "", "017f22e2-79b0-7cc3-98c4-dc0c0c07398", "017f22e2-79b0-7cc3-98c4-dc0c0c07398f0",
            "017f22e279b0-7cc3-98c4-dc0c0c07398f-", "017f22e2-79b0-7cc3-98c4_dc0c0c07398f",
            "017f22e2-79b0-7cc3-98c4-dc0c0c07398g", "017f22e279b07cc398c4dc0c0c07398f",
            "017f22e279b07cc398c4dc0c0c07398f0000", "0-17f22e2-79b0-7cc3-98c4dc0c0c07398f",
            "017f22e2-79b0-7cc3-98c4-dc0c0c0739é",
        ]
        for text in bad { XCTAssertNil(MessageID(string: text), text) }
        XCTAssertNil(MessageID(bytes: [UInt8](repeating: 0, count: 15)))
        XCTAssertNil(MessageID(bytes: [UInt8](repeating: 0, count: 17)))
    }

    func testTraceAndSpanIDs() {
        let trace = TraceID(hex: "0af7651916cd43dd8448eb211c80319c")!
        XCTAssertEqual(trace.description, "0af7651916cd43dd8448eb211c80319c")
        XCTAssertEqual(trace.bytes.count, 16)
        XCTAssertEqual(TraceID(hex: "0AF7651916CD43DD8448EB211C80319C"), trace)
        XCTAssertNil(TraceID(hex: "0af7651916cd43dd8448eb211c80319"))
        XCTAssertNil(TraceID(hex: "0af7651916cd43dd8448eb211c80319z"))
        XCTAssertFalse(TraceID(high: 0, low: 0).isValid)
        let span = SpanID(hex: "b7ad6b7169203331")!
        XCTAssertEqual(span.rawValue, 0xb7ad_6b71_6920_3331)
        XCTAssertEqual(span.description, "b7ad6b7169203331")
        XCTAssertEqual(SpanID(bytes: span.bytes), span)
        XCTAssertNil(SpanID(hex: "b7ad6b716920333"))
        XCTAssertFalse(SpanID(0).isValid)
    }
}
