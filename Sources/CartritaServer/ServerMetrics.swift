import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import Prometheus
import Synchronization

// MARK: - GET /metrics

/// The server's Prometheus metrics. The MCP series count what the log committed: the node's
/// delivery tap sees every record right after its commit (`NodeConfiguration.deliveryTap`),
/// with its envelope already decoded, so counting costs a dictionary increment per message on
/// the delivering actor, aggregated here and added to the registry's counters at each scrape
/// (an earlier design decoded the log's new records at each scrape: 3 µs a record, about a
/// tenth of a core under load). HTTP series are counted by the request middleware; queue
/// depths are read from the node at scrape time; the process's figures from /proc.
///
/// Names and labels follow the customer's design (seed §5.3.1): `mcp_messages_total{supervisor,
/// message_type,status}`, `mcp_processing_duration_ms`, `mcp_queue_depth{actor}`.
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    /// Messages counted since the last scrape, by series; tokens and cost by supervisor.
    struct Pending {
        struct Key: Hashable {
            var supervisor: String
            var messageType: String
            var status: String
        }
        var messages: [Key: Int64] = [:]
        var tokens: [String: Int64] = [:]
        var costUSD: [String: Double] = [:]
    }

    let pending = Mutex(Pending())
    /// The series recorded on every request or answer, by their label values. swift-prometheus's
    /// `make*` builds the series' name and takes the registry's lock on each call; these run on
    /// the orchestrator's deliveries and the HTTP threads, so each series is made once. Bounded:
    /// every label value comes from a fixed set (routes, statuses, supervisors, modes).
    let counters = SeriesCache<Counter>()
    let histograms = SeriesCache<ValueHistogram>()
    /// Tier 0's latency on the monotonic clock, fed by the node's delivery tap.
    let tier0: Tier0Timing
    let process: ProcessMetrics

    /// Milliseconds: 1 ms … 60 s, for task and request durations.
    static let durationBucketsMilliseconds: [Double] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        self.tier0 = Tier0Timing(registry: registry)
        self.process = ProcessMetrics(registry: registry)
        // Families that exist before their first sample, so a fresh server's scrape shows them.
        _ = self.registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "mcp_messages", unitName: "total", helpText: "MCP messages committed to the log"),
            labels: [("supervisor", "orchestrator"), ("message_type", "task_request"), ("status", "ok")])
        // At 0 from the start, so an alert on drops has its series (it stays 0 with tracing off).
        for queue in ["hops", "export"] { _ = Self.spansDroppedCounter(registry, queue: queue) }
        // Tokens and cost from the first scrape on (local agents spend none), so dashboards and
        // the cost alert (Tools/observability/) find their series on any server.
        for supervisor in [Hierarchy.intelligence, Hierarchy.multimodal, Hierarchy.system] {
            _ = self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "mcp_tokens", unitName: "total", helpText: "Tokens used by agents"),
                labels: [("supervisor", supervisor.rawValue)])
            _ = self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "mcp_cost_usd", unitName: "total", helpText: "Cost of agents' work in US dollars"),
                labels: [("supervisor", supervisor.rawValue)])
        }
    }

    // MARK: Tracing

    /// Spans lost because a tracing queue was full (`queue`: `hops`, deliveries waiting for their
    /// span; `export`, swift-otel's batch queue). Tracing never slows a delivery down: it loses
    /// spans instead, and says how many here.
    func spansDropped(_ queue: String, _ count: Int) {
        Self.spansDroppedCounter(self.registry, queue: queue).increment(by: Int64(count))
    }

    static func spansDroppedCounter(_ registry: PrometheusCollectorRegistry, queue: String) -> Counter {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(
                metricName: "cartrita_trace_spans_dropped", unitName: "total", helpText: "Spans dropped because a tracing queue was full"),
            labels: [("queue", queue)])
    }

    // MARK: Tasks seen by the front door

    func taskSubmitted(_ envelope: Envelope) {
        let mode = envelope.deliveryMode.rawValue
        self.counters.series(["cartrita_http_tasks_submitted", mode]) {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "cartrita_http_tasks_submitted", unitName: "total", helpText: "Tasks submitted through the HTTP API"),
                labels: [("delivery_mode", mode)])
        }.increment()
    }

    func taskAnswered(_ envelope: Envelope) {
        let status: String
        switch envelope.payload {
        case .taskResponse(let response): status = response.status.rawValue
        case .taskError(let error): status = error.code == .cancelled ? "cancelled" : "failed"
        default: return
        }
        self.counters.series(["cartrita_http_tasks_answered", status]) {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "cartrita_http_tasks_answered", unitName: "total", helpText: "HTTP tasks answered, by status"),
                labels: [("status", status)])
        }.increment()
        let milliseconds = envelope.timestampMilliseconds - envelope.correlationID.unixMilliseconds
        self.histograms.series(["cartrita_task_duration"]) {
            self.registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(metricName: "cartrita_task_duration", unitName: "ms", helpText: "From submission to the terminal answer, in milliseconds"),
                labels: [], buckets: Self.durationBucketsMilliseconds)
        }.record(Double(max(0, milliseconds)))
    }

    // MARK: HTTP

    func httpRequest(method: String, route: String, status: Int, milliseconds: Double) {
        let statusLabel = String(status)
        self.counters.series(["http_requests", method, route, statusLabel]) {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "http_requests", unitName: "total", helpText: "HTTP requests, by method, route and status"),
                labels: [("method", method), ("route", route), ("status", statusLabel)])
        }.increment()
        self.histograms.series(["http_request_duration", route]) {
            self.registry.makeValueHistogram(
                descriptor: MetricNameDescriptor(metricName: "http_request_duration", unitName: "ms", helpText: "HTTP request duration in milliseconds"),
                labels: [("route", route)], buckets: Self.durationBucketsMilliseconds)
        }.record(milliseconds)
    }

    // MARK: Scrape

    func scrape(log: EventLog, node: Node, frontDoorWaiting: Int) -> String {
        self.flushCounts()
        for depth in node.queueDepths() {
            self.registry.makeGauge(
                descriptor: MetricNameDescriptor(metricName: "mcp_queue_depth", unitName: "", helpText: "Messages waiting in an actor's mailbox"),
                labels: [("actor", depth.address.rawValue)]
            ).set(Double(depth.messages))
        }
        self.registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "cartrita_log_last_seq", unitName: "", helpText: "Last committed log sequence number"),
            labels: []
        ).set(Double(log.lastSeq))
        // The writer's own totals since open, as gauges (they are read, not counted here):
        // rate(commit_seconds) / rate(batches) is the mean commit latency, records / batches the
        // mean batch size.
        let writer = log.writerMetrics
        let totals: [(String, String, Double)] = [
            ("cartrita_log_batches", "Group commits since the log was opened", Double(writer.batches)),
            ("cartrita_log_records", "Records appended since the log was opened", Double(writer.records)),
            ("cartrita_log_commit_seconds", "Time inside group commits since the log was opened", Double(writer.commitNanoseconds) / 1e9),
            ("cartrita_log_commit_max_ms", "Longest group commit", Double(writer.maxCommitNanoseconds) / 1e6),
            ("cartrita_log_batch_max_records", "Largest group commit, in records", Double(writer.maxBatchRecords)),
            ("cartrita_log_mapped_pages_releases", "Times the log writer dropped the process's mappings of the log file's pages", Double(writer.mappedPagesReleases)),
            ("cartrita_http_requests_waiting", "HTTP requests waiting for a task's answer", Double(frontDoorWaiting)),
        ]
        for (name, help, value) in totals {
            self.registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: []).set(value)
        }
        self.process.update()
        return self.registry.emitToString()
    }

    /// Adds what the tap counted since the last scrape to the registry's counters.
    func flushCounts() {
        let counted = self.pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        for (key, count) in counted.messages {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "mcp_messages", unitName: "total", helpText: "MCP messages committed to the log"),
                labels: [("supervisor", key.supervisor), ("message_type", key.messageType), ("status", key.status)]
            ).increment(by: count)
        }
        for (supervisor, tokens) in counted.tokens {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "mcp_tokens", unitName: "total", helpText: "Tokens used by agents"),
                labels: [("supervisor", supervisor)]
            ).increment(by: tokens)
        }
        for (supervisor, cost) in counted.costUSD {
            self.registry.makeCounter(
                descriptor: MetricNameDescriptor(metricName: "mcp_cost_usd", unitName: "total", helpText: "Cost of agents' work in US dollars"),
                labels: [("supervisor", supervisor)]
            ).increment(by: cost)
        }
    }

    /// One committed message (the node's delivery tap, on the delivering actor: cheap).
    func count(_ envelope: Envelope) {
        let supervisor: String
        if envelope.sender.isSupervisor {
            supervisor = envelope.sender.rawValue
        } else if envelope.recipient.isSupervisor {
            supervisor = envelope.recipient.rawValue
        } else {
            supervisor = "orchestrator"  // client ↔ orchestrator: tier 0's own traffic
        }
        let status: String
        switch envelope.payload {
        case .taskResponse(let response): status = response.status.rawValue
        case .taskError(let error): status = error.code.rawValue
        case .heartbeat(let beat): status = beat.status.rawValue
        default: status = "ok"
        }
        // Tokens and cost are counted where they are spent: an agent's answer to its supervisor
        // (the same payload travels on up to the orchestrator and the client; counting it there
        // too would count it three times).
        var tokens: Int64 = 0
        var cost = 0.0
        if envelope.sender.isAgent, envelope.recipient.isSupervisor, case .taskResponse(let response) = envelope.payload,
            let metrics = response.metrics
        {
            if let used = metrics.tokensUsed, used > 0 { tokens = Int64(used) }
            if let spent = metrics.costUSD, spent > 0, spent.isFinite { cost = spent }
        }
        self.pending.withLock { pending in
            pending.messages[Pending.Key(supervisor: supervisor, messageType: envelope.type.rawValue, status: status), default: 0] += 1
            if tokens > 0 { pending.tokens[supervisor, default: 0] += tokens }
            if cost > 0 { pending.costUSD[supervisor, default: 0] += cost }
        }
        // A supervisor's terminal answer to the orchestrator closes the task's tier-1 work: its
        // duration runs from the task's submission (the UUIDv7 correlation id's milliseconds).
        if envelope.sender.isSupervisor, envelope.recipient == .orchestrator, ClientMachine.outcome(envelope) != nil {
            let milliseconds = envelope.timestampMilliseconds - envelope.correlationID.unixMilliseconds
            self.histograms.series(["mcp_processing_duration", supervisor]) {
                self.registry.makeValueHistogram(
                    descriptor: MetricNameDescriptor(
                        metricName: "mcp_processing_duration", unitName: "ms", helpText: "Task processing time up to the supervisor's answer, in milliseconds"),
                    labels: [("supervisor", supervisor)], buckets: Self.durationBucketsMilliseconds)
            }.record(Double(max(0, milliseconds)))
        }
    }
}

/// Series of one kind by their family and label values, each made once (see
/// `ServerMetrics.counters`).
final class SeriesCache<Series: AnyObject & Sendable>: Sendable {
    let made = Mutex<[[String]: Series]>([:])

    func series(_ key: [String], make: () -> Series) -> Series {
        if let series = self.made.withLock({ $0[key] }) { return series }
        // Made outside the lock: the registry returns the same series for the same name and
        // labels, so two threads racing here get one series.
        let series = make()
        self.made.withLock { $0[key] = series }
        return series
    }
}
