import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaAgents

/// SystemMonitor asks the node's `health` service for its report (it may not read the node
/// itself) and answers with what the service said.
final class SystemMonitorTests: XCTestCase {
    let agent = SystemMonitor()
    let context = DeliveryContext(seq: 9, clockMilliseconds: 1_700_000_000_000, entropy: 9)

    func testACheckIsACallToTheHealthServiceForTheSectionsAsked() throws {
        var state = EmptyState()
        guard case .call(let call) = try self.agent.handle(request("system.health_check"), state: &state, context: self.context) else {
            return XCTFail("a health check asks the health service")
        }
        XCTAssertEqual(call.service, "health")
        XCTAssertEqual(call.operation, "report")
        XCTAssertEqual(call.arguments["sections"], .array([.string("supervisors"), .string("log"), .string("indexes")]))
        XCTAssertEqual(call.timeoutMilliseconds, SystemMonitor.reportTimeoutMilliseconds)

        // Asked in any order, with repeats: the canonical order, each once.
        let asked = request("system.health_check", ["sections": .array([.string("indexes"), .string("log"), .string("indexes")])])
        guard case .call(let some) = try self.agent.handle(asked, state: &state, context: self.context) else { return XCTFail() }
        XCTAssertEqual(some.arguments["sections"], .array([.string("log"), .string("indexes")]))
    }

    func testBadParametersAreRefusedWithTheirName() throws {
        var state = EmptyState()
        let cases: [(TaskRequest, String)] = [
            (request("system.health_check", ["sections": .array([.string("disks")])]), "disks"),
            (request("system.health_check", ["sections": .array([])]), "at least one"),
            (request("system.health_check", ["sections": .string("log")]), "sections"),
            (request("system.health_check", ["verbose": .bool(true)]), "verbose"),
            (request("system.reboot"), "system.reboot"),
        ]
        for (bad, named) in cases {
            let outcome = deliver(self.agent, bad, state: &state)
            guard case .failed(let error) = outcome else { XCTFail("\(bad) was not refused: \(outcome)"); continue }
            XCTAssertTrue(error.message.contains(named), "\(error.message) should name \(named)")
            XCTAssertFalse(error.retryable)
        }
    }

    func testTheServicesReportIsTheResultAndItsFailureTheTasksError() throws {
        var state = EmptyState()
        let report = MCPValue.map([MCPValue.MapEntry("healthy", .bool(true)), MCPValue.MapEntry("log", .map([MCPValue.MapEntry("last_seq", .int(42))]))])
        let done = try self.agent.resume(request("system.health_check"), continuation: .null, result: .success(report), state: &state, context: self.context)
        guard case .completed(let result, _) = done else { return XCTFail("\(done)") }
        XCTAssertEqual(result, report)

        let timedOut = try self.agent.resume(
            request("system.health_check"), continuation: .null,
            result: .failure(TaskError(code: .timeout, message: "io.health gave no answer", retryable: true)), state: &state, context: self.context)
        guard case .failed(let error) = timedOut else { return XCTFail("\(timedOut)") }
        XCTAssertEqual(error.code, .timeout)
        XCTAssertTrue(error.retryable)

        let odd = try self.agent.resume(request("system.health_check"), continuation: .null, result: .success(.string("fine")), state: &state, context: self.context)
        guard case .failed(let malformed) = odd else { return XCTFail("\(odd)") }
        XCTAssertEqual(malformed.code, .ioError)
    }

    /// Through the actor step: the call leaves as a request to `io.health@v1.0` carrying the
    /// task, and the gateway's answer comes back as the task's reply to the supervisor.
    func testTheActorSendsTheCallToTheGatewayAndAnswersTheSupervisorWithTheReport() throws {
        let actor = AgentActor(self.agent)
        var state = actor.initialState()
        let task = Envelope(
            id: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001), parentID: nil,
            correlationID: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001), sender: Address("supervisor.system@v1.0"),
            recipient: self.agent.address, broadcast: false, timestampMilliseconds: 1_700_000_000_000, ttlMilliseconds: 60_000, priority: .normal,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)), payload: .taskRequest(request("system.health_check")),
            deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 3)
        let effects = actor.step(&state, task, self.context)
        guard effects.count == 1, case .send(let call) = effects[0] else { return XCTFail("\(effects)") }
        XCTAssertEqual(call.recipient, Address("io.health@v1.0"))
        let callEnvelope = call.envelope(
            id: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0002), sender: self.agent.address, timestampMilliseconds: 1_700_000_000_001)
        let answer = IOWire.answer(to: callEnvelope, result: .success(.map([MCPValue.MapEntry("healthy", .bool(false))])), timestampMilliseconds: 1_700_000_000_002)
        let replies = actor.step(&state, answer, DeliveryContext(seq: 10, clockMilliseconds: 1_700_000_000_002, entropy: 10))
        guard replies.count == 1, case .send(let reply) = replies[0], case .taskResponse(let response) = reply.payload else {
            return XCTFail("\(replies)")
        }
        XCTAssertEqual(reply.recipient, Address("supervisor.system@v1.0"))
        XCTAssertEqual(response.result?["healthy"], .bool(false))
    }
}
