import CartritaEnvelope
import Foundation
import HTTPTypes
import XCTest

@testable import CartritaServer

/// `/debug` on the live log: the debugger's page and API for admins only.
final class DebugRouteTests: XCTestCase {
    func testDebugServesTheLiveLogToAdminsOnly() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.roles = ["admin": [""], "user": ["text."]]
        let store = try ServerStore(dataPath: configuration.dataPath)
        let (_, adminKey) = try store.createKey(role: "admin", user: "ada", nowMilliseconds: 1)
        let (_, userKey) = try store.createKey(role: "user", user: "bob", nowMilliseconds: 1)
        store.close()
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["Authorization": "Bearer \(adminKey)"])
        XCTAssertEqual(posted.status, 200, posted.text)
        let task = try XCTUnwrap(posted.string("task_id"))

        // No key, a user's key: refused with the API's JSON errors.
        let anonymous = try await client.send(.get, "/debug/api/summary")
        XCTAssertEqual(anonymous.status, 401, anonymous.text)
        XCTAssertEqual(anonymous.errorCode, "unauthenticated")
        let user = try await client.send(.get, "/debug/api/summary", headers: ["Authorization": "Bearer \(userKey)"])
        XCTAssertEqual(user.status, 403, user.text)
        XCTAssertEqual(user.errorCode, "forbidden")
        let userPage = try await client.send(.get, "/debug/?key=\(userKey)")
        XCTAssertEqual(userPage.status, 403)

        // The admin: the live log's summary, the task's records and trace, the page (a browser
        // gives the key in the URL; the page sends it back as a header).
        let summary = try await client.send(.get, "/debug/api/summary", headers: ["Authorization": "Bearer \(adminKey)"])
        XCTAssertEqual(summary.status, 200, summary.text)
        XCTAssertTrue(summary.text.contains(#""source":"log""#), summary.text)
        let lastSeq = summary.text.split(separator: ",").first { $0.hasPrefix(#""last_seq":"#) }.flatMap { UInt64($0.dropFirst(11)) }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(lastSeq, summary.text), 6)
        XCTAssertTrue(summary.text.contains("client.http@v1.0"), summary.text)
        let records = try await client.send(.get, "/debug/api/records?correlation=\(task)&limit=50", headers: ["X-API-Key": adminKey])
        XCTAssertEqual(records.status, 200, records.text)
        XCTAssertEqual(records.text.components(separatedBy: #""correlation_id":"\#(task)""#).count - 1, try server.frontDoor.log.seqs(correlation: MessageID(string: task)!).count)
        let trace = try await client.send(.get, "/debug/api/trace?correlation=\(task)", headers: ["X-API-Key": adminKey])
        XCTAssertEqual(trace.string("outcome"), "completed", trace.text)
        let page = try await client.send(.get, "/debug/?key=\(adminKey)&at=3")
        XCTAssertEqual(page.status, 200, page.text)
        XCTAssertTrue(page.text.contains(#"window.CARTRITA_BASE = "/debug";"#), page.text)
        let script = try await client.send(.get, "/debug/app.js?key=\(adminKey)")
        XCTAssertEqual(script.status, 200)
        XCTAssertEqual(script.headers[.contentType], "text/javascript; charset=utf-8")
        let bad = try await client.send(.get, "/debug/api/state?at=0&actor=orchestrator@v1.0", headers: ["X-API-Key": adminKey])
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(bad.errorCode, "seq_out_of_range")

        await client.close()
        try await server.shutdown()
    }
}
