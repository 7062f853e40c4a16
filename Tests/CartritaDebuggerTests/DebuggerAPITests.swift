import CartritaDebugger
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTravel
import Foundation
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A fresh directory under /tmp, removed when released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String) {
        var template = Array("/tmp/cartrita-debuggertests-\(label)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed: \(errno)")
        self.path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }
}

/// The debugger's API over a real loopback socket (`DebugServer`, Hummingbird), on a real LMDB
/// log written by the real node.
final class DebuggerAPITests: XCTestCase {
    /// A log of `tasks` standard tasks plus one task of an unknown type (an error in the log).
    static func recordLog(_ directory: TemporaryDirectory, tasks: Int) async throws -> (unknown: MessageID, ids: [MessageID]) {
        let log = try EventLog(path: directory.path, configuration: EventLogConfiguration(durability: .relaxed))
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 50
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        var ids: [MessageID] = []
        for index in 0..<tasks {
            let (request, mode) = Workload.standard.task(seed: 3, index: index)
            ids.append(node.submit(request, from: Hierarchy.runClient, deliveryMode: mode))
        }
        let unknown = node.submit(TaskRequest(task: TaskSpec(type: "nosuch.thing")), from: Hierarchy.runClient, deliveryMode: .atLeastOnce)
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        await node.shutdown()
        log.close()
        return (unknown, ids)
    }

    /// Starts `cartrita debug`'s server on a free port; returns the base URL and the task to cancel.
    static func serve(_ api: DebuggerAPI) async throws -> (URL, Task<Void, any Error>) {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task { try await DebugServer.run(api: api, host: "127.0.0.1", port: 0) { continuation.yield($0) } }
        var bound: Int?
        for await port in ports {
            bound = port
            break
        }
        return (URL(string: "http://127.0.0.1:\(try XCTUnwrap(bound))")!, task)
    }

    static func get(_ base: URL, _ path: String) async throws -> (status: Int, body: [String: Any], text: String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: base.absoluteString + path)!)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let body = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return (status, body, String(decoding: data, as: UTF8.self))
    }

    func testTheAPIPagesTheLogAndShowsStateTracesAndErrors() async throws {
        let directory = TemporaryDirectory("api")
        let (unknown, ids) = try await Self.recordLog(directory, tasks: 40)
        let log = try EventLog(path: directory.path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        let (base, server) = try await Self.serve(DebuggerAPI(source: LogSource(log: log)))
        defer { server.cancel() }
        let last = log.lastSeq

        let summary = try await Self.get(base, "/api/summary")
        XCTAssertEqual(summary.status, 200)
        XCTAssertEqual(summary.body["last_seq"] as? Int, Int(last))
        XCTAssertEqual(summary.body["source"] as? String, "log")
        XCTAssertTrue((summary.body["actors"] as? [String])?.contains("client.run@v1.0") == true)

        // A page around a point: half before it, the point, the rest after; contiguous seqs.
        let point = last / 2
        let page = try await Self.get(base, "/api/records?around=\(point)&limit=10")
        let rows = try XCTUnwrap(page.body["records"] as? [[String: Any]])
        let seqs = rows.compactMap { $0["seq"] as? Int }
        XCTAssertEqual(seqs, Array(Int(point) - 5..<Int(point) + 5))
        XCTAssertEqual(page.body["next_from"] as? Int, Int(point) + 5)
        XCTAssertEqual(page.body["prev_before"] as? Int, Int(point) - 5)
        // Forwards and backwards from there.
        let next = try await Self.get(base, "/api/records?from=\(point + 5)&limit=3")
        XCTAssertEqual((next.body["records"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int }, [Int(point) + 5, Int(point) + 6, Int(point) + 7])
        let previous = try await Self.get(base, "/api/records?before=\(point - 5)&limit=3")
        XCTAssertEqual((previous.body["records"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int }, [Int(point) - 8, Int(point) - 7, Int(point) - 6])

        // Filters: by type (scan), by actor (index), by correlation (index); errors are marked.
        let errors = try await Self.get(base, "/api/records?type=task_error&limit=100")
        let errorRows = try XCTUnwrap(errors.body["records"] as? [[String: Any]])
        XCTAssertFalse(errorRows.isEmpty)
        XCTAssertTrue(errorRows.allSatisfy { $0["type"] as? String == "task_error" && $0["error"] != nil })
        XCTAssertTrue(errorRows.contains { ($0["error"] as? [String: Any])?["code"] as? String == "unknown_task_type" })
        XCTAssertTrue(errorRows.contains { $0["correlation_id"] as? String == unknown.description })
        let client = try await Self.get(base, "/api/records?actor=client.run@v1.0&limit=500")
        let clientRows = try XCTUnwrap(client.body["records"] as? [[String: Any]])
        XCTAssertEqual(clientRows.count, ids.count + 1, "one answer per task")
        XCTAssertTrue(clientRows.allSatisfy { $0["recipient"] as? String == "client.run@v1.0" })
        let task = try await Self.get(base, "/api/records?correlation=\(ids[3])&limit=100")
        XCTAssertEqual((task.body["records"] as? [[String: Any]])?.count, try log.seqs(correlation: ids[3]).count)

        // State at a point: the same digest as travel, with the diff of the actor's last step.
        let state = try await Self.get(base, "/api/state?at=\(last)&actor=client.run@v1.0")
        XCTAssertEqual(state.status, 200, state.text)
        let travelled = try TimeTravel(log: log).state(at: last, actors: [Hierarchy.runClient]).actors[0]
        XCTAssertEqual(state.body["digest"] as? String, travelled.digest)
        XCTAssertEqual((state.body["state"] as? [String: Any])?["completed"] as? Int, ids.count)
        XCTAssertEqual((state.body["state"] as? [String: Any])?["failed"] as? Int, 1)
        let diff = try XCTUnwrap(state.body["diff"] as? [String: Any])
        XCTAssertEqual(diff["to_seq"] as? Int, Int(travelled.lastSeq))
        XCTAssertEqual((diff["changes"] as? [[String: Any]])?.count, 1, "one answer counted")

        // The causal tree of the failed task, with its error.
        let trace = try await Self.get(base, "/api/trace?correlation=\(unknown)")
        XCTAssertEqual(trace.status, 200)
        XCTAssertGreaterThanOrEqual(trace.body["errors"] as? Int ?? 0, 1)
        XCTAssertEqual(trace.body["task_type"] as? String, "nosuch.thing")

        // Bad input: named errors with statuses.
        for (path, status, code) in [
            ("/api/state?at=0&actor=client.run@v1.0", 400, "seq_out_of_range"),
            ("/api/state?at=\(last + 1)&actor=client.run@v1.0", 400, "seq_out_of_range"),
            ("/api/state?at=1&actor=not-an-address", 400, "invalid_argument"),
            ("/api/state?at=1&actor=agent.nobody@v1.0", 400, "unknown_actor"),
            ("/api/records?from=abc", 400, "invalid_argument"),
            ("/api/records?type=nope", 400, "invalid_argument"),
            ("/api/trace?correlation=\(MessageID(high: 1, low: 2))", 404, "unknown_correlation"),
            ("/api/record?seq=\(last + 9)", 400, "seq_out_of_range"),
            ("/api/nothing", 404, "not_found"),
        ] {
            let answer = try await Self.get(base, path)
            XCTAssertEqual(answer.status, status, path)
            XCTAssertEqual((answer.body["error"] as? [String: Any])?["code"] as? String, code, "\(path): \(answer.text)")
        }

        // The page and its assets are embedded.
        let page0 = try await Self.get(base, "/?at=5")
        XCTAssertEqual(page0.status, 200)
        XCTAssertTrue(page0.text.contains("Cartrita debugger"))
        XCTAssertTrue(page0.text.contains(#"window.CARTRITA_BASE = "";"#))
        let script = try await Self.get(base, "/app.js")
        XCTAssertTrue(script.text.contains("async function go(seq)"))
        XCTAssertFalse(script.text.contains("http://") || script.text.contains("https://"), "no CDN")
    }

    /// A capsule serves the same API: its records, states replayed from its snapshots.
    func testACapsuleIsServedWithTheSameAPI() async throws {
        let directory = TemporaryDirectory("capsule")
        let (_, ids) = try await Self.recordLog(directory, tasks: 20)
        let log = try EventLog(path: directory.path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        let travel = TimeTravel(log: log)
        let capsule = try Capsule.decode(try travel.exportCapsule(correlation: ids[10]).encode())
        let api = DebuggerAPI(source: try CapsuleSource(capsule))
        let seqs = try log.seqs(correlation: ids[10])
        let summary = api.handle(path: "api/summary", query: [:])
        XCTAssertTrue(summary.body.contains(#""source":"capsule""#), summary.body)
        let records = api.handle(path: "api/records", query: ["correlation": ids[10].description, "limit": "100"])
        for seq in seqs { XCTAssertTrue(records.body.contains(#""seq":\#(seq),"#), "\(seq)") }
        // State of the client at the capsule's end equals travel on the log.
        let end = seqs.last!
        let state = api.handle(path: "api/state", query: ["at": "\(end)", "actor": "client.run@v1.0"])
        XCTAssertEqual(state.status, 200, state.body)
        let expected = try travel.state(at: end, actors: [Hierarchy.runClient]).actors[0].digest
        XCTAssertTrue(state.body.contains(expected), state.body)
    }
}
