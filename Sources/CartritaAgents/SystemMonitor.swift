import CartritaEnvelope
import CartritaRuntime

/// Tier-2 agent of the system supervisor: `system.health_check` reports each supervisor (up,
/// escalated, pool size, restarts), the log (writable, last seq, size, durability) and its
/// indexes (entries, how far applied, whether they agree with the log).
///
/// What it reports is the node's, not the agent's: an agent must not read the node (its outcome
/// would then depend on something the log does not hold, and replay would differ). So the agent
/// asks the I/O gateway's `health` service for the report, like DataSage asks `files` for a
/// file, and the gateway's answer is logged: replay hands the same report back without asking.
///
/// Parameters: `sections` (optional array of `supervisors`, `log`, `indexes`; default all),
/// passed to the service. The result is the service's report, as it answered it.
public struct SystemMonitor: Agent {
    public typealias State = EmptyState

    public static let sections = ["supervisors", "log", "indexes"]
    /// The gateway answers `timeout` past this: a health check that hangs is itself an answer.
    public static let reportTimeoutMilliseconds: Int64 = 5_000

    public let address = Address("agent.systemmonitor@v1.0")
    public let taskTypes = ["system.health_check"]

    public init() {}

    public func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) -> AgentOutcome {
        guard self.taskTypes.contains(request.task.type) else {
            return AgentKit.unknownTaskType(request.task.type, agent: self.address, handles: self.taskTypes)
        }
        do {
            let sections = try Self.sections(request)
            return .call(IOCall(
                service: "health", operation: "report",
                arguments: .map([MCPValue.MapEntry("sections", .array(sections.map { .string($0) }))]),
                timeoutMilliseconds: Self.reportTimeoutMilliseconds))
        } catch {
            return .failed(error.error)
        }
    }

    /// The report came back: it is the task's result. A failure of the service (unavailable,
    /// timed out) fails the task with the service's code, so a caller tells "the node is
    /// unhealthy" (a report saying so) from "no report" (an error).
    public func resume(
        _ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout EmptyState, context: DeliveryContext
    ) -> AgentOutcome {
        switch result {
        case .success(let report):
            guard case .map = report else {
                return .failed(TaskError(code: .ioError, message: "the health service answered something other than a report", retryable: false))
            }
            return .completed(result: report, metrics: AgentKit.localMetrics)
        case .failure(let error):
            return .failed(TaskError(code: error.code, message: "health report: \(error.message)", retryable: error.retryable))
        }
    }

    /// The sections asked for, in the canonical order, each once.
    static func sections(_ request: TaskRequest) throws(Refusal) -> [String] {
        let parameters = try Parameters(request.task.parameters, allowed: ["sections"])
        guard let asked = try parameters.stringArray("sections") else { return Self.sections }
        guard !asked.isEmpty else { throw .invalid("sections must name at least one of \(Self.sections.joined(separator: ", "))") }
        for name in asked where !Self.sections.contains(name) {
            throw .invalid("unknown section \(AgentKit.quoted(name)); sections are \(Self.sections.joined(separator: ", "))")
        }
        return Self.sections.filter { asked.contains($0) }
    }
}
