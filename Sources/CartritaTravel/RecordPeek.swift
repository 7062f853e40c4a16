import Foundation

/// Reads one top-level field of a stored record straight from its msgpack bytes, without
/// decoding the record.
///
/// Why: recovery asks a log for every actor's last record (`heads()`) before it replays anything,
/// and a capsule's records are decoded on another thread while the replay runs. The recipient is
/// the tenth key the writer puts down, after small scalars, so reading it costs a few dozen byte
/// compares instead of a full decode.
///
/// It is a reader of what a well-formed record says, never a judge: anything it does not
/// understand gives nil (the caller then decodes the record fully), and whatever it reads is
/// checked against the full decode of the same record before the replay uses that record.
enum RecordPeek {
    static let recipientKey: [UInt8] = Array("recipient".utf8)

    /// The bytes of the string under top-level key `recipient`; nil when the bytes are not a
    /// map, a key before it is not a string, its value is not a string, or anything runs past the end.
    static func recipient(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var cursor = Cursor(bytes: bytes)
        guard let pairs = cursor.mapHeader() else { return nil }
        for _ in 0..<pairs {
            guard let key = cursor.string() else { return nil }
            if Self.recipientKey.withUnsafeBytes({ Self.same($0, key) }) { return cursor.string() }
            guard cursor.skipValue() else { return nil }
        }
        return nil
    }

    /// Byte-for-byte equality.
    static func same(_ lhs: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
        guard lhs.count == rhs.count else { return false }
        guard let left = lhs.baseAddress, let right = rhs.baseAddress else { return true }  // both empty
        return memcmp(left, right, lhs.count) == 0
    }

    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        var remaining: Int { self.bytes.count - self.offset }

        mutating func byte() -> UInt8? {
            guard self.offset < self.bytes.count else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        /// A big-endian unsigned integer of `width` bytes.
        mutating func uint(_ width: Int) -> Int? {
            guard width <= self.remaining else { return nil }
            var value = 0
            for index in 0..<width { value = value << 8 | Int(self.bytes[self.offset + index]) }
            self.offset += width
            return value
        }

        mutating func take(_ count: Int) -> UnsafeRawBufferPointer? {
            guard count >= 0, count <= self.remaining else { return nil }
            defer { self.offset += count }
            return UnsafeRawBufferPointer(rebasing: self.bytes[self.offset..<self.offset + count])
        }

        mutating func mapHeader() -> Int? {
            switch self.byte() {
            case let byte? where byte & 0xf0 == 0x80: Int(byte & 0x0f)
            case 0xde: self.uint(2)
            case 0xdf: self.uint(4)
            default: nil
            }
        }

        mutating func string() -> UnsafeRawBufferPointer? {
            let length: Int?
            switch self.byte() {
            case let byte? where byte & 0xe0 == 0xa0: length = Int(byte & 0x1f)
            case 0xd9: length = self.uint(1)
            case 0xda: length = self.uint(2)
            case 0xdb: length = self.uint(4)
            default: length = nil
            }
            guard let length else { return nil }
            return self.take(length)
        }

        /// Skips one value, containers included. Every value takes at least one byte, so the
        /// values still owed can never exceed the bytes left: the loop ends within the buffer.
        mutating func skipValue() -> Bool {
            var owed = 1
            while owed > 0 {
                owed -= 1
                guard let byte = self.byte() else { return false }
                var skip = 0
                var entries = 0
                switch byte {
                case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3: break
                case 0x80...0x8f: entries = 2 * Int(byte & 0x0f)
                case 0x90...0x9f: entries = Int(byte & 0x0f)
                case 0xa0...0xbf: skip = Int(byte & 0x1f)
                case 0xc4, 0xd9: guard let length = self.uint(1) else { return false }; skip = length
                case 0xc5, 0xda: guard let length = self.uint(2) else { return false }; skip = length
                case 0xc6, 0xdb: guard let length = self.uint(4) else { return false }; skip = length
                case 0xc7: guard let length = self.uint(1) else { return false }; skip = length + 1
                case 0xc8: guard let length = self.uint(2) else { return false }; skip = length + 1
                case 0xc9: guard let length = self.uint(4) else { return false }; skip = length + 1
                case 0xca: skip = 4
                case 0xcb: skip = 8
                case 0xcc, 0xd0: skip = 1
                case 0xcd, 0xd1: skip = 2
                case 0xce, 0xd2: skip = 4
                case 0xcf, 0xd3: skip = 8
                case 0xd4: skip = 2
                case 0xd5: skip = 3
                case 0xd6: skip = 5
                case 0xd7: skip = 9
                case 0xd8: skip = 17
                case 0xdc: guard let count = self.uint(2) else { return false }; entries = count
                case 0xdd: guard let count = self.uint(4) else { return false }; entries = count
                case 0xde: guard let count = self.uint(2) else { return false }; entries = 2 * count
                case 0xdf: guard let count = self.uint(4) else { return false }; entries = 2 * count
                default: return false  // 0xc1: never used
                }
                guard self.take(skip) != nil else { return false }
                owed += entries
                guard owed <= self.remaining else { return false }
            }
            return true
        }
    }
}
