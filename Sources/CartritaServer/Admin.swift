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

    /// `POST /v3/admin/cancel` with `{"user_id": USER, "reason": TEXT}`: cancels every task of
    /// USER that the orchestrator holds in flight. Each cancel is an MCP message in the log
    /// (a `task_error` `cancelled` from the HTTP client to the orchestrator), carrying the admin's
    /// user id in its context and the reason in its message, so the log says who did what.
    func cancelAll(body bytes: [UInt8], caller: Caller) async throws(APIError) -> Response {
        guard caller.isAdmin else { throw APIError(.forbidden, .forbidden, "the emergency override needs the admin role") }
        let json = try self.parseBody(bytes)
        guard case .object(let members) = json else { throw APIError.badField("$", "the body is a JSON object") }
        try TaskBody.onlyKeys(members, ["user_id", "reason"], path: "")
        guard case .string(let user)? = json["user_id"], !user.isEmpty else {
            throw APIError(.badRequest, .missingField, "user_id is required", field: "user_id")
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
        var cancelled: [MessageID] = []
        var beyond = 0
        for id in pending {
            let record: LogRecord?
            do {
                record = try self.log.seq(ofMessage: id).flatMap { (seq) throws(EventLogError) in try self.log.record(seq) }
            } catch {
                throw APIError(.internalServerError, .storageFailed, "reading task \(id): \(error)")
            }
            guard let request = record?.envelope, request.context.userID == user else { continue }
            guard cancelled.count < Self.maxCancelsPerCall else {
                beyond += 1
                continue
            }
            var context = request.context
            context.userID = caller.userID
            self.node.send(Envelope(
                id: self.node.newID(), parentID: id, correlationID: id, sender: Self.httpClient, recipient: .orchestrator, broadcast: false,
                timestampMilliseconds: self.nowMilliseconds, ttlMilliseconds: 60_000, priority: .critical, context: context,
                payload: .taskError(TaskError(
                    code: .cancelled, message: "emergency override by \(caller.userID): cancel all tasks of \(user): \(reason)", retryable: false)),
                deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 0))
            cancelled.append(id)
        }
        return Response.json(.object([
            ("user_id", .string(user)), ("cancelled", .array(cancelled.map { .string($0.description) })),
            ("count", .int(Int64(cancelled.count))), ("not_cancelled_over_limit", .int(Int64(beyond))),
        ]))
    }
}
