import CartritaEnvelope

// MARK: - Routing (MCP-SPEC §5)

/// Which supervisor handles a task, by the prefix of its type. Configuration, not code: a new
/// domain supervisor plugs in by adding lines, without touching the orchestrator.
///
/// Prefixes end with "." and match whole segments (`llm.` matches `llm.chat`, not `llmx.chat`).
/// The longest matching prefix wins, so `vision.ocr.` can be routed apart from `vision.`.
public struct RoutingTable: Hashable, Sendable {
    public struct Route: Hashable, Sendable {
        public var prefix: String
        public var supervisor: Address

        public init(prefix: String, supervisor: Address) {
            self.prefix = prefix
            self.supervisor = supervisor
        }
    }

    /// Longest prefix first, then by prefix: the order lookups try them in.
    public let routes: [Route]

    public init(routes: [Route]) throws(RoutingError) {
        var seen: [String] = []
        for route in routes {
            guard route.prefix.hasSuffix("."), route.prefix.utf8.count >= 2,
                !route.prefix.hasPrefix("."), !route.prefix.contains("..")
            else {
                throw RoutingError("prefix \"\(route.prefix)\" must be one or more segments followed by a dot, like \"llm.\"")
            }
            guard route.prefix.utf8.allSatisfy({ Self.isPrefixByte($0) }) else {
                throw RoutingError("prefix \"\(route.prefix)\" may only hold [a-z0-9_-] and dots")
            }
            guard route.supervisor.isSupervisor else {
                throw RoutingError("\(route.supervisor) is not a supervisor address")
            }
            guard !seen.contains(route.prefix) else { throw RoutingError("prefix \"\(route.prefix)\" is routed twice") }
            seen.append(route.prefix)
        }
        self.routes = routes.sorted {
            ($0.prefix.utf8.count, $1.prefix) > ($1.prefix.utf8.count, $0.prefix)
        }
    }

    /// The supervisor for `taskType`, or nil: the orchestrator then answers `unknown_task_type`.
    public func supervisor(forTaskType taskType: String) -> Address? {
        // First bytes first: most routes differ there, and `hasPrefix` costs a call to memcmp.
        // A prefix is ASCII (`init` checks), and no other text is canonically equivalent to
        // ASCII `[a-z0-9._-]`, so a task type whose first byte differs never has the prefix.
        let first = taskType.utf8.first
        return self.routes.first {
            $0.prefix.utf8.first == first && taskType.hasPrefix($0.prefix) && taskType.utf8.count > $0.prefix.utf8.count
        }?.supervisor
    }

    /// The terminal answer for a task type no route takes.
    public static func unknownTaskType(_ taskType: String) -> TaskError {
        TaskError(code: .unknownTaskType, message: "no supervisor handles task type \(taskType)", retryable: false)
    }

    /// The table of MCP-SPEC §5.
    public static let standard: RoutingTable = {
        let intelligence = Address("supervisor.intelligence@v1.0")
        let multimodal = Address("supervisor.multimodal@v1.0")
        let system = Address("supervisor.system@v1.0")
        var routes: [Route] = []
        for prefix in ["llm.", "huggingface.", "langchain.", "fine-tuning.", "embedding.", "text.", "code.", "research.", "writing."] {
            routes.append(Route(prefix: prefix, supervisor: intelligence))
        }
        for prefix in ["vision.", "audio.", "speech.", "tts.", "multimodal.", "image."] {
            routes.append(Route(prefix: prefix, supervisor: multimodal))
        }
        for prefix in ["system.", "lifeos.", "security.", "telemetry.", "tasks.", "schedule.", "analytics.", "data."] {
            routes.append(Route(prefix: prefix, supervisor: system))
        }
        do {
            return try RoutingTable(routes: routes)
        } catch {
            preconditionFailure("the standard routing table is invalid: \(error)")
        }
    }()

    /// Parses the configuration form: one route per line, `PREFIX SUPERVISOR_ADDRESS`, blank lines
    /// and `#` comments ignored. Errors name the line.
    ///
    ///     # intelligence
    ///     llm.        supervisor.intelligence@v1.0
    ///     finance.    supervisor.finance@v1.0
    public static func parse(_ text: String) throws(RoutingError) -> RoutingTable {
        var routes: [Route] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.prefix { $0 != "#" }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty { continue }
            guard fields.count == 2 else {
                throw RoutingError("line \(index + 1): expected `PREFIX SUPERVISOR`, got \"\(line.trimmingSpaces)\"")
            }
            let supervisor: Address
            do {
                supervisor = try Address(validating: String(fields[1]))
            } catch {
                throw RoutingError("line \(index + 1): \(error.message)")
            }
            routes.append(Route(prefix: String(fields[0]), supervisor: supervisor))
        }
        do {
            return try RoutingTable(routes: routes)
        } catch {
            throw RoutingError("\(error.message)")
        }
    }

    /// The configuration form of this table, which `parse` reads back.
    public var configurationText: String {
        self.routes.sorted { ($0.supervisor.rawValue, $0.prefix) < ($1.supervisor.rawValue, $1.prefix) }
            .map { "\($0.prefix) \($0.supervisor.rawValue)" }.joined(separator: "\n") + "\n"
    }

    static func isPrefixByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}

public struct RoutingError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

extension Substring {
    var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }
}
