/// A binary min-heap: the runtime's timers and the simulator's messages in flight, both keyed by
/// (due time, order of arrival), so their order never depends on hashing. `Comparable` keys and
/// `@inlinable` code let each driver get a specialized heap (no closure call per comparison:
/// the simulator pops one per delivery).
///
/// Push and pop move the element along its path through a hole (one store per level) instead of
/// swapping at each level, on the buffer without bounds checks: the same comparisons as the
/// swapping form, so the same heap, element for element, and the same order of equal keys.
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
        self.storage.withUnsafeMutableBufferPointer { heap in
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard element < heap[parent] else { break }
                heap[child] = heap[parent]
                child = parent
            }
            heap[child] = element
        }
    }

    /// Removes and returns the first element; nil when empty.
    @inlinable
    public mutating func popFirst() -> Element? {
        guard let first = self.storage.first else { return nil }
        let last = self.storage.removeLast()
        guard !self.storage.isEmpty else { return first }
        self.storage.withUnsafeMutableBufferPointer { heap in
            let count = heap.count
            var hole = 0
            while true {
                let left = 2 * hole + 1
                guard left < count else { break }
                let right = left + 1
                // The smaller of `last` and the children, as the swapping form chose it.
                var smallest = left
                if !(heap[left] < last) { smallest = hole }
                if right < count && heap[right] < (smallest == hole ? last : heap[left]) { smallest = right }
                if smallest == hole { break }
                heap[hole] = heap[smallest]
                hole = smallest
            }
            heap[hole] = last
        }
        return first
    }

    /// Keeps only the elements `isIncluded` accepts (a rebuild, O(n log n)).
    @inlinable
    public mutating func filter(_ isIncluded: (Element) -> Bool) {
        self.storage = self.storage.filter(isIncluded).sorted()  // a sorted array is a valid heap
    }
}
