import CartritaEnvelope

// MARK: - Mailbox

/// A bounded mailbox served in priority order (critical, high, normal, low), FIFO within one
/// priority (MCP-SPEC §1). It never drops silently: `push` on a full mailbox returns false and the
/// runtime answers the sender with `task_error` `overloaded`.
///
/// Four ring-less queues with a read index each; a queue compacts when its consumed prefix is
/// larger than what is left, so each item is moved at most a constant number of times.
public struct Mailbox<Item> {
    public let capacity: Int
    public private(set) var count = 0
    /// Indexed by `Priority.rank`: 0 low … 3 critical.
    var queues: [[Item]] = [[], [], [], []]
    var heads: [Int] = [0, 0, 0, 0]

    public init(capacity: Int) {
        precondition(capacity > 0, "a mailbox holds at least one message")
        self.capacity = capacity
    }

    public var isEmpty: Bool { self.count == 0 }
    public var isFull: Bool { self.count >= self.capacity }

    /// Queued messages of one priority.
    public func count(of priority: Priority) -> Int {
        self.queues[priority.rank].count - self.heads[priority.rank]
    }

    /// Adds `item` behind the others of its priority. False, and nothing changes, when full,
    /// unless `overCapacity`: answers and control messages are always taken, since refusing an
    /// answer would leave its request waiting forever (their number is bounded by the requests
    /// this actor let in).
    @discardableResult
    public mutating func push(_ item: Item, priority: Priority, overCapacity: Bool = false) -> Bool {
        guard overCapacity || !self.isFull else { return false }
        self.queues[priority.rank].append(item)
        self.count += 1
        return true
    }

    /// The oldest message of the highest priority present.
    public mutating func pop() -> (item: Item, priority: Priority)? {
        for rank in stride(from: 3, through: 0, by: -1) where self.heads[rank] < self.queues[rank].count {
            let item = self.queues[rank][self.heads[rank]]
            self.heads[rank] += 1
            self.count -= 1
            if self.heads[rank] == self.queues[rank].count {
                self.queues[rank].removeAll(keepingCapacity: true)
                self.heads[rank] = 0
            } else if self.heads[rank] > 64 && self.heads[rank] * 2 > self.queues[rank].count {
                self.queues[rank].removeFirst(self.heads[rank])
                self.heads[rank] = 0
            }
            return (item, Priority.allCases[rank])
        }
        return nil
    }

    /// The message `pop` would return, without removing it.
    public func peek() -> (item: Item, priority: Priority)? {
        for rank in stride(from: 3, through: 0, by: -1) where self.heads[rank] < self.queues[rank].count {
            return (self.queues[rank][self.heads[rank]], Priority.allCases[rank])
        }
        return nil
    }

    /// Removes every queued message for which `shouldRemove` is true (cancellation), keeping the
    /// order of the rest. Returns the removed ones in service order.
    public mutating func removeAll(where shouldRemove: (Item) -> Bool) -> [Item] {
        var removed: [Item] = []
        for rank in stride(from: 3, through: 0, by: -1) {
            var kept: [Item] = []
            for item in self.queues[rank][self.heads[rank]...] {
                if shouldRemove(item) { removed.append(item) } else { kept.append(item) }
            }
            self.queues[rank] = kept
            self.heads[rank] = 0
        }
        self.count -= removed.count
        return removed
    }
}
