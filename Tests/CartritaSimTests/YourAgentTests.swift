import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import CartritaSim
import XCTest

// A test written the way a user of Cartrita writes one: their own agent, their own hierarchy,
// swept over seeds with every fault on. A failing seed prints the command that reproduces it.

/// The user's agent: counts the greetings it has given (state that must survive crashes).
struct Greeter: Agent {
    struct State: Hashable, Sendable {
        var greeted: Int64 = 0
    }

    let address = Address("agent.greeter@v1.0")
    let taskTypes = ["greet.hello"]
    let stateFormatVersion: UInt32 = 1

    func initialState() -> State { State() }

    func handle(_ request: TaskRequest, state: inout State, context: DeliveryContext) throws -> AgentOutcome {
        guard case .string(let name)? = request.input.data else {
            return .failed(TaskError(code: .invalidInput, message: "input.data must be a name", retryable: false))
        }
        state.greeted += 1
        return .completed(result: .map(["greeting": .string("Hello, \(name.prefix(20))!"), "number": .int(state.greeted)]), metrics: TaskMetrics())
    }

    func encodeState(_ state: State) -> [UInt8] { withUnsafeBytes(of: state.greeted.bigEndian) { Array($0) } }

    func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        guard bytes.count == 8 else { throw StateDecodingError("a greeter's state is 8 bytes") }
        return State(greeted: bytes.withUnsafeBytes { Int64(bigEndian: $0.loadUnaligned(as: Int64.self)) })
    }
}

/// The user's agent that needs the outside world: it asks a `weather` service (through the
/// runtime's I/O gateway, so the answer is recorded) and words the forecast.
struct Forecaster: Agent {
    typealias State = EmptyState
    let address = Address("agent.forecaster@v1.0")
    let taskTypes = ["weather.today"]
    let stateFormatVersion: UInt32 = 1

    func handle(_ request: TaskRequest, state: inout State, context: DeliveryContext) throws -> AgentOutcome {
        guard case .string(let city)? = request.input.data else {
            return .failed(TaskError(code: .invalidInput, message: "input.data must be a city", retryable: false))
        }
        return .call(IOCall(service: "weather", operation: "today", arguments: .map(["city": .string(city)]), continuation: .string(city)))
    }

    func resume(_ request: TaskRequest, continuation: MCPValue, result: IOResult, state: inout State, context: DeliveryContext) throws -> AgentOutcome {
        switch result {
        case .success(let forecast):
            guard case .string(let city) = continuation, case .int(let celsius)? = forecast["celsius"] else {
                return .failed(TaskError(code: .ioError, message: "the weather service answered oddly", retryable: false))
            }
            return .completed(result: .map(["forecast": .string("\(city): \(celsius) °C")]), metrics: TaskMetrics())
        case .failure(let error):
            return .failed(error)  // the service's failure is the task's answer
        }
    }
}

/// The user's stand-in for the real service, for simulation: answers drawn from the seed.
struct FakeWeather: SimulatedIOService {
    func call(operation: String, arguments: MCPValue, random: inout SplitMix64) -> IOResult {
        .success(.map(["celsius": .int(Int64(random.next64() % 40) - 5)]))
    }
}

final class YourAgentTests: XCTestCase {
    func testMyForecasterGetsAnAnswerForEveryTaskWhateverTheServiceDoes() throws {
        let supervisor = Address("supervisor.weather@v1.0")
        let hierarchy = Hierarchy.custom(
            routing: try RoutingTable(routes: [RoutingTable.Route(prefix: "weather.", supervisor: supervisor)]),
            supervisors: [Hierarchy.SupervisorSpec(address: supervisor, agents: [.agent(Forecaster())])])
        let workload = try Workload.parse("weather.today at_least_once 1")
        var completed = 0
        for seed in UInt64(1)...UInt64(15) {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = 40
            configuration.crashes = 2
            configuration.faults = [.io, .crash, .delay, .duplicate]  // failed, timed-out and late answers among them
            let simulation = Simulation(configuration, hierarchy: hierarchy, workload: workload)
            simulation.ioServices["weather"] = FakeWeather()
            let report = simulation.run()
            XCTAssertTrue(report.passed, "seed \(seed) failed: \(report.oracles.filter { $0.1 != "ok" })")
            completed += simulation.records.filter { record in
                guard record.envelope.recipient.isClient, case .taskResponse(let response) = record.envelope.payload else { return false }
                return response.status == .completed
            }.count
        }
        XCTAssertGreaterThan(completed, 300, "most forecasts come through")
    }

    func testMyGreeterSurvivesEveryFaultOnManySeeds() throws {
        let supervisor = Address("supervisor.greetings@v1.0")
        let hierarchy = Hierarchy.custom(
            routing: try RoutingTable(routes: [RoutingTable.Route(prefix: "greet.", supervisor: supervisor)]),
            // 2% of requests crash the greeter (decided by the recorded entropy): its supervisor
            // restarts it and retries per the delivery mode.
            supervisors: [Hierarchy.SupervisorSpec(address: supervisor, agents: [.agent(Greeter(), crashesPerMillion: 20_000)])])
        let workload = try Workload.parse("""
            greet.hello exactly_once  3
            greet.hello at_least_once 1
            greet.bye   at_least_once 1
            """)
        var crashed = 0
        for seed in UInt64(1)...UInt64(25) {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = 60
            configuration.crashes = 2
            configuration.faults = Set(Simulation.Fault.allCases)
            let report = Simulation(configuration, hierarchy: hierarchy, workload: workload).run()
            XCTAssertTrue(report.passed, "seed \(seed) failed: \(report.oracles.filter { $0.1 != "ok" })")
            XCTAssertEqual(report.tasks, 60)
            crashed += report.faults.first { $0.0 == "agent_crash" }?.1 ?? 0
        }
        XCTAssertGreaterThan(crashed, 0, "the greeter crashed somewhere in the sweep")
    }
}
