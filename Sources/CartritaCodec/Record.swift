import CartritaEnvelope

/// A 32-byte digest (SHA-256), stored inline so a record header allocates nothing.
public struct Digest32: Hashable, Sendable, CustomStringConvertible {
    public var words: (UInt64, UInt64, UInt64, UInt64)

    public static let zero = Digest32(words: (0, 0, 0, 0))

    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    /// From exactly 32 bytes.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 32, "a digest is 32 bytes")
        self.words = (
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        )
    }

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self = bytes.withUnsafeBytes { Digest32(bytes: $0) }
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var big = (self.words.0.bigEndian, self.words.1.bigEndian, self.words.2.bigEndian, self.words.3.bigEndian)
        return try withUnsafeBytes(of: &big) { try body($0) }
    }

    public var bytes: [UInt8] { self.withBytes { [UInt8]($0) } }
    public var description: String { Hex.encode(self.bytes) }

    public static func == (lhs: Digest32, rhs: Digest32) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2 && lhs.words.3 == rhs.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.words.0)
        hasher.combine(self.words.1)
        hasher.combine(self.words.2)
        hasher.combine(self.words.3)
    }
}

/// What the log records with every envelope (MCP-SPEC §6). Format version 1.
///
/// - `seq`: global, gap-free, from 1; equal to the record's LMDB key.
/// - `prev_hash`: SHA-256 of the previous record's bytes exactly as stored (32 zero bytes for
///   the first record of a log). Chaining over the stored bytes makes any edit of any earlier
///   record visible.
/// - `actor_prev_seq`: the previous record addressed to the same recipient, 0 if none. A record
///   belongs to its recipient: that is the actor whose state it changes.
/// - `clock_ms`, `entropy`: the runtime's clock reading and the entropy handed to the handler
///   that receives the message, so replay needs neither a clock nor a random source.
public struct RecordHeader: Hashable, Sendable {
    public static let formatVersion: UInt8 = 1
    static let fieldNames = ["v", "seq", "prev_hash", "actor_prev_seq", "clock_ms", "entropy"]
    /// Upper bound of the encoded header pairs: keys, a 32-byte bin and four 9-byte integers.
    static let maxEncodedBytes = 128

    public var seq: UInt64
    public var prevHash: Digest32
    public var actorPrevSeq: UInt64
    public var clockMilliseconds: Int64
    public var entropy: UInt64

    public init(seq: UInt64, prevHash: Digest32, actorPrevSeq: UInt64, clockMilliseconds: Int64, entropy: UInt64) {
        self.seq = seq
        self.prevHash = prevHash
        self.actorPrevSeq = actorPrevSeq
        self.clockMilliseconds = clockMilliseconds
        self.entropy = entropy
    }
}

/// A decoded log record.
public struct LogRecord: Hashable, Sendable {
    public var header: RecordHeader
    public var envelope: Envelope

    public init(header: RecordHeader, envelope: Envelope) {
        self.header = header
        self.envelope = envelope
    }
}

extension MsgPackWriter {
    /// Writes a whole record: one map with the header pairs, then the envelope's pre-encoded
    /// pairs copied as they are. The log's writer thread calls this, so it does the least work
    /// it can: the envelope was encoded by the producer, concurrently.
    public func writeRecord(header: RecordHeader, envelope: EncodedEnvelope) {
        envelope.body.withUnsafeBytes { body in
            self.writeRecord(header: header, envelopeBody: body, envelopeFieldCount: envelope.fieldCount)
        }
    }

    public func writeRecord(header: RecordHeader, envelopeBody: UnsafeRawBufferPointer, envelopeFieldCount: Int) {
        self.writeMapHeader(RecordHeader.fieldNames.count + envelopeFieldCount)
        self.writeKey("v")
        self.write(UInt64(RecordHeader.formatVersion))
        self.writeKey("seq")
        self.write(header.seq)
        self.writeKey("prev_hash")
        header.prevHash.withBytes { self.writeBinary($0) }
        self.writeKey("actor_prev_seq")
        self.write(header.actorPrevSeq)
        self.writeKey("clock_ms")
        self.write(header.clockMilliseconds)
        self.writeKey("entropy")
        self.write(header.entropy)
        self.writeRaw(envelopeBody)
    }
}
