import CartritaEnvelope

// MARK: - The tier-2 agent contract

/// What a handler may know about the delivery it runs in. Everything here is recorded in the
/// log with the message (`clock_ms`, `entropy`, `seq`), so replay hands the same values back and
/// the handler's outcome is the same bit for bit. A handler reads nothing else: no wall clock,
/// no system random, no `UUID()`, no task of its own.
public struct DeliveryContext: Hashable, Sendable {
    /// The log sequence number of the message being handled.
    public var seq: UInt64
    /// The runtime's clock when the message was logged, in Unix milliseconds.
    public var clockMilliseconds: Int64
    /// Seed for any randomness the handler needs (`SplitMix64(seed: entropy)`).
    public var entropy: UInt64
    /// The simulator's BUGGIFY sites (`context.buggify(.site)`); nil in production. Not part of
    /// the context's identity: its choices are a function of the entropy above.
    public var buggify: Buggify?

    public init(seq: UInt64, clockMilliseconds: Int64, entropy: UInt64, buggify: Buggify? = nil) {
        self.seq = seq
        self.clockMilliseconds = clockMilliseconds
        self.entropy = entropy
        self.buggify = buggify
    }

    public static func == (lhs: DeliveryContext, rhs: DeliveryContext) -> Bool {
        lhs.seq == rhs.seq && lhs.clockMilliseconds == rhs.clockMilliseconds && lhs.entropy == rhs.entropy
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.seq)
        hasher.combine(self.clockMilliseconds)
        hasher.combine(self.entropy)
    }
}

/// How an agent answers one task: exactly one terminal answer per request.
public enum AgentOutcome: Hashable, Sendable {
    case completed(result: MCPValue, metrics: TaskMetrics)
    case failed(TaskError)
    /// Not yet: the agent needs a call to the outside world first. The runtime makes it through
    /// the I/O gateway and hands the result to `Agent.resume` (see `IOCall`).
    case call(IOCall)

    /// The terminal answer as the payload of the reply envelope; nil for `call`.
    public var payload: Payload? {
        switch self {
        case .completed(let result, let metrics):
            .taskResponse(TaskResponse(status: .completed, result: result, metrics: metrics))
        case .failed(let error):
            .taskError(error)
        case .call:
            nil
        }
    }
}

/// A single-purpose tier-2 agent: a deterministic function of (state, request, context).
///
/// Most agents are stateless (`State` is `EmptyState`). An agent whose work must survive restarts
/// (TaskManagement's task list) keeps it in `State`, which the runtime rebuilds from a snapshot
/// plus replay of the log, so `State` must round-trip through `encodeState`/`decodeState` exactly.
public protocol Agent: Sendable {
    associatedtype State: Hashable & Sendable

    /// The agent's address, e.g. `agent.datasage@v1.0`.
    var address: Address { get }
    /// The task types it handles, e.g. `["data.csv-stats"]`.
    var taskTypes: [String] { get }
    /// The format of `encodeState`'s bytes; a snapshot in another format is not used.
    var stateFormatVersion: UInt32 { get }

    func initialState() -> State

    /// Handles one task. Bad input is a `failed` outcome with code `invalid_input`, not a throw:
    /// a throw is a crash. The runtime answers `agent_crashed` to the supervisor (the state keeps
    /// whatever the handler did before throwing, so validate before mutating), and the supervisor restarts the agent and retries per
    /// the delivery mode. Deterministic: same state, request and context give the same outcome
    /// (or the same throw) and the same new state.
    func handle(_ request: TaskRequest, state: inout State, context: DeliveryContext) throws -> AgentOutcome

    /// Goes on with `request` after an I/O call it asked for came back with `result`;
    /// `continuation` is the call's own. May ask for another call. The default fails the task:
    /// an agent that never returns `.call` never needs this.
    func resume(
        _ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout State, context: DeliveryContext
    ) throws -> AgentOutcome

    func encodeState(_ state: State) -> [UInt8]
    func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State
    /// The state as a readable value; by default its size in snapshot bytes.
    func describeState(_ state: State) -> MCPValue
}

extension Agent {
    public func resume(
        _ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout State, context: DeliveryContext
    ) throws -> AgentOutcome {
        .failed(TaskError(code: .ioError, message: "\(self.address) asked for no I/O and cannot resume a task", retryable: false))
    }

    public func describeState(_ state: State) -> MCPValue {
        .map(["snapshot_bytes": .int(Int64(self.encodeState(state).count))])
    }
}

/// A state snapshot that cannot be used; the runtime falls back to an older snapshot or replay.
public struct StateDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

/// The state of a stateless agent.
public struct EmptyState: Hashable, Sendable {
    public init() {}
}

extension Agent where State == EmptyState {
    public func describeState(_ state: EmptyState) -> MCPValue { .map([MCPValue.MapEntry]()) }
    public var stateFormatVersion: UInt32 { 1 }
    public func initialState() -> EmptyState { EmptyState() }
    public func encodeState(_ state: EmptyState) -> [UInt8] { [] }
    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> EmptyState {
        guard bytes.isEmpty else { throw StateDecodingError("a stateless agent's snapshot is empty") }
        return EmptyState()
    }
}
