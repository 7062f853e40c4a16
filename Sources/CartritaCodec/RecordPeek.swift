#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CartritaEnvelope

/// A look at a stored log record without decoding it: the header, the envelope's id, sender and
/// recipient, and where the envelope's key/value pairs start.
///
/// Why: replay must compare every message a replayed handler makes with the record the log
/// holds for it. Decoding the record (msgpack-c's tree, then Swift values) costs several times
/// what encoding the replayed copy does, and the log's bytes are canonical (`writeRecord`: the
/// header pairs, then exactly what `EnvelopeEncoder.encodeBody` wrote). So recovery encodes its
/// copy and compares bytes with `envelopeBody`, and decodes only records that nothing in the
/// replay made (inputs) or that differ.
///
/// Reads only the layout the writer produces (keys in order, ids as 16-byte bin); anything else
/// gives nil, and the caller decodes the record in full, which names any problem.
public struct RecordPeek: Sendable {
    public var header: RecordHeader
    public var id: MessageID
    public var correlationID: MessageID
    /// Byte ranges inside the record.
    public var sender: Range<Int>
    public var recipient: Range<Int>
    /// Where the envelope's pairs start (they run to the end of the record), and how many.
    public var envelopeBodyStart: Int
    public var envelopeFieldCount: Int

    /// Whether `bytes` are one whole msgpack value within `limits` (the decoder's structural
    /// scan: lengths that fit, nesting, nothing truncated or trailing). A peek reads only the
    /// start of a record; a reader of untrusted bytes that will not decode them asks this too.
    public static func isWhole(_ bytes: UnsafeRawBufferPointer, limits: CodecLimits = .default) -> Bool {
        bytes.count > 0 && bytes.count <= limits.maxRecordBytes && Preflight.fastScan(bytes, limits: limits)
    }

    /// Whether the record's sender (in `bytes`, the record this peek read) is one of
    /// `candidates`, given as UTF-8 bytes (a handful of addresses: compared one by one).
    public func sender(in bytes: UnsafeRawBufferPointer, isOneOf candidates: [[UInt8]]) -> Bool {
        let sender = UnsafeRawBufferPointer(rebasing: bytes[self.sender])
        for candidate in candidates where candidate.count == sender.count {
            if candidate.withUnsafeBytes({ Self.same($0, sender) }) { return true }
        }
        return false
    }

    /// Byte equality of two short ranges (addresses, field names) without a call to memcmp,
    /// whose call cost dominates at these lengths: a peek runs for every record replay reads.
    @inline(__always)
    static func same(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        let count = a.count
        guard count == b.count else { return false }
        var index = 0
        while index + 8 <= count {
            guard a.loadUnaligned(fromByteOffset: index, as: UInt64.self) == b.loadUnaligned(fromByteOffset: index, as: UInt64.self) else {
                return false
            }
            index += 8
        }
        while index < count {
            guard a[index] == b[index] else { return false }
            index += 1
        }
        return true
    }

    public init?(_ bytes: UnsafeRawBufferPointer) {
        var reader = Reader(bytes: bytes)
        guard let count = reader.mapHeader(), count > RecordHeader.fieldNames.count,
            reader.key("v"), reader.unsigned() == UInt64(RecordHeader.formatVersion),
            reader.key("seq"), let seq = reader.unsigned(),
            reader.key("prev_hash"), let prevHash = reader.binary(32),
            reader.key("actor_prev_seq"), let actorPrevSeq = reader.unsigned(),
            reader.key("clock_ms"), let clock = reader.signed(),
            reader.key("entropy"), let entropy = reader.unsigned()
        else { return nil }
        let bodyStart = reader.offset
        guard reader.key("id"), let id = reader.binary(16) else { return nil }
        if reader.peekKey("parent_id") {
            guard reader.key("parent_id"), reader.binary(16) != nil else { return nil }
        }
        guard reader.key("correlation_id"), let correlation = reader.binary(16),
            reader.key("sender"), let sender = reader.string(),
            reader.key("recipient"), let recipient = reader.string()
        else { return nil }
        self.header = RecordHeader(
            seq: seq, prevHash: Digest32(bytes: UnsafeRawBufferPointer(rebasing: bytes[prevHash])), actorPrevSeq: actorPrevSeq,
            clockMilliseconds: clock, entropy: entropy)
        self.id = MessageID(bytes: UnsafeRawBufferPointer(rebasing: bytes[id]))!
        self.correlationID = MessageID(bytes: UnsafeRawBufferPointer(rebasing: bytes[correlation]))!
        self.sender = sender
        self.recipient = recipient
        self.envelopeBodyStart = bodyStart
        self.envelopeFieldCount = count - RecordHeader.fieldNames.count
    }

    /// Bounds-checked reads of the few msgpack forms the header and the envelope's first
    /// fields use. Every read returns nil (or false) instead of reading past the end.
    struct Reader {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        mutating func byte() -> UInt8? {
            guard self.offset < self.bytes.count else { return nil }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        /// One load per width (1, 2, 4 or 8 bytes: the widths msgpack uses) instead of a loop
        /// over the bytes: a peek reads several of these per record, for every record.
        @inline(__always)
        mutating func bigEndian(_ width: Int) -> UInt64? {
            guard self.offset + width <= self.bytes.count else { return nil }
            let value: UInt64
            switch width {
            case 1: value = UInt64(self.bytes[self.offset])
            case 2: value = UInt64(UInt16(bigEndian: self.bytes.loadUnaligned(fromByteOffset: self.offset, as: UInt16.self)))
            case 4: value = UInt64(UInt32(bigEndian: self.bytes.loadUnaligned(fromByteOffset: self.offset, as: UInt32.self)))
            case 8: value = UInt64(bigEndian: self.bytes.loadUnaligned(fromByteOffset: self.offset, as: UInt64.self))
            default:
                var folded: UInt64 = 0
                for index in 0..<width { folded = folded << 8 | UInt64(self.bytes[self.offset + index]) }
                value = folded
            }
            self.offset += width
            return value
        }

        mutating func mapHeader() -> Int? {
            guard let marker = self.byte() else { return nil }
            switch marker {
            case 0x80...0x8f: return Int(marker & 0x0f)
            case 0xde: return self.bigEndian(2).map { Int($0) }
            case 0xdf: return self.bigEndian(4).map { Int($0) }
            default: return nil
            }
        }

        mutating func unsigned() -> UInt64? {
            guard let marker = self.byte() else { return nil }
            switch marker {
            case 0x00...0x7f: return UInt64(marker)
            case 0xcc: return self.bigEndian(1)
            case 0xcd: return self.bigEndian(2)
            case 0xce: return self.bigEndian(4)
            case 0xcf: return self.bigEndian(8)
            default: return nil
            }
        }

        mutating func signed() -> Int64? {
            guard let marker = self.bytes.count > self.offset ? self.bytes[self.offset] : nil else { return nil }
            switch marker {
            case 0xe0...0xff:
                self.offset += 1
                return Int64(Int8(bitPattern: marker))
            case 0xd0: self.offset += 1; return self.bigEndian(1).map { Int64(Int8(truncatingIfNeeded: $0)) }
            case 0xd1: self.offset += 1; return self.bigEndian(2).map { Int64(Int16(truncatingIfNeeded: $0)) }
            case 0xd2: self.offset += 1; return self.bigEndian(4).map { Int64(Int32(truncatingIfNeeded: $0)) }
            case 0xd3: self.offset += 1; return self.bigEndian(8).map { Int64(bitPattern: $0) }
            default:
                guard let value = self.unsigned(), value <= UInt64(Int64.max) else { return nil }
                return Int64(value)
            }
        }

        /// A str's byte range.
        mutating func string() -> Range<Int>? {
            guard let marker = self.byte() else { return nil }
            let length: Int
            switch marker {
            case 0xa0...0xbf: length = Int(marker & 0x1f)
            case 0xd9: guard let value = self.bigEndian(1) else { return nil }; length = Int(value)
            case 0xda: guard let value = self.bigEndian(2) else { return nil }; length = Int(value)
            case 0xdb: guard let value = self.bigEndian(4) else { return nil }; length = Int(value)
            default: return nil
            }
            guard self.offset + length <= self.bytes.count else { return nil }
            defer { self.offset += length }
            return self.offset..<(self.offset + length)
        }

        /// A bin8 of exactly `count` bytes: its byte range.
        mutating func binary(_ count: Int) -> Range<Int>? {
            guard self.byte() == 0xc4, self.byte() == UInt8(count), self.offset + count <= self.bytes.count else { return nil }
            defer { self.offset += count }
            return self.offset..<(self.offset + count)
        }

        /// The next value is the str `name` (an ASCII field name); consumes it when it is.
        /// Inlined so each call site compares a constant length (a peek reads a dozen keys per
        /// record, on the readers, for every record).
        @inline(__always)
        mutating func key(_ name: StaticString) -> Bool {
            guard self.peekKey(name) else { return false }
            self.offset += 1 + name.utf8CodeUnitCount
            return true
        }

        @inline(__always)
        func peekKey(_ name: StaticString) -> Bool {
            let length = name.utf8CodeUnitCount
            guard length < 32, self.offset + 1 + length <= self.bytes.count,
                self.bytes[self.offset] == 0xa0 | UInt8(length)
            else { return false }
            return RecordPeek.same(
                UnsafeRawBufferPointer(start: self.bytes.baseAddress! + self.offset + 1, count: length),
                UnsafeRawBufferPointer(start: name.utf8Start, count: length))
        }
    }
}
