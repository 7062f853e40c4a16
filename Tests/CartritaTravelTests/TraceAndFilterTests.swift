import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTestSupport
@testable import CartritaTravel
import Foundation
import XCTest

final class TraceAndFilterTests: XCTestCase {
    /// A task's tree: client → orchestrator → supervisor → agent, and the answers back up.
    func testTraceOfATaskHasEveryHopDownAndBack() async throws {
        let recording = try await Recording.record(label: "trace", batches: [12])
        let log = try recording.open()
        defer { log.close() }
        for task in recording.taskIDs.prefix(6) {
            let trace = try TaskTrace.load(log: log, correlation: task)
            XCTAssertEqual(trace.hops.count, 6, trace.renderTree())
            XCTAssertEqual(trace.roots.count, 1)
            // parent_id names the message each one answers or was caused by: a request's
            // children are the request it forwards and the answer to it.
            func hop(_ position: Int) -> String {
                let envelope = trace.hops[position].envelope
                return "\(envelope.type.rawValue) \(envelope.sender.kind)→\(envelope.recipient.kind)"
            }
            let root = trace.roots[0]
            XCTAssertEqual(hop(root), "task_request client→orchestrator")
            XCTAssertEqual(trace.hops[root].children.map(hop), ["task_request orchestrator→supervisor", "task_response orchestrator→client"])
            let forward = trace.hops[root].children[0]
            XCTAssertEqual(trace.hops[forward].children.map(hop), ["task_request supervisor→agent", "task_response supervisor→orchestrator"])
            let work = trace.hops[forward].children[0]
            XCTAssertEqual(trace.hops[work].children.map(hop), ["task_response agent→supervisor"])
            let path = [root, forward, work, trace.hops[work].children[0]].map { trace.hops[$0] }
            // In log order: down to the agent, and back up.
            XCTAssertEqual(trace.hops.indices.map(hop), [
                "task_request client→orchestrator", "task_request orchestrator→supervisor", "task_request supervisor→agent",
                "task_response agent→supervisor", "task_response supervisor→orchestrator", "task_response orchestrator→client",
            ])
            XCTAssertEqual(trace.outcome, "completed")
            XCTAssertEqual(trace.errors, 0)
            XCTAssertEqual(trace.retries, 0)
            // Each hop is delivered no earlier than the one that caused it.
            for index in trace.hops.indices { XCTAssertGreaterThanOrEqual(trace.hopMilliseconds(index) ?? 0, 0) }
            let text = trace.renderTree()
            XCTAssertTrue(text.contains("task_response agent."), text)
            XCTAssertTrue(text.hasPrefix("task \(task)"), text)

            // OTLP: one span per message, one trace id (the envelopes'), parents linked by span id.
            guard case .object(let root) = trace.otlpJSON, case .array(let resources)? = root.first(where: { $0.0 == "resourceSpans" })?.1,
                case .object(let resource) = resources[0], case .array(let scopes)? = resource.first(where: { $0.0 == "scopeSpans" })?.1,
                case .object(let scope) = scopes[0], case .array(let spans)? = scope.first(where: { $0.0 == "spans" })?.1
            else { return XCTFail("not OTLP/JSON: \(trace.otlpJSON.rendered())") }
            XCTAssertEqual(spans.count, 6)
            func field(_ span: JSON, _ key: String) -> String? {
                guard case .object(let members) = span, case .string(let value)? = members.first(where: { $0.0 == key })?.1 else { return nil }
                return value
            }
            let traceID = path[0].envelope.context.traceID.description
            XCTAssertTrue(spans.allSatisfy { field($0, "traceId") == traceID })
            let spanIDs = Set(spans.compactMap { field($0, "spanId") })
            XCTAssertEqual(spanIDs.count, 6)
            XCTAssertEqual(spans.filter { spanIDs.contains(field($0, "parentSpanId") ?? "") }.count, 5)
            XCTAssertEqual(field(spans[0], "parentSpanId"), path[0].envelope.context.spanID.description)
            XCTAssertTrue(spans.allSatisfy { UInt64(field($0, "startTimeUnixNano") ?? "") != nil })
        }
        XCTAssertThrowsError(try TaskTrace.load(log: log, correlation: MessageID(high: 0x7000, low: 0x8000_0000_0000_0001))) {
            XCTAssertEqual(($0 as? TravelError)?.code, .unknownCorrelation)
        }
    }

    /// Retries and errors show in the tree: a supervisor whose agent never answers in time.
    func testTraceShowsRetriesAndErrors() throws {
        let id = { (n: UInt64) in MessageID(high: 0x0190_0000_0000_7000 | n, low: 0x8000_0000_0000_0000 | n) }
        let context = MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3))
        func record(_ seq: UInt64, _ n: UInt64, parent: UInt64?, _ from: Address, _ to: Address, _ payload: Payload, retry: Int32 = 0, clock: Int64) -> LogRecord {
            LogRecord(
                header: RecordHeader(seq: seq, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: clock, entropy: 0),
                envelope: Envelope(
                    id: id(n), parentID: parent.map(id), correlationID: id(1), sender: from, recipient: to, timestampMilliseconds: clock - 1,
                    ttlMilliseconds: 60_000, context: context, payload: payload, retryCount: retry, maxRetries: 1))
        }
        let request = Payload.taskRequest(TaskRequest(task: TaskSpec(type: "text.analyze", parameters: []), input: TaskInput()))
        let supervisor = Hierarchy.intelligence
        let agent = Address("agent.languagemaestro@v1.0")
        let timeout = Payload.taskError(TaskError(code: .timeout, message: "no answer", retryable: true))
        let client = Hierarchy.runClient
        let orchestrator = Address.orchestrator
        var records: [LogRecord] = []
        records.append(record(1, 1, parent: nil, client, orchestrator, request, clock: 100))
        records.append(record(2, 2, parent: 1, orchestrator, supervisor, request, clock: 101))
        records.append(record(3, 3, parent: 2, supervisor, agent, request, clock: 102))
        records.append(record(4, 4, parent: 2, supervisor, supervisor, timeout, clock: 200))
        records.append(record(5, 5, parent: 2, supervisor, agent, request, retry: 1, clock: 210))
        records.append(record(6, 6, parent: 2, supervisor, orchestrator, timeout, clock: 400))
        records.append(record(7, 7, parent: 1, orchestrator, client, timeout, clock: 401))
        let trace = TaskTrace(correlation: id(1), records: records)
        XCTAssertEqual(trace.retries, 1)
        XCTAssertEqual(trace.errors, 3)
        XCTAssertEqual(trace.outcome, "timeout")
        XCTAssertEqual(trace.durationMilliseconds, 301)
        XCTAssertEqual(trace.hops[1].children, [2, 3, 4, 5])
        XCTAssertEqual(trace.hopMilliseconds(4), 109)
        let text = trace.renderTree()
        XCTAssertTrue(text.contains("retry 1/1"), text)
        XCTAssertTrue(text.contains("ERROR timeout: no answer"), text)
    }

    func testFilterUsesEachConditionAndTheIndexes() async throws {
        let recording = try await Recording.record(label: "filter", batches: [15])
        let log = try recording.open()
        defer { log.close() }
        func seqs(_ filter: RecordFilter) throws -> [UInt64] {
            var seqs: [UInt64] = []
            try log.filter(filter) { seqs.append($0.header.seq); return true }
            return seqs
        }
        let all = try log.records()
        let task = recording.taskIDs[3]
        XCTAssertEqual(try seqs(RecordFilter(correlation: task)), all.filter { $0.envelope.correlationID == task }.map(\.header.seq))
        XCTAssertEqual(
            try seqs(RecordFilter(actor: .orchestrator, type: .taskResponse)),
            all.filter { $0.envelope.recipient == .orchestrator && $0.envelope.type == .taskResponse }.map(\.header.seq))
        XCTAssertEqual(try seqs(RecordFilter(type: .taskRequest)).count, 15 * 3)
        let middle = all[all.count / 2].header.clockMilliseconds
        XCTAssertEqual(
            try seqs(RecordFilter(sinceMilliseconds: middle, untilMilliseconds: middle)),
            all.filter { $0.header.clockMilliseconds == middle }.map(\.header.seq))
        XCTAssertEqual(try seqs(RecordFilter(type: .taskError, correlation: task)), [])
        // A stop from the body is honoured.
        var taken = 0
        try log.filter(RecordFilter()) { _ in taken += 1; return taken < 4 }
        XCTAssertEqual(taken, 4)

        XCTAssertEqual(try RecordFilter.parseTime("1764046524123"), 1_764_046_524_123)
        XCTAssertEqual(try RecordFilter.parseTime("2025-11-25T04:55:24.123Z"), 1_764_046_524_123)
        XCTAssertEqual(try RecordFilter.parseTime("2025-11-25T05:55:24+01:00"), 1_764_046_524_000)
        XCTAssertThrowsError(try RecordFilter.parseTime("yesterday")) { XCTAssertEqual(($0 as? TravelError)?.code, .invalidArgument) }
    }

    /// A follower sees every record a concurrent writer commits, in order, once.
    func testFollowerSeesEveryRecordOfAConcurrentWriter() async throws {
        let directory = TemporaryDirectory("follow")
        let log = try EventLog(path: directory.path, configuration: Recording.configuration())
        let follower = LogFollower(log: log, lastRecords: 10)
        let (node, _) = try Node.recover(log: log, hierarchy: .standard())
        var seen: [UInt64] = []
        for index in 0..<40 {
            let (request, mode) = Workload.standard.task(seed: 5, index: index)
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
            _ = try follower.poll { seen.append($0.header.seq) }
            await Task.yield()
        }
        _ = await node.waitUntilIdle()
        await node.shutdown()
        while try follower.poll({ seen.append($0.header.seq) }) > 0 {}
        XCTAssertEqual(seen, Array(1...log.lastSeq))
        log.close()
    }

    /// `cartrita log tail -f` in another process follows a log this process is writing.
    func testTailFollowsALiveLogFromAnotherProcess() async throws {
        let executable = try XCTUnwrap(cartritaExecutable(), "the cartrita executable next to the test bundle")
        let directory = TemporaryDirectory("tail")
        let log = try EventLog(path: directory.path, configuration: Recording.configuration())
        let (node, _) = try Node.recover(log: log, hierarchy: .standard())
        node.submit(Workload.standard.task(seed: 9, index: 0).0, from: Hierarchy.runClient)
        _ = await node.waitUntilIdle()

        let process = Process()
        process.executableURL = executable
        process.arguments = ["log", "tail", "-f", "--data", directory.path, "-n", "1000", "--poll-ms", "10"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // A safety net, not a timing assertion: a child that never prints the last record is
        // stopped, so the read below ends and the comparison fails instead of hanging.
        let child = UncheckedBox(process)
        DispatchQueue.global().asyncAfter(deadline: .now() + 120) { if child.value.isRunning { child.value.terminate() } }
        for index in 1..<30 {
            let (request, mode) = Workload.standard.task(seed: 9, index: index)
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
            if index % 10 == 0 { _ = await node.waitUntilIdle() }
        }
        _ = await node.waitUntilIdle()
        let last = log.lastSeq
        // Read lines until the last record arrives (or the child dies).
        let reader = output.fileHandleForReading
        var text = ""
        var lines: [String] = []
        while lines.count < Int(last) {
            let data = reader.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        process.terminate()
        process.waitUntilExit()
        await node.shutdown()
        log.close()
        let seqs = lines.compactMap { line -> UInt64? in
            guard let range = line.range(of: "\"seq\":") else { return nil }
            return UInt64(line[range.upperBound...].prefix { $0.isNumber })
        }
        XCTAssertEqual(seqs, Array(1...last))
    }
}

final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The `cartrita` executable built next to the test bundle (or `CARTRITA_BIN`).
func cartritaExecutable() -> URL? { CartritaBinary.url() }
