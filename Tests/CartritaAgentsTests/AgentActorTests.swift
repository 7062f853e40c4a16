import CartritaAgents
import CartritaEnvelope
import CartritaRuntime
import XCTest

/// The agents behind the actor step, as a supervisor drives them.
final class AgentActorTests: XCTestCase {
    var entropy = SplitMix64(seed: 5)
    var ids = UUIDv7Generator()
    let supervisor = Address("supervisor.system@v1.0")

    func request(_ type: String, to agent: Address, parameters: [MCPValue.MapEntry] = [], data: MCPValue? = nil) -> Envelope {
        let id = self.ids.next(milliseconds: 1_764_000_000_000, entropy: &self.entropy)
        return Envelope(
            id: id, correlationID: id, sender: self.supervisor, recipient: agent, timestampMilliseconds: 1_764_000_000_000,
            ttlMilliseconds: 30_000, context: MessageContext(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1)),
            payload: .taskRequest(TaskRequest(task: TaskSpec(type: type, parameters: parameters), input: TaskInput(data: data))),
            deliveryMode: .exactlyOnce, maxRetries: 1)
    }

    func reply(_ effects: [Effect]) -> OutgoingMessage? {
        guard effects.count == 1, case .send(let message) = effects[0] else { return nil }
        return message
    }

    func testAStatelessAgentAnswersItsSupervisorOnce() throws {
        let actor = AgentActor(DataSage())
        var state = actor.initialState()
        let request = self.request("data.csv-stats", to: actor.address, data: "a,b\n1,x\n3,y\n")
        let reply = try XCTUnwrap(self.reply(actor.step(&state, request, DeliveryContext(seq: 7, clockMilliseconds: 1, entropy: 2))))
        XCTAssertEqual(reply.recipient, self.supervisor)
        XCTAssertEqual(reply.parentID, request.id)
        XCTAssertEqual(reply.correlationID, request.correlationID)
        guard case .taskResponse(let response) = reply.payload else { return XCTFail("\(reply.payload)") }
        XCTAssertEqual(response.status, .completed)
        XCTAssertEqual(response.result?["rows"], .int(2))
        let envelope = reply.envelope(id: self.ids.next(milliseconds: 1_764_000_000_001, entropy: &self.entropy), sender: actor.address, timestampMilliseconds: 1_764_000_000_001)
        XCTAssertNoThrow(try envelope.validate())
    }

    func testBadInputIsAFailedAnswerNotACrash() throws {
        let actor = AgentActor(LanguageMaestro())
        var state = actor.initialState()
        let reply = try XCTUnwrap(self.reply(actor.step(&state, self.request("text.stats", to: actor.address, data: ""), DeliveryContext(seq: 1, clockMilliseconds: 0, entropy: 0))))
        guard case .taskError(let error) = reply.payload else { return XCTFail("\(reply.payload)") }
        XCTAssertEqual(error.code, .invalidInput)
    }

    /// TaskManagement's state survives a restart: snapshot, restore, and carry on identically.
    func testAStatefulAgentRestoresFromItsSnapshot() throws {
        let actor = AgentActor(TaskManagement())
        var live = actor.initialState()
        for (seq, title) in ["write the log", "fuzz the decoder", "ship"].enumerated() {
            _ = actor.step(&live, self.request("tasks.create", to: actor.address, parameters: [.init("title", .string(title))]),
                           DeliveryContext(seq: UInt64(seq + 1), clockMilliseconds: Int64(seq), entropy: 0))
        }
        let snapshot = actor.snapshot(live)
        var restored = try XCTUnwrap(actor.restore(formatVersion: snapshot.formatVersion, bytes: snapshot.bytes))
        XCTAssertEqual(restored, live)
        XCTAssertNil(actor.restore(formatVersion: snapshot.formatVersion + 1, bytes: snapshot.bytes), "another format is not used")
        XCTAssertNil(actor.restore(formatVersion: snapshot.formatVersion, bytes: Array(snapshot.bytes.dropLast())), "damaged bytes are not used")

        let list = self.request("tasks.list", to: actor.address)
        let context = DeliveryContext(seq: 10, clockMilliseconds: 10, entropy: 0)
        XCTAssertEqual(actor.step(&restored, list, context), actor.step(&live, list, context))
    }
}
