/// A binary min-heap: the runtime's timers and the simulator's messages in flight, both keyed by
/// (due time, order of arrival), so their order never depends on hashing. `Comparable` keys and
/// `@inlinable` code let each driver get a specialized heap (no closure call per comparison:
/// the simulator pops one per delivery).
public struct MinHeap<Element: Comparable> {
    @usableFromInline var storage: [Element] = []

    @inlinable
    public init() {}

    @inlinable public var elements: [Element] { self.storage }
    @inlinable public var first: Element? { self.storage.first }
    @inlinable public var count: Int { self.storage.count }
    @inlinable public var isEmpty: Bool { self.storage.isEmpty }

    @inlinable
    public mutating func push(_ element: Element) {
        self.storage.append(element)
        var child = self.storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.storage[child] < self.storage[parent] else { break }
            self.storage.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the first element; nil when empty.
    @inlinable
    public mutating func popFirst() -> Element? {
        guard let first = self.storage.first else { return nil }
        let last = self.storage.removeLast()
        if !self.storage.isEmpty {
            self.storage[0] = last
            var parent = 0
            let count = self.storage.count
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < count && self.storage[left] < self.storage[smallest] { smallest = left }
                if right < count && self.storage[right] < self.storage[smallest] { smallest = right }
                if smallest == parent { break }
                self.storage.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }

    /// Keeps only the elements `isIncluded` accepts (a rebuild, O(n log n)).
    @inlinable
    public mutating func filter(_ isIncluded: (Element) -> Bool) {
        self.storage = self.storage.filter(isIncluded).sorted()  // a sorted array is a valid heap
    }
}
