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
        var seen = Set<[UInt8]>()
        seen.reserveCapacity(count)
        for entry in entries where !seen.insert(Array(entry.key.utf8)).inserted { return entry.key }
        return nil
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
