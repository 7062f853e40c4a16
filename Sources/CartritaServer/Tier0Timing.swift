import CartritaEnvelope
import CartritaNode
import Prometheus
import Synchronization

// MARK: - Tier 0's own latency, on the monotonic clock

/// How long tier 0 holds a task before tier 1 has it, measured on the monotonic clock (the log's
/// clock readings are whole milliseconds, too coarse for this), from the node's delivery tap:
/// - `cartrita_tier0_ingress_ms`: from the front door's submission of a task (body parsed,
///   caller authorised, envelope built) to the orchestrator's delivery of it, which is after
///   the orchestrator's mailbox and the write-ahead commit of the request;
/// - `cartrita_tier0_routing_ms`: from the orchestrator's delivery of the request to the
///   delivery of its forward to the supervisor it routes to: the orchestrator's step, then the
///   supervisor's mailbox and the forward's commit;
/// - `cartrita_tier0_routing_overhead_ms`: what the orchestrator itself adds to a task, from
///   the front door's submission to the forward queued at its supervisor, less the time the
///   orchestrator waited for the log meanwhile (the request's group commit, and earlier commits
///   and snapshot writes while the request queued; see `StepTiming.actorOverhead`). It is
///   waiting for a thread, behind earlier messages of the batch, and the routing step itself.
///   The log's share is the durability every hop pays, measured on its own
///   (`cartrita_log_commit_seconds` / `cartrita_log_batches`).
/// A reading for operators and for `cartrita load`, never an input of the hierarchy.
final class Tier0Timing: Sendable {
    /// Tasks followed at once, at most (see `Generations`).
    static let maxTrackedTasks = 100_000
    /// 50 µs … 1 s, finer around the 1 ms aim: a quantile is interpolated within its bucket
    /// as if the bucket were uniform, which overstates it where the density falls off.
    static let bucketsMilliseconds: [Double] = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 5, 10, 25, 50, 100, 250, 1_000]

    /// Start times by task id, in two generations: when the newer one holds half the limit it
    /// becomes the older one and the older is dropped, so a task that never reaches the next
    /// step (a duplicate exactly_once id, a crash) is forgotten, never leaked.
    struct Generations {
        var newer: [MessageID: ContinuousClock.Instant] = [:]
        var older: [MessageID: ContinuousClock.Instant] = [:]

        mutating func insert(_ id: MessageID, _ instant: ContinuousClock.Instant) {
            if self.newer.count >= Tier0Timing.maxTrackedTasks / 2 {
                self.older = self.newer
                self.newer = [:]
            }
            self.newer[id] = instant
        }

        mutating func remove(_ id: MessageID) -> ContinuousClock.Instant? {
            self.newer.removeValue(forKey: id) ?? self.older.removeValue(forKey: id)
        }
    }

    struct State {
        var submitted = Generations()
        var delivered = Generations()
        /// Submission instants of tasks the orchestrator has been delivered and not yet stepped.
        var stepping = Generations()
    }

    let state = Mutex(State())
    let ingress: ValueHistogram
    let routing: ValueHistogram
    let routingOverhead: ValueHistogram

    init(registry: PrometheusCollectorRegistry) {
        self.ingress = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "cartrita_tier0_ingress", unitName: "ms",
                helpText: "From the front door's submission of a task to the orchestrator's delivery of it (its mailbox and the request's commit), in milliseconds"),
            labels: [], buckets: Self.bucketsMilliseconds)
        self.routing = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "cartrita_tier0_routing", unitName: "ms",
                helpText: "From the orchestrator's delivery of a task to its supervisor's delivery of the forward (routing, the supervisor's mailbox, the forward's commit), in milliseconds"),
            labels: [], buckets: Self.bucketsMilliseconds)
        self.routingOverhead = registry.makeValueHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "cartrita_tier0_routing_overhead", unitName: "ms",
                helpText: "What the orchestrator adds to a task: from the front door's submission to the forward queued at its supervisor, less the orchestrator's waits for the log, in milliseconds"),
            labels: [], buckets: Self.bucketsMilliseconds)
    }

    /// The front door hands the task `id` to the node now.
    func submitted(_ id: MessageID) {
        let now = ContinuousClock.now
        self.state.withLock { $0.submitted.insert(id, now) }
    }

    /// The node's delivery tap: cheap, on the delivering actor.
    func tap(_ record: DeliveredRecord) {
        let envelope = record.envelope
        guard envelope.type == .taskRequest || envelope.recipient.isClient else { return }
        let now = ContinuousClock.now
        if envelope.recipient == .orchestrator, envelope.sender.isClient {
            let started = self.state.withLock { state -> ContinuousClock.Instant? in
                let started = state.submitted.remove(envelope.id)
                if let started {
                    state.delivered.insert(envelope.id, now)
                    state.stepping.insert(envelope.id, started)
                }
                return started
            }
            if let started { self.ingress.record(Self.milliseconds(now - started)) }
        } else if envelope.sender == .orchestrator, let parent = envelope.parentID {
            // The forward to a supervisor, or the answer to the client of a task that was not
            // routed (unknown type, paused, over budget): either way the orchestrator is done.
            let started = self.state.withLock { $0.delivered.remove(parent) }
            if let started, envelope.recipient.isSupervisor { self.routing.record(Self.milliseconds(now - started)) }
        }
    }

    /// The node's step tap: the orchestrator has routed a task (forwarded it, or answered it
    /// when it could not be routed) and the message is queued at its recipient.
    func step(_ timing: StepTiming) {
        guard timing.actor == .orchestrator, timing.envelope.type == .taskRequest, timing.envelope.sender.isClient else { return }
        guard let submitted = self.state.withLock({ $0.stepping.remove(timing.envelope.id) }) else { return }
        self.routingOverhead.record(Self.milliseconds(timing.actorOverhead(queuedAt: submitted)))
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) * 1_000 + Double(parts.attoseconds) / 1e15
    }
}
