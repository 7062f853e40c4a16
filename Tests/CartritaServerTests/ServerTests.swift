import CartritaEnvelope
import CartritaNode
import Foundation
import HTTPTypes
import XCTest

@testable import CartritaServer

/// Every route over real sockets on loopback, against a real log in a temporary folder.
final class TaskRouteTests: XCTestCase {
    func testSyncTaskAnswersItsResultAndGetShowsTheFlowAcrossTiers() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)

        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"])
        XCTAssertEqual(posted.status, 200, posted.text)
        XCTAssertEqual(posted.string("status"), "completed", posted.text)
        XCTAssertNotNil(posted.json?["result"], posted.text)
        let id = try XCTUnwrap(posted.string("task_id"))
        XCTAssertEqual(posted.headers[.location], "/v3/tasks/\(id)")
        XCTAssertEqual(posted.string("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736", "traceparent becomes context.trace_id")

        // A sync answer is given once the orchestrator has settled the task, which can be a
        // commit before the answer's own record is in the log: the flow shows the last hop
        // once that commit lands.
        var hops: [String] = []
        for _ in 0..<100 {
            let got = try await client.send(.get, "/v3/tasks/\(id)")
            XCTAssertEqual(got.status, 200, got.text)
            XCTAssertEqual(got.string("status"), "completed")
            XCTAssertEqual(got.string("user_id"), "anonymous")
            guard case .array(let flow)? = got.json?["flow"] else { return XCTFail("no flow: \(got.text)") }
            hops = flow.compactMap { hop -> String? in
                guard case .string(let sender)? = hop["sender"], case .string(let recipient)? = hop["recipient"], case .string(let type)? = hop["type"]
                else { return nil }
                return "\(type) \(sender) -> \(recipient)"
            }
            if hops.last == "task_response orchestrator@v1.0 -> client.http@v1.0" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTAssertEqual(hops.first, "task_request client.http@v1.0 -> orchestrator@v1.0", "\(hops)")
        XCTAssertTrue(hops.contains("task_request orchestrator@v1.0 -> supervisor.intelligence@v1.0"), "\(hops)")
        XCTAssertTrue(hops.contains { $0.hasPrefix("task_request supervisor.intelligence@v1.0 -> agent.languagemaestro") }, "\(hops)")
        XCTAssertTrue(hops.contains { $0.hasPrefix("task_response agent.languagemaestro") }, "\(hops)")
        XCTAssertEqual(hops.last, "task_response orchestrator@v1.0 -> client.http@v1.0", "\(hops)")

        await client.close()
        try await server.shutdown()
    }

    /// A page reads one window of the orchestrator's records from its index, never the whole
    /// log: with a window of 2 records, a page stops early with a cursor, and following the
    /// cursors still lists every task once, in order.
    func testTaskPagesReadOneWindowOfTheLog() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.maxScanRecordsPerPage = 2
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)
        var ids: [String] = []
        for _ in 0..<4 {
            let accepted = try await client.send(.post, "/v3/tasks?async=true", body: textStatsBody)
            XCTAssertEqual(accepted.status, 202, accepted.text)
            ids.append(try XCTUnwrap(accepted.string("task_id")))
        }
        for id in ids { _ = try await client.waitForTask(id) }
        // A window of 2 of the orchestrator's records holds at most 2 requests, whatever the
        // page's limit (each task also has its answer there: 8 records for 4 tasks).
        var listed: [String] = []
        var pages = 0
        var cursor: String? = nil
        repeat {
            let page = try await client.send(.get, "/v3/tasks?limit=10" + (cursor.map { "&cursor=\($0)" } ?? ""))
            XCTAssertEqual(page.status, 200, page.text)
            guard case .array(let items)? = page.json?["tasks"] else { return XCTFail(page.text) }
            XCTAssertLessThanOrEqual(items.count, 2, page.text)
            for item in items { if case .string(let id)? = item["task_id"] { listed.append(id) } }
            cursor = page.string("next_cursor")
            pages += 1
        } while cursor != nil && pages < 50
        XCTAssertEqual(listed, ids)
        XCTAssertGreaterThanOrEqual(pages, 4)  // 8 records, 2 per page
        await client.close()
        try await server.shutdown()
    }

    func testAsyncTaskIsAcceptedThenListedAndPaged() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)

        var ids: [String] = []
        for _ in 0..<3 {
            let accepted = try await client.send(.post, "/v3/tasks?async=true", body: textStatsBody)
            XCTAssertEqual(accepted.status, 202, accepted.text)
            XCTAssertEqual(accepted.string("status"), "pending")
            ids.append(try XCTUnwrap(accepted.string("task_id")))
        }
        for id in ids {
            let done = try await client.waitForTask(id)
            XCTAssertEqual(done.string("status"), "completed", done.text)
        }

        let all = try await client.send(.get, "/v3/tasks?status=completed")
        XCTAssertEqual(all.status, 200, all.text)
        guard case .array(let tasks)? = all.json?["tasks"] else { return XCTFail(all.text) }
        XCTAssertEqual(tasks.compactMap { task -> String? in if case .string(let id)? = task["task_id"] { id } else { nil } }, ids)

        // One per page, following next_cursor, gives the same tasks in the same order.
        var paged: [String] = []
        var cursor: String? = nil
        repeat {
            let page = try await client.send(.get, "/v3/tasks?limit=1" + (cursor.map { "&cursor=\($0)" } ?? ""))
            XCTAssertEqual(page.status, 200, page.text)
            if case .array(let items)? = page.json?["tasks"] {
                for item in items { if case .string(let id)? = item["task_id"] { paged.append(id) } }
            }
            cursor = page.string("next_cursor")
        } while cursor != nil && paged.count < 10
        XCTAssertEqual(paged, ids)

        let none = try await client.send(.get, "/v3/tasks?status=failed")
        XCTAssertEqual(none.text, #"{"tasks":[],"next_cursor":null}"# + "\n")

        await client.close()
        try await server.shutdown()
    }

    func testIdempotencyKeyReturnsTheSameTaskAndConflictsOnAnotherBody() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)

        let first = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["Idempotency-Key": "order-42"])
        XCTAssertEqual(first.status, 200, first.text)
        let again = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["Idempotency-Key": "order-42"])
        XCTAssertEqual(again.status, 200, again.text)
        XCTAssertEqual(again.string("task_id"), first.string("task_id"))
        XCTAssertEqual(again.string("status"), "completed")
        let asyncAgain = try await client.send(.post, "/v3/tasks?async=true", body: textStatsBody, headers: ["Idempotency-Key": "order-42"])
        XCTAssertEqual(asyncAgain.string("task_id"), first.string("task_id"))

        let other = #"{"task": {"type": "text.stats"}, "input": {"data": "Another text entirely."}}"#
        let conflict = try await client.send(.post, "/v3/tasks", body: other, headers: ["Idempotency-Key": "order-42"])
        XCTAssertEqual(conflict.status, 409, conflict.text)
        XCTAssertEqual(conflict.errorCode, "idempotency_conflict")
        XCTAssertEqual(conflict.errorField, "Idempotency-Key")

        // The task ran once: one request from the client in the log.
        let id = try XCTUnwrap(MessageID(string: try XCTUnwrap(first.string("task_id"))))
        let requests = try server.frontDoor.log.seqs(correlation: id).compactMap { try server.frontDoor.log.record($0) }
            .filter { $0.envelope.sender == FrontDoor.httpClient && $0.envelope.type == .taskRequest }
        XCTAssertEqual(requests.count, 1)
        XCTAssertEqual(requests.first?.envelope.deliveryMode, .exactlyOnce)

        await client.close()
        try await server.shutdown()
    }

    func testCancelReachesTheTaskAndASecondCancelConflicts() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.ioServices["files"] = StallingFiles()
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let accepted = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/a.txt"))
        XCTAssertEqual(accepted.status, 202, accepted.text)
        let id = try XCTUnwrap(accepted.string("task_id"))

        let cancelled = try await client.send(.delete, "/v3/tasks/\(id)")
        XCTAssertEqual(cancelled.status, 200, cancelled.text)
        XCTAssertEqual(cancelled.string("status"), "cancelled", cancelled.text)
        XCTAssertEqual(cancelled.string("error", "code"), "cancelled")

        let again = try await client.send(.delete, "/v3/tasks/\(id)")
        XCTAssertEqual(again.status, 409, again.text)
        XCTAssertEqual(again.errorCode, "already_finished")

        let got = try await client.send(.get, "/v3/tasks/\(id)")
        XCTAssertEqual(got.string("status"), "cancelled")
        // The cancel went down from the orchestrator to the supervisor.
        guard case .array(let flow)? = got.json?["flow"] else { return XCTFail(got.text) }
        XCTAssertTrue(
            flow.contains { hop in
                hop["type"] == .string("task_error") && hop["sender"] == .string("orchestrator@v1.0")
                    && hop["recipient"] == .string("supervisor.intelligence@v1.0")
            }, got.text)

        await client.close()
        try await server.shutdown()
    }

    func testEventStreamReplaysAFinishedTaskAndFollowsALiveOne() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.ioServices["files"] = StallingFiles()
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let done = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        let doneID = try XCTUnwrap(done.string("task_id"))
        let replay = try await client.send(.get, "/v3/tasks/\(doneID)/events")
        XCTAssertEqual(replay.status, 200)
        XCTAssertEqual(replay.headers[.contentType], "text/event-stream")
        XCTAssertTrue(replay.text.contains("event: task_response\ndata: {"), replay.text)
        XCTAssertTrue(replay.text.hasPrefix("id: "), replay.text)

        // A live stream: opened while the task stalls, it ends with the cancel's answer.
        let accepted = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/c.txt"))
        let id = try XCTUnwrap(accepted.string("task_id"))
        let port = server.port
        let stream = Task {
            let watcher = Client(port: port)
            let answer = try await watcher.send(.get, "/v3/tasks/\(id)/events")
            await watcher.close()
            return answer
        }
        var tries = 0
        while server.frontDoor.events.count.load(ordering: .relaxed) == 0 && tries < 1_000 {
            try await Task.sleep(for: .milliseconds(5))
            tries += 1
        }
        let cancelled = try await client.send(.delete, "/v3/tasks/\(id)")
        XCTAssertEqual(cancelled.status, 200, cancelled.text)
        let live = try await stream.value
        XCTAssertEqual(live.status, 200)
        XCTAssertTrue(live.text.contains("event: task_error\n"), live.text)
        XCTAssertTrue(live.text.contains(#""code":"cancelled""#), live.text)

        await client.close()
        try await server.shutdown()
    }

    func testV2RouteBridgesToATaskWithADeprecationHeader() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)

        let created = try await client.send(.post, "/api/tasks/create", body: #"{"title": "from v2", "priority": "high"}"#)
        XCTAssertEqual(created.status, 200, created.text)
        XCTAssertEqual(created.headers[HTTPField.Name("Deprecation")!], "true")
        XCTAssertEqual(created.string("type"), "tasks.create")
        XCTAssertEqual(created.string("status"), "completed", created.text)
        XCTAssertEqual(created.string("result", "task", "title"), "from v2", created.text)

        // The seed's example route: routed to the intelligence supervisor, which has no
        // huggingface agent in this release, so the task fails with a named error.
        let vision = try await client.send(.post, "/api/huggingface/vision", body: #"{"image_url": "https://example.com/cat.png"}"#)
        XCTAssertEqual(vision.status, 200, vision.text)
        XCTAssertEqual(vision.string("type"), "huggingface.vision")
        XCTAssertEqual(vision.string("error", "code"), "unknown_task_type", vision.text)

        let notObject = try await client.send(.post, "/api/tasks/create", body: "[1]")
        XCTAssertEqual(notObject.status, 400)
        let badSegment = try await client.send(.post, "/api/Tasks/create", body: "{}")
        XCTAssertEqual(badSegment.status, 404)

        await client.close()
        try await server.shutdown()
    }

    func testHealthReadyAndMetrics() async throws {
        let folder = TemporaryFolder()
        let server = try await Server.start(configuration: testConfiguration(folder))
        let client = Client(port: server.port)

        let health = try await client.send(.get, "/health")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.string("status"), "ok")
        let ready = try await client.send(.get, "/ready")
        XCTAssertEqual(ready.status, 200, ready.text)
        XCTAssertEqual(ready.string("status"), "ready")
        XCTAssertEqual(ready.string("supervisors", "supervisor.system@v1.0", "status"), "ok", ready.text)

        _ = try await client.send(.post, "/v3/tasks", body: textStatsBody)
        let metrics = try await client.send(.get, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers[.contentType]?.hasPrefix("text/plain") ?? false)
        let text = metrics.text
        XCTAssertTrue(
            text.contains(#"mcp_messages_total{supervisor="supervisor.intelligence@v1.0",message_type="task_response",status="completed"}"#),
            text)
        XCTAssertTrue(text.contains("mcp_processing_duration_ms_bucket{"), text)
        XCTAssertTrue(text.contains(#"mcp_queue_depth{actor="orchestrator@v1.0"}"#), text)
        XCTAssertTrue(text.contains(#"http_requests_total{method="POST",route="/v3/tasks",status="200"}"#), text)
        // The process's own figures under the standard names, read from /proc at the scrape.
        func sample(_ name: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        let resident = try XCTUnwrap(sample("process_resident_memory_bytes"), text)
        let anonymous = try XCTUnwrap(sample("cartrita_process_resident_anonymous_bytes"), text)
        let file = try XCTUnwrap(sample("cartrita_process_resident_file_bytes"), text)
        XCTAssertGreaterThan(resident, 1_048_576)
        XCTAssertEqual(anonymous + file, resident, accuracy: resident * 0.05, "RSS is anonymous plus file pages (plus shared memory)")
        XCTAssertGreaterThan(try XCTUnwrap(sample("process_cpu_seconds_total"), text), 0)
        XCTAssertGreaterThan(try XCTUnwrap(sample("process_open_fds"), text), 3)
        XCTAssertGreaterThan(try XCTUnwrap(sample("process_threads"), text), 1)
        XCTAssertGreaterThan(try XCTUnwrap(sample("process_start_time_seconds"), text), 1.7e9)
        try checkPrometheusText(text)

        await client.close()
        try await server.shutdown()
    }
}

/// Every sample line is `name{labels} value`, with a TYPE line before its family; promtool
/// checks the whole text when it is installed.
func checkPrometheusText(_ text: String) throws {
    var typed: Set<String> = []
    for line in text.split(separator: "\n") {
        if line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            XCTAssertEqual(parts.count, 4, String(line))
            typed.insert(String(parts[2]))
            continue
        }
        if line.hasPrefix("#") { continue }
        let name = String(line.prefix { $0 != "{" && $0 != " " })
        XCTAssertTrue(
            typed.contains(name) || typed.contains { name.hasPrefix($0 + "_") }, "sample \(name) before its TYPE line")
        let value = line.split(separator: " ").last.map(String.init) ?? ""
        XCTAssertNotNil(Double(value) ?? (value == "+Inf" ? 1 : nil), "value of \(line)")
    }
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let promtool else { return }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: promtool)
    process.arguments = ["check", "metrics"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = output
    try process.run()
    input.fileHandleForWriting.write(Data(text.utf8))
    try input.fileHandleForWriting.close()
    process.waitUntilExit()
    let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    // promtool's lint warns about naming (exit 3 is "lint problems"); a parse error is exit 1.
    XCTAssertNotEqual(process.terminationStatus, 1, report)
}
