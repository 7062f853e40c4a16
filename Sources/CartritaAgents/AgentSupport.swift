import CartritaEnvelope
import CartritaRuntime

// Shared plumbing of the tier-2 agents: refusals, parameter reading, text input, result limits.
// Everything here is a pure function of its arguments (no clock, no randomness, no I/O).

/// A request that cannot be served. Work functions throw it; `handle` turns it into `.failed`,
/// so an agent never traps on bad input and every refusal carries a stable code.
struct Refusal: Error {
    var error: TaskError

    init(_ code: TaskErrorCode, _ message: String, retryable: Bool = false) {
        self.error = TaskError(code: code, message: message, retryable: retryable)
    }

    static func invalid(_ message: String) -> Refusal { Refusal(.invalidInput, message) }
}

extension TaskErrorCode {
    /// The task (or other named thing) the request refers to does not exist.
    static let notFound = TaskErrorCode(rawValue: "not_found")
    /// A fixed capacity of the agent is used up; retrying the same request will not help.
    static let limitReached = TaskErrorCode(rawValue: "limit_reached")
}

enum AgentKit {
    /// The core has no clock, so elapsed time cannot be measured: 0 is reported, and the runtime
    /// (which owns the clock) can derive real latency from the request's and reply's timestamps.
    /// Local work uses no model tokens and costs nothing; the answer is exact, hence quality 1.
    static let localMetrics = TaskMetrics(processingTimeMilliseconds: 0, costUSD: 0, tokensUsed: 0, qualityScore: 1)

    /// Runs a work function: its value completes the task, its refusal fails it.
    static func run(_ work: () throws(Refusal) -> MCPValue) -> AgentOutcome {
        do {
            return .completed(result: try work(), metrics: Self.localMetrics)
        } catch {
            return .failed(error.error)
        }
    }

    static func unknownTaskType(_ type: String, agent: Address, handles: [String]) -> AgentOutcome {
        .failed(TaskError(
            code: .unknownTaskType,
            message: "\(agent) does not handle \(Self.quoted(type)); it handles \(handles.joined(separator: ", "))",
            retryable: false))
    }

    /// User text echoed in an error message, cut short (by bytes: one character can carry any
    /// number of combining marks) so messages stay small whatever the input.
    static func quoted(_ text: String, maxBytes: Int = 96) -> String {
        let (prefix, clipped) = Self.clipped(text, maxBytes: maxBytes)
        return clipped ? "\"\(prefix)…\"" : "\"\(text)\""
    }

    /// The longest prefix of `text` that fits in `maxBytes` of UTF-8 without splitting a
    /// character, and whether anything was cut. Keeps results inside the codec's envelope limit.
    static func clipped(_ text: String, maxBytes: Int) -> (text: String, clipped: Bool) {
        guard text.utf8.count > maxBytes else { return (text, false) }
        var bytes = 0
        var end = text.startIndex
        for index in text.indices {
            let width = text[index].utf8.count
            guard bytes + width <= maxBytes else { break }
            bytes += width
            end = text.index(after: index)
        }
        return (String(text[..<end]), true)
    }

    /// Rounds to `places` decimals, half away from zero. Plain IEEE arithmetic, so the result is
    /// the same on every machine (no locale, no formatting): e.g. 6573 / 100 is exactly the
    /// double nearest to 65.73.
    static func rounded(_ value: Double, places: Int = 2) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (value * scale).rounded(.toNearestOrAwayFromZero) / scale
    }
}

// MARK: - Parameters

/// A request's `task.parameters`, read with types checked. Unknown keys are refused, so a typo
/// (`titel`) fails loudly instead of being silently ignored. A `null` value counts as absent,
/// except where a caller asks for it explicitly (`isNull`).
struct Parameters {
    let entries: [MCPValue.MapEntry]

    init(_ entries: [MCPValue.MapEntry], allowed: [String]) throws(Refusal) {
        for entry in entries where !allowed.contains(entry.key) {
            let accepted = allowed.isEmpty ? "none" : allowed.joined(separator: ", ")
            throw .invalid("unknown parameter \(AgentKit.quoted(entry.key)); accepted: \(accepted)")
        }
        if let duplicate = MCPValue.firstDuplicateKey(entries) {
            throw .invalid("parameter \(AgentKit.quoted(duplicate)) is given twice")
        }
        self.entries = entries
    }

    func value(_ key: String) -> MCPValue? {
        guard let value = self.entries.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    func has(_ key: String) -> Bool { self.entries.contains { $0.key == key } }

    func isNull(_ key: String) -> Bool { self.entries.first { $0.key == key }?.value == .null }

    func string(_ key: String) throws(Refusal) -> String? {
        guard let value = self.value(key) else { return nil }
        guard case .string(let text) = value else { throw .invalid("parameter \(key) must be a string") }
        return text
    }

    func bool(_ key: String) throws(Refusal) -> Bool? {
        guard let value = self.value(key) else { return nil }
        guard case .bool(let flag) = value else { throw .invalid("parameter \(key) must be true or false") }
        return flag
    }

    /// An integer in `range`. A float with an integral value is accepted (JSON clients often send
    /// `3.0`); anything else is refused rather than rounded.
    func int(_ key: String, in range: ClosedRange<Int64>) throws(Refusal) -> Int64? {
        guard let value = self.value(key) else { return nil }
        let number: Int64?
        switch value {
        case .int(let int): number = int
        case .uint: number = nil  // above Int64.max: out of any range we accept
        case .double(let double): number = Int64(exactly: double)
        case .float(let float): number = Int64(exactly: float)
        default: throw .invalid("parameter \(key) must be an integer")
        }
        guard let number, range.contains(number) else {
            throw .invalid("parameter \(key) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func stringArray(_ key: String) throws(Refusal) -> [String]? {
        guard let value = self.value(key) else { return nil }
        guard case .array(let items) = value else { throw .invalid("parameter \(key) must be an array of strings") }
        var strings: [String] = []
        strings.reserveCapacity(items.count)
        for item in items {
            guard case .string(let text) = item else { throw .invalid("parameter \(key) must be an array of strings") }
            strings.append(text)
        }
        return strings
    }
}

// MARK: - Text input

enum TextInput {
    /// The call that fetches the request's one file when it is given by URL (the runtime's
    /// `files` service reads it and the log records what it read); nil when the text is inline.
    static func fetchCall(_ input: TaskInput, maxBytes: Int) -> IOCall? {
        guard input.data == nil, input.files.count == 1, case .url(let url) = input.files[0].source else { return nil }
        return IOCall(
            service: "files", operation: "read",
            arguments: .map([MCPValue.MapEntry("url", .string(url)), MCPValue.MapEntry("max_bytes", .int(Int64(maxBytes) + 3))]))
    }

    /// An agent's `resume` after `fetchCall`: the same handling, on the fetched bytes (or the
    /// service's failure as the task's answer).
    static func resume(_ request: TaskRequest, _ result: IOResult, handle: (TaskRequest) -> AgentOutcome) -> AgentOutcome {
        switch Self.inlined(request, result) {
        case .failure(let error): .failed(error)
        case .success(let inline): handle(inline)
        }
    }

    /// The request with its URL file replaced by the bytes the `files` service read.
    static func inlined(_ request: TaskRequest, _ result: IOResult) -> Result<TaskRequest, TaskError> {
        switch result {
        case .failure(let error):
            return .failure(TaskError(code: error.code, message: "fetching the input file: \(error.message)", retryable: error.retryable))
        case .success(let value):
            guard request.input.files.count == 1, case .binary(let bytes)? = value["content"] else {
                return .failure(TaskError(code: .ioError, message: "the files service answered without content", retryable: false))
            }
            var request = request
            request.input.files[0].source = .inline(bytes)
            request.input.files[0].sizeBytes = Int64(bytes.count)
            return .success(request)
        }
    }

    /// The request's text: `input.data` as a string, or exactly one file sent inline. A file by
    /// URL is fetched first (`fetchCall`, then the agent resumes with it inline): the agent
    /// itself does no I/O. Inline bytes must be UTF-8; a byte order mark is dropped. The size
    /// limit is checked before anything is copied or decoded.
    static func read(_ input: TaskInput, maxBytes: Int, accepts contentTypeOK: (String) -> Bool) throws(Refusal) -> String {
        let limit = "\(maxBytes / (1 << 20)) MiB"
        switch (input.data, input.files.count) {
        case (.some(.string(let text)), 0):
            guard text.utf8.count <= maxBytes else { throw .invalid("the text is larger than \(limit)") }
            return text
        case (.some(.string), _):
            throw .invalid("give the text either in input.data or in one file, not both")
        case (.some, _):
            throw .invalid("input.data must be a string")
        case (nil, 0):
            throw .invalid("no input: put the text in input.data or in one inline file")
        case (nil, 1):
            let file = input.files[0]
            guard contentTypeOK(Self.mediaType(file.contentType)) else {
                throw .invalid("file \(AgentKit.quoted(file.name)) has content type \(AgentKit.quoted(file.contentType)), which this agent does not read")
            }
            guard case .inline(var bytes) = file.source else {
                throw .invalid("file \(AgentKit.quoted(file.name)) is given by URL and was not fetched")
            }
            guard bytes.count <= maxBytes + 3 else { throw .invalid("file \(AgentKit.quoted(file.name)) is larger than \(limit)") }
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
            guard bytes.count <= maxBytes else { throw .invalid("file \(AgentKit.quoted(file.name)) is larger than \(limit)") }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw .invalid("file \(AgentKit.quoted(file.name)) is not valid UTF-8")
            }
            return text
        case (nil, _):
            throw .invalid("send exactly one file, got \(input.files.count)")
        }
    }

    /// `Text/CSV; charset=utf-8` → `text/csv`.
    static func mediaType(_ contentType: String) -> String {
        // Usually already bare and lower case (`text/plain`): then it is the answer as it is.
        if contentType.utf8.allSatisfy({ $0 < 0x80 && $0 != UInt8(ascii: ";") && $0 != 0x20 && $0 != 0x09 && !($0 >= 0x41 && $0 <= 0x5A) }) {
            return contentType
        }
        let bare = contentType.prefix { $0 != ";" }
        return String(bare.filter { $0 != " " && $0 != "\t" }).lowercased()
    }
}
