// MARK: - Generated traffic for demos, benchmarks and tests

/// A deterministic stream of realistic MCP traffic through the three tiers: a client's
/// `task_request` to the orchestrator, routed to a supervisor (MCP-SPEC §5), handed to an agent,
/// progress, the agent's answer back up, and now and then a resource request, a grant or deny,
/// a heartbeat or an error. Same seed, same envelopes, bit for bit: the clock and the entropy
/// are its own, never the machine's.
public struct SampleTraffic: Sendable {
    public struct Route: Sendable {
        public var taskType: String
        public var supervisor: Address
        public var agent: Address
    }

    public static let routes: [Route] = [
        Route(taskType: "data.csv-stats", supervisor: Address("supervisor.system@v1.0"), agent: Address("agent.datasage@v1.0")),
        Route(taskType: "text.summarize", supervisor: Address("supervisor.intelligence@v1.0"), agent: Address("agent.languagemaestro@v1.0")),
        Route(taskType: "tasks.create", supervisor: Address("supervisor.system@v1.0"), agent: Address("agent.taskmanagement@v1.0")),
        Route(taskType: "vision.classify", supervisor: Address("supervisor.multimodal@v1.0"), agent: Address("agent.visionmaster@v1.3")),
        Route(taskType: "research.search", supervisor: Address("supervisor.intelligence@v1.0"), agent: Address("agent.researcheragent@v1.0")),
    ]

    static let client = Address("client.demo@v1.0")

    var entropy: SplitMix64
    var ids = UUIDv7Generator()
    public private(set) var clockMilliseconds: Int64
    public let payloadBytes: Int
    /// Envelopes of the task in flight, handed out one by one.
    var pending: [Envelope] = []
    public private(set) var tasks = 0

    public init(seed: UInt64, startMilliseconds: Int64 = 1_764_028_800_000, payloadBytes: Int = 512) {
        self.entropy = SplitMix64(seed: seed)
        self.clockMilliseconds = startMilliseconds
        self.payloadBytes = payloadBytes
    }

    /// The next envelope. Each one is valid (`Envelope.validate()` passes).
    public mutating func next() -> Envelope {
        if self.pending.isEmpty { self.pending = self.makeTask().reversed() }
        return self.pending.removeLast()
    }

    /// A task request of `payloadBytes` of input data, alone (for benchmarks of the log).
    public mutating func request() -> Envelope {
        let route = Self.routes[Int(self.entropy.next64() % UInt64(Self.routes.count))]
        let correlation = self.newID()
        let trace = TraceID(high: self.entropy.next64() | 1, low: self.entropy.next64())
        return self.envelope(
            correlation: correlation, parent: nil, from: Self.client, to: .orchestrator, trace: trace,
            payload: .taskRequest(self.taskRequest(route)), mode: .exactlyOnce)
    }

    /// The clock moves 0 to 3 ms between messages.
    mutating func tick() -> Int64 {
        self.clockMilliseconds += Int64(self.entropy.next64() % 4)
        return self.clockMilliseconds
    }

    mutating func newID() -> MessageID {
        self.ids.next(milliseconds: self.tick(), entropy: &self.entropy)
    }

    mutating func text(_ count: Int) -> String {
        let words = ["agent", "log", "replay", "seed", "task", "trace", "budget", "stream", "vision", "audio", "csv", "μ-service"]
        var result = ""
        result.reserveCapacity(count + 16)
        while result.utf8.count < count {
            result += words[Int(self.entropy.next64() % UInt64(words.count))]
            result += " "
        }
        while result.utf8.count > count { result.removeLast() }
        return result
    }

    mutating func taskRequest(_ route: Route) -> TaskRequest {
        TaskRequest(
            task: TaskSpec(
                type: route.taskType,
                parameters: [.init("language", "en"), .init("max_items", .int(Int64(self.entropy.next64() % 100)))],
                constraints: TaskConstraints(maxExecutionTimeMilliseconds: 30_000, maxMemoryMB: 256, maxCostUSD: 0.05)),
            input: TaskInput(data: .string(self.text(self.payloadBytes))),
            preferences: TaskPreferences(qualityLevel: .balanced, costOptimization: true, streaming: false))
    }

    mutating func envelope(
        correlation: MessageID, parent: MessageID?, from sender: Address, to recipient: Address, trace: TraceID,
        payload: Payload, mode: DeliveryMode, priority: Priority = .normal
    ) -> Envelope {
        let id = self.newID()
        return Envelope(
            id: id, parentID: parent, correlationID: correlation, sender: sender, recipient: recipient,
            timestampMilliseconds: self.clockMilliseconds, ttlMilliseconds: 30_000, priority: priority,
            context: MessageContext(traceID: trace, spanID: SpanID(self.entropy.next64() | 1), userID: "user-\(self.entropy.next64() % 8)"),
            payload: payload, deliveryMode: mode, retryCount: 0, maxRetries: mode == .atMostOnce ? 0 : 3)
    }

    /// One whole task across the tiers, in causal order.
    mutating func makeTask() -> [Envelope] {
        self.tasks += 1
        let route = Self.routes[Int(self.entropy.next64() % UInt64(Self.routes.count))]
        let mode: DeliveryMode = self.entropy.next64() % 2 == 0 ? .exactlyOnce : .atLeastOnce
        let priorities: [Priority] = [.low, .normal, .normal, .high, .critical]
        let priority = priorities[Int(self.entropy.next64() % 5)]
        let correlation = self.newID()
        let trace = TraceID(high: self.entropy.next64() | 1, low: self.entropy.next64())
        var out: [Envelope] = []
        let request = self.taskRequest(route)
        let fromClient = self.envelope(
            correlation: correlation, parent: nil, from: Self.client, to: .orchestrator, trace: trace,
            payload: .taskRequest(request), mode: mode, priority: priority)
        out.append(fromClient)
        let toSupervisor = self.envelope(
            correlation: correlation, parent: fromClient.id, from: .orchestrator, to: route.supervisor, trace: trace,
            payload: .taskRequest(request), mode: mode, priority: priority)
        out.append(toSupervisor)
        if self.entropy.next64() % 4 == 0 {
            // The agent asks its supervisor for budget first.
            let amounts = ResourceAmounts(tokens: Int64(self.entropy.next64() % 4000), costUSD: 0.01)
            let ask = self.envelope(
                correlation: correlation, parent: toSupervisor.id, from: route.agent, to: route.supervisor, trace: trace,
                payload: .resourceRequest(ResourceRequest(forCorrelationID: correlation, amounts: amounts, reason: "model call")),
                mode: .atLeastOnce)
            out.append(ask)
            let answer: Payload = self.entropy.next64() % 5 == 0
                ? .resourceDeny(ResourceDeny(forCorrelationID: correlation, requested: amounts, code: .budgetExceeded, reason: "token budget of the supervisor is spent"))
                : .resourceGrant(ResourceGrant(forCorrelationID: correlation, amounts: amounts, leaseMilliseconds: 60_000))
            out.append(self.envelope(correlation: correlation, parent: ask.id, from: route.supervisor, to: route.agent, trace: trace, payload: answer, mode: .atLeastOnce))
        }
        let toAgent = self.envelope(
            correlation: correlation, parent: toSupervisor.id, from: route.supervisor, to: route.agent, trace: trace,
            payload: .taskRequest(request), mode: mode, priority: priority)
        out.append(toAgent)
        out.append(self.envelope(
            correlation: correlation, parent: toAgent.id, from: route.agent, to: route.supervisor, trace: trace,
            payload: .taskProgress(TaskProgress(fraction: 0.5, step: 1, totalSteps: 2, message: "halfway")), mode: .atMostOnce))
        let failed = self.entropy.next64() % 10 == 0
        let answer: Payload = failed
            ? .taskError(TaskError(code: .agentCrashed, message: "the agent stopped", retryable: true))
            : .taskResponse(TaskResponse(
                status: .completed, result: .map(["summary": .string(self.text(64)), "items": .int(Int64(self.entropy.next64() % 50))]),
                metrics: TaskMetrics(processingTimeMilliseconds: Int64(self.entropy.next64() % 900), costUSD: 0.002, tokensUsed: 321, qualityScore: 0.9)))
        let fromAgent = self.envelope(correlation: correlation, parent: toAgent.id, from: route.agent, to: route.supervisor, trace: trace, payload: answer, mode: mode)
        out.append(fromAgent)
        let fromSupervisor = self.envelope(correlation: correlation, parent: toSupervisor.id, from: route.supervisor, to: .orchestrator, trace: trace, payload: answer, mode: mode)
        out.append(fromSupervisor)
        out.append(self.envelope(correlation: correlation, parent: fromClient.id, from: .orchestrator, to: Self.client, trace: trace, payload: answer, mode: mode))
        if self.tasks % 16 == 0 {
            out.append(self.envelope(
                correlation: correlation, parent: nil, from: route.supervisor, to: .orchestrator, trace: trace,
                payload: .heartbeat(Heartbeat(status: .ok, queueDepth: Int64(self.entropy.next64() % 10), inFlight: 1)), mode: .atMostOnce))
        }
        return out
    }
}
