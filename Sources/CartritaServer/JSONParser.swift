import CartritaEnvelope

// MARK: - JSON text in

/// Parses request bodies and the configuration file into `JSON`, keeping object key order (the
/// envelope's maps are ordered, never hashed). Strict RFC 8259: no trailing commas, comments or
/// NaN; a key given twice is refused (which of two values a client meant is not ours to guess).
/// Depth and size are bounded so that a hostile body costs at most its own length.
struct JSONParser {
    struct Limits: Sendable {
        /// Deepest nesting of arrays and objects.
        var maxDepth = 32
        /// Longest input, in bytes (the HTTP body limit is usually lower).
        var maxInputBytes = 16 << 20
    }

    struct ParseError: Error, Equatable, CustomStringConvertible {
        var message: String
        /// Byte offset in the input where the problem was found.
        var offset: Int
        var description: String { "\(self.message) at byte \(self.offset)" }
    }

    let limits: Limits

    init(limits: Limits = Limits()) {
        self.limits = limits
    }

    func parse(_ bytes: [UInt8]) throws(ParseError) -> JSON {
        guard bytes.count <= self.limits.maxInputBytes else {
            throw ParseError(message: "input is over \(self.limits.maxInputBytes) bytes", offset: 0)
        }
        var reader = Reader(bytes: bytes, maxDepth: self.limits.maxDepth)
        reader.skipSpace()
        let value = try reader.value(depth: 0)
        reader.skipSpace()
        guard reader.index == bytes.count else { throw ParseError(message: "unexpected text after the JSON value", offset: reader.index) }
        return value
    }

    func parse(_ text: String) throws(ParseError) -> JSON {
        try self.parse(Array(text.utf8))
    }

    private struct Reader {
        let bytes: [UInt8]
        let maxDepth: Int
        var index = 0

        init(bytes: [UInt8], maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        func fail(_ message: String) -> ParseError { ParseError(message: message, offset: self.index) }

        mutating func skipSpace() {
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(ParseError) -> JSON {
            guard self.index < self.bytes.count else { throw self.fail("unexpected end of input") }
            switch self.bytes[self.index] {
            case UInt8(ascii: "{"): return try self.object(depth: depth + 1)
            case UInt8(ascii: "["): return try self.array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try self.string())
            case UInt8(ascii: "t"): try self.literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try self.literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try self.literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try self.number()
            default: throw self.fail("unexpected character")
            }
        }

        mutating func literal(_ word: String) throws(ParseError) {
            for byte in word.utf8 {
                guard self.index < self.bytes.count, self.bytes[self.index] == byte else { throw self.fail("invalid literal") }
                self.index += 1
            }
        }

        mutating func object(depth: Int) throws(ParseError) -> JSON {
            guard depth <= self.maxDepth else { throw self.fail("nesting deeper than \(self.maxDepth)") }
            self.index += 1
            var members: [(String, JSON)] = []
            self.skipSpace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            }
            while true {
                self.skipSpace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                    throw self.fail("expected a string key")
                }
                let keyOffset = self.index
                let key = try self.string()
                // Compared by UTF-8 bytes, as the envelope's maps compare keys.
                if members.contains(where: { $0.0.utf8.elementsEqual(key.utf8) }) {
                    throw ParseError(message: "key \"\(key)\" appears twice", offset: keyOffset)
                }
                self.skipSpace()
                guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { throw self.fail("expected ':'") }
                self.index += 1
                self.skipSpace()
                members.append((key, try self.value(depth: depth)))
                self.skipSpace()
                guard self.index < self.bytes.count else { throw self.fail("unexpected end of input in an object") }
                if self.bytes[self.index] == UInt8(ascii: ",") {
                    self.index += 1
                    continue
                }
                guard self.bytes[self.index] == UInt8(ascii: "}") else { throw self.fail("expected ',' or '}'") }
                self.index += 1
                return .object(members)
            }
        }

        mutating func array(depth: Int) throws(ParseError) -> JSON {
            guard depth <= self.maxDepth else { throw self.fail("nesting deeper than \(self.maxDepth)") }
            self.index += 1
            var items: [JSON] = []
            self.skipSpace()
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(items)
            }
            while true {
                self.skipSpace()
                items.append(try self.value(depth: depth))
                self.skipSpace()
                guard self.index < self.bytes.count else { throw self.fail("unexpected end of input in an array") }
                if self.bytes[self.index] == UInt8(ascii: ",") {
                    self.index += 1
                    continue
                }
                guard self.bytes[self.index] == UInt8(ascii: "]") else { throw self.fail("expected ',' or ']'") }
                self.index += 1
                return .array(items)
            }
        }

        mutating func hex4() throws(ParseError) -> UInt32 {
            guard self.index + 4 <= self.bytes.count else { throw self.fail("short \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = self.bytes[self.index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw self.fail("invalid hex digit in \\u escape")
                }
                value = value << 4 | UInt32(digit)
                self.index += 1
            }
            return value
        }

        mutating func string() throws(ParseError) -> String {
            self.index += 1  // the opening quote
            var scalars = String.UnicodeScalarView()
            var runStart = self.index
            var text = ""
            // Plain runs are copied as validated UTF-8; escapes are decoded one by one.
            func flush(_ reader: Reader, _ end: Int, into text: inout String) throws(ParseError) {
                guard end > runStart else { return }
                guard let run = String(validating: reader.bytes[runStart..<end], as: UTF8.self) else {
                    throw ParseError(message: "invalid UTF-8 in a string", offset: runStart)
                }
                text += run
            }
            while true {
                guard self.index < self.bytes.count else { throw self.fail("unterminated string") }
                let byte = self.bytes[self.index]
                if byte == UInt8(ascii: "\"") {
                    try flush(self, self.index, into: &text)
                    self.index += 1
                    return text
                }
                if byte < 0x20 { throw self.fail("control character in a string") }
                if byte != UInt8(ascii: "\\") {
                    self.index += 1
                    continue
                }
                try flush(self, self.index, into: &text)
                self.index += 1
                guard self.index < self.bytes.count else { throw self.fail("unterminated escape") }
                let escape = self.bytes[self.index]
                self.index += 1
                scalars.removeAll()
                switch escape {
                case UInt8(ascii: "\""): text += "\""
                case UInt8(ascii: "\\"): text += "\\"
                case UInt8(ascii: "/"): text += "/"
                case UInt8(ascii: "b"): text += "\u{08}"
                case UInt8(ascii: "f"): text += "\u{0C}"
                case UInt8(ascii: "n"): text += "\n"
                case UInt8(ascii: "r"): text += "\r"
                case UInt8(ascii: "t"): text += "\t"
                case UInt8(ascii: "u"):
                    var code = try self.hex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard self.index + 2 <= self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        else { throw self.fail("lone high surrogate") }
                        self.index += 2
                        let low = try self.hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw self.fail("invalid low surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw self.fail("lone low surrogate") }
                    scalars.append(scalar)
                    text += String(scalars)
                default: throw self.fail("invalid escape")
                }
                runStart = self.index
            }
        }

        mutating func number() throws(ParseError) -> JSON {
            let start = self.index
            var isInteger = true
            if self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
            func digits(_ reader: inout Reader) -> Int {
                let from = reader.index
                while reader.index < reader.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(reader.bytes[reader.index]) {
                    reader.index += 1
                }
                return reader.index - from
            }
            let intStart = self.index
            let intDigits = digits(&self)
            guard intDigits > 0 else { throw self.fail("invalid number") }
            if intDigits > 1, self.bytes[intStart] == UInt8(ascii: "0") { throw ParseError(message: "leading zero in a number", offset: intStart) }
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
                isInteger = false
                self.index += 1
                guard digits(&self) > 0 else { throw self.fail("digits expected after '.'") }
            }
            if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E") {
                isInteger = false
                self.index += 1
                if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-") {
                    self.index += 1
                }
                guard digits(&self) > 0 else { throw self.fail("digits expected in the exponent") }
            }
            let text = String(decoding: self.bytes[start..<self.index], as: UTF8.self)
            if isInteger {
                if let value = Int64(text) { return .int(value) }
                if let value = UInt64(text) { return .uint(value) }
            }
            guard let value = Double(text), value.isFinite else { throw ParseError(message: "number out of range", offset: start) }
            return .double(value)
        }
    }
}

// MARK: - Reading parsed JSON

extension JSON {
    /// The value under `key` when this is an object.
    subscript(key: String) -> JSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// JSON as a msgpack value for the envelope: integers stay integers, objects keep their order.
    var mcpValue: MCPValue {
        switch self {
        case .null: .null
        case .bool(let value): .bool(value)
        case .int(let value): .int(value)
        case .uint(let value): .uint(value)
        case .double(let value): .double(value)
        case .string(let value): .string(value)
        case .array(let items): .array(items.map(\.mcpValue))
        case .object(let members): .map(members.map { MCPValue.MapEntry($0.0, $0.1.mcpValue) })
        }
    }
}
