// MARK: - JSON text, deterministic, without Foundation

/// A JSON value whose objects keep their key order, so that rendering is deterministic.
public indirect enum JSON: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    public static func == (lhs: JSON, rhs: JSON) -> Bool { lhs.rendered() == rhs.rendered() }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.rendered()) }

    /// Compact JSON on one line.
    public func rendered() -> String {
        var output = ""
        self.write(to: &output)
        return output
    }

    public func write(to output: inout String) {
        switch self {
        case .null: output += "null"
        case .bool(let value): output += value ? "true" : "false"
        case .int(let value): output += String(value)
        case .uint(let value): output += String(value)
        case .double(let value):
            if value.isFinite {
                // Integral doubles print without an exponent or a trailing ".0" ambiguity.
                if value == value.rounded(), abs(value) < 1e15 { output += String(Int64(value)) } else { output += String(value) }
            } else {
                output += "null"  // JSON has no NaN or infinity.
            }
        case .string(let value): Self.writeString(value, to: &output)
        case .array(let items):
            output += "["
            for (index, item) in items.enumerated() {
                if index > 0 { output += "," }
                item.write(to: &output)
            }
            output += "]"
        case .object(let members):
            output += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { output += "," }
                Self.writeString(member.0, to: &output)
                output += ":"
                member.1.write(to: &output)
            }
            output += "}"
        }
    }

    /// Escapes by UTF-8 bytes and copies the runs between escapes whole: every byte that needs
    /// an escape is ASCII, so a run always ends on a character boundary. (Appending scalar by
    /// scalar cost the HTTP API a tenth of its CPU in rendering answers.)
    static func writeString(_ value: String, to output: inout String) {
        output += "\""
        let utf8 = value.utf8
        var runStart = utf8.startIndex
        var index = runStart
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                utf8.formIndex(after: &index)
                continue
            }
            if runStart != index { output += value[runStart..<index] }
            switch byte {
            case UInt8(ascii: "\""): output += "\\\""
            case UInt8(ascii: "\\"): output += "\\\\"
            case UInt8(ascii: "\n"): output += "\\n"
            case UInt8(ascii: "\r"): output += "\\r"
            case UInt8(ascii: "\t"): output += "\\t"
            default: output += "\\u00" + Hex.encode([byte])
            }
            utf8.formIndex(after: &index)
            runStart = index
        }
        if runStart != utf8.endIndex { output += value[runStart..<utf8.endIndex] }
        output += "\""
    }
}

// MARK: - Envelopes as JSON (for `cartrita log dump` and the HTTP API)

extension Envelope {
    /// The envelope with the spec's field names; ids as canonical UUID text, the timestamp as
    /// ISO 8601 with milliseconds (and `timestamp_ms` beside it), binary data as hex.
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("id", .string(self.id.description)),
        ]
        if let parentID = self.parentID { members.append(("parent_id", .string(parentID.description))) }
        members += [
            ("correlation_id", .string(self.correlationID.description)),
            ("sender", .string(self.sender.rawValue)),
            ("recipient", .string(self.recipient.rawValue)),
            ("broadcast", .bool(self.broadcast)),
            ("timestamp", .string(ISO8601Milliseconds.format(self.timestampMilliseconds))),
            ("timestamp_ms", .int(self.timestampMilliseconds)),
            ("ttl_ms", .int(Int64(self.ttlMilliseconds))),
            ("priority", .string(self.priority.rawValue)),
            ("context", self.context.json),
            ("type", .string(self.type.rawValue)),
            ("payload", self.payload.json),
            ("delivery_mode", .string(self.deliveryMode.rawValue)),
            ("retry_count", .int(Int64(self.retryCount))),
            ("max_retries", .int(Int64(self.maxRetries))),
        ]
        return .object(members)
    }
}

extension MessageContext {
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("trace_id", .string(self.traceID.description)),
            ("span_id", .string(self.spanID.description)),
        ]
        if let userID { members.append(("user_id", .string(userID))) }
        if let conversationID { members.append(("conversation_id", .string(conversationID))) }
        if let sessionID { members.append(("session_id", .string(sessionID))) }
        if let workspaceID { members.append(("workspace_id", .string(workspaceID))) }
        if !self.customAttributes.isEmpty {
            members.append(("custom_attributes", .object(self.customAttributes.map { ($0.key, .string($0.value)) })))
        }
        return .object(members)
    }
}

extension MCPValue {
    /// Binary becomes `{"$binary": "hex"}` so nothing is lost; float32 widens for display only.
    public var json: JSON {
        switch self {
        case .null: .null
        case .bool(let value): .bool(value)
        case .int(let value): .int(value)
        case .uint(let value): .uint(value)
        case .float(let value): .double(Double(value))
        case .double(let value): .double(value)
        case .string(let value): .string(value)
        case .binary(let bytes): .object([("$binary", .string(Hex.encode(bytes)))])
        case .array(let items): .array(items.map(\.json))
        case .map(let entries): .object(entries.map { ($0.key, $0.value.json) })
        }
    }
}

extension Payload {
    public var json: JSON {
        switch self {
        case .ping(let ping): return .object([("nonce", .uint(ping.nonce))])
        case .pong(let pong): return .object([("nonce", .uint(pong.nonce))])
        case .heartbeat(let beat):
            return .object([
                ("status", .string(beat.status.rawValue)), ("queue_depth", .int(beat.queueDepth)),
                ("in_flight", .int(beat.inFlight)),
            ])
        case .shutdown(let shutdown):
            var members: [(String, JSON)] = [("reason", .string(shutdown.reason)), ("drain", .bool(shutdown.drain))]
            if let deadline = shutdown.deadlineMilliseconds { members.append(("deadline_ms", .int(deadline))) }
            return .object(members)
        case .override(let override):
            return .object([("action", .string(override.action.rawValue)), ("reason", .string(override.reason))])
        case .taskRequest(let request):
            var task: [(String, JSON)] = [
                ("type", .string(request.task.type)),
                ("parameters", MCPValue.map(request.task.parameters).json),
            ]
            if let constraints = request.task.constraints {
                var members: [(String, JSON)] = []
                if let value = constraints.maxExecutionTimeMilliseconds { members.append(("max_execution_time_ms", .int(value))) }
                if let value = constraints.maxMemoryMB { members.append(("max_memory_mb", .int(value))) }
                if let value = constraints.maxCostUSD { members.append(("max_cost_usd", .double(value))) }
                task.append(("constraints", .object(members)))
            }
            var input: [(String, JSON)] = []
            if let data = request.input.data { input.append(("data", data.json)) }
            input.append(("files", .array(request.input.files.map(\.json))))
            var members: [(String, JSON)] = [("task", .object(task)), ("input", .object(input))]
            if let preferences = request.preferences {
                members.append((
                    "preferences",
                    .object([
                        ("quality_level", .string(preferences.qualityLevel.rawValue)),
                        ("cost_optimization", .bool(preferences.costOptimization)),
                        ("streaming", .bool(preferences.streaming)),
                    ])
                ))
            }
            return .object(members)
        case .taskResponse(let response):
            var members: [(String, JSON)] = [("status", .string(response.status.rawValue))]
            if let result = response.result { members.append(("result", result.json)) }
            if let metrics = response.metrics { members.append(("metrics", metrics.json)) }
            if let message = response.errorMessage { members.append(("error_message", .string(message))) }
            return .object(members)
        case .taskError(let error):
            return .object([
                ("code", .string(error.code.rawValue)), ("message", .string(error.message)),
                ("retryable", .bool(error.retryable)),
            ])
        case .taskProgress(let progress):
            var members: [(String, JSON)] = []
            if let value = progress.fraction { members.append(("fraction", .double(value))) }
            if let value = progress.step { members.append(("step", .int(value))) }
            if let value = progress.totalSteps { members.append(("total_steps", .int(value))) }
            members.append(("message", .string(progress.message)))
            return .object(members)
        case .resourceRequest(let request):
            var members: [(String, JSON)] = [
                ("correlation_id", .string(request.forCorrelationID.description)), ("amounts", request.amounts.json),
            ]
            if let reason = request.reason { members.append(("reason", .string(reason))) }
            return .object(members)
        case .resourceGrant(let grant):
            var members: [(String, JSON)] = [
                ("correlation_id", .string(grant.forCorrelationID.description)), ("amounts", grant.amounts.json),
            ]
            if let lease = grant.leaseMilliseconds { members.append(("lease_ms", .int(lease))) }
            return .object(members)
        case .resourceDeny(let deny):
            return .object([
                ("correlation_id", .string(deny.forCorrelationID.description)), ("requested", deny.requested.json),
                ("code", .string(deny.code.rawValue)), ("reason", .string(deny.reason)),
            ])
        case .streamStart(let start):
            return .object([("stream_id", .string(start.streamID.description)), ("content_type", .string(start.contentType))])
        case .streamData(let data):
            return .object([
                ("stream_id", .string(data.streamID.description)), ("index", .int(data.index)),
                ("chunk", .string(Hex.encode(data.chunk))),
            ])
        case .streamEnd(let end):
            return .object([
                ("stream_id", .string(end.streamID.description)), ("count", .int(end.count)),
                ("digest", .string(Hex.encode(end.digest))),
            ])
        }
    }
}

extension TaskMetrics {
    public var json: JSON {
        var fields: [(String, JSON)] = []
        if let value = self.processingTimeMilliseconds { fields.append(("processing_time_ms", .int(value))) }
        if let value = self.memoryUsedMB { fields.append(("memory_used_mb", .double(value))) }
        if let value = self.costUSD { fields.append(("cost_usd", .double(value))) }
        if let value = self.tokensUsed { fields.append(("tokens_used", .int(value))) }
        if let value = self.qualityScore { fields.append(("quality_score", .double(value))) }
        return .object(fields)
    }
}

extension FileInput {
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("name", .string(self.name)), ("content_type", .string(self.contentType)), ("size_bytes", .int(self.sizeBytes)),
        ]
        switch self.source {
        case .url(let url): members.append(("url", .string(url)))
        case .inline(let bytes): members.append(("inline_data", .string(Hex.encode(bytes))))
        }
        return .object(members)
    }
}

extension ResourceAmounts {
    public var json: JSON {
        var members: [(String, JSON)] = []
        if let value = self.tokens { members.append(("tokens", .int(value))) }
        if let value = self.costUSD { members.append(("cost_usd", .double(value))) }
        if let value = self.concurrencySlots { members.append(("concurrency_slots", .int(value))) }
        if let value = self.memoryMB { members.append(("memory_mb", .int(value))) }
        return .object(members)
    }
}
