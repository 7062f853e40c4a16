import CartritaEnvelope
import CartritaRuntime
import Foundation

/// Messages stamped with a future timestamp (timers and delayed sends) wait here until their
/// time on the runtime's clock, then go to their recipient's mailbox. One thread, one heap.
///
/// Cancelling is by (owner, correlation): the supervisor's timeout of a task is forgotten when
/// the task is answered. The heap holds only (due, order); the envelope sits in a dictionary that
/// a cancel empties at once, so a cancelled timer costs 16 bytes until its time comes up (and the
/// heap is rebuilt when most of it is dead).
final class TimerQueue: @unchecked Sendable {
    struct Key: Hashable {
        var owner: Address
        var correlation: MessageID

        /// The correlation's random half only: a cancel runs on every answered task, and
        /// hashing the owner's text as well cost more than the rare collision between owners
        /// of one task (`==` still compares both).
        func hash(into hasher: inout Hasher) {
            hasher.combine(self.correlation.low)
        }
    }

    struct Entry: Comparable {
        var due: Int64
        var order: UInt64

        static func < (a: Entry, b: Entry) -> Bool { a.due != b.due ? a.due < b.due : a.order < b.order }
    }

    private let condition = NSCondition()
    private var heap = MinHeap<Entry>()
    private var order: UInt64 = 0
    /// Live timers by key: the `order` of each, so a cancelled one is skipped when due.
    private var live: [Key: [UInt64]] = [:]
    private var envelopes: [UInt64: Envelope] = [:]
    private var wakes: [UInt64: @Sendable () -> Void] = [:]
    private var stopping = false
    private var thread: Thread?
    private let clock: @Sendable () -> Int64
    private let fire: @Sendable (Envelope) -> Void

    /// A timer taken off the heap but not yet in its recipient's mailbox: still counted, so
    /// that "nothing queued and no timer waiting" never holds in between.
    private var firing = 0

    /// Timers waiting or being fired, cancelled ones not counted.
    var pendingCount: Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.envelopes.count + self.firing
    }

    init(clock: @escaping @Sendable () -> Int64, fire: @escaping @Sendable (Envelope) -> Void) {
        self.clock = clock
        self.fire = fire
    }

    func start() {
        // The thread holds the queue until `stop`: the node stops it when it goes away.
        let thread = Thread {
            Thread.current.name = "cartrita-timers"
            self.run()
        }
        self.thread = thread
        thread.start()
    }

    func stop() {
        self.condition.lock()
        self.stopping = true
        self.condition.signal()
        self.condition.unlock()
    }

    func schedule(_ envelope: Envelope) {
        self.condition.lock()
        self.order += 1
        self.heap.push(Entry(due: envelope.timestampMilliseconds, order: self.order))
        self.envelopes[self.order] = envelope
        self.live[Key(owner: envelope.sender, correlation: envelope.correlationID), default: []].append(self.order)
        // Wake the thread only when this timer is now the first due: most timers are timeouts
        // far behind the head, and a wake-up per task would cost a futex call each.
        if self.heap.first?.order == self.order { self.condition.signal() }
        self.condition.unlock()
    }

    /// Runs `wake` at `due` (a cell held by a restart's backoff).
    func wake(at due: Int64, _ wake: @escaping @Sendable () -> Void) {
        self.condition.lock()
        self.order += 1
        self.heap.push(Entry(due: due, order: self.order))
        self.wakes[self.order] = wake
        if self.heap.first?.order == self.order { self.condition.signal() }
        self.condition.unlock()
    }

    func cancel(owner: Address, correlation: MessageID) {
        self.condition.lock()
        if let orders = self.live.removeValue(forKey: Key(owner: owner, correlation: correlation)) {
            for order in orders { self.envelopes[order] = nil }
            if self.heap.count > 1_024 && self.envelopes.count + self.wakes.count < self.heap.count / 4 {
                self.heap.filter { self.envelopes[$0.order] != nil || self.wakes[$0.order] != nil }
            }
        }
        self.condition.unlock()
    }

    /// The envelopes still waiting, cancelled ones left out (for a snapshot of what is owed).
    func waiting() -> [Envelope] {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.heap.elements.sorted().compactMap { self.envelopes[$0.order] }
    }

    private func run() {
        self.condition.lock()
        while !self.stopping {
            guard let first = self.heap.first else {
                self.condition.wait()
                continue
            }
            let now = self.clock()
            if first.due > now {
                _ = self.condition.wait(until: Date(timeIntervalSinceNow: Double(min(first.due - now, 1_000)) / 1000))
                continue
            }
            let entry = self.heap.popFirst()!
            let envelope = self.envelopes.removeValue(forKey: entry.order)
            let wake = self.wakes.removeValue(forKey: entry.order)
            if let envelope {
                let key = Key(owner: envelope.sender, correlation: envelope.correlationID)
                if var orders = self.live[key] {
                    orders.removeAll { $0 == entry.order }
                    self.live[key] = orders.isEmpty ? nil : orders
                }
            }
            guard envelope != nil || wake != nil else { continue }  // cancelled
            if envelope != nil { self.firing += 1 }
            self.condition.unlock()
            if let envelope { self.fire(envelope) }  // the node counts it as queued before this returns
            wake?()
            self.condition.lock()
            if envelope != nil { self.firing -= 1 }
        }
        self.condition.unlock()
    }

}
