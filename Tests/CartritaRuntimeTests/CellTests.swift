import CartritaCodec
import CartritaEnvelope
import CartritaRuntime
import XCTest

// The pure delivery core: what one logged record does to a cell (MachineCell, DeliveryGate,
// Materializer, EffectIDs), with no log and no node. Everything here is a function of the
// record and its recorded context, which is what makes replay and the divergence detector work.

/// A counting agent for the cell tests: `count` increments and answers the count; `boom`
/// increments, then throws (the state keeps the increment: a crash is not rolled back).
private struct CellCountingAgent: Agent {
    struct Boom: Error {}

    let address = Address("agent.cellcount@v1.0")
    let taskTypes = ["c.count", "c.boom"]
    var stateFormatVersion: UInt32 { 3 }

    func initialState() -> Int64 { 0 }

    func handle(_ request: TaskRequest, state: inout Int64, context: DeliveryContext) throws -> AgentOutcome {
        state += 1
        if request.task.type == "c.boom" { throw Boom() }
        return .completed(result: .int(state), metrics: TaskMetrics())
    }

    func encodeState(_ state: Int64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: UInt64(bitPattern: state) >> (56 - 8 * UInt64($0))) }
    }

    func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> Int64 {
        guard bytes.count == 8 else { throw StateDecodingError("8 bytes") }
        return Int64(bitPattern: bytes.reduce(UInt64(0)) { ($0 << 8) | UInt64($1) })
    }
}

private struct CellFixture {
    static let clock: Int64 = 1_764_000_000_000
    static let client = Address("client.cell@v1.0")
    static let supervisor = Address("supervisor.cell@v1.0")

    var entropy = SplitMix64(seed: 41)
    var ids = UUIDv7Generator()

    mutating func envelope(
        _ payload: Payload, from sender: Address, to recipient: Address, timestamp: Int64 = CellFixture.clock, ttl: Int32 = 30_000,
        mode: DeliveryMode = .atLeastOnce, priority: Priority = .normal, correlation: MessageID? = nil, parent: MessageID? = nil,
        maxRetries: Int32 = 2
    ) -> Envelope {
        let id = self.ids.next(milliseconds: timestamp, entropy: &self.entropy)
        return Envelope(
            id: id, parentID: parent, correlationID: correlation ?? id, sender: sender, recipient: recipient,
            timestampMilliseconds: timestamp, ttlMilliseconds: ttl, priority: priority,
            context: MessageContext(traceID: TraceID(high: 5, low: 6), spanID: SpanID(7)),
            payload: payload, deliveryMode: mode, maxRetries: maxRetries)
    }

    static func request(_ type: String, maxTime: Int64? = nil) -> Payload {
        .taskRequest(TaskRequest(task: TaskSpec(type: type, constraints: maxTime.map { TaskConstraints(maxExecutionTimeMilliseconds: $0) })))
    }

    static func context(seq: UInt64 = 1, clock: Int64 = CellFixture.clock, entropy: UInt64 = 99) -> DeliveryContext {
        DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: entropy)
    }
}

private func errorCode(_ envelope: Envelope?) -> String? {
    if case .taskError(let error)? = envelope?.payload { return error.code.rawValue }
    return nil
}

final class CellTests: XCTestCase {
    private var fixture = CellFixture()
    private let agent = CellCountingAgent()

    // MARK: MachineCell

    /// A delivery runs the step once, records its seq, and turns the reply into an envelope: the
    /// sender is the cell, the id is the delivery's first effect id, the timestamp its clock.
    func testADeliveryRunsTheStepAndMaterializesItsReply() {
        let cell = MachineCell(AgentActor(self.agent))
        let request = self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address)
        let context = CellFixture.context(seq: 17, clock: CellFixture.clock + 5)
        let delivery = cell.deliver(request, context)

        XCTAssertNil(delivery.refusal)
        XCTAssertEqual(cell.state, 1)
        XCTAssertEqual(cell.lastSeq, 17)
        XCTAssertEqual(cell.deliveriesSinceSnapshot, 1)
        XCTAssertEqual(delivery.messages.count, 1)
        let reply = delivery.messages[0]
        var ids = EffectIDs(context)
        XCTAssertEqual(reply.id, ids.next(), "the reply's id is drawn from the delivery's recorded entropy")
        XCTAssertEqual(reply.sender, self.agent.address)
        XCTAssertEqual(reply.recipient, CellFixture.supervisor)
        XCTAssertEqual(reply.parentID, request.id)
        XCTAssertEqual(reply.correlationID, request.correlationID)
        XCTAssertEqual(reply.context, request.context)
        XCTAssertEqual(reply.timestampMilliseconds, context.clockMilliseconds)
        XCTAssertEqual(reply.deliveryMode, request.deliveryMode)
        XCTAssertEqual(reply.priority, request.priority)
        guard case .taskResponse(let response) = reply.payload else { return XCTFail("expected a task_response") }
        XCTAssertEqual(response.result, .int(1))
    }

    /// A throw is a crash: the reply is `agent_crashed` (retryable) and the state keeps what
    /// the handler did before throwing, so replay of the same record leaves the same state.
    func testAThrowIsAnAgentCrashedReplyAndTheStateIsNotRolledBack() {
        let cell = MachineCell(AgentActor(self.agent))
        let request = self.fixture.envelope(CellFixture.request("c.boom"), from: CellFixture.supervisor, to: self.agent.address)
        let delivery = cell.deliver(request, CellFixture.context())
        XCTAssertEqual(delivery.messages.map { errorCode($0) }, ["agent_crashed"])
        if case .taskError(let error)? = delivery.messages.first?.payload { XCTAssertTrue(error.retryable) }
        XCTAssertEqual(cell.state, 1)
    }

    // MARK: TTL at delivery

    /// Past `timestamp + ttl_ms` the message is not handed to the actor: the refusal is
    /// `ttl_expired`, the sender is answered, the state is untouched. At the boundary it is
    /// still delivered.
    func testAnExpiredMessageIsRefusedWithoutRunningTheStep() {
        let cell = MachineCell(AgentActor(self.agent))
        let onTime = self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address, ttl: 100)
        let boundary = cell.deliver(onTime, CellFixture.context(seq: 1, clock: CellFixture.clock + 100))
        XCTAssertNil(boundary.refusal, "at exactly timestamp + ttl_ms the message is still delivered")
        XCTAssertEqual(cell.state, 1)

        let late = self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address, ttl: 100)
        let context = CellFixture.context(seq: 2, clock: CellFixture.clock + 101)
        let refused = cell.deliver(late, context)
        XCTAssertEqual(refused.refusal, .ttlExpired)
        XCTAssertEqual(cell.state, 1, "the handler did not run")
        XCTAssertEqual(cell.lastSeq, 2, "the refused record is still this actor's delivery")
        XCTAssertEqual(refused.messages.count, 1)
        let answer = refused.messages[0]
        XCTAssertEqual(errorCode(answer), "ttl_expired")
        XCTAssertEqual(answer.recipient, CellFixture.supervisor)
        XCTAssertEqual(answer.sender, self.agent.address)
        XCTAssertEqual(answer.parentID, late.id)
        XCTAssertEqual(answer.correlationID, late.correlationID)
        var ids = EffectIDs(context)
        XCTAssertEqual(answer.id, ids.next())
        XCTAssertEqual(answer.timestampMilliseconds, context.clockMilliseconds, "the answer is fresh: it is not itself expired")
        if case .taskError(let error) = answer.payload {
            XCTAssertTrue(error.retryable)
            XCTAssertTrue(error.message.contains("expired 1 ms"), error.message)
        }
        XCTAssertTrue(refused.actions.isEmpty && refused.cancelledTimers.isEmpty)
    }

    /// An expired `ttl_expired` answer is dropped without an answer, so two actors can never
    /// bounce expiry notices at each other.
    func testAnExpiredTTLNoticeIsNotAnsweredAgain() {
        let cell = MachineCell(ClientlessEcho())
        let notice = self.fixture.envelope(
            .taskError(TaskError(code: .ttlExpired, message: "late", retryable: true)), from: CellFixture.supervisor, to: ClientlessEcho.me,
            ttl: 1)
        let delivery = cell.deliver(notice, CellFixture.context(clock: CellFixture.clock + 50))
        XCTAssertEqual(delivery.refusal, .ttlExpired)
        XCTAssertEqual(delivery.messages, [])
        XCTAssertEqual(cell.state, 0)

        let other = self.fixture.envelope(
            .taskError(TaskError(code: .timeout, message: "late", retryable: true)), from: CellFixture.supervisor, to: ClientlessEcho.me, ttl: 1)
        XCTAssertEqual(cell.deliver(other, CellFixture.context(clock: CellFixture.clock + 50)).messages.map { errorCode($0) }, ["ttl_expired"])
    }

    func testTheDeliveryGateDecidesOnTheRecordedClockOnly() {
        let envelope = self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.client, to: .orchestrator, ttl: 10)
        XCTAssertNil(DeliveryGate.refusal(envelope, CellFixture.context(clock: CellFixture.clock - 5_000)), "early is fine")
        XCTAssertNil(DeliveryGate.refusal(envelope, CellFixture.context(clock: CellFixture.clock + 10)))
        let refusal = DeliveryGate.refusal(envelope, CellFixture.context(clock: CellFixture.clock + 11))
        XCTAssertEqual(refusal?.code, .ttlExpired)
        XCTAssertEqual(refusal?.answer?.recipient, CellFixture.client)
        XCTAssertEqual(refusal?.answer?.parentID, envelope.id)
    }

    // MARK: EffectIDs

    /// The ids of a delivery's messages are a pure function of its recorded clock and entropy:
    /// replay draws the same ones; another delivery draws others.
    func testEffectIDsArePureFunctionsOfTheRecordedContext() {
        func draw(_ context: DeliveryContext, _ count: Int = 8) -> [MessageID] {
            var ids = EffectIDs(context)
            return (0..<count).map { _ in ids.next() }
        }
        let context = CellFixture.context(seq: 3, clock: CellFixture.clock + 7, entropy: 0xDEAD_BEEF)
        let first = draw(context)
        XCTAssertEqual(first, draw(context), "same context, same ids")
        XCTAssertEqual(first, draw(DeliveryContext(seq: 999, clockMilliseconds: context.clockMilliseconds, entropy: context.entropy)),
            "the seq does not enter the ids")
        XCTAssertTrue(Set(first).isDisjoint(with: draw(CellFixture.context(seq: 3, clock: CellFixture.clock + 7, entropy: 0xDEAD_BEF0))))
        XCTAssertTrue(Set(first).isDisjoint(with: draw(CellFixture.context(seq: 3, clock: CellFixture.clock + 8, entropy: 0xDEAD_BEEF))))
        XCTAssertEqual(first, first.sorted(), "strictly increasing within a delivery")
        XCTAssertEqual(Set(first).count, first.count)
        for id in first {
            XCTAssertTrue(id.isUUIDv7)
            XCTAssertEqual(id.unixMilliseconds, context.clockMilliseconds)
        }
        // Not the stream a handler gets from `SplitMix64(seed: entropy)`.
        var handlerStream = SplitMix64(seed: context.entropy)
        var generator = UUIDv7Generator()
        XCTAssertNotEqual(generator.next(milliseconds: context.clockMilliseconds, entropy: &handlerStream), first[0])
    }

    // MARK: Materializer

    /// Effects become runtime work in the order the handler gave them; each `send`, `timer` and
    /// `escalate` draws one id (even a send that brings its own id, so later ids never shift).
    func testTheMaterializerKeepsOrderAndDrawsOneIDPerMessageEffect() {
        let me = CellFixture.supervisor
        let child = Address("agent.cellchild@v1.0")
        let correlation = self.fixture.envelope(.ping(Ping(nonce: 1)), from: CellFixture.client, to: me).id
        let fixed = self.fixture.envelope(.ping(Ping(nonce: 2)), from: CellFixture.client, to: me).id
        func message(_ recipient: Address, id: MessageID? = nil) -> OutgoingMessage {
            var message = OutgoingMessage(
                recipient: recipient, payload: .ping(Ping(nonce: 3)), parentID: nil, correlationID: correlation,
                context: MessageContext(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1)))
            message.id = id
            return message
        }
        let effects: [Effect] = [
            .send(message(child)),
            .timer(afterMilliseconds: 250, message: message(me)),
            .cancelTimers(correlationID: correlation),
            .send(message(child, id: fixed)),
            .timer(afterMilliseconds: -40, message: message(child)),
            .spawn(child), .stop(child), .restart(child, afterMilliseconds: -3), .restart(child, afterMilliseconds: 20),
            .escalate(reason: "too many crashes"),
        ]
        let context = CellFixture.context(clock: CellFixture.clock + 1, entropy: 5)
        let delivery = Materializer.materialize(effects, from: me, context)
        var ids = EffectIDs(context)
        let drawn = (0..<5).map { _ in ids.next() }

        XCTAssertEqual(delivery.messages.map(\.id), [drawn[0], drawn[1], fixed, drawn[3], drawn[4]])
        XCTAssertEqual(delivery.messages.map(\.recipient), [child, me, child, child, .orchestrator])
        XCTAssertTrue(delivery.messages.allSatisfy { $0.sender == me })
        XCTAssertEqual(
            delivery.messages.map(\.timestampMilliseconds),
            [context.clockMilliseconds, context.clockMilliseconds + 250, context.clockMilliseconds, context.clockMilliseconds, context.clockMilliseconds],
            "a timer is stamped with its due time; a negative delay is now")
        XCTAssertEqual(delivery.cancelledTimers, [correlation])
        XCTAssertEqual(delivery.actions, [
            .spawn(child), .stop(child), .restart(child, untilMilliseconds: context.clockMilliseconds),
            .restart(child, untilMilliseconds: context.clockMilliseconds + 20),
        ])
        XCTAssertNil(delivery.refusal)

        // Escalation is a message to the orchestrator, so its log shows it.
        let escalation = delivery.messages[4]
        XCTAssertEqual(errorCode(escalation), "supervisor_escalated")
        XCTAssertEqual(escalation.priority, .critical)
        XCTAssertEqual(escalation.correlationID, escalation.id, "an escalation is a task of its own")
        XCTAssertNil(escalation.parentID)
        if case .taskError(let error) = escalation.payload {
            XCTAssertEqual(error.message, "too many crashes")
            XCTAssertFalse(error.retryable)
        }

        // An explicit id does not shift the ids drawn after it.
        let without = Materializer.materialize([.send(message(child)), .send(message(child)), .send(message(child))], from: me, context)
        let with = Materializer.materialize([.send(message(child)), .send(message(child, id: fixed)), .send(message(child))], from: me, context)
        XCTAssertEqual(with.messages[2].id, without.messages[2].id)
        XCTAssertEqual(with.messages[1].id, fixed)
        XCTAssertTrue(Materializer.materialize([], from: me, context).messages.isEmpty)
    }

    // MARK: Replay

    /// The three tiers as cells: the same records with the same contexts give the same
    /// deliveries and the same state bytes, every time (what recovery relies on).
    func testReplayingTheSameRecordsGivesTheSameDeliveriesAndState() {
        var fixture = CellFixture()
        let supervisorAddress = Address("supervisor.system@v1.0")
        var records: [(Envelope, DeliveryContext)] = []
        var seq: UInt64 = 0
        func add(_ envelope: Envelope) {
            seq += 1
            records.append((envelope, CellFixture.context(seq: seq, clock: CellFixture.clock + Int64(seq), entropy: seq &* 0x9E37)))
        }
        let first = fixture.envelope(CellFixture.request("tasks.create"), from: CellFixture.client, to: .orchestrator)
        let second = fixture.envelope(CellFixture.request("nothing.here"), from: CellFixture.client, to: .orchestrator)
        add(first)
        add(second)
        add(fixture.envelope(.ping(Ping(nonce: 9)), from: CellFixture.client, to: .orchestrator))
        func makeCells() -> [any ActorCell] {
            [
                MachineCell(Orchestrator()),
                MachineCell(DomainSupervisor(address: supervisorAddress, agents: [.init(address: self.agent.address, taskTypes: ["tasks.create"])])),
                MachineCell(AgentActor(self.agent)),
            ]
        }
        // Run the records through the three cells, feeding each delivery's messages back in
        // (timers included, in order), and keep everything that came out.
        func run(_ cells: [any ActorCell]) -> (out: [[Envelope]], actions: [[Delivery.Action]], cancelled: [[MessageID]], state: [[UInt8]]) {
            var queue = records
            var out: [[Envelope]] = []
            var actions: [[Delivery.Action]] = []
            var cancelled: [[MessageID]] = []
            var next = seq
            while !queue.isEmpty {
                let (envelope, context) = queue.removeFirst()
                guard let cell = cells.first(where: { $0.address == envelope.recipient }) else {
                    out.append([])
                    continue
                }
                let delivery = cell.deliver(envelope, context)
                out.append(delivery.messages)
                actions.append(delivery.actions)
                cancelled.append(delivery.cancelledTimers)
                for message in delivery.messages {
                    next += 1
                    queue.append((message, CellFixture.context(seq: next, clock: max(context.clockMilliseconds + 1, message.timestampMilliseconds), entropy: next)))
                }
            }
            return (out, actions, cancelled, cells.map { $0.snapshotBytes() })
        }
        let live = run(makeCells())
        let replay = run(makeCells())
        XCTAssertEqual(live.out, replay.out)
        XCTAssertEqual(live.actions, replay.actions)
        XCTAssertEqual(live.cancelled, replay.cancelled)
        XCTAssertEqual(live.state, replay.state)
        XCTAssertTrue(live.out.joined().contains { $0.recipient == CellFixture.client && errorCode($0) == "unknown_task_type" })
        XCTAssertTrue(live.out.joined().contains { $0.recipient == CellFixture.client && ClientOutcome.completed($0) }, "the known task completed")
    }

    // MARK: Snapshots

    /// A snapshot in another format, or bytes that do not decode, are refused with the state
    /// unchanged (the caller falls back to an older snapshot or to replay); a good one restores
    /// state and seq exactly.
    func testRestoreRefusesOtherFormatsAndBadBytesAndRestoresExactly() {
        let source = MachineCell(AgentActor(self.agent))
        for seq in 1...3 {
            _ = source.deliver(
                self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address),
                CellFixture.context(seq: UInt64(seq)))
        }
        let bytes = source.snapshotBytes()
        XCTAssertEqual(source.stateFormatVersion, 3)

        let target = MachineCell(AgentActor(self.agent))
        XCTAssertFalse(target.restore(formatVersion: 2, bytes: bytes, seq: 40), "another format is not used")
        XCTAssertFalse(target.restore(formatVersion: 3, bytes: [1, 2, 3], seq: 40), "unreadable bytes are not used")
        XCTAssertEqual(target.state, 0)
        XCTAssertEqual(target.lastSeq, 0)
        XCTAssertTrue(target.restore(formatVersion: 3, bytes: bytes, seq: 40))
        XCTAssertEqual(target.state, 3)
        XCTAssertEqual(target.lastSeq, 40)
        XCTAssertEqual(target.deliveriesSinceSnapshot, 0)
        XCTAssertEqual(target.snapshotBytes(), bytes)

        _ = target.deliver(
            self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address), CellFixture.context(seq: 41))
        XCTAssertEqual(target.deliveriesSinceSnapshot, 1)
        target.markSnapshotted(bytes: 0)
        XCTAssertEqual(target.deliveriesSinceSnapshot, 0)
        target.reset()
        XCTAssertEqual(target.state, 0)
        XCTAssertEqual(target.lastSeq, 0)
    }

    /// Snapshots of a large state are spread out: O(1) snapshot work per delivery, whatever the
    /// state's size. A small state keeps the configured interval.
    func testALargeStateIsSnapshottedLessOftenSoTheCostPerDeliveryStaysBounded() {
        let cell = MachineCell(AgentActor(self.agent))
        func deliver(_ count: Int) {
            for _ in 0..<count {
                _ = cell.deliver(
                    self.fixture.envelope(CellFixture.request("c.count"), from: CellFixture.supervisor, to: self.agent.address),
                    CellFixture.context(seq: cell.lastSeq + 1))
            }
        }
        deliver(999)
        XCTAssertFalse(cell.snapshotDue(everyDeliveries: 1_000))
        deliver(1)
        XCTAssertTrue(cell.snapshotDue(everyDeliveries: 1_000), "no snapshot yet: the interval decides")

        cell.markSnapshotted(bytes: 256 * 4_000)  // a 1 MB state
        XCTAssertEqual(cell.lastSnapshotBytes, 1_024_000)
        deliver(1_000)
        XCTAssertFalse(cell.snapshotDue(everyDeliveries: 1_000), "1 MB at 256 bytes per delivery: 4,000 deliveries")
        XCTAssertTrue(cell.snapshotDue(everyDeliveries: 1_000, bytesPerDelivery: 0), "0 turns the spreading off")
        deliver(3_000)
        XCTAssertTrue(cell.snapshotDue(everyDeliveries: 1_000))

        cell.markSnapshotted(bytes: 1_000)  // small again: back to the interval
        deliver(1_000)
        XCTAssertTrue(cell.snapshotDue(everyDeliveries: 1_000))
        cell.reset()
        XCTAssertEqual(cell.lastSnapshotBytes, 0)
    }

    // MARK: Supervision as cell deliveries

    func supervisorCell(_ strategy: SupervisionStrategy, intensity: Int = 5) -> (MachineCell<DomainSupervisor>, [Address]) {
        let children = [Address("agent.cella@v1.0"), Address("agent.cellb@v1.0"), Address("agent.cellc@v1.0")]
        let supervisor = DomainSupervisor(
            address: CellFixture.supervisor,
            agents: children.enumerated().map { DomainSupervisor.AgentRoute(address: $1, taskTypes: ["t.\($0)"]) },
            policy: SupervisionPolicy(strategy: strategy, intensity: intensity, periodMilliseconds: 60_000, backoffBaseMilliseconds: 10, backoffMaxMilliseconds: 100))
        return (MachineCell(supervisor), children)
    }

    /// A crash restarts the strategy's set of children: the crashed one after its backoff, the
    /// others restarted alongside it at once (one_for_one, one_for_all, rest_for_one).
    func testACrashRestartsTheStrategysChildrenAsActions() {
        let clock = CellFixture.clock + 1_000
        let expected: [(SupervisionStrategy, [(Int, Int64)])] = [
            (.oneForOne, [(1, 10)]),
            (.oneForAll, [(0, 0), (1, 10), (2, 0)]),
            (.restForOne, [(1, 10), (2, 0)]),
        ]
        for (strategy, restarts) in expected {
            let (cell, children) = self.supervisorCell(strategy)
            let request = self.fixture.envelope(CellFixture.request("t.1"), from: .orchestrator, to: CellFixture.supervisor, mode: .atMostOnce)
            let forwarded = cell.deliver(request, CellFixture.context(seq: 1, clock: clock))
            XCTAssertEqual(forwarded.messages.first?.recipient, children[1])
            let crash = self.fixture.envelope(
                .taskError(TaskError(code: .agentCrashed, message: "threw", retryable: true)), from: children[1], to: CellFixture.supervisor,
                correlation: request.correlationID, parent: forwarded.messages[0].id)
            let delivery = cell.deliver(crash, CellFixture.context(seq: 2, clock: clock))
            XCTAssertEqual(
                delivery.actions, restarts.map { Delivery.Action.restart(children[$0.0], untilMilliseconds: clock + $0.1) }, "\(strategy)")
            XCTAssertEqual(delivery.cancelledTimers, [request.correlationID], "\(strategy): the task's timeout is forgotten")
            // at_most_once: answered, not retried.
            XCTAssertEqual(delivery.messages.map(\.recipient), [.orchestrator], "\(strategy)")
            XCTAssertEqual(delivery.messages.map { errorCode($0) }, ["agent_crashed"])
            XCTAssertEqual(cell.state.restarts, restarts.count)
        }
    }

    /// After a crash, at_least_once and exactly_once are re-sent as a timer due after the
    /// crashed child's backoff, with a new id (the crashed attempt was delivered) and
    /// `retry_count` one higher, plus a new timeout timer behind it.
    func testACrashRetryIsATimerAfterTheBackoffWithANewID() {
        for mode in [DeliveryMode.atLeastOnce, .exactlyOnce] {
            let (cell, children) = self.supervisorCell(.oneForOne)
            let request = self.fixture.envelope(CellFixture.request("t.0", maxTime: 500), from: .orchestrator, to: CellFixture.supervisor, mode: mode)
            let forwarded = cell.deliver(request, CellFixture.context(seq: 1))
            let crash = self.fixture.envelope(
                .taskError(TaskError(code: .agentCrashed, message: "threw", retryable: true)), from: children[0], to: CellFixture.supervisor,
                correlation: request.correlationID)
            let delivery = cell.deliver(crash, CellFixture.context(seq: 2, clock: CellFixture.clock + 3))
            XCTAssertEqual(delivery.messages.count, 2, "\(mode): the retry and its timeout")
            let retry = delivery.messages[0]
            XCTAssertEqual(retry.recipient, children[0])
            XCTAssertEqual(retry.payload, request.payload)
            XCTAssertEqual(retry.retryCount, 1)
            XCTAssertEqual(retry.timestampMilliseconds, CellFixture.clock + 3 + 10, "due after the backoff")
            XCTAssertNotEqual(retry.id, forwarded.messages[0].id)
            let timeout = delivery.messages[1]
            XCTAssertEqual(timeout.recipient, CellFixture.supervisor)
            XCTAssertEqual(errorCode(timeout), "timeout")
            XCTAssertEqual(timeout.retryCount, 1, "it guards the new attempt")
            XCTAssertEqual(timeout.timestampMilliseconds, CellFixture.clock + 3 + 10 + 500)
        }
    }

    /// A timeout re-sends exactly_once under the id of the first forward (so the log's id
    /// index refuses it if the first copy was delivered), at_least_once under a new id, and
    /// answers at_most_once `timeout`. A timer of an earlier attempt does nothing.
    func testATimeoutRetryFollowsTheDeliveryMode() {
        for mode in DeliveryMode.allCases {
            let (cell, children) = self.supervisorCell(.oneForOne)
            let request = self.fixture.envelope(CellFixture.request("t.2", maxTime: 200), from: .orchestrator, to: CellFixture.supervisor, mode: mode)
            let forwarded = cell.deliver(request, CellFixture.context(seq: 1))
            XCTAssertEqual(forwarded.messages.count, 2)
            let timer = forwarded.messages[1]
            XCTAssertEqual(timer.timestampMilliseconds, CellFixture.clock + 200, "\(mode): the timeout is due after max_execution_time_ms")
            XCTAssertEqual(timer.priority, .high)
            let fired = cell.deliver(timer, CellFixture.context(seq: 2, clock: CellFixture.clock + 200))
            switch mode {
            case .atMostOnce:
                XCTAssertEqual(fired.messages.map(\.recipient), [.orchestrator])
                XCTAssertEqual(fired.messages.map { errorCode($0) }, ["timeout"])
            case .atLeastOnce, .exactlyOnce:
                XCTAssertEqual(fired.messages.map(\.recipient), [children[2], CellFixture.supervisor])
                let retry = fired.messages[0]
                XCTAssertEqual(retry.retryCount, 1)
                if mode == .exactlyOnce {
                    XCTAssertEqual(retry.id, forwarded.messages[0].id, "exactly_once: the same id, for the log's dedupe")
                } else {
                    XCTAssertNotEqual(retry.id, forwarded.messages[0].id)
                }
                XCTAssertEqual(cell.deliver(timer, CellFixture.context(seq: 3, clock: CellFixture.clock + 201)).messages, [], "a stale timer does nothing")
            }
        }
    }

    /// Past the intensity: every held task is answered, every child stopped, the orchestrator
    /// told by a critical `supervisor_escalated` message.
    func testEscalationAnswersEveryHeldTaskStopsTheChildrenAndTellsTheOrchestrator() {
        let (cell, children) = self.supervisorCell(.oneForOne, intensity: 0)
        let first = self.fixture.envelope(CellFixture.request("t.0"), from: .orchestrator, to: CellFixture.supervisor)
        let second = self.fixture.envelope(CellFixture.request("t.1"), from: .orchestrator, to: CellFixture.supervisor)
        _ = cell.deliver(first, CellFixture.context(seq: 1))
        _ = cell.deliver(second, CellFixture.context(seq: 2))
        let crash = self.fixture.envelope(
            .taskError(TaskError(code: .agentCrashed, message: "threw", retryable: true)), from: children[0], to: CellFixture.supervisor,
            correlation: first.correlationID)
        let delivery = cell.deliver(crash, CellFixture.context(seq: 3))
        XCTAssertEqual(delivery.actions, children.map { Delivery.Action.stop($0) })
        let answers = delivery.messages.filter { $0.parentID != nil }
        XCTAssertEqual(Set(answers.map(\.correlationID)), [first.correlationID, second.correlationID])
        XCTAssertTrue(answers.allSatisfy { $0.recipient == .orchestrator && errorCode($0) == "agent_crashed" })
        let escalation = delivery.messages.filter { errorCode($0) == "supervisor_escalated" }
        XCTAssertEqual(escalation.count, 1)
        XCTAssertEqual(escalation.first?.recipient, .orchestrator)
        XCTAssertEqual(escalation.first?.priority, .critical)
        XCTAssertTrue(cell.state.inFlight.isEmpty)
        XCTAssertEqual(cell.state.budget.slotsInUse, 0, "every slot is released")
    }

    // MARK: Cancellation as cell deliveries

    /// The orchestrator answers a cancel once and sends it down (critical); a second cancel, or
    /// the supervisor's late answer, adds nothing: at most one terminal answer per task.
    func testACancelIsAnsweredOnceAndPassedDown() {
        let cell = MachineCell(Orchestrator())
        let request = self.fixture.envelope(CellFixture.request("tasks.create"), from: CellFixture.client, to: .orchestrator)
        let routed = cell.deliver(request, CellFixture.context(seq: 1))
        let supervisor = routed.messages[0].recipient
        let cancel = self.fixture.envelope(
            .taskError(TaskError(code: .cancelled, message: "stop", retryable: false)), from: CellFixture.client, to: .orchestrator,
            correlation: request.correlationID)
        let delivery = cell.deliver(cancel, CellFixture.context(seq: 2))
        XCTAssertEqual(delivery.messages.map(\.recipient), [CellFixture.client, supervisor])
        XCTAssertEqual(delivery.messages.map { errorCode($0) }, ["cancelled", "cancelled"])
        XCTAssertEqual(delivery.messages[0].parentID, request.id, "the client's answer answers its request")
        XCTAssertEqual(delivery.messages[1].priority, .critical)
        XCTAssertEqual(delivery.messages[1].correlationID, request.correlationID)
        XCTAssertEqual(cell.deliver(cancel, CellFixture.context(seq: 3)).messages, [], "cancelled twice: nothing more")
        let late = self.fixture.envelope(
            .taskResponse(TaskResponse(status: .completed)), from: supervisor, to: .orchestrator, correlation: request.correlationID)
        XCTAssertEqual(cell.deliver(late, CellFixture.context(seq: 4)).messages, [], "a late answer is dropped")
        XCTAssertEqual(cell.state.cancelled, 1)
        XCTAssertEqual(cell.state.answered, 0)
    }

    // MARK: Derived ids

    /// The runtime names its own answers by deriving an id from the refused message's id: a
    /// pure function of (id, tag), a UUIDv7 of the same millisecond, never the id itself.
    func testDerivedIDsAreStableUUIDv7sOfTheSameMillisecond() {
        var ids: [MessageID] = []
        for _ in 0..<200 { ids.append(self.fixture.envelope(.ping(Ping(nonce: 0)), from: CellFixture.client, to: .orchestrator).id) }
        var derived: Set<MessageID> = []
        for id in ids {
            let a = id.derived(tag: 0x7265_6675_7365_6400)
            XCTAssertEqual(a, id.derived(tag: 0x7265_6675_7365_6400))
            XCTAssertNotEqual(a, id)
            XCTAssertNotEqual(a, id.derived(tag: 0x6677_6400))
            XCTAssertTrue(a.isUUIDv7)
            XCTAssertEqual(a.unixMilliseconds, id.unixMilliseconds)
            derived.insert(a)
        }
        XCTAssertEqual(derived.count, ids.count, "different messages, different derived ids")
        XCTAssertTrue(derived.isDisjoint(with: ids))
    }
}

/// A minimal machine that counts what it handles and answers task_errors it receives with
/// nothing: used to see whether the gate or the step decided.
private struct ClientlessEcho: StateMachine {
    static let me = Address("client.cellecho@v1.0")
    var address: Address { Self.me }
    var stateFormatVersion: UInt32 { 1 }
    func initialState() -> Int { 0 }
    func step(_ state: inout Int, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect] {
        state += 1
        return []
    }
    func encodeState(_ state: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: state)] }
    func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> Int {
        guard let first = bytes.first, bytes.count == 1 else { throw StateDecodingError("1 byte") }
        return Int(first)
    }
    func describeState(_ state: Int) -> MCPValue { .int(Int64(state)) }
}

private enum ClientOutcome {
    static func completed(_ envelope: Envelope) -> Bool {
        if case .taskResponse(let response) = envelope.payload { return response.status == .completed }
        return false
    }
}
