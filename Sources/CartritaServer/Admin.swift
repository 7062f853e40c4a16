import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Hummingbird

// MARK: - Emergency override (admin role)

extension FrontDoor {
    /// Most tasks one `POST /v3/admin/cancel` cancels; the answer says how many matched beyond.
    static let maxCancelsPerCall = 10_000

    static func requireAdmin(_ caller: Caller) throws(APIError) {
        guard caller.isAdmin else { throw APIError(.forbidden, .forbidden, "the emergency override needs the admin role") }
    }

    /// The optional `reason` of an override body (`{}` or no body at all is fine).
    func overrideReason(_ bytes: [UInt8], extraKeys: [String] = []) throws(APIError) -> (reason: String, json: JSON) {
        let json = bytes.isEmpty ? JSON.object([]) : try self.parseBody(bytes)
        guard case .object(let members) = json else { throw APIError.badField("$", "the body is a JSON object") }
        try TaskBody.onlyKeys(members, ["reason"] + extraKeys, path: "")
        let reason = try TaskBody.optionalString(json["reason"], "reason") ?? "emergency override"
        guard reason.utf8.count <= 1_024 else { throw APIError.badField("reason", "reason is at most 1024 bytes") }
        return (reason, json)
    }

    /// Logs an override as an MCP message from the HTTP client, carrying the admin's user id in
    /// its context: the log says who did what. at_least_once: a pause logged before a crash
    /// is delivered after it.
    func sendOverride(_ action: OverrideAction, to recipient: Address, reason: String, caller: Caller) -> MessageID {
        let id = self.node.newID()
        let context = MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1), userID: caller.userID)
        self.node.send(Envelope(
            id: id, parentID: nil, correlationID: id, sender: Self.httpClient, recipient: recipient, broadcast: false,
            timestampMilliseconds: self.nowMilliseconds, ttlMilliseconds: 60_000, priority: .critical, context: context,
            payload: .override(Override(action: action, reason: reason)), deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 0))
        self.logger.notice(
            "emergency override",
            metadata: [
                "action": "\(action.rawValue)", "target": "\(recipient)", "user_id": "\(caller.userID)", "message_id": "\(id)",
                "correlation_id": "\(id)", "trace_id": "\(context.traceID)",
            ])
        return id
    }

    // MARK: Pause and resume a supervisor

    /// The supervisor a route names: `intelligence` or its full address.
    func supervisor(named name: String) throws(APIError) -> Address {
        let supervisors = Hierarchy.standardSupervisors
        if let found = supervisors.first(where: { $0.rawValue == name || $0.rawValue.hasPrefix("supervisor.\(name)@") }) { return found }
        throw APIError(
            .notFound, .unknownSupervisor,
            "no supervisor \(name); this server runs \(supervisors.map(\.rawValue).joined(separator: ", "))", field: "name")
    }

    /// `POST /v3/admin/supervisors/{name}/pause` and `/resume`, body `{"reason": TEXT}` (optional).
    /// The override goes through the log to the supervisor, whose state holds the flag (so it
    /// survives restarts and replays); the answer comes once its state shows the change.
    func setPaused(_ paused: Bool, supervisor name: String, body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        try Self.requireAdmin(caller)
        let address = try self.supervisor(named: name)
        let reason = try self.overrideReason(bytes).reason
        let id = self.sendOverride(paused ? .pause : .resume, to: address, reason: reason, caller: caller)
        let deadline = self.nowMilliseconds + self.configuration.readyTimeoutMilliseconds
        var state = await self.node.describeState(of: address)
        while state?["paused"] != .bool(paused) && self.nowMilliseconds < deadline {
            try? await Task.sleep(for: .milliseconds(2))
            state = await self.node.describeState(of: address)
        }
        let applied = state?["paused"] == .bool(paused)
        var members: [(String, JSON)] = [
            ("supervisor", .string(address.rawValue)), ("paused", .bool(paused)), ("applied", .bool(applied)),
            ("message_id", .string(id.description)),
        ]
        if case .string(let by)? = state?["paused_by"] { members.append(("paused_by", .string(by))) }
        // Not applied in time (a long queue ahead of it): the override is logged and will apply.
        return Response.json(.object(members), status: applied ? .ok : .accepted)
    }

    // MARK: Drain

    /// `POST /v3/admin/drain`: new tasks are answered 503 `draining` (and `/ready` says 503, so a
    /// balancer takes the instance out); tasks in flight finish, status and streams are served.
    /// `GET` reports progress, `DELETE` ends the drain. A shutdown (SIGTERM) during a drain goes
    /// on as usual: it only adds the bounded wait for requests still waiting.
    func drain(body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        try Self.requireAdmin(caller)
        let reason = try self.overrideReason(bytes).reason
        let started = self.adminDrain.withLock { drain -> Bool in
            guard drain == nil else { return false }
            drain = AdminDrain(by: caller.userID, reason: reason, sinceMilliseconds: self.nowMilliseconds)
            return true
        }
        if started { _ = self.sendOverride(.drain, to: .orchestrator, reason: reason, caller: caller) }
        return await self.drainProgress(caller: caller)
    }

    func endDrain(caller: Caller) async throws(APIError) -> Response {
        try Self.requireAdmin(caller)
        let ended = self.adminDrain.withLock { drain -> Bool in
            defer { drain = nil }
            return drain != nil
        }
        if ended { _ = self.sendOverride(.endDrain, to: .orchestrator, reason: "drain ended", caller: caller) }
        return await self.drainProgress(caller: caller)
    }

    /// `{"draining", "by", "reason", "since", "tasks_in_flight", "waiting_requests", "drained"}`:
    /// drained once the orchestrator holds no task and no HTTP request waits.
    func drainProgress(caller: Caller) async -> Response {
        let drain = self.adminDrain.withLock { $0 }
        var inFlight = 0
        if case .array(let pending)? = await self.node.describeState(of: .orchestrator)?["pending"] { inFlight = pending.count }
        let waiting = self.tracker.waitingCount
        var members: [(String, JSON)] = [("draining", .bool(drain != nil))]
        if let drain {
            members += [
                ("by", .string(drain.by)), ("reason", .string(drain.reason)), ("since", .string(ISO8601Milliseconds.format(drain.sinceMilliseconds))),
            ]
        }
        members += [
            ("tasks_in_flight", .int(Int64(inFlight))), ("waiting_requests", .int(Int64(waiting))),
            ("drained", .bool(drain != nil && inFlight == 0 && waiting == 0)),
        ]
        return Response.json(.object(members))
    }

    // MARK: Cancel all tasks of a user or of a correlation

    /// `POST /v3/admin/cancel` with `{"user_id": USER, "reason": TEXT}` or
    /// `{"correlation_id": ID, "reason": TEXT}` (exactly one of the two): cancels every task of
    /// USER that the orchestrator holds in flight, or the task ID. Each cancel is an MCP message
    /// in the log (a `task_error` `cancelled` from the HTTP client to the orchestrator), carrying
    /// the admin's user id in its context and the reason in its message, so the log says who did
    /// what. A correlation that is not in flight is 409 `already_finished` when the log has it,
    /// else 404.
    func cancelAll(body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        try Self.requireAdmin(caller)
        let json = try self.parseBody(bytes)
        guard case .object(let members) = json else { throw APIError.badField("$", "the body is a JSON object") }
        try TaskBody.onlyKeys(members, ["user_id", "correlation_id", "reason"], path: "")
        var user: String?
        var correlation: MessageID?
        switch (json["user_id"], json["correlation_id"]) {
        case (.string(let text)?, nil) where !text.isEmpty:
            user = text
        case (nil, .string(let text)?):
            guard let id = MessageID(string: text) else { throw APIError.badField("correlation_id", "correlation_id is a task id (a UUID)") }
            correlation = id
        case (nil, nil):
            throw APIError(.badRequest, .missingField, "user_id or correlation_id is required", field: "user_id")
        case (_?, _?):
            throw APIError.badField("correlation_id", "give user_id or correlation_id, not both")
        default:
            throw APIError.badField(json["user_id"] == nil ? "correlation_id" : "user_id", "a non-empty string")
        }
        let reason = try TaskBody.optionalString(json["reason"], "reason") ?? "emergency override"
        guard reason.utf8.count <= 1_024 else { throw APIError.badField("reason", "reason is at most 1024 bytes") }

        // The orchestrator's pending table names the tasks in flight; their owners are in the
        // requests' contexts, read back from the log.
        var pending: [MessageID] = []
        if case .array(let entries)? = await self.node.describeState(of: .orchestrator)?["pending"] {
            for entry in entries {
                if case .string(let text)? = entry["request"]?["correlation_id"], let id = MessageID(string: text) { pending.append(id) }
            }
        }
        if let correlation { pending = pending.filter { $0 == correlation } }
        var cancelled: [MessageID] = []
        var beyond = 0
        for id in pending {
            let record: LogRecord?
            do {
                record = try self.log.seq(ofMessage: id).flatMap { (seq) throws(EventLogError) in try self.log.record(seq) }
            } catch {
                throw APIError(.internalServerError, .storageFailed, "reading task \(id): \(error)")
            }
            guard let request = record?.envelope else { continue }
            if let user, request.context.userID != user { continue }
            guard cancelled.count < Self.maxCancelsPerCall else {
                beyond += 1
                continue
            }
            var context = request.context
            context.userID = caller.userID
            let target = user.map { "all tasks of \($0)" } ?? "task \(id)"
            self.node.send(Envelope(
                id: self.node.newID(), parentID: id, correlationID: id, sender: Self.httpClient, recipient: .orchestrator, broadcast: false,
                timestampMilliseconds: self.nowMilliseconds, ttlMilliseconds: 60_000, priority: .critical, context: context,
                payload: .taskError(TaskError(
                    code: .cancelled, message: "emergency override by \(caller.userID): cancel \(target): \(reason)", retryable: false)),
                deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 0))
            cancelled.append(id)
        }
        if let correlation, cancelled.isEmpty {
            let known: Bool
            do {
                known = try self.log.seq(ofMessage: correlation) != nil
            } catch {
                throw APIError(.internalServerError, .storageFailed, "reading task \(correlation): \(error)")
            }
            if known { throw APIError(.conflict, .alreadyFinished, "task \(correlation) is not in flight", field: "correlation_id") }
            throw APIError(.notFound, .notFound, "no task \(correlation)", field: "correlation_id")
        }
        var answer: [(String, JSON)] = []
        if let user { answer.append(("user_id", .string(user))) }
        if let correlation { answer.append(("correlation_id", .string(correlation.description))) }
        answer += [
            ("cancelled", .array(cancelled.map { .string($0.description) })),
            ("count", .int(Int64(cancelled.count))), ("not_cancelled_over_limit", .int(Int64(beyond))),
        ]
        return Response.json(.object(answer))
    }
}

/// An admin's drain: who, why, since when (the node's clock).
struct AdminDrain: Sendable, Equatable {
    var by: String
    var reason: String
    var sinceMilliseconds: Int64
}
