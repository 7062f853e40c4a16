import CartritaEnvelope

// MARK: - Tier 0: the orchestrator's routing step

/// The orchestrator as a state machine: (state, envelope, context) → (new state, effects).
///
/// A client's `task_request` is routed by its task type to a supervisor, or answered at once with
/// `unknown_task_type`. The supervisor's terminal answer (`task_response` / `task_error`) goes
/// back to the client; `task_progress` and stream messages are passed through. The pending table
/// pairs them by correlation, in arrival order (an array: its order never depends on hashing).
public struct Orchestrator: Sendable {
    public static let address = Address.orchestrator

    public struct Pending: Hashable, Sendable, TaskKeyed {
        public var taskKey: MessageID { self.request.correlationID }
        /// The client's request, answered when the supervisor's terminal message arrives. Its
        /// payload keeps the task type only (the input went on to the supervisor).
        public var request: Envelope
        public var supervisor: Address
    }

    /// A supervisor's last heartbeat, with the clock reading of its delivery.
    public struct SupervisorHealth: Hashable, Sendable {
        public var supervisor: Address
        public var heartbeat: Heartbeat
        public var atMilliseconds: Int64
    }

    public struct State: Hashable, Sendable {
        public var pending: KeyedList<Pending> = []
        public var routed = 0
        public var unknown = 0
        public var answered = 0
        public var cancelled = 0
        /// at_most_once tasks given up at their deadline (their answer was lost).
        public var expired = 0
        /// The last heartbeat of each supervisor that sent one, in address order.
        public var health: [SupervisorHealth] = []

        public init() {}
    }

    public let routing: RoutingTable
    /// Most tasks in flight at once; past it a request is answered `overloaded`.
    public let maxPendingTasks: Int

    public init(routing: RoutingTable = .standard, maxPendingTasks: Int = 100_000) {
        self.routing = routing
        self.maxPendingTasks = maxPendingTasks
    }

    /// The supervisors of the routing table, in the table's order: a probe asks each of them.
    public func healthProbe() -> [Address] {
        var supervisors: [Address] = []
        for route in self.routing.routes where !supervisors.contains(route.supervisor) { supervisors.append(route.supervisor) }
        return supervisors
    }

    public func step(_ state: inout State, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect] {
        switch envelope.payload {
        case .taskRequest(let request):
            return self.route(&state, envelope, request, context)
        case .taskError(let error) where error.code == .cancelled && !envelope.sender.isSupervisor:
            return self.cancel(&state, envelope, error)
        case .taskError(let error) where error.code == .timeout && envelope.sender == Self.address:
            return self.expire(&state, envelope, error)
        case .taskResponse, .taskError:
            guard let index = state.pending.index(ofTask: envelope.correlationID), state.pending[index].supervisor == envelope.sender else {
                return []  // an answer for a task that was already answered: at most one terminal answer
            }
            let pending = state.pending.remove(at: index)
            state.answered += 1
            // One array, not the deadline's and the answer's concatenated: this runs for every task.
            let answer = Effect.send(.reply(to: pending.request, payload: envelope.payload))
            return Self.hasDeadline(pending) ? [.cancelTimers(correlationID: pending.request.correlationID), answer] : [answer]
        case .taskProgress, .streamStart, .streamData, .streamEnd:
            guard let index = state.pending.index(ofTask: envelope.correlationID) else { return [] }
            let pending = state.pending[index]
            return [.send(.reply(to: pending.request, payload: envelope.payload))]
        case .ping(let ping):
            return [.send(.reply(to: envelope, payload: .pong(Pong(nonce: ping.nonce))))]
        case .heartbeat(let heartbeat) where envelope.sender.isSupervisor:
            let health = SupervisorHealth(supervisor: envelope.sender, heartbeat: heartbeat, atMilliseconds: context.clockMilliseconds)
            if let index = state.health.firstIndex(where: { $0.supervisor == envelope.sender }) {
                state.health[index] = health
            } else {
                state.health.append(health)
                state.health.sort { $0.supervisor < $1.supervisor }
            }
            return []
        case .heartbeat:
            // A probe from a client or an admin: ask every supervisor, and answer for this tier.
            var effects: [Effect] = []
            for supervisor in self.healthProbe() {
                var probe = OutgoingMessage.reply(to: envelope, payload: .heartbeat(Heartbeat(status: .ok)))
                probe.recipient = supervisor
                probe.deliveryMode = .atMostOnce
                effects.append(.send(probe))
            }
            let own = Heartbeat(status: .ok, queueDepth: 0, inFlight: Int64(state.pending.count))
            effects.append(.send(.reply(to: envelope, payload: .heartbeat(own))))
            return effects
        default:
            return []
        }
    }

    /// A client (or an admin) cancels a task: the client gets its one terminal answer now, and the
    /// cancel goes down to the supervisor holding the work, which passes it to the agent.
    func cancel(_ state: inout State, _ envelope: Envelope, _ error: TaskError) -> [Effect] {
        guard let index = state.pending.index(ofTask: envelope.correlationID) else {
            return []  // finished already, or never known: nothing holds work for it
        }
        let pending = state.pending.remove(at: index)
        state.cancelled += 1
        let forget = Self.forgetDeadline(of: pending)
        let answer = TaskError(code: .cancelled, message: "cancelled by \(envelope.sender): \(error.message)", retryable: false)
        var down = OutgoingMessage.reply(to: envelope, payload: envelope.payload)
        down.recipient = pending.supervisor
        down.priority = .critical
        return forget + [.send(.reply(to: pending.request, payload: .taskError(answer))), .send(down)]
    }

    // MARK: Deadlines of at_most_once tasks

    /// Extra time past the work's own limits before the orchestrator gives an at_most_once
    /// task up: the supervisor's timeout and retries come first, and they answer.
    public static let deadlineGraceMilliseconds: Int64 = 30_000

    /// How long an at_most_once task may stay pending. Its answer may be lost on the way (the
    /// mode allows that: a crash, a dropped message), and then nothing else would ever take the
    /// entry out of the pending table: a slow leak of memory and snapshot size. Every attempt
    /// the supervisor may make (`max_retries` + 1) gets the task's time limit, then the grace.
    static func deadlineMilliseconds(of request: Envelope, _ task: TaskRequest) -> Int64 {
        let limit = task.task.constraints?.maxExecutionTimeMilliseconds ?? DomainSupervisor.defaultTimeoutMilliseconds
        let attempts = Int64(max(0, request.maxRetries)) + 1
        let (work, overflow) = max(1, limit).multipliedReportingOverflow(by: attempts)
        return overflow ? Int64.max / 4 : min(Int64.max / 4, work + Self.deadlineGraceMilliseconds)
    }

    /// The timer that ends an at_most_once task nobody answered: a `timeout` to the orchestrator
    /// itself, under the task's correlation (answering or cancelling the task cancels it).
    func deadlineTimer(for request: Envelope, _ task: TaskRequest) -> Effect {
        let limit = Self.deadlineMilliseconds(of: request, task)
        var timer = OutgoingMessage.reply(
            to: request, payload: .taskError(TaskError(code: .timeout, message: "no answer within \(limit) ms", retryable: true)))
        timer.recipient = Self.address
        timer.deliveryMode = .atLeastOnce  // the orchestrator's own timer: owed after a crash
        timer.maxRetries = 0
        timer.priority = .high
        timer.ttlMilliseconds = 60_000
        return .timer(afterMilliseconds: limit, message: timer)
    }

    static func forgetDeadline(of pending: Pending) -> [Effect] {
        Self.hasDeadline(pending) ? [.cancelTimers(correlationID: pending.request.correlationID)] : []
    }

    /// Whether the task has a deadline timer (`deadlineTimer`): at_most_once tasks do.
    static func hasDeadline(_ pending: Pending) -> Bool { pending.request.deliveryMode == .atMostOnce }

    /// An at_most_once task's deadline passed with no answer: the client hears `timeout`, and
    /// an answer arriving later finds no entry (still at most one terminal answer).
    func expire(_ state: inout State, _ envelope: Envelope, _ error: TaskError) -> [Effect] {
        guard let index = state.pending.index(ofTask: envelope.correlationID),
            state.pending[index].request.deliveryMode == .atMostOnce
        else { return [] }
        let pending = state.pending.remove(at: index)
        state.expired += 1
        return [.send(.reply(to: pending.request, payload: .taskError(error)))]
    }

    func route(_ state: inout State, _ envelope: Envelope, _ request: TaskRequest, _ context: DeliveryContext) -> [Effect] {
        guard let supervisor = self.routing.supervisor(forTaskType: request.task.type) else {
            state.unknown += 1
            return [.send(.reply(to: envelope, payload: .taskError(RoutingTable.unknownTaskType(request.task.type))))]
        }
        guard state.pending.index(ofTask: envelope.correlationID) == nil else {
            // A second request for a task in flight (a client's retry): it gets its own answer;
            // the task's result goes to the first request.
            return [.send(.reply(
                to: envelope,
                payload: .taskError(TaskError(
                    code: .duplicateTask, message: "task \(envelope.correlationID) is already in flight", retryable: false))))]
        }
        guard state.pending.count < self.maxPendingTasks, !context.buggify(.orchestratorOverloaded) else {
            return [.send(.reply(
                to: envelope,
                payload: .taskError(TaskError(code: .overloaded, message: "\(state.pending.count) tasks in flight", retryable: true))))]
        }
        // Kept only to answer the client: without its input, which can be large and would be
        // copied into every snapshot while the task is pending.
        var kept = envelope
        kept.payload = .taskRequest(TaskRequest(task: TaskSpec(type: request.task.type)))
        state.pending.append(Pending(request: kept, supervisor: supervisor))
        state.routed += 1
        var forward = OutgoingMessage.reply(to: envelope, payload: envelope.payload)
        forward.recipient = supervisor
        guard envelope.deliveryMode == .atMostOnce else { return [.send(forward)] }
        return [.send(forward), self.deadlineTimer(for: envelope, request)]
    }
}
