import CartritaEnvelope
import CartritaNode
import Foundation
import XCTest

@testable import CartritaServer

final class ErrorPathTests: XCTestCase {
    func testBadRequestsGetNamedJSONErrors() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.maxBodyBytes = 4_096
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let cases: [(body: String, status: Int, code: String, field: String?)] = [
            ("{\"task\": ", 400, "malformed_json", nil),
            (#"{"task": {"type": "text.stats"}, "task": {}}"#, 400, "malformed_json", nil),
            ("[1, 2]", 400, "invalid_field", "$"),
            (#"{"input": {"data": "x"}}"#, 400, "missing_field", "task"),
            (#"{"task": {}}"#, 400, "missing_field", "task.type"),
            (#"{"task": {"type": 7}}"#, 400, "invalid_field", "task.type"),
            (#"{"task": {"type": "text.stats", "colour": "red"}}"#, 400, "unknown_field", "task.colour"),
            (#"{"task": {"type": "text.stats"}, "priority": "urgent"}"#, 400, "invalid_field", "priority"),
            (#"{"task": {"type": "text.stats"}, "ttl_ms": 0}"#, 400, "invalid_field", "ttl_ms"),
            (#"{"task": {"type": "text.stats"}, "input": {"files": [{"name": "a", "url": "x", "inline_data": "00"}]}}"#, 400, "invalid_field", "input.files.0"),
            (#"{"task": {"type": ""}}"#, 400, "invalid_field", "task.type"),
            (#"{"task": {"type": "text.stats", "constraints": {"max_execution_time_ms": -5}}}"#, 400, "invalid_field", "task.constraints.max_execution_time_ms"),
            (#"{"task": {"type": "text.stats"}, "context": {"user_id": "someone-else"}}"#, 400, "unknown_field", "context.user_id"),
        ]
        for item in cases {
            let answer = try await client.send(.post, "/v3/tasks", body: item.body)
            XCTAssertEqual(answer.status, item.status, "\(item.body): \(answer.text)")
            XCTAssertEqual(answer.errorCode, item.code, "\(item.body): \(answer.text)")
            XCTAssertEqual(answer.errorField, item.field, "\(item.body): \(answer.text)")
            XCTAssertNotNil(answer.string("error", "message"))
        }

        let big = #"{"task": {"type": "text.stats"}, "input": {"data": ""# + String(repeating: "a", count: 5_000) + #""}}"#
        let tooLarge = try await client.send(.post, "/v3/tasks", body: big)
        XCTAssertEqual(tooLarge.status, 413, tooLarge.text)
        XCTAssertEqual(tooLarge.errorCode, "body_too_large")

        let unknownTask = try await client.send(.get, "/v3/tasks/0192f0e4-7b1c-7d2a-8f3e-1a2b3c4d5e6f")
        XCTAssertEqual(unknownTask.status, 404, unknownTask.text)
        XCTAssertEqual(unknownTask.errorCode, "not_found")
        let notAnID = try await client.send(.delete, "/v3/tasks/not-a-uuid")
        XCTAssertEqual(notAnID.status, 404)
        let noRoute = try await client.send(.get, "/v2/nothing")
        XCTAssertEqual(noRoute.status, 404)
        XCTAssertEqual(noRoute.errorCode, "not_found", noRoute.text)
        let badLimit = try await client.send(.get, "/v3/tasks?limit=0")
        XCTAssertEqual(badLimit.status, 400)
        XCTAssertEqual(badLimit.errorField, "limit")
        let badStatus = try await client.send(.get, "/v3/tasks?status=sleeping")
        XCTAssertEqual(badStatus.errorField, "status")

        // An unknown task type is routed and answered by the orchestrator: the task failed.
        let unknownType = try await client.send(.post, "/v3/tasks", body: #"{"task": {"type": "nowhere.at_all"}}"#)
        XCTAssertEqual(unknownType.status, 200, unknownType.text)
        XCTAssertEqual(unknownType.string("status"), "failed")
        XCTAssertEqual(unknownType.string("error", "code"), "unknown_task_type")

        // Draining: new work is turned away with 503 and Retry-After.
        server.frontDoor.draining.store(true, ordering: .relaxed)
        let draining = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        XCTAssertEqual(draining.status, 503)
        XCTAssertEqual(draining.errorCode, "draining")
        XCTAssertEqual(draining.headers[.retryAfter], "1")
        server.frontDoor.draining.store(false, ordering: .relaxed)

        await client.close()
        try await server.shutdown()
    }
}

final class AuthTests: XCTestCase {
    func testKeysRolesOriginsAndRateLimit() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.roles = ["admin": [""], "analyst": ["data."]]
        configuration.auth.rateLimitPerSecond = 0.001
        configuration.auth.rateLimitBurst = 5
        // Keys are made before the server opens the store (as `cartrita keys create` would).
        let store = try ServerStore(dataPath: configuration.dataPath)
        let (_, adminKey) = try store.createKey(role: "admin", user: "ada", nowMilliseconds: 1)
        let (analyst, analystKey) = try store.createKey(role: "analyst", user: "bob", nowMilliseconds: 1)
        let (_, ghostKey) = try store.createKey(role: "ghost", user: "casper", nowMilliseconds: 1)
        store.close()
        XCTAssertTrue(adminKey.hasPrefix("ck_"))

        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let anonymous = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        XCTAssertEqual(anonymous.status, 401, anonymous.text)
        XCTAssertEqual(anonymous.errorCode, "unauthenticated")
        let wrong = try await client.send(.get, "/v3/tasks", headers: ["Authorization": "Bearer ck_000000000000_nope"])
        XCTAssertEqual(wrong.status, 401)
        let unconfiguredRole = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": ghostKey])
        XCTAssertEqual(unconfiguredRole.status, 403)

        // The admin's task carries the admin's user id in every envelope.
        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["Authorization": "Bearer \(adminKey)"])
        XCTAssertEqual(posted.status, 200, posted.text)
        XCTAssertEqual(posted.string("user_id"), "ada")
        let id = try XCTUnwrap(MessageID(string: try XCTUnwrap(posted.string("task_id"))))
        let records = try server.frontDoor.log.seqs(correlation: id).compactMap { try server.frontDoor.log.record($0) }
        XCTAssertGreaterThan(records.count, 4)
        XCTAssertTrue(records.allSatisfy { $0.envelope.context.userID == "ada" })

        // The analyst may run data.* only, and may not see the admin's task.
        let forbidden = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["X-API-Key": analystKey])
        XCTAssertEqual(forbidden.status, 403, forbidden.text)
        XCTAssertEqual(forbidden.errorField, "task.type")
        let hidden = try await client.send(.get, "/v3/tasks/\(id)", headers: ["X-API-Key": analystKey])
        XCTAssertEqual(hidden.status, 404)
        let list = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": analystKey])
        XCTAssertEqual(list.text, #"{"tasks":[],"next_cursor":null}"# + "\n")

        // A browser page from another site is refused; the same origin passes.
        let foreign = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": adminKey, "Origin": "https://evil.example"])
        XCTAssertEqual(foreign.status, 403)
        XCTAssertEqual(foreign.errorCode, "origin_not_allowed")

        // bob has used 3 of his 5 tokens; the 6th request is refused with Retry-After.
        _ = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": analystKey])
        _ = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": analystKey])
        let limited = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": analystKey])
        XCTAssertEqual(limited.status, 429, limited.text)
        XCTAssertEqual(limited.errorCode, "rate_limited")
        XCTAssertNotNil(limited.headers[.retryAfter].flatMap { Int($0) })

        // A revoked key stops working at once.
        XCTAssertTrue(try server.frontDoor.store.revokeKey(id: analyst.id))
        let revoked = try await client.send(.get, "/v3/tasks", headers: ["X-API-Key": analystKey])
        XCTAssertEqual(revoked.status, 401)
        let keys = try server.frontDoor.store.listKeys()
        XCTAssertEqual(keys.count, 3)
        XCTAssertFalse(keys.map(\.publicJSON).joined().contains(analystKey), "the key itself is never stored or listed")

        await client.close()
        try await server.shutdown()
        let attributes = try FileManager.default.attributesOfItem(atPath: configuration.dataPath + "/server/data.mdb")
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }
}

final class AdminTests: XCTestCase {
    /// The emergency override cancels every task of one user in flight, and only theirs; the
    /// cancels are in the log with the admin's user id.
    func testAdminCancelsAllTasksOfAUser() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.ioServices["files"] = StallingFiles()
        let store = try ServerStore(dataPath: configuration.dataPath)
        let (_, admin) = try store.createKey(role: "admin", user: "ada", nowMilliseconds: 1)
        let (_, bob) = try store.createKey(role: "user", user: "bob", nowMilliseconds: 1)
        let (_, carol) = try store.createKey(role: "user", user: "carol", nowMilliseconds: 1)
        store.close()
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        var bobs: [String] = []
        for index in 0..<2 {
            let accepted = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/bob\(index).txt"), headers: ["X-API-Key": bob])
            bobs.append(try XCTUnwrap(accepted.string("task_id"), accepted.text))
        }
        let carols = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/carol.txt"), headers: ["X-API-Key": carol])
        let carolsID = try XCTUnwrap(carols.string("task_id"))
        // All three are routed (in the orchestrator's table) before the override looks.
        for id in bobs + [carolsID] {
            var tries = 0
            while try await client.send(.get, "/v3/tasks/\(id)", headers: ["X-API-Key": admin]).text.contains("supervisor.intelligence") == false && tries < 500 {
                try await Task.sleep(for: .milliseconds(10))
                tries += 1
            }
        }

        let refused = try await client.send(.post, "/v3/admin/cancel", body: #"{"user_id": "carol"}"#, headers: ["X-API-Key": bob])
        XCTAssertEqual(refused.status, 403)
        let override = try await client.send(.post, "/v3/admin/cancel", body: #"{"user_id": "bob", "reason": "runaway job"}"#, headers: ["X-API-Key": admin])
        XCTAssertEqual(override.status, 200, override.text)
        guard case .array(let cancelled)? = override.json?["cancelled"] else { return XCTFail(override.text) }
        XCTAssertEqual(Set(cancelled.compactMap { if case .string(let id) = $0 { id } else { nil } }), Set(bobs))

        for id in bobs {
            let done = try await client.waitForTask(id, headers: ["X-API-Key": bob])
            XCTAssertEqual(done.string("status"), "cancelled", done.text)
            XCTAssertTrue(done.string("error", "message")?.contains("ada") ?? false, done.text)
        }
        let untouched = try await client.send(.get, "/v3/tasks/\(carolsID)", headers: ["X-API-Key": carol])
        XCTAssertEqual(untouched.string("status"), "pending", untouched.text)

        await client.close()
        try await server.shutdown()
    }
}

final class RestartTests: XCTestCase {
    /// An async task in flight when the server shuts down finishes after a restart on the same
    /// data folder: its request is in the log, recovery re-arms the supervisor's timeout, and the
    /// retry reads the file through the new server's working files service.
    func testAsyncTaskInFlightAtShutdownCompletesAfterRestart() async throws {
        let folder = TemporaryFolder()
        let files = folder.path + "/files"
        try FileManager.default.createDirectory(atPath: files, withIntermediateDirectories: true)
        try "Recovery finishes what was acknowledged. The log is the truth.".write(toFile: files + "/a.txt", atomically: true, encoding: .utf8)
        let body = fileTaskBody(url: "file://\(files)/a.txt", maxExecutionMilliseconds: 300)

        var configuration = testConfiguration(folder)
        configuration.durability = .durable
        configuration.ioServices["files"] = StallingFiles()
        let first = try await Server.start(configuration: configuration)
        let client = Client(port: first.port)
        let accepted = try await client.send(.post, "/v3/tasks?async=true", body: body)
        XCTAssertEqual(accepted.status, 202, accepted.text)
        let id = try XCTUnwrap(accepted.string("task_id"))
        // In flight: the request is logged and waits on the stalled read.
        var pending = try await client.send(.get, "/v3/tasks/\(id)")
        var tries = 0
        while pending.json?["flow"].map({ "\($0)".contains("io.files") }) != true && tries < 500 {
            try await Task.sleep(for: .milliseconds(10))
            pending = try await client.send(.get, "/v3/tasks/\(id)")
            tries += 1
        }
        XCTAssertEqual(pending.string("status"), "pending", pending.text)
        await client.close()
        try await first.shutdown()

        configuration.ioServices = [:]
        configuration.filesRoot = files
        let second = try await Server.start(configuration: configuration)
        let again = Client(port: second.port)
        let done = try await again.waitForTask(id)
        XCTAssertEqual(done.string("status"), "completed", done.text)
        XCTAssertNotNil(done.json?["result"], done.text)
        await again.close()
        try await second.shutdown()
    }

    /// A port already taken: `start` throws, and the log it opened is closed again (a second
    /// start on the same folder works).
    func testStartOnATakenPortFailsAndReleasesTheLog() async throws {
        let holderFolder = TemporaryFolder()
        let holder = try await Server.start(configuration: testConfiguration(holderFolder))
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.port = holder.port
        do {
            _ = try await Server.start(configuration: configuration)
            XCTFail("a second server bound the same port")
        } catch {}
        configuration.port = 0
        let retry = try await Server.start(configuration: configuration)
        try await retry.shutdown()
        try await holder.shutdown()
    }

    func testShutdownHandsBackAWaitingRequestWithItsTaskID() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.ioServices["files"] = StallingFiles()
        configuration.drainTimeoutMilliseconds = 100
        let server = try await Server.start(configuration: configuration)
        let port = server.port
        let waiting = Task {
            let client = Client(port: port)
            defer { Task { await client.close() } }
            return try await client.send(.post, "/v3/tasks", body: fileTaskBody(url: "file:///stalls/b.txt"))
        }
        var tries = 0
        while server.frontDoor.tracker.waitingCount == 0 && tries < 1_000 {
            try await Task.sleep(for: .milliseconds(5))
            tries += 1
        }
        try await server.shutdown()
        let answer = try await waiting.value
        XCTAssertEqual(answer.status, 503, answer.text)
        XCTAssertEqual(answer.errorCode, "draining")
        XCTAssertTrue(answer.headers[.location]?.hasPrefix("/v3/tasks/") ?? false)
    }
}

final class ParsingTests: XCTestCase {
    func testJSONParserIsStrictAndKeepsOrder() throws {
        let parser = JSONParser(limits: .init(maxDepth: 3, maxInputBytes: 1_000))
        XCTAssertEqual(try parser.parse(#"{"b": 1, "a": [true, null, -2.5e3, "\u00e9\ud83d\ude00"]}"#).rendered(), #"{"b":1,"a":[true,null,-2500,"é😀"]}"#)
        XCTAssertEqual(try parser.parse("18446744073709551615"), .uint(UInt64.max))
        for bad in ["{\"a\":1,}", "[1 2]", "01", "\"\\ud800\"", "{\"a\":1,\"a\":2}", "[[[[1]]]]", "nul", "1 2", "\"\u{01}\"", "NaN"] {
            XCTAssertThrowsError(try parser.parse(bad), bad)
        }
    }

    func testConfigurationFileAndEnvironment() throws {
        var configuration = ServerConfiguration()
        try configuration.apply(JSONParser().parse(
            #"{"port": 9000, "limits": {"max_body_bytes": 2048, "sync_timeout_ms": 5}, "auth": {"required": true, "roles": {"ops": ["system."]}}}"#))
        XCTAssertEqual(configuration.port, 9000)
        XCTAssertEqual(configuration.maxBodyBytes, 2048)
        XCTAssertEqual(configuration.syncTimeoutMilliseconds, 5)
        XCTAssertTrue(configuration.auth.required)
        XCTAssertEqual(configuration.auth.roles, ["ops": ["system."]])
        try configuration.apply(environment: ["CARTRITA_PORT": "9100", "CARTRITA_AUTH_REQUIRED": "false", "CARTRITA_ALLOWED_ORIGINS": "http://a, http://b"])
        XCTAssertEqual(configuration.port, 9100)
        XCTAssertFalse(configuration.auth.required)
        XCTAssertEqual(configuration.auth.allowedOrigins, ["http://a", "http://b"])
        XCTAssertThrowsError(try configuration.apply(JSONParser().parse(#"{"limits": {"max_body_kb": 1}}"#)))
        XCTAssertThrowsError(try configuration.apply(environment: ["CARTRITA_PORT": "70000"]))

        // The log's group-commit linger: file, then environment; out of range is refused.
        XCTAssertEqual(configuration.groupCommitLingerMicroseconds, 200)
        try configuration.apply(JSONParser().parse(#"{"limits": {"group_commit_linger_us": 1500}}"#))
        XCTAssertEqual(configuration.groupCommitLingerMicroseconds, 1_500)
        try configuration.apply(environment: ["CARTRITA_GROUP_COMMIT_LINGER_US": "0"])
        XCTAssertEqual(configuration.groupCommitLingerMicroseconds, 0)
        XCTAssertThrowsError(try configuration.apply(JSONParser().parse(#"{"limits": {"group_commit_linger_us": -1}}"#)))
        XCTAssertThrowsError(try configuration.apply(environment: ["CARTRITA_GROUP_COMMIT_LINGER_US": "100001"]))
    }

    func testRateLimiterRefillsAtItsRate() {
        let limiter = RateLimiter(ratePerSecond: 2, burst: 2)
        XCTAssertNil(limiter.take("u", nowNanoseconds: 0))
        XCTAssertNil(limiter.take("u", nowNanoseconds: 0))
        XCTAssertEqual(limiter.take("u", nowNanoseconds: 0), 1)
        XCTAssertNil(limiter.take("v", nowNanoseconds: 0), "buckets are per user")
        XCTAssertNil(limiter.take("u", nowNanoseconds: 500_000_000), "half a second refills one token at 2/s")
    }
}
