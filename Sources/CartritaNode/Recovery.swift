import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Foundation
import Synchronization

/// Handlers that gave other effects on replay than the log recorded: the first one found, with
/// its sequence number and both sides. This is the nondeterminism detector.
public struct Divergence: Error, Hashable, Sendable, CustomStringConvertible {
    /// The delivery whose replay diverged (or, for a message replay did not make, the record).
    public var seq: UInt64
    public var actor: Address
    public var message: String
    /// What the log recorded, as JSON ("" when it recorded nothing).
    public var logged: String
    /// What the handler produced on replay, as JSON ("" when it produced nothing).
    public var replayed: String

    public var description: String {
        "divergence at seq \(seq) (\(actor)): \(message)\n  logged:   \(logged)\n  replayed: \(replayed)"
    }
}

/// Rebuilds every actor from its newest usable snapshot plus the records after it, checks the
/// effects the handlers produce against the log, and works out what is owed: messages that were
/// sent but never delivered, and timers that have not fired.
public struct Recovery {
    public struct Report: Sendable {
        public var cellsFromSnapshots = 0
        public var recordsReplayed = 0
        /// Where the replay scan started (1: no snapshot helped).
        public var scanFromSeq: UInt64 = 1
        public var lastSeq: UInt64 = 0
        /// Owed messages, in (timestamp, id) order, to give to `Node.resume`.
        public var pending: [Envelope] = []
        public var divergence: Divergence?
        public var seconds: Double = 0
        /// Snapshots that could not be used (unreadable, or refused by the actor), as
        /// `ACTOR@SEQ`: the actor fell back to an older one or to replay from the start.
        public var snapshotsSkipped: [String] = []
    }

    /// Which handlers replay runs.
    public enum Handlers: String, Sendable {
        /// Every one, and every effect is compared with the log: the full nondeterminism check.
        case all
        /// Stateful actors' handlers only. A stateless agent's delivery is noted, and its handler
        /// runs at the end only if the log lacks its answer (the answer is owed). Its effects are
        /// then not compared: this is the fast restart.
        case stateful
    }

    let log: any ReplayableLog
    let hierarchy: Hierarchy
    /// False: replay everything from the first record (the benchmark's no-snapshot case, and a
    /// check that snapshots and full replay agree).
    let useSnapshots: Bool
    let handlers: Handlers
    /// The BUGGIFY sites the recorded run had on (a simulation's), so replay makes its choices;
    /// nil in production.
    let buggify: Buggify?
    /// Records a replayed handler made come stored and are checked by bytes behind the replay
    /// (see `run`). Off for the second pass after such a check found a divergence.
    var comparesStoredBytes = true

    public init(
        log: any ReplayableLog, hierarchy: Hierarchy, useSnapshots: Bool = true, handlers: Handlers = .all, buggify: Buggify? = nil
    ) {
        self.log = log
        self.hierarchy = hierarchy
        self.useSnapshots = useSnapshots
        self.handlers = handlers
        self.buggify = buggify?.replaying()
    }

    /// A stateless actor's delivery whose handler has not run (see `Handlers.stateful`).
    struct Deferred {
        var envelope: Envelope
        var context: DeliveryContext
        var cell: any ActorCell
    }

    struct Expected {
        var envelope: Envelope
        /// The delivery that produced it (0: carried over in a snapshot).
        var producedAt: UInt64
    }

    /// What replay made and the scan has not met yet, by id. One id may be made twice: an
    /// exactly_once retry is sent under the id of its first attempt (the log keeps one).
    ///
    /// Invariant: an id has an entry in `more` only while it has one in `first` (every change
    /// below keeps it), so the common case, one copy, costs one hash per operation: `more` is
    /// nearly always empty and is asked only when it is not.
    struct ExpectedMessages {
        var first: [MessageID: Expected] = [:]
        var more: [MessageID: [Expected]] = [:]

        mutating func insert(_ expected: Expected) {
            let id = expected.envelope.id
            if let previous = self.first.updateValue(expected, forKey: id) {
                self.first[id] = previous  // a second copy: the first stays first
                self.more[id, default: []].append(expected)
            }
        }

        /// Whether replay made more than one copy under `id`.
        func hasMore(_ id: MessageID) -> Bool { !self.more.isEmpty && self.more[id] != nil }

        /// Takes the copy under `id` when replay made exactly one.
        mutating func takeOnly(_ id: MessageID) -> Expected? {
            self.hasMore(id) ? nil : self.first.removeValue(forKey: id)
        }

        /// Puts back a copy `takeOnly` took.
        mutating func putBack(_ expected: Expected) { self.first[expected.envelope.id] = expected }

        func copies(of id: MessageID) -> [Expected] {
            (self.first[id].map { [$0] } ?? []) + (self.more[id] ?? [])
        }

        /// Takes the copy equal to the logged `envelope`. Nil when replay made none under its id;
        /// `.failure` with the first copy when it made one that differs.
        mutating func take(_ envelope: Envelope) -> Result<Void, DivergentCopy>? {
            if !self.hasMore(envelope.id) {
                // One copy or none: every message but an exactly_once retry.
                guard let only = self.first.removeValue(forKey: envelope.id) else { return nil }
                guard only.envelope == envelope else {
                    self.first[envelope.id] = only
                    return .failure(DivergentCopy(expected: only))
                }
                return .success(())
            }
            let copies = self.copies(of: envelope.id)
            guard !copies.isEmpty else { return nil }
            guard let index = copies.firstIndex(where: { $0.envelope == envelope }) else {
                return .failure(DivergentCopy(expected: copies[0]))
            }
            var rest = copies
            rest.remove(at: index)
            self.first[envelope.id] = rest.first
            self.more[envelope.id] = rest.count > 1 ? Array(rest.dropFirst()) : nil
            return .success(())
        }

        /// Forgets the copies of timer `id` due after `clock`. True when there was one.
        mutating func cancelTimer(_ id: MessageID, dueAfter clock: Int64) -> Bool {
            if !self.hasMore(id) {
                guard let only = self.first[id], only.envelope.timestampMilliseconds > clock else { return false }
                self.first[id] = nil
                return true
            }
            let copies = self.copies(of: id)
            let kept = copies.filter { $0.envelope.timestampMilliseconds <= clock }
            guard kept.count < copies.count else { return false }
            self.first[id] = kept.first
            self.more[id] = kept.count > 1 ? Array(kept.dropFirst()) : nil
            return true
        }

        var all: [Expected] { Array(self.first.values) + self.more.values.flatMap { $0 } }
    }

    struct DivergentCopy: Error {
        var expected: Expected
    }

    struct TimerKey: Hashable {
        var owner: Address
        var correlation: MessageID

        /// The table hashes the correlation id only (`MessageID`'s one multiply): hashing the
        /// owner's text with SipHash cost more than the rest of the lookup, and an actor's timers
        /// are told apart by their correlation already. Equal keys still hash equal (`==` also
        /// compares the owner).
        func _rawHashValue(seed: Int) -> Int { self.correlation._rawHashValue(seed: seed) }
        func hash(into hasher: inout Hasher) { hasher.combine(self.correlation) }
    }

    /// Returns the rebuilt cells and the report. A divergence stops the replay where it is found
    /// (one found by the stored-record checker, which runs behind the replay, is replayed again
    /// without stored records so that it stops exactly there too).
    public func run() throws(EventLogError) -> (cells: [any ActorCell], report: Report) {
        let started = ContinuousClock.now
        var report = Report()
        let cells = self.hierarchy.makeCells()
        var byAddress: [Address: any ActorCell] = [:]
        for cell in cells { byAddress[cell.address] = cell }
        report.lastSeq = self.log.lastSeq

        // 1. Snapshots: the newest one each actor can read, else an older one, else nothing.
        var snapshotSeq: [Address: UInt64] = [:]
        let scan = ScanTables()
        for cell in cells where self.useSnapshots {
            var before = UInt64.max
            while let snapshot = try self.log.latestSnapshot(
                of: cell.address.rawValue, atOrBefore: before, accepting: { $0 == cell.stateFormatVersion })
            {
                if let wrapper = NodeSnapshot.decode(snapshot.state),
                    cell.restore(formatVersion: snapshot.formatVersion, bytes: wrapper.state, seq: snapshot.seq)
                {
                    snapshotSeq[cell.address] = snapshot.seq
                    report.cellsFromSnapshots += 1
                    for envelope in wrapper.owed {
                        scan.expected.insert(Expected(envelope: envelope, producedAt: 0))
                        scan.timers[TimerKey(owner: envelope.sender, correlation: envelope.correlationID), default: []].append(envelope.id)
                    }
                    break
                }
                report.snapshotsSkipped.append("\(cell.address)@\(snapshot.seq)")
                guard snapshot.seq > 0 else { break }
                before = snapshot.seq - 1
            }
        }

        // 2. One scan from the oldest point any actor needs. Actors whose last record is
        //    covered by their snapshot need nothing.
        var start = report.lastSeq + 1
        for (actor, head) in try self.log.heads() {
            let address = Address(actor)
            guard byAddress[address] != nil else { continue }
            let covered = snapshotSeq[address] ?? 0
            if head > covered { start = min(start, covered + 1) }
        }
        report.scanFromSeq = start
        // Each actor once, by address: its cell, where its snapshot left it, whether it is a
        // client. One lookup per address instead of three: a lookup hashes the address's text,
        // and the scan asks for a record's sender and its recipient.
        var actors: [ActorKey: ReplayedActor] = [:]
        actors.reserveCapacity(cells.count)
        for cell in cells where actors[ActorKey(cell.address)] == nil {
            actors[ActorKey(cell.address)] = ReplayedActor(
                cell: cell, coveredSeq: snapshotSeq[cell.address] ?? 0, isClient: cell.address.isClient,
                skipsHandler: self.handlers == .stateful && cell.isStateless)
        }
        var divergence: Divergence?
        // One record of the scan; false stops it (a divergence). `matched`: replay's copy was
        // already found identical, byte for byte, and taken (a stored record, below).
        func replay(_ seq: UInt64, _ record: LogRecord, matched: Bool) -> Bool {
            let envelope = record.envelope
            // Was this message made by a handler that is being replayed? Then replay must
            // have made it too, identically.
            if !matched, let sender = actors[ActorKey(envelope.sender)], !sender.isClient, seq > sender.coveredSeq {
                if let parent = envelope.parentID, envelope.id == parent.derived(tag: Node.refusalTag) {
                    // The runtime's own refusal on the sender's behalf: an input.
                } else if let parent = envelope.parentID, let skipped = scan.deferred[parent], skipped.cell === sender.cell {
                    scan.deferred[parent] = nil  // answered in the log: the skipped handler owes nothing
                } else if let taken = scan.expected.take(envelope) {
                    if case .failure(let copy) = taken {
                        divergence = Divergence(
                            seq: copy.expected.producedAt, actor: sender.cell.address,
                            message: "replay made message \(envelope.id) differently",
                            logged: envelope.jsonString(), replayed: copy.expected.envelope.jsonString())
                        return false
                    }
                } else if !scan.cancelled.contains(envelope.id) {
                    divergence = Divergence(
                        seq: seq, actor: sender.cell.address,
                        message: "the log has message \(envelope.id) from \(sender.cell.address) that replay did not make",
                        logged: envelope.jsonString(), replayed: "")
                    return false
                }
            }
            guard let recipient = actors[ActorKey(envelope.recipient)], seq > recipient.coveredSeq else { return true }
            let cell = recipient.cell
            let context = DeliveryContext(
                seq: seq, clockMilliseconds: record.header.clockMilliseconds, entropy: record.header.entropy, buggify: self.buggify)
            scan.recordsReplayed += 1
            if recipient.skipsHandler {
                cell.skip(seq: seq)
                scan.deferred[envelope.id] = Deferred(envelope: envelope, context: context, cell: cell)
                return true
            }
            let delivery = cell.deliver(envelope, context)
            for correlation in delivery.cancelledTimers {
                let key = TimerKey(owner: cell.address, correlation: correlation)
                guard let ids = scan.timers.removeValue(forKey: key) else { continue }
                for id in ids where scan.expected.cancelTimer(id, dueAfter: context.clockMilliseconds) {
                    scan.cancelled.insert(id)  // it may still show up: it could have fired first
                }
            }
            for message in delivery.messages {
                scan.expected.insert(Expected(envelope: message, producedAt: seq))
                if message.timestampMilliseconds > context.clockMilliseconds {
                    scan.timers[TimerKey(owner: cell.address, correlation: message.correlationID), default: []].append(message.id)
                }
            }
            return true
        }
        // Records whose sender's handler runs here come from the log as stored bytes, not
        // decoded: replay made its own copy of each, and the copy is delivered at once. Whether
        // the copy is byte for byte the record is checked batch by batch on a thread behind the
        // replay (`StoredChecker`), by encoding the copy: a few times cheaper than decoding the
        // record. Inputs, and records replay made nothing (or several copies) for, are decoded
        // and judged as before.
        let storedSenders = !self.comparesStoredBytes ? [] : cells.filter { !$0.address.isClient && !(self.handlers == .stateful && $0.isStateless) }.map(\.address)
        let decoder = EnvelopeDecoder(validatesEnvelopes: self.log.replayValidatesEnvelopes)
        let checker = StoredChecker()
        var unreadable: EventLogError?
        var divergenceRecordSeq = UInt64.max
        var checkerFoundIt = false
        // Record `index` of the batch at `entries`, stored. Its bytes are not touched here (not
        // even retained): the checker reads them from the batch, which it is handed whole.
        func replay(_ seq: UInt64, storedAt index: Int, of entries: UnsafeBufferPointer<ReplayBatch.Element>, _ peek: RecordPeek) -> Bool {
            if let copy = scan.expected.takeOnly(peek.id) {
                if let sender = actors[ActorKey(copy.envelope.sender)], !sender.isClient, seq > sender.coveredSeq {
                    scan.checks.append(StoredCheck(index: index, copy: copy))
                    return replay(seq, LogRecord(header: peek.header, envelope: copy.envelope), matched: true)
                }
                scan.expected.putBack(copy)
            }
            guard case .stored(let bytes, _) = entries[index].entry else { preconditionFailure("record \(seq) is not stored") }
            do {
                return replay(seq, try decoder.decodeRecord(bytes), matched: false)
            } catch {
                unreadable = EventLogError(.corrupted, "record \(seq) does not decode: \(error)")
                unreadable?.recordSeq = seq
                return false
            }
        }
        /// A mismatch the checker found becomes the divergence if it comes before any the
        /// replay found itself (the replay ran ahead of the checker: its own may be later).
        func judge(_ mismatch: StoredChecker.Mismatch?) {
            guard let mismatch, mismatch.seq < divergenceRecordSeq else { return }
            let copy = mismatch.copy
            switch mismatch.logged {
            case .failure(let error):
                unreadable = EventLogError(.corrupted, "record \(mismatch.seq) does not decode: \(error)")
                unreadable?.recordSeq = mismatch.seq
            case .success(let logged):
                divergence = Divergence(
                    seq: copy.producedAt, actor: copy.envelope.sender, message: "replay made message \(logged.envelope.id) differently",
                    logged: logged.envelope.jsonString(), replayed: copy.envelope.jsonString())
                divergenceRecordSeq = mismatch.seq
                checkerFoundIt = true
            }
        }
        if start <= report.lastSeq {
            do {
                try self.log.replayEntries(from: start, storedSenders: storedSenders) { batch in
                    // By index, not `for entry in batch`: that would copy (retain and release)
                    // every entry's bytes, made on a reader thread, on this one.
                    let going = batch.withUnsafeBufferPointer { entries -> Bool in
                        guard let base = entries.baseAddress else { return true }
                        for index in entries.indices {
                            // Through the element's address: `entries[index]` loads a copy of
                            // the whole element (a retain and a release of its bytes) before
                            // reading one field of it.
                            let element = base + index
                            let seq = element.pointee.seq
                            let going: Bool
                            if let peek = element.pointee.entry.storedPeek {
                                going = replay(seq, storedAt: index, of: entries, peek)
                            } else if case .decoded(let record) = element.pointee.entry {
                                going = replay(seq, record, matched: false)
                            } else {
                                preconditionFailure("record \(seq) is neither stored nor decoded")
                            }
                            if !going {
                                if divergence != nil { divergenceRecordSeq = seq }
                                return false
                            }
                        }
                        return true
                    }
                    // What was delivered before a stop is checked all the same: the checker may
                    // find an earlier divergence.
                    checker.submit(scan.checks, of: batch)
                    scan.checks.removeAll(keepingCapacity: true)
                    return going && !checker.hasMismatch
                }
            } catch {
                // The log failed under the replay (a record it cannot hand out). A record the
                // checker could not decode may come before it: the first one is named.
                judge(checker.finish())
                if let unreadable, (unreadable.recordSeq ?? .max) < (error.recordSeq ?? .max) { throw unreadable }
                throw error
            }
        }
        judge(checker.finish())
        report.recordsReplayed = scan.recordsReplayed
        if let unreadable { throw unreadable }
        if checkerFoundIt {
            // The replay ran past it by a few batches, as far as the checker lagged: a matter of
            // timing. Replayed again with every record decoded, it stops right at the divergence,
            // so the cells handed back (and any digest printed from them) are the same every run.
            var again = self
            again.comparesStoredBytes = false
            return try again.run()
        }
        report.divergence = divergence
        guard divergence == nil else {
            report.seconds = (ContinuousClock.now - started).seconds
            return (cells, report)
        }

        // Skipped handlers whose answers the log lacks run now: their effects are owed.
        for skipped in scan.deferred.values.sorted(by: { $0.context.seq < $1.context.seq }) {
            let lastSeq = skipped.cell.lastSeq
            let delivery = skipped.cell.deliver(skipped.envelope, skipped.context)
            skipped.cell.skip(seq: lastSeq)  // running it late must not move the actor back
            for message in delivery.messages { scan.expected.insert(Expected(envelope: message, producedAt: skipped.context.seq)) }
        }

        // 3. What replay made but the scan did not meet: already in the log, refused, cancelled
        //    at its recipient, at_most_once (not owed), or owed.
        // Timers are owed whatever their mode: they are the actor's own, not the network's.
        var remaining = scan.expected.all.filter { $0.envelope.deliveryMode != .atMostOnce || $0.envelope.sender == $0.envelope.recipient }
        // A total order, whatever the hash order `all` came in: it is the order owed work resumes.
        remaining.sort {
            ($0.envelope.timestampMilliseconds, $0.envelope.id, $0.envelope.retryCount, $0.producedAt)
                < ($1.envelope.timestampMilliseconds, $1.envelope.id, $1.envelope.retryCount, $1.producedAt)
        }
        let logged = try self.log.seqs(ofMessages: remaining.map(\.envelope.id))
        let refused = try self.log.seqs(ofMessages: remaining.map { $0.envelope.id.derived(tag: Node.refusalTag) })
        for (index, made) in remaining.enumerated() {
            let envelope = made.envelope
            if logged[index] != nil {
                // Its id is in the log: delivered before the scan began (made before the
                // sender's snapshot), or a later copy under an id already delivered (an
                // exactly_once retry), which the id index refuses. Nothing is owed. (A copy made
                // by replay and delivered after it was met in the scan and compared there.)
                continue
            }
            if refused[index] != nil { continue }
            if Node.isNewWork(envelope), try self.wasCancelled(envelope) { continue }
            report.pending.append(envelope)
        }
        report.seconds = (ContinuousClock.now - started).seconds
        return (cells, report)
    }

    /// The digest `recover` and `travel` print for a cell: SHA-256 of its state's snapshot bytes.
    public static func digest(of cell: any ActorCell) -> String { NodeSnapshot.digest(cell.snapshotBytes()) }

    /// True when the recipient was told to cancel the message's task: the runtime then dropped
    /// the queued message, and it is not owed.
    func wasCancelled(_ envelope: Envelope) throws(EventLogError) -> Bool {
        for seq in try self.log.seqs(correlation: envelope.correlationID) {
            guard let record = try self.log.record(seq), record.envelope.recipient == envelope.recipient else { continue }
            if case .taskError(let error) = record.envelope.payload, error.code == .cancelled, !record.envelope.sender.isAgent {
                return true
            }
        }
        return false
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension Envelope {
    func jsonString() -> String { self.json.rendered() }
}

// MARK: - Checking optimistic deliveries

/// An address as the replay scan's table of actors keys it. The scan looks up two addresses per
/// record, and `Address`'s own hash (SipHash over its text, seeded and finalized) cost more than
/// the rest of each lookup. This one mixes the text's length and its first and last eight bytes
/// (addresses differ there: `agent.datasage.1@v1.0` and `…2@v1.0` in the last ones) with one
/// multiply; `==` still compares the whole text, so a collision costs a compare, never a wrong
/// actor. (Bytes decide the hash where `==` is Unicode's canonical equivalence: the table's keys
/// are the hierarchy's addresses, valid ones, `[a-z0-9._-]` and `@v`, and no other text is
/// canonically equivalent to such text, since no character decomposes to one of those. So an
/// address equal to a key has its very bytes, and its hash.)
struct ActorKey: Hashable {
    var address: Address

    init(_ address: Address) { self.address = address }

    static func == (lhs: ActorKey, rhs: ActorKey) -> Bool { lhs.address == rhs.address }

    func _rawHashValue(seed: Int) -> Int {
        var text = self.address.rawValue
        let (first, last, count) = text.withUTF8 { bytes -> (UInt64, UInt64, Int) in
            let count = bytes.count
            guard count >= 8 else {
                var small: UInt64 = 0
                for byte in bytes { small = small << 8 | UInt64(byte) }
                return (small, 0, count)
            }
            let raw = UnsafeRawBufferPointer(bytes)
            return (raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self), raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self), count)
        }
        let key = UInt64(bitPattern: Int64(seed))
        let product = (first ^ key ^ 0xA076_1D64_78BD_642F ^ UInt64(count)).multipliedFullWidth(by: last ^ (key &* 0xE703_7ED1_A0B4_28DB) ^ 0x8EBC_6AF0_9C88_C6E3)
        return Int(bitPattern: UInt(truncatingIfNeeded: product.high ^ product.low))
    }

    func hash(into hasher: inout Hasher) { hasher.combine(self._rawHashValue(seed: 0)) }
}

/// One actor as the replay scan sees it.
struct ReplayedActor {
    var cell: any ActorCell
    /// The seq its snapshot covers (0: none): records up to it are not delivered to it again.
    var coveredSeq: UInt64
    var isClient: Bool
    /// A stateless agent under `Handlers.stateful`: its deliveries are noted, not run.
    var skipsHandler: Bool
}

/// The replay scan's tables, shared by the scan's nested functions. An object with unchecked
/// exclusivity rather than local variables: captured by those functions, each access to a local
/// paid a dynamic exclusivity check (`swift_beginAccess`/`swift_endAccess`), several per record.
/// The scan runs on one thread and never holds two overlapping accesses to one of these.
final class ScanTables {
    @exclusivity(unchecked) var expected = Recovery.ExpectedMessages()
    @exclusivity(unchecked) var timers: [Recovery.TimerKey: [MessageID]] = [:]
    /// Timers cancelled while replay still expected them (they may show up: one may have fired
    /// before its cancel).
    @exclusivity(unchecked) var cancelled: Set<MessageID> = []
    @exclusivity(unchecked) var deferred: [MessageID: Recovery.Deferred] = [:]
    /// The current batch's stored records whose copies were delivered, for the checker.
    @exclusivity(unchecked) var checks: [StoredCheck] = []
    @exclusivity(unchecked) var recordsReplayed = 0
}

/// A stored record whose replayed copy was delivered in its place, to be checked: the record
/// is entry `index` of the batch it is submitted with.
struct StoredCheck: @unchecked Sendable {
    var index: Int
    var copy: Recovery.Expected
}

/// Checks optimistic deliveries on a thread of its own, behind the replay: encodes each copy
/// and compares it with the stored record's envelope bytes, in log order. A record whose bytes
/// differ is decoded; if its values differ too (not merely its encoding, as a record written by
/// a build that encoded differently may), that is the mismatch, and checking stops.
///
/// Each batch of checks comes with the replay batch its records are in, handed over whole: the
/// replay thread never copies (retains) a record's bytes, only this thread reads them.
///
/// Bounded: at most `maxQueuedBatches` batches wait; `submit` blocks past that. `finish()` must
/// be called (it stops the thread).
final class StoredChecker: @unchecked Sendable {
    struct Mismatch {
        var seq: UInt64
        var copy: Recovery.Expected
        /// The record as decoded, or why it does not decode.
        var logged: Result<LogRecord, CodecError>
    }

    struct Work {
        var checks: [StoredCheck]
        var batch: ReplayBatch
    }

    static let maxQueuedBatches = 8

    private let condition = NSCondition()
    private var queue: [Work] = []
    private var checking = false
    private var closed = false
    private var found: Mismatch?
    /// Set once `found` is: the replay asks after every batch, and reading `found` under the
    /// lock copied the optional out and destroyed it again each time (a visible cost there).
    private let foundAny = Atomic(false)
    private let done = DispatchSemaphore(value: 0)

    init() {
        let thread = Thread { [self] in
            Thread.current.name = "cartrita-check"
            self.run()
            self.done.signal()
        }
        thread.start()
    }

    /// The encoder a checker compares with (its tests judge `same` with this one too).
    static func makeEncoder() -> EnvelopeEncoder { EnvelopeEncoder() }

    private func run() {
        let encoder = Self.makeEncoder()
        let decoder = EnvelopeDecoder(validatesEnvelopes: false)
        while true {
            self.condition.lock()
            while self.queue.isEmpty && !self.closed { self.condition.wait() }
            if self.queue.isEmpty {
                self.condition.unlock()
                return
            }
            let work = self.queue.removeFirst()
            self.checking = true
            let stop = self.found != nil
            self.condition.broadcast()
            self.condition.unlock()
            var mismatch: Mismatch?
            if !stop {
                // In place, by index: iterating copied each check (a retain and a release of
                // its envelope) and each record's bytes.
                mismatch = work.checks.withUnsafeBufferPointer { checks in
                    work.batch.withUnsafeBufferPointer { batch in
                        for position in checks.indices {
                            let index = checks[position].index
                            if let mismatch = Self.check(batch[index], checks[position].copy, encoder, decoder) { return mismatch }
                        }
                        return nil
                    }
                }
            }
            self.condition.lock()
            if self.found == nil, let mismatch {
                self.found = mismatch
                self.foundAny.store(true, ordering: .releasing)
            }
            self.checking = false
            self.condition.broadcast()
            self.condition.unlock()
        }
    }

    /// One stored record against replay's copy of it: nil when they agree.
    private static func check(
        _ entry: ReplayBatch.Element, _ copy: Recovery.Expected, _ encoder: EnvelopeEncoder, _ decoder: EnvelopeDecoder
    ) -> Mismatch? {
        guard case .stored(let bytes, let peek) = entry.entry else {
            preconditionFailure("record \(entry.seq) was checked but is not stored")
        }
        if Self.same(bytes, peek, copy.envelope, encoder) { return nil }
        let logged = Result { () throws(CodecError) in try decoder.decodeRecord(bytes) }
        if case .success(let record) = logged, record.envelope == copy.envelope { return nil }
        return Mismatch(seq: entry.seq, copy: copy, logged: logged)
    }

    static func same(_ stored: ArraySlice<UInt8>, _ peek: RecordPeek, _ copy: Envelope, _ encoder: EnvelopeEncoder) -> Bool {
        stored.withUnsafeBytes { stored in
            encoder.withEncodedBody(copy) { body, fields in
                fields == peek.envelopeFieldCount && body.count == stored.count - peek.envelopeBodyStart
                    && memcmp(body.baseAddress!, stored.baseAddress! + peek.envelopeBodyStart, body.count) == 0
            }
        }
    }

    /// Queues one batch's checks, in log order after the previous ones. `batch` is the replay
    /// batch the checked records are in.
    func submit(_ checks: [StoredCheck], of batch: ReplayBatch) {
        guard !checks.isEmpty else { return }
        self.condition.lock()
        defer { self.condition.unlock() }
        while self.queue.count >= Self.maxQueuedBatches && self.found == nil { self.condition.wait() }
        guard self.found == nil else { return }  // past a mismatch nothing more is checked
        self.queue.append(Work(checks: checks, batch: batch))
        self.condition.broadcast()
    }

    /// The first mismatch found so far, without waiting.
    var mismatch: Mismatch? {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.found
    }

    /// Whether a mismatch was found so far, without waiting or taking the lock.
    var hasMismatch: Bool { self.foundAny.load(ordering: .acquiring) }

    /// Waits until everything submitted is checked, stops the thread, and returns the first
    /// mismatch, if any.
    func finish() -> Mismatch? {
        self.condition.lock()
        self.closed = true
        self.condition.broadcast()
        self.condition.unlock()
        self.done.wait()
        return self.found
    }
}
