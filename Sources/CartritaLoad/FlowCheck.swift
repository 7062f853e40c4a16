import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

// MARK: - The message-flow check (seed §8.1.1)

/// What the flow check found: how many tasks it read back, how many broke a rule, and why
/// (`wrong_supervisor`, `wrong_agent`, `missing_hop:orchestrator->supervisor`,
/// `unanswered:supervisor->agent`, `not_finished`, `http_404`, …), plus the tier-0 routing
/// overhead measured from the log.
public struct FlowCheckReport: Sendable {
    public var checked = 0
    public var failures = 0
    public var reasons: [String: Int] = [:]
    /// The first failures, `TASK_ID: reason`, for a person to look up with `cartrita trace`.
    public var examples: [String] = []
    /// Per checked task: from the orchestrator's delivery of the request to the supervisor's
    /// delivery of the forward (the records' `clock_ms`, whole milliseconds).
    public var routingMilliseconds: [Int64] = []
    /// Where the expected paths came from: `server` (its `GET /v3/routes`), or `standard` with
    /// the reason the server did not say (an older server answers 404).
    public var routesFrom = "server"

    static let maxExamples = 10

    mutating func fail(_ id: String, _ reasons: [String]) {
        self.failures += 1
        for reason in reasons { self.reasons[reason, default: 0] += 1 }
        if self.examples.count < Self.maxExamples { self.examples.append("\(id): \(reasons.joined(separator: ", "))") }
    }

    var jsonMembers: [(String, JSON)] {
        let sorted = self.routingMilliseconds.sorted()
        func percentile(_ p: Double) -> JSON {
            guard !sorted.isEmpty else { return .null }
            return .int(sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))])
        }
        return [
            ("flow_checked", .int(Int64(self.checked))),
            ("flow_failures", .int(Int64(self.failures))),
            ("flow_failure_reasons", .object(self.reasons.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ("flow_failure_examples", .array(self.examples.map { .string($0) })),
            ("flow_routes_from", .string(self.routesFrom)),
            ("routing_ms_p50", percentile(0.50)),
            ("routing_ms_p95", percentile(0.95)),
            ("routing_ms_max", sorted.last.map { .int($0) } ?? .null),
        ]
    }
}

/// Reads each sampled task back with `GET /v3/tasks/{id}` and checks its message flow against
/// the hierarchy's routes: request → orchestrator → the supervisor its type routes to → one of
/// that supervisor's agents that handle the type → answers back up, every hop answered.
struct FlowChecker {
    let configuration: LoadConfiguration
    let target: SocketAddress
    let group: MultiThreadedEventLoopGroup
    /// The routes to check against. nil (the default): the server's own, read from its `GET
    /// /v3/routes` before the check (the standard hierarchy's when it does not say).
    var hierarchy: Hierarchy?
    /// A task still pending is read again, this many times, 20 ms apart.
    let maxPendingPolls = 250

    /// The server's routing table and agent routes from `GET /v3/routes`, or why not.
    static func serverRoutes(_ answer: SimpleHTTPConnection.Answer) -> Result<Hierarchy, FlowRoutesError> {
        guard answer.status == 200 else { return .failure(FlowRoutesError("http_\(answer.status)")) }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(answer.body))) as? [String: Any],
            let routes = object["routes"] as? [[String: Any]], let agents = object["agents"] as? [[String: Any]]
        else { return .failure(FlowRoutesError("bad_json")) }
        var table: [RoutingTable.Route] = []
        for route in routes {
            guard let prefix = route["prefix"] as? String, let supervisor = route["supervisor"] as? String else {
                return .failure(FlowRoutesError("bad_route"))
            }
            table.append(RoutingTable.Route(prefix: prefix, supervisor: Address(unchecked: supervisor)))
        }
        var hierarchy = Hierarchy(addresses: [], makeCells: { [] })
        do {
            hierarchy.routing = try RoutingTable(routes: table)
        } catch {
            return .failure(FlowRoutesError("bad_route"))
        }
        for agent in agents {
            guard let supervisor = agent["supervisor"] as? String, let address = agent["agent"] as? String,
                let types = agent["task_types"] as? [String]
            else { return .failure(FlowRoutesError("bad_agent_route")) }
            hierarchy.agentRoutes.append(
                Hierarchy.AgentRoute(supervisor: Address(unchecked: supervisor), agent: Address(unchecked: address), taskTypes: types))
        }
        return .success(hierarchy)
    }

    func check(_ tasks: [(id: String, type: String)]) async -> FlowCheckReport {
        var report = FlowCheckReport()
        var connection: SimpleHTTPConnection? = try? await SimpleHTTPConnection.connect(to: self.target, group: self.group)
        var checker = self
        if self.hierarchy != nil {
            report.routesFrom = "given"
        } else if let open = connection {
            switch (try? await open.get("/v3/routes", headers: LoadTester.headers(self.configuration))).map(Self.serverRoutes) {
            case .success(let hierarchy)?: checker.hierarchy = hierarchy
            case .failure(let error)?: report.routesFrom = "standard (GET /v3/routes: \(error.reason))"
            case nil:
                report.routesFrom = "standard (GET /v3/routes: http_error)"
                connection = nil
            }
        }
        if checker.hierarchy == nil { checker.hierarchy = .standard() }
        for task in tasks {
            report.checked += 1
            var reasons: [String] = []
            var polls = 0
            while true {
                if connection == nil { connection = try? await SimpleHTTPConnection.connect(to: self.target, group: self.group) }
                guard let open = connection else {
                    reasons = ["connection_refused"]
                    break
                }
                let answer: SimpleHTTPConnection.Answer
                do {
                    answer = try await open.get("/v3/tasks/\(task.id)", headers: LoadTester.headers(self.configuration))
                } catch {
                    connection = nil
                    reasons = ["http_error"]
                    break
                }
                guard answer.status == 200 else {
                    reasons = ["http_\(answer.status)"]
                    break
                }
                guard let view = (try? JSONSerialization.jsonObject(with: Data(answer.body))) as? [String: Any] else {
                    reasons = ["bad_json"]
                    break
                }
                if view["status"] as? String == "pending", polls < self.maxPendingPolls {
                    polls += 1
                    try? await Task.sleep(for: .milliseconds(20))
                    continue
                }
                reasons = checker.verify(task: task, view: view, report: &report)
                break
            }
            if !reasons.isEmpty { report.fail(task.id, reasons) }
        }
        try? await connection?.close()
        return report
    }

    /// The rules, on one task's view (`GET /v3/tasks/{id}`): empty when the flow is complete.
    func verify(task: (id: String, type: String), view: [String: Any], report: inout FlowCheckReport) -> [String] {
        guard let status = view["status"] as? String, status != "pending" else { return ["not_finished"] }
        guard let flow = view["flow"] as? [[String: Any]] else { return ["no_flow"] }
        let hops = flow.map(Hop.init)
        var reasons: [String] = []
        guard let request = hops.first(where: { $0.type == "task_request" && $0.id == task.id && $0.recipient == Address.orchestrator.rawValue })
        else { return ["missing_hop:client->orchestrator"] }

        guard let expected = (self.hierarchy ?? .standard()).expectedPath(forTaskType: task.type) else {
            // No route: the orchestrator itself must answer unknown_task_type.
            if !hops.contains(where: { $0.parentID == task.id && $0.code == "unknown_task_type" }) { reasons.append("unrouted_without_error") }
            return reasons
        }
        let forwards = hops.filter { $0.type == "task_request" && $0.sender == Address.orchestrator.rawValue && $0.parentID == task.id }
        guard let forward = forwards.first else { return ["missing_hop:orchestrator->supervisor"] }
        if forwards.contains(where: { $0.recipient != expected.supervisor.rawValue }) { reasons.append("wrong_supervisor") }
        if let from = request.clockMilliseconds, let to = forward.clockMilliseconds { report.routingMilliseconds.append(max(0, to - from)) }

        let toAgents = hops.filter { $0.type == "task_request" && $0.sender == expected.supervisor.rawValue && $0.recipientKind == "agent" }
        if toAgents.isEmpty { reasons.append("missing_hop:supervisor->agent") }
        if toAgents.contains(where: { agent in !expected.agents.contains { $0.rawValue == agent.recipient } }) { reasons.append("wrong_agent") }

        // Every hop answered: for each kind of hop, at least one of its requests has a terminal
        // answer caused by it (a retried hop has unanswered attempts before the answered one).
        let answeredIDs = Set(hops.filter { $0.type == "task_response" || $0.type == "task_error" }.compactMap(\.parentID))
        var kinds: [String: Bool] = [:]
        for hop in hops where hop.type == "task_request" {
            let kind = "\(hop.senderKind)->\(hop.recipientKind)"
            kinds[kind] = (kinds[kind] ?? false) || answeredIDs.contains(hop.id)
        }
        for (kind, answered) in kinds.sorted(by: { $0.key < $1.key }) where !answered { reasons.append("unanswered:\(kind)") }
        // The client's answer closes the trace.
        if !hops.contains(where: { $0.parentID == task.id && $0.recipientKind == "client" && ($0.type == "task_response" || $0.type == "task_error") }) {
            reasons.append("missing_hop:orchestrator->client")
        }
        return reasons
    }

    struct FlowRoutesError: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// One entry of a task's `flow`.
    struct Hop {
        var id: String
        var parentID: String?
        var type: String
        var sender: String
        var recipient: String
        var code: String?
        var clockMilliseconds: Int64?

        init(_ entry: [String: Any]) {
            self.id = entry["id"] as? String ?? ""
            self.parentID = entry["parent_id"] as? String
            self.type = entry["type"] as? String ?? ""
            self.sender = entry["sender"] as? String ?? ""
            self.recipient = entry["recipient"] as? String ?? ""
            self.code = entry["code"] as? String
            self.clockMilliseconds = (entry["clock_ms"] as? NSNumber)?.int64Value
        }

        var senderKind: String { String(Address(unchecked: self.sender).kind) }
        var recipientKind: String { String(Address(unchecked: self.recipient).kind) }
    }
}

// MARK: - A plain HTTP/1.1 connection for the check's GETs

/// One keep-alive connection, one request at a time: enough for reading tasks back.
final class SimpleHTTPConnection: Sendable {
    struct Answer: Sendable {
        var status: Int
        var body: [UInt8]
    }

    struct Request: Sendable {
        var head: HTTPRequestHead
        var promise: EventLoopPromise<Answer>
    }

    /// Most bytes of an answer read (a task's view with its whole flow is well under this).
    static let maxAnswerBytes = 16 << 20

    let channel: any Channel

    init(channel: any Channel) {
        self.channel = channel
    }

    static func connect(to target: SocketAddress, group: any EventLoopGroup) async throws -> SimpleHTTPConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Handler())
                }
            }
            .connect(to: target).get()
        return SimpleHTTPConnection(channel: channel)
    }

    func get(_ path: String, headers: HTTPHeaders) async throws -> Answer {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        head.headers.remove(name: "Content-Type")
        let promise = self.channel.eventLoop.makePromise(of: Answer.self)
        self.channel.writeAndFlush(Request(head: head, promise: promise), promise: nil)
        return try await promise.futureResult.get()
    }

    func close() async throws {
        try await self.channel.close()
    }

    final class Handler: ChannelDuplexHandler {
        typealias InboundIn = HTTPClientResponsePart
        typealias OutboundIn = Request
        typealias OutboundOut = HTTPClientRequestPart

        var pending: [EventLoopPromise<Answer>] = []
        var status = 0
        var body: [UInt8] = []

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            let request = self.unwrapOutboundIn(data)
            self.pending.append(request.promise)
            context.write(self.wrapOutboundOut(.head(request.head)), promise: nil)
            context.write(self.wrapOutboundOut(.end(nil)), promise: promise)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head(let head):
                self.status = Int(head.status.code)
                self.body = []
            case .body(let part):
                if self.body.count + part.readableBytes <= SimpleHTTPConnection.maxAnswerBytes { self.body += part.readableBytesView }
            case .end:
                guard !self.pending.isEmpty else { return }
                self.pending.removeFirst().succeed(Answer(status: self.status, body: self.body))
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.failAll(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.failAll(ChannelError.eof)
        }

        func failAll(_ error: any Error) {
            let pending = self.pending
            self.pending = []
            for promise in pending { promise.fail(error) }
        }
    }
}
