import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import Crypto
import Foundation

// MARK: - The checks of one record

/// The checks every record of a capsule must pass, in capsule order: it decodes (with the full
/// envelope rules: a capsule is untrusted input), it is the seq it is filed under, its recorded
/// inputs are its own, and it chains to the record before it wherever their seqs are
/// consecutive. One per thread: its decoder is not thread-safe.
struct CapsuleRecordVerifier {
    let records: [(seq: UInt64, bytes: [UInt8])]
    let inputs: [Capsule.Input]
    let decoder = EnvelopeDecoder(limits: CodecLimits.default)
    /// The hash of the record just verified, kept only when the next one's seq follows it (the
    /// only case the chain is checked, so the only case the SHA-256 is worth computing).
    var previous: (seq: UInt64, hash: Digest32)?

    init(records: [(seq: UInt64, bytes: [UInt8])], inputs: [Capsule.Input]) {
        self.records = records
        self.inputs = inputs
    }

    /// Verifies record `index`; the records must be verified in order, each once.
    mutating func verify(_ index: Int) throws(TravelError) -> LogRecord {
        let entry = self.records[index]
        let record: LogRecord
        do {
            record = try self.decoder.decodeRecord(entry.bytes)
        } catch {
            throw TravelError(.malformed, "record \(entry.seq) does not decode: \(error)")
        }
        // `CapsuleLog.heads()` read the recipient with `RecordPeek` before the record was
        // decoded; both readings must agree, or the replay would have started from wrong heads.
        let agrees = entry.bytes.withUnsafeBytes { raw in
            guard let peeked = RecipientPeek.recipient(raw) else { return true }  // then heads came from a full decode
            var recipient = record.envelope.recipient.rawValue
            return recipient.withUTF8 { RecipientPeek.same(UnsafeRawBufferPointer($0), peeked) }
        }
        guard agrees else {
            throw TravelError(.malformed, "record \(entry.seq): its recipient reads differently from its bytes than from its decoding")
        }
        try self.check(index, record.header)
        return record
    }

    /// Verifies record `index` as `verify` does, except that a record from one of
    /// `storedSenders` (whose handler the replay runs) is not decoded: its header is read from
    /// its bytes (`RecordPeek`) and checked (seq, recorded inputs, chain), and it goes to the
    /// replay stored. Recovery delivers its own copy in its place and compares the bytes; a
    /// record nothing matches is decoded there, with the envelope rules
    /// (`CapsuleLog.replayValidatesEnvelopes`).
    mutating func verifyEntry(_ index: Int, storedSenders: [[UInt8]]) throws(TravelError) -> ReplayEntry {
        let entry = self.records[index]
        if !storedSenders.isEmpty, let peek = entry.bytes.withUnsafeBytes({ RecordPeek($0) }),
            entry.bytes.withUnsafeBytes({ peek.sender(in: $0, isOneOf: storedSenders) }),
            // Truncated, lying lengths, trailing bytes: decoded below, which names the problem.
            entry.bytes.withUnsafeBytes({ RecordPeek.isWhole($0) })
        {
            try self.check(index, peek.header)
            return .stored(bytes: entry.bytes[...], peek: peek)
        }
        return .decoded(try self.verify(index))
    }

    /// The checks of a record's header: the seq it is filed under, its recorded inputs, and the
    /// chain to the record before it.
    private mutating func check(_ index: Int, _ header: RecordHeader) throws(TravelError) {
        let entry = self.records[index]
        guard header.seq == entry.seq else {
            throw TravelError(.malformed, "the record filed under seq \(entry.seq) says it is \(header.seq)")
        }
        if let previous = self.previous, previous.seq + 1 == entry.seq, header.prevHash != previous.hash {
            throw TravelError(.malformed, "record \(entry.seq) does not chain to record \(previous.seq)")
        }
        // `Capsule.decode` proves the EXTR section lists the RECS seqs; a capsule built in memory
        // has not been through it, so the pairing is checked here too.
        guard index < self.inputs.count, self.inputs[index].seq == entry.seq else {
            throw TravelError(.malformed, "the EXTR section does not list the records of the RECS section")
        }
        let input = self.inputs[index]
        guard input.clockMilliseconds == header.clockMilliseconds, input.entropy == header.entropy else {
            throw TravelError(.malformed, "the recorded inputs of \(entry.seq) differ from its record")
        }
        if index + 1 < self.records.count, self.records[index + 1].seq == entry.seq + 1 {
            // The log's own record hash (one call, no context object per record): the chain
            // check is a large share of this thread.
            self.previous = (entry.seq, entry.bytes.withUnsafeBytes { RecordHash.sha256($0) })
        } else {
            self.previous = nil
        }
    }
}

// MARK: - Verifying ahead of the replay

/// Verifies and decodes a capsule's records on a thread of its own, a few batches ahead of the
/// replay that consumes them, so the two cores overlap: verification (decode, envelope rules,
/// SHA-256 chain) is about as much work as the replay itself.
///
/// Batches come out in capsule order; the first record that fails stops the thread, and `next()`
/// throws its error after handing out every batch before it, so errors surface in record order
/// exactly as a front-to-back check gives them. Bounded: at most `maxQueuedBatches` batches wait.
/// The owner must call `finish()` (also after an early stop or an error) to join the thread.
final class CapsuleRecordStream: @unchecked Sendable {
    static let batchRecords = 256
    /// Deep enough for the thread to run well ahead while the replay starts (its snapshots, its
    /// heads): the core would otherwise idle then, and the work it would have done lands later,
    /// beside the replay and its checker. Cheap to hold: most entries are stored records,
    /// slices of the capsule's own bytes, not decoded ones.
    static let maxQueuedBatches = 48

    let batchRecords: Int
    let maxQueuedBatches: Int

    /// Guards everything below it.
    private let condition = NSCondition()
    private var queue: [ReplayBatch] = []
    private var head = 0
    private var done = false
    private var failure: TravelError?
    /// The seq of the record `failure` is about.
    private var failedSeq: UInt64?
    private var stopping = false
    /// Batches the consumer is done with, handed back so that their records are freed on this
    /// thread (it has time to spare; the replay has none). Emptied on every push.
    private var recycled: [ReplayBatch] = []
    /// The most batches that ever waited at once (never above `maxQueuedBatches`).
    private var queuedMost = 0
    /// Each verified record's id and task, in capsule order, published when the thread is done
    /// (see `verifiedKeys`): noting them here, per record, costs the replay's thread nothing.
    private var ids: [MessageID] = []
    private var correlations: [MessageID] = []

    private let exited = DispatchSemaphore(value: 0)
    /// Consumer side only.
    private var joined = false

    init(
        records: [(seq: UInt64, bytes: [UInt8])], inputs: [Capsule.Input], storedSenders: [Address] = [],
        batchRecords: Int = CapsuleRecordStream.batchRecords, maxQueuedBatches: Int = CapsuleRecordStream.maxQueuedBatches
    ) {
        precondition(batchRecords > 0 && maxQueuedBatches > 0, "a stream needs room for a batch")
        self.batchRecords = batchRecords
        self.maxQueuedBatches = maxQueuedBatches
        let senders = storedSenders.map { Array($0.rawValue.utf8) }
        let thread = Thread { [self] in
            // Set from inside, so the OS thread gets it; at most 15 bytes, or Linux keeps the
            // creating thread's name (profiles then lumped this thread in with the replay).
            Thread.current.name = "cartrita-verify"
            self.verify(CapsuleRecordVerifier(records: records, inputs: inputs), storedSenders: senders)
            self.exited.signal()
        }
        thread.start()
    }

    private func verify(_ verifier: CapsuleRecordVerifier, storedSenders: [[UInt8]]) {
        var verifier = verifier
        let count = verifier.records.count
        var index = 0
        var failure: TravelError?
        var failedSeq: UInt64?
        var ids: [MessageID] = []
        var correlations: [MessageID] = []
        ids.reserveCapacity(count)
        correlations.reserveCapacity(count)
        while index < count {
            var batch: ReplayBatch = []
            batch.reserveCapacity(min(self.batchRecords, count - index))
            do {
                while batch.count < self.batchRecords && index < count {
                    let entry = try verifier.verifyEntry(index, storedSenders: storedSenders)
                    switch entry {
                    case .stored(_, let peek):
                        ids.append(peek.id)
                        correlations.append(peek.correlationID)
                    case .decoded(let record):
                        ids.append(record.envelope.id)
                        correlations.append(record.envelope.correlationID)
                    }
                    batch.append((verifier.records[index].seq, entry))
                    index += 1
                }
            } catch {
                failure = error
                failedSeq = verifier.records[index].seq
            }
            // The records before a bad one still go out: the consumer meets the error in order.
            if !batch.isEmpty && !self.push(batch) { break }
            if failure != nil { break }
        }
        self.condition.lock()
        self.failure = failure
        self.failedSeq = failedSeq
        self.ids = ids
        self.correlations = correlations
        self.done = true
        self.condition.broadcast()
        self.condition.unlock()
    }

    /// Waits for room; false when the consumer stopped.
    private func push(_ batch: ReplayBatch) -> Bool {
        self.condition.lock()
        var done: [ReplayBatch] = []
        defer {
            self.condition.unlock()
            done.removeAll()  // frees the handed-back records here, outside the lock
        }
        while self.queue.count - self.head >= self.maxQueuedBatches && !self.stopping { self.condition.wait() }
        swap(&done, &self.recycled)
        guard !self.stopping else { return false }
        self.queue.append(batch)
        self.queuedMost = max(self.queuedMost, self.queue.count - self.head)
        self.condition.broadcast()
        return true
    }

    /// The next verified batch in capsule order; nil once every record is verified. Throws the
    /// first record's failure once the batches before it are taken. `used`, the batch taken
    /// before, goes back to the verifying thread to be freed there while it still runs.
    func next(recycling used: ReplayBatch? = nil) throws(TravelError) -> ReplayBatch? {
        self.condition.lock()
        defer { self.condition.unlock() }
        // Bounded: the thread empties the list on every push, and pushes once per batch taken.
        if let used, !self.done && !self.stopping { self.recycled.append(used) }
        while self.head == self.queue.count && !self.done { self.condition.wait() }
        if self.head < self.queue.count {
            let batch = self.queue[self.head]
            self.queue[self.head] = []
            self.head += 1
            if self.head >= 64 {  // drop the taken slots now and then, not on every take
                self.queue.removeFirst(self.head)
                self.head = 0
            }
            self.condition.broadcast()
            return batch
        }
        if let failure = self.failure { throw failure }
        return nil
    }

    /// Every verified record's id and task, in capsule order (up to the first refused), once
    /// `next()` returned nil or threw; nil before.
    func verifiedKeys() -> (ids: [MessageID], correlations: [MessageID])? {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard self.done else { return nil }
        return (self.ids, self.correlations)
    }

    /// The seq of the first record refused, once the stream is done.
    var refusedSeq: UInt64? {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.failedSeq
    }

    /// The most batches that waited at once so far.
    var queuedHighWater: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.queuedMost
    }

    /// Stops the thread (if it still runs) and waits until it has left. Idempotent.
    func finish() {
        guard !self.joined else { return }
        self.joined = true
        self.condition.lock()
        self.stopping = true
        self.condition.broadcast()
        self.condition.unlock()
        self.exited.wait()
    }
}
