import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import Foundation

/// A capsule's records and snapshots as a `ReplayableLog`, so the production `Recovery` (with
/// its divergence detector) replays a capsule exactly as it replays a log.
///
/// The records come one of two ways:
/// - `decoded`: verified and decoded already (`CapsuleReader`, which shows them);
/// - `streamed`: verified and decoded by a `CapsuleRecordStream` on another thread while recovery
///   replays them, each batch let go once replayed (holding 100,000 decoded records at once cost
///   more in page faults than the replay itself). What the lookups need (each record's id and
///   task) is kept as the batches pass; `record(_:)` decodes the stored bytes again.
///
/// Lookups answer for the whole capsule, so in `streamed` they first wait until every record is
/// verified. The first record the stream refuses stops everything; `failure` keeps its
/// `TravelError` (recovery only carries an `EventLogError` out).
final class CapsuleLog: ReplayableLog {
    enum Source {
        case decoded(RecordBatch)
        case streamed(CapsuleRecordStream, entries: [(seq: UInt64, bytes: [UInt8])])
    }

    private let source: Source
    /// Streamed: the senders whose records the stream hands out stored (the others it decodes).
    private var streamedStoredSenders: Set<Address> = []
    /// Each record's seq, in capsule order (ascending: `Capsule.decode` checks it).
    private let seqs: [UInt64]
    private let snapshots: [String: Snapshot]
    /// The first record the stream refused.
    private(set) var failure: TravelError?

    /// Each record's id and task, in capsule order; in `streamed`, filled from the stream once
    /// it is drained (the lookups that read these drain it first).
    private var ids: [MessageID] = []
    private var correlations: [MessageID] = []
    /// Streamed: records taken from the stream so far (all of them once it is drained).
    private var taken = 0
    private var drained = false

    /// Streamed: each recipient's last record, read with `RecipientPeek` before the records are
    /// decoded (`heads()` comes before the replay). The verifying thread checks every reading
    /// against the decoded record; a record that cannot be read is decoded here instead, and
    /// left out if that fails too (the stream refuses it before the replay reaches it).
    private var peekedHeads: [String: UInt64] = [:]
    /// Streamed: the thread that reads `peekedHeads` from the bytes, from `init` until
    /// `heads()` (or `finish()`) joins it, so the peeking runs while recovery restores the
    /// snapshots instead of before.
    private var peeking: HeadsPeek?

    /// Built on the first `seqs(correlation:)`: the first position of each task, and for each
    /// position the next one of the same task (-1: none). Two flat tables, no array per task.
    private var correlationIndex: (first: [MessageID: Int32], next: [Int32])?
    /// Streamed: decodes what `record(_:)` asks for (records already verified).
    private var lookupDecoder: EnvelopeDecoder?

    /// Records verified and decoded already.
    init(records: RecordBatch, snapshots: [Snapshot]) {
        self.source = .decoded(records)
        self.seqs = records.map(\.seq)
        self.snapshots = Self.byActor(snapshots)
        self.ids = records.map(\.record.envelope.id)
        self.correlations = records.map(\.record.envelope.correlationID)
        self.drained = true
    }

    /// Starts verifying `capsule`'s records on another thread at once; the owner must call
    /// `finish()`. Records from `storedSenders` (the actors whose handlers the replay runs) go
    /// to the replay stored, not decoded (see `CapsuleRecordVerifier.verifyEntry`).
    init(streaming capsule: Capsule, storedSenders: [Address] = []) {
        let stream = CapsuleRecordStream(records: capsule.records, inputs: capsule.inputs, storedSenders: storedSenders)
        self.source = .streamed(stream, entries: capsule.records)
        self.streamedStoredSenders = Set(storedSenders)
        self.seqs = capsule.records.map(\.seq)
        self.snapshots = Self.byActor(capsule.snapshots)
        // While the other thread decodes: who each record is for, from its bytes, on a third
        // thread (joined by `heads()`).
        self.peeking = HeadsPeek(capsule.records)
    }

    /// `peekRecipients` on a thread of its own.
    final class HeadsPeek: @unchecked Sendable {
        /// Written by the thread before it signals `done`, read only after `wait()`.
        private var heads: [String: UInt64] = [:]
        private let done = DispatchSemaphore(value: 0)

        init(_ entries: [(seq: UInt64, bytes: [UInt8])]) {
            let thread = Thread { [self] in
                Thread.current.name = "cartrita-heads"
                self.heads = CapsuleLog.peekRecipients(entries)
                self.done.signal()
            }
            thread.start()
        }

        /// Waits for the thread; call once.
        func wait() -> [String: UInt64] {
            self.done.wait()
            return self.heads
        }
    }

    /// Joins the peeking thread, if it still runs.
    private func joinPeeking() {
        guard let peeking = self.peeking else { return }
        self.peeking = nil
        self.peekedHeads = peeking.wait()
    }

    static func byActor(_ snapshots: [Snapshot]) -> [String: Snapshot] {
        var byActor: [String: Snapshot] = [:]
        for snapshot in snapshots { byActor[snapshot.actor] = snapshot }
        return byActor
    }

    /// Joins the verifying thread. Idempotent; call it on every way out.
    func finish() {
        self.joinPeeking()
        if case .streamed(let stream, _) = self.source { stream.finish() }
    }

    // MARK: - Taking verified records

    /// The next verified batch from the stream (its ids and tasks noted), nil at the end;
    /// `used` is the one taken before, done with.
    private func take(recycling used: ReplayBatch? = nil) throws(TravelError) -> ReplayBatch? {
        guard case .streamed(let stream, _) = self.source, !self.drained else { return nil }
        if let failure = self.failure { throw failure }
        let batch: ReplayBatch?
        do {
            batch = try stream.next(recycling: used)
        } catch {
            self.failure = error
            throw error
        }
        guard let batch else {
            self.drained = true
            // The stream noted each record's id and task as it verified them.
            if let keys = stream.verifiedKeys() {
                self.ids = keys.ids
                self.correlations = keys.correlations
            }
            return nil
        }
        guard let first = batch.first, let last = batch.last, self.taken + batch.count <= self.seqs.count,
            self.seqs[self.taken] == first.seq, self.seqs[self.taken + batch.count - 1] == last.seq
        else { preconditionFailure("the stream hands out the capsule's records in order") }
        self.taken += batch.count
        return batch
    }

    /// The seq of the record the stream refused, once it is done (nil: none).
    var refusedSeq: UInt64? {
        guard case .streamed(let stream, _) = self.source else { return nil }
        return stream.refusedSeq
    }

    /// Waits until every record is verified; throws the first one refused.
    func verifyAll() throws(TravelError) {
        var used: ReplayBatch?
        while let batch = try self.take(recycling: used) { used = batch }
        if let failure = self.failure { throw failure }
    }

    /// `verifyAll` for the protocol's lookups, whose errors are `EventLogError`s.
    private func complete() throws(EventLogError) {
        do {
            try self.verifyAll()
        } catch {
            throw self.stopped(error)
        }
    }

    /// What recovery carries out when the stream refused a record; `Capsule.replay` throws
    /// `failure` instead.
    func stopped(_ error: TravelError) -> EventLogError {
        var stopped = EventLogError(.corrupted, "capsule refused: \(error)")
        stopped.recordSeq = self.refusedSeq
        return stopped
    }

    // MARK: - Recipients before decoding

    static func peekRecipients(_ entries: [(seq: UInt64, bytes: [UInt8])]) -> [String: UInt64] {
        var names = RecipientNames()
        var lastSeqs: [UInt64] = []
        var fallback: EnvelopeDecoder?
        for entry in entries {
            let index: Int32 = entry.bytes.withUnsafeBytes { raw in
                if let name = RecipientPeek.recipient(raw) { return names.index(of: name) }
                // Not the layout the writer makes: decode it.
                let decoder = fallback ?? EnvelopeDecoder(limits: CodecLimits.default)
                fallback = decoder
                guard let record = try? decoder.decodeRecord(raw) else { return -1 }
                return Array(record.envelope.recipient.rawValue.utf8).withUnsafeBytes { names.index(of: $0) }
            }
            guard index >= 0 else { continue }
            if Int(index) == lastSeqs.count { lastSeqs.append(0) }
            lastSeqs[Int(index)] = entry.seq
        }
        var heads: [String: UInt64] = [:]
        for (index, name) in names.names.enumerated() { heads[name] = lastSeqs[index] }
        return heads
    }

    /// The distinct recipients met, numbered in order of appearance.
    struct RecipientNames {
        var names: [String] = []
        var bytes: [[UInt8]] = []
        var byName: [String: Int32] = [:]
        var last: Int32 = -1

        /// A capsule's records go to a handful of actors and clients: comparing bytes with the
        /// last one and then with the first few costs less than a String and a hash per record.
        static let comparedFirst = 32

        mutating func index(of name: UnsafeRawBufferPointer) -> Int32 {
            if self.last >= 0, self.bytes[Int(self.last)].withUnsafeBytes({ RecipientPeek.same($0, name) }) { return self.last }
            let index: Int32
            if let hit = self.bytes.prefix(Self.comparedFirst).firstIndex(where: { $0.withUnsafeBytes { RecipientPeek.same($0, name) } }) {
                index = Int32(hit)
            } else {
                let text = String(decoding: name, as: UTF8.self)
                if let known = self.byName[text] {
                    index = known
                } else {
                    index = Int32(self.names.count)
                    self.byName[text] = index
                    self.names.append(text)
                    self.bytes.append(Array(name))
                }
            }
            self.last = index
            return index
        }
    }

    // MARK: - ReplayableLog

    var lastSeq: UInt64 { self.seqs.last ?? 0 }

    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot? {
        guard let snapshot = self.snapshots[actor], snapshot.seq <= seq, accepting(snapshot.formatVersion) else { return nil }
        return snapshot
    }

    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] {
        var heads: [String: UInt64] = [:]
        switch self.source {
        case .decoded(let records):
            for entry in records { heads[entry.record.envelope.recipient.rawValue] = entry.seq }
        case .streamed:
            self.joinPeeking()
            heads = self.peekedHeads
        }
        return heads.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] {
        guard !ids.isEmpty else { return [] }
        try self.complete()
        // One pass over the capsule for the few ids asked, rather than a table of every id.
        let wanted = Set(ids)
        var found: [MessageID: UInt64] = [:]
        for (position, id) in self.ids.enumerated() where wanted.contains(id) {
            found[id] = self.seqs[position]  // the last record of an id, as a log's index keeps one
        }
        return ids.map { found[$0] }
    }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        try self.complete()
        guard let position = self.position(of: seq) else { return nil }
        switch self.source {
        case .decoded(let records):
            return records[position].record
        case .streamed(_, let entries):
            let decoder = self.lookupDecoder ?? EnvelopeDecoder(limits: CodecLimits.default)
            self.lookupDecoder = decoder
            do {
                return try decoder.decodeRecord(entries[position].bytes)
            } catch {
                throw EventLogError(.corrupted, "record \(seq) was verified but does not decode again: \(error)")
            }
        }
    }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] {
        try self.complete()
        if self.correlationIndex == nil {
            var first: [MessageID: Int32] = [:]
            var next = [Int32](repeating: -1, count: self.correlations.count)
            for position in self.correlations.indices.reversed() {
                let key = self.correlations[position]
                if let following = first[key] { next[position] = following }
                first[key] = Int32(position)
            }
            self.correlationIndex = (first, next)
        }
        let index = self.correlationIndex!
        var result: [UInt64] = []
        var position = index.first[correlation] ?? -1
        while position >= 0 {
            result.append(self.seqs[Int(position)])
            position = index.next[Int(position)]
        }
        return result
    }

    /// A stored record's bytes are untrusted: what replay decodes of them meets the envelope rules.
    var replayValidatesEnvelopes: Bool { true }

    /// Decoded records only: a stored one is decoded here.
    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        let decoder = EnvelopeDecoder(limits: CodecLimits.default)
        var failure: EventLogError?
        try self.replayEntries(from: seq, storedSenders: []) { batch in
            var records: RecordBatch = []
            records.reserveCapacity(batch.count)
            for (seq, entry) in batch {
                switch entry {
                case .decoded(let record): records.append((seq, record))
                case .stored(let bytes, _):
                    do {
                        records.append((seq, try decoder.decodeRecord(bytes)))
                    } catch {
                        failure = EventLogError(.corrupted, "record \(seq) does not decode: \(error)")
                        failure?.recordSeq = seq
                        return false
                    }
                }
            }
            return body(records)
        }
        if let failure { throw failure }
    }

    /// Stored records come as they are when their sender is one of `storedSenders`, decoded
    /// otherwise.
    func replayEntries(from seq: UInt64, storedSenders: [Address], _ body: (ReplayBatch) -> Bool) throws(EventLogError) {
        let senders = storedSenders.map { Array($0.rawValue.utf8) }
        let decoder = EnvelopeDecoder(limits: CodecLimits.default)
        var failure: EventLogError?
        // Every sender the stream stores is one recovery takes stored (the usual case: both are
        // the replayed actors): then every batch is admitted as it is, without a look at each
        // record's sender and a copy of the batch on the replay's thread.
        let admitsAll = self.streamedStoredSenders.isSubset(of: Set(storedSenders))
        func admit(_ batch: ReplayBatch) -> ReplayBatch? {
            if admitsAll { return batch }
            var result = batch
            for (position, item) in batch.enumerated() {
                guard case .stored(let bytes, let peek) = item.entry else { continue }
                let wanted = bytes.withUnsafeBytes { peek.sender(in: $0, isOneOf: senders) }
                if wanted { continue }
                do {
                    result[position] = (item.seq, .decoded(try decoder.decodeRecord(bytes)))
                } catch {
                    failure = EventLogError(.corrupted, "record \(item.seq) does not decode: \(error)")
                    failure?.recordSeq = item.seq
                    return nil
                }
            }
            return result
        }
        switch self.source {
        case .decoded(let records):
            var index = self.seqs.partitioningIndex { $0 >= seq }
            while index < records.count {
                let end = min(records.count, index + CapsuleRecordStream.batchRecords)
                if !body(records[index..<end].map { ($0.seq, .decoded($0.record)) }) { return }
                index = end
            }
        case .streamed(_, let entries):
            guard self.taken == 0 && !self.drained else {
                // The stream went by already: the records are verified, decode them again.
                try self.complete()
                try self.replayAgain(entries, from: seq) { body($0.map { ($0.seq, .decoded($0.record)) }) }
                return
            }
            var used: ReplayBatch?
            while true {
                let next: ReplayBatch?
                do {
                    next = try self.take(recycling: used)
                } catch {
                    throw self.stopped(error)
                }
                guard let taken = next else { return }
                used = taken
                guard let last = taken.last, last.seq >= seq, var batch = admit(taken) else {
                    if let failure { throw failure }
                    continue
                }
                if batch[0].seq < seq { batch.removeFirst(batch.partitioningIndex { $0.seq >= seq }) }
                if !body(batch) { return }
            }
        }
    }

    private func replayAgain(_ entries: [(seq: UInt64, bytes: [UInt8])], from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        var index = self.seqs.partitioningIndex { $0 >= seq }
        while index < entries.count {
            let end = min(entries.count, index + CapsuleRecordStream.batchRecords)
            var batch: RecordBatch = []
            batch.reserveCapacity(end - index)
            for position in index..<end {
                guard let record = try self.record(entries[position].seq) else { break }
                batch.append((entries[position].seq, record))
            }
            if !body(batch) { return }
            index = end
        }
    }

    private func position(of seq: UInt64) -> Int? {
        let position = self.seqs.partitioningIndex { $0 >= seq }
        return position < self.seqs.count && self.seqs[position] == seq ? position : nil
    }
}

extension RandomAccessCollection {
    /// The first index whose element satisfies `belongs`, which must be false then true along
    /// the collection (a binary search).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Index {
        var low = self.startIndex
        var count = self.count
        while count > 0 {
            let half = count / 2
            let middle = self.index(low, offsetBy: half)
            if belongs(self[middle]) {
                count = half
            } else {
                low = self.index(after: middle)
                count -= half + 1
            }
        }
        return low
    }
}
