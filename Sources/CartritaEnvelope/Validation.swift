// MARK: - Errors

/// A broken envelope rule: which rule (`code`), where (`path`, e.g. `payload.task.type`), and a
/// sentence for a person. Codes are a struct with static members, so adding one never breaks a
/// caller's exhaustive switch.
public struct EnvelopeError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { self.rawValue }

        public static let invalidAddress = Code(rawValue: "invalid_address")
        public static let notUUIDv7 = Code(rawValue: "not_uuidv7")
        public static let invalidTTL = Code(rawValue: "invalid_ttl")
        public static let invalidTimestamp = Code(rawValue: "invalid_timestamp")
        public static let invalidRetryCount = Code(rawValue: "invalid_retry_count")
        public static let retryCountExceedsMax = Code(rawValue: "retry_count_exceeds_max")
        public static let invalidTraceID = Code(rawValue: "invalid_trace_id")
        public static let invalidSpanID = Code(rawValue: "invalid_span_id")
        public static let broadcastToNonSupervisor = Code(rawValue: "broadcast_to_non_supervisor")
        public static let invalidTaskType = Code(rawValue: "invalid_task_type")
        public static let invalidConstraint = Code(rawValue: "invalid_constraint")
        public static let invalidFile = Code(rawValue: "invalid_file")
        public static let invalidMetric = Code(rawValue: "invalid_metric")
        public static let invalidErrorCode = Code(rawValue: "invalid_error_code")
        public static let invalidProgress = Code(rawValue: "invalid_progress")
        public static let invalidResourceAmounts = Code(rawValue: "invalid_resource_amounts")
        public static let invalidStream = Code(rawValue: "invalid_stream")
        public static let emptyField = Code(rawValue: "empty_field")
        public static let stringTooLong = Code(rawValue: "string_too_long")
        public static let tooManyEntries = Code(rawValue: "too_many_entries")
        public static let duplicateKey = Code(rawValue: "duplicate_key")
        public static let nestingTooDeep = Code(rawValue: "nesting_too_deep")
        public static let notFinite = Code(rawValue: "not_finite")
    }

    public var code: Code
    public var path: String
    public var message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "\(self.code) at \(self.path): \(self.message)" }
}

// MARK: - Limits

/// Limits that validation enforces. The codec enforces the byte-level ones (encoded size,
/// string and binary sizes) as it reads, before anything is allocated for them.
public struct EnvelopeLimits: Hashable, Sendable {
    /// Longest free text (messages, names, ids of conversations…), in bytes.
    public var maxTextBytes: Int
    /// Most entries in `custom_attributes`, `parameters`, `files`.
    public var maxEntries: Int
    /// Deepest nesting of a free-form value (`parameters`, `data`, `result`).
    public var maxValueDepth: Int
    /// Longest task type, in bytes.
    public var maxTaskTypeBytes: Int

    public init(maxTextBytes: Int = 64 * 1024, maxEntries: Int = 1024, maxValueDepth: Int = 24, maxTaskTypeBytes: Int = 128) {
        self.maxTextBytes = maxTextBytes
        self.maxEntries = maxEntries
        self.maxValueDepth = maxValueDepth
        self.maxTaskTypeBytes = maxTaskTypeBytes
    }

    public static let `default` = EnvelopeLimits()
}

// MARK: - Validation

extension Envelope {
    /// Checks every rule of MCP-SPEC §1 and §3. Throws the first broken rule with its field path.
    public func validate(limits: EnvelopeLimits = .default) throws(EnvelopeError) {
        try Self.requireV7(self.id, path: "id")
        if let parentID = self.parentID { try Self.requireV7(parentID, path: "parent_id") }
        try Self.requireV7(self.correlationID, path: "correlation_id")
        try Address.check(self.sender.rawValue, path: "sender")
        try Address.check(self.recipient.rawValue, path: "recipient")
        if self.broadcast && !self.recipient.isSupervisor {
            throw EnvelopeError(
                .broadcastToNonSupervisor, path: "broadcast",
                "broadcast goes to every child of a supervisor; \(self.recipient) is not one")
        }
        guard self.timestampMilliseconds >= 0, self.timestampMilliseconds < (1 << 48) else {
            throw EnvelopeError(.invalidTimestamp, path: "timestamp", "timestamp \(self.timestampMilliseconds) ms is out of range")
        }
        guard self.ttlMilliseconds > 0 else {
            throw EnvelopeError(.invalidTTL, path: "ttl_ms", "ttl_ms must be > 0, got \(self.ttlMilliseconds)")
        }
        guard self.retryCount >= 0 else {
            throw EnvelopeError(.invalidRetryCount, path: "retry_count", "retry_count must be >= 0")
        }
        guard self.maxRetries >= 0 else {
            throw EnvelopeError(.invalidRetryCount, path: "max_retries", "max_retries must be >= 0")
        }
        guard self.retryCount <= self.maxRetries else {
            throw EnvelopeError(
                .retryCountExceedsMax, path: "retry_count",
                "retry_count \(self.retryCount) exceeds max_retries \(self.maxRetries)")
        }
        try self.context.validate(limits: limits)
        try self.payload.validate(limits: limits)
    }

    static func requireV7(_ id: MessageID, path: String) throws(EnvelopeError) {
        guard id.isUUIDv7 else {
            throw EnvelopeError(.notUUIDv7, path: path, "\(id) is not a UUIDv7 (version \(id.version))")
        }
    }
}

extension MessageContext {
    func validate(limits: EnvelopeLimits) throws(EnvelopeError) {
        guard self.traceID.isValid else {
            throw EnvelopeError(.invalidTraceID, path: "context.trace_id", "trace_id must not be all zero")
        }
        guard self.spanID.isValid else {
            throw EnvelopeError(.invalidSpanID, path: "context.span_id", "span_id must not be all zero")
        }
        try Validate.optionalText(self.userID, "context.user_id", limits)
        try Validate.optionalText(self.conversationID, "context.conversation_id", limits)
        try Validate.optionalText(self.sessionID, "context.session_id", limits)
        try Validate.optionalText(self.workspaceID, "context.workspace_id", limits)
        guard self.customAttributes.count <= limits.maxEntries else {
            throw EnvelopeError(.tooManyEntries, path: "context.custom_attributes", "more than \(limits.maxEntries) attributes")
        }
        // Keys compared by UTF-8 bytes, as on the wire (see `MCPValue.firstDuplicateKey`).
        var seen = Set<[UInt8]>()
        for attribute in self.customAttributes {
            let path = "context.custom_attributes.\(attribute.key)"
            guard seen.insert(Array(attribute.key.utf8)).inserted else {
                throw EnvelopeError(.duplicateKey, path: path, "attribute given twice")
            }
            try Validate.text(attribute.key, path, limits)
            try Validate.text(attribute.value, path, limits, allowEmpty: true)
        }
    }
}

extension Payload {
    func validate(limits: EnvelopeLimits) throws(EnvelopeError) {
        switch self {
        case .ping, .pong:
            return
        case .heartbeat(let heartbeat):
            try Validate.nonNegative(heartbeat.queueDepth, "payload.queue_depth", .invalidMetric)
            try Validate.nonNegative(heartbeat.inFlight, "payload.in_flight", .invalidMetric)
        case .shutdown(let shutdown):
            try Validate.text(shutdown.reason, "payload.reason", limits, allowEmpty: true)
            if let deadline = shutdown.deadlineMilliseconds {
                try Validate.nonNegative(deadline, "payload.deadline_ms", .invalidConstraint)
            }
        case .override(let override):
            try Validate.text(override.reason, "payload.reason", limits, allowEmpty: true)
        case .taskRequest(let request):
            try request.validate(limits: limits)
        case .taskResponse(let response):
            try response.validate(limits: limits)
        case .taskError(let error):
            try Validate.errorCode(error.code, "payload.code")
            try Validate.text(error.message, "payload.message", limits, allowEmpty: true)
        case .taskProgress(let progress):
            try progress.validate(limits: limits)
        case .resourceRequest(let request):
            try Envelope.requireV7(request.forCorrelationID, path: "payload.correlation_id")
            try request.amounts.validate(path: "payload.amounts")
            try Validate.optionalText(request.reason, "payload.reason", limits)
        case .resourceGrant(let grant):
            try Envelope.requireV7(grant.forCorrelationID, path: "payload.correlation_id")
            try grant.amounts.validate(path: "payload.amounts")
            if let lease = grant.leaseMilliseconds {
                guard lease > 0 else {
                    throw EnvelopeError(.invalidResourceAmounts, path: "payload.lease_ms", "lease_ms must be > 0")
                }
            }
        case .resourceDeny(let deny):
            try Envelope.requireV7(deny.forCorrelationID, path: "payload.correlation_id")
            try deny.requested.validate(path: "payload.requested")
            try Validate.errorCode(deny.code, "payload.code")
            try Validate.text(deny.reason, "payload.reason", limits)
        case .streamStart(let start):
            try Envelope.requireV7(start.streamID, path: "payload.stream_id")
            try Validate.text(start.contentType, "payload.content_type", limits)
        case .streamData(let data):
            try Envelope.requireV7(data.streamID, path: "payload.stream_id")
            try Validate.nonNegative(data.index, "payload.index", .invalidStream)
        case .streamEnd(let end):
            try Envelope.requireV7(end.streamID, path: "payload.stream_id")
            try Validate.nonNegative(end.count, "payload.count", .invalidStream)
            guard end.digest.count == 32 else {
                throw EnvelopeError(.invalidStream, path: "payload.digest", "digest must be a 32-byte SHA-256, got \(end.digest.count) bytes")
            }
        }
    }
}

extension TaskRequest {
    func validate(limits: EnvelopeLimits) throws(EnvelopeError) {
        try Validate.taskType(self.task.type, "payload.task.type", limits)
        try Validate.entries(self.task.parameters, "payload.task.parameters", limits)
        if let constraints = self.task.constraints {
            if let time = constraints.maxExecutionTimeMilliseconds, time <= 0 {
                throw EnvelopeError(.invalidConstraint, path: "payload.task.constraints.max_execution_time_ms", "must be > 0")
            }
            if let memory = constraints.maxMemoryMB, memory <= 0 {
                throw EnvelopeError(.invalidConstraint, path: "payload.task.constraints.max_memory_mb", "must be > 0")
            }
            if let cost = constraints.maxCostUSD {
                try Validate.finite(cost, "payload.task.constraints.max_cost_usd")
                guard cost >= 0 else {
                    throw EnvelopeError(.invalidConstraint, path: "payload.task.constraints.max_cost_usd", "must be >= 0")
                }
            }
        }
        if let data = self.input.data {
            try Validate.value(data, "payload.input.data", limits)
        }
        guard self.input.files.count <= limits.maxEntries else {
            throw EnvelopeError(.tooManyEntries, path: "payload.input.files", "more than \(limits.maxEntries) files")
        }
        for (index, file) in self.input.files.enumerated() {
            let path = "payload.input.files[\(index)]"
            try Validate.text(file.name, path + ".name", limits)
            try Validate.text(file.contentType, path + ".content_type", limits)
            guard file.sizeBytes >= 0 else {
                throw EnvelopeError(.invalidFile, path: path + ".size_bytes", "size_bytes must be >= 0")
            }
            switch file.source {
            case .url(let url):
                try Validate.text(url, path + ".url", limits)
            case .inline(let bytes):
                guard Int64(bytes.count) == file.sizeBytes else {
                    throw EnvelopeError(
                        .invalidFile, path: path + ".inline_data",
                        "inline_data has \(bytes.count) bytes but size_bytes says \(file.sizeBytes)")
                }
            }
        }
    }
}

extension TaskResponse {
    func validate(limits: EnvelopeLimits) throws(EnvelopeError) {
        if let result = self.result { try Validate.value(result, "payload.result", limits) }
        try Validate.optionalText(self.errorMessage, "payload.error_message", limits)
        if let metrics = self.metrics {
            if let time = metrics.processingTimeMilliseconds {
                try Validate.nonNegative(time, "payload.metrics.processing_time_ms", .invalidMetric)
            }
            if let tokens = metrics.tokensUsed {
                try Validate.nonNegative(tokens, "payload.metrics.tokens_used", .invalidMetric)
            }
            for (value, name) in [(metrics.memoryUsedMB, "memory_used_mb"), (metrics.costUSD, "cost_usd")] {
                guard let value else { continue }
                try Validate.finite(value, "payload.metrics.\(name)")
                guard value >= 0 else { throw EnvelopeError(.invalidMetric, path: "payload.metrics.\(name)", "must be >= 0") }
            }
            if let quality = metrics.qualityScore {
                try Validate.finite(quality, "payload.metrics.quality_score")
                guard (0...1).contains(quality) else {
                    throw EnvelopeError(.invalidMetric, path: "payload.metrics.quality_score", "must be in [0, 1]")
                }
            }
        }
    }
}

extension TaskProgress {
    func validate(limits: EnvelopeLimits) throws(EnvelopeError) {
        guard self.fraction != nil || self.step != nil else {
            throw EnvelopeError(.invalidProgress, path: "payload", "progress needs a fraction or a step")
        }
        if let fraction = self.fraction {
            try Validate.finite(fraction, "payload.fraction")
            guard (0...1).contains(fraction) else {
                throw EnvelopeError(.invalidProgress, path: "payload.fraction", "fraction must be in [0, 1]")
            }
        }
        if let step = self.step { try Validate.nonNegative(step, "payload.step", .invalidProgress) }
        if let total = self.totalSteps {
            guard total > 0 else { throw EnvelopeError(.invalidProgress, path: "payload.total_steps", "must be > 0") }
            if let step = self.step, step > total {
                throw EnvelopeError(.invalidProgress, path: "payload.step", "step \(step) exceeds total_steps \(total)")
            }
        }
        try Validate.text(self.message, "payload.message", limits, allowEmpty: true)
    }
}

extension ResourceAmounts {
    func validate(path: String) throws(EnvelopeError) {
        guard self.tokens != nil || self.costUSD != nil || self.concurrencySlots != nil || self.memoryMB != nil else {
            throw EnvelopeError(.invalidResourceAmounts, path: path, "at least one amount must be given")
        }
        for (value, name) in [(self.tokens, "tokens"), (self.concurrencySlots, "concurrency_slots"), (self.memoryMB, "memory_mb")] {
            if let value { try Validate.nonNegative(value, "\(path).\(name)", .invalidResourceAmounts) }
        }
        if let cost = self.costUSD {
            try Validate.finite(cost, "\(path).cost_usd")
            guard cost >= 0 else { throw EnvelopeError(.invalidResourceAmounts, path: "\(path).cost_usd", "must be >= 0") }
        }
    }
}

/// Shared rules, each with its named code.
enum Validate {
    static func text(_ text: String, _ path: String, _ limits: EnvelopeLimits, allowEmpty: Bool = false) throws(EnvelopeError) {
        if !allowEmpty && text.isEmpty {
            throw EnvelopeError(.emptyField, path: path, "must not be empty")
        }
        guard text.utf8.count <= limits.maxTextBytes else {
            throw EnvelopeError(.stringTooLong, path: path, "longer than \(limits.maxTextBytes) bytes")
        }
    }

    static func optionalText(_ text: String?, _ path: String, _ limits: EnvelopeLimits) throws(EnvelopeError) {
        if let text { try Self.text(text, path, limits) }
    }

    static func nonNegative(_ value: Int64, _ path: String, _ code: EnvelopeError.Code) throws(EnvelopeError) {
        guard value >= 0 else { throw EnvelopeError(code, path: path, "must be >= 0, got \(value)") }
    }

    static func finite(_ value: Double, _ path: String) throws(EnvelopeError) {
        guard value.isFinite else { throw EnvelopeError(.notFinite, path: path, "must be a finite number") }
    }

    /// `[a-z][a-z0-9_]*`, at most 64 bytes.
    static func errorCode(_ code: TaskErrorCode, _ path: String) throws(EnvelopeError) {
        let utf8 = code.rawValue.utf8
        guard let first = utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first), utf8.count <= 64,
            utf8.allSatisfy({ Self.isLowerAlnum($0) || $0 == UInt8(ascii: "_") })
        else {
            throw EnvelopeError(.invalidErrorCode, path: path, "error code must match [a-z][a-z0-9_]{0,63}, got \(code)")
        }
    }

    /// `segment(.segment)+` with segments of `[a-z0-9][a-z0-9_-]*`: the first segment routes it.
    static func taskType(_ type: String, _ path: String, _ limits: EnvelopeLimits) throws(EnvelopeError) {
        let utf8 = type.utf8
        guard !utf8.isEmpty, utf8.count <= limits.maxTaskTypeBytes else {
            throw EnvelopeError(.invalidTaskType, path: path, "task type must be 1 to \(limits.maxTaskTypeBytes) bytes")
        }
        var segments = 1
        var segmentLength = 0
        for byte in utf8 {
            if byte == UInt8(ascii: ".") {
                guard segmentLength > 0 else { break }
                segments += 1
                segmentLength = 0
            } else if Self.isLowerAlnum(byte) || (segmentLength > 0 && (byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_"))) {
                segmentLength += 1
            } else {
                segmentLength = -1
                break
            }
        }
        guard segmentLength > 0, segments >= 2 else {
            throw EnvelopeError(.invalidTaskType, path: path, "task type must look like domain.action, got \(type)")
        }
    }

    static func entries(_ entries: [MCPValue.MapEntry], _ path: String, _ limits: EnvelopeLimits) throws(EnvelopeError) {
        try Self.value(.map(entries), path, limits)
    }

    /// Free-form values: bounded depth and entry counts, unique map keys. Finite numbers are not
    /// required (msgpack carries NaN faithfully).
    ///
    /// Every envelope a handler sends is validated before it is logged, and results can be big
    /// trees: the first pass checks the rules without building a single path, and only a value
    /// that breaks one is walked again to say where.
    static func value(_ value: MCPValue, _ path: String, _ limits: EnvelopeLimits, depth: Int = 0) throws(EnvelopeError) {
        if Self.holdsRules(value, limits, depth: depth) { return }
        try Self.locateBrokenRule(value, path, limits, depth: depth)
    }

    /// The rules of `value` without paths: true when every one holds.
    static func holdsRules(_ value: MCPValue, _ limits: EnvelopeLimits, depth: Int) -> Bool {
        switch value {
        case .array(let items):
            guard depth < limits.maxValueDepth, items.count <= limits.maxEntries else { return false }
            for item in items where item.isContainer {
                guard Self.holdsRules(item, limits, depth: depth + 1) else { return false }
            }
            return true
        case .map(let entries):
            guard depth < limits.maxValueDepth, entries.count <= limits.maxEntries,
                MCPValue.firstDuplicateKey(entries) == nil
            else { return false }
            for entry in entries where entry.value.isContainer {
                guard Self.holdsRules(entry.value, limits, depth: depth + 1) else { return false }
            }
            return true
        default:
            return true
        }
    }

    /// The slow pass: throws the first broken rule with its path (the same order of checks as
    /// `holdsRules`, so both passes agree on whether a value is valid).
    static func locateBrokenRule(_ value: MCPValue, _ path: String, _ limits: EnvelopeLimits, depth: Int) throws(EnvelopeError) {
        switch value {
        case .array(let items):
            guard depth < limits.maxValueDepth else {
                throw EnvelopeError(.nestingTooDeep, path: path, "nested deeper than \(limits.maxValueDepth)")
            }
            guard items.count <= limits.maxEntries else {
                throw EnvelopeError(.tooManyEntries, path: path, "more than \(limits.maxEntries) items")
            }
            for (index, item) in items.enumerated() where item.isContainer {
                try Self.locateBrokenRule(item, "\(path)[\(index)]", limits, depth: depth + 1)
            }
        case .map(let entries):
            guard depth < limits.maxValueDepth else {
                throw EnvelopeError(.nestingTooDeep, path: path, "nested deeper than \(limits.maxValueDepth)")
            }
            guard entries.count <= limits.maxEntries else {
                throw EnvelopeError(.tooManyEntries, path: path, "more than \(limits.maxEntries) entries")
            }
            if let duplicate = MCPValue.firstDuplicateKey(entries) {
                throw EnvelopeError(.duplicateKey, path: "\(path).\(duplicate)", "key given twice")
            }
            for entry in entries where entry.value.isContainer {
                try Self.locateBrokenRule(entry.value, "\(path).\(entry.key)", limits, depth: depth + 1)
            }
        default:
            // Scalars and strings: their size is bounded by the codec's envelope size limit.
            return
        }
    }

    static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}
