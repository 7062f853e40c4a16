import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import Instrumentation
import ServiceContextModule
import ServiceLifecycle
import Synchronization
import Tracing

// MARK: - One span per hop, from the node's committed deliveries

/// Turns every delivery the node commits (`NodeConfiguration.deliveryTap`) into a span with the
/// `mcp.*` attributes of seed §5.1.2, so one request is one trace across orchestrator →
/// supervisor → agent → I/O and back.
///
/// A span is one message's hop: from when its sender made it (`timestamp_ms`) to when its
/// recipient took it (the record's `clock_ms`), kind CONSUMER, the same spans `cartrita trace
/// --otlp` rebuilds from the log. Its parent is the span of the message that caused it
/// (`parent_id`); a message with no parent here (the client's request, or one whose cause was
/// forgotten) hangs under the envelope's own `context.trace_id`/`span_id`: the HTTP request's
/// server span or the caller's `traceparent`.
///
/// The tap runs on the delivering actor, so it only yields to a bounded queue: a full queue
/// drops the span and counts it (`spansDropped`), never slows or blocks a delivery. Spans are
/// built by `run()` on its own task and handed to swift-otel's batch processor (bounded too).
public final class HopTracer: Service, Sendable {
    /// Deliveries waiting for their span; past it they are dropped and counted.
    public static let defaultMaxQueuedRecords = 8_192
    /// Span contexts remembered for messages' children; the oldest is forgotten first (its
    /// late children then hang under the envelope's context, still in the same trace).
    public static let maxRememberedSpans = 65_536

    let tracer: any Tracer
    let stream: AsyncStream<DeliveredRecord>
    let continuation: AsyncStream<DeliveredRecord>.Continuation
    let spansDropped: @Sendable (Int) -> Void
    let dropped = Atomic<Int>(0)
    public let maxQueuedRecords: Int
    /// Traces whose request span was not sampled: their hops get no span. Bounded like the
    /// remembered spans (the oldest forgotten first); lost on restart, when a recovered task's
    /// hops are then traced.
    let skipped = Mutex(BoundedSet<TraceID>(capacity: HopTracer.maxRememberedSpans))

    init(tracer: any Tracer, maxQueuedRecords: Int, spansDropped: @escaping @Sendable (Int) -> Void) {
        self.tracer = tracer
        self.maxQueuedRecords = max(1, maxQueuedRecords)
        (self.stream, self.continuation) = AsyncStream.makeStream(of: DeliveredRecord.self, bufferingPolicy: .bufferingOldest(self.maxQueuedRecords))
        self.spansDropped = spansDropped
    }

    /// Deliveries that got no span because the queue was full.
    public var droppedCount: Int { self.dropped.load(ordering: .relaxed) }

    /// The node's delivery tap: never blocks.
    public func tap(_ record: DeliveredRecord) {
        if case .dropped = self.continuation.yield(record) {
            self.dropped.add(1, ordering: .relaxed)
            self.spansDropped(1)
        }
    }

    /// The sampler decided against `trace` (its request span is not recorded).
    public func skip(trace: TraceID) {
        self.skipped.withLock { $0.insert(trace) }
    }

    /// Builds spans until graceful shutdown, then those still queued, then returns.
    public func run() async throws {
        await withGracefulShutdownHandler {
            var parents = RememberedSpans(capacity: Self.maxRememberedSpans)
            for await record in self.stream { self.span(for: record, &parents) }
        } onGracefulShutdown: {
            self.continuation.finish()
        }
    }

    func span(for record: DeliveredRecord, _ parents: inout RememberedSpans) {
        let envelope = record.envelope
        if self.skipped.withLock({ $0.contains(envelope.context.traceID) }) { return }
        let parent: ServiceContext
        if let parentID = envelope.parentID, let remembered = parents[parentID] {
            parent = remembered
        } else {
            var context = ServiceContext.topLevel
            let ids = TraceParent(traceID: envelope.context.traceID, spanID: envelope.context.spanID)
            self.tracer.extract(["traceparent": ids.header], into: &context, using: DictionaryPropagation())
            parent = context
        }
        let start = LogInstant(milliseconds: min(envelope.timestampMilliseconds, record.clockMilliseconds))
        let span = self.tracer.startSpan("\(envelope.type.rawValue) \(envelope.recipient)", context: parent, ofKind: .consumer, at: start)
        let (attributes, error) = Self.attributes(of: record)
        span.attributes = attributes
        if let error { span.setStatus(SpanStatus(code: .error, message: error)) }
        span.end(at: LogInstant(milliseconds: record.clockMilliseconds))
        parents.remember(span.context, for: envelope.id)
    }

    /// The `mcp.*` attributes of seed §5.1.2 that a delivery knows, and the error it carries.
    /// Not set: `mcp.cpu.utilization_percent` (nothing measures it per message). Payloads never
    /// become attributes, only their type, status, metrics and error codes.
    static func attributes(of record: DeliveredRecord) -> (SpanAttributes, String?) {
        let envelope = record.envelope
        var attributes = SpanAttributes()
        attributes["mcp.message.id"] = envelope.id.description
        attributes["mcp.message.type"] = envelope.type.rawValue
        attributes["mcp.message.sender"] = envelope.sender.rawValue
        attributes["mcp.message.recipient"] = envelope.recipient.rawValue
        if let parentID = envelope.parentID { attributes["mcp.message.parent_id"] = parentID.description }
        attributes["mcp.correlation.id"] = envelope.correlationID.description
        attributes["mcp.message.priority"] = envelope.priority.rawValue
        attributes["mcp.delivery.mode"] = envelope.deliveryMode.rawValue
        attributes["mcp.retry.count"] = Int(envelope.retryCount)
        attributes["mcp.retry.max"] = Int(envelope.maxRetries)
        attributes["mcp.log.seq"] = Int(truncatingIfNeeded: record.seq)
        // Time in the recipient's mailbox. In one process the mailbox is the transport, so the
        // transport latency is the same reading.
        let waited = max(0, record.clockMilliseconds - envelope.timestampMilliseconds)
        attributes["mcp.queue.wait_time_ms"] = Int(waited)
        attributes["mcp.transport.latency_ms"] = Int(waited)
        // The tiers of seed §5.1.1.
        for address in [envelope.sender, envelope.recipient] {
            if address.isSupervisor { attributes["mcp.supervisor"] = address.rawValue }
            if address.isAgent { attributes["mcp.agent"] = address.rawValue }
        }
        var error: String?
        switch envelope.payload {
        case .taskRequest(let request):
            attributes["mcp.task.type"] = request.task.type
        case .taskResponse(let response):
            attributes["mcp.response.status"] = response.status.rawValue
            if let metrics = response.metrics {
                if let value = metrics.processingTimeMilliseconds { attributes["mcp.processing.duration_ms"] = Int(value) }
                if let value = metrics.tokensUsed { attributes["mcp.cost.tokens_used"] = Int(value) }
                if let value = metrics.costUSD { attributes["mcp.cost.usd_estimate"] = value }
                if let value = metrics.memoryUsedMB { attributes["mcp.memory.peak_mb"] = value }
                if let value = metrics.qualityScore { attributes["mcp.result.quality_score"] = value }
            }
            if response.status == .failed || response.status == .cancelled {
                attributes["mcp.error.type"] = response.status.rawValue
                error = response.status.rawValue
            }
        case .taskError(let taskError):
            attributes["mcp.error.type"] = taskError.code.rawValue
            error = taskError.code.rawValue
        case .resourceDeny(let deny):
            attributes["mcp.error.type"] = deny.code.rawValue
            error = deny.code.rawValue
        default:
            break
        }
        return (attributes, error)
    }
}

/// A log clock reading (milliseconds since the epoch) as a tracing instant: spans carry the
/// times the log recorded, not when the span happened to be built.
struct LogInstant: TracerInstant {
    var nanosecondsSinceEpoch: UInt64

    init(milliseconds: Int64) {
        self.nanosecondsSinceEpoch = UInt64(max(0, milliseconds)) &* 1_000_000
    }

    static func < (lhs: LogInstant, rhs: LogInstant) -> Bool { lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch }
}

/// Span contexts by message id, at most `capacity`, the oldest forgotten first (a ring of ids).
/// Owned by the one task that builds spans: no lock.
struct RememberedSpans {
    let capacity: Int
    var contexts: [MessageID: ServiceContext] = [:]
    var order: [MessageID] = []
    var next = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    subscript(id: MessageID) -> ServiceContext? { self.contexts[id] }

    mutating func remember(_ context: ServiceContext, for id: MessageID) {
        if self.contexts.updateValue(context, forKey: id) != nil { return }
        if self.order.count < self.capacity {
            self.order.append(id)
        } else {
            self.contexts[self.order[self.next]] = nil
            self.order[self.next] = id
            self.next = (self.next + 1) % self.capacity
        }
    }
}

/// A set of at most `capacity` members, the oldest forgotten first.
struct BoundedSet<Member: Hashable> {
    let capacity: Int
    var members: Set<Member> = []
    var order: [Member] = []
    var next = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    func contains(_ member: Member) -> Bool { self.members.contains(member) }

    mutating func insert(_ member: Member) {
        guard self.members.insert(member).inserted else { return }
        if self.order.count < self.capacity {
            self.order.append(member)
        } else {
            self.members.remove(self.order[self.next])
            self.order[self.next] = member
            self.next = (self.next + 1) % self.capacity
        }
    }
}
