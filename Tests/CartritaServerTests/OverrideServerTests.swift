import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

@testable import CartritaServer

// MARK: - The emergency override over real sockets

final class OverrideServerTests: XCTestCase {
    struct Keys {
        var admin: String
        var bob: String
    }

    func start(_ folder: TemporaryFolder, stalling: Bool = false) async throws -> (Server, Client, Keys) {
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        if stalling { configuration.ioServices["files"] = StallingFiles() }
        let store = try ServerStore(dataPath: configuration.dataPath)
        let keys = Keys(
            admin: try store.createKey(role: "admin", user: "ada", nowMilliseconds: 1).1,
            bob: try store.createKey(role: "user", user: "bob", nowMilliseconds: 1).1)
        store.close()
        let server = try await Server.start(configuration: configuration)
        return (server, Client(port: server.port), keys)
    }

    func key(_ key: String) -> [String: String] { ["X-API-Key": key] }

    /// The override messages in the log: (action, target, who).
    func overrides(_ log: EventLog) throws -> [(String, String, String?)] {
        var found: [(String, String, String?)] = []
        for seq in UInt64(1)...max(1, log.lastSeq) {
            guard let record = try log.record(seq), case .override(let override) = record.envelope.payload else { continue }
            found.append((override.action.rawValue, record.envelope.recipient.rawValue, record.envelope.context.userID))
        }
        return found
    }

    func testPauseRefusesTheDomainsTasksResumeServesAndThePauseSurvivesARestart() async throws {
        let folder = TemporaryFolder()
        var (server, client, keys) = try await self.start(folder)

        let notAdmin = try await client.send(.post, "/v3/admin/supervisors/intelligence/pause", headers: self.key(keys.bob))
        XCTAssertEqual(notAdmin.status, 403, notAdmin.text)
        XCTAssertEqual(notAdmin.errorCode, "forbidden")
        let unknown = try await client.send(.post, "/v3/admin/supervisors/nonsense/pause", headers: self.key(keys.admin))
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(unknown.errorCode, "unknown_supervisor")
        let badBody = try await client.send(.post, "/v3/admin/supervisors/intelligence/pause", body: #"{"why": "x"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(badBody.status, 400)
        XCTAssertEqual(badBody.errorCode, "unknown_field")

        let paused = try await client.send(
            .post, "/v3/admin/supervisors/intelligence/pause", body: #"{"reason": "provider outage"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(paused.status, 200, paused.text)
        XCTAssertEqual(paused.string("supervisor"), "supervisor.intelligence@v1.0")
        XCTAssertEqual(paused.string("paused_by"), "ada")

        // The domain's tasks are refused with a retryable `paused` (503 with Retry-After; the
        // task's own record says the same); other domains are served.
        let refused = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.key(keys.bob))
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertEqual(refused.errorCode, "paused", refused.text)
        XCTAssertEqual(refused.headers[.retryAfter], "5")
        let location = try XCTUnwrap(refused.headers[.location])
        let record = try await client.send(.get, location, headers: self.key(keys.bob))
        XCTAssertEqual(record.string("status"), "failed", record.text)
        XCTAssertEqual(record.string("error", "code"), "paused", record.text)
        XCTAssertEqual(record.json?["error"]?["retryable"], .bool(true))
        let other = try await client.send(
            .post, "/v3/tasks", body: #"{"task": {"type": "tasks.create", "parameters": {"title": "still works"}}}"#, headers: self.key(keys.bob))
        XCTAssertEqual(other.string("status"), "completed", other.text)

        // Restart on the same data: the supervisor is still paused (its state, from the log).
        await client.close()
        try await server.shutdown()
        (server, client, _) = try await self.startAgain(folder)
        let stillPaused = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.key(keys.bob))
        XCTAssertEqual(stillPaused.errorCode, "paused", stillPaused.text)

        let resumed = try await client.send(.post, "/v3/admin/supervisors/supervisor.intelligence@v1.0/resume", headers: self.key(keys.admin))
        XCTAssertEqual(resumed.status, 200, resumed.text)
        XCTAssertEqual(resumed.json?["paused"], .bool(false))
        let served = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.key(keys.bob))
        XCTAssertEqual(served.string("status"), "completed", served.text)

        // Each action is an MCP message in the log, with the admin's user id.
        let logged = try self.overrides(server.frontDoor.log)
        XCTAssertEqual(logged.map(\.0), ["pause", "resume"])
        XCTAssertTrue(logged.allSatisfy { $0.1 == "supervisor.intelligence@v1.0" && $0.2 == "ada" })
        await client.close()
        try await server.shutdown()
    }

    func startAgain(_ folder: TemporaryFolder) async throws -> (Server, Client, Keys) {
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        let server = try await Server.start(configuration: configuration)
        return (server, Client(port: server.port), Keys(admin: "", bob: ""))
    }

    func testDrainRefusesNewTasksLetsInFlightWorkEndAndReportsProgress() async throws {
        let folder = TemporaryFolder()
        let (server, client, keys) = try await self.start(folder, stalling: true)

        // One task stalls in flight (its file read never returns).
        let stalled = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/a.txt"), headers: self.key(keys.bob))
        let stalledID = try XCTUnwrap(stalled.string("task_id"), stalled.text)
        var tries = 0
        while try await client.send(.get, "/v3/tasks/\(stalledID)", headers: self.key(keys.admin)).text.contains("supervisor.intelligence") == false
            && tries < 500
        {
            try await Task.sleep(for: .milliseconds(10))
            tries += 1
        }

        let notAdmin = try await client.send(.post, "/v3/admin/drain", headers: self.key(keys.bob))
        XCTAssertEqual(notAdmin.status, 403)
        let notAdminProgress = try await client.send(.get, "/v3/admin/drain", headers: self.key(keys.bob))
        XCTAssertEqual(notAdminProgress.status, 403)

        let drain = try await client.send(.post, "/v3/admin/drain", body: #"{"reason": "node rotation"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(drain.status, 200, drain.text)
        XCTAssertEqual(drain.json?["draining"], .bool(true))
        XCTAssertEqual(drain.string("by"), "ada")
        XCTAssertEqual(drain.json?["tasks_in_flight"], .int(1))
        XCTAssertEqual(drain.json?["drained"], .bool(false))

        let refused = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.key(keys.bob))
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertEqual(refused.errorCode, "draining")
        XCTAssertNotNil(refused.headers[.retryAfter])
        let v2 = try await client.send(.post, "/api/text/stats", body: "{}", headers: self.key(keys.bob))
        XCTAssertEqual(v2.status, 503)
        let ready = try await client.send(.get, "/ready")
        XCTAssertEqual(ready.status, 503, "a balancer takes the instance out")
        let status = try await client.send(.get, "/v3/tasks/\(stalledID)", headers: self.key(keys.bob))
        XCTAssertEqual(status.status, 200, "status is still served while drained")

        // Cancel by correlation (the admin's other override): the in-flight task ends.
        let both = try await client.send(
            .post, "/v3/admin/cancel", body: #"{"user_id": "bob", "correlation_id": "\#(stalledID)"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(both.status, 400)
        let badID = try await client.send(.post, "/v3/admin/cancel", body: #"{"correlation_id": "nope"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(badID.errorField, "correlation_id")
        let unknownID = MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001)
        let unknown = try await client.send(.post, "/v3/admin/cancel", body: #"{"correlation_id": "\#(unknownID)"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(unknown.status, 404, unknown.text)
        let cancel = try await client.send(
            .post, "/v3/admin/cancel", body: #"{"correlation_id": "\#(stalledID)", "reason": "drain"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(cancel.status, 200, cancel.text)
        XCTAssertEqual(cancel.json?["count"], .int(1))
        let done = try await client.waitForTask(stalledID, headers: self.key(keys.bob))
        XCTAssertEqual(done.string("status"), "cancelled", done.text)
        let again = try await client.send(.post, "/v3/admin/cancel", body: #"{"correlation_id": "\#(stalledID)"}"#, headers: self.key(keys.admin))
        XCTAssertEqual(again.status, 409, again.text)
        XCTAssertEqual(again.errorCode, "already_finished")

        var progress = try await client.send(.get, "/v3/admin/drain", headers: self.key(keys.admin))
        tries = 0
        while progress.json?["drained"] != .bool(true) && tries < 500 {
            try await Task.sleep(for: .milliseconds(10))
            progress = try await client.send(.get, "/v3/admin/drain", headers: self.key(keys.admin))
            tries += 1
        }
        XCTAssertEqual(progress.json?["drained"], .bool(true), progress.text)
        XCTAssertEqual(progress.json?["tasks_in_flight"], .int(0))

        let ended = try await client.send(.delete, "/v3/admin/drain", headers: self.key(keys.admin))
        XCTAssertEqual(ended.json?["draining"], .bool(false), ended.text)
        let served = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.key(keys.bob))
        XCTAssertEqual(served.string("status"), "completed", served.text)

        let logged = try self.overrides(server.frontDoor.log)
        XCTAssertEqual(logged.map(\.0), ["drain", "end_drain"])
        XCTAssertTrue(logged.allSatisfy { $0.1 == "orchestrator@v1.0" && $0.2 == "ada" })
        // The cancel is in the log with the admin's user id too.
        let cancels = try server.frontDoor.log.seqs(correlation: try XCTUnwrap(MessageID(string: stalledID)))
            .compactMap { try server.frontDoor.log.record($0)?.envelope }
            .filter { if case .taskError(let error) = $0.payload { error.code == .cancelled && $0.sender == FrontDoor.httpClient } else { false } }
        XCTAssertEqual(cancels.map(\.context.userID), ["ada"])

        // A shutdown during a drain goes on as usual.
        _ = try await client.send(.post, "/v3/admin/drain", headers: self.key(keys.admin))
        await client.close()
        try await server.shutdown()
    }
}
