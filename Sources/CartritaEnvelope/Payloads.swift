// MARK: - Payloads (MCP-SPEC §3)

/// The payload of an envelope; its case is the envelope's message type.
public enum Payload: Hashable, Sendable {
    case ping(Ping)
    case pong(Pong)
    case heartbeat(Heartbeat)
    case shutdown(Shutdown)
    case override(Override)
    case taskRequest(TaskRequest)
    case taskResponse(TaskResponse)
    case taskError(TaskError)
    case taskProgress(TaskProgress)
    case resourceRequest(ResourceRequest)
    case resourceGrant(ResourceGrant)
    case resourceDeny(ResourceDeny)
    case streamStart(StreamStart)
    case streamData(StreamData)
    case streamEnd(StreamEnd)

    @inlinable public var type: MessageType {
        switch self {
        case .ping: .ping
        case .pong: .pong
        case .heartbeat: .heartbeat
        case .shutdown: .shutdown
        case .override: .override
        case .taskRequest: .taskRequest
        case .taskResponse: .taskResponse
        case .taskError: .taskError
        case .taskProgress: .taskProgress
        case .resourceRequest: .resourceRequest
        case .resourceGrant: .resourceGrant
        case .resourceDeny: .resourceDeny
        case .streamStart: .streamStart
        case .streamData: .streamData
        case .streamEnd: .streamEnd
        }
    }
}

// MARK: Control

public struct Ping: Hashable, Sendable {
    public var nonce: UInt64
    public init(nonce: UInt64) { self.nonce = nonce }
}

public struct Pong: Hashable, Sendable {
    /// The nonce of the ping this answers.
    public var nonce: UInt64
    public init(nonce: UInt64) { self.nonce = nonce }
}

public enum HealthStatus: String, CaseIterable, Sendable {
    case ok, degraded, failing
}

public struct Heartbeat: Hashable, Sendable {
    public var status: HealthStatus
    public var queueDepth: Int64
    public var inFlight: Int64

    public init(status: HealthStatus, queueDepth: Int64 = 0, inFlight: Int64 = 0) {
        self.status = status
        self.queueDepth = queueDepth
        self.inFlight = inFlight
    }
}

public struct Shutdown: Hashable, Sendable {
    public var reason: String
    /// Finish queued work before stopping.
    public var drain: Bool
    /// Stop anyway this long after the message, if set.
    public var deadlineMilliseconds: Int64?

    public init(reason: String, drain: Bool = true, deadlineMilliseconds: Int64? = nil) {
        self.reason = reason
        self.drain = drain
        self.deadlineMilliseconds = deadlineMilliseconds
    }
}

/// What an emergency override does. `pause` and `resume` go to a domain supervisor (a paused
/// supervisor answers new `task_request`s with a retryable `task_error` `paused`; tasks in flight
/// go on). `drain` and `end_drain` go to the orchestrator and record that the front door stopped
/// (or started again) taking new tasks; the orchestrator's state does not change.
public enum OverrideAction: String, CaseIterable, Sendable {
    case pause, resume, drain
    case endDrain = "end_drain"
}

/// An emergency override. Who ordered it is the envelope's `context.user_id`.
public struct Override: Hashable, Sendable {
    public var action: OverrideAction
    public var reason: String

    public init(action: OverrideAction, reason: String = "") {
        self.action = action
        self.reason = reason
    }
}

// MARK: Task

public enum QualityLevel: String, CaseIterable, Sendable {
    case fast, balanced, best
}

public struct TaskConstraints: Hashable, Sendable {
    public var maxExecutionTimeMilliseconds: Int64?
    public var maxMemoryMB: Int64?
    public var maxCostUSD: Double?

    public init(maxExecutionTimeMilliseconds: Int64? = nil, maxMemoryMB: Int64? = nil, maxCostUSD: Double? = nil) {
        self.maxExecutionTimeMilliseconds = maxExecutionTimeMilliseconds
        self.maxMemoryMB = maxMemoryMB
        self.maxCostUSD = maxCostUSD
    }
}

public struct TaskSpec: Hashable, Sendable {
    /// `domain.action`, e.g. `huggingface.image-classification`; the prefix routes it.
    public var type: String
    public var parameters: [MCPValue.MapEntry]
    public var constraints: TaskConstraints?

    public init(type: String, parameters: [MCPValue.MapEntry] = [], constraints: TaskConstraints? = nil) {
        self.type = type
        self.parameters = parameters
        self.constraints = constraints
    }
}

public struct FileInput: Hashable, Sendable {
    public enum Source: Hashable, Sendable {
        case url(String)
        case inline([UInt8])
    }

    public var name: String
    public var contentType: String
    public var sizeBytes: Int64
    /// Exactly one of `url` and `inline_data` on the wire.
    public var source: Source

    public init(name: String, contentType: String, sizeBytes: Int64, source: Source) {
        self.name = name
        self.contentType = contentType
        self.sizeBytes = sizeBytes
        self.source = source
    }
}

public struct TaskInput: Hashable, Sendable {
    public var data: MCPValue?
    public var files: [FileInput]

    public init(data: MCPValue? = nil, files: [FileInput] = []) {
        self.data = data
        self.files = files
    }
}

public struct TaskPreferences: Hashable, Sendable {
    public var qualityLevel: QualityLevel
    public var costOptimization: Bool
    public var streaming: Bool

    public init(qualityLevel: QualityLevel = .balanced, costOptimization: Bool = false, streaming: Bool = false) {
        self.qualityLevel = qualityLevel
        self.costOptimization = costOptimization
        self.streaming = streaming
    }
}

public struct TaskRequest: Hashable, Sendable {
    public var task: TaskSpec
    public var input: TaskInput
    public var preferences: TaskPreferences?

    public init(task: TaskSpec, input: TaskInput = TaskInput(), preferences: TaskPreferences? = nil) {
        self.task = task
        self.input = input
        self.preferences = preferences
    }
}

public enum TaskStatus: String, CaseIterable, Sendable {
    case pending
    case inProgress = "in_progress"
    case completed, failed, cancelled
}

public struct TaskMetrics: Hashable, Sendable {
    public var processingTimeMilliseconds: Int64?
    public var memoryUsedMB: Double?
    public var costUSD: Double?
    public var tokensUsed: Int64?
    /// In [0, 1].
    public var qualityScore: Double?

    public init(
        processingTimeMilliseconds: Int64? = nil,
        memoryUsedMB: Double? = nil,
        costUSD: Double? = nil,
        tokensUsed: Int64? = nil,
        qualityScore: Double? = nil
    ) {
        self.processingTimeMilliseconds = processingTimeMilliseconds
        self.memoryUsedMB = memoryUsedMB
        self.costUSD = costUSD
        self.tokensUsed = tokensUsed
        self.qualityScore = qualityScore
    }
}

public struct TaskResponse: Hashable, Sendable {
    public var status: TaskStatus
    public var result: MCPValue?
    public var metrics: TaskMetrics?
    public var errorMessage: String?

    public init(status: TaskStatus, result: MCPValue? = nil, metrics: TaskMetrics? = nil, errorMessage: String? = nil) {
        self.status = status
        self.result = result
        self.metrics = metrics
        self.errorMessage = errorMessage
    }
}

/// A stable machine code: an open set, so new codes never break old readers. Lower snake case.
public struct TaskErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { self.rawValue }

    public static let ttlExpired = TaskErrorCode(rawValue: "ttl_expired")
    public static let unknownTaskType = TaskErrorCode(rawValue: "unknown_task_type")
    public static let budgetExceeded = TaskErrorCode(rawValue: "budget_exceeded")
    public static let agentCrashed = TaskErrorCode(rawValue: "agent_crashed")
    public static let timeout = TaskErrorCode(rawValue: "timeout")
    public static let invalidInput = TaskErrorCode(rawValue: "invalid_input")
    public static let unauthorized = TaskErrorCode(rawValue: "unauthorized")
    public static let overloaded = TaskErrorCode(rawValue: "overloaded")
    public static let cancelled = TaskErrorCode(rawValue: "cancelled")
    public static let invalidEnvelope = TaskErrorCode(rawValue: "invalid_envelope")
}

public struct TaskError: Error, Hashable, Sendable {
    public var code: TaskErrorCode
    public var message: String
    /// Whether sending the same request again may succeed.
    public var retryable: Bool

    public init(code: TaskErrorCode, message: String, retryable: Bool) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }
}

public struct TaskProgress: Hashable, Sendable {
    /// In [0, 1], if known.
    public var fraction: Double?
    public var step: Int64?
    public var totalSteps: Int64?
    public var message: String

    public init(fraction: Double? = nil, step: Int64? = nil, totalSteps: Int64? = nil, message: String) {
        self.fraction = fraction
        self.step = step
        self.totalSteps = totalSteps
        self.message = message
    }
}

// MARK: Coordination

/// What is asked for, granted or denied. At least one amount is set; none is negative.
public struct ResourceAmounts: Hashable, Sendable {
    public var tokens: Int64?
    public var costUSD: Double?
    public var concurrencySlots: Int64?
    public var memoryMB: Int64?

    public init(tokens: Int64? = nil, costUSD: Double? = nil, concurrencySlots: Int64? = nil, memoryMB: Int64? = nil) {
        self.tokens = tokens
        self.costUSD = costUSD
        self.concurrencySlots = concurrencySlots
        self.memoryMB = memoryMB
    }
}

public struct ResourceRequest: Hashable, Sendable {
    /// The task (correlation) the resources are for.
    public var forCorrelationID: MessageID
    public var amounts: ResourceAmounts
    public var reason: String?

    public init(forCorrelationID: MessageID, amounts: ResourceAmounts, reason: String? = nil) {
        self.forCorrelationID = forCorrelationID
        self.amounts = amounts
        self.reason = reason
    }
}

public struct ResourceGrant: Hashable, Sendable {
    public var forCorrelationID: MessageID
    public var amounts: ResourceAmounts
    /// The grant lapses this long after the message unless released earlier.
    public var leaseMilliseconds: Int64?

    public init(forCorrelationID: MessageID, amounts: ResourceAmounts, leaseMilliseconds: Int64? = nil) {
        self.forCorrelationID = forCorrelationID
        self.amounts = amounts
        self.leaseMilliseconds = leaseMilliseconds
    }
}

public struct ResourceDeny: Hashable, Sendable {
    public var forCorrelationID: MessageID
    public var requested: ResourceAmounts
    /// Machine code of the reason: `budget_exceeded`, `concurrency_limit`, `memory_limit`, `paused`, …
    public var code: TaskErrorCode
    /// Why, for a person.
    public var reason: String

    public init(forCorrelationID: MessageID, requested: ResourceAmounts, code: TaskErrorCode, reason: String) {
        self.forCorrelationID = forCorrelationID
        self.requested = requested
        self.code = code
        self.reason = reason
    }
}

// MARK: Streaming

public struct StreamStart: Hashable, Sendable {
    public var streamID: MessageID
    public var contentType: String

    public init(streamID: MessageID, contentType: String) {
        self.streamID = streamID
        self.contentType = contentType
    }
}

public struct StreamData: Hashable, Sendable {
    public var streamID: MessageID
    /// Chunks are ordered; the first has index 0.
    public var index: Int64
    public var chunk: [UInt8]

    public init(streamID: MessageID, index: Int64, chunk: [UInt8]) {
        self.streamID = streamID
        self.index = index
        self.chunk = chunk
    }
}

public struct StreamEnd: Hashable, Sendable {
    public var streamID: MessageID
    /// Number of `stream_data` chunks sent.
    public var count: Int64
    /// SHA-256 of the chunks concatenated in index order: 32 bytes.
    public var digest: [UInt8]

    public init(streamID: MessageID, count: Int64, digest: [UInt8]) {
        self.streamID = streamID
        self.count = count
        self.digest = digest
    }
}
