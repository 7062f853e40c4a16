import CartritaEnvelope
import CartritaNode
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

// MARK: - cartrita load: N keep-alive clients against POST /v3/tasks

/// What a load run is told. Every count and duration has a limit (checked by `validate`).
public struct LoadConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8001
    public var clients = 10
    public var durationSeconds = 10.0
    /// Sent as `Authorization: Bearer KEY` when set.
    public var apiKey: String?
    /// The tasks to send: `cartrita run --mix`'s format (`Workload.parse`).
    public var workload: Workload = .standard
    /// Seeds the mix's inputs: the same seed sends the same bodies.
    public var seed: UInt64 = 1
    /// A request without an answer after this counts as `timeout` (and its connection is
    /// replaced).
    public var requestTimeoutMilliseconds: Int64 = 60_000
    /// Tasks whose message flow is checked after the load (0: none).
    public var flowSample = 0
    /// Event-loop threads of the load generator. One is plenty for hundreds of connections and
    /// leaves the other core to the server on a small machine.
    public var threads = 1

    public static let maxClients = 10_000
    public static let maxDurationSeconds = 3_600.0
    public static let maxThreads = 64
    public static let maxFlowSample = 100_000
    /// Distinct request bodies rendered before the run (clients cycle through them).
    public static let distinctBodies = 1_024
    /// Task ids each client keeps from its answers, for the flow check's sample.
    public static let maxKeptTasksPerClient = 10_000

    public init() {}

    /// `http://HOST:PORT` (a path, if any, is ignored: the API's routes are absolute).
    public mutating func setURL(_ text: String) throws(LoadError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw LoadError(.invalidURL, "\(text) is not a URL; expected http://HOST:PORT")
        }
        guard scheme == "http" else { throw LoadError(.invalidURL, "only http:// URLs are supported, not \(scheme)://") }
        guard let host = components.host, !host.isEmpty else { throw LoadError(.invalidURL, "\(text) has no host") }
        self.host = host
        self.port = components.port ?? 80
    }

    public func validate() throws(LoadError) {
        guard (1...Self.maxClients).contains(self.clients) else {
            throw LoadError(.invalidArgument, "--clients is 1...\(Self.maxClients), not \(self.clients)")
        }
        guard self.durationSeconds > 0, self.durationSeconds <= Self.maxDurationSeconds else {
            throw LoadError(.invalidArgument, "--duration is more than 0 and at most \(Int(Self.maxDurationSeconds)) seconds")
        }
        guard (1...Self.maxThreads).contains(self.threads) else {
            throw LoadError(.invalidArgument, "--threads is 1...\(Self.maxThreads)")
        }
        guard (0...Self.maxFlowSample).contains(self.flowSample) else {
            throw LoadError(.invalidArgument, "--check-flow is 0...\(Self.maxFlowSample)")
        }
        guard self.requestTimeoutMilliseconds > 0 else { throw LoadError(.invalidArgument, "the request timeout is positive") }
    }
}

/// Why a load run could not run. Errors of the requests themselves are counted in the report.
public struct LoadError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public var description: String { self.rawValue }
        public static let invalidURL = Code(rawValue: "invalid_url")
        public static let invalidArgument = Code(rawValue: "invalid_argument")
        public static let invalidMix = Code(rawValue: "invalid_mix")
        public static let unresolvableHost = Code(rawValue: "unresolvable_host")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(self.code): \(self.message)" }
}

/// What a load run measured.
public struct LoadReport: Sendable {
    public var clients: Int
    public var durationSeconds: Double
    /// Answered requests (ok and failed) and those that were ok.
    public var requests: Int
    public var ok: Int
    public var errors: [String: Int]
    /// Latency of the ok requests, in milliseconds.
    public var p50Milliseconds: Double
    public var p95Milliseconds: Double
    public var p99Milliseconds: Double
    public var maxMilliseconds: Double
    public var connects: Int
    public var flow: FlowCheckReport?
    /// Tier 0's latency over the run, from the server's own histograms.
    public var tier0: Tier0Latency?
    /// The server process's RSS (peak over samples every 2 s) and CPU time over the run.
    public var server: ServerProcessReport?
    /// Up to `maxFlowSample` answered tasks, spread over the run (what the flow check samples).
    var sampledTasks: [(id: String, type: String)] = []

    public var requestsPerSecond: Double { self.durationSeconds > 0 ? Double(self.requests) / self.durationSeconds : 0 }
    public var errorCount: Int { self.errors.values.reduce(0, +) }

    public var json: JSON {
        func rounded(_ value: Double) -> JSON { .double((value * 1000).rounded() / 1000) }
        var members: [(String, JSON)] = [
            ("requests_per_s", rounded(self.requestsPerSecond)),
            ("p50_ms", rounded(self.p50Milliseconds)),
            ("p95_ms", rounded(self.p95Milliseconds)),
            ("p99_ms", rounded(self.p99Milliseconds)),
            ("max_ms", rounded(self.maxMilliseconds)),
            ("errors", .object(self.errors.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ("requests", .int(Int64(self.requests))),
            ("ok", .int(Int64(self.ok))),
            ("clients", .int(Int64(self.clients))),
            ("duration_s", rounded(self.durationSeconds)),
            ("connections", .int(Int64(self.connects))),
        ]
        if let tier0 = self.tier0 { members += tier0.jsonMembers }
        if let server = self.server { members += server.jsonMembers(requests: self.requests) }
        if let flow = self.flow { members += flow.jsonMembers }
        return .object(members)
    }
}

public enum LoadTester {
    /// The bodies a run sends: the mix's tasks 0..<distinctBodies of `seed`, as API v3 bodies.
    static func templates(_ configuration: LoadConfiguration) -> [RequestTemplate] {
        (0..<LoadConfiguration.distinctBodies).map { index in
            let (request, mode) = configuration.workload.task(seed: configuration.seed, index: index)
            guard case .object(var members) = Payload.taskRequest(request).json else { preconditionFailure("a task_request renders as an object") }
            members.append(("delivery_mode", .string(mode.rawValue)))
            return RequestTemplate(taskType: request.task.type, body: ByteBuffer(string: JSON.object(members).rendered()))
        }
    }

    static func headers(_ configuration: LoadConfiguration) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(configuration.host):\(configuration.port)")
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Connection", value: "keep-alive")
        if let key = configuration.apiKey { headers.add(name: "Authorization", value: "Bearer \(key)") }
        return headers
    }

    /// Runs the load, then (with `flowSample`) the message-flow check on a sample of the tasks.
    public static func run(_ configuration: LoadConfiguration) async throws(LoadError) -> LoadReport {
        try configuration.validate()
        let target: SocketAddress
        do {
            target = try SocketAddress.makeAddressResolvingHost(configuration.host, port: configuration.port)
        } catch {
            throw LoadError(.unresolvableHost, "cannot resolve \(configuration.host): \(error)")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.threads)
        let report = await Self.run(configuration, target: target, group: group)
        try? await group.shutdownGracefully()
        return report
    }

    static func run(_ configuration: LoadConfiguration, target: SocketAddress, group: MultiThreadedEventLoopGroup) async -> LoadReport {
        let templates = Self.templates(configuration)
        let headers = Self.headers(configuration)
        let tier0Before = await Tier0Latency.scrape(target: target, group: group, configuration: configuration)
        let started = NIODeadline.now()
        // The server's RSS while it is loaded: a scrape every few seconds on its own connection.
        let watcher = Task { () -> [ServerScrape] in
            var scrapes: [ServerScrape] = []
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(ServerProcessReport.intervalSeconds))
                if Task.isCancelled { break }
                if case .success(let scrape) = await Tier0Latency.scrape(target: target, group: group, configuration: configuration) {
                    scrapes.append(scrape)
                }
            }
            return scrapes
        }
        let deadline = started + .nanoseconds(Int64(configuration.durationSeconds * 1e9))
        let timeout = TimeAmount.milliseconds(configuration.requestTimeoutMilliseconds)

        // Each client is made and driven on its own event loop; its tally comes back when it
        // is done (the deadline passed and its last request was answered or timed out).
        var futures: [EventLoopFuture<ClientTallySnapshot>] = []
        for index in 0..<configuration.clients {
            let loop = group.next()
            let first = index * templates.count / configuration.clients
            futures.append(loop.flatSubmit {
                let client = LoadClient(
                    eventLoop: loop, target: target, headers: headers, templates: templates, first: first, deadline: deadline,
                    requestTimeout: timeout)
                client.start()
                let bound = NIOLoopBound(client, eventLoop: loop)
                return client.done.futureResult.map { ClientTallySnapshot(bound.value.tally) }
            })
        }
        var tallies: [ClientTallySnapshot] = []
        for future in futures {
            // A client's future always succeeds: its errors are counted, not thrown.
            if let tally = try? await future.get() { tallies.append(tally) }
        }
        let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        watcher.cancel()
        let during = await watcher.value
        let tier0After = await Tier0Latency.scrape(target: target, group: group, configuration: configuration)

        var latencies: [UInt32] = []
        var errors: [String: Int] = [:]
        var ok = 0
        var connects = 0
        var tasks: [(id: String, type: String)] = []
        for tally in tallies {
            latencies += tally.latenciesMicroseconds
            ok += tally.ok
            connects += tally.connects
            tasks += tally.tasks
            for (type, count) in tally.errors { errors[type, default: 0] += count }
        }
        latencies.sort()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let rank = Int((p * Double(latencies.count)).rounded(.up)) - 1
            return Double(latencies[min(latencies.count - 1, max(0, rank))]) / 1000
        }
        // Answered requests: the ok ones plus those answered with an error status (not the
        // connection failures and timeouts, which got no answer).
        let unanswered = ["timeout", "connect_timeout", "connection_refused", "connection_reset", "connection_closed", "broken_pipe", "io_error", "channel_error", "other"]
        let answeredErrors = errors.filter { !unanswered.contains($0.key) }.values.reduce(0, +)
        var report = LoadReport(
            clients: configuration.clients, durationSeconds: elapsed, requests: ok + answeredErrors, ok: ok, errors: errors,
            p50Milliseconds: percentile(0.50), p95Milliseconds: percentile(0.95), p99Milliseconds: percentile(0.99),
            maxMilliseconds: latencies.last.map { Double($0) / 1000 } ?? 0, connects: connects, flow: nil)
        report.tier0 = Tier0Latency.between(tier0Before, tier0After)
        var server = ServerProcessReport()
        for scrape in ([try? tier0Before.get()] + during.map(Optional.some) + [try? tier0After.get()]).compactMap({ $0 }) { server.add(scrape) }
        if let first = try? tier0Before.get().cpuSeconds, let last = try? tier0After.get().cpuSeconds { server.cpuSeconds = last - first }
        report.server = server
        report.sampledTasks = Self.sample(tasks, LoadConfiguration.maxFlowSample)
        if configuration.flowSample > 0 {
            report.flow = await FlowChecker(configuration: configuration, target: target, group: group).check(Self.sample(tasks, configuration.flowSample))
        }
        return report
    }

    /// `count` tasks spread evenly over everything answered (in client order).
    static func sample(_ tasks: [(id: String, type: String)], _ count: Int) -> [(id: String, type: String)] {
        guard tasks.count > count else { return tasks }
        return (0..<count).map { tasks[$0 * tasks.count / count] }
    }
}

/// A client's tally, copied off its event loop.
struct ClientTallySnapshot: Sendable {
    var latenciesMicroseconds: [UInt32]
    var ok: Int
    var errors: [String: Int]
    var tasks: [(id: String, type: String)]
    var connects: Int

    init(_ tally: ClientTally) {
        self.latenciesMicroseconds = tally.latenciesMicroseconds
        self.ok = tally.ok
        self.errors = tally.errors
        self.tasks = tally.tasks
        self.connects = tally.connects
    }
}
