import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaTelemetry
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization
import UnixSignals

// MARK: - The server: log + node + HTTP, under one service group

/// `cartrita serve`: recovers the log, starts the hierarchy and serves the API until a shutdown
/// signal. Shutdown (SIGTERM, SIGINT, or `shutdown()`), in order:
/// 1. new /v3 requests are answered 503 `draining`;
/// 2. requests waiting for a task's answer get up to `drainTimeoutMilliseconds` to finish, then
///    are answered 503 with their task id (the task is in the log; a restart finishes it);
/// 3. the HTTP server stops accepting and closes its connections;
/// 4. the node snapshots every actor and the log is flushed and closed.
public final class Server: Sendable {
    let frontDoor: FrontDoor
    let group: ServiceGroup
    let boundPort: Int
    let finished: Task<Void, any Error>
    public let recovery: Recovery.Report

    /// The port the server listens on (the real one when the configuration asked for 0).
    public var port: Int { self.boundPort }

    public struct StartError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    /// Opens the log in `configuration.dataPath`, recovers the hierarchy, binds the port and
    /// starts serving. Returns once the port is bound. `signals` end the server gracefully
    /// (the command line passes SIGTERM and SIGINT; tests none).
    ///
    /// `asProcess` (the command line, once per process): handle SIGTERM and SIGINT, log to stderr
    /// through swift-log, and send swift-metrics (Hummingbird's and libraries' series) to the
    /// same Prometheus registry as the server's own. Tests leave it off: both systems can be
    /// bootstrapped only once per process, and a test must not catch the runner's signals.
    public static func start(configuration: ServerConfiguration, asProcess: Bool = false) async throws -> Server {
        let registry = PrometheusCollectorRegistry()
        if asProcess {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = .info
                return handler
            }
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }
        return try await self.start(
            configuration: configuration, registry: registry, signals: asProcess ? [.sigterm, .sigint] : [],
            logger: Logger(label: "cartrita.server"), tracingEnvironment: ProcessInfo.processInfo.environment)
    }

    /// `tracingEnvironment`: the `OTEL_*` variables that turn tracing on (see `TracingSwitch`);
    /// without them no tracer, queue or exporter exists.
    static func start(
        configuration: ServerConfiguration, registry: PrometheusCollectorRegistry, signals: [UnixSignal], logger: Logger,
        tracingEnvironment: [String: String] = [:]
    ) async throws -> Server {
        let log: EventLog
        do {
            log = try EventLog(path: configuration.dataPath, configuration: EventLogConfiguration(
                durability: configuration.durability, groupCommitLingerMicroseconds: configuration.groupCommitLingerMicroseconds,
                releaseMappedPagesEveryBytes: configuration.releaseMappedPagesEveryBytes))
        } catch {
            throw StartError(message: "opening the log in \(configuration.dataPath): \(error)")
        }
        let store: ServerStore
        do {
            store = try ServerStore(dataPath: configuration.dataPath)
        } catch {
            log.close()
            throw error
        }
        let jwt: JWTVerifier?
        do {
            jwt = try await JWTVerifier.make(configuration.auth.jwt, logger: logger)
        } catch {
            store.close()
            log.close()
            throw StartError(message: "auth.jwt: \(error.message)")
        }
        let metrics = ServerMetrics(registry: registry)
        let telemetry: Telemetry?
        do {
            telemetry = try Telemetry.make(environment: tracingEnvironment, logger: logger, spansDropped: { metrics.spansDropped($0.rawValue, $1) })
        } catch {
            store.close()
            log.close()
            throw StartError(message: error.message)
        }
        let frontDoor = FrontDoor(
            configuration: configuration, log: log, store: store, metrics: metrics, logger: logger, jwt: jwt, telemetry: telemetry)
        var nodeConfiguration = NodeConfiguration()
        // Every committed delivery: counted (mcp_messages_total, tokens, cost), timed (tier 0),
        // and traced when tracing is on.
        let hops = telemetry?.hops
        nodeConfiguration.deliveryTap = { [metrics] record in
            metrics.count(record.envelope)
            metrics.tier0.tap(record)
            hops?.tap(record)
        }
        nodeConfiguration.stepTap = { [metrics] timing in metrics.tier0.step(timing) }
        nodeConfiguration.stepTapActors = [.orchestrator]
        // A waiting request is answered as soon as its answer is settled (see `answerTap`),
        // one commit before the answer's record is; the committed record still feeds the
        // event streams and the metrics (`observe`).
        nodeConfiguration.answerTap = { [weak frontDoor] envelope in frontDoor?.answerSettled(envelope) }
        nodeConfiguration.mailboxCapacity = configuration.mailboxCapacity
        nodeConfiguration.snapshotEveryDeliveries = configuration.snapshotEveryDeliveries
        nodeConfiguration.ioServices = configuration.ioServices
        if let root = configuration.filesRoot { nodeConfiguration.ioServices["files"] = FilesService(root: root) }
        let recoveryStarted = ContinuousClock.now
        let (node, report): (Node, Recovery.Report)
        do {
            (node, report) = try Node.recover(
                log: log, hierarchy: FrontDoor.hierarchy(configuration), configuration: nodeConfiguration,
                observer: { [weak frontDoor] address, envelope, seq in frontDoor?.observe(address, envelope, seq) })
        } catch {
            store.close()
            log.close()
            throw StartError(message: "recovering the log: \(error)")
        }
        if let divergence = report.divergence {
            // No snapshots of a diverged replay (they would hide the divergence from the next
            // start): nothing was resumed, so there is nothing to stop but the files.
            store.close()
            log.close()
            throw StartError(message: "recovery stopped: \(divergence)")
        }
        frontDoor.nodeBox.withLock { $0 = node }
        // Recovery read much of the log through the map; those pages would stay in RSS.
        _ = try? log.releaseMappedPages()
        let recoverySeconds = (ContinuousClock.now - recoveryStarted)
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "cartrita_recovery_duration", unitName: "ms", helpText: "How long the last start's recovery took"),
            labels: []
        ).set(Double(recoverySeconds.components.seconds) * 1000 + Double(recoverySeconds.components.attoseconds) / 1e15)
        logger.info(
            "recovered the log",
            metadata: [
                "last_seq": "\(report.lastSeq)", "replayed": "\(report.recordsReplayed)", "resumed": "\(report.pending.count)",
            ])

        let router = Routes.router(frontDoor)
        let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router,
            server: StreamSocket.serverBuilder(frontDoor),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "cartrita"),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? configuration.port)
                portContinuation.finish()
            },
            logger: logger)
        let drain = DrainService(frontDoor: frontDoor, logger: logger)
        // Services stop in reverse order: the drain first (503s, waits end), then the HTTP server,
        // then tracing (the hop tracer spans what is queued, then swift-otel exports and stops).
        let services: [any Service] = (telemetry?.services ?? []) + [app, drain]
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: signals, logger: logger))
        if telemetry != nil {
            logger.info("tracing on: spans exported over OTLP as the OTEL_* environment says")
        }
        let finished = Task {
            defer { portContinuation.finish() }
            do {
                try await group.run()
            } catch {
                await Self.close(frontDoor)
                throw error
            }
            await Self.close(frontDoor)
        }
        var bound: Int? = nil
        for await port in portStream {
            bound = port
            break
        }
        guard let port = bound else {
            // The group ended before the server ran: binding failed. Its error says why.
            if case .failure(let error) = await finished.result { throw error }
            throw StartError(message: "the server stopped before it listened on \(configuration.host):\(configuration.port)")
        }
        logger.info("listening", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        return Server(frontDoor: frontDoor, group: group, boundPort: port, finished: finished, recovery: report)
    }

    init(frontDoor: FrontDoor, group: ServiceGroup, boundPort: Int, finished: Task<Void, any Error>, recovery: Recovery.Report) {
        self.frontDoor = frontDoor
        self.group = group
        self.boundPort = boundPort
        self.finished = finished
        self.recovery = recovery
    }

    static func close(_ frontDoor: FrontDoor) async {
        await frontDoor.node.shutdown()
        frontDoor.store.close()
        frontDoor.log.close()
    }

    /// Waits until the server has stopped (after a signal or `shutdown()`), log closed.
    public func waitUntilStopped() async throws {
        try await self.finished.value
    }

    /// Graceful shutdown, as on SIGTERM; returns when the log is closed.
    public func shutdown() async throws {
        await self.group.triggerGracefulShutdown()
        try await self.finished.value
    }
}

// MARK: - Draining

/// The first service to hear of a shutdown: it turns new work away and gives waiting requests a
/// bounded time to be answered before handing them back.
struct DrainService: Service {
    let frontDoor: FrontDoor
    let logger: Logger

    func run() async throws {
        // Runs until shutdown begins; cancellation (a forced stop) ends it too.
        try? await gracefulShutdown()
        self.frontDoor.draining.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now + .milliseconds(self.frontDoor.configuration.drainTimeoutMilliseconds)
        while self.frontDoor.tracker.waitingCount > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
        let handedBack = self.frontDoor.tracker.waitingCount
        self.frontDoor.tracker.handBackAll()
        self.frontDoor.events.finishAll()
        // Let the handed-back requests write their 503 before the HTTP server closes.
        while self.frontDoor.tracker.waitingCount > 0 && ContinuousClock.now < deadline + .seconds(1) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        self.logger.info("drained", metadata: ["handed_back": "\(handedBack)"])
    }
}
