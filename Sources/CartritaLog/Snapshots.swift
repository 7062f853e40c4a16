import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import Crypto
import Dispatch

/// An actor's state as of a sequence number: everything addressed to the actor up to and
/// including `seq` is folded into `state`. An actor is rebuilt from its newest usable snapshot
/// plus the records after it (MCP-SPEC §6).
///
/// Stored under `address ‖ 0x00 ‖ seq` as a msgpack map, store format 1:
/// `{"v": 1, "actor": str, "seq": uint, "format_version": uint, "sha256": bin 32, "state": bin}`.
/// `format_version` is the actor's own state format; `sha256` covers `state`.
public struct Snapshot: Hashable, Sendable {
    public static let storeFormatVersion: UInt64 = 1

    public var actor: String
    public var seq: UInt64
    public var formatVersion: UInt32
    public var state: [UInt8]

    public init(actor: String, seq: UInt64, formatVersion: UInt32, state: [UInt8]) {
        self.actor = actor
        self.seq = seq
        self.formatVersion = formatVersion
        self.state = state
    }
}

/// What `snapshots(of:)` reports for each stored snapshot, readable or not.
public struct SnapshotInfo: Hashable, Sendable {
    public var actor: String
    public var seq: UInt64
    public var formatVersion: UInt32?
    public var stateBytes: Int
    /// Nil when the snapshot reads back intact; otherwise why it cannot be used.
    public var problem: String?
}

struct PendingSnapshot: @unchecked Sendable {
    var snapshot: Snapshot
    /// The stored form (with the state's SHA-256), made by the caller: not on the writer's thread.
    var encoded: [UInt8]
    var completion: @Sendable (Result<Void, EventLogError>) -> Void

    init(snapshot: Snapshot, completion: @escaping @Sendable (Result<Void, EventLogError>) -> Void) {
        self.snapshot = snapshot
        self.encoded = snapshot.encoded()
        self.completion = completion
    }
}

extension Snapshot {
    static let decodeLimits = CodecLimits(maxEnvelopeBytes: 1 << 31, maxStringBytes: 1 << 16, maxBinaryBytes: 1 << 31, maxDepth: 4)

    func encoded() -> [UInt8] {
        let writer = MsgPackWriter(initialCapacityBytes: self.state.count + 128)
        writer.writeMapHeader(6)
        writer.writeKey("v")
        writer.write(Self.storeFormatVersion)
        writer.writeKey("actor")
        writer.write(self.actor)
        writer.writeKey("seq")
        writer.write(self.seq)
        writer.writeKey("format_version")
        writer.write(UInt64(self.formatVersion))
        writer.writeKey("sha256")
        writer.writeBinary(Array(SHA256.hash(data: self.state)))
        writer.writeKey("state")
        writer.writeBinary(self.state)
        return writer.bytes
    }

    /// Decodes and checks a stored snapshot; throws a sentence saying why it is unusable.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(SnapshotProblem) -> Snapshot {
        let value: MCPValue
        do {
            value = try EnvelopeDecoder(limits: Self.decodeLimits).decodeValue(bytes)
        } catch {
            throw SnapshotProblem(message: "undecodable: \(error)")
        }
        guard case .int(let version)? = value["v"] else { throw SnapshotProblem(message: "missing store version") }
        guard UInt64(version) == Self.storeFormatVersion else {
            throw SnapshotProblem(message: "snapshot store format \(version) is not supported")
        }
        guard case .string(let actor)? = value["actor"], case .int(let seq)? = value["seq"],
            case .int(let format)? = value["format_version"], let formatVersion = UInt32(exactly: format),
            case .binary(let digest)? = value["sha256"], case .binary(let state)? = value["state"]
        else { throw SnapshotProblem(message: "missing or mistyped fields") }
        guard Array(SHA256.hash(data: state)) == digest else {
            throw SnapshotProblem(message: "checksum mismatch")
        }
        return Snapshot(actor: actor, seq: UInt64(seq), formatVersion: formatVersion, state: state)
    }
}

/// Which of an actor's snapshots stay, decided walking them newest first: the newest
/// `keepNewest` (recovery's fallbacks when the newest is unreadable), then the newest one of each
/// window of `spacingSeqs` seqs (time travel's starting points). A log of S seqs thus keeps
/// about `keepNewest + S / spacingSeqs` snapshots per actor, and any point of the log has one
/// at most about `2 × spacingSeqs` seqs before it.
public struct SnapshotRetention: Sendable {
    public let keepNewest: Int
    public let spacingSeqs: UInt64
    private var seen = 0
    private var lastWindow: UInt64?

    public init(keepNewest: Int, spacingSeqs: UInt64) {
        self.keepNewest = keepNewest
        self.spacingSeqs = spacingSeqs
    }

    /// Called once per snapshot, newest first.
    public mutating func keeps(seq: UInt64) -> Bool {
        self.seen += 1
        let window = self.spacingSeqs > 0 ? seq / self.spacingSeqs : 0
        defer { self.lastWindow = window }
        if self.seen <= self.keepNewest { return true }
        guard self.spacingSeqs > 0 else { return false }
        return window != self.lastWindow
    }
}

struct SnapshotProblem: Error {
    var message: String
}

extension LogWriter {
    /// Saves and prunes within the transaction `txn`: the new snapshot plus the newest
    /// `snapshotsKeptPerActor - 1` older ones remain, and of the rest the newest in each window
    /// of `snapshotRetentionSpacingSeqs` seqs (see `SnapshotRetention`). The writer does this in
    /// the transaction of its next group commit (`commit(_:snapshots:)`): a snapshot used to be
    /// a durable commit of its own, two syncs each, which at 85 snapshots a second took 9% of
    /// the writer's time, between the commits every actor waits for.
    func putSnapshot(_ pending: PendingSnapshot, in txn: LMDBWriteTransaction) throws {
        let snapshot = pending.snapshot
        try txn.put(self.databases.snapshots, key: EventLog.actorKey(snapshot.actor, snapshot.seq), value: pending.encoded)
        // Walk this actor's snapshots newest first; delete what the retention drops.
        var retention = SnapshotRetention(
            keepNewest: self.configuration.snapshotsKeptPerActor, spacingSeqs: self.configuration.snapshotRetentionSpacingSeqs)
        var doomed: [[UInt8]] = []
        try txn.withCursor(self.databases.snapshots) { cursor in
            let prefix = Array(snapshot.actor.utf8) + [0]
            var entry = try cursor.setRange(key: EventLog.actorKey(snapshot.actor, .max))
            if entry == nil || !entry!.key.starts(with: prefix) || entry!.key.count != prefix.count + 8 {
                entry = entry == nil ? try cursor.last() : try cursor.prev()
            }
            while let (key, _) = entry, key.starts(with: prefix), key.count == prefix.count + 8 {
                if !retention.keeps(seq: key.bigEndianUInt64(atByteOffset: prefix.count) ?? 0) { doomed.append([UInt8](key)) }
                entry = try cursor.prev()
            }
        }
        for key in doomed { try txn.delete(self.databases.snapshots, key: key) }
    }

    /// A snapshot may only cover records the log holds.
    func checkSnapshot(_ pending: PendingSnapshot) -> EventLogError? {
        guard pending.snapshot.seq < self.nextSeq else {
            return EventLogError(.invalidArgument, "snapshot covers seq \(pending.snapshot.seq) but the log ends at \(self.nextSeq - 1)")
        }
        return nil
    }
}

extension EventLog {
    /// Stores a snapshot of `snapshot.actor` covering records up to `snapshot.seq`.
    public func saveSnapshot(_ snapshot: Snapshot) async throws(EventLogError) {
        let writer = try self.writerOrThrow()
        let result: Result<Void, EventLogError> = await withCheckedContinuation { continuation in
            writer.enqueue(.snapshot(PendingSnapshot(snapshot: snapshot, completion: { continuation.resume(returning: $0) })))
        }
        try result.get()
    }

    /// Queues `snapshot` for the writer's next group commit and returns at once; `completion`
    /// hears the outcome on the writer's thread (it must not wait for the writer). For an actor
    /// that should not stop delivering while its snapshot is stored: a snapshot is an
    /// optimisation of recovery, and nothing the actor does next depends on it being stored.
    public func saveSnapshot(_ snapshot: Snapshot, then completion: @escaping @Sendable (Result<Void, EventLogError>) -> Void) throws(EventLogError) {
        let writer = try self.writerOrThrow()
        writer.enqueue(.snapshot(PendingSnapshot(snapshot: snapshot, completion: completion)))
    }

    /// The blocking form of `saveSnapshot`, for callers outside Swift concurrency (the
    /// simulator on an LMDB log). Never call it from a task on the cooperative pool.
    public func saveSnapshotAndWait(_ snapshot: Snapshot) throws(EventLogError) {
        let writer = try self.writerOrThrow()
        let done = DispatchSemaphore(value: 0)
        let box = SnapshotResultBox()
        writer.enqueue(.snapshot(PendingSnapshot(snapshot: snapshot, completion: { result in
            box.result = result
            done.signal()
        })))
        done.wait()
        try box.result!.get()
    }

    /// The newest snapshot of `actor` at or before `seq` that reads back intact and whose
    /// format the caller accepts. Unreadable or refused ones are skipped in favour of older ones;
    /// nil means: replay from the start.
    public func latestSnapshot(
        of actor: String, atOrBefore seq: UInt64 = .max, accepting: (UInt32) -> Bool = { _ in true }
    ) throws(EventLogError) -> Snapshot? {
        do {
            return try self.environment.read { txn -> Snapshot? in
                try txn.withCursor(self.databases.snapshots) { cursor -> Snapshot? in
                    let prefix = Array(actor.utf8) + [0]
                    let start = seq == .max ? EventLog.actorKey(actor, .max) : EventLog.actorKey(actor, seq + 1)
                    var entry = try cursor.setRange(key: start)
                    // setRange lands on the first key >= start; the candidates are before it,
                    // unless it is an exact match for seq == .max.
                    if let (key, _) = entry, seq == .max, [UInt8](key) == start {
                        // keep it
                    } else {
                        entry = entry == nil ? try cursor.last() : try cursor.prev()
                    }
                    while let (key, value) = entry, key.starts(with: prefix), key.count == prefix.count + 8 {
                        // A snapshot stored under another actor's or seq's key is as unusable as
                        // an unreadable one: replaying after the wrong seq would corrupt the state.
                        if let snapshot = try? Snapshot.decode(value), snapshot.actor == actor,
                            snapshot.seq == key.bigEndianUInt64(atByteOffset: prefix.count), accepting(snapshot.formatVersion)
                        {
                            return snapshot
                        }
                        entry = try cursor.prev()
                    }
                    return nil
                }
            }
        } catch {
            throw EventLogError.wrap(error, "reading snapshots of \(actor)")
        }
    }

    /// Every stored snapshot of `actor`, newest first, with the reason any of them is unusable.
    public func snapshots(of actor: String) throws(EventLogError) -> [SnapshotInfo] {
        do {
            return try self.environment.read { txn in
                var infos: [SnapshotInfo] = []
                try txn.withCursor(self.databases.snapshots) { cursor in
                    let prefix = Array(actor.utf8) + [0]
                    try cursor.forEach(from: prefix) { key, value in
                        guard key.starts(with: prefix), key.count == prefix.count + 8 else { return false }
                        let seq = key.bigEndianUInt64(atByteOffset: prefix.count) ?? 0
                        do throws(SnapshotProblem) {
                            let snapshot = try Snapshot.decode(value)
                            let misplaced = snapshot.actor != actor || snapshot.seq != seq
                            infos.append(SnapshotInfo(
                                actor: actor, seq: seq, formatVersion: snapshot.formatVersion, stateBytes: snapshot.state.count,
                                problem: misplaced ? "stored under \(actor) at \(seq) but holds \(snapshot.actor) at \(snapshot.seq)" : nil))
                        } catch {
                            infos.append(SnapshotInfo(actor: actor, seq: seq, formatVersion: nil, stateBytes: value.count, problem: error.message))
                        }
                        return true
                    }
                }
                return infos.reversed()
            }
        } catch {
            throw EventLogError.wrap(error, "listing snapshots of \(actor)")
        }
    }
}

/// Carries a snapshot commit's result from the writer thread to a blocked caller (the
/// semaphore orders the write before the read).
final class SnapshotResultBox: @unchecked Sendable {
    var result: Result<Void, EventLogError>?
}
