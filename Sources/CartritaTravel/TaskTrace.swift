import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation

/// The causal tree of one task: every record of its correlation id, each under the message it
/// answers or was caused by (`parent_id`), with the clock readings the log recorded.
///
/// Timings come from the log only: a record's `clock_ms` is when its recipient took it
/// (delivery), the envelope's `timestamp_ms` is when its sender made it (the sender's delivery
/// clock; a timer's is its due time). So `queued_ms` is the time in the recipient's mailbox and
/// `hop_ms` the time since the message that caused it was delivered.
package struct TaskTrace: Sendable {
    package struct Hop: Sendable {
        package var record: LogRecord
        /// Indexes into `hops` of the messages this one caused, in log order.
        package var children: [Int] = []
        /// Index of the parent in `hops`; nil for a root (the client's request, or a message
        /// whose parent is not in this task).
        package var parent: Int?

        package var seq: UInt64 { self.record.header.seq }
        package var envelope: Envelope { self.record.envelope }
        package var queuedMilliseconds: Int64 { self.record.header.clockMilliseconds - self.record.envelope.timestampMilliseconds }

        /// The error this message carries, if it is one (`task_error`, a failed or cancelled
        /// `task_response`, a `resource_deny`).
        package var error: (code: String, message: String)? {
            switch self.envelope.payload {
            case .taskError(let error): return (error.code.rawValue, error.message)
            case .taskResponse(let response) where response.status == .failed || response.status == .cancelled:
                return (response.status.rawValue, response.errorMessage ?? "")
            case .resourceDeny(let deny): return (deny.code.rawValue, deny.reason)
            default: return nil
            }
        }
    }

    package var correlation: MessageID
    /// In log order.
    package var hops: [Hop]
    package var roots: [Int]

    /// Most records one trace reads: a task is a handful of messages, a runaway one is not
    /// worth a tree of millions.
    package static let maxHops = 100_000

    package static func load(log: EventLog, correlation: MessageID) throws(TravelError) -> TaskTrace {
        let records: [LogRecord]
        do {
            let seqs = try log.seqs(correlation: correlation)
            guard !seqs.isEmpty else { throw TravelError(.unknownCorrelation, "the log has no record of task \(correlation)") }
            guard seqs.count <= Self.maxHops else {
                throw TravelError(.invalidArgument, "task \(correlation) has \(seqs.count) records, more than \(Self.maxHops)")
            }
            let decoder = EnvelopeDecoder(limits: log.configuration.codecLimits)
            var decoded: [LogRecord] = []
            for (seq, bytes) in zip(seqs, try log.rawRecords(seqs)) {
                guard let bytes else { throw TravelError(.log, "record \(seq) is indexed but missing") }
                do {
                    decoded.append(try decoder.decodeRecord(bytes))
                } catch {
                    throw TravelError(.log, "record \(seq): \(error)")
                }
            }
            records = decoded
        } catch {
            throw TravelError.wrapping(error)
        }
        return TaskTrace(correlation: correlation, records: records)
    }

    package init(correlation: MessageID, records: [LogRecord]) {
        self.correlation = correlation
        self.hops = records.sorted { $0.header.seq < $1.header.seq }.map { Hop(record: $0) }
        var index: [MessageID: Int] = [:]
        for (position, hop) in self.hops.enumerated() where index[hop.envelope.id] == nil { index[hop.envelope.id] = position }
        self.roots = []
        for position in self.hops.indices {
            if let parentID = self.hops[position].envelope.parentID, let parent = index[parentID], parent != position {
                self.hops[position].parent = parent
                self.hops[parent].children.append(position)
            } else {
                self.roots.append(position)
            }
        }
    }

    /// Milliseconds since the delivery of the message that caused this one (nil for a root).
    package func hopMilliseconds(_ position: Int) -> Int64? {
        guard let parent = self.hops[position].parent else { return nil }
        return self.hops[position].record.header.clockMilliseconds - self.hops[parent].record.header.clockMilliseconds
    }

    /// From the first delivery to the last.
    package var durationMilliseconds: Int64 {
        let clocks = self.hops.map(\.record.header.clockMilliseconds)
        return (clocks.max() ?? 0) - (clocks.min() ?? 0)
    }

    /// Messages sent again: a retry counts once per attempt past the first.
    package var retries: Int { self.hops.filter { $0.envelope.retryCount > 0 }.count }
    package var errors: Int { self.hops.filter { $0.error != nil }.count }

    /// The terminal answer a client got, if any: `completed`, `failed`, `cancelled`, or an error code.
    package var outcome: String? {
        for hop in self.hops.reversed() where hop.envelope.recipient.isClient {
            switch hop.envelope.payload {
            case .taskResponse(let response) where response.status != .pending && response.status != .inProgress:
                return response.status.rawValue
            case .taskError(let error): return error.code.rawValue
            default: continue
            }
        }
        return nil
    }

    /// The task type of the client's request, if the trace has it.
    package var taskType: String? {
        for hop in self.hops { if case .taskRequest(let request) = hop.envelope.payload { return request.task.type } }
        return nil
    }

    // MARK: - The tree as text

    /// One line per message, indented under its cause:
    /// `#12 task_request orchestrator@v1.0 → supervisor.system@v1.0  +1 ms (queued 0 ms)`.
    package func renderTree() -> String {
        var lines: [String] = []
        lines.append(
            "task \(self.correlation)\(self.taskType.map { " (\($0))" } ?? ""): \(self.hops.count) messages in \(self.durationMilliseconds) ms, "
                + "\(self.retries) retries, \(self.errors) errors, outcome \(self.outcome ?? "none yet")")
        func line(_ position: Int, _ prefix: String, _ isLast: Bool) {
            let hop = self.hops[position]
            var text = prefix + (isLast ? "└─ " : "├─ ")
            text += "#\(hop.seq) \(hop.envelope.type.rawValue) \(hop.envelope.sender) → \(hop.envelope.recipient)"
            text += "  \(self.hopMilliseconds(position).map { "+\($0) ms" } ?? "at \(ISO8601Milliseconds.format(hop.record.header.clockMilliseconds))")"
            text += " (queued \(hop.queuedMilliseconds) ms)"
            if hop.envelope.retryCount > 0 { text += " retry \(hop.envelope.retryCount)/\(hop.envelope.maxRetries)" }
            if case .taskResponse(let response) = hop.envelope.payload {
                text += " \(response.status.rawValue)"
                if let time = response.metrics?.processingTimeMilliseconds { text += " in \(time) ms" }
            }
            if let error = hop.error { text += " ERROR \(error.code): \(error.message)" }
            lines.append(text)
            let children = hop.children
            for (index, child) in children.enumerated() {
                line(child, prefix + (isLast ? "   " : "│  "), index == children.count - 1)
            }
        }
        for (index, root) in self.roots.enumerated() { line(root, "", index == self.roots.count - 1) }
        return lines.joined(separator: "\n")
    }

    // MARK: - The tree as JSON

    package var json: JSON {
        func node(_ position: Int) -> JSON {
            let hop = self.hops[position]
            var members: [(String, JSON)] = [
                ("seq", .uint(hop.seq)), ("id", .string(hop.envelope.id.description)), ("type", .string(hop.envelope.type.rawValue)),
                ("sender", .string(hop.envelope.sender.rawValue)), ("recipient", .string(hop.envelope.recipient.rawValue)),
                ("clock_ms", .int(hop.record.header.clockMilliseconds)), ("queued_ms", .int(hop.queuedMilliseconds)),
            ]
            if let hopTime = self.hopMilliseconds(position) { members.append(("hop_ms", .int(hopTime))) }
            members.append(("retry_count", .int(Int64(hop.envelope.retryCount))))
            if case .taskResponse(let response) = hop.envelope.payload { members.append(("status", .string(response.status.rawValue))) }
            if let error = hop.error { members.append(("error", .object([("code", .string(error.code)), ("message", .string(error.message))]))) }
            members.append(("children", .array(hop.children.map(node))))
            return .object(members)
        }
        return .object([
            ("correlation_id", .string(self.correlation.description)), ("task_type", self.taskType.map(JSON.string) ?? .null),
            ("messages", .int(Int64(self.hops.count))), ("duration_ms", .int(self.durationMilliseconds)),
            ("retries", .int(Int64(self.retries))), ("errors", .int(Int64(self.errors))),
            ("outcome", self.outcome.map(JSON.string) ?? .null), ("roots", .array(self.roots.map(node))),
        ])
    }

    // MARK: - OTLP/JSON

    /// The trace as an OTLP/JSON `TracesData` (opentelemetry-proto's JSON mapping: lowerCamelCase
    /// names, trace and span ids in hex, 64-bit integers as decimal strings, enums as numbers),
    /// which a collector's `otlpjsonfile` receiver or a backend's OTLP import reads.
    ///
    /// One span per message, from when its sender made it (`timestamp_ms`) to when its recipient
    /// took it (`clock_ms`), kind CONSUMER. The trace id is the envelopes' `trace_id`. Span ids
    /// are derived from the message ids (every message of a task shares the caller's `span_id`,
    /// so that cannot name a message); a root's parent is the envelope's `span_id`: the caller's
    /// span (the HTTP request or client that submitted the task).
    package var otlpJSON: JSON {
        let spans: [JSON] = self.hops.indices.map { position in
            let hop = self.hops[position]
            let envelope = hop.envelope
            let start = min(envelope.timestampMilliseconds, hop.record.header.clockMilliseconds)
            var attributes: [JSON] = [
                Self.attribute("cartrita.seq", int: Int64(hop.seq)),
                Self.attribute("messaging.message.id", string: envelope.id.description),
                Self.attribute("cartrita.correlation_id", string: envelope.correlationID.description),
                Self.attribute("cartrita.message_type", string: envelope.type.rawValue),
                Self.attribute("cartrita.sender", string: envelope.sender.rawValue),
                Self.attribute("cartrita.recipient", string: envelope.recipient.rawValue),
                Self.attribute("cartrita.delivery_mode", string: envelope.deliveryMode.rawValue),
                Self.attribute("cartrita.retry_count", int: Int64(envelope.retryCount)),
                Self.attribute("cartrita.queued_ms", int: hop.queuedMilliseconds),
            ]
            if case .taskRequest(let request) = envelope.payload { attributes.append(Self.attribute("cartrita.task_type", string: request.task.type)) }
            var status: [(String, JSON)] = [("code", .int(1))]  // STATUS_CODE_OK
            if let error = hop.error {
                attributes.append(Self.attribute("error.type", string: error.code))
                status = [("code", .int(2)), ("message", .string("\(error.code): \(error.message)"))]  // STATUS_CODE_ERROR
            }
            let parentSpan: SpanID = hop.parent.map { Self.spanID(of: self.hops[$0].envelope.id) } ?? envelope.context.spanID
            return .object([
                ("traceId", .string(envelope.context.traceID.description)),
                ("spanId", .string(Self.spanID(of: envelope.id).description)),
                ("parentSpanId", .string(parentSpan.description)),
                ("name", .string("\(envelope.type.rawValue) \(envelope.recipient)")),
                ("kind", .int(5)),  // SPAN_KIND_CONSUMER: a message taken from a mailbox
                ("startTimeUnixNano", .string(String(start * 1_000_000))),
                ("endTimeUnixNano", .string(String(hop.record.header.clockMilliseconds * 1_000_000))),
                ("attributes", .array(attributes)),
                ("status", .object(status)),
            ])
        }
        return .object([
            ("resourceSpans", .array([
                .object([
                    ("resource", .object([("attributes", .array([Self.attribute("service.name", string: "cartrita")]))])),
                    ("scopeSpans", .array([
                        .object([
                            ("scope", .object([("name", .string("cartrita.trace")), ("version", .string("1"))])),
                            ("spans", .array(spans)),
                        ])
                    ])),
                ])
            ]))
        ])
    }

    /// A span id for a message: its id's bits mixed (never zero, which OTLP reads as "none").
    package static func spanID(of id: MessageID) -> SpanID {
        var mix = SplitMix64(seed: id.high ^ (id.low &* 0x9E37_79B9_7F4A_7C15))
        let value = mix.next64()
        return SpanID(value == 0 ? 1 : value)
    }

    static func attribute(_ key: String, string: String) -> JSON {
        .object([("key", .string(key)), ("value", .object([("stringValue", .string(string))]))])
    }

    static func attribute(_ key: String, int: Int64) -> JSON {
        .object([("key", .string(key)), ("value", .object([("intValue", .string(String(int)))]))])
    }
}
