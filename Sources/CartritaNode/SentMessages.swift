import CartritaEnvelope
import CartritaLog
import CartritaRuntime

/// What one actor sent that the log may not hold yet: production's `CellHost` and the
/// simulator both keep one per actor, and each snapshot carries what it says is owed, because
/// replay after the snapshot would not make those messages again.
///
/// at_most_once messages are kept too: they are not owed after a crash, but a snapshot must name
/// them, or recovery would take one that was delivered after the snapshot for a message replay
/// did not make (a false divergence). Timers a delivery cancels are forgotten at once.
///
/// Kept as one array of messages in the order they were recorded, with each task's messages
/// chained through it (so cancelling a task's timers visits that task's messages only), and the
/// chains found through a small open-addressing table with a fixed hash. This replaced a
/// `[MessageID: [Envelope]]`: every delivery paid a SipHash and often an array allocation per
/// message sent, and freeing the dictionary of arrays was a large part of tearing a simulation
/// down. Nothing here is iterated in hash order: `owed` reads the array and sorts by key.
public struct SentMessages: Sendable {
    /// Every message recorded since the last `owed`, in order; nil once a cancel forgot it.
    var entries: [Envelope?] = []
    /// Per entry, the next entry of the same task (-1: the task's last).
    var nextOfTask: [Int32] = []
    var chains = TaskChains()
    public private(set) var count = 0

    /// Holes (forgotten entries) are dropped when they outnumber the live ones and this many:
    /// a supervisor that arms and cancels a timeout per task between two snapshots must not
    /// grow without bound, and compacting rarely keeps it O(1) per message.
    static let minimumHolesToCompact = 1_024

    /// Starts with messages recovery found owed (their sender must carry them until logged).
    public init(_ owed: [Envelope] = []) {
        for envelope in owed { self.add(envelope) }
    }

    public mutating func add(_ envelope: Envelope) {
        precondition(self.entries.count < Int(Int32.max), "an actor holds \(Int32.max) unlogged messages")
        let position = Int32(self.entries.count)
        self.entries.append(envelope)
        self.nextOfTask.append(-1)
        let slot = self.chains.slot(envelope.correlationID)
        let last = self.chains.last(at: slot)
        if last < 0 {
            self.chains.set(at: slot, first: position, last: position)
        } else {
            self.nextOfTask[Int(last)] = position
            self.chains.set(at: slot, first: self.chains.first(at: slot), last: position)
        }
        self.count += 1
    }

    /// What one delivery sent, and the timers it cancelled: those due after `clock` (the
    /// delivery's recorded clock, on which the actor's timers are stamped).
    public mutating func record(_ delivery: Delivery, clock: Int64) {
        for correlation in delivery.cancelledTimers { self.forget(task: correlation, dueAfter: clock) }
        for message in delivery.messages { self.add(message) }
        if self.entries.count - self.count >= max(Self.minimumHolesToCompact, self.count) { self.compact() }
    }

    /// Forgets the task's messages stamped after `clock`, keeping the others chained in order.
    mutating func forget(task correlation: MessageID, dueAfter clock: Int64) {
        guard let slot = self.chains.existingSlot(correlation) else { return }
        var position = self.chains.first(at: slot)
        var first: Int32 = -1
        var last: Int32 = -1
        while position >= 0 {
            let next = self.nextOfTask[Int(position)]
            if self.entries[Int(position)]!.timestampMilliseconds > clock {
                self.entries[Int(position)] = nil
                self.count -= 1
            } else {
                if last < 0 { first = position } else { self.nextOfTask[Int(last)] = position }
                last = position
            }
            position = next
        }
        if last >= 0 { self.nextOfTask[Int(last)] = -1 }
        self.chains.set(at: slot, first: first, last: last)
    }

    /// Drops the holes: the live messages again, in the order they were recorded.
    mutating func compact() {
        var live = SentMessages()
        live.entries.reserveCapacity(self.count)
        live.nextOfTask.reserveCapacity(self.count)
        for entry in self.entries {
            if let entry { live.add(entry) }
        }
        self = live
    }

    /// The messages a snapshot covering the log up to `seq` must carry: those the log does not
    /// hold, or holds after `seq`. Those it holds are forgotten. `lookup` says where each id is
    /// in the log. The result is in a total order (id, retry, timestamp), whatever the hashing.
    public mutating func owed(
        atSnapshot seq: UInt64, lookup: ([MessageID]) throws(EventLogError) -> [UInt64?]
    ) throws(EventLogError) -> [Envelope] {
        // Sort small keys, not envelopes: an envelope is a large struct, and a snapshot may
        // cover thousands of them (every armed timeout of a busy supervisor).
        struct Key {
            var id: MessageID
            var retryCount: Int32
            var timestamp: Int64
            var position: Int
        }
        var keys: [Key] = []
        keys.reserveCapacity(self.count)
        for position in self.entries.indices {
            guard let envelope = self.entries[position] else { continue }
            keys.append(Key(id: envelope.id, retryCount: envelope.retryCount, timestamp: envelope.timestampMilliseconds, position: position))
        }
        keys.sort { ($0.id, $0.retryCount, $0.timestamp) < ($1.id, $1.retryCount, $1.timestamp) }
        let logged = try lookup(keys.map(\.id))
        var owed: [Envelope] = []
        var kept = SentMessages()
        for (key, at) in zip(keys, logged) where at == nil || at! > seq {
            let envelope = self.entries[key.position]!
            owed.append(envelope)
            if at == nil { kept.add(envelope) }
        }
        self = kept
        return owed
    }
}

/// Task (correlation id) → the first and last entries of its chain in `SentMessages`: open
/// addressing with linear probing and a fixed 64-bit mix of the id's halves, at most half full.
/// Only looked up, never iterated, so its layout decides nothing. A task whose messages were
/// all forgotten keeps its slot (first = last = -1) until the next compaction or `owed`.
struct TaskChains: Sendable {
    struct Slot: Sendable {
        var high: UInt64
        var low: UInt64
        /// -1: no live message (and, with `used` false, an empty slot).
        var first: Int32
        var last: Int32
        var used: Bool
    }

    private var slots: [Slot] = []
    private var used = 0

    @inline(__always)
    static func bucket(_ id: MessageID, mask: Int) -> Int { TaskIDHash.bucket(id, mask: mask) }

    func existingSlot(_ id: MessageID) -> Int? {
        guard !self.slots.isEmpty else { return nil }
        let mask = self.slots.count - 1
        var index = Self.bucket(id, mask: mask)
        while self.slots[index].used {
            if self.slots[index].high == id.high && self.slots[index].low == id.low { return index }
            index = (index + 1) & mask
        }
        return nil
    }

    /// The task's slot, taken (with an empty chain) when the task is new.
    mutating func slot(_ id: MessageID) -> Int {
        if (self.used + 1) * 2 > self.slots.count { self.grow() }
        let mask = self.slots.count - 1
        var index = Self.bucket(id, mask: mask)
        while self.slots[index].used {
            if self.slots[index].high == id.high && self.slots[index].low == id.low { return index }
            index = (index + 1) & mask
        }
        self.slots[index] = Slot(high: id.high, low: id.low, first: -1, last: -1, used: true)
        self.used += 1
        return index
    }

    func first(at slot: Int) -> Int32 { self.slots[slot].first }
    func last(at slot: Int) -> Int32 { self.slots[slot].last }

    mutating func set(at slot: Int, first: Int32, last: Int32) {
        self.slots[slot].first = first
        self.slots[slot].last = last
    }

    private mutating func grow() {
        let old = self.slots
        let capacity = max(16, old.count * 2)
        self.slots = Array(repeating: Slot(high: 0, low: 0, first: -1, last: -1, used: false), count: capacity)
        let mask = capacity - 1
        for slot in old where slot.used {
            var index = Self.bucket(MessageID(high: slot.high, low: slot.low), mask: mask)
            while self.slots[index].used { index = (index + 1) & mask }
            self.slots[index] = slot
        }
    }
}
