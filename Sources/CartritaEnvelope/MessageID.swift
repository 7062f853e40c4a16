// MARK: - MessageID (UUIDv7, RFC 9562)

/// A 16-byte UUID. Envelope ids, parent ids and correlation ids are UUIDv7: 48 bits of Unix
/// milliseconds, the version nibble 7, a counter and random bits, the RFC 4122 variant.
///
/// Stored as two big-endian halves so that comparing (high, low) orders ids the way their bytes
/// order, which is time order for UUIDv7.
public struct MessageID: Hashable, Comparable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// What dictionaries and sets keyed by id hash with. Replay looks ids up several times per
    /// record (what replay made, by id; deferred deliveries, by id), and Hasher's SipHash with
    /// its seeding and finalization cost more than everything else about those lookups.
    ///
    /// One 64×64→128-bit multiply of the two halves, each mixed with the table's seed, folded
    /// (the mixing of wyhash): every input bit reaches the result, and without the per-process
    /// seed nobody can choose ids that collide. Equal ids hash equal, as `==` requires; the
    /// values differ from `hash(into:)`'s, which no table mixes with these.
    @inlinable
    public func _rawHashValue(seed: Int) -> Int {
        let key = UInt64(bitPattern: Int64(seed))
        let product = (self.high ^ key ^ 0xA076_1D64_78BD_642F).multipliedFullWidth(by: self.low ^ (key &* 0xE703_7ED1_A0B4_28DB) ^ 0x8EBC_6AF0_9C88_C6E3)
        return Int(bitPattern: UInt(truncatingIfNeeded: product.high ^ product.low))
    }

    /// From exactly 16 bytes, most significant first. Returns nil for any other count.
    /// Non-generic on purpose: the decoder calls it per id, across modules, where a generic
    /// initializer would run unspecialized and look up type metadata every time.
    @inlinable
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 16 else { return nil }
        self.init(
            high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    @inlinable
    public init?(bytes: [UInt8]) {
        guard let id = bytes.withUnsafeBytes({ MessageID(bytes: $0) }) else { return nil }
        self = id
    }

    /// The canonical text form, `xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx`, lower case.
    public init?(string: String) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        var pending: UInt8? = nil
        for (offset, character) in string.utf8.enumerated() {
            if character == UInt8(ascii: "-") {
                guard [8, 13, 18, 23].contains(offset) else { return nil }
                continue
            }
            guard let nibble = Hex.nibble(character) else { return nil }
            if let high = pending {
                bytes.append(high << 4 | nibble)
                pending = nil
            } else {
                pending = nibble
            }
        }
        guard pending == nil, string.utf8.count == 36 else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] { self.withBytes { [UInt8]($0) } }

    /// Calls `body` with the 16 bytes, most significant first, without allocating.
    @inlinable
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var pair = (self.high.bigEndian, self.low.bigEndian)
        return try withUnsafeBytes(of: &pair) { try body($0) }
    }

    public var version: Int { Int((self.high >> 12) & 0xF) }

    /// True when the variant bits are `10` (RFC 9562 §4.1).
    public var hasRFCVariant: Bool { (self.low >> 62) == 0b10 }

    public var isUUIDv7: Bool { self.version == 7 && self.hasRFCVariant }

    /// The Unix millisecond timestamp of a UUIDv7.
    public var unixMilliseconds: Int64 { Int64(bitPattern: self.high >> 16) }

    public static func < (lhs: MessageID, rhs: MessageID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

extension MessageID: CustomStringConvertible {
    public var description: String {
        let hex = Hex.encode(self.bytes)
        var result = ""
        result.reserveCapacity(36)
        for (offset, character) in hex.enumerated() {
            if offset == 8 || offset == 12 || offset == 16 || offset == 20 { result.append("-") }
            result.append(character)
        }
        return result
    }
}

// MARK: - Injected time and entropy

/// The runtime's clock. The deterministic core never reads the wall clock itself: a clock is
/// handed in, and what it returned is recorded in the log with the message.
public protocol MillisecondClock {
    /// Milliseconds since the Unix epoch.
    mutating func nowMilliseconds() -> Int64
}

/// The runtime's source of randomness. The deterministic core never calls the system random
/// generator: entropy is handed in and recorded in the log.
public protocol EntropySource {
    mutating func next64() -> UInt64
}

/// SplitMix64: tiny, fast, and fully determined by its seed. Good enough for ids and schedules;
/// not for secrets.
public struct SplitMix64: EntropySource, RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) {
        self.state = seed
    }

    public mutating func next64() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func next() -> UInt64 { self.next64() }
}

/// A clock that returns what it is told: for tests, simulation and replay.
public struct ManualClock: MillisecondClock, Sendable {
    public var milliseconds: Int64

    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    public mutating func nowMilliseconds() -> Int64 { self.milliseconds }
}

// MARK: - UUIDv7 generation

/// Generates UUIDv7 values that increase strictly, even when many are made within one
/// millisecond or when the clock steps backwards.
///
/// Layout (RFC 9562 §5.7 with the "monotonic random" counter of §6.2, method 2):
/// `unix_ts_ms:48 | ver:4 | counter_high:12 | var:2 | counter_low:30 | random:32`.
/// The 42-bit counter starts at a random value with its top bit clear on each new millisecond
/// (so at least 2^41 ids fit in one millisecond) and increments within it. If it ever
/// overflows, the timestamp field moves one millisecond ahead of the clock, which the RFC allows.
public struct UUIDv7Generator: Sendable {
    private var lastMilliseconds: Int64 = -1
    private var counter: UInt64 = 0

    static let counterBits: UInt64 = 42
    static let counterMask: UInt64 = (1 << counterBits) - 1

    public init() {}

    public mutating func next(
        clock: inout some MillisecondClock,
        entropy: inout some EntropySource
    ) -> MessageID {
        self.next(milliseconds: clock.nowMilliseconds(), entropy: &entropy)
    }

    public mutating func next(milliseconds: Int64, entropy: inout some EntropySource) -> MessageID {
        let now = max(0, min(milliseconds, Int64(1 << 48) - 1))
        if now > self.lastMilliseconds {
            self.lastMilliseconds = now
            self.counter = entropy.next64() & (Self.counterMask >> 1)
        } else {
            // Same millisecond, or the clock went back: stay monotonic.
            self.counter += 1
            if self.counter > Self.counterMask {
                self.lastMilliseconds += 1
                self.counter = entropy.next64() & (Self.counterMask >> 1)
            }
        }
        let timestamp = UInt64(self.lastMilliseconds)
        let counterHigh = (self.counter >> 30) & 0xFFF
        let counterLow = self.counter & 0x3FFF_FFFF
        let random = entropy.next64() & 0xFFFF_FFFF
        let high = (timestamp << 16) | (0x7 << 12) | counterHigh
        let low = (UInt64(0b10) << 62) | (counterLow << 32) | random
        return MessageID(high: high, low: low)
    }
}
