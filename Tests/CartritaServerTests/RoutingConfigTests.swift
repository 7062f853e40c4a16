import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import XCTest

@testable import CartritaServer

/// `routing` and `budgets` in the config file (and `CARTRITA_ROUTING` / `CARTRITA_BUDGETS`):
/// the served hierarchy routes and limits as configured, says so on `GET /v3/routes`, and a
/// bad table is refused at start with the key named.
final class RoutingConfigTests: XCTestCase {
    func testRoutingAndBudgetsFromTheFileThenTheEnvironment() throws {
        var configuration = ServerConfiguration()
        XCTAssertEqual(configuration.routing, .standard)
        try configuration.apply(JSONParser().parse(#"""
            {"routing": {"vision.": null, "notes.": "supervisor.system@v1.0", "text.": "supervisor.intelligence@v1.0"},
             "budgets": {"supervisor.system@v1.0": {"cost_usd": 0.5, "max_concurrent_tasks": 3}}}
            """#))
        XCTAssertNil(configuration.routing.supervisor(forTaskType: "vision.classify"), "null removes a prefix")
        XCTAssertEqual(configuration.routing.supervisor(forTaskType: "notes.add"), Hierarchy.system)
        XCTAssertEqual(configuration.routing.supervisor(forTaskType: "audio.transcribe"), Hierarchy.multimodal, "the rest is the standard table")
        XCTAssertEqual(configuration.budgets[Hierarchy.system], Hierarchy.SupervisorBudget(maxConcurrentTasks: 3, costUSD: 0.5))

        // The environment applies after the file, entry by entry.
        try configuration.apply(environment: [
            "CARTRITA_ROUTING": #"{"vision.": "supervisor.multimodal@v1.0"}"#,
            "CARTRITA_BUDGETS": #"{"supervisor.system@v1.0": {"tokens": 1000}}"#,
        ])
        XCTAssertEqual(configuration.routing.supervisor(forTaskType: "vision.classify"), Hierarchy.multimodal)
        XCTAssertEqual(configuration.routing.supervisor(forTaskType: "notes.add"), Hierarchy.system)
        XCTAssertEqual(configuration.budgets[Hierarchy.system], Hierarchy.SupervisorBudget(maxConcurrentTasks: 3, tokens: 1_000, costUSD: 0.5))

        // The served hierarchy has them: the orchestrator's table and the supervisor's limits.
        let hierarchy = FrontDoor.hierarchy(configuration)
        XCTAssertEqual(hierarchy.routing, configuration.routing)
        let system = try XCTUnwrap(hierarchy.makeCells().first { $0.address == Hierarchy.system })
        guard case .map(let state) = system.describeState(), case .map(let budget)? = state.first(where: { $0.key == "budget" })?.value
        else { return XCTFail("the supervisor describes its budget") }
        func figure(_ key: String) -> MCPValue? { budget.first { $0.key == key }?.value }
        XCTAssertEqual(figure("max_concurrent_tasks"), .int(3), "\(budget)")
        XCTAssertEqual(figure("token_budget"), .int(1_000), "\(budget)")

        // Refused, naming the key.
        func refused(_ text: String, mentioning: String, file: StaticString = #filePath, line: UInt = #line) {
            var copy = ServerConfiguration()
            XCTAssertThrowsError(try copy.apply(JSONParser().parse(text)), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(mentioning), "\(error)", file: file, line: line)
            }
        }
        refused(#"{"routing": {"llm.": "supervisor.finance@v1.0"}}"#, mentioning: "routing.llm.: supervisor.finance@v1.0 is not a supervisor")
        refused(#"{"routing": {"llm": "supervisor.intelligence@v1.0"}}"#, mentioning: "followed by a dot")
        refused(#"{"routing": {"llm.": 3}}"#, mentioning: "routing.llm. must be a supervisor address or null")
        refused(#"{"routing": ["llm."]}"#, mentioning: "routing maps")
        refused(#"{"budgets": {"supervisor.finance@v1.0": {"tokens": 1}}}"#, mentioning: "budgets.supervisor.finance@v1.0 is not a supervisor")
        refused(#"{"budgets": {"supervisor.system@v1.0": {"tokens": -1}}}"#, mentioning: "budgets.supervisor.system@v1.0.tokens")
        refused(#"{"budgets": {"supervisor.system@v1.0": {"cost_usd": -0.5}}}"#, mentioning: "cost_usd must be >= 0")
        refused(#"{"budgets": {"supervisor.system@v1.0": {"slots": 1}}}"#, mentioning: "unknown key budgets.supervisor.system@v1.0.slots")
        var copy = ServerConfiguration()
        XCTAssertThrowsError(try copy.apply(environment: ["CARTRITA_ROUTING": "{vision"])) { XCTAssertTrue("\($0)".contains("CARTRITA_ROUTING is not JSON"), "\($0)") }
    }

    /// Served: a removed prefix is answered `unknown_task_type` by the orchestrator, a budget
    /// denies a task that asks for more, and `GET /v3/routes` shows the table the server runs.
    func testTheServerRoutesAndLimitsAsConfigured() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        try configuration.apply(JSONParser().parse(#"""
            {"routing": {"text.": null}, "budgets": {"supervisor.system@v1.0": {"cost_usd": 0.5}}}
            """#))
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let text = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        XCTAssertEqual(text.string("status"), "failed", text.text)
        XCTAssertEqual(text.string("error", "code"), "unknown_task_type", text.text)

        let csv = #"{"task": {"type": "data.csv-stats", "constraints": {"max_cost_usd": COST}}, "input": {"data": "a,b\n1,2\n"}}"#
        let cheap = try await client.send(.post, "/v3/tasks", body: csv.replacingOccurrences(of: "COST", with: "0.25"))
        XCTAssertEqual(cheap.string("status"), "completed", cheap.text)
        let dear = try await client.send(.post, "/v3/tasks", body: csv.replacingOccurrences(of: "COST", with: "0.75"))
        XCTAssertEqual(dear.string("status"), "failed", dear.text)
        XCTAssertEqual(dear.string("error", "code"), "budget_exceeded", dear.text)

        let routes = try await client.send(.get, "/v3/routes")
        XCTAssertEqual(routes.status, 200, routes.text)
        XCTAssertFalse(routes.text.contains(#""prefix":"text.""#), routes.text)
        XCTAssertTrue(routes.text.contains(#"{"prefix":"data.","supervisor":"supervisor.system@v1.0"}"#), routes.text)
        XCTAssertTrue(routes.text.contains(#""agent":"agent.languagemaestro@v1.0""#), routes.text)
        await client.close()
        try await server.shutdown()
    }
}
