import CartritaEnvelope
import CartritaNode
import Foundation
import Instrumentation
import Logging
import OTel
import ServiceContextModule
import ServiceLifecycle
import Synchronization
import Tracing

// MARK: - On or off, from the standard OTEL_* variables

/// Whether `cartrita serve` traces. swift-otel's own default is "on, exporting to
/// localhost:4318", which would make every server without a collector pay for spans nobody
/// receives and log export failures; so tracing is on only when the environment asks for it.
public enum TracingSwitch {
    /// On when an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
    /// or a traces exporter (`OTEL_TRACES_EXPORTER`, other than `none`) is set, and the SDK is not
    /// disabled (`OTEL_SDK_DISABLED=true`). Everything else (protocol, service name, batch sizes,
    /// sampler) swift-otel reads from the same environment.
    public static func isOn(environment: [String: String]) -> Bool {
        func value(_ key: String) -> String? {
            guard let raw = environment[key]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return nil }
            return raw
        }
        if value("OTEL_SDK_DISABLED")?.lowercased() == "true" { return false }
        if let exporter = value("OTEL_TRACES_EXPORTER")?.lowercased() { return exporter != "none" }
        return value("OTEL_EXPORTER_OTLP_ENDPOINT") != nil || value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != nil
    }
}

/// Why tracing could not start (a bad `OTEL_*` value, an unsupported protocol such as `grpc`,
/// which this build leaves out).
public struct TelemetryError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

// MARK: - The tracing backend

/// Tracing for one server: swift-otel's tracer and its lifecycle service (batching span
/// processor, OTLP exporter), and the `HopTracer` that turns the node's committed deliveries
/// into spans. Outside the deterministic core: the core never sees any of it.
public final class Telemetry: Sendable {
    let tracer: any Tracer
    public let hops: HopTracer
    /// Run these in the server's service group, in this order: the OTel service first, so it
    /// stops last and exports what the hop tracer hands it while stopping.
    public let services: [any Service]

    /// nil when the environment does not turn tracing on (no tracer, no exporter, no cost).
    /// `spansDropped` is called when a queue was full and spans were lost: the hop queue (a
    /// delivery got no span) or swift-otel's export queue (a built span was not exported).
    public static func make(
        environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger,
        maxQueuedRecords: Int = HopTracer.defaultMaxQueuedRecords,
        spansDropped: @escaping @Sendable (SpanQueue, Int) -> Void = { _, _ in }
    ) throws(TelemetryError) -> Telemetry? {
        guard TracingSwitch.isOn(environment: environment) else { return nil }
        var configuration = OTel.Configuration.default
        // OTEL_SERVICE_NAME, when set, overrides this (swift-otel applies the environment last).
        configuration.serviceName = "cartrita"
        // Traces only: metrics stay on Prometheus (/metrics) and logs on swift-log's handler.
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        // swift-otel's batch processor drops spans when its queue is full and only logs it: its
        // warnings are read for the count, so both queues' losses reach the same metric.
        configuration.diagnosticLogger = .custom(
            Logger(label: logger.label) { _ in DropCountingLogHandler(inner: logger.handler, spansDropped: { spansDropped(.exportQueue, $0) }) })
        // Bounded, and sized for a busy node (about 7 hops per task): the spec's defaults
        // (2,048 spans, every 5 s) overflow at a few hundred tasks per second. OTEL_BSP_* still
        // override these.
        configuration.traces.batchSpanProcessor.maxQueueSize = 16_384
        configuration.traces.batchSpanProcessor.maxExportBatchSize = 2_048
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        // swift-otel's bootstrap sets the process-wide tracer (InstrumentationSystem), which may
        // happen once per process: a second traced server in one process is refused by name.
        guard !Self.bootstrapped.exchange(true, ordering: .acquiringAndReleasing) else {
            throw TelemetryError(message: "tracing is already bootstrapped in this process")
        }
        let service: any Service
        do {
            // The environment is read from `environment` (the process's own in production).
            service = try OTel.bootstrap(configuration: configuration, environment: environment)
        } catch {
            throw TelemetryError(message: "tracing (OTEL_* environment): \(error)")
        }
        return Telemetry(
            tracer: InstrumentationSystem.tracer, service: service, maxQueuedRecords: maxQueuedRecords,
            spansDropped: { spansDropped(.hops, $0) })
    }

    static let bootstrapped = Atomic<Bool>(false)

    init(tracer: any Tracer, service: any Service, maxQueuedRecords: Int, spansDropped: @escaping @Sendable (Int) -> Void) {
        self.tracer = tracer
        self.hops = HopTracer(tracer: tracer, maxQueuedRecords: maxQueuedRecords, spansDropped: spansDropped)
        self.services = [service, self.hops]
    }

    /// Starts the server span of one HTTP request, child of the caller's `traceparent` when it
    /// sends one. Its ids go into the envelope's `context` (seed §5.1.1), so the hops' spans
    /// hang under it.
    public func startRequestSpan(_ name: String, traceparent: String?, attributes: [(String, String)] = []) -> RequestSpan? {
        var context = ServiceContext.topLevel
        if let traceparent { self.tracer.extract(["traceparent": traceparent], into: &context, using: DictionaryPropagation()) }
        let span = self.tracer.startSpan(name, context: context, ofKind: .server)
        var spanAttributes = SpanAttributes()
        for (key, value) in attributes { spanAttributes[key] = value }
        span.attributes = spanAttributes
        var carrier: [String: String] = [:]
        self.tracer.inject(span.context, into: &carrier, using: DictionaryPropagation())
        guard let header = carrier["traceparent"], let ids = TraceParent(header) else {
            // A propagator other than W3C's: the envelope keeps the caller's ids.
            return RequestSpan(span: span, traceID: nil, spanID: nil)
        }
        // The sampler said no: the envelope has no flag to carry that, so the hop tracer is
        // told to skip the trace (else its hops, parented by ids alone, would all be sampled).
        if !ids.sampled { self.hops.skip(trace: ids.traceID) }
        return RequestSpan(span: span, traceID: ids.traceID, spanID: ids.spanID)
    }
}

/// An HTTP request's server span; `end()` when the response is ready.
public struct RequestSpan: Sendable {
    let span: any Span
    public let traceID: TraceID?
    public let spanID: SpanID?

    public func fail(_ message: String) {
        self.span.setStatus(SpanStatus(code: .error, message: message))
    }

    public func end() { self.span.end() }
}

// MARK: - W3C traceparent

/// `00-TRACEID-SPANID-FLAGS` (W3C Trace Context, level 1): the ids and the sampled flag. The
/// envelope keeps only the ids; an all-zero id is invalid.
public struct TraceParent: Hashable, Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    public var sampled: Bool

    public init(traceID: TraceID, spanID: SpanID, sampled: Bool = true) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    public init?(_ header: String) {
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0].lowercased() != "ff", parts[3].count == 2,
            parts[1].count == 32, parts[2].count == 16,
            let trace = TraceID(hex: parts[1].lowercased()), trace.isValid,
            let span = SpanID(hex: parts[2].lowercased()), span.isValid
        else { return nil }
        // Version 00 has exactly four fields; a later version may append more.
        if parts[0] == "00" && parts.count != 4 { return nil }
        guard let flags = UInt8(parts[3], radix: 16) else { return nil }
        self.traceID = trace
        self.spanID = span
        self.sampled = flags & 1 == 1
    }

    public var header: String { "00-\(self.traceID)-\(self.spanID)-\(self.sampled ? "01" : "00")" }
}

/// Carries W3C headers in a dictionary (the propagator's carrier for made-up headers).
struct DictionaryPropagation: Extractor, Injector {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

/// The two bounded queues a span passes through.
public enum SpanQueue: String, Sendable {
    /// Deliveries waiting for their span (`HopTracer`).
    case hops
    /// Built spans waiting for export (swift-otel's batch span processor).
    case exportQueue = "export"
}

/// Passes swift-otel's diagnostics on, and counts the spans its batch processor reports as
/// dropped (`dropped_count` of its "queue was full" warning; swift-otel 1.6 has no other way
/// to tell).
struct DropCountingLogHandler: LogHandler {
    var inner: any LogHandler
    let spansDropped: @Sendable (Int) -> Void

    var metadata: Logger.Metadata {
        get { self.inner.metadata }
        set { self.inner.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { self.inner.logLevel }
        set { self.inner.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.inner[metadataKey: key] }
        set { self.inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        if event.level >= .warning, case .string(let text)? = event.metadata?["dropped_count"], let count = Int(text), count > 0 {
            self.spansDropped(count)
        }
        self.inner.log(event: event)
    }
}
