import CartritaEnvelope

// MARK: - Tier 1: a domain supervisor's step

/// A domain supervisor (intelligence, multimodal, system, …) as a state machine:
/// (state, envelope, context) → (new state, effects).
///
/// - A `task_request` from the orchestrator goes to the agent that handles its task type, after
///   a concurrency slot (and, with a cost ceiling, the cost) is reserved from the budget. No agent:
///   `unknown_task_type`; paused: `paused`; over budget: the budget's reason. Always answered.
/// - An agent's `resource_request` is granted or denied from the same budget.
/// - An agent's answer settles the reservation and goes up to the orchestrator as the answer to
///   its request. `task_progress` and streams pass through.
/// - An agent's `task_error` with `agent_crashed` feeds the supervision strategy: the crashed
///   children restart after their backoff, and the task is sent again while its delivery mode and
///   `max_retries` allow, or answered `agent_crashed`. Past the intensity the supervisor escalates:
///   it tells the orchestrator and answers every task it holds.
public struct DomainSupervisor: Sendable {
    public struct AgentRoute: Hashable, Sendable {
        public var address: Address
        public var taskTypes: [String]

        public init(address: Address, taskTypes: [String]) {
            self.address = address
            self.taskTypes = taskTypes
        }
    }

    public struct InFlight: Hashable, Sendable, TaskKeyed {
        public var taskKey: MessageID { self.request.correlationID }
        /// The orchestrator's request; the agent's answer is sent back as its reply.
        public var request: Envelope
        public var agent: Address
        public var reserved: ResourceAmounts
        public var retries: Int32
    }

    public struct State: Hashable, Sendable {
        public var supervision: SupervisionState
        public var budget: Budget
        public var inFlight: KeyedList<InFlight> = []
        /// Resources granted to agents outside a task's own reservation, by correlation.
        public var grants: [ResourceGrant] = []
        /// Paused by an emergency override: new tasks are refused (retryable `paused`).
        public var paused = false
        /// Who paused it (the override's `context.user_id`) and why; nil when not paused.
        public var pausedBy: String?
        public var pauseReason: String?
        public var completed = 0
        public var failed = 0
        public var restarts = 0
        public var cancelled = 0
        public var timedOut = 0
    }

    public let address: Address
    public let agents: [AgentRoute]
    public let policy: SupervisionPolicy
    public let maxConcurrentTasks: Int64
    public let tokenBudget: Int64
    public let costBudgetUSD: Double

    public init(
        address: Address, agents: [AgentRoute], policy: SupervisionPolicy = SupervisionPolicy(),
        maxConcurrentTasks: Int64 = 64, tokenBudget: Int64 = 10_000_000, costBudgetUSD: Double = 100
    ) {
        self.address = address
        self.agents = agents
        self.policy = policy
        self.maxConcurrentTasks = maxConcurrentTasks
        self.tokenBudget = tokenBudget
        self.costBudgetUSD = costBudgetUSD
    }

    public func initialState() -> State {
        State(
            supervision: SupervisionState(policy: self.policy, children: self.agents.map(\.address)),
            budget: Budget(maxConcurrentTasks: self.maxConcurrentTasks, tokenBudget: self.tokenBudget, costBudgetUSD: self.costBudgetUSD))
    }

    /// The agent for `taskType`: the first route that lists it (routes keep their order).
    public func agent(forTaskType taskType: String) -> Address? {
        self.agents.first { $0.taskTypes.contains(taskType) }?.address
    }

    /// The agent for one task: when several routes list its type (a pool of instances of a
    /// stateless agent), the task's id picks one, so the choice is spread evenly, needs no
    /// state, and is the same on replay.
    public func agent(forTaskType taskType: String, task: MessageID) -> Address? {
        // Counted, then walked to the chosen one: the same choice as collecting the pool in an
        // array, without allocating one for every task.
        var count = 0
        for route in self.agents where route.taskTypes.contains(taskType) { count += 1 }
        guard count > 0 else { return nil }
        var remaining = count == 1 ? 0 : Int(task.low % UInt64(count))
        for route in self.agents where route.taskTypes.contains(taskType) {
            if remaining == 0 { return route.address }
            remaining -= 1
        }
        preconditionFailure("the routes changed while an agent was picked")
    }

    public func step(_ state: inout State, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect] {
        switch envelope.payload {
        case .taskRequest(let request) where !self.isAgent(envelope.sender):
            return self.accept(&state, envelope, request, context)
        case .resourceRequest(let ask):
            switch state.budget.request(ask.amounts) {
            case .success(let granted):
                let grant = ResourceGrant(forCorrelationID: ask.forCorrelationID, amounts: granted, leaseMilliseconds: 60_000)
                state.grants.append(grant)
                return [.send(.reply(to: envelope, payload: .resourceGrant(grant)))]
            case .failure(let error):
                return [.send(.reply(
                    to: envelope,
                    payload: .resourceDeny(ResourceDeny(forCorrelationID: ask.forCorrelationID, requested: ask.amounts, code: error.code, reason: error.message))))]
            }
        case .taskResponse(let response):
            guard let index = self.inFlightIndex(state, envelope) else { return [] }
            let flight = state.inFlight.remove(at: index)
            self.settle(&state, flight, metrics: response.metrics)
            state.supervision.childSucceeded(flight.agent)
            if response.status == .completed { state.completed += 1 } else { state.failed += 1 }
            return [.cancelTimers(correlationID: envelope.correlationID), .send(.reply(to: flight.request, payload: envelope.payload))]
        case .taskError(let error) where envelope.sender == self.address && error.code == .timeout:
            return self.timedOut(&state, envelope, context)
        case .taskError(let error) where envelope.sender == self.address && error.code == .supervisorRestart:
            guard state.supervision.escalated else { return [] }
            state.supervision.restartAfterEscalation()
            return state.supervision.children.map { .spawn($0) }
        case .taskError(let error) where error.code == .cancelled && !self.isAgent(envelope.sender):
            return self.cancel(&state, envelope)
        case .taskError(let error):
            guard let index = self.inFlightIndex(state, envelope) else { return [] }
            if error.code == .agentCrashed {
                return [.cancelTimers(correlationID: envelope.correlationID)] + self.crashed(&state, index, context)
            }
            let flight = state.inFlight.remove(at: index)
            self.settle(&state, flight, metrics: nil)
            state.failed += 1
            return [.cancelTimers(correlationID: envelope.correlationID), .send(.reply(to: flight.request, payload: envelope.payload))]
        case .taskProgress, .streamStart, .streamData, .streamEnd:
            guard let index = self.inFlightIndex(state, envelope) else { return [] }
            return [.send(.reply(to: state.inFlight[index].request, payload: envelope.payload))]
        case .override(let override) where !self.isAgent(envelope.sender):
            return self.override(&state, envelope, override)
        case .ping(let ping):
            return [.send(.reply(to: envelope, payload: .pong(Pong(nonce: ping.nonce))))]
        case .heartbeat where envelope.sender == .orchestrator:
            // The orchestrator's health probe: answer with this supervisor's own heartbeat.
            let status: HealthStatus = state.supervision.escalated ? .failing : state.paused ? .degraded : .ok
            let heartbeat = Heartbeat(status: status, queueDepth: 0, inFlight: Int64(state.inFlight.count))
            return [.send(.reply(to: envelope, payload: .heartbeat(heartbeat)))]
        default:
            return []
        }
    }

    /// Pause or resume taking new tasks (emergency override); tasks in flight go on.
    public func setPaused(_ paused: Bool, _ state: inout State, by user: String? = nil, reason: String? = nil) {
        state.paused = paused
        state.pausedBy = paused ? user : nil
        state.pauseReason = paused ? reason : nil
    }

    /// An emergency override from an admin (through the front door, or any non-agent). Pausing
    /// refuses new tasks rather than holding them: a refusal is answered at once with a
    /// retryable `paused` error, so clients back off or go elsewhere and no queue grows without
    /// bound while an operator looks at the problem. The answer is a heartbeat to the sender
    /// (`degraded` while paused), so the log holds the order, who gave it, and its effect.
    func override(_ state: inout State, _ envelope: Envelope, _ override: Override) -> [Effect] {
        switch override.action {
        case .pause:
            self.setPaused(true, &state, by: envelope.context.userID, reason: override.reason)
        case .resume:
            self.setPaused(false, &state)
        case .drain, .endDrain:
            return []  // the front door's business: nothing here changes
        }
        let status: HealthStatus = state.supervision.escalated ? .failing : state.paused ? .degraded : .ok
        return [.send(.reply(to: envelope, payload: .heartbeat(Heartbeat(status: status, inFlight: Int64(state.inFlight.count)))))]
    }

    func isAgent(_ address: Address) -> Bool { self.agents.contains { $0.address == address } }

    func inFlightIndex(_ state: State, _ envelope: Envelope) -> Int? {
        guard let index = state.inFlight.index(ofTask: envelope.correlationID), state.inFlight[index].agent == envelope.sender else { return nil }
        return index
    }

    func accept(_ state: inout State, _ envelope: Envelope, _ request: TaskRequest, _ context: DeliveryContext) -> [Effect] {
        func refuse(_ error: TaskError) -> [Effect] {
            state.failed += 1
            return [.send(.reply(to: envelope, payload: .taskError(error)))]
        }
        guard state.inFlight.index(ofTask: envelope.correlationID) == nil else {
            return []  // a duplicate of a task already in flight (at_least_once): it is answered once
        }
        guard let agent = self.agent(forTaskType: request.task.type, task: envelope.correlationID) else {
            return refuse(TaskError(code: .unknownTaskType, message: "\(self.address) has no agent for \(request.task.type)", retryable: false))
        }
        guard !state.paused else {
            return refuse(TaskError(code: .paused, message: "\(self.address) is paused", retryable: true))
        }
        guard !state.supervision.escalated else {
            return refuse(TaskError(code: .agentCrashed, message: "\(self.address) gave up restarting its agents", retryable: true))
        }
        let reservation = ResourceAmounts(costUSD: request.task.constraints?.maxCostUSD, concurrencySlots: 1)
        switch state.budget.request(reservation) {
        case .failure(let error):
            return refuse(error)
        case .success(let reserved):
            state.inFlight.append(InFlight(request: envelope, agent: agent, reserved: reserved, retries: 0))
            var forward = OutgoingMessage.reply(to: envelope, payload: envelope.payload)
            forward.recipient = agent
            // A known id, so an exactly_once retry after a timeout can be sent under it again.
            forward.id = Self.forwardID(of: envelope)
            return [.send(forward), self.timeoutTimer(for: envelope, retries: 0, context)]
        }
    }

    /// How long an agent may take before the task is retried or answered `timeout`.
    public static let defaultTimeoutMilliseconds: Int64 = 30_000

    static let defaultTimeoutMessage = "no answer within \(DomainSupervisor.defaultTimeoutMilliseconds) ms"

    static func forwardID(of request: Envelope) -> MessageID { request.id.derived(tag: 0x6677_6400) }

    /// A message to the supervisor itself, due when the agent's time is up. It names the attempt
    /// (`retry_count`) it guards, so a late timer of an earlier attempt does nothing.
    func timeoutTimer(for request: Envelope, retries: Int32, _ context: DeliveryContext) -> Effect {
        var limit = Self.defaultTimeoutMilliseconds
        if case .taskRequest(let task) = request.payload, let milliseconds = task.task.constraints?.maxExecutionTimeMilliseconds {
            limit = milliseconds
        }
        if context.buggify(.supervisorShortTimeout) { limit = 1 + Int64(context.entropy >> 40) % 20 }
        // The default limit's text is made once: every task accepted arms this timer.
        let message = limit == Self.defaultTimeoutMilliseconds ? Self.defaultTimeoutMessage : "no answer within \(limit) ms"
        var timeout = OutgoingMessage.reply(
            to: request, payload: .taskError(TaskError(code: .timeout, message: message, retryable: true)))
        timeout.recipient = self.address
        // The supervisor's own timer is owed across a crash whatever the task's mode: it is what
        // answers an at_most_once task whose forward a crash lost.
        timeout.deliveryMode = .atLeastOnce
        timeout.retryCount = retries
        timeout.maxRetries = max(retries, request.maxRetries)
        timeout.priority = .high
        timeout.ttlMilliseconds = 60_000
        return .timer(afterMilliseconds: max(1, limit), message: timeout)
    }

    func timedOut(_ state: inout State, _ timer: Envelope, _ context: DeliveryContext) -> [Effect] {
        guard let index = state.inFlight.index(ofTask: timer.correlationID),
            state.inFlight[index].retries == timer.retryCount
        else {
            return []  // answered meanwhile, or a timer of an earlier attempt
        }
        let flight = state.inFlight[index]
        if flight.request.deliveryMode != .atMostOnce && flight.retries < flight.request.maxRetries {
            state.inFlight[index].retries += 1
            var again = OutgoingMessage.reply(to: flight.request, payload: flight.request.payload)
            again.recipient = flight.agent
            again.retryCount = flight.retries + 1
            // exactly_once: the same id, so if the first attempt was delivered the log refuses
            // this one and the work is not done twice. at_least_once: a new delivery.
            if flight.request.deliveryMode == .exactlyOnce { again.id = Self.forwardID(of: flight.request) }
            // Exponential backoff on the recorded clock: base × 2^(attempt − 1), capped.
            var backoff = state.supervision.backoff(crashes: Int(flight.retries) + 1)
            if context.buggify(.supervisorLongBackoff) { backoff = state.supervision.policy.backoffMaxMilliseconds }
            guard case .timer(let after, let timeout) = self.timeoutTimer(for: flight.request, retries: flight.retries + 1, context) else {
                preconditionFailure("timeoutTimer makes a timer")
            }
            return [.timer(afterMilliseconds: backoff, message: again), .timer(afterMilliseconds: backoff + after, message: timeout)]
        }
        state.inFlight.remove(at: index)
        self.settle(&state, flight, metrics: nil)
        state.failed += 1
        state.timedOut += 1
        let error = TaskError(code: .timeout, message: "\(flight.agent) gave no answer after \(flight.retries + 1) attempts", retryable: true)
        return [.send(.reply(to: flight.request, payload: .taskError(error)))]
    }

    /// The timer that ends an escalation's cool-down. Its task id is its own (derived from the
    /// request whose crash escalated), so no cancel of a task's timers can forget it.
    func restartTimer(after request: Envelope, _ context: DeliveryContext) -> Effect {
        let restart = TaskError(code: .supervisorRestart, message: "\(self.address) starts again after its cool-down", retryable: false)
        var timer = OutgoingMessage.reply(to: request, payload: .taskError(restart))
        timer.recipient = self.address
        timer.parentID = nil
        timer.correlationID = request.id.derived(tag: Self.restartTag)
        timer.deliveryMode = .atLeastOnce  // owed across a process crash like any timer
        timer.priority = .high
        timer.ttlMilliseconds = 60_000
        timer.maxRetries = 0
        return .timer(afterMilliseconds: max(1, self.policy.periodMilliseconds), message: timer)
    }

    static let restartTag: UInt64 = 0x7273_7472_7400

    /// The orchestrator cancels a task: its reservation is released, its timers forgotten, and the
    /// cancel goes on to the agent (the runtime drops the agent's queued work for it).
    func cancel(_ state: inout State, _ envelope: Envelope) -> [Effect] {
        guard let index = state.inFlight.index(ofTask: envelope.correlationID) else {
            return []
        }
        let flight = state.inFlight.remove(at: index)
        self.settle(&state, flight, metrics: nil)
        state.cancelled += 1
        var down = OutgoingMessage.reply(to: envelope, payload: envelope.payload)
        down.recipient = flight.agent
        down.priority = .critical
        return [.cancelTimers(correlationID: envelope.correlationID), .send(down)]
    }

    func settle(_ state: inout State, _ flight: InFlight, metrics: TaskMetrics?) {
        state.budget.settle(granted: flight.reserved, usedTokens: 0, usedCostUSD: metrics?.costUSD ?? 0)
        // Grants the agent asked for during the task are spent as its metrics say, and released.
        while let index = state.grants.firstIndex(where: { $0.forCorrelationID == flight.request.correlationID }) {
            let grant = state.grants.remove(at: index)
            state.budget.settle(granted: grant.amounts, usedTokens: metrics?.tokensUsed ?? 0, usedCostUSD: 0)
        }
    }

    func crashed(_ state: inout State, _ index: Int, _ context: DeliveryContext) -> [Effect] {
        let flight = state.inFlight[index]
        var effects: [Effect] = []
        let alreadyEscalated = state.supervision.escalated
        switch state.supervision.childCrashed(flight.agent, atMilliseconds: context.clockMilliseconds) {
        case .restart(let restarts):
            state.restarts += restarts.count
            for restart in restarts {
                effects.append(.restart(restart.child, afterMilliseconds: restart.afterMilliseconds))
            }
            let mayRetry = flight.request.deliveryMode != .atMostOnce && flight.retries < flight.request.maxRetries
            if mayRetry {
                // Sent again once the agent is back: the same request, one more retry counted.
                state.inFlight[index].retries += 1
                var again = OutgoingMessage.reply(to: flight.request, payload: flight.request.payload)
                again.recipient = flight.agent
                again.retryCount = flight.retries + 1
                var backoff = restarts.first { $0.child == flight.agent }?.afterMilliseconds ?? 0
                // A longer wait than the restart's hold is legal: the retry comes later.
                if context.buggify(.supervisorLongBackoff) { backoff = state.supervision.policy.backoffMaxMilliseconds }
                effects.append(.timer(afterMilliseconds: backoff, message: again))
                if case .timer(let after, let message) = self.timeoutTimer(for: flight.request, retries: flight.retries + 1, context) {
                    effects.append(.timer(afterMilliseconds: backoff + after, message: message))
                }
            } else {
                state.inFlight.remove(at: index)
                self.settle(&state, flight, metrics: nil)
                state.failed += 1
                effects.append(.send(.reply(
                    to: flight.request,
                    payload: .taskError(TaskError(code: .agentCrashed, message: "\(flight.agent) crashed after \(flight.retries) retries", retryable: true)))))
            }
        case .escalate(let reason):
            // Give up: every task held is answered, and the orchestrator is told. After a
            // cool-down of one intensity period the supervisor starts again (a timer to itself,
            // so it is in the log and replays), rather than failing its domain's tasks forever.
            for held in state.inFlight {
                effects.append(.cancelTimers(correlationID: held.request.correlationID))
                self.settle(&state, held, metrics: nil)
                state.failed += 1
                effects.append(.send(.reply(
                    to: held.request, payload: .taskError(TaskError(code: .agentCrashed, message: reason, retryable: true)))))
            }
            state.inFlight.removeAll()
            for child in state.supervision.children { effects.append(.stop(child)) }
            effects.append(.escalate(reason: reason))
            if !alreadyEscalated { effects.append(self.restartTimer(after: flight.request, context)) }
        }
        return effects
    }
}
