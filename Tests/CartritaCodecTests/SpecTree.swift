// The msgpack layout of MCP-SPEC §1 and §3 written out independently of the encoder: what a
// reader in any language should find. Used both to check the encoder's output and to hand-make
// inputs for the decoder.
import CartritaCodec
import CartritaEnvelope

struct SpecStyle {
    /// Reverse the key order of every schema map (free-form maps keep their order: it is data).
    var reverseKeys = false
    /// Write absent optional fields as explicit nil.
    var explicitNils = false
}

enum SpecTree {
    static func value(_ value: MCPValue) -> MP {
        switch value {
        case .null: .null
        case .bool(let flag): .bool(flag)
        case .int(let number): .i(number)
        case .uint(let number): .uint(number)
        case .float(let number): .f32(number.bitPattern)
        case .double(let number): .f64(number.bitPattern)
        case .string(let text): .s(text)
        case .binary(let bytes): .bin(bytes)
        case .array(let items): .array(items.map(Self.value))
        case .map(let entries): .map(entries.map { MP.Pair(.s($0.key), Self.value($0.value)) })
        }
    }

    /// Free-form fields: msgpack nil there is the value null, so absence is never written as nil.
    static let nilIsValue: Set<String> = ["data", "result"]

    /// A schema map: `nil` values are absent optionals.
    static func object(_ pairs: [(String, MP?)], _ style: SpecStyle) -> MP {
        var kept: [(String, MP)] = []
        for (key, value) in pairs {
            if let value {
                kept.append((key, value))
            } else if style.explicitNils && !Self.nilIsValue.contains(key) {
                kept.append((key, .null))
            }
        }
        if style.reverseKeys { kept.reverse() }
        return .object(kept)
    }

    static func envelope(_ e: Envelope, _ style: SpecStyle = SpecStyle()) -> MP {
        Self.object(
            [
                ("id", .id(e.id)),
                ("parent_id", e.parentID.map(MP.id)),
                ("correlation_id", .id(e.correlationID)),
                ("sender", .s(e.sender.rawValue)),
                ("recipient", .s(e.recipient.rawValue)),
                ("broadcast", .bool(e.broadcast)),
                ("timestamp", .i(e.timestampMilliseconds)),
                ("ttl_ms", .i(Int64(e.ttlMilliseconds))),
                ("priority", .s(e.priority.rawValue)),
                ("context", Self.context(e.context, style)),
                ("type", .s(e.type.rawValue)),
                ("payload", Self.payload(e.payload, style)),
                ("delivery_mode", .s(e.deliveryMode.rawValue)),
                ("retry_count", .i(Int64(e.retryCount))),
                ("max_retries", .i(Int64(e.maxRetries))),
            ], style)
    }

    static func context(_ c: MessageContext, _ style: SpecStyle) -> MP {
        Self.object(
            [
                ("trace_id", .bin(c.traceID.bytes)),
                ("span_id", .bin(c.spanID.bytes)),
                ("user_id", c.userID.map(MP.s)),
                ("conversation_id", c.conversationID.map(MP.s)),
                ("session_id", c.sessionID.map(MP.s)),
                ("workspace_id", c.workspaceID.map(MP.s)),
                ("custom_attributes", c.customAttributes.isEmpty ? nil : .object(c.customAttributes.map { ($0.key, .s($0.value)) })),
            ], style)
    }

    static func amounts(_ a: ResourceAmounts, _ style: SpecStyle) -> MP {
        Self.object(
            [
                ("tokens", a.tokens.map(MP.i)), ("cost_usd", a.costUSD.map(MP.double)),
                ("concurrency_slots", a.concurrencySlots.map(MP.i)), ("memory_mb", a.memoryMB.map(MP.i)),
            ], style)
    }

    static func payload(_ payload: Payload, _ style: SpecStyle) -> MP {
        switch payload {
        case .ping(let ping): return Self.object([("nonce", .uint(ping.nonce))], style)
        case .pong(let pong): return Self.object([("nonce", .uint(pong.nonce))], style)
        case .heartbeat(let beat):
            return Self.object([("status", .s(beat.status.rawValue)), ("queue_depth", .i(beat.queueDepth)), ("in_flight", .i(beat.inFlight))], style)
        case .shutdown(let shutdown):
            return Self.object(
                [("reason", .s(shutdown.reason)), ("drain", .bool(shutdown.drain)), ("deadline_ms", shutdown.deadlineMilliseconds.map(MP.i))], style)
        case .override(let override):
            return Self.object([("action", .s(override.action.rawValue)), ("reason", .s(override.reason))], style)
        case .taskRequest(let request):
            let constraints = request.task.constraints.map { c in
                Self.object(
                    [
                        ("max_execution_time_ms", c.maxExecutionTimeMilliseconds.map(MP.i)), ("max_memory_mb", c.maxMemoryMB.map(MP.i)),
                        ("max_cost_usd", c.maxCostUSD.map(MP.double)),
                    ], style)
            }
            let files: [MP] = request.input.files.map { file in
                var pairs: [(String, MP?)] = [("name", .s(file.name)), ("content_type", .s(file.contentType)), ("size_bytes", .i(file.sizeBytes))]
                switch file.source {
                case .url(let url): pairs += [("url", .s(url)), ("inline_data", nil)]
                case .inline(let bytes): pairs += [("url", nil), ("inline_data", .bin(bytes))]
                }
                return Self.object(pairs, style)
            }
            let preferences = request.preferences.map { p in
                Self.object(
                    [("quality_level", .s(p.qualityLevel.rawValue)), ("cost_optimization", .bool(p.costOptimization)), ("streaming", .bool(p.streaming))],
                    style)
            }
            return Self.object(
                [
                    (
                        "task",
                        Self.object(
                            [("type", .s(request.task.type)), ("parameters", Self.value(.map(request.task.parameters))), ("constraints", constraints)],
                            style)
                    ),
                    ("input", Self.object([("data", request.input.data.map(Self.value)), ("files", .array(files))], style)),
                    ("preferences", preferences),
                ], style)
        case .taskResponse(let response):
            let metrics = response.metrics.map { m in
                Self.object(
                    [
                        ("processing_time_ms", m.processingTimeMilliseconds.map(MP.i)), ("memory_used_mb", m.memoryUsedMB.map(MP.double)),
                        ("cost_usd", m.costUSD.map(MP.double)), ("tokens_used", m.tokensUsed.map(MP.i)),
                        ("quality_score", m.qualityScore.map(MP.double)),
                    ], style)
            }
            return Self.object(
                [
                    ("status", .s(response.status.rawValue)), ("result", response.result.map(Self.value)), ("metrics", metrics),
                    ("error_message", response.errorMessage.map(MP.s)),
                ], style)
        case .taskError(let error):
            return Self.object([("code", .s(error.code.rawValue)), ("message", .s(error.message)), ("retryable", .bool(error.retryable))], style)
        case .taskProgress(let progress):
            return Self.object(
                [
                    ("fraction", progress.fraction.map(MP.double)), ("step", progress.step.map(MP.i)),
                    ("total_steps", progress.totalSteps.map(MP.i)), ("message", .s(progress.message)),
                ], style)
        case .resourceRequest(let request):
            return Self.object(
                [("correlation_id", .id(request.forCorrelationID)), ("amounts", Self.amounts(request.amounts, style)), ("reason", request.reason.map(MP.s))],
                style)
        case .resourceGrant(let grant):
            return Self.object(
                [
                    ("correlation_id", .id(grant.forCorrelationID)), ("amounts", Self.amounts(grant.amounts, style)),
                    ("lease_ms", grant.leaseMilliseconds.map(MP.i)),
                ], style)
        case .resourceDeny(let deny):
            return Self.object(
                [
                    ("correlation_id", .id(deny.forCorrelationID)), ("requested", Self.amounts(deny.requested, style)),
                    ("code", .s(deny.code.rawValue)), ("reason", .s(deny.reason)),
                ], style)
        case .streamStart(let start):
            return Self.object([("stream_id", .id(start.streamID)), ("content_type", .s(start.contentType))], style)
        case .streamData(let data):
            return Self.object([("stream_id", .id(data.streamID)), ("index", .i(data.index)), ("chunk", .bin(data.chunk))], style)
        case .streamEnd(let end):
            return Self.object([("stream_id", .id(end.streamID)), ("count", .i(end.count)), ("digest", .bin(end.digest))], style)
        }
    }

    /// A record: header pairs first, then the envelope's pairs, in one map.
    static func record(_ header: RecordHeader, _ e: Envelope, version: UInt64 = 1) -> MP {
        guard case .map(let pairs) = Self.envelope(e) else { preconditionFailure() }
        let head: [(String, MP)] = [
            ("v", .uint(version)), ("seq", .uint(header.seq)), ("prev_hash", .bin(header.prevHash.bytes)),
            ("actor_prev_seq", .uint(header.actorPrevSeq)), ("clock_ms", .i(header.clockMilliseconds)), ("entropy", .uint(header.entropy)),
        ]
        return .map(head.map { MP.Pair(.s($0.0), $0.1) } + pairs)
    }
}
