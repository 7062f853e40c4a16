import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation

// MARK: - Export

extension TimeTravel {
    /// Packs one task (every record of its correlation id, and everything its actors handled
    /// meanwhile) into a capsule.
    package func exportCapsule(correlation: MessageID) throws(TravelError) -> Capsule {
        let seqs: [UInt64]
        do {
            seqs = try self.log.seqs(correlation: correlation)
        } catch {
            throw .log(error)
        }
        guard let first = seqs.first, let last = seqs.last else {
            throw TravelError(.unknownCorrelation, "the log has no record of task \(correlation)")
        }
        var actors = Set<Address>()
        for record in try self.decoded(seqs) {
            actors.insert(record.envelope.sender)
            actors.insert(record.envelope.recipient)
        }
        return try self.exportCapsule(kind: .correlation, correlation: correlation, from: first, to: last, actors: actors)
    }

    /// Packs the records `from...to` and the actors they concern into a capsule.
    package func exportCapsule(from: UInt64, to: UInt64) throws(TravelError) -> Capsule {
        let lastSeq = self.log.lastSeq
        guard from >= 1, from <= to, to <= lastSeq else {
            throw TravelError(.seqOutOfRange, "the range \(from)...\(to) is not inside the log (1...\(lastSeq))")
        }
        var actors = Set<Address>()
        try self.scan(from: from, to: to) { _, record in
            actors.insert(record.envelope.sender)
            actors.insert(record.envelope.recipient)
        }
        return try self.exportCapsule(kind: .range, correlation: nil, from: from, to: to, actors: actors)
    }

    func exportCapsule(kind: Capsule.Kind, correlation: MessageID?, from: UInt64, to: UInt64, actors involved: Set<Address>) throws(TravelError) -> Capsule {
        // The actors replayed: those of the hierarchy the range concerns (clients included: their
        // counts are state too). Anything else that sent into the range is an input.
        let actors = self.hierarchy.addresses.filter { involved.contains($0) }.sorted()
        let replayed = Set(actors)
        // Where each actor starts: its state just before the range, with what it had sent that
        // the log did not hold yet, exactly as a node's snapshot at that seq would carry.
        var snapshots: [Snapshot] = []
        if from > 1 {
            for rebuilt in try self.rebuild(at: from - 1, actors: actors, trackOwed: true) {
                snapshots.append(Snapshot(
                    actor: rebuilt.cell.address.rawValue, seq: from - 1, formatVersion: rebuilt.cell.stateFormatVersion,
                    state: NodeSnapshot(state: rebuilt.cell.snapshotBytes(), owed: rebuilt.owed).encode()))
            }
        }
        var records: [(seq: UInt64, bytes: [UInt8])] = []
        var inputs: [Capsule.Input] = []
        try self.scan(from: from, to: to) { bytes, record in
            let envelope = record.envelope
            guard replayed.contains(envelope.recipient) || replayed.contains(envelope.sender) else { return }
            guard records.count < Capsule.maxRecords else { return }
            records.append((record.header.seq, bytes))
            inputs.append(Capsule.Input(
                seq: record.header.seq, clockMilliseconds: record.header.clockMilliseconds, entropy: record.header.entropy,
                isInput: !replayed.contains(envelope.sender) || envelope.sender.isClient
                    || envelope.parentID.map { envelope.id == $0.derived(tag: Node.refusalTag) } == true))
        }
        guard records.count < Capsule.maxRecords else {
            throw TravelError(.invalidArgument, "the range holds \(Capsule.maxRecords) or more records: export a smaller one")
        }
        let end = try self.state(at: to, actors: actors)
        let stat: LogStat
        do {
            stat = try self.log.stat()
        } catch {
            throw .log(error)
        }
        let meta = Capsule.Meta(
            kind: kind, correlation: correlation, fromSeq: from, toSeq: to, sourceLastSeq: stat.lastSeq,
            sourceHeadHash: stat.headHash.description, hierarchy: "standard", actors: actors,
            expected: end.actors.map { Capsule.Expected(actor: $0.address, lastSeq: $0.lastSeq, digest: $0.digest) })
        return Capsule(meta: meta, snapshots: snapshots, records: records, inputs: inputs)
    }

    func decoded(_ seqs: [UInt64]) throws(TravelError) -> [LogRecord] {
        let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits)
        var records: [LogRecord] = []
        do {
            for (seq, bytes) in zip(seqs, try self.log.rawRecords(seqs)) {
                guard let bytes else { throw TravelError(.log, "record \(seq) is indexed but missing") }
                records.append(try decoder.decodeRecord(bytes))
            }
        } catch let error as TravelError {
            throw error
        } catch {
            throw TravelError(.log, "\(error)")
        }
        return records
    }

    /// Each record of `from...to` with its stored bytes, in order.
    func scan(from: UInt64, to: UInt64, _ body: ([UInt8], LogRecord) -> Void) throws(TravelError) {
        let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits)
        do {
            try self.log.scanRaw(from: from) { seq, raw in
                guard seq <= to else { return false }
                let bytes = [UInt8](raw)
                body(bytes, try decoder.decodeRecord(bytes))
                return true
            }
        } catch {
            throw .log(error)
        }
    }
}

// MARK: - Replay

/// What replaying a capsule found.
package struct CapsuleReplayReport: Sendable {
    package struct ActorOutcome: Sendable {
        package var address: Address
        package var lastSeq: UInt64
        package var digest: String
        package var expected: String?
        package var matches: Bool { self.digest == self.expected }
    }

    package var meta: Capsule.Meta
    package var records: Int
    package var replayed: Int
    package var divergence: Divergence?
    package var actors: [ActorOutcome]
    /// Messages replay made that the capsule does not hold: sent to actors outside it, or still
    /// in flight at its end.
    package var madeOutside: Int
    /// Actors whose starting snapshot this build does not read (another state format).
    package var snapshotsRefused: [Address]
    package var seconds: Double

    /// Bit-exact: no divergence and every actor reached the digest the source log gave.
    package var passed: Bool { self.divergence == nil && self.snapshotsRefused.isEmpty && self.actors.allSatisfy(\.matches) }
    package var messagesPerSecond: Double { self.seconds > 0 ? Double(self.replayed) / self.seconds : 0 }
}

extension Capsule {
    /// Replays the capsule offline with this build's actors (or `hierarchy`'s: a changed
    /// handler, to see whether a fix changes the outcome). Every effect of a replayed actor is
    /// compared with the record the capsule holds, byte for byte, by recovery's divergence
    /// detector; the first difference is reported with its seq. Then each actor's digest is
    /// compared with the one the source log gave at the capsule's end.
    package func replay(hierarchy base: Hierarchy = .standard()) throws(TravelError) -> CapsuleReplayReport {
        let started = ContinuousClock.now
        // The records are verified on another thread while recovery replays them (see
        // `CapsuleLog`); every one is verified before a report comes out, whatever the replay did.
        // Those the replayed actors sent come stored: recovery compares its copies with their
        // bytes and decodes only what differs (every handler runs here, so every actor's).
        let log = CapsuleLog(streaming: self, storedSenders: self.meta.actors.filter { !$0.isClient })
        defer { log.finish() }
        let actors = self.meta.actors
        for actor in actors where !base.addresses.contains(actor) {
            // A damaged capsule is refused as damaged first, as when it was checked up front.
            try log.verifyAll()
            throw TravelError(.unknownActor, "the capsule replays \(actor), which this build's hierarchy does not have")
        }
        let wanted = Set(actors)
        let makeCells = base.makeCells
        let hierarchy = Hierarchy(addresses: actors) { makeCells().filter { wanted.contains($0.address) } }
        let (cells, report): ([any ActorCell], Recovery.Report)
        do {
            (cells, report) = try Recovery(log: log, hierarchy: hierarchy, useSnapshots: true, handlers: .all).run()
        } catch {
            // The first damaged record is named, whichever check met it: the stream, in capsule
            // order, or recovery, for a stored record it had to decode itself.
            if log.failure == nil {
                do {
                    try log.verifyAll()
                } catch {}
            }
            let recoverySeq = error.code == .corrupted ? error.recordSeq : nil
            if let failure = log.failure, (log.refusedSeq ?? 0) <= (recoverySeq ?? .max) { throw failure }
            if recoverySeq != nil { throw TravelError(.malformed, error.message) }
            throw .log(error)
        }
        // A divergence stops the replay early, and records before recovery's first need are
        // skipped: the rest is verified all the same, so a damaged capsule is never reported on.
        try log.verifyAll()
        var refused: [Address] = []
        for cell in cells {
            if let snapshot = self.snapshots.first(where: { $0.actor == cell.address.rawValue }), snapshot.formatVersion != cell.stateFormatVersion {
                refused.append(cell.address)
            }
        }
        let expected = Dictionary(self.meta.expected.map { ($0.actor, $0.digest) }, uniquingKeysWith: { first, _ in first })
        let outcomes = cells.sorted { $0.address < $1.address }.map { cell in
            CapsuleReplayReport.ActorOutcome(
                address: cell.address, lastSeq: cell.lastSeq, digest: Recovery.digest(of: cell), expected: expected[cell.address])
        }
        return CapsuleReplayReport(
            meta: self.meta, records: self.records.count, replayed: report.recordsReplayed, divergence: report.divergence, actors: outcomes,
            madeOutside: report.pending.count, snapshotsRefused: refused, seconds: secondsSince(started))
    }

    /// Decodes every record and checks it against its entry (`CapsuleRecordVerifier`: the seq it
    /// is filed under, the recorded inputs, and the hash chain wherever two consecutive seqs are
    /// both present), on this thread, all at once.
    func verifiedRecords() throws(TravelError) -> [(seq: UInt64, record: LogRecord)] {
        var verifier = CapsuleRecordVerifier(records: self.records, inputs: self.inputs)
        var result: [(seq: UInt64, record: LogRecord)] = []
        result.reserveCapacity(self.records.count)
        for index in self.records.indices {
            result.append((self.records[index].seq, try verifier.verify(index)))
        }
        return result
    }
}

/// Seconds from `start` to now (a measurement for reports; nothing decides on it).
func secondsSince(_ start: ContinuousClock.Instant) -> Double {
    let (seconds, attoseconds) = (ContinuousClock.now - start).components
    return Double(seconds) + Double(attoseconds) / 1e18
}
