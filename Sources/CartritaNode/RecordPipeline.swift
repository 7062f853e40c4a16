import CartritaCodec
import CartritaLog
import Foundation

/// Reads and decodes log records on a thread of its own, a few batches ahead of the replay that
/// consumes them: decoding is about half of replay's work, and this machine has two cores.
///
/// Bounded: at most `maxQueuedBatches` batches of `batchRecords` records wait. The consumer must
/// call `finish()` (also after an early stop) before the log may close.
final class RecordPipeline: @unchecked Sendable {
    static let batchRecords = 256
    static let maxQueuedBatches = 8

    typealias Batch = [(seq: UInt64, record: LogRecord)]

    private let condition = NSCondition()
    private var queue: [Batch] = []
    private var head = 0
    private var done = false
    private var stopping = false
    private var failure: EventLogError?
    private let finished = DispatchSemaphore(value: 0)

    init(log: EventLog, from seq: UInt64) {
        let thread = Thread { [self] in
            self.read(log: log, from: seq)
            self.finished.signal()
        }
        thread.name = "cartrita-replay-reader"
        thread.start()
    }

    private func read(log: EventLog, from seq: UInt64) {
        // Records the log wrote were validated on the way in; see `validatesEnvelopes`.
        let decoder = EnvelopeDecoder(limits: log.configuration.codecLimits, validatesEnvelopes: false)
        var batch: Batch = []
        batch.reserveCapacity(Self.batchRecords)
        var failure: EventLogError?
        do {
            try log.scanRaw(from: seq) { seq, bytes in
                do {
                    batch.append((seq, try decoder.decodeRecord(bytes)))
                } catch {
                    throw EventLogError(.corrupted, "record \(seq): \(error)")
                }
                guard batch.count == Self.batchRecords else { return true }
                let go = self.push(batch)
                batch = []
                batch.reserveCapacity(Self.batchRecords)
                return go
            }
        } catch let error as EventLogError {
            failure = error
        } catch {
            failure = EventLogError(.storage, "\(error)")
        }
        if !batch.isEmpty && failure == nil { _ = self.push(batch) }
        self.condition.lock()
        self.failure = failure
        self.done = true
        self.condition.broadcast()
        self.condition.unlock()
    }

    /// Waits for room; false when the consumer stopped.
    private func push(_ batch: Batch) -> Bool {
        self.condition.lock()
        defer { self.condition.unlock() }
        while self.queue.count - self.head >= Self.maxQueuedBatches && !self.stopping { self.condition.wait() }
        guard !self.stopping else { return false }
        self.queue.append(batch)
        self.condition.broadcast()
        return true
    }

    /// The next batch in seq order; nil at the end. Throws what the reader met.
    func next() throws(EventLogError) -> Batch? {
        self.condition.lock()
        defer { self.condition.unlock() }
        while self.head == self.queue.count && !self.done { self.condition.wait() }
        if self.head < self.queue.count {
            let batch = self.queue[self.head]
            self.queue[self.head] = []
            self.head += 1
            if self.head > 64 {
                self.queue.removeFirst(self.head)
                self.head = 0
            }
            self.condition.broadcast()
            return batch
        }
        if let failure = self.failure { throw failure }
        return nil
    }

    /// Stops the reader and waits until it has left the log.
    func finish() {
        self.condition.lock()
        self.stopping = true
        self.condition.broadcast()
        self.condition.unlock()
        self.finished.wait()
    }
}
