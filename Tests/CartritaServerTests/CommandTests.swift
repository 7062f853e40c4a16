import CartritaEnvelope
import CartritaTestSupport
import Foundation
import XCTest

@testable import CartritaServer

/// The real `cartrita` binary: `keys` and `serve` with a real SIGTERM.
final class CommandTests: XCTestCase {
    func run(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let outcome = try CartritaBinary.run(arguments)
        return (outcome.status, outcome.out)
    }

    func testKeysCreatePrintsTheKeyAloneOnItsLastLineListAndRevoke() throws {
        let folder = TemporaryFolder()
        let data = folder.path + "/data"
        let created = try self.run(["keys", "create", "--data", data, "--role", "admin", "--user", "ada"])
        XCTAssertEqual(created.status, 0)
        let lines = created.stdout.split(separator: "\n")
        let key = String(try XCTUnwrap(lines.last))
        XCTAssertTrue(key.hasPrefix("ck_") && !key.contains(" "), created.stdout)
        let id = String(key.split(separator: "_")[1])

        let listed = try self.run(["keys", "list", "--data", data, "--json"])
        let record = try JSONParser().parse(listed.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(record["id"], .string(id))
        XCTAssertEqual(record["role"], .string("admin"))
        XCTAssertEqual(record["user"], .string("ada"))
        XCTAssertEqual(record["revoked"], .bool(false))
        XCTAssertFalse(listed.stdout.contains(key))

        XCTAssertEqual(try self.run(["keys", "revoke", "--data", data, id]).status, 0)
        XCTAssertTrue(try self.run(["keys", "list", "--data", data]).stdout.contains("revoked"))
        XCTAssertNotEqual(try self.run(["keys", "revoke", "--data", data, "000000000000"]).status, 0)
    }

    /// `cartrita bench serve`: a child server under the load tester, one JSON object with the
    /// load report's keys and the child's RSS peaks sampled from /proc.
    func testBenchServePrintsTheFrontDoorsFigures() throws {
        let run = try self.run(["bench", "serve", "--seconds", "1", "--clients", "4", "--check-flow", "5", "--durability", "fast", "--json"])
        XCTAssertEqual(run.status, 0, run.stdout)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], run.stdout)
        XCTAssertEqual(object["durability"] as? String, "fast")
        XCTAssertGreaterThan(object["requests_per_s"] as? Double ?? 0, 0, run.stdout)
        XCTAssertEqual(object["errors"] as? [String: Int], [:], run.stdout)
        XCTAssertEqual(object["flow_failures"] as? Int, 0, run.stdout)
        XCTAssertGreaterThan(object["rss_mb_peak"] as? Double ?? 0, 1, run.stdout)
        XCTAssertGreaterThan(object["rss_samples"] as? Int ?? 0, 2, run.stdout)
        XCTAssertNotNil(object["tier0_routing_ms_p95"] as? Double, run.stdout)
        XCTAssertNotNil(object["server_cpu_s"] as? Double, run.stdout)
        // Bad arguments are named, before anything starts.
        XCTAssertNotEqual(try self.run(["bench", "serve", "--durability", "maybe"]).status, 0)
    }

    func testServeAnswersAndStopsCleanlyOnSIGTERM() async throws {
        let folder = TemporaryFolder()
        let process = Process()
        process.executableURL = try CartritaBinary.required()
        process.arguments = ["serve", "--data", folder.path + "/data", "--port", "0"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line names the bound port.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        let port = try XCTUnwrap(text.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) }, text)

        let client = Client(port: port)
        let answer = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        XCTAssertEqual(answer.string("status"), "completed", answer.text)
        await client.close()

        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        let verify = try self.run(["log", "verify", "--data", folder.path + "/data"])
        XCTAssertEqual(verify.status, 0, verify.stdout)
    }
}
