import CartritaEnvelope
import CartritaRuntime

/// Tier-2 agent that profiles CSV data: per-column type inference and statistics.
///
/// Input: CSV text in `input.data` (a string) or in one inline file (`text/*` or
/// `application/csv`). Parameters: `delimiter` (one ASCII character other than `"`, CR, LF;
/// default `,`), `header` (default true). The CSV rules are those of `CSV.parse`.
///
/// Ragged rows: the header (or, without one, the first record) fixes the column count. A shorter
/// row is accepted and its absent trailing fields count as missing values; a longer row is
/// accepted only if every extra field is empty (a trailing delimiter). Both are counted in
/// `ragged_rows`. A row with a non-empty field beyond the last column is invalid input: its
/// values cannot be assigned to a column without guessing.
///
/// Stateless; the result depends only on the request.
public struct DataSage: Agent {
    public typealias State = EmptyState

    public static let maxInputBytes = 16 << 20
    public static let maxRows = 100_000
    public static let maxColumns = 1_000
    /// Longest reported column name or top value, in UTF-8 bytes. 1,000 columns with a name and
    /// three top values each then stay far below the codec's 1 MiB envelope limit.
    static let maxReportedBytes = 120

    public let address = Address("agent.datasage@v1.0")
    public let taskTypes = ["data.csv-stats", "data.analyze"]

    public init() {}

    public func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) -> AgentOutcome {
        guard self.taskTypes.contains(request.task.type) else {
            return AgentKit.unknownTaskType(request.task.type, agent: self.address, handles: self.taskTypes)
        }
        if let fetch = TextInput.fetchCall(request.input, maxBytes: Self.maxInputBytes) { return .call(fetch) }
        // Both task types do the same work: `data.analyze` is the generic name for it.
        return AgentKit.run { () throws(Refusal) in try Self.profile(request) }
    }

    /// The input file came back from the `files` service: the same work, on its bytes.
    public func resume(
        _ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout EmptyState, context: DeliveryContext
    ) -> AgentOutcome {
        TextInput.resume(request, result) { inline in self.handle(inline, state: &state, context: context) }
    }

    static func profile(_ request: TaskRequest) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: ["delimiter", "header"])
        let delimiter = try Self.delimiter(parameters.string("delimiter") ?? ",")
        let hasHeader = try parameters.bool("header") ?? true
        let text = try TextInput.read(request.input, maxBytes: Self.maxInputBytes) { type in
            type.hasPrefix("text/") || type == "application/csv"
        }

        var names: [String]? = nil
        var columns: [ColumnProfile] = []
        var rows = 0
        var raggedRows = 0
        try CSV.parse(Array(text.utf8), delimiter: delimiter, maxFields: Self.maxColumns) { fields, line throws(Refusal) in
            if names == nil {
                columns = Array(repeating: ColumnProfile(), count: fields.count)
                if hasHeader {
                    names = fields.enumerated().map { $1.isEmpty ? "column_\($0 + 1)" : $1 }
                    return
                }
                names = (1...fields.count).map { "column_\($0)" }
            }
            rows += 1
            guard rows <= Self.maxRows else { throw .invalid("more than \(Self.maxRows) data rows") }
            if fields.count != columns.count {
                raggedRows += 1
                if fields.count > columns.count, fields[columns.count...].contains(where: { !$0.isEmpty }) {
                    throw .invalid("the row on line \(line) has \(fields.count) fields but there are \(columns.count) columns, and the extra fields are not empty")
                }
            }
            for column in columns.indices {
                columns[column].add(column < fields.count ? fields[column] : "")
            }
        }
        guard let names else { throw .invalid("no data: the CSV has no records") }
        guard rows > 0 else { throw .invalid("no data: the CSV has a header but no data rows") }

        let columnResults = zip(names, columns).map { name, column in
            column.result(name: AgentKit.clipped(name, maxBytes: Self.maxReportedBytes).text)
        }
        return .map([
            "rows": .int(Int64(rows)),
            "column_count": .int(Int64(columns.count)),
            "header": .bool(hasHeader),
            "delimiter": .string(String(UnicodeScalar(delimiter))),
            "ragged_rows": .int(Int64(raggedRows)),
            "columns": .array(columnResults),
        ])
    }

    static func delimiter(_ text: String) throws(Refusal) -> UInt8 {
        let bytes = Array(text.utf8)
        guard bytes.count == 1, bytes[0] < 0x80, bytes[0] != CSV.quote, bytes[0] != CSV.cr, bytes[0] != CSV.lf else {
            throw .invalid("delimiter must be one ASCII character other than a quote or a line break, got \(AgentKit.quoted(text))")
        }
        return bytes[0]
    }
}

/// A string compared and hashed by its UTF-8 bytes: two values are the same only if the file
/// spells them the same (Swift's `==` would merge "é" and "e\u{301}"), and the order of values
/// is byte order, the same on every platform.
struct ExactText: Hashable {
    let text: String

    static func == (lhs: ExactText, rhs: ExactText) -> Bool { lhs.text.utf8.elementsEqual(rhs.text.utf8) }

    func hash(into hasher: inout Hasher) {
        // Native strings are contiguous UTF-8: hash the buffer in one call, not byte by byte.
        let hashed: Void? = self.text.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            for byte in self.text.utf8 { hasher.combine(byte) }
        }
        hasher.combine(self.text.utf8.count)
    }

    static func precedes(_ lhs: String, _ rhs: String) -> Bool { lhs.utf8.lexicographicallyPrecedes(rhs.utf8) }
}

/// One column's statistics, gathered value by value so that only what the statistics need is
/// kept (numbers for the median, distinct texts for `top`), never the whole table.
struct ColumnProfile {
    var count = 0
    var missing = 0
    /// Whether every non-missing value so far parses as that type.
    var allBoolean = true
    var allInteger = true
    var allNumber = true
    var trueCount = 0
    var integers: [Int64] = []
    var numbers: [Double] = []
    /// Distinct texts with their counts; only ever read through a sort, never iterated in hash order.
    var frequencies: [ExactText: Int] = [:]
    var minLength = Int.max
    var maxLength = 0
    /// The values seen while the column may still be boolean, integer or number. Their texts
    /// (`frequencies`, lengths) only matter to a text column, so hashing them and counting
    /// their characters waits until the column is known to be text, and a typed column never
    /// pays for it. The statistics are the same: counts and extremes do not depend on the order
    /// in which values are added.
    var untallied: [String] = []

    var isText: Bool { !self.allBoolean && !self.allInteger && !self.allNumber }

    /// A value is missing when it is empty (an unquoted field has already been trimmed).
    mutating func add(_ value: String) {
        guard !value.isEmpty else {
            self.missing += 1
            return
        }
        self.count += 1
        self.addToTypes(value)
        if self.isText {
            if !self.untallied.isEmpty {
                for earlier in self.untallied { self.tally(earlier) }
                self.untallied = []
            }
            self.tally(value)
        } else {
            self.untallied.append(value)
        }
    }

    /// The text statistics of one value.
    mutating func tally(_ value: String) {
        self.frequencies[ExactText(text: value), default: 0] += 1
        let length = Self.characterCount(value)
        self.minLength = min(self.minLength, length)
        self.maxLength = max(self.maxLength, length)
    }

    /// Characters (grapheme clusters), as a reader counts them. In ASCII without CR every byte
    /// is one character (CRLF is one; a quoted field may hold it), so the count is the length.
    static func characterCount(_ value: String) -> Int {
        let ascii = value.utf8.withContiguousStorageIfAvailable { bytes in bytes.allSatisfy { $0 < 0x80 && $0 != 0x0D } } ?? false
        return ascii ? value.utf8.count : value.count
    }

    /// Narrows the types the column may still have.
    mutating func addToTypes(_ value: String) {
        if self.allBoolean {
            switch Self.boolean(value) {
            case true?: self.trueCount += 1
            case false?: break
            case nil: self.allBoolean = false
            }
        }
        var integer: Int64?
        if self.allInteger {
            // Int64(String) takes an optional sign and decimal digits only, and fails on overflow:
            // such a value is still a number, just not an integer.
            integer = Int64(value)
            if let integer { self.integers.append(integer) } else {
                self.allInteger = false
                self.integers = []
            }
        }
        if self.allNumber {
            // An integer's text converts to the double nearest its value, which is what the
            // conversion of the integer gives (both round to nearest, ties to even), without
            // scanning the text again and calling strtod. Not for zero: "-0" is -0.0 to strtod.
            let number: Double? = if let integer, integer != 0 { Double(integer) } else { Self.decimal(value) }
            if let number { self.numbers.append(number) } else {
                self.allNumber = false
                self.numbers = []
            }
        }
    }

    /// true or false for `true` and `false` in any case (what `lowercased()` compared with them
    /// would say, without making the lower-cased copy), nil for anything else. Only ASCII
    /// letters lower-case to these ASCII words.
    static func boolean(_ value: String) -> Bool? {
        let utf8 = value.utf8
        let count = utf8.count
        guard count == 4 || count == 5 else { return nil }
        let word: StaticString = count == 4 ? "true" : "false"
        var offset = 0
        for byte in utf8 {
            let lower = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
            guard lower == word.utf8Start[offset] else { return nil }
            offset += 1
        }
        return count == 4
    }

    /// A finite decimal number: `[+-]? digits [. digits] [(e|E) [+-]? digits]`, with digits on
    /// at least one side of the point. The grammar is checked here because `Double(String)` also
    /// takes `nan`, `inf` and hex floats. The conversion itself is strtod in the C locale,
    /// correctly rounded, so it does not depend on the machine's locale.
    static func decimal(_ text: String) -> Double? {
        var mantissaDigits = 0
        var exponentDigits = -1  // -1: no exponent
        var seenPoint = false
        var previous: UInt8 = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if exponentDigits >= 0 { exponentDigits += 1 } else { mantissaDigits += 1 }
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard previous == 0 || previous == UInt8(ascii: "e") || previous == UInt8(ascii: "E") else { return nil }
            case UInt8(ascii: "."):
                guard !seenPoint, exponentDigits < 0 else { return nil }
                seenPoint = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                guard mantissaDigits > 0, exponentDigits < 0 else { return nil }
                exponentDigits = 0
            default:
                return nil
            }
            previous = byte
        }
        guard mantissaDigits > 0, exponentDigits != 0, let number = Double(text), number.isFinite else { return nil }
        return number
    }

    var type: String {
        if self.count == 0 { return "empty" }
        if self.allBoolean { return "boolean" }
        if self.allInteger { return "integer" }
        if self.allNumber { return "number" }
        return "text"
    }

    func result(name: String) -> MCPValue {
        let type = self.type
        var entries: [MCPValue.MapEntry] = [
            .init("name", .string(name)),
            .init("type", .string(type)),
            .init("count", .int(Int64(self.count))),
            .init("missing", .int(Int64(self.missing))),
        ]
        switch type {
        case "empty":
            entries.append(.init("distinct", 0))
        case "boolean":
            let falseCount = self.count - self.trueCount
            entries.append(.init("distinct", .int(Int64((self.trueCount > 0 ? 1 : 0) + (falseCount > 0 ? 1 : 0)))))
            entries.append(.init("true_count", .int(Int64(self.trueCount))))
            entries.append(.init("false_count", .int(Int64(falseCount))))
        case "integer", "number":
            entries.append(contentsOf: self.numericEntries(integer: type == "integer"))
        default:
            entries.append(contentsOf: self.textEntries())
        }
        return .map(entries)
    }

    /// `distinct` counts distinct values (`1.0` and `1.00` are one), `median` averages the two
    /// middle values of an even count, and `stddev` is the POPULATION standard deviation
    /// (divide by n): the column is described as the whole data set it is, not as a sample of a
    /// larger one, and one value gives 0 rather than an undefined result.
    func numericEntries(integer: Bool) -> [MCPValue.MapEntry] {
        let sorted = self.numbers.sorted()
        let n = Double(sorted.count)
        // Distinct integers are counted as integers: above 2^53 two of them can share a double.
        let sortedIntegers = integer ? self.integers.sorted() : []
        var distinct = 0
        if integer {
            for index in sortedIntegers.indices where index == 0 || sortedIntegers[index] != sortedIntegers[index - 1] { distinct += 1 }
        } else {
            for index in sorted.indices where index == 0 || sorted[index] != sorted[index - 1] { distinct += 1 }
        }

        // Neumaier's compensated sum, in input order: accurate, and the same on every run.
        var sum = 0.0
        var compensation = 0.0
        for value in self.numbers {
            let total = sum + value
            compensation += abs(sum) >= abs(value) ? (sum - total) + value : (value - total) + sum
            sum = total
        }
        sum += compensation

        // An integer column's sum is exact while it fits Int64; past that it is reported as the
        // double above.
        var exactSum: Int64? = integer ? 0 : nil
        for value in self.integers {
            guard let partial = exactSum else { break }
            let (next, overflow) = partial.addingReportingOverflow(value)
            exactSum = overflow ? nil : next
        }
        let mean = exactSum.map { Double($0) / n } ?? sum / n
        var squares = 0.0
        for value in self.numbers {
            let deviation = value - mean
            squares += deviation * deviation
        }
        let middle = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[middle] : sorted[middle - 1] / 2 + sorted[middle] / 2

        var entries: [MCPValue.MapEntry] = [.init("distinct", .int(Int64(distinct)))]
        if integer {
            entries.append(.init("min", .int(sortedIntegers[0])))
            entries.append(.init("max", .int(sortedIntegers[sortedIntegers.count - 1])))
            entries.append(.init("sum", exactSum.map { MCPValue.int($0) } ?? .double(sum)))
        } else {
            entries.append(.init("min", .double(sorted[0])))
            entries.append(.init("max", .double(sorted[sorted.count - 1])))
            entries.append(.init("sum", .double(sum)))
        }
        entries.append(.init("mean", .double(mean)))
        entries.append(.init("median", .double(median)))
        entries.append(.init("stddev", .double((squares / n).squareRoot())))
        entries.append(.init("stddev_kind", "population"))
        return entries
    }

    /// `top`: the three most frequent values, ties broken by byte order of the value.
    func textEntries() -> [MCPValue.MapEntry] {
        // One selection pass instead of sorting every distinct value. The order is strict and
        // total (distinct keys never tie on bytes), so the Dictionary's iteration order cannot
        // change which three are kept or their order.
        func ranksBefore(_ lhs: (key: ExactText, value: Int), _ rhs: (key: ExactText, value: Int)) -> Bool {
            lhs.value != rhs.value ? lhs.value > rhs.value : ExactText.precedes(lhs.key.text, rhs.key.text)
        }
        var best: [(key: ExactText, value: Int)] = []
        for entry in self.frequencies where best.count < 3 || ranksBefore(entry, best[best.count - 1]) {
            best.insert(entry, at: best.firstIndex { ranksBefore(entry, $0) } ?? best.count)
            if best.count > 3 { best.removeLast() }
        }
        let top: [MCPValue] = best.map { entry in
            let (value, clipped) = AgentKit.clipped(entry.key.text, maxBytes: DataSage.maxReportedBytes)
            var fields: [MCPValue.MapEntry] = [.init("value", .string(value)), .init("count", .int(Int64(entry.value)))]
            if clipped { fields.append(.init("truncated", true)) }
            return .map(fields)
        }
        return [
            .init("distinct", .int(Int64(self.frequencies.count))),
            .init("top", .array(top)),
            .init("min_length", .int(Int64(self.minLength))),
            .init("max_length", .int(Int64(self.maxLength))),
        ]
    }
}
