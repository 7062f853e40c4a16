#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CMsgPack
import CartritaEnvelope

/// Typed reads from msgpack-c's object tree, each failing with a named error and the path.
/// Strings and binaries point into the input (msgpack_unpack with a user zone does not copy),
/// so everything here copies out before the input goes away.
enum ObjectReader {
    typealias Object = msgpack_object

    static func typeName(_ object: Object) -> String {
        switch object.type {
        case MSGPACK_OBJECT_NIL: "nil"
        case MSGPACK_OBJECT_BOOLEAN: "bool"
        case MSGPACK_OBJECT_POSITIVE_INTEGER, MSGPACK_OBJECT_NEGATIVE_INTEGER: "integer"
        case MSGPACK_OBJECT_FLOAT32, MSGPACK_OBJECT_FLOAT64: "float"
        case MSGPACK_OBJECT_STR: "string"
        case MSGPACK_OBJECT_BIN: "binary"
        case MSGPACK_OBJECT_ARRAY: "array"
        case MSGPACK_OBJECT_MAP: "map"
        case MSGPACK_OBJECT_EXT: "extension"
        default: "unknown"
        }
    }

    static func wrongType(_ object: Object, expected: String, _ path: String) -> CodecError {
        if object.type == MSGPACK_OBJECT_EXT {
            // An extension is never the right type anywhere in MCP: name that, not the mismatch.
            return CodecError(.unsupportedType, path: path, "msgpack extension type \(object.via.ext.type) is not part of MCP")
        }
        return CodecError(.wrongType, path: path, "expected \(expected), got \(Self.typeName(object))")
    }

    static func isNil(_ object: Object) -> Bool { object.type == MSGPACK_OBJECT_NIL }

    static func bool(_ object: Object, _ path: String) throws(CodecError) -> Bool {
        guard object.type == MSGPACK_OBJECT_BOOLEAN else { throw Self.wrongType(object, expected: "bool", path) }
        return object.via.boolean
    }

    static func int64(_ object: Object, _ path: String) throws(CodecError) -> Int64 {
        switch object.type {
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return object.via.i64
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            guard object.via.u64 <= UInt64(Int64.max) else {
                throw CodecError(.integerOutOfRange, path: path, "\(object.via.u64) does not fit a signed 64-bit integer")
            }
            return Int64(object.via.u64)
        default:
            throw Self.wrongType(object, expected: "integer", path)
        }
    }

    static func int32(_ object: Object, _ path: String) throws(CodecError) -> Int32 {
        let value = try Self.int64(object, path)
        guard let narrow = Int32(exactly: value) else {
            throw CodecError(.integerOutOfRange, path: path, "\(value) does not fit a signed 32-bit integer")
        }
        return narrow
    }

    static func uint64(_ object: Object, _ path: String) throws(CodecError) -> UInt64 {
        switch object.type {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            return object.via.u64
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            throw CodecError(.integerOutOfRange, path: path, "\(object.via.i64) is negative")
        default:
            throw Self.wrongType(object, expected: "unsigned integer", path)
        }
    }

    /// Floats, and integers too: many encoders write 2.0 as the integer 2.
    static func double(_ object: Object, _ path: String) throws(CodecError) -> Double {
        switch object.type {
        case MSGPACK_OBJECT_FLOAT32, MSGPACK_OBJECT_FLOAT64: return object.via.f64
        case MSGPACK_OBJECT_POSITIVE_INTEGER: return Double(object.via.u64)
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return Double(object.via.i64)
        default: throw Self.wrongType(object, expected: "number", path)
        }
    }

    static func stringBytes(_ object: Object, _ path: String) throws(CodecError) -> UnsafeRawBufferPointer {
        guard object.type == MSGPACK_OBJECT_STR else { throw Self.wrongType(object, expected: "string", path) }
        return UnsafeRawBufferPointer(start: object.via.str.ptr, count: Int(object.via.str.size))
    }

    static func string(_ object: Object, _ path: String) throws(CodecError) -> String {
        let bytes = try Self.stringBytes(object, path)
        guard let text = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw CodecError(.invalidUTF8, path: path, "string is not valid UTF-8")
        }
        return text
    }

    static func binaryBytes(_ object: Object, _ path: String) throws(CodecError) -> UnsafeRawBufferPointer {
        guard object.type == MSGPACK_OBJECT_BIN else { throw Self.wrongType(object, expected: "binary", path) }
        return UnsafeRawBufferPointer(start: object.via.bin.ptr, count: Int(object.via.bin.size))
    }

    static func binary(_ object: Object, _ path: String) throws(CodecError) -> [UInt8] {
        [UInt8](try Self.binaryBytes(object, path))
    }

    static func fixedBinary(_ object: Object, count: Int, _ path: String) throws(CodecError) -> UnsafeRawBufferPointer {
        let bytes = try Self.binaryBytes(object, path)
        guard bytes.count == count else {
            throw CodecError(.invalidLength, path: path, "expected \(count) bytes, got \(bytes.count)")
        }
        return bytes
    }

    static func messageID(_ object: Object, _ path: String) throws(CodecError) -> MessageID {
        MessageID(bytes: try Self.fixedBinary(object, count: 16, path))!
    }

    static func enumeration<E: RawRepresentable>(_ object: Object, _ type: E.Type, _ path: String) throws(CodecError) -> E
    where E.RawValue == String {
        let text = try Self.string(object, path)
        guard let value = E(rawValue: text) else {
            throw CodecError(.invalidEnumValue, path: path, "\(text) is not a valid \(E.self)")
        }
        return value
    }

    static func array(_ object: Object, _ path: String) throws(CodecError) -> UnsafeBufferPointer<msgpack_object> {
        guard object.type == MSGPACK_OBJECT_ARRAY else { throw Self.wrongType(object, expected: "array", path) }
        return UnsafeBufferPointer(start: object.via.array.ptr, count: Int(object.via.array.size))
    }

    /// A free-form value, in canonical form (see `MCPValue`).
    static func value(_ object: Object, _ path: String) throws(CodecError) -> MCPValue {
        switch object.type {
        case MSGPACK_OBJECT_NIL: return .null
        case MSGPACK_OBJECT_BOOLEAN: return .bool(object.via.boolean)
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            let value = object.via.u64
            return value <= UInt64(Int64.max) ? .int(Int64(value)) : .uint(value)
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return .int(object.via.i64)
        case MSGPACK_OBJECT_FLOAT32: return .float(Float(object.via.f64))
        case MSGPACK_OBJECT_FLOAT64: return .double(object.via.f64)
        case MSGPACK_OBJECT_STR: return .string(try Self.string(object, path))
        case MSGPACK_OBJECT_BIN: return .binary(try Self.binary(object, path))
        case MSGPACK_OBJECT_ARRAY:
            let items = UnsafeBufferPointer(start: object.via.array.ptr, count: Int(object.via.array.size))
            var result: [MCPValue] = []
            result.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                result.append(try Self.value(item, "\(path)[\(index)]"))
            }
            return .array(result)
        case MSGPACK_OBJECT_MAP:
            return .map(try Self.entries(object, path))
        case MSGPACK_OBJECT_EXT:
            throw CodecError(.unsupportedType, path: path, "msgpack extension type \(object.via.ext.type) is not part of MCP")
        default:
            throw CodecError(.malformed, path: path, "unknown msgpack-c object type \(object.type.rawValue)")
        }
    }

    /// A free-form map: string keys, no duplicates (a duplicate would silently shadow data).
    static func entries(_ object: Object, _ path: String) throws(CodecError) -> [MCPValue.MapEntry] {
        guard object.type == MSGPACK_OBJECT_MAP else { throw Self.wrongType(object, expected: "map", path) }
        let pairs = UnsafeBufferPointer(start: object.via.map.ptr, count: Int(object.via.map.size))
        var result: [MCPValue.MapEntry] = []
        result.reserveCapacity(pairs.count)
        for pair in pairs {
            guard pair.key.type == MSGPACK_OBJECT_STR else {
                throw CodecError(.wrongType, path: path, "map keys must be strings, got \(Self.typeName(pair.key))")
            }
            let key = try Self.string(pair.key, path + ".{key}")
            result.append(MCPValue.MapEntry(key, try Self.value(pair.val, path + "." + key)))
        }
        if result.count > 1 {
            var seen = Set<String>()
            for entry in result where !seen.insert(entry.key).inserted {
                throw CodecError(.duplicateKey, path: path + "." + entry.key, "key appears more than once")
            }
        }
        return result
    }

    /// Walks a map whose keys are a fixed set of field names. Calls `body` with the index of
    /// the name in `fields` for every key; a key outside `fields` is `unknownKey`, a key seen
    /// twice is `duplicateKey`. Returns the bit set of indexes seen.
    @inline(__always)
    static func fields(
        _ object: Object, _ fields: FieldTable, _ path: String,
        _ body: (Int, Object) throws(CodecError) -> Void
    ) throws(CodecError) -> UInt64 {
        guard object.type == MSGPACK_OBJECT_MAP else { throw Self.wrongType(object, expected: "map", path) }
        let pairs = UnsafeBufferPointer(start: object.via.map.ptr, count: Int(object.via.map.size))
        var seen: UInt64 = 0
        for pair in pairs {
            guard pair.key.type == MSGPACK_OBJECT_STR else {
                throw CodecError(.wrongType, path: path, "field names must be strings, got \(Self.typeName(pair.key))")
            }
            let key = UnsafeRawBufferPointer(start: pair.key.via.str.ptr, count: Int(pair.key.via.str.size))
            guard let index = fields.index(of: key) else {
                let name = String(decoding: key, as: UTF8.self)
                throw CodecError(.unknownKey, path: Self.join(path, name), "\(name) is not a field here")
            }
            let bit: UInt64 = 1 << UInt64(index)
            guard seen & bit == 0 else {
                throw CodecError(.duplicateKey, path: Self.join(path, fields.names[index]), "field appears more than once")
            }
            seen |= bit
            try body(index, pair.val)
        }
        return seen
    }

    /// Throws `missingKey` for the first required field not in `seen`.
    static func require(_ seen: UInt64, _ required: UInt64, _ fields: FieldTable, _ path: String) throws(CodecError) {
        let missing = required & ~seen
        guard missing != 0 else { return }
        let index = missing.trailingZeroBitCount
        throw CodecError(.missingKey, path: Self.join(path, fields.names[index]), "required field is missing")
    }

    static func join(_ path: String, _ name: String) -> String {
        path == "$" || path.isEmpty ? name : path + "." + name
    }
}

/// Field names of one map, matched by bytes without building Strings.
struct FieldTable: Sendable {
    let names: [String]
    let utf8: [[UInt8]]

    init(_ names: [String]) {
        precondition(names.count <= 64, "at most 64 fields per map")
        self.names = names
        self.utf8 = names.map { Array($0.utf8) }
    }

    @inline(__always)
    func index(of key: UnsafeRawBufferPointer) -> Int? {
        for index in 0..<self.utf8.count where self.utf8[index].count == key.count {
            let equal = self.utf8[index].withUnsafeBytes { name in
                memcmp(name.baseAddress!, key.baseAddress!, key.count) == 0
            }
            if equal { return index }
        }
        return nil
    }

    /// The bit mask of the given names, for `ObjectReader.require`.
    func mask(_ required: String...) -> UInt64 {
        required.reduce(0) { mask, name in mask | (1 << UInt64(self.names.firstIndex(of: name)!)) }
    }
}
