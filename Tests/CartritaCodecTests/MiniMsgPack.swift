// An independent msgpack reader and writer, written from the msgpack spec for these tests only.
// It shares no code with msgpack-c or CartritaCodec, so agreeing with it is evidence of interop.
import CartritaEnvelope

/// A msgpack value as it is on the wire (float bits kept, so NaN compares equal to itself).
indirect enum MP: Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    /// Non-negative integers (positive fixint, uint 8-64, and int 8-64 holding a value >= 0).
    case uint(UInt64)
    /// Negative integers.
    case int(Int64)
    case f32(UInt32)
    case f64(UInt64)
    case str([UInt8])
    case bin([UInt8])
    case array([MP])
    case map([Pair])
    case ext(Int8, [UInt8])
    /// Bytes written as they are (for hand-made malformed input); never produced by the reader.
    case raw([UInt8])

    struct Pair: Equatable {
        var key: MP
        var value: MP
        init(_ key: MP, _ value: MP) {
            self.key = key
            self.value = value
        }
    }

    static func s(_ text: String) -> MP { .str(Array(text.utf8)) }
    static func i(_ value: Int64) -> MP { value >= 0 ? .uint(UInt64(value)) : .int(value) }
    static func double(_ value: Double) -> MP { .f64(value.bitPattern) }
    static func id(_ id: MessageID) -> MP { .bin(id.bytes) }
    static func object(_ pairs: [(String, MP)]) -> MP { .map(pairs.map { Pair(.s($0.0), $0.1) }) }

    var typeName: String {
        switch self {
        case .null: "nil"
        case .bool: "bool"
        case .uint, .int: "int"
        case .f32: "float32"
        case .f64: "float64"
        case .str: "str"
        case .bin: "bin"
        case .array: "array"
        case .map: "map"
        case .ext: "ext"
        case .raw: "raw"
        }
    }

    var description: String {
        switch self {
        case .null: return "nil"
        case .bool(let value): return "\(value)"
        case .uint(let value): return "\(value)"
        case .int(let value): return "\(value)"
        case .f32(let bits): return "f32(\(Float(bitPattern: bits)))"
        case .f64(let bits): return "f64(\(Double(bitPattern: bits)))"
        case .str(let bytes): return "\"\(String(decoding: bytes, as: UTF8.self))\""
        case .bin(let bytes): return "bin(\(Hex.encode(bytes)))"
        case .array(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .map(let pairs): return "{" + pairs.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .ext(let type, let bytes): return "ext(\(type), \(Hex.encode(bytes)))"
        case .raw(let bytes): return "raw(\(Hex.encode(bytes)))"
        }
    }

    /// The value under a string key of a map.
    subscript(key: String) -> MP? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.first { $0.key == .s(key) }?.value
    }

    var mapKeys: [String]? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.map { pair in
            if case .str(let bytes) = pair.key { return String(decoding: bytes, as: UTF8.self) }
            return "<\(pair.key.typeName)>"
        }
    }

    // MARK: Editing, for hand-made bad inputs

    /// Replaces (or with nil removes) the value at a path of string keys; a missing last key
    /// is appended.
    func setting(_ path: [String], _ value: MP?) -> MP {
        guard case .map(var pairs) = self, let first = path.first else { return value ?? .null }
        let index = pairs.firstIndex { $0.key == .s(first) }
        if path.count == 1 {
            switch (index, value) {
            case (let index?, let value?): pairs[index].value = value
            case (let index?, nil): pairs.remove(at: index)
            case (nil, let value?): pairs.append(Pair(.s(first), value))
            case (nil, nil): break
            }
        } else {
            guard let index else { preconditionFailure("no key \(first) in \(self)") }
            pairs[index].value = pairs[index].value.setting(Array(path.dropFirst()), value)
        }
        return .map(pairs)
    }

    func setting(_ path: String, _ value: MP?) -> MP {
        self.setting(path.split(separator: ".").map(String.init), value)
    }

    /// Appends a pair even if the key is already there (a duplicate).
    func appending(_ path: [String], key: MP, value: MP) -> MP {
        guard case .map(var pairs) = self else { preconditionFailure("not a map") }
        if let first = path.first {
            let index = pairs.firstIndex { $0.key == .s(first) }!
            pairs[index].value = pairs[index].value.appending(Array(path.dropFirst()), key: key, value: value)
        } else {
            pairs.append(Pair(key, value))
        }
        return .map(pairs)
    }
}

// MARK: - Writer

struct MiniWriter {
    /// Write every integer, string, binary and container in its widest form (0xcf/0xd3, str32,
    /// bin32, array32, map32): legal msgpack that a canonical encoder never produces.
    var wide = false
    var bytes: [UInt8] = []

    static func encode(_ value: MP, wide: Bool = false) -> [UInt8] {
        var writer = MiniWriter(wide: wide)
        writer.write(value)
        return writer.bytes
    }

    mutating func be<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { self.bytes.append(contentsOf: $0) }
    }

    mutating func write(_ value: MP) {
        switch value {
        case .null: self.bytes.append(0xc0)
        case .bool(let flag): self.bytes.append(flag ? 0xc3 : 0xc2)
        case .uint(let number):
            if self.wide {
                self.bytes.append(0xcf)
                self.be(number)
            } else if number < 128 {
                self.bytes.append(UInt8(number))
            } else if number <= UInt8.max {
                self.bytes += [0xcc, UInt8(number)]
            } else if number <= UInt16.max {
                self.bytes.append(0xcd)
                self.be(UInt16(number))
            } else if number <= UInt32.max {
                self.bytes.append(0xce)
                self.be(UInt32(number))
            } else {
                self.bytes.append(0xcf)
                self.be(number)
            }
        case .int(let number):
            if self.wide {
                self.bytes.append(0xd3)
                self.be(number)
            } else if number >= -32 {
                self.bytes.append(UInt8(bitPattern: Int8(number)))
            } else if number >= Int8.min {
                self.bytes += [0xd0, UInt8(bitPattern: Int8(number))]
            } else if number >= Int16.min {
                self.bytes.append(0xd1)
                self.be(Int16(number))
            } else if number >= Int32.min {
                self.bytes.append(0xd2)
                self.be(Int32(number))
            } else {
                self.bytes.append(0xd3)
                self.be(number)
            }
        case .f32(let bits):
            self.bytes.append(0xca)
            self.be(bits)
        case .f64(let bits):
            self.bytes.append(0xcb)
            self.be(bits)
        case .str(let utf8):
            self.header(utf8.count, fix: 0xa0, fixMax: 31, eight: 0xd9, sixteen: 0xda, thirtyTwo: 0xdb)
            self.bytes += utf8
        case .bin(let data):
            self.header(data.count, fix: nil, fixMax: -1, eight: 0xc4, sixteen: 0xc5, thirtyTwo: 0xc6)
            self.bytes += data
        case .array(let items):
            self.header(items.count, fix: 0x90, fixMax: 15, eight: nil, sixteen: 0xdc, thirtyTwo: 0xdd)
            for item in items { self.write(item) }
        case .map(let pairs):
            self.header(pairs.count, fix: 0x80, fixMax: 15, eight: nil, sixteen: 0xde, thirtyTwo: 0xdf)
            for pair in pairs {
                self.write(pair.key)
                self.write(pair.value)
            }
        case .ext(let type, let data):
            let fixed: [Int: UInt8] = [1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8]
            if let code = fixed[data.count], !self.wide {
                self.bytes.append(code)
            } else if data.count <= UInt8.max && !self.wide {
                self.bytes += [0xc7, UInt8(data.count)]
            } else {
                self.bytes.append(0xc9)
                self.be(UInt32(data.count))
            }
            self.bytes.append(UInt8(bitPattern: type))
            self.bytes += data
        case .raw(let data):
            self.bytes += data
        }
    }

    mutating func header(_ count: Int, fix: UInt8?, fixMax: Int, eight: UInt8?, sixteen: UInt8, thirtyTwo: UInt8) {
        if self.wide {
            self.bytes.append(thirtyTwo)
            self.be(UInt32(count))
        } else if let fix, count <= fixMax {
            self.bytes.append(fix | UInt8(count))
        } else if let eight, count <= UInt8.max {
            self.bytes += [eight, UInt8(count)]
        } else if count <= UInt16.max {
            self.bytes.append(sixteen)
            self.be(UInt16(count))
        } else {
            self.bytes.append(thirtyTwo)
            self.be(UInt32(count))
        }
    }
}

// MARK: - Reader

struct MiniReader {
    struct Failure: Error, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "\(self.reason) at byte \(self.offset)" }
    }

    let bytes: [UInt8]
    var offset = 0
    /// Whether every integer, length and float was in its shortest form (what a canonical
    /// encoder writes).
    var allMinimal = true

    /// Reads exactly one value and requires that nothing follows.
    static func read(_ bytes: [UInt8]) throws -> (MP, minimal: Bool) {
        var reader = MiniReader(bytes: bytes)
        let value = try reader.value(depth: 0)
        guard reader.offset == bytes.count else { throw Failure(offset: reader.offset, reason: "trailing bytes") }
        return (value, reader.allMinimal)
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= self.bytes.count - self.offset else { throw Failure(offset: self.offset, reason: "truncated") }
        defer { self.offset += count }
        return self.bytes[self.offset..<(self.offset + count)]
    }

    mutating func be<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        try self.take(MemoryLayout<T>.size).reduce(T.zero) { $0 << 8 | T(truncatingIfNeeded: $1) }
    }

    mutating func minimal(_ isMinimal: Bool) {
        if !isMinimal { self.allMinimal = false }
    }

    mutating func value(depth: Int) throws -> MP {
        guard depth < 200 else { throw Failure(offset: self.offset, reason: "too deep") }
        let byte = try self.take(1).first!
        switch byte {
        case 0x00...0x7f: return .uint(UInt64(byte))
        case 0xe0...0xff: return .int(Int64(Int8(bitPattern: byte)))
        case 0x80...0x8f: return try self.map(Int(byte & 0x0f), depth)
        case 0x90...0x9f: return try self.array(Int(byte & 0x0f), depth)
        case 0xa0...0xbf: return .str(Array(try self.take(Int(byte & 0x1f))))
        case 0xc0: return .null
        case 0xc2: return .bool(false)
        case 0xc3: return .bool(true)
        case 0xc4:
            let count = Int(try self.be(UInt8.self))
            return .bin(Array(try self.take(count)))
        case 0xc5:
            let count = Int(try self.be(UInt16.self))
            self.minimal(count > UInt8.max)
            return .bin(Array(try self.take(count)))
        case 0xc6:
            let count = Int(try self.be(UInt32.self))
            self.minimal(count > UInt16.max)
            return .bin(Array(try self.take(count)))
        case 0xc7, 0xc8, 0xc9:
            let count =
                byte == 0xc7 ? Int(try self.be(UInt8.self)) : byte == 0xc8 ? Int(try self.be(UInt16.self)) : Int(try self.be(UInt32.self))
            let type = Int8(bitPattern: try self.be(UInt8.self))
            return .ext(type, Array(try self.take(count)))
        case 0xca: return .f32(try self.be(UInt32.self))
        case 0xcb: return .f64(try self.be(UInt64.self))
        case 0xcc:
            let value = UInt64(try self.be(UInt8.self))
            self.minimal(value >= 128)
            return .uint(value)
        case 0xcd:
            let value = UInt64(try self.be(UInt16.self))
            self.minimal(value > UInt8.max)
            return .uint(value)
        case 0xce:
            let value = UInt64(try self.be(UInt32.self))
            self.minimal(value > UInt16.max)
            return .uint(value)
        case 0xcf:
            let value = try self.be(UInt64.self)
            self.minimal(value > UInt32.max)
            return .uint(value)
        case 0xd0, 0xd1, 0xd2, 0xd3:
            let value: Int64
            switch byte {
            case 0xd0: value = Int64(try self.be(Int8.self))
            case 0xd1: value = Int64(try self.be(Int16.self))
            case 0xd2: value = Int64(try self.be(Int32.self))
            default: value = try self.be(Int64.self)
            }
            // A canonical encoder writes non-negative values as uint and negative ones in the
            // smallest int form that holds them.
            let minimalRange: ClosedRange<Int64>
            switch byte {
            case 0xd0: minimalRange = -128 ... -33
            case 0xd1: minimalRange = Int64(Int16.min) ... -129
            case 0xd2: minimalRange = Int64(Int32.min) ... -32769
            default: minimalRange = Int64.min ... (Int64(Int32.min) - 1)
            }
            self.minimal(minimalRange.contains(value))
            return value >= 0 ? .uint(UInt64(value)) : .int(value)
        case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
            let count = [0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16][byte]!
            let type = Int8(bitPattern: try self.be(UInt8.self))
            return .ext(type, Array(try self.take(count)))
        case 0xd9:
            let count = Int(try self.be(UInt8.self))
            self.minimal(count > 31)
            return .str(Array(try self.take(count)))
        case 0xda:
            let count = Int(try self.be(UInt16.self))
            self.minimal(count > UInt8.max)
            return .str(Array(try self.take(count)))
        case 0xdb:
            let count = Int(try self.be(UInt32.self))
            self.minimal(count > UInt16.max)
            return .str(Array(try self.take(count)))
        case 0xdc:
            let count = Int(try self.be(UInt16.self))
            self.minimal(count > 15)
            return try self.array(count, depth)
        case 0xdd:
            let count = Int(try self.be(UInt32.self))
            self.minimal(count > UInt16.max)
            return try self.array(count, depth)
        case 0xde:
            let count = Int(try self.be(UInt16.self))
            self.minimal(count > 15)
            return try self.map(count, depth)
        case 0xdf:
            let count = Int(try self.be(UInt32.self))
            self.minimal(count > UInt16.max)
            return try self.map(count, depth)
        default:  // 0xc1
            throw Failure(offset: self.offset - 1, reason: "byte 0xc1")
        }
    }

    mutating func array(_ count: Int, _ depth: Int) throws -> MP {
        guard count <= self.bytes.count - self.offset else { throw Failure(offset: self.offset, reason: "array count exceeds input") }
        var items: [MP] = []
        for _ in 0..<count { items.append(try self.value(depth: depth + 1)) }
        return .array(items)
    }

    mutating func map(_ count: Int, _ depth: Int) throws -> MP {
        guard count * 2 <= self.bytes.count - self.offset else { throw Failure(offset: self.offset, reason: "map count exceeds input") }
        var pairs: [MP.Pair] = []
        for _ in 0..<count {
            let key = try self.value(depth: depth + 1)
            pairs.append(MP.Pair(key, try self.value(depth: depth + 1)))
        }
        return .map(pairs)
    }
}
