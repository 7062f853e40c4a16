import CartritaCodec
import CartritaEnvelope
@testable import CartritaRuntime
import XCTest

/// The snapshot codecs of the orchestrator and the domain supervisors: a state populated by the
/// real steps comes back equal and re-encodes to the same bytes; bad bytes are refused with a
/// `StateDecodingError`, never a trap.
final class StateCodecTests: XCTestCase {
    var entropy = SplitMix64(seed: 41)
    var ids = UUIDv7Generator()
    let client = Address("client.test@v1.0")
    let system = Address("supervisor.system@v1.0")
    let sage = Address("agent.datasage@v1.0")
    let tasks = Address("agent.taskmanagement@v1.0")

    // MARK: Helpers

    func envelope(
        _ payload: Payload, from sender: Address, to recipient: Address, correlation: MessageID? = nil, parent: MessageID? = nil,
        mode: DeliveryMode = .atLeastOnce
    ) -> Envelope {
        let id = self.ids.next(milliseconds: 1_764_000_000_000, entropy: &self.entropy)
        return Envelope(
            id: id, parentID: parent, correlationID: correlation ?? id, sender: sender, recipient: recipient,
            timestampMilliseconds: 1_764_000_000_000, ttlMilliseconds: 30_000, priority: .high,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), userID: "u1"),
            payload: payload, deliveryMode: mode, maxRetries: 2)
    }

    func request(_ type: String, maxCost: Double? = nil) -> Payload {
        .taskRequest(TaskRequest(task: TaskSpec(type: type, constraints: maxCost.map { TaskConstraints(maxCostUSD: $0) })))
    }

    func context(_ clock: Int64 = 1_764_000_000_000) -> DeliveryContext {
        DeliveryContext(seq: 1, clockMilliseconds: clock, entropy: 5)
    }

    func supervisor(policy: SupervisionPolicy = SupervisionPolicy(strategy: .oneForOne, intensity: 10, backoffBaseMilliseconds: 10)) -> DomainSupervisor {
        DomainSupervisor(
            address: self.system,
            agents: [
                .init(address: self.sage, taskTypes: ["data.csv-stats"]),
                .init(address: self.tasks, taskTypes: ["tasks.create", "tasks.list"]),
            ],
            policy: policy, maxConcurrentTasks: 8, tokenBudget: 1_000, costBudgetUSD: 1)
    }

    /// An orchestrator state with pending tasks, answered, unknown and cancelled counts.
    func populatedOrchestrator() -> (Orchestrator, Orchestrator.State, [Envelope]) {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        var requests: [Envelope] = []
        for type in ["data.csv-stats", "llm.chat", "vision.classify", "astrology.horoscope", "tasks.create"] {
            let request = self.envelope(self.request(type), from: self.client, to: .orchestrator)
            requests.append(request)
            _ = orchestrator.step(&state, request, self.context())
        }
        let answer = self.envelope(
            .taskResponse(TaskResponse(status: .completed, result: .map(["rows": 3, "mean": 0.1]))),
            from: self.system, to: .orchestrator, correlation: requests[0].correlationID, parent: requests[0].id)
        _ = orchestrator.step(&state, answer, self.context())
        state.cancelled = 2  // no step sets it yet; it is stored all the same
        return (orchestrator, state, requests)
    }

    /// A supervisor state with every field away from its initial value: tasks in flight with cost
    /// reservations, a grant, a settled answer, a crash with its restart, a refusal, paused.
    func populatedSupervisor() -> (DomainSupervisor, DomainSupervisor.State, [Envelope]) {
        let supervisor = self.supervisor()
        var state = supervisor.initialState()
        let first = self.envelope(self.request("data.csv-stats", maxCost: 0.1), from: .orchestrator, to: self.system)
        let second = self.envelope(self.request("tasks.list", maxCost: 0.2), from: .orchestrator, to: self.system)
        let third = self.envelope(self.request("data.csv-stats", maxCost: 0.3), from: .orchestrator, to: self.system)
        for request in [first, second, third] { _ = supervisor.step(&state, request, self.context()) }
        for (agent, request, tokens) in [(self.sage, first, Int64(300)), (self.tasks, second, Int64(200))] {
            let ask = self.envelope(
                .resourceRequest(ResourceRequest(forCorrelationID: request.correlationID, amounts: ResourceAmounts(tokens: tokens))),
                from: agent, to: self.system, correlation: request.correlationID, parent: request.id)
            _ = supervisor.step(&state, ask, self.context())
        }
        let answer = self.envelope(
            .taskResponse(TaskResponse(status: .completed, result: 1, metrics: TaskMetrics(costUSD: 0.07, tokensUsed: 120))),
            from: self.sage, to: self.system, correlation: first.correlationID, parent: first.id)
        _ = supervisor.step(&state, answer, self.context())
        let crash = self.envelope(
            .taskError(TaskError(code: .agentCrashed, message: "boom", retryable: true)),
            from: self.sage, to: self.system, correlation: third.correlationID, parent: third.id)
        _ = supervisor.step(&state, crash, self.context(1_764_000_001_000))
        _ = supervisor.step(&state, self.envelope(self.request("data.nope"), from: .orchestrator, to: self.system), self.context())
        supervisor.setPaused(true, &state)
        state.cancelled = 4  // no step sets these yet; they are stored all the same
        state.timedOut = 5
        return (supervisor, state, [first, second, third])
    }

    /// The message of the `StateDecodingError` the body throws; fails on success or another error.
    func refusal<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try body()
            XCTFail("decoded bytes that should be refused", file: file, line: line)
        } catch let error as StateDecodingError {
            return error.message
        } catch {
            XCTFail("not a StateDecodingError: \(error)", file: file, line: line)
        }
        return ""
    }

    /// The snapshot with its top-level map edited, encoded again.
    func edited(_ bytes: [UInt8], _ edit: (inout [MCPValue.MapEntry]) -> Void) throws -> [UInt8] {
        guard case .map(var entries) = try EnvelopeDecoder().decodeValue(bytes) else {
            XCTFail("a snapshot is a map")
            return []
        }
        edit(&entries)
        return Self.bytes(.map(entries))
    }

    static func bytes(_ value: MCPValue) -> [UInt8] {
        let writer = MsgPackWriter()
        writer.write(value)
        return writer.bytes
    }

    static func set(_ key: String, _ value: MCPValue, in entries: inout [MCPValue.MapEntry]) {
        guard let index = entries.firstIndex(where: { $0.key == key }) else { return XCTFail("no key \(key)") }
        entries[index].value = value
    }

    static func keys(_ value: MCPValue?) -> [String] {
        guard case .map(let entries)? = value else { return [] }
        return entries.map(\.key)
    }

    static func containsBinary(_ value: MCPValue) -> Bool {
        switch value {
        case .binary: true
        case .array(let items): items.contains { Self.containsBinary($0) }
        case .map(let entries): entries.contains { Self.containsBinary($0.value) }
        default: false
        }
    }

    /// The first entry of an array value that matches.
    static func entry(_ value: MCPValue?, where matches: (MCPValue) -> Bool) -> MCPValue? {
        guard case .array(let items)? = value else { return nil }
        return items.first(where: matches)
    }

    static func first(_ value: MCPValue?) -> MCPValue? {
        guard case .array(let items)? = value else { return nil }
        return items.first
    }

    // MARK: Round trips

    func testAPopulatedOrchestratorStateRoundTripsExactly() throws {
        let (orchestrator, state, requests) = self.populatedOrchestrator()
        XCTAssertEqual(orchestrator.stateFormatVersion, 2)
        XCTAssertEqual(state.pending.count, 3, "two routed tasks are still pending besides the answered one")
        XCTAssertEqual([state.routed, state.unknown, state.answered, state.cancelled], [4, 1, 1, 2])

        let bytes = orchestrator.encodeState(state)
        let restored = try orchestrator.decodeState(bytes)
        XCTAssertEqual(restored, state)
        XCTAssertEqual(restored.pending.map(\.request), state.pending.map(\.request), "envelopes come back whole")
        XCTAssertEqual(orchestrator.encodeState(restored), bytes, "re-encoding gives the same bytes")

        // The restored state behaves as the original: same effects, same next state.
        let answer = self.envelope(
            .taskError(TaskError(code: .invalidInput, message: "x", retryable: false)),
            from: Address("supervisor.intelligence@v1.0"), to: .orchestrator, correlation: requests[1].correlationID)
        var original = state
        var copy = restored
        XCTAssertEqual(orchestrator.step(&copy, answer, self.context()), orchestrator.step(&original, answer, self.context()))
        XCTAssertEqual(copy, original)
        XCTAssertEqual(orchestrator.encodeState(copy), orchestrator.encodeState(original))
    }

    func testAnEmptyOrchestratorStateRoundTrips() throws {
        let orchestrator = Orchestrator()
        let bytes = orchestrator.encodeState(Orchestrator.State())
        XCTAssertEqual(try orchestrator.decodeState(bytes), Orchestrator.State())
    }

    func testAPopulatedSupervisorStateRoundTripsExactly() throws {
        let (supervisor, state, requests) = self.populatedSupervisor()
        XCTAssertEqual(supervisor.stateFormatVersion, 2)
        // The scenario reached every field, so the round trip below is not comparing defaults.
        // The table's order follows its history (a removal moves the last entry into the hole).
        let flights = state.inFlight.sorted { $0.agent < $1.agent }
        XCTAssertEqual(flights.map(\.agent), [self.sage, self.tasks])
        XCTAssertEqual(flights.map(\.retries), [1, 0], "the crashed task is retried once")
        XCTAssertEqual(state.grants.map(\.forCorrelationID), [requests[1].correlationID])
        XCTAssertEqual(state.supervision.restartTimes, [1_764_000_001_000])
        XCTAssertEqual(state.supervision.consecutiveCrashes, [1, 0])
        XCTAssertEqual(state.budget.slotsInUse, 2)
        XCTAssertEqual(state.budget.tokensReserved, 200)
        XCTAssertEqual(state.budget.tokensSpent, 120)
        XCTAssertNotEqual(state.budget.costReservedUSD, 0)
        XCTAssertEqual(state.budget.costSpentUSD, 0.07)
        XCTAssertEqual([state.completed, state.failed, state.restarts, state.cancelled, state.timedOut], [1, 1, 1, 4, 5])
        XCTAssertTrue(state.paused)

        let bytes = supervisor.encodeState(state)
        let restored = try supervisor.decodeState(bytes)
        XCTAssertEqual(restored, state)
        XCTAssertEqual(restored.budget.costReservedUSD.bitPattern, state.budget.costReservedUSD.bitPattern, "float64, bit for bit")
        XCTAssertEqual(restored.budget.costSpentUSD.bitPattern, state.budget.costSpentUSD.bitPattern)
        XCTAssertEqual(restored.inFlight.map(\.reserved), state.inFlight.map(\.reserved))
        XCTAssertEqual(restored.supervision.policy, supervisor.policy)
        XCTAssertEqual(supervisor.encodeState(restored), bytes, "re-encoding gives the same bytes")

        // The restored state goes on exactly as the original would.
        var original = state
        var copy = restored
        supervisor.setPaused(false, &original)
        supervisor.setPaused(false, &copy)
        let answer = self.envelope(
            .taskResponse(TaskResponse(status: .completed, metrics: TaskMetrics(costUSD: 0.15, tokensUsed: 150))),
            from: self.tasks, to: self.system, correlation: requests[1].correlationID, parent: requests[1].id)
        let crash = self.envelope(
            .taskError(TaskError(code: .agentCrashed, message: "again", retryable: true)),
            from: self.sage, to: self.system, correlation: requests[2].correlationID, parent: requests[2].id)
        for message in [answer, crash, self.envelope(self.request("tasks.create", maxCost: 0.25), from: .orchestrator, to: self.system)] {
            XCTAssertEqual(supervisor.step(&copy, message, self.context(1_764_000_002_000)), supervisor.step(&original, message, self.context(1_764_000_002_000)))
            XCTAssertEqual(copy, original)
        }
        XCTAssertEqual(supervisor.encodeState(copy), supervisor.encodeState(original))
    }

    func testAnEscalatedSupervisorRoundTrips() throws {
        let supervisor = self.supervisor(policy: SupervisionPolicy(strategy: .oneForAll, intensity: 1, periodMilliseconds: 1_000))
        var state = supervisor.initialState()
        let request = self.envelope(self.request("data.csv-stats"), from: .orchestrator, to: self.system)
        _ = supervisor.step(&state, request, self.context())
        let crash = self.envelope(
            .taskError(TaskError(code: .agentCrashed, message: "boom", retryable: true)),
            from: self.sage, to: self.system, correlation: request.correlationID, parent: request.id)
        _ = supervisor.step(&state, crash, self.context(10))
        _ = supervisor.step(&state, crash, self.context(20))
        XCTAssertTrue(state.supervision.escalated)

        let restored = try supervisor.decodeState(supervisor.encodeState(state))
        XCTAssertEqual(restored, state)
        XCTAssertTrue(restored.supervision.escalated)
        XCTAssertEqual(restored.supervision.consecutiveCrashes, state.supervision.consecutiveCrashes)
    }

    func testThePolicyAndTheLimitsComeFromTheSupervisorNotTheSnapshot() throws {
        let (supervisor, state, _) = self.populatedSupervisor()
        let other = DomainSupervisor(
            address: self.system, agents: [.init(address: self.sage, taskTypes: ["data.csv-stats"])],
            policy: SupervisionPolicy(strategy: .restForOne, intensity: 7), maxConcurrentTasks: 3, tokenBudget: 77, costBudgetUSD: 9)
        let restored = try other.decodeState(supervisor.encodeState(state))
        XCTAssertEqual(restored.supervision.policy, other.policy)
        XCTAssertEqual(restored.supervision.children, [self.sage], "the children are configuration")
        XCTAssertEqual(restored.supervision.consecutiveCrashes, [1], "with the crash count the snapshot had for each")
        XCTAssertEqual([restored.budget.maxConcurrentTasks, restored.budget.tokenBudget], [3, 77])
        XCTAssertEqual(restored.budget.costBudgetUSD, 9)
        XCTAssertEqual(restored.budget.slotsInUse, state.budget.slotsInUse)
        XCTAssertEqual(restored.inFlight, state.inFlight)
    }

    /// A pool that grew since the snapshot: the added agent is a child like the others, so its
    /// crash restarts it (from the snapshot's list alone it was "not ours", never restarted),
    /// and the crash counts of the children the snapshot knew carry over.
    func testAnAgentAddedToThePoolAfterTheSnapshotIsSupervised() throws {
        let (supervisor, state, _) = self.populatedSupervisor()
        let added = Address("agent.datasage.2@v1.0")
        let grown = DomainSupervisor(
            address: self.system,
            agents: [
                .init(address: self.sage, taskTypes: ["data.csv-stats"]),
                .init(address: self.tasks, taskTypes: ["tasks.create", "tasks.list"]),
                .init(address: added, taskTypes: ["data.csv-stats"]),
            ],
            policy: SupervisionPolicy(strategy: .oneForOne, intensity: 10, backoffBaseMilliseconds: 10), maxConcurrentTasks: 8,
            tokenBudget: 1_000, costBudgetUSD: 1)
        var restored = try grown.decodeState(supervisor.encodeState(state))
        XCTAssertEqual(restored.supervision.children, [self.sage, self.tasks, added])
        XCTAssertEqual(restored.supervision.consecutiveCrashes, [1, 0, 0])
        XCTAssertEqual(restored.supervision.restartTimes, state.supervision.restartTimes)
        let decision = restored.supervision.childCrashed(added, atMilliseconds: 1_764_000_003_000)
        XCTAssertEqual(decision, .restart([(child: added, afterMilliseconds: Int64(10))]))
    }

    // MARK: Same state, same bytes

    func testEqualStatesGiveEqualBytes() {
        let one = self.populatedSupervisor()
        self.entropy = SplitMix64(seed: 41)
        self.ids = UUIDv7Generator()
        let two = self.populatedSupervisor()
        XCTAssertEqual(one.1, two.1, "the scenario is deterministic")
        XCTAssertEqual(one.0.encodeState(one.1), two.0.encodeState(two.1))
        XCTAssertEqual(one.0.encodeState(one.1), one.0.encodeState(one.1))

        self.entropy = SplitMix64(seed: 41)
        self.ids = UUIDv7Generator()
        let first = self.populatedOrchestrator()
        self.entropy = SplitMix64(seed: 41)
        self.ids = UUIDv7Generator()
        let second = self.populatedOrchestrator()
        XCTAssertEqual(first.0.encodeState(first.1), second.0.encodeState(second.1))
    }

    /// The orchestrator's state is written straight into bytes; they are the bytes of its value
    /// tree (`stateValue`), with and without pending requests and heartbeats.
    func testTheOrchestratorsDirectWriterGivesTheValueTreesBytes() {
        let (orchestrator, populated, _) = self.populatedOrchestrator()
        var state = populated
        state.expired = 7
        state.health = [
            Orchestrator.SupervisorHealth(supervisor: self.system, heartbeat: Heartbeat(status: .degraded, queueDepth: 3, inFlight: -1), atMilliseconds: 1_800_000_000_123),
            Orchestrator.SupervisorHealth(supervisor: .orchestrator, heartbeat: Heartbeat(status: .ok), atMilliseconds: -5),
        ]
        for candidate in [state, Orchestrator.State()] {
            XCTAssertEqual(
                orchestrator.encodeState(candidate),
                RuntimeStateFormat.bytes(orchestrator.stateValue(candidate, .snapshot(EnvelopeEncoder()))))
        }
    }

    func testTheWriterIsCanonical() throws {
        // Reading the bytes as a plain value and writing it again changes nothing: no key order,
        // integer width or float width is left to chance.
        let (supervisor, state, _) = self.populatedSupervisor()
        let bytes = supervisor.encodeState(state)
        XCTAssertEqual(try self.edited(bytes) { _ in }, bytes)
        let (orchestrator, pending, _) = self.populatedOrchestrator()
        let orchestratorBytes = orchestrator.encodeState(pending)
        XCTAssertEqual(try self.edited(orchestratorBytes) { _ in }, orchestratorBytes)
    }

    func testAStepThatChangesTheStateChangesTheBytes() {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        let empty = orchestrator.encodeState(state)
        let ping = self.envelope(.ping(Ping(nonce: 1)), from: self.client, to: .orchestrator)
        _ = orchestrator.step(&state, ping, self.context())
        XCTAssertEqual(orchestrator.encodeState(state), empty, "a ping changes nothing")
        _ = orchestrator.step(&state, self.envelope(self.request("llm.chat"), from: self.client, to: .orchestrator), self.context())
        let routed = orchestrator.encodeState(state)
        XCTAssertNotEqual(routed, empty)
        _ = orchestrator.step(&state, self.envelope(self.request("nope.x"), from: self.client, to: .orchestrator), self.context())
        XCTAssertNotEqual(orchestrator.encodeState(state), routed, "a counter alone changes the bytes")

        let (supervisor, populated, requests) = self.populatedSupervisor()
        var supervised = populated
        let before = supervisor.encodeState(supervised)
        let progress = self.envelope(
            .taskProgress(TaskProgress(fraction: 0.5, message: "half")),
            from: self.tasks, to: self.system, correlation: requests[1].correlationID)
        _ = supervisor.step(&supervised, progress, self.context())
        XCTAssertEqual(supervisor.encodeState(supervised), before, "progress passes through without a change")
        let answer = self.envelope(
            .taskResponse(TaskResponse(status: .completed, metrics: TaskMetrics(costUSD: 0.15, tokensUsed: 150))),
            from: self.tasks, to: self.system, correlation: requests[1].correlationID, parent: requests[1].id)
        _ = supervisor.step(&supervised, answer, self.context())
        XCTAssertNotEqual(supervisor.encodeState(supervised), before)
        let settled = supervisor.encodeState(supervised)
        supervisor.setPaused(false, &supervised)
        XCTAssertNotEqual(supervisor.encodeState(supervised), settled, "the paused flag alone changes the bytes")
    }

    // MARK: Bad bytes are refused, never a trap

    func testTruncatedSnapshotsAreRefused() {
        let (supervisor, state, _) = self.populatedSupervisor()
        let bytes = supervisor.encodeState(state)
        for length in 0..<bytes.count {
            _ = self.refusal(try supervisor.decodeState(Array(bytes.prefix(length))))
        }
        let (orchestrator, pending, _) = self.populatedOrchestrator()
        let orchestratorBytes = orchestrator.encodeState(pending)
        for length in 0..<orchestratorBytes.count {
            _ = self.refusal(try orchestrator.decodeState(Array(orchestratorBytes.prefix(length))))
        }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState([])).contains("orchestrator state"))
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(orchestratorBytes + [0xC0])).contains("not a readable snapshot"))
    }

    func testRandomGarbageIsRefused() {
        let orchestrator = Orchestrator()
        let supervisor = self.supervisor()
        var random = SplitMix64(seed: 2_024)
        for round in 0..<2_000 {
            let count = Int(random.next64() % 96)
            var garbage = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next64()) }
            if round % 2 == 0, !garbage.isEmpty { garbage[0] = 0x80 | UInt8(garbage.count % 16) }  // a map header, to get further in
            _ = self.refusal(try orchestrator.decodeState(garbage))
            _ = self.refusal(try supervisor.decodeState(garbage))
        }
    }

    func testEveryChangedByteIsRefusedOrDecodesToAStateThatRoundTrips() {
        // A flipped byte may still be a valid state (a different count); then it must behave as
        // one. What it must never do is trap.
        let (supervisor, state, _) = self.populatedSupervisor()
        let bytes = supervisor.encodeState(state)
        var refused = 0
        for index in bytes.indices {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var damaged = bytes
                damaged[index] ^= mask
                do {
                    let decoded = try supervisor.decodeState(damaged)
                    XCTAssertEqual(try supervisor.decodeState(supervisor.encodeState(decoded)), decoded, "byte \(index) ^ \(mask)")
                } catch {
                    refused += 1
                }
            }
        }
        XCTAssertGreaterThan(refused, 0, "damage to the structure is noticed")
    }

    func testAnotherFormatOrVersionIsRefusedWithAClearMessage() throws {
        let orchestrator = Orchestrator()
        let (supervisor, state, _) = self.populatedSupervisor()
        let supervisorBytes = supervisor.encodeState(state)
        let orchestratorBytes = orchestrator.encodeState(self.populatedOrchestrator().1)

        XCTAssertTrue(self.refusal(try orchestrator.decodeState(supervisorBytes)).contains("cartrita.domain_supervisor.state"))
        XCTAssertTrue(self.refusal(try supervisor.decodeState(orchestratorBytes)).contains("cartrita.orchestrator.state"))

        let newer = try self.edited(orchestratorBytes) { Self.set("version", 3, in: &$0) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(newer)).contains("format version 3"))
        // Version 1 (no `expired`) still decodes; with version 2's keys it is refused by key.
        let older = try self.edited(orchestratorBytes) { Self.set("version", 1, in: &$0) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(older)).contains("expired"), "version 1 had no `expired`")
        let version1 = try self.edited(orchestratorBytes) { entries in
            Self.set("version", 1, in: &entries)
            entries.removeAll { $0.key == "expired" }
        }
        var asVersion1 = try orchestrator.decodeState(orchestratorBytes)
        asVersion1.expired = 0
        XCTAssertEqual(try orchestrator.decodeState(version1), asVersion1, "a version-1 snapshot reads with expired 0")
        let textVersion = try self.edited(orchestratorBytes) { Self.set("version", "1", in: &$0) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(textVersion)).contains("version"))

        let noFormat = try self.edited(orchestratorBytes) { $0.removeFirst() }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(noFormat)).contains("\"format\""))
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(Self.bytes([1, 2, 3]))).contains("not a map"))
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(Self.bytes(.map(["format": 7])))).contains("format"))
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(Array("CTMS\u{1}".utf8))).contains("orchestrator state"))
    }

    /// Format 2 added who paused a supervisor and why. Format 1 snapshots still decode (paused
    /// by nobody named); a newer version, or a version 1 map with the new keys, is refused.
    func testSupervisorFormat1StillDecodesAndFormat2KeepsWhoPaused() throws {
        let (supervisor, populated, _) = self.populatedSupervisor()
        var state = populated
        supervisor.setPaused(true, &state, by: "ops-admin", reason: "incident 42")
        let bytes = supervisor.encodeState(state)
        let restored = try supervisor.decodeState(bytes)
        XCTAssertEqual(restored.pausedBy, "ops-admin")
        XCTAssertEqual(restored.pauseReason, "incident 42")
        XCTAssertEqual(restored, state)

        let version1 = try self.edited(bytes) { entries in
            entries.removeAll { $0.key == "paused_by" || $0.key == "pause_reason" }
            Self.set("version", 1, in: &entries)
        }
        let old = try supervisor.decodeState(version1)
        XCTAssertTrue(old.paused)
        XCTAssertNil(old.pausedBy)
        var expected = state
        expected.pausedBy = nil
        expected.pauseReason = nil
        XCTAssertEqual(old, expected)
        XCTAssertEqual(supervisor.encodeState(old).count, version1.count + "paused_by".count + "pause_reason".count + 4, "re-encoded as format 2")

        let version1WithNewKeys = try self.edited(bytes) { Self.set("version", 1, in: &$0) }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(version1WithNewKeys)).contains("paused_by"))
        let version3 = try self.edited(bytes) { Self.set("version", 3, in: &$0) }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(version3)).contains("format version 3; this build reads version 1, 2"))
        var resumed = state
        supervisor.setPaused(false, &resumed)
        let byWithoutPause = try self.edited(supervisor.encodeState(resumed)) { Self.set("paused_by", "someone", in: &$0) }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(byWithoutPause)).contains("paused_by"))
        let numberBy = try self.edited(bytes) { Self.set("paused_by", 7, in: &$0) }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(numberBy)).contains("paused_by"))
    }

    func testWrongFieldsAreRefusedByName() throws {
        let orchestrator = Orchestrator()
        let orchestratorBytes = orchestrator.encodeState(self.populatedOrchestrator().1)
        let (supervisor, state, _) = self.populatedSupervisor()
        let bytes = supervisor.encodeState(state)

        let extra = try self.edited(orchestratorBytes) { $0.append(MCPValue.MapEntry("shadow", 1)) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(extra)).contains("shadow"))
        let swapped = try self.edited(orchestratorBytes) { $0.swapAt(3, 4) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(swapped)).contains("expected [format, version, pending, routed"))
        let negative = try self.edited(orchestratorBytes) { Self.set("answered", -1, in: &$0) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(negative)).contains("answered"))
        let text = try self.edited(orchestratorBytes) { Self.set("routed", "4", in: &$0) }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(text)).contains("routed: expected an integer"))
        let badEnvelope = try self.edited(orchestratorBytes) {
            Self.set("pending", [.map(["request": .binary([0x80]), "supervisor": "supervisor.system@v1.0"])], in: &$0)
        }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(badEnvelope)).contains("pending[0].request"))
        let badAddress = try self.edited(orchestratorBytes) {
            guard let index = $0.firstIndex(where: { $0.key == "pending" }), case .array(var rows) = $0[index].value,
                case .map(var row) = rows[0]
            else { return XCTFail() }
            row[1].value = "Not An Address"
            rows[0] = .map(row)
            $0[index].value = .array(rows)
        }
        XCTAssertTrue(self.refusal(try orchestrator.decodeState(badAddress)).contains("pending[0].supervisor"))

        let floatCost = try self.edited(bytes) {
            guard let index = $0.firstIndex(where: { $0.key == "budget" }), case .map(var budget) = $0[index].value else { return XCTFail() }
            budget[4].value = .float(0.07)
            $0[index].value = .map(budget)
        }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(floatCost)).contains("budget.cost_spent_usd: expected a float64"))
        let lostCrashCount = try self.edited(bytes) {
            guard let index = $0.firstIndex(where: { $0.key == "supervision" }), case .map(var supervision) = $0[index].value else { return XCTFail() }
            supervision[2].value = [1]
            $0[index].value = .map(supervision)
        }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(lostCrashCount)).contains("1 counts for 2 children"))
        let emptyBudget = try self.edited(bytes) {
            guard let index = $0.firstIndex(where: { $0.key == "budget" }), case .map(var budget) = $0[index].value else { return XCTFail() }
            budget[0].value = 0
            $0[index].value = .map(budget)
        }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(emptyBudget)).contains("budget"), "settling it later would go below zero")
        let shortID = try self.edited(bytes) {
            Self.set("grants", [.map(["for_correlation_id": .binary([1, 2, 3]), "amounts": .map(["tokens": 1, "cost_usd": nil, "concurrency_slots": nil, "memory_mb": nil]), "lease_ms": nil])], in: &$0)
        }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(shortID)).contains("grants[0].for_correlation_id"))
        let hugeRetries = try self.edited(bytes) {
            guard let index = $0.firstIndex(where: { $0.key == "in_flight" }), case .array(var rows) = $0[index].value,
                case .map(var row) = rows[0]
            else { return XCTFail() }
            row[3].value = .int(Int64(Int32.max) + 1)
            rows[0] = .map(row)
            $0[index].value = .array(rows)
        }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(hugeRetries)).contains("in_flight[0].retries"))
        let textPaused = try self.edited(bytes) { Self.set("paused", "yes", in: &$0) }
        XCTAssertTrue(self.refusal(try supervisor.decodeState(textPaused)).contains("paused"))
        XCTAssertTrue(self.refusal(try supervisor.decodeState(textPaused)).hasPrefix("supervisor.system@v1.0 state: "), "the message names the actor")
    }

    // MARK: Display

    func testDescribeStateShowsEveryFieldReadably() throws {
        let (orchestrator, state, requests) = self.populatedOrchestrator()
        let shown = orchestrator.describeState(state)
        XCTAssertEqual(Self.keys(shown), ["format", "version", "pending", "routed", "unknown", "answered", "cancelled", "expired", "health"])
        XCTAssertEqual(shown["routed"], 4)
        XCTAssertEqual(shown["cancelled"], 2)
        let pending = Self.entry(shown["pending"]) { $0["request"]?["id"] == .string(requests[1].id.description) }
        XCTAssertEqual(Self.keys(pending), ["request", "supervisor"])
        let request = pending?["request"]
        XCTAssertEqual(Self.keys(request), ["id", "correlation_id", "sender", "type", "task_type"])
        XCTAssertEqual(request?["id"], .string(requests[1].id.description))
        XCTAssertEqual(request?["correlation_id"], .string(requests[1].correlationID.description))
        XCTAssertEqual(request?["sender"], "client.test@v1.0")
        XCTAssertEqual(request?["type"], "task_request")
        XCTAssertEqual(request?["task_type"], "llm.chat")
        XCTAssertEqual(pending?["supervisor"], "supervisor.intelligence@v1.0")
        XCTAssertFalse(Self.containsBinary(shown), "nothing is shown as raw bytes")

        let (supervisor, supervised, supervisedRequests) = self.populatedSupervisor()
        let view = supervisor.describeState(supervised)
        XCTAssertEqual(
            Self.keys(view),
            ["format", "version", "supervision", "budget", "in_flight", "grants", "paused", "paused_by", "pause_reason", "completed", "failed",
             "restarts", "cancelled", "timed_out"])
        XCTAssertEqual(Self.keys(view["supervision"]), ["children", "restart_times", "consecutive_crashes", "escalated"])
        XCTAssertEqual(view["supervision"]?["children"], ["agent.datasage@v1.0", "agent.taskmanagement@v1.0"])
        XCTAssertEqual(
            Self.keys(view["budget"]),
            ["slots_in_use", "tokens_reserved", "tokens_spent", "cost_reserved_usd", "cost_spent_usd", "max_concurrent_tasks", "token_budget", "cost_budget_usd"])
        XCTAssertEqual(view["budget"]?["cost_spent_usd"], .double(0.07))
        XCTAssertEqual(view["budget"]?["token_budget"], 1_000)
        let flight = Self.entry(view["in_flight"]) { $0["request"]?["task_type"] == "tasks.list" }
        XCTAssertEqual(Self.keys(flight), ["request", "agent", "reserved", "retries"])
        XCTAssertEqual(flight?["request"]?["task_type"], "tasks.list")
        XCTAssertEqual(flight?["request"]?["sender"], "orchestrator@v1.0")
        XCTAssertEqual(Self.keys(flight?["reserved"]), ["tokens", "cost_usd", "concurrency_slots", "memory_mb"])
        XCTAssertEqual(flight?["reserved"]?["concurrency_slots"], 1)
        let grant = Self.first(view["grants"])
        XCTAssertEqual(grant?["for_correlation_id"], .string(supervisedRequests[1].correlationID.description))
        if case .string(let text)? = grant?["for_correlation_id"] {
            XCTAssertEqual(MessageID(string: text), supervisedRequests[1].correlationID, "ids are canonical strings")
        }
        XCTAssertEqual(view["paused"], true)
        XCTAssertEqual(view["timed_out"], 5)
        XCTAssertFalse(Self.containsBinary(view))
    }
}
