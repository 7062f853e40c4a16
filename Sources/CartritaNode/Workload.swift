import CartritaEnvelope

/// A mix of tasks for `cartrita run` and the runtime benchmark: task types with a delivery mode
/// and a weight, and small, real inputs for this release's agents, drawn from a seed.
public struct Workload: Sendable {
    public struct Entry: Hashable, Sendable {
        public var taskType: String
        public var deliveryMode: DeliveryMode
        public var weight: Int
        /// The input is a file given by URL (`file:///workload/TYPE/INDEX.csv|txt`), which the
        /// agent fetches through the I/O gateway's `files` service, instead of inline data.
        public var inputByURL: Bool

        public init(taskType: String, deliveryMode: DeliveryMode, weight: Int, inputByURL: Bool = false) {
            self.taskType = taskType
            self.deliveryMode = deliveryMode
            self.weight = weight
            self.inputByURL = inputByURL
        }
    }

    public let entries: [Entry]
    let totalWeight: Int

    public init(entries: [Entry]) throws(WorkloadError) {
        guard !entries.isEmpty else { throw WorkloadError("a mix needs at least one entry") }
        guard entries.allSatisfy({ $0.weight > 0 }) else { throw WorkloadError("weights are positive integers") }
        self.entries = entries
        self.totalWeight = entries.reduce(0) { $0 + $1.weight }
    }

    /// exactly_once and at_least_once tasks for all three agents.
    public static let standard = try! Workload(entries: [
        Entry(taskType: "text.stats", deliveryMode: .atLeastOnce, weight: 2),
        Entry(taskType: "text.keywords", deliveryMode: .exactlyOnce, weight: 1),
        Entry(taskType: "data.csv-stats", deliveryMode: .atLeastOnce, weight: 1),
        Entry(taskType: "data.analyze", deliveryMode: .exactlyOnce, weight: 1),
        Entry(taskType: "tasks.create", deliveryMode: .exactlyOnce, weight: 2),
    ])

    /// The file form: one entry per line, `TASK_TYPE DELIVERY_MODE WEIGHT [url]`; blank lines
    /// and `#` comments are ignored. Errors name the line. `url` gives the input as a file URL
    /// (text and data tasks), fetched through the I/O gateway.
    ///
    ///     text.stats      at_least_once  2
    ///     tasks.create    exactly_once   1
    ///     data.csv-stats  exactly_once   1  url
    public static func parse(_ text: String) throws(WorkloadError) -> Workload {
        var entries: [Entry] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = rawLine.prefix { $0 != "#" }.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count == 3 || (fields.count == 4 && fields[3] == "url") else {
                throw WorkloadError("line \(index + 1): expected TASK_TYPE DELIVERY_MODE WEIGHT [url], found \(fields.count) fields")
            }
            guard let mode = DeliveryMode(rawValue: String(fields[1])) else {
                throw WorkloadError("line \(index + 1): delivery mode is at_most_once, at_least_once or exactly_once, not \(fields[1])")
            }
            guard let weight = Int(fields[2]), weight > 0, weight <= 1_000_000 else {
                throw WorkloadError("line \(index + 1): weight is an integer from 1 to 1000000, not \(fields[2])")
            }
            entries.append(Entry(taskType: String(fields[0]), deliveryMode: mode, weight: weight, inputByURL: fields.count == 4))
        }
        return try Workload(entries: entries)
    }

    /// The `index`th task of a run seeded with `seed`: the same pair always gives the same task.
    public func task(seed: UInt64, index: Int) -> (request: TaskRequest, deliveryMode: DeliveryMode) {
        var random = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        var pick = Int(random.next64() % UInt64(self.totalWeight))
        var entry = self.entries[0]
        for candidate in self.entries {
            if pick < candidate.weight {
                entry = candidate
                break
            }
            pick -= candidate.weight
        }
        var request = Self.request(for: entry.taskType, index: index, random: &random)
        if entry.inputByURL, case .string = request.input.data {
            request.input = TaskInput(files: [FileInput(
                name: "input-\(index)", contentType: entry.taskType.hasPrefix("data.") ? "text/csv" : "text/plain", sizeBytes: 0,
                source: .url(Self.url(for: entry.taskType, seed: seed, index: index)))])
        }
        return (request, entry.deliveryMode)
    }

    /// The URL a by-URL task reads: it names the task type, the seed and the index, so a
    /// simulated files service can make the same content (`content(at:)`).
    static func url(for taskType: String, seed: UInt64, index: Int) -> String {
        "file:///workload/\(taskType)/\(seed)-\(index).\(taskType.hasPrefix("data.") ? "csv" : "txt")"
    }

    /// The content behind a workload URL: the same input the task would have had inline. nil
    /// for any other URL.
    public static func content(at url: String) -> String? {
        let parts = url.split(separator: "/")
        guard url.hasPrefix("file:///workload/"), parts.count == 4 else { return nil }
        let name = parts[3].prefix { $0 != "." }
        let numbers = name.split(separator: "-")
        guard numbers.count == 2, let seed = UInt64(numbers[0]), let index = Int(numbers[1]) else { return nil }
        var random = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15 ^ 0x75726C))
        guard case .string(let text)? = Self.request(for: String(parts[2]), index: index, random: &random).input.data else { return nil }
        return text
    }

    static let words = [
        "ledger", "actor", "replay", "snapshot", "supervisor", "orchestrator", "agent", "budget", "token", "stream",
        "durable", "commit", "latency", "mailbox", "priority", "deterministic", "recovery", "digest", "timer", "batch",
    ]

    static func request(for taskType: String, index: Int, random: inout SplitMix64) -> TaskRequest {
        switch taskType {
        case let type where type.hasPrefix("data."):
            var csv = "region,units,price\n"
            for row in 0..<(4 + Int(random.next64() % 8)) {
                csv += "r\(row % 3),\(random.next64() % 1000),\(Double(random.next64() % 10_000) / 100)\n"
            }
            return TaskRequest(task: TaskSpec(type: type), input: TaskInput(data: .string(csv)))
        case "tasks.create":
            return TaskRequest(task: TaskSpec(type: "tasks.create", parameters: [
                MCPValue.MapEntry("title", .string("task \(index): \(Self.words[Int(random.next64() % 20)])")),
                MCPValue.MapEntry("priority", .string(["low", "normal", "high"][Int(random.next64() % 3)])),
            ]))
        case "tasks.list":
            return TaskRequest(task: TaskSpec(type: "tasks.list", parameters: [MCPValue.MapEntry("limit", .int(10))]))
        default:
            var sentences: [String] = []
            for _ in 0..<(3 + Int(random.next64() % 4)) {
                var words: [String] = []
                for _ in 0..<(6 + Int(random.next64() % 8)) { words.append(Self.words[Int(random.next64() % 20)]) }
                sentences.append(words.joined(separator: " ").capitalizedFirst + ".")
            }
            return TaskRequest(task: TaskSpec(type: taskType), input: TaskInput(data: .string(sentences.joined(separator: " "))))
        }
    }
}

public struct WorkloadError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

extension String {
    var capitalizedFirst: String { self.prefix(1).uppercased() + self.dropFirst() }
}
