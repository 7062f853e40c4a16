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
    var positions: [MessageID: Int] = [:]

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
        precondition(self.positions[element.taskKey] == nil, "one entry per task")
        self.positions[element.taskKey] = self.elements.count
        self.elements.append(element)
    }

    /// The position of the entry for task `key`.
    public func index(ofTask key: MessageID) -> Int? { self.positions[key] }

    /// Removes the element at `position`; the last element takes its place.
    @discardableResult
    public mutating func remove(at position: Int) -> Element {
        let removed = self.elements[position]
        self.positions[removed.taskKey] = nil
        let last = self.elements.count - 1
        if position != last {
            self.elements[position] = self.elements[last]
            self.positions[self.elements[position].taskKey] = position
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
