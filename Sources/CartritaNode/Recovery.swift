import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Foundation

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

    let log: EventLog
    let hierarchy: Hierarchy
    /// False: replay everything from the first record (the benchmark's no-snapshot case, and a
    /// check that snapshots and full replay agree).
    let useSnapshots: Bool
    let handlers: Handlers

    public init(log: EventLog, hierarchy: Hierarchy, useSnapshots: Bool = true, handlers: Handlers = .all) {
        self.log = log
        self.hierarchy = hierarchy
        self.useSnapshots = useSnapshots
        self.handlers = handlers
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

    struct TimerKey: Hashable {
        var owner: Address
        var correlation: MessageID
    }

    /// Returns the rebuilt cells and the report. A divergence stops the replay where it is found.
    public func run() throws(EventLogError) -> (cells: [any ActorCell], report: Report) {
        let started = ContinuousClock.now
        var report = Report()
        let cells = self.hierarchy.makeCells()
        var byAddress: [Address: any ActorCell] = [:]
        for cell in cells { byAddress[cell.address] = cell }
        report.lastSeq = self.log.lastSeq

        // 1. Snapshots: the newest one each actor can read, else an older one, else nothing.
        var snapshotSeq: [Address: UInt64] = [:]
        var expected: [MessageID: Expected] = [:]
        var timers: [TimerKey: [MessageID]] = [:]
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
                        expected[envelope.id] = Expected(envelope: envelope, producedAt: 0)
                        timers[TimerKey(owner: envelope.sender, correlation: envelope.correlationID), default: []].append(envelope.id)
                    }
                    break
                }
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
        var cancelled: Set<MessageID> = []
        var deferred: [MessageID: Deferred] = [:]
        var divergence: Divergence?
        let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits)
        if start <= report.lastSeq {
            try self.log.scanRaw(from: start) { seq, bytes in
                let record: LogRecord
                do {
                    record = try decoder.decodeRecord(bytes)
                } catch {
                    throw EventLogError(.corrupted, "record \(seq): \(error)")
                }
                let envelope = record.envelope
                // Was this message made by a handler that is being replayed? Then replay must
                // have made it too, identically.
                if let sender = byAddress[envelope.sender], sender.address.kind != "client", seq > (snapshotSeq[sender.address] ?? 0) {
                    if let parent = envelope.parentID, envelope.id == parent.derived(tag: Node.refusalTag) {
                        // The runtime's own refusal on the sender's behalf: an input.
                    } else if let parent = envelope.parentID, let skipped = deferred[parent], skipped.cell === sender {
                        deferred[parent] = nil  // answered in the log: the skipped handler owes nothing
                    } else if let made = expected.removeValue(forKey: envelope.id) {
                        if made.envelope != envelope {
                            divergence = Divergence(
                                seq: made.producedAt, actor: sender.address,
                                message: "replay made message \(envelope.id) differently",
                                logged: envelope.jsonString(), replayed: made.envelope.jsonString())
                            return false
                        }
                    } else if !cancelled.contains(envelope.id) {
                        divergence = Divergence(
                            seq: seq, actor: sender.address,
                            message: "the log has message \(envelope.id) from \(sender.address) that replay did not make",
                            logged: envelope.jsonString(), replayed: "")
                        return false
                    }
                }
                guard let cell = byAddress[envelope.recipient], seq > (snapshotSeq[envelope.recipient] ?? 0) else { return true }
                let context = DeliveryContext(seq: seq, clockMilliseconds: record.header.clockMilliseconds, entropy: record.header.entropy)
                report.recordsReplayed += 1
                if self.handlers == .stateful && cell.isStateless {
                    cell.skip(seq: seq)
                    deferred[envelope.id] = Deferred(envelope: envelope, context: context, cell: cell)
                    return true
                }
                let delivery = cell.deliver(envelope, context)
                for correlation in delivery.cancelledTimers {
                    let key = TimerKey(owner: cell.address, correlation: correlation)
                    guard let ids = timers.removeValue(forKey: key) else { continue }
                    for id in ids {
                        if let timer = expected[id], timer.envelope.timestampMilliseconds > context.clockMilliseconds {
                            expected[id] = nil
                            cancelled.insert(id)  // it may still show up: it could have fired first
                        }
                    }
                }
                for message in delivery.messages {
                    expected[message.id] = Expected(envelope: message, producedAt: seq)
                    if message.timestampMilliseconds > context.clockMilliseconds {
                        timers[TimerKey(owner: cell.address, correlation: message.correlationID), default: []].append(message.id)
                    }
                }
                return true
            }
        }
        report.divergence = divergence
        guard divergence == nil else {
            report.seconds = (ContinuousClock.now - started).seconds
            return (cells, report)
        }

        // Skipped handlers whose answers the log lacks run now: their effects are owed.
        for skipped in deferred.values.sorted(by: { $0.context.seq < $1.context.seq }) {
            let lastSeq = skipped.cell.lastSeq
            let delivery = skipped.cell.deliver(skipped.envelope, skipped.context)
            skipped.cell.skip(seq: lastSeq)  // running it late must not move the actor back
            for message in delivery.messages { expected[message.id] = Expected(envelope: message, producedAt: skipped.context.seq) }
        }

        // 3. What replay made but the scan did not meet: delivered before the scan (compare
        //    it), refused, cancelled at its recipient, at_most_once (not owed), or owed.
        var remaining = expected.values.map(\.envelope).filter { $0.deliveryMode != .atMostOnce }
        remaining.sort { ($0.timestampMilliseconds, $0.id) < ($1.timestampMilliseconds, $1.id) }
        let logged = try self.log.seqs(ofMessages: remaining.map(\.id))
        let refused = try self.log.seqs(ofMessages: remaining.map { $0.id.derived(tag: Node.refusalTag) })
        for (index, envelope) in remaining.enumerated() {
            if let seq = logged[index] {
                if let record = try self.log.record(seq), record.envelope != envelope, let made = expected[envelope.id], made.producedAt > 0 {
                    report.divergence = Divergence(
                        seq: made.producedAt, actor: envelope.sender, message: "replay made message \(envelope.id) differently",
                        logged: record.envelope.jsonString(), replayed: envelope.jsonString())
                    break
                }
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
