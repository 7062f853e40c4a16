import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTelemetry
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

// MARK: - Tier 0's front door: HTTP requests in, MCP envelopes out

/// What the routes call: it turns a request into an envelope from `client.http@v1.0` to the
/// orchestrator, waits for the answer through the node's observer, and reads task status and
/// message flow back from the log (the log, not memory, is the truth: it survives restarts).
final class FrontDoor: Sendable {
    /// The client every HTTP task is submitted as; answers addressed to it end HTTP waits.
    static let httpClient = Address("client.http@v1.0")

    let configuration: ServerConfiguration
    let log: EventLog
    let store: ServerStore
    let tracker: Tracker
    let authenticator: Authenticator
    let rateLimiter: RateLimiter
    let metrics: ServerMetrics
    let events: EventHub
    /// nil unless `OTEL_*` turned tracing on: then each task submission is a server span whose
    /// ids the envelope carries, and the node's deliveries become hop spans under it.
    let telemetry: Telemetry?
    /// The node's clock (through a fresh id's milliseconds): envelopes the API makes carry the
    /// same time base as the runtime's, which after recovery may run ahead of the wall clock.
    var nowMilliseconds: Int64 { self.node.newID().unixMilliseconds }
    /// Set once, right after the node is built (the node's observer needs the tracker first).
    let nodeBox = Mutex<Node?>(nil)
    /// True from the first shutdown signal: new work is answered 503.
    let draining = Atomic<Bool>(false)

    var node: Node { self.nodeBox.withLock { $0! } }

    /// Structured logs name tasks by their ids (task, trace, user), never by their payloads.
    let logger: Logger

    /// True while an admin's `POST /v3/admin/drain` holds: new tasks are answered 503
    /// `draining`, everything else (status, streams, cancels) is served, in-flight work finishes.
    /// Not stored: a restart serves again (the drain is for taking an instance out of rotation).
    let adminDrain = Mutex<AdminDrain?>(nil)

    init(
        configuration: ServerConfiguration, log: EventLog, store: ServerStore, metrics: ServerMetrics, logger: Logger,
        jwt: JWTVerifier? = nil, telemetry: Telemetry? = nil
    ) {
        self.telemetry = telemetry
        self.logger = logger
        self.configuration = configuration
        self.log = log
        self.store = store
        self.metrics = metrics
        self.events = EventHub(maxSubscribers: configuration.maxEventStreams)
        self.tracker = Tracker(maxWaiting: configuration.maxWaitingRequests, maxTracked: configuration.maxPendingTasks)
        self.authenticator = Authenticator(configuration: configuration.auth, store: store, jwt: jwt)
        self.rateLimiter = RateLimiter(ratePerSecond: configuration.auth.rateLimitPerSecond, burst: configuration.auth.rateLimitBurst)
    }

    /// The hierarchy `serve` runs: the standard tiers, with the HTTP client beside `run`'s (a log
    /// written by `cartrita run` must still recover under the server, and the other way round).
    static func hierarchy(_ configuration: ServerConfiguration) -> Hierarchy {
        var options = Hierarchy.Options()
        options.clients = [Hierarchy.runClient, Self.httpClient]
        options.maxPendingTasks = configuration.maxPendingTasks
        options.routing = configuration.routing
        options.budgets = configuration.budgets
        return .standard(options)
    }

    /// Called by the node when a handler makes a terminal answer to a client, before the
    /// answer's record is committed (`NodeConfiguration.answerTap`): a waiting request may be
    /// answered now. The committed delivery (`observe`) comes after and finds nothing waiting.
    func answerSettled(_ envelope: Envelope) {
        guard envelope.recipient == Self.httpClient else { return }
        self.tracker.settled(envelope.correlationID, envelope)
    }

    /// Called by the node for every delivery to a client, after its record is committed.
    func observe(_ address: Address, _ envelope: Envelope, _ seq: UInt64) {
        guard address == Self.httpClient else { return }
        self.events.publish(envelope, seq: seq)
        if let outcome = ClientMachine.outcome(envelope) {
            self.tracker.answered(envelope.correlationID, envelope)
            self.metrics.taskAnswered(envelope)
            self.logger.debug(
                "task answered",
                metadata: [
                    "task_id": "\(envelope.correlationID)", "correlation_id": "\(envelope.correlationID)",
                    "trace_id": "\(envelope.context.traceID)", "span_id": "\(envelope.context.spanID)", "seq": "\(seq)",
                    "outcome": "\(outcome.rawValue)",
                ])
        }
    }

    // MARK: Admission

    /// Checks that apply to every /v3 request: draining, credentials, origin, rate.
    func admit(_ request: Request) async throws(APIError) -> Caller {
        try await self.admit(headers: request.headers, authority: request.head.authority)
    }

    func admit(headers: HTTPFields, authority: String?) async throws(APIError) -> Caller {
        if self.draining.load(ordering: .relaxed) {
            throw APIError(.serviceUnavailable, .draining, "the server is shutting down; retry on another instance or after restart", retryAfterSeconds: 1)
        }
        let caller = try await self.authenticator.caller(headers: headers, authority: authority)
        if let seconds = self.rateLimiter.take(caller.userID) {
            throw APIError(.tooManyRequests, .rateLimited, "rate limit of \(self.configuration.auth.rateLimitPerSecond)/s exceeded", retryAfterSeconds: seconds)
        }
        return caller
    }

    /// `/metrics` and `/ready` with `auth.protect_metrics`: any valid credentials (no rate
    /// limit: a scraper must not be throttled into gaps). Off: open, as before.
    func admitMetrics(_ request: Request) async throws(APIError) {
        guard self.configuration.auth.protectMetrics else { return }
        _ = try await self.authenticator.caller(headers: request.headers, authority: request.head.authority)
    }

    static func taskID(_ text: String) throws(APIError) -> MessageID {
        guard let id = MessageID(string: text) else {
            throw APIError(.notFound, .notFound, "no task \(text) (task ids are UUIDs)", field: "id")
        }
        return id
    }

    // MARK: POST /v3/tasks

    func parseBody(_ bytes: [UInt8]) throws(APIError) -> JSON {
        do {
            return try JSONParser(limits: .init(maxDepth: 32, maxInputBytes: self.configuration.maxBodyBytes)).parse(bytes)
        } catch {
            throw APIError(.badRequest, .malformedJSON, "the body is not valid JSON: \(error)")
        }
    }

    func submit(_ request: Request, body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        let body = try TaskBody.decode(try self.parseBody(bytes))
        return try await self.submit(request, body: body, bytes: bytes, caller: caller)
    }

    /// The v2 bridge (seed §5.1.7): `POST /api/DOMAIN/ACTION` with the v2 body (an object of
    /// parameters) becomes the task `DOMAIN.ACTION` with those parameters, submitted and answered
    /// as `POST /v3/tasks` would. Answers carry `Deprecation` and a link to the v3 route.
    func submitV2(_ request: Request, domain: String, action: String, body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        let segment = { (text: String) in !text.isEmpty && text.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x5F } }
        guard segment(domain), segment(action) else {
            throw APIError(.notFound, .notFound, "no v2 route /api/\(domain)/\(action)")
        }
        var parameters: [MCPValue.MapEntry] = []
        if !bytes.isEmpty {
            guard case .map(let entries) = try self.parseBody(bytes).mcpValue else {
                throw APIError.badField("$", "a v2 body is a JSON object of parameters")
            }
            parameters = entries
        }
        let body = TaskBody(request: TaskRequest(task: TaskSpec(type: "\(domain).\(action)", parameters: parameters)))
        var response = try await self.submit(request, body: body, bytes: bytes, caller: caller)
        response.headers[HTTPField.Name("Deprecation")!] = "true"
        response.headers[HTTPField.Name("Link")!] = "</v3/tasks>; rel=\"successor-version\""
        return response
    }

    func submit(_ request: Request, body: TaskBody, bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        let traceparent = request.headers[HTTPField.Name("traceparent")!]
        guard let telemetry = self.telemetry else {
            return try await self.submit(request, body: body, bytes: bytes, caller: caller, trace: traceparent.flatMap(TraceParent.init))
        }
        // Tracing: this request is a server span under the caller's traceparent; the envelope
        // carries its ids (seed §5.1.1), so the hops' spans hang under it.
        let span = telemetry.startRequestSpan(
            "POST \(request.uri.path)", traceparent: traceparent,
            attributes: [("http.request.method", "POST"), ("url.path", request.uri.path), ("mcp.task.type", body.request.task.type)])
        defer { span?.end() }
        let ids = span.flatMap { span in span.traceID.flatMap { trace in span.spanID.map { TraceParent(traceID: trace, spanID: $0) } } }
        do {
            return try await self.submit(request, body: body, bytes: bytes, caller: caller, trace: ids ?? traceparent.flatMap(TraceParent.init))
        } catch {
            span?.fail(error.code.rawValue)
            throw error
        }
    }

    /// `trace`: the ids the envelope's context takes (the request's span, else the caller's
    /// `traceparent`); nil: a new trace named after the task id.
    func submit(_ request: Request, body: TaskBody, bytes: [UInt8], caller: Caller, trace: TraceParent?) async throws(APIError) -> Response {
        if let drain = self.adminDrain.withLock({ $0 }) {
            throw APIError(
                .serviceUnavailable, .draining, "the server is drained by \(drain.by): it takes no new tasks; tasks in flight finish",
                retryAfterSeconds: 5)
        }
        guard caller.mayRun(taskType: body.request.task.type) else {
            throw APIError(.forbidden, .forbidden, "role \(caller.role) may not run \(body.request.task.type)", field: "task.type")
        }
        let isAsync = request.uri.queryParameters["async"].map { $0 == "true" || $0 == "1" } ?? false
        let idempotencyKey = HTTPField.Name("Idempotency-Key").flatMap { request.headers[$0] }

        // The envelope is built and checked first: a body the envelope rules refuse is a 400
        // before anything is stored for its idempotency key.
        var envelope = try self.envelope(
            id: self.node.newID(), body: body, caller: caller, trace: trace,
            mode: idempotencyKey != nil ? .exactlyOnce : (body.deliveryMode ?? .atLeastOnce))
        var id = envelope.id
        var resubmit = true
        if let key = idempotencyKey {
            guard !key.isEmpty, key.utf8.count <= 255 else {
                throw APIError.badField("Idempotency-Key", "Idempotency-Key is 1 to 255 bytes")
            }
            let digest = Array(SHA256.hash(data: bytes))
            let stored: (task: ServerStore.IdempotentTask, created: Bool)
            do {
                stored = try await self.store.idempotentTask(user: caller.userID, key: key, bodyDigest: digest, id: id)
            } catch {
                throw APIError(.internalServerError, .storageFailed, "\(error)")
            }
            guard stored.task.bodyDigest == digest else {
                throw APIError(.conflict, .idempotencyConflict, "Idempotency-Key \(key) was used with another body", field: "Idempotency-Key")
            }
            id = stored.task.taskID
            envelope.id = id
            envelope.correlationID = id
            if trace == nil { envelope.context.traceID = TraceID(high: id.high, low: id.low) }
            if !stored.created {
                // A repeat: if the log already holds the request, the task runs or ran; only a
                // request the log lacks (lost in a crash before its commit) is sent again.
                let view = try self.view(of: id)
                if let view, view.answer != nil || view.requestLogged {
                    resubmit = false
                    if view.answer != nil || isAsync { return self.taskResponse(view, id: id, accepted: isAsync) }
                }
            }
        }
        let now = self.nowMilliseconds
        guard case .registered(let wait) = self.tracker.register(id, user: caller.userID, nowMilliseconds: now, wait: !isAsync) else {
            throw APIError(.tooManyRequests, .tooManyWaiting, "\(self.configuration.maxWaitingRequests) requests are already waiting", retryAfterSeconds: 1)
        }
        if resubmit {
            self.metrics.tier0.submitted(envelope.id)
            self.node.send(envelope)
            self.metrics.taskSubmitted(envelope)
            self.logger.debug(
                "task submitted",
                metadata: [
                    "task_id": "\(id)", "correlation_id": "\(id)", "trace_id": "\(envelope.context.traceID)",
                    "span_id": "\(envelope.context.spanID)", "user_id": "\(caller.userID)",
                    "task_type": "\(body.request.task.type)", "delivery_mode": "\(envelope.deliveryMode.rawValue)",
                ])
        }
        guard let wait else { return self.accepted(id, status: "pending") }
        if !resubmit, let answer = try? self.view(of: id)?.answer {
            wait.finish(answer)  // answered between the look at the log and the registration
        }
        let answer = await wait.value(timeoutMilliseconds: self.configuration.syncTimeoutMilliseconds)
        self.tracker.release(wait, of: id)
        guard let answer else {
            if self.draining.load(ordering: .relaxed) {
                let error = APIError(
                    .serviceUnavailable, .draining, "the server is shutting down; task \(id) is in the log and finishes after restart",
                    retryAfterSeconds: 1)
                var response = error.response
                response.headers[.location] = "/v3/tasks/\(id)"
                return response
            }
            return self.accepted(id, status: "pending")
        }
        let view = TaskView(id: id, request: envelope, requestLogged: true, answer: answer, flow: [])
        if case .taskError(let error) = answer.payload, error.code == .overloaded {
            var response = APIError(.tooManyRequests, .overloaded, error.message, retryAfterSeconds: 1).response
            response.headers[.location] = "/v3/tasks/\(id)"
            return response
        }
        if case .taskError(let error) = answer.payload, error.code == .paused {
            // The domain's supervisor is paused by an admin: unavailable for now, worth a retry.
            var response = APIError(.serviceUnavailable, .paused, error.message, retryAfterSeconds: 5).response
            response.headers[.location] = "/v3/tasks/\(id)"
            return response
        }
        return self.taskResponse(view, id: id, accepted: false)
    }

    /// The client's request envelope. Its `context.trace_id`/`span_id` are `trace` (W3C
    /// `traceparent`, or the request's server span when tracing is on); without one, a new
    /// trace named after the task id, under a random span id of this request.
    func envelope(id: MessageID, body: TaskBody, caller: Caller, trace: TraceParent?, mode: DeliveryMode) throws(APIError) -> Envelope {
        var generator = SystemRandomNumberGenerator()
        let traceID = trace?.traceID ?? TraceID(high: id.high, low: id.low)
        let span = trace?.spanID ?? SpanID(UInt64.random(in: 1...UInt64.max, using: &generator))
        let context = MessageContext(
            traceID: traceID, spanID: span, userID: caller.userID, conversationID: body.conversationID, sessionID: body.sessionID,
            workspaceID: body.workspaceID, customAttributes: body.customAttributes)
        let envelope = Envelope(
            id: id, parentID: nil, correlationID: id, sender: Self.httpClient, recipient: .orchestrator, broadcast: false,
            timestampMilliseconds: self.nowMilliseconds, ttlMilliseconds: body.ttlMilliseconds, priority: body.priority, context: context,
            payload: .taskRequest(body.request), deliveryMode: mode, retryCount: 0, maxRetries: body.maxRetries)
        do {
            try envelope.validate(limits: self.log.configuration.codecLimits.envelope)
        } catch {
            // The envelope rules name payload fields as `payload.task.type`; the body has no `payload`.
            var field = error.path
            if field.hasPrefix("payload.") { field.removeFirst("payload.".count) }
            throw APIError(.badRequest, .invalidField, error.message, field: field)
        }
        return envelope
    }

    func accepted(_ id: MessageID, status: String) -> Response {
        var response = Response.json(.object([("task_id", .string(id.description)), ("status", .string(status))]), status: .accepted)
        response.headers[.location] = "/v3/tasks/\(id)"
        return response
    }

    func taskResponse(_ view: TaskView, id: MessageID, accepted: Bool) -> Response {
        var response = Response.json(view.json(includeFlow: false), status: accepted && view.answer == nil ? .accepted : .ok)
        response.headers[.location] = "/v3/tasks/\(id)"
        return response
    }

    // MARK: Reading a task back from the log

    struct TaskView {
        var id: MessageID
        var request: Envelope?
        var requestLogged: Bool
        var answer: Envelope?
        var flow: [LogRecord]
        /// The answer is a committed record of the log, not only settled (see `view(of:)`).
        var answerLogged = false

        var status: String {
            guard let answer else { return "pending" }
            switch answer.payload {
            case .taskResponse(let response): return response.status.rawValue
            case .taskError(let error): return error.code == .cancelled ? "cancelled" : "failed"
            default: return "pending"
            }
        }

        var userID: String? { self.request?.context.userID }

        func json(includeFlow: Bool) -> JSON {
            var members: [(String, JSON)] = [("task_id", .string(self.id.description)), ("status", .string(self.status))]
            if let request = self.request, case .taskRequest(let payload) = request.payload {
                members.append(("type", .string(payload.task.type)))
                if let user = request.context.userID { members.append(("user_id", .string(user))) }
                members.append(("created", .string(ISO8601Milliseconds.format(request.timestampMilliseconds))))
                members.append(("trace_id", .string(request.context.traceID.description)))
                members.append(("span_id", .string(request.context.spanID.description)))
            }
            if let answer = self.answer {
                members.append(("finished", .string(ISO8601Milliseconds.format(answer.timestampMilliseconds))))
                switch answer.payload {
                case .taskResponse(let response):
                    if let result = response.result { members.append(("result", result.json)) }
                    // The metrics alone (rendering the whole payload to pick them out cost as much as
                    // the answer itself).
                    if let metrics = response.metrics { members.append(("metrics", metrics.json)) }
                    if let message = response.errorMessage {
                        members.append(("error", .object([("code", .string(response.status.rawValue)), ("message", .string(message))])))
                    }
                case .taskError(let error):
                    members.append((
                        "error",
                        .object([
                            ("code", .string(error.code.rawValue)), ("message", .string(error.message)), ("retryable", .bool(error.retryable)),
                        ])
                    ))
                default: break
                }
                if let request = self.request {
                    members.append(("duration_ms", .int(answer.timestampMilliseconds - request.timestampMilliseconds)))
                }
            }
            if includeFlow {
                members.append(("flow", .array(self.flow.map(Self.flowEntry))))
            }
            return .object(members)
        }

        /// One hop of the task's path: who sent what to whom, when, in which log record. The
        /// payloads are left out (GET /v3/tasks/{id} is for following a task, `cartrita log
        /// dump` for reading its bytes).
        static func flowEntry(_ record: LogRecord) -> JSON {
            let envelope = record.envelope
            // clock_ms: when the recipient took the message (the delivery's recorded clock), so a
            // reader can time each tier (the load tester's routing overhead).
            var members: [(String, JSON)] = [
                ("seq", .uint(record.header.seq)), ("clock_ms", .int(record.header.clockMilliseconds)), ("id", .string(envelope.id.description)),
            ]
            if let parent = envelope.parentID { members.append(("parent_id", .string(parent.description))) }
            members += [
                ("type", .string(envelope.type.rawValue)), ("sender", .string(envelope.sender.rawValue)),
                ("recipient", .string(envelope.recipient.rawValue)),
                ("timestamp", .string(ISO8601Milliseconds.format(envelope.timestampMilliseconds))),
                ("delivery_mode", .string(envelope.deliveryMode.rawValue)), ("retry_count", .int(Int64(envelope.retryCount))),
            ]
            switch envelope.payload {
            case .taskError(let error): members.append(("code", .string(error.code.rawValue)))
            case .taskResponse(let response): members.append(("status", .string(response.status.rawValue)))
            default: break
            }
            return .object(members)
        }
    }

    /// Task `id` as the log knows it (its correlation's records), or as this process knows it
    /// when the request is not committed yet. Nil: no such task.
    func view(of id: MessageID, flowLimit: Int = 0) throws(APIError) -> TaskView? {
        // The tracker first, then the log: an answer leaves the tracker only once its record is
        // committed, so whatever the log read below misses, this read still holds. Read the
        // other way round, a commit landing between the two reads showed a task its client had
        // been answered as pending.
        let tracked = self.tracker.tracked(id)
        let seqs: [UInt64]
        do {
            seqs = try self.log.seqs(correlation: id)
        } catch {
            throw APIError(.internalServerError, .storageFailed, "reading task \(id): \(error)")
        }
        var view = TaskView(id: id, request: nil, requestLogged: false, answer: nil, flow: [])
        for seq in seqs {
            let record: LogRecord?
            do {
                record = try self.log.record(seq)
            } catch {
                throw APIError(.internalServerError, .storageFailed, "reading record \(seq): \(error)")
            }
            guard let record else { continue }
            let envelope = record.envelope
            if envelope.id == id, case .taskRequest = envelope.payload {
                view.request = envelope
                view.requestLogged = true
            }
            if envelope.recipient.isClient, view.answer == nil, ClientMachine.outcome(envelope) != nil {
                view.answer = envelope
                view.answerLogged = true
            }
            if view.flow.count < flowLimit { view.flow.append(record) }
        }
        // Settled but not committed yet: the answer its client may already have been given.
        if view.answer == nil, let settled = tracked?.settled { view.answer = settled }
        if !view.requestLogged {
            guard tracked != nil else { return nil }
        }
        return view
    }

    // MARK: GET /v3/tasks/{id}

    func task(_ idText: String, caller: Caller) throws(APIError) -> Response {
        let id = try Self.taskID(idText)
        guard let view = try self.view(of: id, flowLimit: self.configuration.maxFlowRecords) else {
            throw APIError(.notFound, .notFound, "no task \(id)", field: "id")
        }
        let owner = view.userID ?? self.tracker.tracked(id)?.user
        // Another user's task is "not found", not "forbidden": its existence is not theirs to learn.
        guard caller.maySee(user: owner) else { throw APIError(.notFound, .notFound, "no task \(id)", field: "id") }
        return Response.json(view.json(includeFlow: true))
    }

    // MARK: DELETE /v3/tasks/{id}

    /// Sends the cancel (a `task_error` `cancelled` from the client to the orchestrator, which
    /// answers the task and passes the cancel down to the supervisor and the agent), then waits
    /// a moment for that answer.
    func cancel(_ idText: String, caller: Caller) async throws(APIError) -> Response {
        let id = try Self.taskID(idText)
        guard var view = try self.view(of: id), caller.maySee(user: view.userID ?? self.tracker.tracked(id)?.user) else {
            throw APIError(.notFound, .notFound, "no task \(id)", field: "id")
        }
        // Submitted by this process a moment ago and still in the orchestrator's mailbox: a
        // cancel (critical priority) would overtake it and find nothing to cancel. Its commit
        // is a matter of milliseconds; wait for it, boundedly.
        var polls = 0
        while !view.requestLogged && polls < 500 {
            try? await Task.sleep(for: .milliseconds(2))
            view = try self.view(of: id) ?? view
            polls += 1
        }
        if view.answer != nil {
            throw APIError(.conflict, .alreadyFinished, "task \(id) is already \(view.status)", field: "id")
        }
        let now = self.nowMilliseconds
        guard case .registered(let wait) = self.tracker.register(id, user: caller.userID, nowMilliseconds: now, wait: true), let wait else {
            throw APIError(.tooManyRequests, .tooManyWaiting, "too many requests waiting", retryAfterSeconds: 1)
        }
        let cancelID = self.node.newID()
        var context = view.request?.context ?? MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(1))
        context.userID = caller.userID
        self.node.send(Envelope(
            id: cancelID, parentID: id, correlationID: id, sender: Self.httpClient, recipient: .orchestrator, broadcast: false,
            timestampMilliseconds: now, ttlMilliseconds: 60_000, priority: .critical, context: context,
            payload: .taskError(TaskError(code: .cancelled, message: "cancelled through the API by \(caller.userID)", retryable: false)),
            deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 0))
        // Finished on its own before the cancel reached it: the orchestrator ignores the cancel,
        // and the answer already in the log is the one to show.
        if let answer = try? self.view(of: id)?.answer { wait.finish(answer) }
        let answer = await wait.value(timeoutMilliseconds: self.configuration.syncTimeoutMilliseconds)
        self.tracker.release(wait, of: id)
        guard let answer else { return self.accepted(id, status: "cancelling") }
        return Response.json(TaskView(id: id, request: view.request, requestLogged: true, answer: answer, flow: []).json(includeFlow: false))
    }

    // MARK: GET /v3/routes

    /// The paths tasks take on this server: the orchestrator's routing table (prefix →
    /// supervisor, longest prefix first, as it looks them up) and which agents of each
    /// supervisor handle which task types. The load tester's flow check asserts against it, so
    /// a server configured with other routes is checked against its own.
    func routes() -> Response {
        let hierarchy = Self.hierarchy(self.configuration)
        return Response.json(.object([
            ("routes", .array(hierarchy.routing.routes.map { route in
                .object([("prefix", .string(route.prefix)), ("supervisor", .string(route.supervisor.rawValue))])
            })),
            ("agents", .array(hierarchy.agentRoutes.map { route in
                .object([
                    ("supervisor", .string(route.supervisor.rawValue)), ("agent", .string(route.agent.rawValue)),
                    ("task_types", .array(route.taskTypes.map { .string($0) })),
                ])
            })),
        ]))
    }

    // MARK: GET /v3/tasks

    /// A page of tasks in submission order. The cursor is a log seq: the page reads the
    /// orchestrator's records after it (HTTP clients' requests are the tasks) and returns the seq
    /// to go on from, also when a page stops at `maxScanRecordsPerPage` with few matches.
    func list(_ request: Request, caller: Caller) throws(APIError) -> Response {
        let query = request.uri.queryParameters
        var cursor: UInt64 = 0
        if let text = query["cursor"] {
            guard let value = UInt64(text) else { throw APIError(.badRequest, .invalidParameter, "cursor is a number from next_cursor", field: "cursor") }
            cursor = value
        }
        var limit = min(20, self.configuration.maxPageTasks)
        if let text = query["limit"] {
            guard let value = Int(text), (1...self.configuration.maxPageTasks).contains(value) else {
                throw APIError(.badRequest, .invalidParameter, "limit is 1...\(self.configuration.maxPageTasks)", field: "limit")
            }
            limit = value
        }
        let statuses = ["pending", "completed", "failed", "cancelled"]
        let status = query["status"].map { String($0) }
        if let status, !statuses.contains(status) {
            throw APIError(.badRequest, .invalidParameter, "status is one of \(statuses.joined(separator: ", "))", field: "status")
        }
        var items: [JSON] = []
        var next: UInt64? = nil
        do {
            // One window of the orchestrator's records, read from its index: a page costs the
            // window, never the whole log.
            let window = max(1, self.configuration.maxScanRecordsPerPage)
            let seqs = try self.log.seqs(actor: Address.orchestrator.rawValue, after: cursor, limit: window)
            let more = seqs.count == window  // the window may have cut the list short
            var scanned = 0
            for seq in seqs {
                scanned += 1
                guard let record = try self.log.record(seq) else { continue }
                let envelope = record.envelope
                if envelope.sender == Self.httpClient, case .taskRequest = envelope.payload, envelope.id == envelope.correlationID,
                    caller.maySee(user: envelope.context.userID), let view = try self.view(of: envelope.id),
                    status == nil || view.status == status
                {
                    items.append(view.json(includeFlow: false))
                }
                if items.count >= limit {
                    if scanned < seqs.count || more { next = seq }
                    break
                }
            }
            if next == nil, items.count < limit, more { next = seqs.last }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.internalServerError, .storageFailed, "listing tasks: \(error)")
        }
        var members: [(String, JSON)] = [("tasks", .array(items))]
        members.append(("next_cursor", next.map { .string(String($0)) } ?? .null))
        return Response.json(.object(members))
    }

    // MARK: Health

    /// Ready when the log takes writes and every supervisor answered a probe just now: the probe
    /// goes through the log like any message, so an answer proves both.
    func ready() async -> Response {
        if self.draining.load(ordering: .relaxed) { return APIError(.serviceUnavailable, .draining, "shutting down", retryAfterSeconds: 1).response }
        if let drain = self.adminDrain.withLock({ $0 }) {
            return APIError(.serviceUnavailable, .draining, "drained by \(drain.by)", retryAfterSeconds: 5).response
        }
        if let failure = self.node.storageFailure {
            return APIError(.serviceUnavailable, .notReady, "the log stopped taking writes: \(failure)").response
        }
        let started = self.nowMilliseconds
        let supervisors = Orchestrator(routing: self.configuration.routing).healthProbe().map(\.rawValue)
        self.node.probeHealth(from: Self.httpClient)
        var reported: [String: JSON] = [:]
        let deadline = started + self.configuration.readyTimeoutMilliseconds
        while true {
            if case .array(let health)? = await self.node.describeState(of: .orchestrator)?["health"] {
                for entry in health {
                    guard case .string(let name)? = entry["supervisor"], case .int(let at)? = entry["at_ms"], at >= started,
                        case .string(let status)? = entry["status"]
                    else { continue }
                    reported[name] = .object([("status", .string(status)), ("at", .string(ISO8601Milliseconds.format(at)))])
                }
            }
            if supervisors.allSatisfy({ reported[$0] != nil }) || self.nowMilliseconds >= deadline { break }
            try? await Task.sleep(for: .milliseconds(2))
        }
        let missing = supervisors.filter { reported[$0] == nil }
        let body: JSON = .object([
            ("status", .string(missing.isEmpty ? "ready" : "not_ready")),
            ("log", .object([("writable", .bool(self.node.storageFailure == nil)), ("last_seq", .uint(self.log.lastSeq))])),
            ("supervisors", .object(supervisors.map { ($0, reported[$0] ?? .object([("status", .string("no_answer"))])) })),
        ])
        return Response.json(body, status: missing.isEmpty ? .ok : .serviceUnavailable)
    }
}
