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
    /// Numbers the actors (the simulator's cells, in order) before the first append, so an
    /// append can name its recipient by position. False when the log numbered them otherwise.
    func register(actors: [Address]) -> Bool
    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    /// `actor`: the recipient's position in `register(actors:)`, or nil (looked up by name).
    func append(_ envelope: Envelope, actor: Int?, clockMilliseconds: Int64, entropy: UInt64) -> UInt64?
    func contains(_ id: MessageID) -> Bool
    func save(_ snapshot: Snapshot)
    /// A power loss: records after `seq` are gone, with the snapshots that cover them; returns
    /// how many records went. Only the in-memory log can (LMDB records are never rewritten).
    func truncate(after seq: UInt64) -> Int
    /// nil when the log's invariants hold, else the first problem.
    func verify() -> String?
    /// The records the exactly_once oracle reads (`AgentTraffic`), in seq order, each with its
    /// kind: every record of another kind is left out.
    func forEachAgentTraffic(_ body: (AgentTraffic, Envelope) -> Void)
}

/// What the exactly_once oracle needs of a record: a request delivered to an agent, or an
/// agent's `agent_crashed` answer (an attempt that took no effect); nothing else.
enum AgentTraffic: UInt8 {
    case other = 0
    case requestToAgent = 1
    case agentCrashed = 2

    /// Only messages to or from an agent matter, and the addresses say so without reading the
    /// payload.
    static func of(_ envelope: Envelope) -> AgentTraffic {
        let toAgent = envelope.recipient.isAgent
        guard toAgent || envelope.sender.isAgent else { return .other }
        switch envelope.payload {
        case .taskRequest where toAgent:
            return .requestToAgent
        case .taskError(let error) where error.code == .agentCrashed && envelope.sender.isAgent:
            return .agentCrashed
        default:
            return .other
        }
    }
}

/// The simulator on the real event log: every delivery is appended (`fast` durability: a
/// simulated crash is not a real one, so nothing needs to reach the disk before the next step),
/// snapshots go to the LMDB snapshot store, and recovery reads it through the production
/// pipeline. Storage errors the simulator did not inject are a failed run, reported by the
/// `log_verifies` oracle.
///
/// Appends are gathered and committed together (`appendInOrderAndWait`), at most
/// `maxPendingRecords` at a time and before anything reads the log or saves a snapshot: one
/// commit and one thread hand-off per record made the LMDB run ten times slower than the
/// in-memory one. The simulator needs each append's answer at once, and has it without the
/// disk: the log started empty (the initialiser's caller checks), so the seq is the count so
/// far, and a refused id is one appended before, which `ids` knows. Each commit checks that the
/// log gave the seqs predicted; a difference is a problem `verify` reports.
final class LMDBSimulationLog: SimulationLog {
    /// Records waiting for their commit: bounded, so a crash point or a snapshot never waits on
    /// a long queue, and well under the writer's own queue limit.
    static let maxPendingRecords = 256

    let log: EventLog
    private(set) var lastSeq: UInt64
    var problems: [String] = []
    /// Every id appended (committed or pending), by seq: the duplicate check.
    private var ids = MessageSeqTable()
    private var pending: [(envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64)] = []

    init(_ log: EventLog) throws(EventLogError) {
        self.log = log
        self.lastSeq = try log.stat().lastSeq
        self.pending.reserveCapacity(Self.maxPendingRecords)
    }

    /// Commits the pending records: before every read, snapshot and verify.
    func flush() {
        guard !self.pending.isEmpty else { return }
        let first = self.lastSeq - UInt64(self.pending.count) + 1
        do {
            let seqs = try self.log.appendInOrderAndWait(self.pending)
            if seqs != Array(first...self.lastSeq) {
                self.problems.append("the log gave seqs \(seqs.first ?? 0)…\(seqs.last ?? 0), the simulation predicted \(first)…\(self.lastSeq)")
            }
        } catch {
            self.problems.append("appending seqs \(first)…\(self.lastSeq): \(error)")
        }
        self.pending.removeAll(keepingCapacity: true)
    }

    var records: [LogRecord] {
        self.flush()
        do {
            return try self.log.records()
        } catch {
            self.problems.append("reading the records: \(error)")
            return []
        }
    }

    /// The event log keys its heads itself: positions are not needed.
    func register(actors: [Address]) -> Bool { true }

    func append(_ envelope: Envelope, actor: Int?, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        let seq = self.lastSeq + 1
        guard self.ids.insert(envelope.id, seq: seq) else { return nil }  // the log would refuse it: duplicate id
        self.lastSeq = seq
        self.pending.append((envelope, clockMilliseconds, entropy))
        if self.pending.count >= Self.maxPendingRecords { self.flush() }
        return seq
    }

    func contains(_ id: MessageID) -> Bool { self.ids.seq(of: id) != nil }

    func save(_ snapshot: Snapshot) {
        self.flush()  // the snapshot covers records up to its seq: they are in the log first
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
        self.flush()
        if let problem = self.problems.first { return problem }
        do {
            return try self.log.verify().firstProblem.map(\.description)
        } catch {
            return "verify: \(error)"
        }
    }

    func forEachAgentTraffic(_ body: (AgentTraffic, Envelope) -> Void) {
        for record in self.records {
            let kind = AgentTraffic.of(record.envelope)
            if kind != .other { body(kind, record.envelope) }
        }
    }

    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot? {
        self.flush()
        return try self.log.latestSnapshot(of: actor, atOrBefore: seq, accepting: accepting)
    }

    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] {
        self.flush()
        return try self.log.heads()
    }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] {
        self.flush()
        return try self.log.seqs(ofMessages: ids)
    }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        self.flush()
        return try self.log.record(seq)
    }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] {
        self.flush()
        return try self.log.seqs(correlation: correlation)
    }

    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        self.flush()
        try self.log.replay(from: seq, body)
    }
}

// MARK: - The in-memory log

/// The log of a simulation, kept in memory, with what recovery needs (`ReplayableLog`): seqs
/// from 1, the clock and entropy of each delivery, the id index that refuses a second delivery of
/// the same id (exactly_once), heads, a task index and a snapshot store. A crash of the simulated
/// process loses nothing here: this is what was committed.
///
/// Actors are numbered (slots): the simulator registers its cells in order and names each
/// append's recipient by position, so the per-append work is array reads, not hashing the
/// address text. An append without a position (the I/O gateway's records) looks the name up.
final class MemoryLog: SimulationLog {
    // Unchecked: one thread appends (see `Simulation`); the dynamic check cost more than the append.
    @exclusivity(unchecked) private(set) var records: [LogRecord] = []
    /// Each record's actor slot, parallel to `records`.
    @exclusivity(unchecked) private var recordActors: [Int32] = []
    /// The records of `AgentTraffic` other than `.other`, by position, with their kind: the
    /// end-of-run oracle reads these few instead of every record. Classified at append, while
    /// the envelope is in cache: the oracle's pass over every envelope of the log (a box, then
    /// the addresses' text, for each) missed the cache on nearly every record.
    @exclusivity(unchecked) private var agentTraffic: [(position: Int32, kind: AgentTraffic)] = []
    @exclusivity(unchecked) private var ids = RecordIDTable()
    /// The task index, built on demand: only recovery asks, so appends do not pay for it. It
    /// covers `records[0..<correlationIndexed]`.
    private var byCorrelation: [MessageID: [UInt64]] = [:]
    private var correlationIndexed = 0
    /// Slot → actor name and its head (0: no record yet); name → slot. Never iterated by hash.
    private var actorNames: [String] = []
    @exclusivity(unchecked) private var headOf: [UInt64] = []
    private var slotOf: [String: Int] = [:]
    private var snapshotStore: [String: [Snapshot]] = [:]

    var lastSeq: UInt64 { UInt64(self.records.count) }

    /// `expectedRecords`: room reserved up front (a guess; the log grows past it as needed), so
    /// a run does not rehash its id index and copy its records again and again while it starts.
    init(expectedRecords: Int = 0) {
        let expected = min(max(0, expectedRecords), 1 << 20)
        self.records.reserveCapacity(expected)
        self.recordActors.reserveCapacity(expected)
        self.ids = RecordIDTable(minimumCapacity: max(1_024, expected))
    }

    func register(actors: [Address]) -> Bool {
        for (position, actor) in actors.enumerated() {
            guard self.slot(of: actor.rawValue) == position else { return false }
        }
        return true
    }

    private func slot(of actor: String) -> Int {
        if let slot = self.slotOf[actor] { return slot }
        self.slotOf[actor] = self.actorNames.count
        self.actorNames.append(actor)
        self.headOf.append(0)
        return self.actorNames.count - 1
    }

    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    func append(_ envelope: Envelope, actor: Int?, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        let seq = UInt64(self.records.count + 1)
        guard self.ids.insert(envelope.id, seq: seq, idAt: self.id(at:)) else { return nil }
        let slot: Int
        if let actor {
            // Compares the text once (the same storage in the common case: a pointer check).
            precondition(self.actorNames[actor] == envelope.recipient.rawValue, "slot \(actor) is not \(envelope.recipient)")
            slot = actor
        } else {
            slot = self.slot(of: envelope.recipient.rawValue)
        }
        let header = RecordHeader(
            seq: seq, prevHash: .zero, actorPrevSeq: self.headOf[slot], clockMilliseconds: clockMilliseconds, entropy: entropy)
        let kind = AgentTraffic.of(envelope)
        if kind != .other { self.agentTraffic.append((Int32(self.records.count), kind)) }
        self.records.append(LogRecord(header: header, envelope: envelope))
        self.recordActors.append(Int32(slot))
        self.headOf[slot] = seq
        return seq
    }

    func forEachAgentTraffic(_ body: (AgentTraffic, Envelope) -> Void) {
        for (position, kind) in self.agentTraffic { body(kind, self.records[Int(position)].envelope) }
    }

    func contains(_ id: MessageID) -> Bool { self.ids.seq(of: id, idAt: self.id(at:)) != nil }

    /// The id of the record at `seq` (the id index keeps only seqs and hash bits).
    @inline(__always)
    private func id(at seq: UInt32) -> MessageID { self.records[Int(seq) - 1].envelope.id }

    /// The log's invariants: seqs from 1 without gaps, each record's actor chain pointing at the
    /// actor's previous record, the heads at the last of each chain, and no id twice (every
    /// record's id is indexed at its own seq, and the index holds nothing else). nil when they
    /// hold.
    func verify() -> String? {
        guard self.recordActors.count == self.records.count else {
            return "\(self.records.count) records but \(self.recordActors.count) actor slots"
        }
        guard self.ids.count == self.records.count else { return "the id index holds \(self.ids.count) ids for \(self.records.count) records" }
        var heads = [UInt64](repeating: 0, count: self.actorNames.count)
        for position in self.records.indices {
            let seq = UInt64(position + 1)
            let header = self.records[position].header
            let envelope = self.records[position].envelope
            guard header.seq == seq else { return "record \(position + 1) has seq \(header.seq)" }
            let slot = Int(self.recordActors[position])
            let actor = self.actorNames[slot]
            guard actor == envelope.recipient.rawValue else { return "seq \(seq): filed under \(actor), addressed to \(envelope.recipient)" }
            guard header.actorPrevSeq == heads[slot] else {
                return "seq \(seq): actor_prev_seq \(header.actorPrevSeq), the actor's previous record is \(heads[slot])"
            }
            heads[slot] = seq
            let indexed = self.ids.seq(of: envelope.id, idAt: self.id(at:))
            guard indexed == seq else { return "seq \(seq): id \(envelope.id) twice (the id index says seq \(indexed.map(String.init) ?? "none"))" }
        }
        for slot in heads.indices where heads[slot] != self.headOf[slot] {
            return "\(self.actorNames[slot]): head \(self.headOf[slot]), its last record is \(heads[slot])"
        }
        return nil
    }

    /// A power loss: records after `seq` are gone, and the snapshots that cover them. Returns
    /// how many records went.
    func truncate(after seq: UInt64) -> Int {
        guard seq < self.lastSeq else { return 0 }
        let kept = Int(seq)
        for position in stride(from: self.records.count - 1, through: kept, by: -1) {
            let record = self.records[position]
            let envelope = record.envelope
            self.ids.remove(envelope.id, idAt: self.id(at:))
            if position < self.correlationIndexed {
                self.byCorrelation[envelope.correlationID]?.removeLast()
                if self.byCorrelation[envelope.correlationID]?.isEmpty == true { self.byCorrelation[envelope.correlationID] = nil }
            }
            // The actor's head goes back along its chain.
            self.headOf[Int(self.recordActors[position])] = record.header.actorPrevSeq
        }
        let count = self.records.count - kept
        self.records.removeLast(count)
        self.recordActors.removeLast(count)
        while let last = self.agentTraffic.last, Int(last.position) >= kept { self.agentTraffic.removeLast() }
        self.correlationIndexed = min(self.correlationIndexed, kept)
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
        self.actorNames.indices.filter { self.headOf[$0] > 0 }.map { (actor: self.actorNames[$0], seq: self.headOf[$0]) }
            .sorted { $0.actor < $1.actor }
    }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] { ids.map { self.ids.seq(of: $0, idAt: self.id(at:)) } }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        seq >= 1 && seq <= self.lastSeq ? self.records[Int(seq - 1)] : nil
    }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] {
        while self.correlationIndexed < self.records.count {
            let record = self.records[self.correlationIndexed]
            self.byCorrelation[record.envelope.correlationID, default: []].append(record.header.seq)
            self.correlationIndexed += 1
        }
        return self.byCorrelation[correlation] ?? []
    }

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
