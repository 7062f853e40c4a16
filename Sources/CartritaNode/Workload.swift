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

    /// The words as bytes, each with its first letter upper-cased (for a sentence's first word):
    /// the words are lower-case ASCII letters, so upper-casing is subtracting 32.
    static let wordBytes: [[UInt8]] = Self.words.map { Array($0.utf8) }
    static let capitalizedWordBytes: [[UInt8]] = Self.wordBytes.map { [$0[0] - 32] + $0.dropFirst() }

    /// The task's request: `plainRequest`'s, byte for byte and with the same draws, built on
    /// bytes instead of through string interpolation, `joined` and `uppercased` (the simulator
    /// builds one per task, and again for each by-URL file read). Tests compare the two.
    static func request(for taskType: String, index: Int, random: inout SplitMix64) -> TaskRequest {
        if taskType.hasPrefix("data.") {
            // About 30 bytes a row, at most 11 rows.
            var csv: [UInt8] = []
            csv.reserveCapacity(400)
            csv.append(contentsOf: "region,units,price\n".utf8)
            for row in 0..<(4 + Int(random.next64() % 8)) {
                csv.append(UInt8(ascii: "r"))
                csv.append(UInt8(ascii: "0") + UInt8(row % 3))
                csv.append(UInt8(ascii: ","))
                Self.appendDecimal(random.next64() % 1000, to: &csv)
                csv.append(UInt8(ascii: ","))
                Self.appendHundredths(random.next64() % 10_000, to: &csv)
                csv.append(UInt8(ascii: "\n"))
            }
            return TaskRequest(task: TaskSpec(type: taskType), input: TaskInput(data: .string(String(decoding: csv, as: UTF8.self))))
        }
        switch taskType {
        case "tasks.create", "tasks.list":
            return Self.plainRequest(for: taskType, index: index, random: &random)
        default:
            // At most 6 sentences of 13 words of 13 letters.
            var text: [UInt8] = []
            text.reserveCapacity(1_200)
            for sentence in 0..<(3 + Int(random.next64() % 4)) {
                if sentence > 0 { text.append(UInt8(ascii: " ")) }
                for word in 0..<(6 + Int(random.next64() % 8)) {
                    let pick = Int(random.next64() % 20)
                    if word > 0 {
                        text.append(UInt8(ascii: " "))
                        text.append(contentsOf: Self.wordBytes[pick])
                    } else {
                        text.append(contentsOf: Self.capitalizedWordBytes[pick])
                    }
                }
                text.append(UInt8(ascii: "."))
            }
            return TaskRequest(task: TaskSpec(type: taskType), input: TaskInput(data: .string(String(decoding: text, as: UTF8.self))))
        }
    }

    /// `value` in decimal, as `"\(value)"` writes it: the digits least significant first, then
    /// turned around in place.
    static func appendDecimal(_ value: UInt64, to bytes: inout [UInt8]) {
        let start = bytes.count
        var rest = value
        repeat {
            bytes.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        bytes[start...].reverse()
    }

    /// `Double(hundredths) / 100` as `"\(…)"` writes it, for 0 ≤ hundredths < 1,000,000: the
    /// shortest digits that round-trip, which for these values are the exact decimal with its
    /// trailing zeros dropped, keeping one digit after the point ("12.0", "0.5", "0.05").
    /// A test checks every value the workload draws (0 to 9,999).
    static func appendHundredths(_ hundredths: UInt64, to bytes: inout [UInt8]) {
        precondition(hundredths < 1_000_000, "larger values print with an exponent")
        Self.appendDecimal(hundredths / 100, to: &bytes)
        bytes.append(UInt8(ascii: "."))
        let fraction = hundredths % 100
        bytes.append(UInt8(ascii: "0") + UInt8(fraction / 10))
        if fraction % 10 != 0 { bytes.append(UInt8(ascii: "0") + UInt8(fraction % 10)) }
    }

    /// The plain form of `request` (interpolation and joins): the definition the fast one must
    /// match, and the path for the task types it does not specialise.
    static func plainRequest(for taskType: String, index: Int, random: inout SplitMix64) -> TaskRequest {
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
