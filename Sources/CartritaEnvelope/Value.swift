// MARK: - MCPValue: a msgpack value

/// A msgpack value as the envelope carries it in free-form places (task parameters, input data,
/// results, unknown payload fields are NOT among them: see Schemas/envelope-msgpack.md).
///
/// Canonical form, which the codec produces on decode and the property tests rely on:
/// - a non-negative integer that fits Int64 is `.int`; `.uint` only holds values above Int64.max;
/// - map keys are strings, unique, and kept in their order (never a Dictionary: iteration order
///   must not depend on hashing);
/// - float32 stays `.float`, float64 `.double`, so nothing is widened behind the caller's back.
public enum MCPValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case float(Float)
    case double(Double)
    case string(String)
    case binary([UInt8])
    case array([MCPValue])
    case map([MapEntry])

    public struct MapEntry: Hashable, Sendable {
        public var key: String
        public var value: MCPValue

        public init(_ key: String, _ value: MCPValue) {
            self.key = key
            self.value = value
        }
    }

    public static func map(_ pairs: KeyValuePairs<String, MCPValue>) -> MCPValue {
        .map(pairs.map { MapEntry($0.key, $0.value) })
    }

    /// The value under `key` when this is a map.
    public subscript(key: String) -> MCPValue? {
        guard case .map(let entries) = self else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// The first key that appears twice, if any. Keys are compared by their UTF-8 bytes, as
    /// msgpack stores them: Swift's `==` on String would treat "é" and "e\u{301}" (two
    /// different keys on the wire) as one. Small maps (the usual case) compare pairwise; a Set
    /// of byte arrays is only built for large ones.
    public static func firstDuplicateKey(_ entries: [MapEntry]) -> String? {
        let count = entries.count
        guard count > 1 else { return nil }
        if count <= 16 {
            for later in 1..<count {
                let key = entries[later].key
                for earlier in 0..<later where Self.sameBytes(entries[earlier].key, key) { return key }
            }
            return nil
        }
        // Larger maps (an agent's result, a column's statistics): an open-addressing table of
        // entry indexes keyed by a hash of the key's bytes, instead of a set of byte arrays
        // (one allocation per key). Collisions compare the bytes, so only equal keys match.
        var capacity = 32
        while capacity < 2 * count { capacity <<= 1 }
        let mask = capacity - 1
        return withUnsafeTemporaryAllocation(of: Int32.self, capacity: capacity) { slots -> String? in
            slots.initialize(repeating: -1)
            for index in 0..<count {
                let key = entries[index].key
                var slot = Int(truncatingIfNeeded: Self.keyHash(key)) & mask
                while true {
                    let occupant = Int(slots[slot])
                    if occupant < 0 {
                        slots[slot] = Int32(truncatingIfNeeded: index)
                        break
                    }
                    if Self.sameBytes(entries[occupant].key, key) { return key }
                    slot = (slot + 1) & mask
                }
            }
            return nil
        }
    }

    /// FNV-1a over the key's UTF-8 bytes: keys are short, and the table only needs a spread,
    /// not a defence against chosen collisions (the entry count is bounded by the limits).
    @inline(__always)
    static func keyHash(_ key: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return hash ^ (hash >> 29)
    }

    /// Byte equality, cheaply: lengths first, then `==` (equal bytes are always canonically
    /// equal, and for ASCII it is a memcmp), and only for canonically equal strings the bytes.
    @inline(__always)
    static func sameBytes(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a == b && a.utf8.elementsEqual(b.utf8)
    }

    public var isContainer: Bool {
        switch self {
        case .array, .map: true
        default: false
        }
    }

    /// Depth of nesting: a scalar is 0, `[1]` is 1.
    public var depth: Int {
        switch self {
        case .array(let items): return 1 + (items.map(\.depth).max() ?? 0)
        case .map(let entries): return 1 + (entries.map(\.value.depth).max() ?? 0)
        default: return 0
        }
    }
}

extension MCPValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: MCPValue...) { self = .array(elements) }
}
