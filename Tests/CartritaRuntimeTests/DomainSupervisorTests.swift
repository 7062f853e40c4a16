import CartritaEnvelope
import CartritaRuntime
import XCTest

final class DomainSupervisorTests: XCTestCase {
    var maker = EnvelopeMaker()
    let me = Address("supervisor.system@v1.0")
    let sage = Address("agent.datasage@v1.0")
    let tasks = Address("agent.taskmanagement@v1.0")

    func supervisor(policy: SupervisionPolicy = SupervisionPolicy(), slots: Int64 = 8) -> DomainSupervisor {
        DomainSupervisor(
            address: self.me,
            agents: [
                .init(address: self.sage, taskTypes: ["data.csv-stats"]),
                .init(address: self.tasks, taskTypes: ["tasks.create", "tasks.list"]),
            ],
            policy: policy, maxConcurrentTasks: slots, tokenBudget: 1_000, costBudgetUSD: 1)
    }

    func fromOrchestrator(_ type: String, mode: DeliveryMode = .atLeastOnce, maxCost: Double? = nil) -> Envelope {
        var envelope = self.maker.envelope(
            .taskRequest(TaskRequest(task: TaskSpec(type: type, constraints: maxCost.map { TaskConstraints(maxCostUSD: $0) }))),
            from: .orchestrator, to: self.me)
        envelope.deliveryMode = mode
        return envelope
    }

    func from(_ agent: Address, _ payload: Payload, about request: Envelope) -> Envelope {
        self.maker.envelope(payload, from: agent, to: self.me, correlation: request.correlationID, parent: request.id)
    }

    func context(_ clock: Int64 = 0) -> DeliveryContext { DeliveryContext(seq: 1, clockMilliseconds: clock, entropy: 1) }

    func sent(_ effects: [Effect]) -> [OutgoingMessage] {
        effects.compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    func errorCode(_ message: OutgoingMessage?) -> String? {
        if case .taskError(let error)? = message?.payload { return error.code.rawValue }
        return nil
    }

    func testRoutesToTheAgentAndAnswersTheOrchestrator() {
        let supervisor = self.supervisor()
        var state = supervisor.initialState()
        let request = self.fromOrchestrator("data.csv-stats", maxCost: 0.5)
        let forwarded = self.sent(supervisor.step(&state, request, self.context()))
        XCTAssertEqual(forwarded.map(\.recipient), [self.sage])
        XCTAssertEqual(forwarded.first?.parentID, request.id)
        XCTAssertEqual(state.budget.slotsInUse, 1)
        XCTAssertEqual(state.budget.costAvailableUSD, 0.5, accuracy: 1e-9, "the cost ceiling is reserved")

        let answer = self.from(self.sage, .taskResponse(TaskResponse(status: .completed, result: 1, metrics: TaskMetrics(costUSD: 0.2))), about: request)
        let replies = self.sent(supervisor.step(&state, answer, self.context()))
        XCTAssertEqual(replies.map(\.recipient), [.orchestrator])
        XCTAssertEqual(replies.first?.parentID, request.id)
        XCTAssertEqual(state.budget.slotsInUse, 0)
        XCTAssertEqual(state.budget.costSpentUSD, 0.2, accuracy: 1e-9, "what the agent used is spent, the rest released")
        XCTAssertEqual(state.completed, 1)
        XCTAssertEqual(self.sent(supervisor.step(&state, answer, self.context())), [], "one terminal answer only")
    }

    func testEveryRefusalIsAnAnswerWithItsCode() {
        let supervisor = self.supervisor(slots: 1)
        var state = supervisor.initialState()
        XCTAssertEqual(self.errorCode(self.sent(supervisor.step(&state, self.fromOrchestrator("data.unknown"), self.context())).first), "unknown_task_type")
        _ = supervisor.step(&state, self.fromOrchestrator("tasks.list"), self.context())
        XCTAssertEqual(self.errorCode(self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.list"), self.context())).first), "concurrency_limit")
        XCTAssertEqual(self.errorCode(self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.list", maxCost: 5), self.context())).first), "concurrency_limit")
        supervisor.setPaused(true, &state)
        XCTAssertEqual(self.errorCode(self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.create"), self.context())).first), "paused")
        XCTAssertEqual(state.inFlight.count, 1)
    }

    func override(_ action: OverrideAction, from sender: Address = Address("client.http@v1.0"), by user: String? = "ops-admin") -> Envelope {
        var envelope = self.maker.envelope(.override(Override(action: action, reason: "incident 42")), from: sender, to: self.me)
        envelope.context.userID = user
        return envelope
    }

    func testAnOverridePausesAndResumesAndIsAcknowledged() {
        let supervisor = self.supervisor()
        var state = supervisor.initialState()
        let running = self.fromOrchestrator("tasks.list")
        _ = supervisor.step(&state, running, self.context())

        let ack = self.sent(supervisor.step(&state, self.override(.pause), self.context()))
        XCTAssertTrue(state.paused)
        XCTAssertEqual(state.pausedBy, "ops-admin")
        XCTAssertEqual(state.pauseReason, "incident 42")
        XCTAssertEqual(ack.map(\.recipient), [Address("client.http@v1.0")])
        guard case .heartbeat(let beat)? = ack.first?.payload else { return XCTFail("a heartbeat answers the override") }
        XCTAssertEqual(beat.status, .degraded)
        XCTAssertEqual(beat.inFlight, 1)

        // Refused, retryable, nothing reserved; the task in flight still finishes.
        let refused = self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.create"), self.context()))
        XCTAssertEqual(self.errorCode(refused.first), "paused")
        if case .taskError(let error)? = refused.first?.payload { XCTAssertTrue(error.retryable) }
        XCTAssertEqual(state.budget.slotsInUse, 1)
        let done = self.from(self.tasks, .taskResponse(TaskResponse(status: .completed, result: 1)), about: running)
        XCTAssertEqual(self.sent(supervisor.step(&state, done, self.context())).map(\.recipient), [.orchestrator])

        // An agent cannot pause its own supervisor; drain is not the supervisor's business.
        _ = supervisor.step(&state, self.override(.resume, from: self.tasks), self.context())
        XCTAssertTrue(state.paused)
        XCTAssertEqual(supervisor.step(&state, self.override(.drain), self.context()), [])

        let resumed = self.sent(supervisor.step(&state, self.override(.resume), self.context()))
        XCTAssertFalse(state.paused)
        XCTAssertNil(state.pausedBy)
        if case .heartbeat(let beat)? = resumed.first?.payload { XCTAssertEqual(beat.status, .ok) } else { XCTFail("acknowledged") }
        XCTAssertEqual(self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.create"), self.context())).map(\.recipient), [self.tasks])
    }

    func testResourceRequestsAreGrantedOrDeniedWithAReason() {
        let supervisor = self.supervisor()
        var state = supervisor.initialState()
        let request = self.fromOrchestrator("data.csv-stats")
        _ = supervisor.step(&state, request, self.context())
        let ask = self.from(self.sage, .resourceRequest(ResourceRequest(forCorrelationID: request.correlationID, amounts: ResourceAmounts(tokens: 800))), about: request)
        guard case .resourceGrant(let grant)? = self.sent(supervisor.step(&state, ask, self.context())).first?.payload else { return XCTFail() }
        XCTAssertEqual(grant.amounts.tokens, 800)
        let tooMuch = self.from(self.sage, .resourceRequest(ResourceRequest(forCorrelationID: request.correlationID, amounts: ResourceAmounts(tokens: 300))), about: request)
        guard case .resourceDeny(let deny)? = self.sent(supervisor.step(&state, tooMuch, self.context())).first?.payload else { return XCTFail() }
        XCTAssertEqual(deny.code, .budgetExceeded)
        XCTAssertTrue(deny.reason.contains("200 left"), deny.reason)
        // The answer settles the grant with the tokens really used.
        let answer = self.from(self.sage, .taskResponse(TaskResponse(status: .completed, metrics: TaskMetrics(tokensUsed: 500))), about: request)
        _ = supervisor.step(&state, answer, self.context())
        XCTAssertEqual(state.budget.tokensSpent, 500)
        XCTAssertEqual(state.budget.tokensAvailable, 500)
        XCTAssertTrue(state.grants.isEmpty)
    }

    func testACrashRestartsAndRetriesUntilMaxRetriesThenAnswersAgentCrashed() {
        let supervisor = self.supervisor(policy: SupervisionPolicy(strategy: .oneForOne, intensity: 10, backoffBaseMilliseconds: 10))
        var state = supervisor.initialState()
        let request = self.fromOrchestrator("data.csv-stats", mode: .atLeastOnce)  // max_retries 2 from the maker
        _ = supervisor.step(&state, request, self.context())
        let crash = self.from(self.sage, .taskError(TaskError(code: .agentCrashed, message: "boom", retryable: true)), about: request)
        for attempt in 1...2 {
            let effects = supervisor.step(&state, crash, self.context(Int64(attempt)))
            XCTAssertTrue(effects.contains(.restart(self.sage, afterMilliseconds: attempt == 1 ? 10 : 20)), "\(effects)")
            guard let timer = effects.first(where: { if case .timer = $0 { true } else { false } }),
                case .timer(let delay, let again) = timer
            else { return XCTFail("a retry is scheduled: \(effects)") }
            XCTAssertEqual(again.recipient, self.sage)
            XCTAssertEqual(again.retryCount, Int32(attempt))
            XCTAssertEqual(delay, attempt == 1 ? 10 : 20, "the retry waits for the restart")
        }
        let last = supervisor.step(&state, crash, self.context(3))
        XCTAssertEqual(self.errorCode(self.sent(last).first), "agent_crashed")
        XCTAssertEqual(self.sent(last).first?.recipient, .orchestrator)
        XCTAssertTrue(state.inFlight.isEmpty)
        XCTAssertEqual(state.budget.slotsInUse, 0)
    }

    func testAtMostOnceIsNotRetried() {
        let supervisor = self.supervisor()
        var state = supervisor.initialState()
        let request = self.fromOrchestrator("data.csv-stats", mode: .atMostOnce)
        _ = supervisor.step(&state, request, self.context())
        let crash = self.from(self.sage, .taskError(TaskError(code: .agentCrashed, message: "boom", retryable: true)), about: request)
        let effects = supervisor.step(&state, crash, self.context())
        XCTAssertFalse(effects.contains { if case .timer = $0 { true } else { false } })
        XCTAssertEqual(self.errorCode(self.sent(effects).first), "agent_crashed")
    }

    func testPastTheIntensityItEscalatesStopsItsAgentsAndAnswersEverything() {
        let supervisor = self.supervisor(policy: SupervisionPolicy(strategy: .oneForAll, intensity: 1, periodMilliseconds: 1_000))
        var state = supervisor.initialState()
        let first = self.fromOrchestrator("data.csv-stats")
        let second = self.fromOrchestrator("tasks.list")
        _ = supervisor.step(&state, first, self.context())
        _ = supervisor.step(&state, second, self.context())
        let crash = self.from(self.sage, .taskError(TaskError(code: .agentCrashed, message: "boom", retryable: true)), about: first)
        let restart = supervisor.step(&state, crash, self.context(10))
        XCTAssertTrue(restart.contains(.restart(self.sage, afterMilliseconds: 10)))
        XCTAssertTrue(restart.contains(.restart(self.tasks, afterMilliseconds: 0)), "one_for_all restarts the sibling too")
        let escalation = supervisor.step(&state, crash, self.context(20))
        XCTAssertTrue(escalation.contains { if case .escalate = $0 { true } else { false } })
        XCTAssertTrue(escalation.contains(.stop(self.sage)))
        XCTAssertTrue(escalation.contains(.stop(self.tasks)))
        XCTAssertEqual(self.sent(escalation).count, 2, "both held tasks are answered")
        XCTAssertTrue(state.inFlight.isEmpty)
        XCTAssertEqual(self.errorCode(self.sent(supervisor.step(&state, self.fromOrchestrator("tasks.list"), self.context())).first), "agent_crashed")
    }
}
