import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import CartritaTravel

/// One answer of the debugger: JSON or an embedded asset.
package struct DebugResponse: Sendable {
    package var status: Int
    package var contentType: String
    package var body: String
}

/// The web debugger's JSON API and page, without HTTP: a path below the debugger's root and the
/// query parameters in, a response out. `cartrita debug` and `cartrita serve` (at `/debug`)
/// both put it behind Hummingbird (`DebuggerRoutes`).
///
/// - `GET api/summary`: source kind, first and last seq, actors, message types.
/// - `GET api/records?around=SEQ|from=SEQ|before=SEQ&limit=N&actor=A&type=T&correlation=C`: one
///   page of the timeline (at most `maxPageRecords`), by seq range through the log's cursors and
///   indexes; `next_from`/`prev_before` continue it.
/// - `GET api/record?seq=N`: one record in full.
/// - `GET api/state?at=SEQ&actor=A`: the actor's state at SEQ, and the diff from its state before
///   its last delivery at or before SEQ.
/// - `GET api/trace?correlation=C`: the causal tree of a task.
package final class DebuggerAPI: Sendable {
    /// Records in one page of the timeline.
    package static let maxPageRecords = 500
    package static let defaultPageRecords = 60
    /// Records read per read transaction.
    package static let readChunkRecords = 512
    /// Records looked at per request when a filter has no index (type only): past this, the
    /// page ends early and says where to continue.
    package static let maxScanRecords = 50_000
    /// Seqs of the log per read of the actor index when the timeline is filtered by actor.
    package static let indexWindowSeqs: UInt64 = 65_536
    /// Windows of the actor index read per request before the page ends early.
    package static let maxIndexWindows = 64

    package let source: any DebugSource
    /// Where the page is mounted (`""` or `/debug`): the page's requests start with it.
    package let basePath: String

    package init(source: any DebugSource, basePath: String = "") {
        self.source = source
        self.basePath = basePath
    }

    package func handle(path: String, query: [String: String]) -> DebugResponse {
        do {
            switch path {
            case "", "/", "index.html", "/index.html":
                return DebugResponse(status: 200, contentType: "text/html; charset=utf-8", body: DebuggerAssets.indexHTML(basePath: self.basePath))
            case "app.js", "/app.js": return DebugResponse(status: 200, contentType: "text/javascript; charset=utf-8", body: DebuggerAssets.appJS)
            case "app.css", "/app.css": return DebugResponse(status: 200, contentType: "text/css; charset=utf-8", body: DebuggerAssets.appCSS)
            case "api/summary", "/api/summary": return Self.json(self.summary())
            case "api/records", "/api/records": return Self.json(try self.records(query))
            case "api/record", "/api/record": return Self.json(try self.record(query))
            case "api/state", "/api/state": return Self.json(try self.state(query))
            case "api/trace", "/api/trace": return Self.json(try self.trace(query))
            default:
                return Self.error(404, "not_found", "no debugger route \(path)")
            }
        } catch {
            let status = switch error.code {
            case .unknownCorrelation: 404
            case .log: 500
            default: 400
            }
            return Self.error(status, error.code.rawValue, error.message)
        }
    }

    static func json(_ value: JSON) -> DebugResponse {
        DebugResponse(status: 200, contentType: "application/json", body: value.rendered())
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> DebugResponse {
        DebugResponse(
            status: status, contentType: "application/json",
            body: JSON.object([("error", .object([("code", .string(code)), ("message", .string(message))]))]).rendered())
    }

    // MARK: Arguments

    func seq(_ query: [String: String], _ name: String) throws(TravelError) -> UInt64? {
        guard let text = query[name], !text.isEmpty else { return nil }
        guard let value = UInt64(text) else { throw TravelError(.invalidArgument, "\(name): a sequence number, not '\(text)'") }
        return value
    }

    func filter(_ query: [String: String]) throws(TravelError) -> RecordFilter {
        var filter = RecordFilter()
        if let text = query["actor"], !text.isEmpty {
            guard let actor = try? Address(validating: text) else { throw TravelError(.invalidArgument, "actor: '\(text)' is not an address") }
            filter.actor = actor
        }
        if let text = query["type"], !text.isEmpty {
            guard let type = MessageType(rawValue: text) else { throw TravelError(.invalidArgument, "type: '\(text)' is not a message type") }
            filter.type = type
        }
        if let text = query["correlation"], !text.isEmpty {
            guard let id = MessageID(string: text) else { throw TravelError(.invalidArgument, "correlation: '\(text)' is not a UUID") }
            filter.correlation = id
        }
        return filter
    }

    // MARK: Endpoints

    func summary() -> JSON {
        .object([
            ("source", .string(self.source.kind)), ("first_seq", .uint(self.source.firstSeq)), ("last_seq", .uint(self.source.lastSeq)),
            ("actors", .array(self.source.actors.map { .string($0.rawValue) })),
            ("types", .array(MessageType.allCases.map { .string($0.rawValue) })),
            ("max_page_records", .int(Int64(Self.maxPageRecords))),
        ])
    }

    func records(_ query: [String: String]) throws(TravelError) -> JSON {
        let filter = try self.filter(query)
        var limit = Self.defaultPageRecords
        if let text = query["limit"] {
            guard let value = Int(text), value >= 1 else { throw TravelError(.invalidArgument, "limit: a positive integer, not '\(text)'") }
            limit = min(value, Self.maxPageRecords)
        }
        let first = self.source.firstSeq
        let last = self.source.lastSeq
        guard last >= 1 else { return Self.page([], prevBefore: nil, nextFrom: nil, last: last) }
        var before: RecordPage?
        var after: RecordPage?
        if let around = try self.seq(query, "around") {
            let point = min(max(around, first), last)
            // Half before the point, the point and the rest after it.
            if point > first { before = try self.source.records(in: first...(point - 1), filter: filter, limit: limit / 2, descending: true) }
            after = try self.source.records(in: point...last, filter: filter, limit: limit - (before?.records.count ?? 0), descending: false)
        } else if let end = try self.seq(query, "before") {
            if end > first { before = try self.source.records(in: first...min(end - 1, last), filter: filter, limit: limit, descending: true) }
        } else {
            let start = max(try self.seq(query, "from") ?? first, first)
            if start <= last { after = try self.source.records(in: start...last, filter: filter, limit: limit, descending: false) }
        }
        // Where to go on: from how far each search got, not from the records found (a sparse
        // filter may end a page with few records, or none, and more further on).
        let prevBefore = before.flatMap { $0.reached > first ? $0.reached : nil }
        let nextFrom = after.flatMap { $0.reached < last ? $0.reached + 1 : nil }
        return Self.page((before?.records ?? []).reversed() + (after?.records ?? []), prevBefore: prevBefore, nextFrom: nextFrom, last: last)
    }

    static func page(_ records: [LogRecord], prevBefore: UInt64?, nextFrom: UInt64?, last: UInt64) -> JSON {
        .object([
            ("last_seq", .uint(last)),
            ("records", .array(records.map(Self.row))),
            ("prev_before", prevBefore.map { .uint($0) } ?? .null),
            ("next_from", nextFrom.map { .uint($0) } ?? .null),
        ])
    }

    /// A timeline row: what the table shows, with errors and retries marked.
    static func row(_ record: LogRecord) -> JSON {
        let envelope = record.envelope
        var members: [(String, JSON)] = [
            ("seq", .uint(record.header.seq)), ("clock_ms", .int(record.header.clockMilliseconds)),
            ("time", .string(ISO8601Milliseconds.format(record.header.clockMilliseconds))), ("id", .string(envelope.id.description)),
            ("parent_id", envelope.parentID.map { .string($0.description) } ?? .null),
            ("correlation_id", .string(envelope.correlationID.description)), ("sender", .string(envelope.sender.rawValue)),
            ("recipient", .string(envelope.recipient.rawValue)), ("type", .string(envelope.type.rawValue)),
            ("retry_count", .int(Int64(envelope.retryCount))), ("delivery_mode", .string(envelope.deliveryMode.rawValue)),
        ]
        if let error = Self.error(of: envelope) {
            members.append(("error", .object([("code", .string(error.code)), ("message", .string(error.message))])))
        }
        members.append(("summary", .string(Self.summary(of: envelope))))
        return .object(members)
    }

    /// The error a message carries: a task_error, a failed or cancelled response (an I/O
    /// failure included), a deny.
    static func error(of envelope: Envelope) -> (code: String, message: String)? {
        switch envelope.payload {
        case .taskError(let error): return (error.code.rawValue, error.message)
        case .taskResponse(let response) where response.status == .failed || response.status == .cancelled:
            if case .map(let entries)? = response.result, let failure = entries.first(where: { $0.key == "error" })?.value,
                case .string(let code)? = failure["code"]
            {
                return (code, response.errorMessage ?? "")
            }
            return (response.status.rawValue, response.errorMessage ?? "")
        case .resourceDeny(let deny): return (deny.code.rawValue, deny.reason)
        default: return nil
        }
    }

    static func summary(of envelope: Envelope) -> String {
        switch envelope.payload {
        case .taskRequest(let request): return request.task.type
        case .taskResponse(let response): return response.status.rawValue
        case .taskError(let error): return "\(error.code.rawValue): \(error.message)"
        case .taskProgress(let progress): return progress.message
        case .resourceDeny(let deny): return "\(deny.code.rawValue): \(deny.reason)"
        default: return envelope.type.rawValue
        }
    }

    func record(_ query: [String: String]) throws(TravelError) -> JSON {
        guard let seq = try self.seq(query, "seq") else { throw TravelError(.invalidArgument, "seq: required") }
        guard let record = try self.source.record(seq) else {
            throw TravelError(.seqOutOfRange, "no record \(seq) (\(self.source.firstSeq)...\(self.source.lastSeq))")
        }
        return .object([
            ("seq", .uint(seq)), ("clock_ms", .int(record.header.clockMilliseconds)), ("entropy", .uint(record.header.entropy)),
            ("prev_hash", .string(record.header.prevHash.description)), ("actor_prev_seq", .uint(record.header.actorPrevSeq)),
            ("envelope", record.envelope.json),
        ])
    }

    func state(_ query: [String: String]) throws(TravelError) -> JSON {
        guard let at = try self.seq(query, "at") else { throw TravelError(.invalidArgument, "at: required") }
        guard let text = query["actor"], let actor = try? Address(validating: text) else {
            throw TravelError(.invalidArgument, "actor: required, an address such as orchestrator@v1.0")
        }
        guard at >= self.source.firstSeq, at <= self.source.lastSeq else {
            throw TravelError(.seqOutOfRange, "seq \(at) is outside \(self.source.firstSeq)...\(self.source.lastSeq)")
        }
        guard self.source.actors.contains(actor) else {
            throw TravelError(.unknownActor, "no actor \(actor) (actors: \(self.source.actors.map(\.rawValue).joined(separator: ", ")))")
        }
        let now = try self.source.state(at: at, actor: actor)
        // The step that made this state: the actor's last delivery at or before `at`.
        var members: [(String, JSON)] = [
            ("at", .uint(at)), ("actor", .string(actor.rawValue)), ("digest", .string(now.digest)), ("last_seq", .uint(now.lastSeq)),
            ("snapshot_seq", .uint(now.snapshotSeq)), ("replayed", .int(Int64(now.replayed))), ("state", now.state.json),
        ]
        if now.lastSeq > self.source.firstSeq {
            let before = try self.source.state(at: now.lastSeq - 1, actor: actor)
            let (changes, omitted) = StateDiff.changes(from: before.state, to: now.state, limit: 500)
            members.append(("diff", .object([
                ("from_seq", .uint(now.lastSeq - 1)), ("to_seq", .uint(now.lastSeq)), ("from_digest", .string(before.digest)),
                ("changes", .array(changes.map { change in
                    .object([
                        ("path", .string(change.path)), ("old", change.old?.json ?? .null), ("new", change.new?.json ?? .null),
                        ("kind", .string(change.old == nil ? "added" : change.new == nil ? "removed" : "changed")),
                    ])
                })),
                ("omitted", .int(Int64(omitted))),
            ])))
        } else {
            members.append(("diff", .null))
        }
        return .object(members)
    }

    func trace(_ query: [String: String]) throws(TravelError) -> JSON {
        guard let text = query["correlation"], let correlation = MessageID(string: text) else {
            throw TravelError(.invalidArgument, "correlation: required, a UUID")
        }
        return try self.source.trace(correlation).json
    }
}
