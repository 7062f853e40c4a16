import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import Synchronization

/// Reads and decodes log records on threads of their own, a few batches ahead of the replay
/// that consumes them: decoding is more than half of replay's work.
///
/// With `readers` threads, batch `i` (records `from + i·batchRecords` …, seqs being gap-free)
/// is read and decoded by reader `i mod readers`; each reader seeks to its own batches (a read
/// transaction each: cheap in LMDB) rather than walking the whole range, so it touches only its
/// share of the log's pages, and the consumer takes the batches back in order. The range ends
/// at the log's last committed seq when the pipeline starts (recovery runs before anything
/// appends, so that is the end of the log). Bounded: each reader keeps at most
/// `maxQueuedBatches` batches waiting. The consumer must call `finish()` (also after an early
/// stop) before the log may close.
final class RecordPipeline: @unchecked Sendable {
    static let batchRecords: UInt64 = 256
    static let maxQueuedBatches = 8

    typealias Batch = ReplayBatch

    /// One reader's queue.
    final class Lane: @unchecked Sendable {
        let condition = NSCondition()
        var queue: [Batch] = []
        var head = 0
        var done = false
        var failure: EventLogError?
    }

    private let lanes: [Lane]
    private let stopping = Atomic(false)
    private let finished = DispatchSemaphore(value: 0)
    private var nextBatch = 0

    /// `storedSenders`: a record from one of these comes as its stored bytes and a peek, not
    /// decoded (see `ReplayableLog.replayEntries`).
    init(log: EventLog, from seq: UInt64, storedSenders: [Address], readers: Int = 2) {
        let count = max(1, readers)
        self.lanes = (0..<count).map { _ in Lane() }
        let senders = storedSenders.map { Array($0.rawValue.utf8) }
        let end = log.lastSeq
        for (index, lane) in self.lanes.enumerated() {
            let thread = Thread { [self] in
                Thread.current.name = "cartrita-reader"  // set from inside, so the OS thread gets it
                self.read(log: log, from: seq, through: end, storedSenders: senders, lane: lane, index: UInt64(index), of: UInt64(count))
                self.finished.signal()
            }
            thread.start()
        }
    }

    private func read(
        log: EventLog, from start: UInt64, through end: UInt64, storedSenders: [[UInt8]], lane: Lane, index: UInt64, of count: UInt64
    ) {
        // Records the log wrote were validated on the way in; see `validatesEnvelopes`.
        let decoder = EnvelopeDecoder(limits: log.configuration.codecLimits, validatesEnvelopes: false)
        var failure: EventLogError?
        var number = index  // this reader's batches: index, index + count, …
        var storedCapacity = 0  // the largest batch's stored bytes so far: the next one's start
        do {
            while !self.stopping.load(ordering: .relaxed) {
                let (offset, overflow) = number.multipliedReportingOverflow(by: Self.batchRecords)
                guard !overflow, offset <= end &- start, start <= end else { break }
                let first = start + offset
                let last = first + min(Self.batchRecords - 1, end - first)
                var batch: Batch = []
                batch.reserveCapacity(Int(last - first + 1))
                // The batch's stored records, one after another, and where each is: entries are
                // pointed at the buffer once it is complete (a slice taken earlier would keep an
                // outgrown copy of it alive).
                var stored: [UInt8] = []
                stored.reserveCapacity(storedCapacity)
                var storedAt: [(position: Int, range: Range<Int>)] = []
                try log.scanRaw(from: first) { seq, bytes in
                    guard seq <= last else { return false }
                    if !storedSenders.isEmpty, let peek = RecordPeek(bytes), peek.header.seq == seq,
                        peek.sender(in: bytes, isOneOf: storedSenders)
                    {
                        storedAt.append((batch.count, stored.count..<(stored.count + bytes.count)))
                        stored.append(contentsOf: bytes)
                        batch.append((seq, .stored(bytes: [], peek: peek)))
                    } else {
                        do {
                            batch.append((seq, .decoded(try decoder.decodeRecord(bytes))))
                        } catch {
                            throw EventLogError(.corrupted, "record \(seq): \(error)")
                        }
                    }
                    return seq < last
                }
                for (position, range) in storedAt {
                    guard case .stored(_, let peek) = batch[position].entry else { preconditionFailure("entry \(position) is stored") }
                    batch[position].entry = .stored(bytes: stored[range], peek: peek)
                }
                storedCapacity = max(storedCapacity, stored.count)
                guard self.push(batch, lane) else { break }
                number += count
            }
        } catch {
            failure = error  // scanRaw throws EventLogError only
        }
        lane.condition.lock()
        lane.failure = failure
        lane.done = true
        lane.condition.broadcast()
        lane.condition.unlock()
    }

    /// Waits for room; false when the consumer stopped.
    private func push(_ batch: Batch, _ lane: Lane) -> Bool {
        lane.condition.lock()
        defer { lane.condition.unlock() }
        while lane.queue.count - lane.head >= Self.maxQueuedBatches && !self.stopping.load(ordering: .relaxed) {
            lane.condition.wait()
        }
        guard !self.stopping.load(ordering: .relaxed) else { return false }
        lane.queue.append(batch)
        lane.condition.broadcast()
        return true
    }

    /// The next batch in seq order; nil at the end. Throws what a reader met.
    func next() throws(EventLogError) -> Batch? {
        let lane = self.lanes[self.nextBatch % self.lanes.count]
        lane.condition.lock()
        defer { lane.condition.unlock() }
        while lane.head == lane.queue.count && !lane.done { lane.condition.wait() }
        if lane.head < lane.queue.count {
            let batch = lane.queue[lane.head]
            lane.queue[lane.head] = []
            lane.head += 1
            if lane.head > 64 {
                lane.queue.removeFirst(lane.head)
                lane.head = 0
            }
            self.nextBatch += 1
            lane.condition.broadcast()
            return batch
        }
        if let failure = lane.failure { throw failure }
        return nil  // this lane is done and empty: every earlier batch was taken, so the log ended
    }

    /// Stops the readers and waits until they have left the log.
    func finish() {
        self.stopping.store(true, ordering: .relaxed)
        for lane in self.lanes {
            lane.condition.lock()
            lane.condition.broadcast()
            lane.condition.unlock()
        }
        for _ in self.lanes { self.finished.wait() }
    }
}
