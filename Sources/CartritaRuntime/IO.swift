import CartritaCodec
import CartritaEnvelope

// MARK: - I/O as messages

/// A call to the outside world an agent asks for (a file, an AI provider, HTTP): an effect like
/// any other. The handler returns it (`AgentOutcome.call`); the runtime sends it as a
/// `task_request` to the I/O gateway at `io.SERVICE@v1.0`, which performs it outside the
/// deterministic core; the answer comes back to the agent as a message and is logged when the
/// agent takes it, so replay reads the recorded result and needs no network or key.
///
/// Agents stay stateless across the call (crash-only): the request carries the task's own
/// envelope and the agent's `continuation`, and the gateway hands both back with the result.
/// If the process dies mid-call, the supervisor's timeout retries the task as its delivery mode
/// allows.
public struct IOCall: Hashable, Sendable {
    /// The gateway service, e.g. `files`; the address is `io.files@v1.0`.
    public var service: String
    /// What the service does, e.g. `read`.
    public var operation: String
    public var arguments: MCPValue
    /// The gateway answers `timeout` if the service takes longer.
    public var timeoutMilliseconds: Int64
    /// Handed back to `Agent.resume` untouched: what the agent needs to go on.
    public var continuation: MCPValue

    public init(service: String, operation: String, arguments: MCPValue, timeoutMilliseconds: Int64 = 10_000, continuation: MCPValue = .null) {
        self.service = service
        self.operation = operation
        self.arguments = arguments
        self.timeoutMilliseconds = timeoutMilliseconds
        self.continuation = continuation
    }
}

/// What came back from a call: the service's value, or why it failed (`io_error`, `timeout`,
/// `io_unavailable`, or a service's own code).
public enum IOResult: Hashable, Sendable {
    case success(MCPValue)
    case failure(TaskError)
}

extension TaskErrorCode {
    /// The service failed (an HTTP error, a missing file, a refused argument).
    public static let ioError = TaskErrorCode(rawValue: "io_error")
    /// No gateway service by that name on this node, or it is not configured.
    public static let ioUnavailable = TaskErrorCode(rawValue: "io_unavailable")
}

/// The wire form of I/O calls and their answers (MCP-SPEC's `task_request` / `task_response`
/// between an agent and `io.SERVICE@v1.0`), shared by the agents' runtime, the production
/// gateway and the simulator's.
public enum IOWire {
    public static let addressKind = "io"
    /// Tag of an answer's id: `request.id.derived(tag:)`, so a replayed gateway answer is the
    /// same message and the log's id index refuses a second one.
    public static let answerTag: UInt64 = 0x696F_616E_7377_6572

    public static func address(of service: String) -> Address { Address("io.\(service)@v1.0") }

    /// The request an agent sends for `call`, on behalf of the task `task` (its delivery).
    static func request(for call: IOCall, task: Envelope) -> OutgoingMessage? {
        guard let taskBytes = try? EnvelopeEncoder().encode(task) else { return nil }
        let request = TaskRequest(
            task: TaskSpec(
                type: "io.\(call.service).\(call.operation)",
                parameters: [
                    MCPValue.MapEntry("arguments", call.arguments),
                    MCPValue.MapEntry("timeout_ms", .int(call.timeoutMilliseconds)),
                ]),
            input: TaskInput(data: .map([
                MCPValue.MapEntry("task", .binary(taskBytes)),
                MCPValue.MapEntry("continuation", call.continuation),
            ])))
        var message = OutgoingMessage.reply(to: task, payload: .taskRequest(request))
        message.recipient = Self.address(of: call.service)
        message.deliveryMode = .atLeastOnce
        message.ttlMilliseconds = Int32(clamping: max(1_000, call.timeoutMilliseconds * 2))
        return message
    }

    /// A request as the gateway reads it.
    public struct Request: Sendable {
        public var service: String
        public var operation: String
        public var arguments: MCPValue
        public var timeoutMilliseconds: Int64

        public init(service: String, operation: String, arguments: MCPValue, timeoutMilliseconds: Int64) {
            self.service = service
            self.operation = operation
            self.arguments = arguments
            self.timeoutMilliseconds = timeoutMilliseconds
        }
    }

    /// Reads an I/O request; nil when the envelope is not one.
    public static func parse(_ envelope: Envelope) -> Request? {
        guard envelope.recipient.hasKind(Self.addressKind), case .taskRequest(let request) = envelope.payload else { return nil }
        let parts = request.task.type.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "io" else { return nil }
        var arguments = MCPValue.null
        var timeout: Int64 = 10_000
        for entry in request.task.parameters {
            if entry.key == "arguments" { arguments = entry.value }
            if entry.key == "timeout_ms", case .int(let value) = entry.value { timeout = value }
        }
        return Request(service: String(parts[1]), operation: String(parts[2]), arguments: arguments, timeoutMilliseconds: max(1, timeout))
    }

    /// The gateway's answer to `request`: back to the agent that asked, caused by the request,
    /// carrying the task and continuation it was given.
    public static func answer(to request: Envelope, result: IOResult, timestampMilliseconds: Int64) -> Envelope {
        var echo: [MCPValue.MapEntry] = []
        if case .taskRequest(let task) = request.payload, case .map(let entries)? = task.input.data { echo = entries }
        let response: TaskResponse
        switch result {
        case .success(let value):
            response = TaskResponse(status: .completed, result: .map(echo + [MCPValue.MapEntry("value", value)]))
        case .failure(let error):
            let failure = MCPValue.map([
                MCPValue.MapEntry("code", .string(error.code.rawValue)), MCPValue.MapEntry("message", .string(error.message)),
                MCPValue.MapEntry("retryable", .bool(error.retryable)),
            ])
            response = TaskResponse(status: .failed, result: .map(echo + [MCPValue.MapEntry("error", failure)]), errorMessage: error.message)
        }
        return OutgoingMessage.reply(to: request, payload: .taskResponse(response)).envelope(
            id: request.id.derived(tag: Self.answerTag), sender: request.recipient, timestampMilliseconds: timestampMilliseconds)
    }

    /// An answer as the agent's runtime reads it: the task it was for, the continuation, and
    /// the result. nil when the answer is malformed (it is then ignored, and the supervisor's
    /// timeout covers the task).
    static func parseAnswer(_ envelope: Envelope) -> (task: Envelope, continuation: MCPValue, result: IOResult)? {
        guard case .taskResponse(let response) = envelope.payload, case .binary(let taskBytes)? = response.result?["task"],
            let task = try? EnvelopeDecoder().decode(taskBytes)
        else { return nil }
        let continuation = response.result?["continuation"] ?? .null
        if response.status == .completed {
            return (task, continuation, .success(response.result?["value"] ?? .null))
        }
        let failure = response.result?["error"]
        var code = TaskErrorCode.ioError
        if case .string(let raw)? = failure?["code"] { code = TaskErrorCode(rawValue: raw) }
        var message = response.errorMessage ?? "the I/O call failed"
        if case .string(let text)? = failure?["message"] { message = text }
        var retryable = true
        if case .bool(let flag)? = failure?["retryable"] { retryable = flag }
        return (task, continuation, .failure(TaskError(code: code, message: message, retryable: retryable)))
    }
}

extension Address {
    /// An I/O gateway service (`io.files@v1.0`): not an actor; the driver performs its calls.
    public var isIO: Bool { self.hasKind(IOWire.addressKind) }
}
