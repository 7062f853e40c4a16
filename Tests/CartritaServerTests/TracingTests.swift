import CartritaEnvelope
import CartritaNode
import CartritaTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization
import Tracing
import XCTest

@testable import CartritaServer
@testable import CartritaTelemetry

// MARK: - An OTLP/HTTP receiver on loopback

/// What a collector's OTLP/HTTP receiver does, as far as the test needs: `POST /v1/traces`
/// bodies kept as they came, answered `200 {}` (an empty `ExportTraceServiceResponse`).
final class OTLPReceiver: Sendable {
    final class Received: Sendable {
        let bodies = Mutex<[(contentType: String, bytes: [UInt8])]>([])
    }

    let received: Received
    let port: Int
    let task: Task<Void, any Error>

    private init(received: Received, port: Int, task: Task<Void, any Error>) {
        self.received = received
        self.port = port
        self.task = task
    }

    static func start() async throws -> OTLPReceiver {
        let received = Received()
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 32 << 20)
            let contentType = request.headers[.contentType] ?? ""
            received.bodies.withLock { $0.append((contentType, Array(body.readableBytesView))) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            },
            logger: Logger(label: "otlp-receiver"))
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var bound: Int?
        for await port in ports {
            bound = port
            break
        }
        guard let bound, bound > 0 else {
            task.cancel()
            throw XCTSkip("the OTLP receiver could not listen on loopback")
        }
        return OTLPReceiver(received: received, port: bound, task: task)
    }

    var bodies: [(contentType: String, bytes: [UInt8])] { self.received.bodies.withLock { $0 } }

    func stop() async {
        self.task.cancel()
        _ = await self.task.result
    }
}

/// One exported span, read from OTLP/JSON.
struct ExportedSpan {
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var name: String
    var kind: Int64
    var attributes: [String: JSON]

    func string(_ key: String) -> String? {
        if case .object(let members)? = self.attributes[key], let (_, value) = members.first(where: { $0.0 == "stringValue" }),
            case .string(let text) = value
        {
            return text
        }
        return nil
    }

    func int(_ key: String) -> Int64? {
        guard case .object(let members)? = self.attributes[key], let (_, value) = members.first(where: { $0.0 == "intValue" }) else { return nil }
        switch value {
        case .string(let text): return Int64(text)
        case .int(let number): return number
        case .uint(let number): return Int64(number)
        default: return nil
        }
    }
}

// MARK: - Tests

/// Tracing end to end: the real `cartrita serve` with the standard OTEL_* variables, exporting
/// through swift-otel's OTLP/HTTP exporter to a receiver this test runs on loopback.
final class TracingTests: XCTestCase {
    static let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    /// Starts `cartrita serve` with `otel` as its only OTEL_* variables; returns it and its port.
    func serve(_ folder: TemporaryFolder, otel: [String: String]) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = try CartritaBinary.required()
        process.arguments = ["serve", "--data", folder.path + "/data", "--port", "0"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") }
        environment.merge(otel) { $1 }
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        _ = FileManager.default.createFile(atPath: folder.path + "/stderr.log", contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.path + "/stderr.log"))
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let port = text.split(separator: ":").last.flatMap({ Int($0.prefix { $0.isNumber }) }) else {
            process.terminate()
            let log = (try? String(contentsOfFile: folder.path + "/stderr.log", encoding: .utf8)) ?? ""
            throw XCTSkip("serve did not start: \(text) \(log)")
        }
        return (process, port)
    }

    func stop(_ process: Process) {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    /// Spans of every export received so far (OTLP/JSON bodies).
    func spans(_ receiver: OTLPReceiver) throws -> [ExportedSpan] {
        var spans: [ExportedSpan] = []
        for body in receiver.bodies {
            XCTAssertEqual(body.contentType, "application/json")
            let json = try JSONParser().parse(String(decoding: body.bytes, as: UTF8.self))
            guard case .array(let resources)? = json["resourceSpans"] else { continue }
            for resource in resources {
                guard case .array(let scopes)? = resource["scopeSpans"] else { continue }
                for scope in scopes {
                    guard case .array(let items)? = scope["spans"] else { continue }
                    for item in items {
                        var attributes: [String: JSON] = [:]
                        if case .array(let pairs)? = item["attributes"] {
                            for pair in pairs {
                                if case .string(let key)? = pair["key"], let value = pair["value"] { attributes[key] = value }
                            }
                        }
                        func text(_ key: String) -> String {
                            if case .string(let value)? = item[key] { return value }
                            return ""
                        }
                        var kind: Int64 = 0
                        if case .int(let value)? = item["kind"] { kind = value }
                        if case .uint(let value)? = item["kind"] { kind = Int64(value) }
                        spans.append(ExportedSpan(
                            traceID: Self.hexID(text("traceId")), spanID: Self.hexID(text("spanId")),
                            parentSpanID: Self.hexID(text("parentSpanId")), name: text("name"), kind: kind, attributes: attributes))
                    }
                }
            }
        }
        return spans
    }

    /// OTLP/JSON names ids in hex; the generic protobuf JSON mapping in base64. Either becomes hex.
    static func hexID(_ text: String) -> String {
        if text.isEmpty { return "" }
        if (text.count == 32 || text.count == 16), text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let data = Data(base64Encoded: text) else { return text }
        return Hex.encode(Array(data))
    }

    func testEachHopIsASpanOfOneTraceWithTheMCPAttributesExportedOverOTLPHTTP() async throws {
        let receiver = try await OTLPReceiver.start()
        let folder = TemporaryFolder()
        let (process, port) = try self.serve(folder, otel: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(receiver.port)",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_SERVICE_NAME": "cartrita-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        ])
        let client = Client(port: port)
        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": Self.traceparent])
        XCTAssertEqual(posted.string("status"), "completed", posted.text)
        let taskID = try XCTUnwrap(posted.string("task_id"))
        let view = try await client.send(.get, "/v3/tasks/\(taskID)")
        let envelopeSpan = try XCTUnwrap(view.string("span_id"), view.text)
        XCTAssertEqual(view.string("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736")
        await client.close()

        // The batch processor exports every 100 ms; wait (bounded) for the answer's hop.
        var spans: [ExportedSpan] = []
        for _ in 0..<200 {
            spans = try self.spans(receiver)
            if spans.contains(where: { $0.string("mcp.message.recipient") == "client.http@v1.0" && $0.string("mcp.correlation.id") == taskID }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        self.stop(process)
        await receiver.stop()

        // The HTTP request's server span: child of the caller's span, and the envelope carries its id.
        let server = try XCTUnwrap(spans.first { $0.name == "POST /v3/tasks" }, "\(spans.map(\.name))")
        XCTAssertEqual(server.traceID, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(server.parentSpanID, "00f067aa0ba902b7", "the server span is a child of the traceparent's span")
        XCTAssertEqual(server.spanID, envelopeSpan, "context.span_id of the envelope is the request's span")
        XCTAssertEqual(server.kind, 2)  // SPAN_KIND_SERVER

        // One span per hop, all in the caller's trace.
        let hops = spans.filter { $0.string("mcp.correlation.id") == taskID }
        XCTAssertGreaterThanOrEqual(hops.count, 6, "\(hops.map(\.name))")
        for hop in hops {
            XCTAssertEqual(hop.traceID, "4bf92f3577b34da6a3ce929d0e0e4736", hop.name)
            XCTAssertEqual(hop.kind, 5, hop.name)  // SPAN_KIND_CONSUMER
            for key in [
                "mcp.message.id", "mcp.message.type", "mcp.message.sender", "mcp.message.recipient", "mcp.correlation.id",
                "mcp.message.priority", "mcp.delivery.mode",
            ] {
                XCTAssertNotNil(hop.string(key), "\(hop.name) lacks \(key)")
            }
            for key in ["mcp.retry.count", "mcp.retry.max", "mcp.log.seq", "mcp.queue.wait_time_ms", "mcp.transport.latency_ms"] {
                XCTAssertNotNil(hop.int(key), "\(hop.name) lacks \(key)")
            }
        }
        let described = hops.map { "\($0.string("mcp.message.type") ?? "") \($0.string("mcp.message.sender") ?? "") -> \($0.string("mcp.message.recipient") ?? "")" }
        XCTAssertTrue(described.contains("task_request client.http@v1.0 -> orchestrator@v1.0"), "\(described)")
        XCTAssertTrue(described.contains("task_request orchestrator@v1.0 -> supervisor.intelligence@v1.0"), "\(described)")
        XCTAssertTrue(described.contains { $0.hasPrefix("task_request supervisor.intelligence@v1.0 -> agent.languagemaestro") }, "\(described)")
        XCTAssertTrue(described.contains { $0.hasPrefix("task_response agent.languagemaestro") }, "\(described)")
        XCTAssertTrue(described.contains("task_response supervisor.intelligence@v1.0 -> orchestrator@v1.0"), "\(described)")
        XCTAssertTrue(described.contains("task_response orchestrator@v1.0 -> client.http@v1.0"), "\(described)")

        // Parenting: the client's request under the server span, every other hop under the span
        // of the message that caused it (parent_id); one tree, rooted at the caller.
        let byMessage = Dictionary(hops.map { ($0.string("mcp.message.id") ?? "", $0) }, uniquingKeysWith: { first, _ in first })
        for hop in hops {
            if let parent = hop.string("mcp.message.parent_id") {
                XCTAssertEqual(hop.parentSpanID, byMessage[parent]?.spanID, "\(hop.name) hangs under its cause")
            } else {
                XCTAssertEqual(hop.parentSpanID, server.spanID, "\(hop.name) hangs under the request's span")
            }
        }
        let request = try XCTUnwrap(hops.first { $0.string("mcp.message.type") == "task_request" && $0.string("mcp.message.sender") == "client.http@v1.0" })
        XCTAssertEqual(request.string("mcp.task.type"), "text.stats")
        XCTAssertEqual(request.string("mcp.message.id"), taskID)
        let agentAnswer = try XCTUnwrap(hops.first { $0.string("mcp.message.type") == "task_response" && $0.string("mcp.agent") != nil && $0.string("mcp.message.sender")?.hasPrefix("agent.") == true })
        XCTAssertEqual(agentAnswer.string("mcp.response.status"), "completed")
        XCTAssertEqual(agentAnswer.string("mcp.supervisor"), "supervisor.intelligence@v1.0")

        // OTEL_SERVICE_NAME reached swift-otel's resource.
        XCTAssertTrue(receiver.bodies.allSatisfy { String(decoding: $0.bytes, as: UTF8.self).contains(#"{"stringValue":"cartrita-test"}"#) })
        // Ids and metrics only: the task's text never leaves in a span.
        for body in receiver.bodies {
            XCTAssertFalse(String(decoding: body.bytes, as: UTF8.self).contains("ledger records every actor"))
        }
    }

    /// A caller that does not sample (flags 00) gets no spans: not its request's, not its hops'
    /// (the parent-based sampler decides once, for the whole trace).
    func testAnUnsampledTraceparentExportsNoHopSpans() async throws {
        let receiver = try await OTLPReceiver.start()
        let folder = TemporaryFolder()
        let (process, port) = try self.serve(folder, otel: [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:\(receiver.port)/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_BSP_SCHEDULE_DELAY": "100",
        ])
        let client = Client(port: port)
        let unsampled = try await client.send(
            .post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"])
        XCTAssertEqual(unsampled.string("status"), "completed", unsampled.text)
        let sampled = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": Self.traceparent])
        XCTAssertEqual(sampled.string("status"), "completed", sampled.text)
        let sampledID = try XCTUnwrap(sampled.string("task_id"))
        await client.close()
        var spans: [ExportedSpan] = []
        for _ in 0..<200 {
            spans = try self.spans(receiver)
            if spans.contains(where: { $0.string("mcp.message.recipient") == "client.http@v1.0" && $0.string("mcp.correlation.id") == sampledID }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .milliseconds(300))
        spans = try self.spans(receiver)
        self.stop(process)
        await receiver.stop()
        XCTAssertTrue(spans.contains { $0.traceID == "4bf92f3577b34da6a3ce929d0e0e4736" }, "the sampled task was traced")
        XCTAssertFalse(spans.contains { $0.traceID == "0af7651916cd43dd8448eb211c80319c" }, "\(spans.filter { $0.traceID == "0af7651916cd43dd8448eb211c80319c" }.map(\.name))")
    }

    func testWithoutOTELVariablesNothingIsExported() async throws {
        let receiver = try await OTLPReceiver.start()
        let folder = TemporaryFolder()
        // Only a service name and a protocol: no endpoint and no exporter, so tracing stays off
        // (swift-otel's own default would export to localhost:4318).
        let (process, port) = try self.serve(folder, otel: ["OTEL_SERVICE_NAME": "cartrita-test", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"])
        let client = Client(port: port)
        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": Self.traceparent])
        XCTAssertEqual(posted.string("status"), "completed", posted.text)
        let taskID = try XCTUnwrap(posted.string("task_id"))
        // Off, the envelope takes the caller's ids as they are.
        let view = try await client.send(.get, "/v3/tasks/\(taskID)")
        XCTAssertEqual(view.string("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(view.string("span_id"), "00f067aa0ba902b7")
        await client.close()
        try await Task.sleep(for: .milliseconds(500))
        self.stop(process)
        await receiver.stop()
        XCTAssertTrue(receiver.bodies.isEmpty)
        let log = try String(contentsOfFile: folder.path + "/stderr.log", encoding: .utf8)
        XCTAssertFalse(log.contains("tracing on"), log)
    }

    // MARK: In process

    func testTheSwitchFollowsTheStandardVariables() {
        XCTAssertFalse(TracingSwitch.isOn(environment: [:]))
        XCTAssertFalse(TracingSwitch.isOn(environment: ["OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"]))
        XCTAssertTrue(TracingSwitch.isOn(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
        XCTAssertTrue(TracingSwitch.isOn(environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"]))
        XCTAssertTrue(TracingSwitch.isOn(environment: ["OTEL_TRACES_EXPORTER": "otlp"]))
        XCTAssertFalse(TracingSwitch.isOn(environment: ["OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
        XCTAssertFalse(TracingSwitch.isOn(environment: ["OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
        XCTAssertTrue(TracingSwitch.isOn(environment: ["OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
        XCTAssertFalse(TracingSwitch.isOn(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "  "]))
    }

    func testTraceparentParsing() {
        let parsed = TraceParent(Self.traceparent)
        XCTAssertEqual(parsed?.traceID.description, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(parsed?.spanID.description, "00f067aa0ba902b7")
        XCTAssertEqual(parsed?.header, Self.traceparent)
        XCTAssertEqual(parsed?.sampled, true)
        XCTAssertEqual(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled, false)
        XCTAssertNil(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz"), "flags are hex")
        XCTAssertNil(TraceParent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "all-zero trace id")
        XCTAssertNil(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"), "all-zero span id")
        XCTAssertNil(TraceParent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), "version ff")
        XCTAssertNil(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), "version 00 has four fields")
        XCTAssertNotNil(TraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"), "a later version may add fields")
        XCTAssertNil(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"))
        XCTAssertNil(TraceParent("garbage"))
    }

    /// A full queue drops spans and counts them; the tap never waits for the span builder.
    func testAFullHopQueueDropsAndCountsWithoutBlocking() {
        let reported = Mutex(0)
        let hops = HopTracer(tracer: NoOpTracer(), maxQueuedRecords: 4, spansDropped: { count in reported.withLock { $0 += count } })
        let id = MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001)
        let envelope = Envelope(
            id: id, parentID: nil, correlationID: id, sender: Address("client.http@v1.0"), recipient: .orchestrator, broadcast: false,
            timestampMilliseconds: 1_764_000_000_000, ttlMilliseconds: 1_000, priority: .normal,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)),
            payload: .heartbeat(Heartbeat(status: .ok)), deliveryMode: .atMostOnce, retryCount: 0, maxRetries: 0)
        for seq in 1...10 { hops.tap(DeliveredRecord(seq: UInt64(seq), clockMilliseconds: 1_764_000_000_001, envelope: envelope)) }
        XCTAssertEqual(hops.droppedCount, 6)
        XCTAssertEqual(reported.withLock { $0 }, 6)
    }

    /// swift-otel's batch processor only logs its drops: the count reaches the metric anyway.
    func testTheExportQueuesDropsAreCountedFromSwiftOTelsWarning() {
        let captured = CapturedLogs()
        let counted = Mutex(0)
        let handler = DropCountingLogHandler(inner: CapturingLogHandler(captured: captured), spansDropped: { count in counted.withLock { $0 += count } })
        let logger = Logger(label: "otel") { _ in handler }
        logger.warning("Spans were dropped this iteration because queue was full", metadata: ["dropped_count": "39", "queue_size": "2048"])
        logger.info("Configuration updated from environment", metadata: ["environment_key": "OTEL_BSP_SCHEDULE_DELAY"])
        XCTAssertEqual(counted.withLock { $0 }, 39)
        XCTAssertEqual(captured.lines.withLock { $0.count }, 2, "every line still reaches the server's log")
    }

    func testRememberedSpansForgetTheOldestFirst() {
        var remembered = RememberedSpans(capacity: 2)
        let ids = (1...3).map { MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0000 | UInt64($0)) }
        for id in ids { remembered.remember(.topLevel, for: id) }
        XCTAssertNil(remembered[ids[0]])
        XCTAssertNotNil(remembered[ids[1]])
        XCTAssertNotNil(remembered[ids[2]])
        XCTAssertEqual(remembered.contexts.count, 2)
    }
}

// MARK: - Structured logs

/// Keeps every log line with its metadata.
final class CapturedLogs: Sendable {
    struct Line { var message: String; var metadata: [String: String] }
    let lines = Mutex<[Line]>([])
}

struct CapturingLogHandler: LogHandler {
    let captured: CapturedLogs
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var flat: [String: String] = [:]
        for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { flat[key] = "\(value)" }
        self.captured.lines.withLock { $0.append(CapturedLogs.Line(message: "\(event.message)", metadata: flat)) }
    }
}

final class StructuredLogTests: XCTestCase {
    func testTaskLogsCarryCorrelationAndTraceIdsButNoPayload() async throws {
        let captured = CapturedLogs()
        let logger = Logger(label: "cartrita.server") { _ in CapturingLogHandler(captured: captured) }
        let folder = TemporaryFolder()
        let server = try await Server.start(
            configuration: testConfiguration(folder), registry: .init(), signals: [], logger: logger)
        let client = Client(port: server.port)
        let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: ["traceparent": TracingTests.traceparent])
        XCTAssertEqual(posted.string("status"), "completed", posted.text)
        let taskID = try XCTUnwrap(posted.string("task_id"))
        // The drop counter exists from the start (0; tracing is off here).
        let metrics = try await client.send(.get, "/metrics")
        XCTAssertTrue(metrics.text.contains(#"cartrita_trace_spans_dropped_total{queue="hops"} 0"#), metrics.text)
        XCTAssertTrue(metrics.text.contains(#"cartrita_trace_spans_dropped_total{queue="export"} 0"#), metrics.text)
        await client.close()
        try await server.shutdown()

        let lines = captured.lines.withLock { $0 }
        for message in ["task submitted", "task answered"] {
            let line = try XCTUnwrap(lines.first { $0.message == message }, "\(lines.map(\.message))")
            XCTAssertEqual(line.metadata["correlation_id"], taskID, message)
            XCTAssertEqual(line.metadata["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", message)
            XCTAssertEqual(line.metadata["span_id"], "00f067aa0ba902b7", message)
        }
        for line in lines {
            let text = line.message + " " + line.metadata.values.joined(separator: " ")
            XCTAssertFalse(text.contains("ledger records every actor"), "a payload reached the log: \(text)")
        }
    }
}
