import CartritaEnvelope

/// An element that a task's id finds: a pending request, a task in flight.
public protocol TaskKeyed {
    var taskKey: MessageID { get }
}

/// The tables of tasks an actor holds (the orchestrator's pending requests, a supervisor's tasks
/// in flight): an array, for a deterministic order and encoding, plus an index by task id, so
/// that finding and removing one task costs O(1) instead of a scan and a shift of thousands of
/// envelopes per answer.
///
/// `remove(at:)` moves the last element into the hole. The order therefore depends on the
/// history, which is the log, so it is as deterministic as the rest of the state. The index is
/// derived and is not part of equality or of snapshots.
public struct KeyedList<Element: TaskKeyed & Hashable & Sendable>: Hashable, Sendable, RandomAccessCollection, ExpressibleByArrayLiteral {
    public private(set) var elements: [Element] = []
    var positions = TaskPositions()

    public init() {}

    public init(arrayLiteral elements: Element...) {
        for element in elements { self.append(element) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { self.elements.count }
    public subscript(position: Int) -> Element {
        get { self.elements[position] }
        set {
            precondition(newValue.taskKey == self.elements[position].taskKey, "an element keeps its task key")
            self.elements[position] = newValue
        }
    }

    /// Adds `element`; a second element for the same task replaces the index entry's target only
    /// if the first was removed (tasks are unique in these tables).
    public mutating func append(_ element: Element) {
        let added = self.positions.insert(element.taskKey, position: self.elements.count)
        precondition(added, "one entry per task")
        self.elements.append(element)
    }

    /// The position of the entry for task `key`.
    public func index(ofTask key: MessageID) -> Int? { self.positions.position(of: key) }

    /// Removes the element at `position`; the last element takes its place.
    @discardableResult
    public mutating func remove(at position: Int) -> Element {
        let removed = self.elements[position]
        self.positions.remove(removed.taskKey)
        let last = self.elements.count - 1
        if position != last {
            self.elements[position] = self.elements[last]
            self.positions.update(self.elements[position].taskKey, position: position)
        }
        self.elements.removeLast()
        return removed
    }

    public mutating func removeAll() {
        self.elements.removeAll()
        self.positions.removeAll()
    }

    public static func == (lhs: KeyedList, rhs: KeyedList) -> Bool { lhs.elements == rhs.elements }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.elements) }
}

/// Task id → position in a `KeyedList`: open addressing with linear probing and a fixed mix of
/// both halves of the id, instead of a `Dictionary`, whose per-process SipHash of the 16-byte id
/// was paid several times per task by the orchestrator and each supervisor (add, find, remove,
/// move). Only looked up, never iterated, so its layout decides nothing; it is derived, and not
/// part of a list's equality or snapshots.
struct TaskPositions: Sendable {
    struct Slot: Sendable {
        var high: UInt64
        var low: UInt64
        /// -1: empty.
        var position: Int
    }

    private var slots: [Slot] = []
    private var mask = 0
    private(set) var count = 0

    @inline(__always)
    static func bucket(_ id: MessageID, mask: Int) -> Int { TaskIDHash.bucket(id, mask: mask) }

    /// Where `id` is, or where a probe for it ends (an empty slot); nil when the table is empty.
    private func find(_ id: MessageID) -> (index: Int, found: Bool)? {
        guard !self.slots.isEmpty else { return nil }
        var index = Self.bucket(id, mask: self.mask)
        while true {
            let slot = self.slots[index]
            if slot.position < 0 { return (index, false) }
            if slot.high == id.high && slot.low == id.low { return (index, true) }
            index = (index + 1) & self.mask
        }
    }

    func position(of id: MessageID) -> Int? {
        guard let hit = self.find(id), hit.found else { return nil }
        return self.slots[hit.index].position
    }

    /// Adds `id` at `position`; false (and nothing changes) when it is present.
    mutating func insert(_ id: MessageID, position: Int) -> Bool {
        // At most half full, so a probe ends within a few slots.
        if (self.count + 1) * 2 > self.slots.count { self.grow() }
        let hit = self.find(id)!
        guard !hit.found else { return false }
        self.slots[hit.index] = Slot(high: id.high, low: id.low, position: position)
        self.count += 1
        return true
    }

    /// Moves the present `id` to `position`.
    mutating func update(_ id: MessageID, position: Int) {
        guard let hit = self.find(id), hit.found else { preconditionFailure("task \(id) is not in the list") }
        self.slots[hit.index].position = position
    }

    /// Removes `id` if present. Backward-shift deletion: entries after the hole that would no
    /// longer be found move into it, so no tombstones pile up.
    mutating func remove(_ id: MessageID) {
        guard let hit = self.find(id), hit.found else { return }
        var hole = hit.index
        var next = hole
        while true {
            next = (next + 1) & self.mask
            let slot = self.slots[next]
            if slot.position < 0 { break }
            let home = Self.bucket(MessageID(high: slot.high, low: slot.low), mask: self.mask)
            // The entry at `next` may fill the hole when its home is not within (hole, next]
            // (cyclically): from its home, a probe passes the hole before reaching `next`.
            let homeWithin = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeWithin {
                self.slots[hole] = slot
                hole = next
            }
        }
        self.slots[hole] = Slot(high: 0, low: 0, position: -1)
        self.count -= 1
    }

    mutating func removeAll() {
        self = TaskPositions()
    }

    private mutating func grow() {
        let old = self.slots
        let capacity = max(16, old.count * 2)
        self.slots = Array(repeating: Slot(high: 0, low: 0, position: -1), count: capacity)
        self.mask = capacity - 1
        self.count = 0
        for slot in old where slot.position >= 0 {
            _ = self.insert(MessageID(high: slot.high, low: slot.low), position: slot.position)
        }
    }
}

/// The bucket of a task id in the open-addressing tables keyed by id (`TaskPositions` here, the
/// node's `TaskChains`): the SplitMix64 / murmur3 finaliser of both halves, the same in every
/// process (unlike `Hasher`), and cheaper than a SipHash of 16 bytes.
public enum TaskIDHash {
    @inlinable @inline(__always)
    public static func bucket(_ id: MessageID, mask: Int) -> Int {
        var x = id.high &* 0x9E37_79B9_7F4A_7C15 ^ id.low
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        return Int(truncatingIfNeeded: x) & mask
    }
}
