import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Crypto
import Foundation

/// An incident capsule: one self-contained file with what it takes to replay part of a log
/// offline, bit for bit (Schemas/capsule.md has the byte layout).
///
/// - `meta`: what was exported (a task or a range), from which log, the actors replayed, and
///   the digests each must reach at the end;
/// - `snapshots`: each actor's state just before the first record, with the messages it had
///   sent that the log did not hold yet (as a node's own snapshot carries them);
/// - `records`: the stored bytes of every record addressed to or sent by those actors in the
///   range, exactly as in the log (so the hash chain between consecutive ones still checks);
/// - `inputs`: the recorded external readings of each record (clock, entropy) and whether the
///   record is an input (from outside the replayed actors) rather than an effect replay must
///   make again.
package struct Capsule: Sendable {
    package static let magic: [UInt8] = Array("CARTCAPS".utf8)
    package static let formatVersion: UInt16 = 1
    static let trailerMagic: [UInt8] = Array("CEND".utf8)
    static let headerBytes = 16
    static let sectionHeaderBytes = 4 + 8 + 32
    static let trailerBytes = 4 + 32
    /// Limits on what a capsule may hold, so a damaged length cannot make the reader allocate
    /// without bound: the file's size bounds every section (lengths are checked against it).
    package static let maxRecords = 10_000_000
    package static let maxSections = 64

    package enum Kind: String, Sendable {
        case correlation, range
    }

    package struct Expected: Hashable, Sendable {
        package var actor: Address
        package var lastSeq: UInt64
        package var digest: String
    }

    package struct Meta: Sendable {
        package var kind: Kind
        package var correlation: MessageID?
        /// The first and last seq of the capsule's records (the replay starts after `fromSeq - 1`).
        package var fromSeq: UInt64
        package var toSeq: UInt64
        package var sourceLastSeq: UInt64
        package var sourceHeadHash: String
        /// The hierarchy the records were made by (this release: `standard`).
        package var hierarchy: String
        package var actors: [Address]
        package var expected: [Expected]
    }

    package struct Input: Hashable, Sendable {
        package var seq: UInt64
        package var clockMilliseconds: Int64
        package var entropy: UInt64
        /// Sent from outside the replayed actors (a client, another actor, the runtime's refusal).
        package var isInput: Bool
    }

    package var meta: Meta
    package var snapshots: [Snapshot]
    package var records: [(seq: UInt64, bytes: [UInt8])]
    package var inputs: [Input]

    // MARK: - Encoding

    package func encode() -> [UInt8] {
        let sections: [(String, [UInt8])] = [
            ("META", self.encodeMeta()), ("SNAP", self.encodeSnapshots()), ("RECS", self.encodeRecords()), ("EXTR", self.encodeInputs()),
        ]
        var bytes = Self.magic
        Self.append(Self.formatVersion, to: &bytes)
        Self.append(UInt16(0), to: &bytes)
        Self.append(UInt32(sections.count), to: &bytes)
        for (kind, payload) in sections {
            bytes += Array(kind.utf8)
            Self.append(UInt64(payload.count), to: &bytes)
            bytes += Array(SHA256.hash(data: payload))
            bytes += payload
        }
        let whole = Array(SHA256.hash(data: bytes))
        bytes += Self.trailerMagic
        bytes += whole
        return bytes
    }

    func encodeMeta() -> [UInt8] {
        let writer = MsgPackWriter(initialCapacityBytes: 1024)
        var entries: [MCPValue.MapEntry] = [
            .init("kind", .string(self.meta.kind.rawValue)),
            .init("correlation_id", self.meta.correlation.map { .string($0.description) } ?? .null),
            .init("from_seq", .int(Int64(self.meta.fromSeq))), .init("to_seq", .int(Int64(self.meta.toSeq))),
            .init("source_last_seq", .int(Int64(self.meta.sourceLastSeq))),
            .init("source_head_hash", .string(self.meta.sourceHeadHash)),
            .init("hierarchy", .string(self.meta.hierarchy)),
            .init("actors", .array(self.meta.actors.map { .string($0.rawValue) })),
        ]
        entries.append(.init("expected", .array(self.meta.expected.map { expected in
            .map([.init("actor", .string(expected.actor.rawValue)), .init("last_seq", .int(Int64(expected.lastSeq))), .init("digest", .string(expected.digest))])
        })))
        writer.write(.map(entries))
        return writer.withBytes { [UInt8]($0) }
    }

    func encodeSnapshots() -> [UInt8] {
        let writer = MsgPackWriter(initialCapacityBytes: self.snapshots.reduce(64) { $0 + $1.state.count + 96 })
        writer.write(.array(self.snapshots.map { snapshot in
            .map([
                .init("actor", .string(snapshot.actor)), .init("seq", .int(Int64(snapshot.seq))),
                .init("format_version", .int(Int64(snapshot.formatVersion))), .init("state", .binary(snapshot.state)),
            ])
        }))
        return writer.withBytes { [UInt8]($0) }
    }

    func encodeRecords() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(self.records.reduce(4) { $0 + $1.bytes.count + 12 })
        Self.append(UInt32(self.records.count), to: &bytes)
        for (seq, record) in self.records {
            Self.append(seq, to: &bytes)
            Self.append(UInt32(record.count), to: &bytes)
            bytes += record
        }
        return bytes
    }

    func encodeInputs() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + self.inputs.count * 25)
        Self.append(UInt32(self.inputs.count), to: &bytes)
        for input in self.inputs {
            Self.append(input.seq, to: &bytes)
            Self.append(UInt64(bitPattern: input.clockMilliseconds), to: &bytes)
            Self.append(input.entropy, to: &bytes)
            bytes.append(input.isInput ? 1 : 0)
        }
        return bytes
    }

    static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }

    // MARK: - Decoding

    /// Reads a capsule, checking its magic, version, every section's SHA-256 and the file's.
    /// Each way a file can be bad is its own `TravelError` code.
    package static func decode(_ bytes: [UInt8]) throws(TravelError) -> Capsule {
        var reader = ByteReader(bytes: bytes)
        guard bytes.count >= Self.magic.count else {
            throw TravelError(.truncated, "the file has \(bytes.count) bytes, fewer than a capsule header")
        }
        guard Array(bytes[0..<Self.magic.count]) == Self.magic else { throw TravelError(.notACapsule, "the file does not start with CARTCAPS") }
        reader.offset = Self.magic.count
        let version: UInt16 = try reader.read("the header")
        guard version == Self.formatVersion else {
            throw TravelError(.unsupportedVersion, "capsule format \(version); this build reads format \(Self.formatVersion)")
        }
        let _: UInt16 = try reader.read("the header")
        let count: UInt32 = try reader.read("the header")
        // The file's own SHA-256 covers everything before the trailer, which in a whole file is
        // its last `trailerBytes`. That hash starts now on another thread, beside the sections'
        // (it is half of decoding a large capsule); it is used only where it was always checked,
        // and only if the sections end where it assumed, so every refusal stays as it was.
        let wholeHash = SpeculativeHash(bytes, count: bytes.count - Self.trailerBytes)
        defer { wholeHash.wait() }
        guard count <= Self.maxSections else { throw TravelError(.malformed, "\(count) sections, more than \(Self.maxSections)") }
        var sections: [String: [UInt8]] = [:]
        for _ in 0..<count {
            let kind = String(decoding: try reader.take(4, "a section header"), as: UTF8.self)
            let length: UInt64 = try reader.read("the header of section \(kind)")
            let digest = try reader.take(32, "the header of section \(kind)")
            guard length <= UInt64(reader.remaining) else {
                throw TravelError(.truncated, "section \(kind) says \(length) bytes but \(reader.remaining) remain")
            }
            let payload = try reader.take(Int(length), "section \(kind)")
            guard Array(SHA256.hash(data: payload)) == digest else {
                throw TravelError(.checksumMismatch, "section \(kind): its SHA-256 does not match its bytes")
            }
            guard sections[kind] == nil else { throw TravelError(.malformed, "section \(kind) appears twice") }
            sections[kind] = payload  // unknown kinds are kept aside and ignored: newer writers may add some
        }
        let covered = reader.offset
        guard reader.remaining >= Self.trailerBytes else { throw TravelError(.truncated, "the file ends before its trailer") }
        guard try reader.take(4, "the trailer") == Self.trailerMagic else { throw TravelError(.malformed, "no CEND trailer after the sections") }
        let whole = try reader.take(32, "the trailer")
        let computed = covered == wholeHash.count ? wholeHash.wait() : Array(SHA256.hash(data: bytes[0..<covered]))
        guard computed == whole else {
            throw TravelError(.checksumMismatch, "the file's SHA-256 does not match its bytes")
        }
        guard reader.remaining == 0 else { throw TravelError(.malformed, "\(reader.remaining) bytes after the trailer") }
        func section(_ kind: String) throws(TravelError) -> [UInt8] {
            guard let payload = sections[kind] else { throw TravelError(.malformed, "no \(kind) section") }
            return payload
        }
        let capsule = Capsule(
            meta: try Self.decodeMeta(try section("META")), snapshots: try Self.decodeSnapshots(try section("SNAP")),
            records: try Self.decodeRecords(try section("RECS")), inputs: try Self.decodeInputs(try section("EXTR")))
        guard capsule.inputs.map(\.seq) == capsule.records.map(\.seq) else {
            throw TravelError(.malformed, "the EXTR section does not list the records of the RECS section")
        }
        return capsule
    }

    static let valueLimits = CodecLimits(maxEnvelopeBytes: 1 << 31, maxStringBytes: 1 << 20, maxBinaryBytes: 1 << 31, maxContainerEntries: 1 << 24)

    static func value(_ bytes: [UInt8], _ section: String) throws(TravelError) -> MCPValue {
        do {
            return try EnvelopeDecoder(limits: Self.valueLimits).decodeValue(bytes)
        } catch {
            throw TravelError(.malformed, "section \(section) is not msgpack: \(error)")
        }
    }

    static func decodeMeta(_ bytes: [UInt8]) throws(TravelError) -> Meta {
        let value = try Self.value(bytes, "META")
        func field(_ key: String) throws(TravelError) -> MCPValue {
            guard let field = value[key] else { throw TravelError(.malformed, "META has no \(key)") }
            return field
        }
        func uint(_ key: String) throws(TravelError) -> UInt64 {
            guard case .int(let number) = try field(key), number >= 0 else { throw TravelError(.malformed, "META.\(key) is not a count") }
            return UInt64(number)
        }
        func string(_ key: String) throws(TravelError) -> String {
            guard case .string(let text) = try field(key) else { throw TravelError(.malformed, "META.\(key) is not a string") }
            return text
        }
        guard let kind = Kind(rawValue: try string("kind")) else { throw TravelError(.malformed, "META.kind is neither correlation nor range") }
        var correlation: MessageID?
        if case .string(let text) = try field("correlation_id") {
            guard let id = MessageID(string: text) else { throw TravelError(.malformed, "META.correlation_id is not an id") }
            correlation = id
        }
        guard case .array(let actors) = try field("actors"), case .array(let expected) = try field("expected") else {
            throw TravelError(.malformed, "META.actors and META.expected must be arrays")
        }
        var addresses: [Address] = []
        for actor in actors {
            guard case .string(let text) = actor, let address = try? Address(validating: text) else {
                throw TravelError(.malformed, "META.actors holds something that is not an address")
            }
            addresses.append(address)
        }
        var digests: [Expected] = []
        for entry in expected {
            guard case .string(let actor)? = entry["actor"], case .int(let lastSeq)? = entry["last_seq"], lastSeq >= 0,
                case .string(let digest)? = entry["digest"], let address = try? Address(validating: actor)
            else { throw TravelError(.malformed, "META.expected holds an entry without actor, last_seq and digest") }
            digests.append(Expected(actor: address, lastSeq: UInt64(lastSeq), digest: digest))
        }
        return Meta(
            kind: kind, correlation: correlation, fromSeq: try uint("from_seq"), toSeq: try uint("to_seq"),
            sourceLastSeq: try uint("source_last_seq"), sourceHeadHash: try string("source_head_hash"), hierarchy: try string("hierarchy"),
            actors: addresses, expected: digests)
    }

    static func decodeSnapshots(_ bytes: [UInt8]) throws(TravelError) -> [Snapshot] {
        guard case .array(let entries) = try Self.value(bytes, "SNAP") else { throw TravelError(.malformed, "SNAP is not an array") }
        var snapshots: [Snapshot] = []
        for entry in entries {
            guard case .string(let actor)? = entry["actor"], case .int(let seq)? = entry["seq"], seq >= 0,
                case .int(let format)? = entry["format_version"], let formatVersion = UInt32(exactly: format),
                case .binary(let state)? = entry["state"]
            else { throw TravelError(.malformed, "SNAP holds an entry without actor, seq, format_version and state") }
            snapshots.append(Snapshot(actor: actor, seq: UInt64(seq), formatVersion: formatVersion, state: state))
        }
        return snapshots
    }

    static func decodeRecords(_ bytes: [UInt8]) throws(TravelError) -> [(seq: UInt64, bytes: [UInt8])] {
        var reader = ByteReader(bytes: bytes)
        let count: UInt32 = try reader.read("RECS")
        guard count <= Self.maxRecords else { throw TravelError(.malformed, "RECS says \(count) records, more than \(Self.maxRecords)") }
        var records: [(seq: UInt64, bytes: [UInt8])] = []
        records.reserveCapacity(min(Int(count), bytes.count / 12))
        var previous: UInt64 = 0
        for _ in 0..<count {
            let seq: UInt64 = try reader.read("RECS")
            let length: UInt32 = try reader.read("RECS")
            guard seq > previous else { throw TravelError(.malformed, "RECS: record \(seq) after \(previous): not in log order") }
            records.append((seq, try reader.take(Int(length), "record \(seq)")))
            previous = seq
        }
        guard reader.remaining == 0 else { throw TravelError(.malformed, "RECS: \(reader.remaining) bytes after the last record") }
        return records
    }

    static func decodeInputs(_ bytes: [UInt8]) throws(TravelError) -> [Input] {
        var reader = ByteReader(bytes: bytes)
        let count: UInt32 = try reader.read("EXTR")
        guard Int(count) <= Self.maxRecords, Int(count) * 25 == reader.remaining else {
            throw TravelError(.malformed, "EXTR says \(count) entries in \(reader.remaining) bytes")
        }
        var inputs: [Input] = []
        inputs.reserveCapacity(Int(count))
        for _ in 0..<count {
            let seq: UInt64 = try reader.read("EXTR")
            let clock: UInt64 = try reader.read("EXTR")
            let entropy: UInt64 = try reader.read("EXTR")
            let flag: UInt8 = try reader.read("EXTR")
            guard flag <= 1 else { throw TravelError(.malformed, "EXTR: the input flag of \(seq) is \(flag)") }
            inputs.append(Input(seq: seq, clockMilliseconds: Int64(bitPattern: clock), entropy: entropy, isInput: flag == 1))
        }
        return inputs
    }
}

/// SHA-256 of `bytes[0..<count]`, computed on a thread of its own from the start (nothing
/// when `count` is negative: a file shorter than a trailer is refused before any hash).
final class SpeculativeHash: @unchecked Sendable {
    let count: Int
    private var digest: [UInt8] = []
    private let done = DispatchSemaphore(value: 0)
    private var waited = false

    init(_ bytes: [UInt8], count: Int) {
        self.count = count
        guard count >= 0 else {
            self.waited = true
            return
        }
        let thread = Thread { [self] in
            Thread.current.name = "cartrita-hash"
            self.digest = Array(SHA256.hash(data: bytes[0..<count]))  // written before the signal, read after the wait
            self.done.signal()
        }
        thread.start()
    }

    /// The digest, once the thread is done. Called from one thread only; idempotent.
    @discardableResult
    func wait() -> [UInt8] {
        if !self.waited {
            self.done.wait()
            self.waited = true
        }
        return self.digest
    }
}

/// Big-endian reads with bounds checks; running off the end is a truncated capsule.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    var remaining: Int { self.bytes.count - self.offset }

    mutating func take(_ count: Int, _ what: String) throws(TravelError) -> [UInt8] {
        guard count >= 0, count <= self.remaining else {
            throw TravelError(.truncated, "the file ends inside \(what) (needs \(count) bytes, \(self.remaining) remain)")
        }
        defer { self.offset += count }
        return Array(self.bytes[self.offset..<self.offset + count])
    }

    mutating func read<T: FixedWidthInteger>(_ what: String) throws(TravelError) -> T {
        let raw = try self.take(MemoryLayout<T>.size, what)
        return raw.reduce(T.zero) { ($0 << 8) | T($1) }
    }
}
