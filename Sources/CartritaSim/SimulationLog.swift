import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode

// MARK: - The simulation's log

/// What the simulator needs of a log: what recovery reads (`ReplayableLog`), an append that
/// refuses a known id (the exactly_once dedupe), snapshots, the whole record list for the
/// oracles, and a check of the log's invariants. Two implementations: `MemoryLog` (fast, the
/// default) and `LMDBSimulationLog` (the real event log in a folder, which the time-travel
/// tools can open afterwards). The same seed gives the same run, and the same digest, on both.
protocol SimulationLog: ReplayableLog {
    var records: [LogRecord] { get }
    var lastSeq: UInt64 { get }
    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) -> UInt64?
    func contains(_ id: MessageID) -> Bool
    func save(_ snapshot: Snapshot)
    /// A power loss: records after `seq` are gone, with the snapshots that cover them; returns
    /// how many records went. Only the in-memory log can (LMDB records are never rewritten).
    func truncate(after seq: UInt64) -> Int
    /// nil when the log's invariants hold, else the first problem.
    func verify() -> String?
}

/// The simulator on the real event log: every delivery is appended and committed (one commit
/// each, `fast` durability: a simulated crash is not a real one, so nothing needs to reach the
/// disk before the next step), snapshots go to the LMDB snapshot store, and recovery reads it
/// through the production pipeline. Storage errors the simulator did not inject are a failed
/// run, reported by the `log_verifies` oracle.
final class LMDBSimulationLog: SimulationLog {
    let log: EventLog
    private(set) var lastSeq: UInt64
    var problems: [String] = []

    init(_ log: EventLog) throws(EventLogError) {
        self.log = log
        self.lastSeq = try log.stat().lastSeq
    }

    var records: [LogRecord] {
        do {
            return try self.log.records()
        } catch {
            self.problems.append("reading the records: \(error)")
            return []
        }
    }

    func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        do {
            let seq = try self.log.appendAndWait(envelope, clockMilliseconds: clockMilliseconds, entropy: entropy)
            self.lastSeq = seq
            return seq
        } catch where error.code == .duplicateID {
            return nil
        } catch {
            self.problems.append("appending \(envelope.id): \(error)")
            return nil
        }
    }

    func contains(_ id: MessageID) -> Bool { ((try? self.log.seq(ofMessage: id)) ?? nil) != nil }

    func save(_ snapshot: Snapshot) {
        do {
            try self.log.saveSnapshotAndWait(snapshot)
        } catch {
            self.problems.append("saving a snapshot of \(snapshot.actor): \(error)")
        }
    }

    func truncate(after seq: UInt64) -> Int {
        precondition(seq >= self.lastSeq, "an LMDB log's records are never rewritten: tail_loss needs the in-memory log")
        return 0
    }

    func verify() -> String? {
        if let problem = self.problems.first { return problem }
        do {
            return try self.log.verify().firstProblem.map(\.description)
        } catch {
            return "verify: \(error)"
        }
    }

    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot? {
        try self.log.latestSnapshot(of: actor, atOrBefore: seq, accepting: accepting)
    }

    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] { try self.log.heads() }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] { try self.log.seqs(ofMessages: ids) }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? { try self.log.record(seq) }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] { try self.log.seqs(correlation: correlation) }

    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) { try self.log.replay(from: seq, body) }
}

// MARK: - The in-memory log

/// The log of a simulation, kept in memory, with what recovery needs (`ReplayableLog`): seqs
/// from 1, the clock and entropy of each delivery, the id index that refuses a second delivery of
/// the same id (exactly_once), heads, a task index and a snapshot store. A crash of the simulated
/// process loses nothing here: this is what was committed.
final class MemoryLog: SimulationLog {
    private(set) var records: [LogRecord] = []
    private var ids: [MessageID: UInt64] = [:]
    private var byCorrelation: [MessageID: [UInt64]] = [:]
    private var headOf: [String: UInt64] = [:]
    private var snapshotStore: [String: [Snapshot]] = [:]

    var lastSeq: UInt64 { UInt64(self.records.count) }

    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        guard self.ids[envelope.id] == nil else { return nil }
        let seq = UInt64(self.records.count + 1)
        let actor = envelope.recipient.rawValue
        let header = RecordHeader(
            seq: seq, prevHash: .zero, actorPrevSeq: self.headOf[actor] ?? 0, clockMilliseconds: clockMilliseconds, entropy: entropy)
        self.records.append(LogRecord(header: header, envelope: envelope))
        self.ids[envelope.id] = seq
        self.byCorrelation[envelope.correlationID, default: []].append(seq)
        self.headOf[actor] = seq
        return seq
    }

    func contains(_ id: MessageID) -> Bool { self.ids[id] != nil }

    /// The log's invariants: seqs from 1 without gaps, each record's actor chain pointing at the
    /// actor's previous record, no id twice. nil when they hold.
    func verify() -> String? {
        var heads: [String: UInt64] = [:]
        var seen: Set<MessageID> = []
        for (position, record) in self.records.enumerated() {
            let seq = UInt64(position + 1)
            guard record.header.seq == seq else { return "record \(position + 1) has seq \(record.header.seq)" }
            let actor = record.envelope.recipient.rawValue
            guard record.header.actorPrevSeq == heads[actor] ?? 0 else {
                return "seq \(seq): actor_prev_seq \(record.header.actorPrevSeq), the actor's previous record is \(heads[actor] ?? 0)"
            }
            heads[actor] = seq
            guard seen.insert(record.envelope.id).inserted else { return "seq \(seq): id \(record.envelope.id) twice" }
        }
        return nil
    }

    /// A power loss: records after `seq` are gone, and the snapshots that cover them. Returns
    /// how many records went.
    func truncate(after seq: UInt64) -> Int {
        guard seq < self.lastSeq else { return 0 }
        let lost = self.records[Int(seq)...]
        for record in lost.reversed() {
            let envelope = record.envelope
            self.ids[envelope.id] = nil
            self.byCorrelation[envelope.correlationID]?.removeLast()
            if self.byCorrelation[envelope.correlationID]?.isEmpty == true { self.byCorrelation[envelope.correlationID] = nil }
            // The actor's head goes back along its chain.
            let actor = envelope.recipient.rawValue
            if record.header.actorPrevSeq == 0 { self.headOf[actor] = nil } else { self.headOf[actor] = record.header.actorPrevSeq }
        }
        let count = lost.count
        self.records.removeLast(count)
        for (actor, list) in self.snapshotStore {
            let kept = list.filter { $0.seq <= seq }
            self.snapshotStore[actor] = kept.isEmpty ? nil : kept
        }
        return count
    }


    func save(_ snapshot: Snapshot) {
        var list = self.snapshotStore[snapshot.actor, default: []]
        list.append(snapshot)
        // The newest three, as the LMDB store keeps (it also keeps spaced older ones for time
        // travel; a simulation only recovers, which reads the newest).
        if list.count > 3 { list.removeFirst(list.count - 3) }
        self.snapshotStore[snapshot.actor] = list
    }

    /// Every kept snapshot, by actor then seq.
    var allSnapshots: [Snapshot] {
        self.snapshotStore.keys.sorted().flatMap { self.snapshotStore[$0]! }
    }

    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot? {
        self.snapshotStore[actor]?.last { $0.seq <= seq && accepting($0.formatVersion) }
    }

    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] {
        self.headOf.map { (actor: $0.key, seq: $0.value) }.sorted { $0.actor < $1.actor }
    }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] { ids.map { self.ids[$0] } }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        seq >= 1 && seq <= self.lastSeq ? self.records[Int(seq - 1)] : nil
    }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] { self.byCorrelation[correlation] ?? [] }

    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        var position = Int(max(1, seq)) - 1
        while position < self.records.count {
            let end = min(self.records.count, position + 256)
            let batch = self.records[position..<end].map { (seq: $0.header.seq, record: $0) }
            if !body(batch) { return }
            position = end
        }
    }
}
