import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import CartritaServer
import Foundation
import NIOPosix
import XCTest

@testable import CartritaLoad

/// The load tester against a real server on loopback (real sockets, a real LMDB log).
final class LoadTests: XCTestCase {
    final class Folder {
        let path = NSTemporaryDirectory() + "cartrita-load-\(UUID().uuidString)"
        deinit { try? FileManager.default.removeItem(atPath: self.path) }
    }

    func server(_ folder: Folder) async throws -> Server {
        var configuration = ServerConfiguration()
        configuration.dataPath = folder.path + "/data"
        configuration.port = 0
        configuration.durability = .fast
        return try await Server.start(configuration: configuration)
    }

    func configuration(port: Int, clients: Int = 4, seconds: Double = 1) -> LoadConfiguration {
        var configuration = LoadConfiguration()
        configuration.port = port
        configuration.clients = clients
        configuration.durationSeconds = seconds
        configuration.requestTimeoutMilliseconds = 20_000
        return configuration
    }

    func testClientsLoadTheServerAndTheFlowOfASampleIsComplete() async throws {
        let folder = Folder()
        let server = try await self.server(folder)
        var configuration = self.configuration(port: server.port)
        configuration.flowSample = 30
        let report = try await LoadTester.run(configuration)
        try await server.shutdown()

        XCTAssertGreaterThan(report.requests, 20, "\(report.json.rendered())")
        XCTAssertEqual(report.ok, report.requests)
        XCTAssertEqual(report.errors, [:], "\(report.json.rendered())")
        XCTAssertGreaterThan(report.p50Milliseconds, 0)
        XCTAssertLessThanOrEqual(report.p50Milliseconds, report.p95Milliseconds)
        XCTAssertLessThanOrEqual(report.p95Milliseconds, report.p99Milliseconds)
        XCTAssertEqual(report.connects, 4, "keep-alive: one connection per client")
        let flow = try XCTUnwrap(report.flow)
        XCTAssertEqual(flow.checked, 30)
        XCTAssertEqual(flow.failures, 0, "\(flow.examples)")
        XCTAssertEqual(flow.routingMilliseconds.count, 30)
        // Tier 0's latency from the server's own histograms: every task of the run timed once.
        let tier0 = try XCTUnwrap(report.tier0)
        XCTAssertNil(tier0.missing)
        let routing = try XCTUnwrap(tier0.routing)
        XCTAssertEqual(Int(routing.total), report.ok, "each routed task is one routing sample")
        let ingress = try XCTUnwrap(tier0.ingress)
        XCTAssertEqual(Int(ingress.total), report.ok)
        let p50 = try XCTUnwrap(routing.quantile(0.5))
        let p95 = try XCTUnwrap(routing.quantile(0.95))
        XCTAssertGreaterThan(p50, 0)
        XCTAssertLessThanOrEqual(p50, p95)
        // The orchestrator's own share: one sample per task, never more than the whole of
        // tier 0 (submission to the supervisor's delivery), which also counts the log's commits.
        let overhead = try XCTUnwrap(tier0.routingOverhead)
        XCTAssertEqual(Int(overhead.total), report.ok)
        XCTAssertLessThanOrEqual(overhead.sum, ingress.sum + routing.sum)
        // The server's RSS and CPU over the run, from its /metrics (before, every 2 s, after).
        let process = try XCTUnwrap(report.server)
        XCTAssertGreaterThanOrEqual(process.samples, 2)
        XCTAssertGreaterThan(try XCTUnwrap(process.residentPeakBytes), 1_048_576)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(process.residentPeakBytes), try XCTUnwrap(process.residentEndBytes))
        XCTAssertGreaterThan(try XCTUnwrap(process.cpuSeconds), 0, "the run cost the server CPU time")

        // The report's JSON has the keys the issue names.
        let json = report.json.rendered()
        XCTAssertTrue(json.hasPrefix(#"{"requests_per_s":"#), json)
        for key in ["p50_ms", "p95_ms", "p99_ms", "errors", "flow_checked", "flow_failures", "routing_ms_p95", "tier0_routing_ms_p95", "tier0_ingress_ms_p95", "tier0_routing_overhead_ms_p95", "server_rss_mb_peak", "server_cpu_s"] {
            XCTAssertTrue(json.contains("\"\(key)\":"), "\(key) in \(json)")
        }
    }

    /// The histogram arithmetic `cartrita load` uses on the server's /metrics: parse, subtract
    /// the scrape before the run, interpolate quantiles as Prometheus's histogram_quantile does.
    func testTier0HistogramsAreParsedSubtractedAndInterpolated() throws {
        let before = """
            # TYPE cartrita_tier0_routing_ms histogram
            cartrita_tier0_routing_ms_bucket{le="0.5"} 10
            cartrita_tier0_routing_ms_bucket{le="1.0"} 10
            cartrita_tier0_routing_ms_bucket{le="2.0"} 10
            cartrita_tier0_routing_ms_bucket{le="+Inf"} 10
            cartrita_tier0_routing_ms_sum 3.0
            cartrita_tier0_routing_ms_count 10
            """
        let after = """
            cartrita_tier0_routing_ms_bucket{le="0.5"} 30
            cartrita_tier0_routing_ms_bucket{le="1.0"} 90
            cartrita_tier0_routing_ms_bucket{le="2.0"} 105
            cartrita_tier0_routing_ms_bucket{le="+Inf"} 110
            cartrita_tier0_routing_ms_sum 93.5
            cartrita_tier0_ingress_ms_bucket{le="1.0"} 4
            """
        let first = try XCTUnwrap(ScrapedHistogram.parse(before, name: "cartrita_tier0_routing_ms"))
        let run = try XCTUnwrap(ScrapedHistogram.parse(after, name: "cartrita_tier0_routing_ms")).since(first)
        XCTAssertEqual(run.buckets.map(\.count), [20, 80, 95, 100])
        XCTAssertEqual(run.total, 100)
        XCTAssertEqual(run.sum, 90.5, accuracy: 1e-9, "the sums subtract too")
        // Rank 50 falls in (0.5, 1.0] holding 60: 0.5 + 0.5 × (50 − 20) / 60.
        XCTAssertEqual(try XCTUnwrap(run.quantile(0.5)), 0.75, accuracy: 1e-9)
        // Rank 95 is the top of (1.0, 2.0]; rank 99 is past every finite bound: the highest one.
        XCTAssertEqual(try XCTUnwrap(run.quantile(0.95)), 2.0, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(run.quantile(0.99)), 2.0, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(run.quantile(0.1)), 0.25, accuracy: 1e-9)
        XCTAssertNil(ScrapedHistogram.parse(after, name: "cartrita_tier0_missing_ms"))
        XCTAssertNil(ScrapedHistogram(buckets: [(1, 0), (.infinity, 0)]).quantile(0.5), "nothing observed")
        XCTAssertEqual(ScrapedHistogram.parse(after, name: "cartrita_tier0_ingress_ms")?.total, 4)
        let scrape = ServerScrape("process_resident_memory_bytes 1.2e+08\nprocess_resident_memory_bytes_other 5\nprocess_cpu_seconds_total 3.5\n")
        XCTAssertEqual(scrape.residentBytes, 1.2e8)
        XCTAssertEqual(scrape.cpuSeconds, 3.5)
        XCTAssertNil(scrape.anonymousBytes)
    }

    /// The check must be able to fail: against routes the server does not run (text tasks
    /// expected at the multimodal supervisor, data tasks at an agent that does not exist), every
    /// sampled task is a failure with the reason named.
    func testTheFlowCheckNamesTasksThatTookAnotherPath() async throws {
        let folder = Folder()
        let server = try await self.server(folder)
        var configuration = self.configuration(port: server.port, clients: 2, seconds: 0.5)
        configuration.workload = try Workload.parse("text.stats at_least_once 1\ndata.csv-stats at_least_once 1\n")
        let report = try await LoadTester.run(configuration)
        XCTAssertEqual(report.errors, [:])
        let tasks = Array(report.sampledTasks.prefix(10))
        XCTAssertEqual(tasks.count, 10)

        let wrong = try Hierarchy.custom(
            routing: RoutingTable(routes: [
                .init(prefix: "text.", supervisor: Hierarchy.multimodal), .init(prefix: "data.", supervisor: Hierarchy.system),
            ]),
            supervisors: [
                .init(address: Hierarchy.multimodal, agents: [.agent(LanguageMaestroStandIn())]),
                .init(address: Hierarchy.system, agents: [.agent(DataStandIn())]),
            ])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var checker = FlowChecker(configuration: configuration, target: try .makeAddressResolvingHost("127.0.0.1", port: server.port), group: group)
        checker.hierarchy = wrong
        let flow = await checker.check(tasks)
        try await group.shutdownGracefully()
        try await server.shutdown()

        XCTAssertEqual(flow.checked, 10)
        XCTAssertEqual(flow.failures, 10, "\(flow.reasons)")
        let texts = tasks.filter { $0.type == "text.stats" }.count
        XCTAssertEqual(flow.reasons["wrong_supervisor"], texts == 0 ? nil : texts, "\(flow.reasons)")
        XCTAssertEqual(flow.reasons["wrong_agent"], 10 - texts == 0 ? nil : 10 - texts, "\(flow.reasons)")
        XCTAssertFalse(flow.examples.isEmpty)
    }

    /// The check asserts the paths the server says it runs (`GET /v3/routes`), not the standard
    /// ones: with `text.` unrouted, a text task is rightly answered `unknown_task_type` by the
    /// orchestrator itself, which the standard table would call a missing hop.
    func testTheFlowCheckUsesTheServersOwnRoutes() async throws {
        let folder = Folder()
        var serverConfiguration = ServerConfiguration()
        serverConfiguration.dataPath = folder.path + "/data"
        serverConfiguration.port = 0
        serverConfiguration.durability = .fast
        serverConfiguration.routing = try RoutingTable(routes: RoutingTable.standard.routes.filter { $0.prefix != "text." })
        let server = try await Server.start(configuration: serverConfiguration)
        var configuration = self.configuration(port: server.port, clients: 2, seconds: 0.5)
        configuration.workload = try Workload.parse("text.stats at_least_once 1\ndata.csv-stats at_least_once 1\n")
        configuration.flowSample = 12
        let report = try await LoadTester.run(configuration)
        XCTAssertGreaterThan(report.errors["task_failed:unknown_task_type", default: 0], 0, "\(report.errors)")
        let flow = try XCTUnwrap(report.flow)
        XCTAssertEqual(flow.routesFrom, "server")
        XCTAssertEqual(flow.checked, 12)
        XCTAssertEqual(flow.failures, 0, "\(flow.reasons) \(flow.examples)")

        // The same tasks checked against the standard routes: every text task is a failure.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var standard = FlowChecker(configuration: configuration, target: try .makeAddressResolvingHost("127.0.0.1", port: server.port), group: group)
        standard.hierarchy = .standard()
        let tasks = Array(report.sampledTasks.prefix(12))
        let against = await standard.check(tasks)
        try await group.shutdownGracefully()
        try await server.shutdown()
        let texts = tasks.filter { $0.type == "text.stats" }.count
        XCTAssertGreaterThan(texts, 0)
        XCTAssertEqual(against.failures, texts, "\(against.reasons)")
        XCTAssertEqual(against.reasons["missing_hop:orchestrator->supervisor"], texts, "\(against.reasons)")
    }

    func testAnUnknownTaskIdIsAFlowFailureNotACrash() async throws {
        let folder = Folder()
        let server = try await self.server(folder)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let checker = FlowChecker(
            configuration: self.configuration(port: server.port), target: try .makeAddressResolvingHost("127.0.0.1", port: server.port), group: group)
        let flow = await checker.check([("0190d5c2-0000-7000-8000-000000000001", "text.stats")])
        try await group.shutdownGracefully()
        try await server.shutdown()
        XCTAssertEqual(flow.failures, 1)
        XCTAssertEqual(flow.reasons["http_404"], 1)
    }

    /// Nobody listening: every attempt is counted as `connection_refused`, and the run still
    /// ends on time with a report.
    func testARefusedConnectionIsCountedByType() async throws {
        // A port that was free a moment ago: bind, note it, close.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        try await group.shutdownGracefully()

        let report = try await LoadTester.run(self.configuration(port: port, clients: 2, seconds: 0.3))
        XCTAssertEqual(report.requests, 0)
        XCTAssertGreaterThan(report.errors["connection_refused"] ?? 0, 0, "\(report.errors)")
        XCTAssertEqual(report.p95Milliseconds, 0)
    }

    func testBadArgumentsAreNamedErrors() async throws {
        var configuration = LoadConfiguration()
        XCTAssertThrowsError(try configuration.setURL("https://127.0.0.1:8001")) { XCTAssertEqual(($0 as? LoadError)?.code, .invalidURL) }
        XCTAssertThrowsError(try configuration.setURL("not a url")) { XCTAssertEqual(($0 as? LoadError)?.code, .invalidURL) }
        try configuration.setURL("http://localhost:9")
        XCTAssertEqual(configuration.host, "localhost")
        XCTAssertEqual(configuration.port, 9)
        for change in [{ (c: inout LoadConfiguration) in c.clients = 0 }, { $0.durationSeconds = 0 }, { $0.threads = 0 }, { $0.flowSample = -1 }] {
            var bad = LoadConfiguration()
            change(&bad)
            XCTAssertThrowsError(try bad.validate()) { XCTAssertEqual(($0 as? LoadError)?.code, .invalidArgument) }
        }
    }

    /// The bodies are the mix's tasks as API v3 bodies, with the entry's delivery mode.
    func testTheBodiesComeFromTheMix() throws {
        var configuration = LoadConfiguration()
        configuration.workload = try Workload.parse("tasks.create exactly_once 1\n")
        let templates = LoadTester.templates(configuration)
        XCTAssertEqual(templates.count, LoadConfiguration.distinctBodies)
        XCTAssertTrue(templates.allSatisfy { $0.taskType == "tasks.create" })
        let body = String(buffer: templates[0].body)
        XCTAssertTrue(body.hasPrefix(#"{"task":{"type":"tasks.create","parameters":{"title":"#), body)
        XCTAssertTrue(body.hasSuffix(#""delivery_mode":"exactly_once"}"#), body)
    }
}

/// Agents with the real task types at addresses the server does not run.
struct LanguageMaestroStandIn: Agent {
    typealias State = EmptyState
    let address = Address("agent.other@v1.0")
    let taskTypes = ["text.stats"]
    func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) -> AgentOutcome { .failed(TaskError(code: .invalidInput, message: "-", retryable: false)) }
}

struct DataStandIn: Agent {
    typealias State = EmptyState
    let address = Address("agent.elsewhere@v1.0")
    let taskTypes = ["data.csv-stats"]
    func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) -> AgentOutcome { .failed(TaskError(code: .invalidInput, message: "-", retryable: false)) }
}
