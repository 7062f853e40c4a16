import CartritaServer
import CartritaTestSupport
import Foundation
import XCTest

/// The real `cartrita load` binary against a server on loopback: one JSON object on stdout with
/// the issue's keys, and its exit status.
final class LoadCommandTests: XCTestCase {
    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let outcome = try CartritaBinary.run(arguments)
        return (outcome.status, outcome.out)
    }

    func testLoadPrintsOneJSONObjectWithTheIssuesKeys() async throws {
        let folder = LoadTests.Folder()
        var configuration = ServerConfiguration()
        configuration.dataPath = folder.path + "/data"
        configuration.port = 0
        configuration.durability = .fast
        let server = try await Server.start(configuration: configuration)
        let url = "http://127.0.0.1:\(server.port)"
        let mix = folder.path + "/mix.txt"
        try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
        try "tasks.create exactly_once 1\ndata.csv-stats at_least_once 1\n".write(toFile: mix, atomically: true, encoding: .utf8)
        let loaded = try self.run(["load", "--url", url, "--clients", "3", "--duration", "0.5", "--mix", mix, "--check-flow", "10", "--json"])
        try await server.shutdown()

        XCTAssertEqual(loaded.status, 0, loaded.stdout)
        let lines = loaded.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, loaded.stdout)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(loaded.stdout.utf8)) as? [String: Any])
        for key in ["requests_per_s", "p50_ms", "p95_ms", "p99_ms", "errors", "requests", "duration_s", "flow_checked", "flow_failures"] {
            XCTAssertNotNil(object[key], "\(key) in \(loaded.stdout)")
        }
        XCTAssertEqual(object["errors"] as? [String: Int], [:], loaded.stdout)
        XCTAssertEqual(object["flow_checked"] as? Int, 10)
        XCTAssertEqual(object["flow_failures"] as? Int, 0)

        // The server is gone: nothing answered, exit 1, and the errors say why.
        let refused = try self.run(["load", "--url", url, "--clients", "1", "--duration", "0.2", "--json"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stdout.contains("connection_refused"), refused.stdout)
    }
}
