import CartritaEnvelope
import CartritaNode
import Foundation
import HTTPTypes
import XCTest

@testable import CartritaServer

/// `POST /v3/tasks {"task":{"type":"system.health_check"}}` over real sockets: the report of
/// each supervisor, the log and its indexes, as the system supervisor's SystemMonitor got it.
final class HealthCheckRouteTests: XCTestCase {
    func testAHealthCheckTaskReportsTheSupervisorsTheLogAndItsIndexes() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)
        for _ in 0..<5 {
            let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody)
            XCTAssertEqual(posted.status, 200, posted.text)
        }

        let checked = try await client.send(.post, "/v3/tasks", body: #"{"task": {"type": "system.health_check"}}"#)
        XCTAssertEqual(checked.status, 200, checked.text)
        XCTAssertEqual(checked.string("status"), "completed", checked.text)
        let result = try XCTUnwrap(checked.json?["result"], checked.text)
        XCTAssertEqual(result["healthy"], .bool(true), checked.text)
        guard case .array(let supervisors)? = result["supervisors"] else { return XCTFail(checked.text) }
        XCTAssertEqual(supervisors.count, 3)
        XCTAssertEqual(supervisors.map { $0["address"] }, [
            .string("supervisor.intelligence@v1.0"), .string("supervisor.multimodal@v1.0"), .string("supervisor.system@v1.0"),
        ])
        XCTAssertEqual(supervisors.map { $0["up"] }, [.bool(true), .bool(true), .bool(true)])
        XCTAssertEqual(supervisors.map { $0["pool_size"] }, [.int(2), .int(0), .int(4)])
        XCTAssertEqual(result["log"]?["writable"], .bool(true))
        XCTAssertEqual(result["log"]?["durability"], .string("fast"))
        if case .int(let last)? = result["log"]?["last_seq"] {
            XCTAssertGreaterThanOrEqual(last, 5 * 6, "the five earlier tasks' deliveries")
        } else {
            XCTFail(checked.text)
        }
        guard case .array(let indexes)? = result["indexes"] else { return XCTFail(checked.text) }
        XCTAssertEqual(indexes.map { $0["consistent"] }, [.bool(true), .bool(true), .bool(true)], checked.text)

        // It went where its type routes: the system supervisor, SystemMonitor, the health service.
        let id = try XCTUnwrap(checked.string("task_id"))
        let got = try await client.send(.get, "/v3/tasks/\(id)")
        guard case .array(let flow)? = got.json?["flow"] else { return XCTFail(got.text) }
        let hops = flow.compactMap { hop -> String? in
            guard case .string(let sender)? = hop["sender"], case .string(let recipient)? = hop["recipient"] else { return nil }
            return "\(sender) -> \(recipient)"
        }
        XCTAssertTrue(hops.contains("orchestrator@v1.0 -> supervisor.system@v1.0"), "\(hops)")
        XCTAssertTrue(hops.contains("supervisor.system@v1.0 -> agent.systemmonitor@v1.0"), "\(hops)")
        XCTAssertTrue(hops.contains("agent.systemmonitor@v1.0 -> io.health@v1.0"), "\(hops)")
        XCTAssertTrue(hops.contains("io.health@v1.0 -> agent.systemmonitor@v1.0"), "\(hops)")
        XCTAssertNotNil(flow.first?["clock_ms"], "each hop carries the delivery's clock reading")

        let refused = try await client.send(.post, "/v3/tasks", body: #"{"task": {"type": "system.health_check", "parameters": {"sections": ["disks"]}}}"#)
        XCTAssertEqual(refused.string("status"), "failed", refused.text)
        XCTAssertEqual(refused.string("error", "code"), "invalid_input", refused.text)

        await client.close()
        try await server.shutdown()
    }
}
