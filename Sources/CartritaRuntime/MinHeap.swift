/// A binary min-heap ordered by `before`: the runtime's timers and the simulator's messages in
/// flight, both keyed by (due time, order of arrival), so their order never depends on hashing.
public struct MinHeap<Element> {
    public private(set) var elements: [Element] = []
    let before: (Element, Element) -> Bool

    public init(by before: @escaping (Element, Element) -> Bool) {
        self.before = before
    }

    public var first: Element? { self.elements.first }
    public var count: Int { self.elements.count }
    public var isEmpty: Bool { self.elements.isEmpty }

    public mutating func push(_ element: Element) {
        self.elements.append(element)
        var child = self.elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.before(self.elements[child], self.elements[parent]) else { break }
            self.elements.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the first element; nil when empty.
    public mutating func popFirst() -> Element? {
        guard let first = self.elements.first else { return nil }
        let last = self.elements.removeLast()
        if !self.elements.isEmpty {
            self.elements[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.elements.count && self.before(self.elements[left], self.elements[smallest]) { smallest = left }
                if right < self.elements.count && self.before(self.elements[right], self.elements[smallest]) { smallest = right }
                if smallest == parent { break }
                self.elements.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }

    /// Keeps only the elements `isIncluded` accepts (a rebuild, O(n log n)).
    public mutating func filter(_ isIncluded: (Element) -> Bool) {
        let kept = self.elements.filter(isIncluded).sorted(by: self.before)
        self.elements = kept  // a sorted array is a valid heap
    }
}
