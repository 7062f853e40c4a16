#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CartritaEnvelope

/// Typed reads from a parsed input (`MsgPackTape`), each failing with a named error and the
/// path. Strings and binaries point into the input, so everything here copies out before the
/// input goes away.
enum ObjectReader {
    typealias Object = MsgPackObject

    static func typeName(_ object: Object) -> String {
        switch object.kind {
        case .nil_: "nil"
        case .boolean: "bool"
        case .positiveInteger, .negativeInteger: "integer"
        case .float32, .float64: "float"
        case .string: "string"
        case .binary: "binary"
        case .array: "array"
        case .map: "map"
        case .ext: "extension"
        }
    }

    static func wrongType(_ object: Object, expected: String, _ path: FieldPath) -> CodecError {
        if object.kind == .ext {
            // An extension is never the right type anywhere in MCP: name that, not the mismatch.
            return CodecError(.unsupportedType, path: path.description, "msgpack extension type \(object.extType) is not part of MCP")
        }
        return CodecError(.wrongType, path: path.description, "expected \(expected), got \(Self.typeName(object))")
    }

    @inline(__always) static func isNil(_ object: Object) -> Bool { object.kind == .nil_ }

    static func bool(_ object: Object, _ path: FieldPath) throws(CodecError) -> Bool {
        guard object.kind == .boolean else { throw Self.wrongType(object, expected: "bool", path) }
        return object.boolean
    }

    static func int64(_ object: Object, _ path: FieldPath) throws(CodecError) -> Int64 {
        switch object.kind {
        case .negativeInteger:
            return object.i64
        case .positiveInteger:
            guard object.u64 <= UInt64(Int64.max) else {
                throw CodecError(.integerOutOfRange, path: path.description, "\(object.u64) does not fit a signed 64-bit integer")
            }
            return Int64(object.u64)
        default:
            throw Self.wrongType(object, expected: "integer", path)
        }
    }

    static func int32(_ object: Object, _ path: FieldPath) throws(CodecError) -> Int32 {
        let value = try Self.int64(object, path)
        guard let narrow = Int32(exactly: value) else {
            throw CodecError(.integerOutOfRange, path: path.description, "\(value) does not fit a signed 32-bit integer")
        }
        return narrow
    }

    static func uint64(_ object: Object, _ path: FieldPath) throws(CodecError) -> UInt64 {
        switch object.kind {
        case .positiveInteger:
            return object.u64
        case .negativeInteger:
            throw CodecError(.integerOutOfRange, path: path.description, "\(object.i64) is negative")
        default:
            throw Self.wrongType(object, expected: "unsigned integer", path)
        }
    }

    /// Floats, and integers too: many encoders write 2.0 as the integer 2.
    static func double(_ object: Object, _ path: FieldPath) throws(CodecError) -> Double {
        switch object.kind {
        case .float32, .float64: return object.f64
        case .positiveInteger: return Double(object.u64)
        case .negativeInteger: return Double(object.i64)
        default: throw Self.wrongType(object, expected: "number", path)
        }
    }

    static func stringBytes(_ object: Object, _ path: FieldPath) throws(CodecError) -> UnsafeRawBufferPointer {
        guard object.kind == .string else { throw Self.wrongType(object, expected: "string", path) }
        return object.bytes
    }

    static func string(_ object: Object, _ path: FieldPath) throws(CodecError) -> String {
        let bytes = try Self.stringBytes(object, path)
        guard let text = Self.validatedString(bytes) else {
            throw CodecError(.invalidUTF8, path: path.description, "string is not valid UTF-8")
        }
        return text
    }

    /// ASCII, the common case, is checked eight bytes at a time and then built with the
    /// specialized `String(decoding:)`; anything else goes through full UTF-8 validation. Never
    /// repairs: invalid UTF-8 is nil, so nothing is silently changed.
    @inline(__always)
    static func validatedString(_ bytes: UnsafeRawBufferPointer) -> String? {
        var index = 0
        let count = bytes.count
        var high: UInt64 = 0
        while index + 8 <= count {
            high |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < count {
            high |= UInt64(bytes[index])
            index += 1
        }
        var text = String(decoding: bytes.bindMemory(to: UInt8.self), as: UTF8.self)
        if high & 0x8080_8080_8080_8080 == 0 { return text }
        // `String(decoding:)` repairs invalid input with U+FFFD. Valid input comes back byte for
        // byte, and a repair always changes a byte (EF BF BD is itself valid), so equal bytes
        // prove the input was valid. This beats the generic `String(validating:)` several-fold.
        let identical = text.withUTF8 { utf8 in
            utf8.count == count && memcmp(utf8.baseAddress!, bytes.baseAddress!, count) == 0
        }
        return identical ? text : nil
    }

    static func binaryBytes(_ object: Object, _ path: FieldPath) throws(CodecError) -> UnsafeRawBufferPointer {
        guard object.kind == .binary else { throw Self.wrongType(object, expected: "binary", path) }
        return object.bytes
    }

    static func binary(_ object: Object, _ path: FieldPath) throws(CodecError) -> [UInt8] {
        [UInt8](try Self.binaryBytes(object, path))
    }

    static func fixedBinary(_ object: Object, count: Int, _ path: FieldPath) throws(CodecError) -> UnsafeRawBufferPointer {
        let bytes = try Self.binaryBytes(object, path)
        guard bytes.count == count else {
            throw CodecError(.invalidLength, path: path.description, "expected \(count) bytes, got \(bytes.count)")
        }
        return bytes
    }

    static func messageID(_ object: Object, _ path: FieldPath) throws(CodecError) -> MessageID {
        MessageID(bytes: try Self.fixedBinary(object, count: 16, path))!
    }

    /// An enum value matched by its bytes against the spec strings: no String is built and no
    /// string switch runs on the hot path. A miss is judged as before: invalid UTF-8 first, then
    /// an unknown value.
    static func enumeration<E: ByteMatchedEnum>(_ object: Object, _ type: E.Type, _ path: FieldPath) throws(CodecError) -> E {
        let bytes = try Self.stringBytes(object, path)
        if let index = E.byteTable.names.index(of: bytes) { return E.byteTable.cases[index] }
        let text = try Self.string(object, path)
        throw CodecError(.invalidEnumValue, path: path.description, "\(text) is not a valid \(E.self)")
    }

    static func array(_ object: Object, _ path: FieldPath) throws(CodecError) -> MsgPackObject.Items {
        guard object.kind == .array else { throw Self.wrongType(object, expected: "array", path) }
        return object.items
    }

    /// A free-form value, in canonical form (see `MCPValue`).
    ///
    /// Read first without any path (`unlocatedValue`): a payload's free-form values (results,
    /// inputs) are most of what a record holds, and building each map's path text up front cost
    /// an allocation per map although nothing fails. Only when that pass meets a problem is the
    /// value read again with paths (`locatedValue`), which throws the same named error with the
    /// same path as it always did.
    static func value(_ object: Object, _ path: FieldPath) throws(CodecError) -> MCPValue {
        if let value = Self.unlocatedValue(object) { return value }
        return try Self.locatedValue(object, path)
    }

    /// A free-form map: string keys, no duplicates (a duplicate would silently shadow data).
    /// Fast pass first, as `value`.
    static func entries(_ object: Object, _ path: FieldPath) throws(CodecError) -> [MCPValue.MapEntry] {
        if object.kind == .map, let entries = Self.unlocatedEntries(object) { return entries }
        return try Self.locatedEntries(object, path)
    }

    /// A nil, boolean, integer or float: the kinds that cannot fail, read alike by both passes.
    @inline(__always)
    static func scalarValue(_ object: Object) -> MCPValue {
        switch object.kind {
        case .boolean: return .bool(object.boolean)
        case .positiveInteger:
            let value = object.u64
            return value <= UInt64(Int64.max) ? .int(Int64(value)) : .uint(value)
        case .negativeInteger: return .int(object.i64)
        case .float32: return .float(Float(object.f64))
        case .float64: return .double(object.f64)
        default: return .null
        }
    }

    /// `locatedValue` without paths: nil wherever that one throws, the same value wherever it
    /// does not (it accepts exactly what `locatedValue` accepts).
    static func unlocatedValue(_ object: Object) -> MCPValue? {
        switch object.kind {
        case .nil_, .boolean, .positiveInteger, .negativeInteger, .float32, .float64:
            return Self.scalarValue(object)
        case .string:
            guard let text = Self.validatedString(object.bytes) else { return nil }
            return .string(text)
        case .binary: return .binary([UInt8](object.bytes))
        case .array:
            var result: [MCPValue] = []
            result.reserveCapacity(object.count)
            for item in object.items {
                guard let value = Self.unlocatedValue(item) else { return nil }
                result.append(value)
            }
            return .array(result)
        case .map:
            guard let entries = Self.unlocatedEntries(object) else { return nil }
            return .map(entries)
        case .ext:
            return nil
        }
    }

    /// `locatedEntries` without paths, for a map: nil wherever that one throws.
    static func unlocatedEntries(_ object: Object) -> [MCPValue.MapEntry]? {
        var result: [MCPValue.MapEntry] = []
        result.reserveCapacity(object.count)
        for pair in object.pairs {
            guard pair.key.kind == .string, let key = Self.validatedString(pair.key.bytes), let value = Self.unlocatedValue(pair.val) else {
                return nil
            }
            result.append(MCPValue.MapEntry(key, value))
        }
        guard MCPValue.firstDuplicateKey(result) == nil else { return nil }
        return result
    }

    /// A free-form value read with its path, which every error names.
    static func locatedValue(_ object: Object, _ path: FieldPath) throws(CodecError) -> MCPValue {
        switch object.kind {
        case .nil_, .boolean, .positiveInteger, .negativeInteger, .float32, .float64:
            return Self.scalarValue(object)
        case .string: return .string(try Self.string(object, path))
        case .binary: return .binary(try Self.binary(object, path))
        case .array:
            let items = object.items
            var result: [MCPValue] = []
            result.reserveCapacity(object.count)
            let base = path.description
            for (index, item) in items.enumerated() {
                result.append(try Self.locatedValue(item, FieldPath(parent: base, index: index)))
            }
            return .array(result)
        case .map:
            return .map(try Self.locatedEntries(object, path))
        case .ext:
            throw CodecError(.unsupportedType, path: path.description, "msgpack extension type \(object.extType) is not part of MCP")
        }
    }

    /// A free-form map read with its path, which every error names.
    static func locatedEntries(_ object: Object, _ path: FieldPath) throws(CodecError) -> [MCPValue.MapEntry] {
        guard object.kind == .map else { throw Self.wrongType(object, expected: "map", path) }
        let base = path.description
        var result: [MCPValue.MapEntry] = []
        result.reserveCapacity(object.count)
        for pair in object.pairs {
            guard pair.key.kind == .string else {
                throw CodecError(.wrongType, path: path.description, "map keys must be strings, got \(Self.typeName(pair.key))")
            }
            let key = try Self.string(pair.key, FieldPath(parent: base, name: "{key}"))
            result.append(MCPValue.MapEntry(key, try Self.locatedValue(pair.val, FieldPath(parent: base, name: key))))
        }
        if let duplicate = MCPValue.firstDuplicateKey(result) {
            throw CodecError(.duplicateKey, path: FieldPath(parent: base, name: duplicate).description, "key appears more than once")
        }
        return result
    }

    /// Walks a map whose keys are a fixed set of field names. Calls `body` with the index of
    /// the name in `fields` for every key; a key outside `fields` is `unknownKey`, a key seen
    /// twice is `duplicateKey`. Returns the bit set of indexes seen.
    @inline(__always)
    static func fields(
        _ object: Object, _ fields: FieldTable, _ path: FieldPath,
        _ body: (Int, Object) throws(CodecError) -> Void
    ) throws(CodecError) -> UInt64 {
        guard object.kind == .map else { throw Self.wrongType(object, expected: "map", path) }
        var seen: UInt64 = 0
        var next = 0  // canonical encoders write the fields in table order: try that one first
        for pair in object.pairs {
            guard pair.key.kind == .string else {
                throw CodecError(.wrongType, path: path.description, "field names must be strings, got \(Self.typeName(pair.key))")
            }
            let key = pair.key.bytes
            guard let index = fields.index(of: key, startingAt: next) else {
                let name = String(decoding: key, as: UTF8.self)
                throw CodecError(.unknownKey, path: Self.join(path, name).description, "\(name) is not a field here")
            }
            let bit: UInt64 = 1 << UInt64(index)
            guard seen & bit == 0 else {
                throw CodecError(.duplicateKey, path: Self.join(path, fields.names[index]).description, "field appears more than once")
            }
            seen |= bit
            next = index + 1
            try body(index, pair.val)
        }
        return seen
    }

    /// Throws `missingKey` for the first required field not in `seen`.
    static func require(_ seen: UInt64, _ required: UInt64, _ fields: FieldTable, _ path: FieldPath) throws(CodecError) {
        let missing = required & ~seen
        guard missing != 0 else { return }
        let index = missing.trailingZeroBitCount
        throw CodecError(.missingKey, path: Self.join(path, fields.names[index]).description, "required field is missing")
    }

    /// A child path; nothing is concatenated until an error needs the text.
    @inline(__always)
    static func join(_ path: FieldPath, _ name: String) -> FieldPath {
        FieldPath(parent: path.description, name: name)
    }
}

/// The cases of a string enum, matched by bytes (see `ObjectReader.enumeration`).
struct EnumTable<E: RawRepresentable & CaseIterable>: Sendable where E.RawValue == String, E: Sendable {
    let names: FieldTable
    let cases: [E]

    init() {
        self.cases = Array(E.allCases)
        self.names = FieldTable(self.cases.map(\.rawValue))
    }
}

protocol ByteMatchedEnum: RawRepresentable, CaseIterable, Sendable where RawValue == String {
    static var byteTable: EnumTable<Self> { get }
}

extension Priority: ByteMatchedEnum { static let byteTable = EnumTable<Priority>() }
extension MessageType: ByteMatchedEnum { static let byteTable = EnumTable<MessageType>() }
extension DeliveryMode: ByteMatchedEnum { static let byteTable = EnumTable<DeliveryMode>() }
extension HealthStatus: ByteMatchedEnum { static let byteTable = EnumTable<HealthStatus>() }
extension TaskStatus: ByteMatchedEnum { static let byteTable = EnumTable<TaskStatus>() }
extension QualityLevel: ByteMatchedEnum { static let byteTable = EnumTable<QualityLevel>() }
extension OverrideAction: ByteMatchedEnum { static let byteTable = EnumTable<OverrideAction>() }

/// Field names of one map, matched by bytes without building Strings.
struct FieldTable: Sendable {
    let names: [String]
    let utf8: [[UInt8]]

    init(_ names: [String]) {
        precondition(names.count <= 64, "at most 64 fields per map")
        self.names = names
        self.utf8 = names.map { Array($0.utf8) }
        self.prefixes = self.utf8.map { name in (name.count, name.withUnsafeBytes { Self.prefixWord($0) }) }
    }

    /// Per name: its length and its first (up to) eight bytes as one word, so most candidates
    /// are rejected with two integer compares and no memcmp.
    let prefixes: [(count: Int, word: UInt64)]

    /// The index of `key`, trying `startingAt` first (a guess, any value is safe), then all.
    @inline(__always)
    func index(of key: UnsafeRawBufferPointer, startingAt guess: Int = 0) -> Int? {
        let count = key.count
        guard count > 0 else { return nil }
        let word = Self.prefixWord(key)
        if guess > 0 && guess < self.prefixes.count && self.matches(guess, key, count, word) { return guess }
        for index in 0..<self.prefixes.count where self.matches(index, key, count, word) {
            return index
        }
        return nil
    }

    @inline(__always)
    func matches(_ index: Int, _ key: UnsafeRawBufferPointer, _ count: Int, _ word: UInt64) -> Bool {
        guard self.prefixes[index].count == count && self.prefixes[index].word == word else { return false }
        if count <= 8 { return true }
        return self.utf8[index].withUnsafeBytes { name in
            memcmp(name.baseAddress! + 8, key.baseAddress! + 8, count - 8) == 0
        }
    }

    @inline(__always)
    static func prefixWord(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        if bytes.count >= 8 { return bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self) }
        var word: UInt64 = 0
        for index in 0..<bytes.count { word |= UInt64(bytes[index]) << (8 * UInt64(index)) }
        return word
    }

    /// The bit mask of the given names, for `ObjectReader.require`.
    func mask(_ required: String...) -> UInt64 {
        required.reduce(0) { mask, name in mask | (1 << UInt64(self.names.firstIndex(of: name)!)) }
    }
}

/// Where a value sits (`payload.task.type`, `payload.input.files[2]`), built lazily: decoding
/// carries a parent (materialized once per container) and a name or index, and the text is only
/// joined when an error is thrown. Eager joins cost dozens of allocations per envelope.
struct FieldPath: ExpressibleByStringLiteral, CustomStringConvertible {
    var parent: String
    var name: String?
    var index: Int

    init(parent: String, name: String? = nil, index: Int = -1) {
        self.parent = parent
        self.name = name
        self.index = index
    }

    init(stringLiteral value: String) {
        self.init(parent: value)
    }

    /// A name under the root (`$`) or an empty parent stands alone: `ttl_ms`, not `$.ttl_ms`.
    var description: String {
        guard self.name != nil || self.index >= 0 else { return self.parent }
        var text = self.parent
        if let name = self.name { text = text.isEmpty || text == "$" ? name : text + "." + name }
        if self.index >= 0 { text += "[\(self.index)]" }
        return text
    }
}

/// Actor addresses repeat in every message (a few dozen actors exchange millions of them). A
/// decoder keeps the last strings it made for them in a small direct-mapped cache, so a
/// repeated address costs a hash and a compare instead of an allocation and UTF-8 validation.
/// Bounded (256 slots, strings of at most `maxBytes`), and a hit returns exactly the same text.
final class StringInterner {
    struct Slot {
        var bytes: [UInt8]
        var string: String
    }

    static let slotCount = 256
    static let maxBytes = 128
    var slots: [Slot?] = Array(repeating: nil, count: StringInterner.slotCount)

    func string(_ object: MsgPackObject, _ path: FieldPath) throws(CodecError) -> String {
        let bytes = try ObjectReader.stringBytes(object, path)
        guard bytes.count <= Self.maxBytes, bytes.count > 0 else { return try ObjectReader.string(object, path) }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let index = Int(hash % UInt64(Self.slotCount))
        if let slot = self.slots[index], slot.bytes.count == bytes.count,
            slot.bytes.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 })
        {
            return slot.string
        }
        let text = try ObjectReader.string(object, path)
        self.slots[index] = Slot(bytes: [UInt8](bytes), string: text)
        return text
    }
}
