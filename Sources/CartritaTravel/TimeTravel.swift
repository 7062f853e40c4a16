import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime

/// One actor rebuilt as of a sequence number.
package struct ActorState: Sendable {
    package var address: Address
    /// The last record addressed to the actor at or before the travel point (0: none).
    package var lastSeq: UInt64
    /// SHA-256 of the state's snapshot bytes: the digest `cartrita recover` prints.
    package var digest: String
    package var state: MCPValue
    /// Where replay started: a stored snapshot's seq, or an in-memory checkpoint's (0: the
    /// initial state).
    package var snapshotSeq: UInt64
    /// Records delivered to the actor's handler after that snapshot.
    package var replayed: Int
}

/// Every (or one) actor's state at `at`.
package struct TravelResult: Sendable {
    package var at: UInt64
    /// In address order.
    package var actors: [ActorState]
    package var recordsReplayed: Int { self.actors.reduce(0) { $0 + $1.replayed } }
}

/// Rebuilds actors as they were at any sequence number of a log: each from its newest usable
/// snapshot at or before that point, plus its own records after the snapshot up to the point.
///
/// An actor's state is a function of the records addressed to it, in log order, and of nothing
/// else (ARCHITECTURE.md). So each actor replays alone, from the `by_actor` index, and travel
/// reads only the records of the actors asked for between their snapshots and the point, never
/// the whole log. Effects are not compared with the log here: that is recovery's and capsule
/// replay's job (the divergence detector); travel only reads.
package final class TimeTravel {
    package let log: EventLog
    package let hierarchy: Hierarchy
    /// False: every actor replays from its initial state (a check that snapshots agree).
    package let useSnapshots: Bool
    /// Records read and decoded per read transaction.
    static let readBatchRecords = 512
    /// How many sent messages an actor's replay keeps before it forgets those already logged
    /// (only when it must say what is owed: capsule export).
    static let maxTrackedSentMessages = 16_384

    /// In-memory checkpoints for a long-lived traveller (the debugger steps back and forth
    /// through one log): every `everyDeliveries` deliveries an actor's replay keeps a copy of its
    /// state, and later travels start from the nearest one at or before the point when it is
    /// newer than the nearest stored snapshot. The log keeps one snapshot per actor in each
    /// window of `snapshotRetentionSpacingSeqs` (8,192 seqs by default), so a single travel
    /// replays at most about two windows; checkpoints make stepping through one place cheaper still.
    /// Not thread-safe: one traveller per thread.
    package struct CheckpointPolicy: Sendable {
        package var everyDeliveries: Int
        /// Past this many bytes of state no checkpoint is added (a limit on memory).
        package var maxBytes: Int

        package init(everyDeliveries: Int = 2_000, maxBytes: Int = 256 << 20) {
            precondition(everyDeliveries >= 1, "a checkpoint needs at least one delivery")
            self.everyDeliveries = everyDeliveries
            self.maxBytes = maxBytes
        }
    }

    struct Checkpoint {
        var seq: UInt64
        var formatVersion: UInt32
        var bytes: [UInt8]
    }

    let checkpointPolicy: CheckpointPolicy?
    /// By actor, in seq order.
    var checkpoints: [Address: [Checkpoint]] = [:]
    package private(set) var checkpointBytes = 0
    package var checkpointCount: Int { self.checkpoints.values.reduce(0) { $0 + $1.count } }

    /// The BUGGIFY sites a simulated run had on (`sim --write-log` records them beside the log),
    /// so that replay makes the run's choices; nil for a production log.
    let buggify: Buggify?

    package init(
        log: EventLog, hierarchy: Hierarchy = .standard(), useSnapshots: Bool = true, checkpoints: CheckpointPolicy? = nil,
        buggify: Buggify? = nil
    ) {
        self.log = log
        self.hierarchy = hierarchy
        self.useSnapshots = useSnapshots
        self.checkpointPolicy = checkpoints
        self.buggify = buggify?.replaying()
    }

    /// Restores `cell` from its newest checkpoint at or before `at` if that is after `covered`.
    func restoreCheckpoint(_ cell: any ActorCell, at: UInt64, covered: UInt64) -> UInt64? {
        guard let list = self.checkpoints[cell.address],
            let best = list.last(where: { $0.seq <= at }), best.seq > covered,
            cell.restore(formatVersion: best.formatVersion, bytes: best.bytes, seq: best.seq)
        else { return nil }
        return best.seq
    }

    func keepCheckpoint(_ cell: any ActorCell) {
        guard let policy = self.checkpointPolicy, self.checkpointBytes < policy.maxBytes else { return }
        let seq = cell.lastSeq
        var list = self.checkpoints[cell.address] ?? []
        let position = list.firstIndex { $0.seq >= seq } ?? list.count
        guard position == list.count || list[position].seq != seq else { return }
        let bytes = cell.snapshotBytes()
        list.insert(Checkpoint(seq: seq, formatVersion: cell.stateFormatVersion, bytes: bytes), at: position)
        self.checkpoints[cell.address] = list
        self.checkpointBytes += bytes.count
    }

    /// The state of `actors` (nil: every actor of the hierarchy) at `at`.
    package func state(at: UInt64, actors: [Address]? = nil) throws(TravelError) -> TravelResult {
        let rebuilt = try self.rebuild(at: at, actors: actors, trackOwed: false)
        return TravelResult(at: at, actors: rebuilt.map(\.actorState))
    }

    /// A cell rebuilt at a point, with what it had sent that the log did not hold by then.
    package struct Rebuilt {
        package var cell: any ActorCell
        package var snapshotSeq: UInt64
        package var replayed: Int
        /// Only filled with `trackOwed`: messages made at or before the point that the log holds
        /// after it or not at all (what a snapshot taken at the point would carry).
        package var owed: [Envelope]

        package var actorState: ActorState {
            ActorState(
                address: self.cell.address, lastSeq: self.cell.lastSeq, digest: Recovery.digest(of: self.cell),
                state: self.cell.describeState(), snapshotSeq: self.snapshotSeq, replayed: self.replayed)
        }
    }

    /// Rebuilds cells at `at`. With `trackOwed`, every handler runs (stateless agents' too) and
    /// each cell's sent messages are followed, so that `owed` is exact: capsule export makes the
    /// snapshots a capsule starts from this way.
    package func rebuild(at: UInt64, actors: [Address]?, trackOwed: Bool) throws(TravelError) -> [Rebuilt] {
        let lastSeq = self.log.lastSeq
        guard at >= 1, at <= lastSeq else {
            throw TravelError(.seqOutOfRange, "seq \(at) is outside the log (1...\(lastSeq))")
        }
        var cells = self.hierarchy.makeCells().sorted { $0.address < $1.address }
        if let actors {
            for actor in actors where !cells.contains(where: { $0.address == actor }) {
                throw TravelError(.unknownActor, "no actor \(actor) in the hierarchy (actors: \(cells.map(\.address.rawValue).joined(separator: ", ")))")
            }
            cells = cells.filter { actors.contains($0.address) }
        }
        var result: [Rebuilt] = []
        for cell in cells {
            do {
                result.append(try self.rebuild(cell, at: at, trackOwed: trackOwed))
            } catch {
                throw .log(error)
            }
        }
        return result
    }

    func rebuild(_ cell: any ActorCell, at: UInt64, trackOwed: Bool) throws(EventLogError) -> Rebuilt {
        let address = cell.address.rawValue
        var covered: UInt64 = 0
        var sent = SentMessages()
        // The newest snapshot at or before the point that this build reads, else an older one.
        var before = at
        while self.useSnapshots,
            let snapshot = try self.log.latestSnapshot(of: address, atOrBefore: before, accepting: { $0 == cell.stateFormatVersion })
        {
            if let wrapper = NodeSnapshot.decode(snapshot.state),
                cell.restore(formatVersion: snapshot.formatVersion, bytes: wrapper.state, seq: snapshot.seq)
            {
                covered = snapshot.seq
                if trackOwed { sent = SentMessages(wrapper.owed) }
                break
            }
            guard snapshot.seq > 0 else { break }
            before = snapshot.seq - 1
        }
        if !trackOwed, let checkpoint = self.restoreCheckpoint(cell, at: at, covered: covered) {
            covered = checkpoint  // (owed messages are not kept with checkpoints: export starts from snapshots)
        }
        let seqs = try self.log.seqs(actor: address, after: covered, through: at)
        var rebuilt = Rebuilt(cell: cell, snapshotSeq: covered, replayed: 0, owed: [])
        if cell.isStateless && !trackOwed {
            // Nothing but the effects could differ, and travel does not look at effects.
            if let last = seqs.last { cell.skip(seq: last) }
            rebuilt.replayed = seqs.count
            return rebuilt
        }
        let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits, validatesEnvelopes: false)
        var start = 0
        while start < seqs.count {
            let chunk = Array(seqs[start..<min(seqs.count, start + Self.readBatchRecords)])
            start += chunk.count
            let raw = try self.log.rawRecords(chunk)
            for (seq, bytes) in zip(chunk, raw) {
                guard let bytes else { throw EventLogError(.corrupted, "record \(seq) is in the actor index of \(address) but not in the log") }
                let record: LogRecord
                do {
                    record = try decoder.decodeRecord(bytes)
                } catch {
                    throw EventLogError(.corrupted, "record \(seq): \(error)")
                }
                let context = DeliveryContext(
                    seq: seq, clockMilliseconds: record.header.clockMilliseconds, entropy: record.header.entropy, buggify: self.buggify)
                let delivery = cell.deliver(record.envelope, context)
                rebuilt.replayed += 1
                if self.checkpointPolicy.map({ rebuilt.replayed % $0.everyDeliveries == 0 }) == true { self.keepCheckpoint(cell) }
                guard trackOwed else { continue }
                sent.record(delivery, clock: context.clockMilliseconds)
                if sent.count > Self.maxTrackedSentMessages {
                    // Forget what the log already holds at or before the point; keep the rest.
                    sent = SentMessages(try sent.owed(atSnapshot: at) { (ids) throws(EventLogError) in try self.log.seqs(ofMessages: ids) })
                }
            }
        }
        if trackOwed {
            rebuilt.owed = try sent.owed(atSnapshot: at) { (ids) throws(EventLogError) in try self.log.seqs(ofMessages: ids) }
        }
        return rebuilt
    }
}
