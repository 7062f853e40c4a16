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
