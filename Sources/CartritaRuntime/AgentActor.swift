import CartritaEnvelope

// MARK: - Tier 2: an agent as an actor step

/// Makes any `Agent` a step like the orchestrator's and the supervisors': a `task_request` is
/// handled and answered with exactly one terminal reply to its sender (the supervisor), caused by
/// the request (`parent_id`), in the same task (`correlation_id`) and trace. Pings are answered;
/// anything else is ignored (an agent is a single-purpose worker).
public struct AgentActor<Wrapped: Agent>: Sendable {
    public let agent: Wrapped
    /// The agent's own address, or an instance's in a pool (`agent.datasage.2@v1.0`).
    public let address: Address
    /// Deterministic chaos: this many requests per million crash (as a throw would), chosen by
    /// the delivery's recorded entropy, so replay crashes the same ones. 0 in production; the
    /// simulator's `agent_crash` fault sets it.
    public let crashesPerMillion: UInt64

    public init(_ agent: Wrapped, address: Address? = nil, crashesPerMillion: UInt64 = 0) {
        self.agent = agent
        self.address = address ?? agent.address
        self.crashesPerMillion = crashesPerMillion
    }

    /// Whether the injected-crash fault hits this delivery.
    func injectedCrash(_ context: DeliveryContext) -> Bool {
        InjectedCrash.hits(entropy: context.entropy, perMillion: self.crashesPerMillion)
    }

    public func initialState() -> Wrapped.State { self.agent.initialState() }

    public func step(_ state: inout Wrapped.State, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect] {
        switch envelope.payload {
        case .taskRequest(let request):
            // A throw is a crash. The state is not rolled back: copying it first would cost a
            // whole copy per request for stateful agents, and whatever the handler left is
            // deterministic, so replay leaves the same. Agents validate before they mutate.
            do {
                if self.injectedCrash(context) { throw InjectedCrash() }
                let outcome = try self.agent.handle(request, state: &state, context: context)
                let answer = self.answer(outcome, for: envelope)
                guard context.buggify(.agentProgress) else { return [answer] }
                let progress = TaskProgress(fraction: 0.5, step: 1, totalSteps: 2, message: "\(self.address) is working")
                return [.send(.reply(to: envelope, payload: .taskProgress(progress))), answer]
            } catch {
                let crash = TaskError(code: .agentCrashed, message: "\(self.address) threw: \(error)", retryable: true)
                return [.send(.reply(to: envelope, payload: .taskError(crash)))]
            }
        case .taskResponse where envelope.sender.isIO:
            // An I/O call came back: the task it was for travels with it (the agent keeps no
            // state across the call), and its answer goes to that task's sender.
            guard let (task, continuation, result) = IOWire.parseAnswer(envelope), case .taskRequest(let request) = task.payload else {
                return []  // malformed: the supervisor's timeout covers the task
            }
            do {
                let outcome = try self.agent.resume(request, continuation: continuation, result: result, state: &state, context: context)
                return [self.answer(outcome, for: task)]
            } catch {
                let crash = TaskError(code: .agentCrashed, message: "\(self.address) threw: \(error)", retryable: true)
                return [.send(.reply(to: task, payload: .taskError(crash)))]
            }
        case .ping(let ping):
            return [.send(.reply(to: envelope, payload: .pong(Pong(nonce: ping.nonce))))]
        default:
            return []
        }
    }

    /// The effect of an outcome: the terminal answer to the task's sender, or the I/O request.
    func answer(_ outcome: AgentOutcome, for task: Envelope) -> Effect {
        if case .call(let call) = outcome {
            if let request = IOWire.request(for: call, task: task) { return .send(request) }
            let error = TaskError(code: .ioError, message: "\(self.address): the task is too large to carry through an I/O call", retryable: false)
            return .send(.reply(to: task, payload: .taskError(error)))
        }
        return .send(.reply(to: task, payload: outcome.payload!))
    }

    /// The state as snapshot bytes, with the format they are in.
    public func snapshot(_ state: Wrapped.State) -> (formatVersion: UInt32, bytes: [UInt8]) {
        (self.agent.stateFormatVersion, self.agent.encodeState(state))
    }

    /// The state from a snapshot, or nil when it is in another format or unreadable: the runtime
    /// then falls back to an older snapshot or to replay from the start, never to a crash.
    public func restore(formatVersion: UInt32, bytes: [UInt8]) -> Wrapped.State? {
        guard formatVersion == self.agent.stateFormatVersion else { return nil }
        return try? self.agent.decodeState(bytes)
    }
}

/// The throw of the injected-crash fault.
public struct InjectedCrash: Error, CustomStringConvertible {
    public var description: String { "injected crash (fault)" }

    /// The rule: whether a delivery with this entropy crashes an agent set to crash this many
    /// requests per million. Public so the simulator can pick entropy that crashes (a restart
    /// storm) or does not.
    public static func hits(entropy: UInt64, perMillion: UInt64) -> Bool {
        guard perMillion > 0 else { return false }
        var mix = SplitMix64(seed: entropy ^ 0x6372_6173_6821)
        return mix.next64() % 1_000_000 < perMillion
    }
}
