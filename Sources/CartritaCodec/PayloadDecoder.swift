import CartritaEnvelope

/// Decodes each payload of MCP-SPEC §3 from its msgpack map. Same rules as the envelope:
/// unknown keys are refused, duplicates are refused, required keys must be there; an optional
/// key may be absent or nil.
enum PayloadDecoder {
    typealias Object = MsgPackObject
    typealias R = ObjectReader

    static let nonce = FieldTable(["nonce"])
    static let heartbeat = FieldTable(["status", "queue_depth", "in_flight"])
    static let shutdown = FieldTable(["reason", "drain", "deadline_ms"])
    static let override = FieldTable(["action", "reason"])
    static let taskRequest = FieldTable(["task", "input", "preferences"])
    static let task = FieldTable(["type", "parameters", "constraints"])
    static let constraints = FieldTable(["max_execution_time_ms", "max_memory_mb", "max_cost_usd"])
    static let input = FieldTable(["data", "files"])
    static let file = FieldTable(["name", "content_type", "size_bytes", "url", "inline_data"])
    static let preferences = FieldTable(["quality_level", "cost_optimization", "streaming"])
    static let taskResponse = FieldTable(["status", "result", "metrics", "error_message"])
    static let metrics = FieldTable(["processing_time_ms", "memory_used_mb", "cost_usd", "tokens_used", "quality_score"])
    static let taskError = FieldTable(["code", "message", "retryable"])
    static let progress = FieldTable(["fraction", "step", "total_steps", "message"])
    static let resourceRequest = FieldTable(["correlation_id", "amounts", "reason"])
    static let resourceGrant = FieldTable(["correlation_id", "amounts", "lease_ms"])
    static let resourceDeny = FieldTable(["correlation_id", "requested", "code", "reason"])
    static let amounts = FieldTable(["tokens", "cost_usd", "concurrency_slots", "memory_mb"])
    static let streamStart = FieldTable(["stream_id", "content_type"])
    static let streamData = FieldTable(["stream_id", "index", "chunk"])
    static let streamEnd = FieldTable(["stream_id", "count", "digest"])

    /// Payloads always sit at `payload`, so the nested maps below pass literal paths: building
    /// `payload.task.constraints` by concatenation on every decode cost an allocation per map.
    ///
    /// Walks `object` with `table`, skipping nil values of optional fields, then checks that
    /// every field in `required` was present. Fields in `nilIsValue` are free-form values
    /// (`input.data`, `result`) for which nil is a value (`MCPValue.null`), not absence: absent
    /// decodes to Swift nil, msgpack nil to `.null`, so both round-trip.
    static func walk(
        _ object: Object, _ table: FieldTable, _ path: FieldPath, required: UInt64, nilIsValue: UInt64 = 0,
        _ body: (Int, Object, FieldPath) throws(CodecError) -> Void
    ) throws(CodecError) {
        var present: UInt64 = 0
        let parent = path.description  // once per map, not once per field
        _ = try R.fields(object, table, path) { (index, value) throws(CodecError) in
            let bit: UInt64 = 1 << UInt64(index)
            if R.isNil(value) && (required | nilIsValue) & bit == 0 { return }
            present |= bit
            try body(index, value, FieldPath(parent: parent, name: table.names[index]))
        }
        try R.require(present, required, table, path)
    }

    static func decode(_ type: MessageType, _ object: Object) throws(CodecError) -> Payload {
        let p: FieldPath = "payload"
        switch type {
        case .ping, .pong:
            var nonce: UInt64 = 0
            try Self.walk(object, Self.nonce, p, required: 1) { (_, value, path) throws(CodecError) in
                nonce = try R.uint64(value, path)
            }
            return type == .ping ? .ping(Ping(nonce: nonce)) : .pong(Pong(nonce: nonce))
        case .heartbeat:
            var beat = Heartbeat(status: .ok)
            try Self.walk(object, Self.heartbeat, p, required: 0b111) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: beat.status = try R.enumeration(value, HealthStatus.self, path)
                case 1: beat.queueDepth = try R.int64(value, path)
                default: beat.inFlight = try R.int64(value, path)
                }
            }
            return .heartbeat(beat)
        case .shutdown:
            var shutdown = Shutdown(reason: "")
            try Self.walk(object, Self.shutdown, p, required: 0b011) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: shutdown.reason = try R.string(value, path)
                case 1: shutdown.drain = try R.bool(value, path)
                default: shutdown.deadlineMilliseconds = try R.int64(value, path)
                }
            }
            return .shutdown(shutdown)
        case .override:
            var override = Override(action: .pause)
            try Self.walk(object, Self.override, p, required: 0b11) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: override.action = try R.enumeration(value, OverrideAction.self, path)
                default: override.reason = try R.string(value, path)
                }
            }
            return .override(override)
        case .taskRequest:
            return .taskRequest(try Self.taskRequest(object, p))
        case .taskResponse:
            var response = TaskResponse(status: .pending)
            try Self.walk(object, Self.taskResponse, p, required: 0b0001, nilIsValue: 0b0010) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: response.status = try R.enumeration(value, TaskStatus.self, path)
                case 1: response.result = try R.value(value, path)
                case 2: response.metrics = try Self.metrics(value, "payload.metrics")
                default: response.errorMessage = try R.string(value, path)
                }
            }
            return .taskResponse(response)
        case .taskError:
            var error = TaskError(code: .timeout, message: "", retryable: false)
            try Self.walk(object, Self.taskError, p, required: 0b111) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: error.code = TaskErrorCode(rawValue: try R.string(value, path))
                case 1: error.message = try R.string(value, path)
                default: error.retryable = try R.bool(value, path)
                }
            }
            return .taskError(error)
        case .taskProgress:
            var progress = TaskProgress(message: "")
            try Self.walk(object, Self.progress, p, required: 0b1000) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: progress.fraction = try R.double(value, path)
                case 1: progress.step = try R.int64(value, path)
                case 2: progress.totalSteps = try R.int64(value, path)
                default: progress.message = try R.string(value, path)
                }
            }
            return .taskProgress(progress)
        case .resourceRequest:
            var correlation = MessageID(high: 0, low: 0)
            var amounts = ResourceAmounts()
            var reason: String?
            try Self.walk(object, Self.resourceRequest, p, required: 0b011) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: correlation = try R.messageID(value, path)
                case 1: amounts = try Self.amounts(value, "payload.amounts")
                default: reason = try R.string(value, path)
                }
            }
            return .resourceRequest(ResourceRequest(forCorrelationID: correlation, amounts: amounts, reason: reason))
        case .resourceGrant:
            var correlation = MessageID(high: 0, low: 0)
            var amounts = ResourceAmounts()
            var lease: Int64?
            try Self.walk(object, Self.resourceGrant, p, required: 0b011) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: correlation = try R.messageID(value, path)
                case 1: amounts = try Self.amounts(value, "payload.amounts")
                default: lease = try R.int64(value, path)
                }
            }
            return .resourceGrant(ResourceGrant(forCorrelationID: correlation, amounts: amounts, leaseMilliseconds: lease))
        case .resourceDeny:
            var deny = ResourceDeny(forCorrelationID: MessageID(high: 0, low: 0), requested: ResourceAmounts(), code: .budgetExceeded, reason: "")
            try Self.walk(object, Self.resourceDeny, p, required: 0b1111) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: deny.forCorrelationID = try R.messageID(value, path)
                case 1: deny.requested = try Self.amounts(value, "payload.requested")
                case 2: deny.code = TaskErrorCode(rawValue: try R.string(value, path))
                default: deny.reason = try R.string(value, path)
                }
            }
            return .resourceDeny(deny)
        case .streamStart:
            var start = StreamStart(streamID: MessageID(high: 0, low: 0), contentType: "")
            try Self.walk(object, Self.streamStart, p, required: 0b11) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: start.streamID = try R.messageID(value, path)
                default: start.contentType = try R.string(value, path)
                }
            }
            return .streamStart(start)
        case .streamData:
            var data = StreamData(streamID: MessageID(high: 0, low: 0), index: 0, chunk: [])
            try Self.walk(object, Self.streamData, p, required: 0b111) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: data.streamID = try R.messageID(value, path)
                case 1: data.index = try R.int64(value, path)
                default: data.chunk = try R.binary(value, path)
                }
            }
            return .streamData(data)
        case .streamEnd:
            var end = StreamEnd(streamID: MessageID(high: 0, low: 0), count: 0, digest: [])
            try Self.walk(object, Self.streamEnd, p, required: 0b111) { (index, value, path) throws(CodecError) in
                switch index {
                case 0: end.streamID = try R.messageID(value, path)
                case 1: end.count = try R.int64(value, path)
                default: end.digest = try R.binary(value, path)
                }
            }
            return .streamEnd(end)
        }
    }

    static func taskRequest(_ object: Object, _ p: FieldPath) throws(CodecError) -> TaskRequest {
        var request = TaskRequest(task: TaskSpec(type: ""))
        try Self.walk(object, Self.taskRequest, p, required: 0b011) { (index, value, path) throws(CodecError) in
            switch index {
            case 0:
                try Self.walk(value, Self.task, "payload.task", required: 0b011) { (index, value, path) throws(CodecError) in
                    switch index {
                    case 0: request.task.type = try R.string(value, path)
                    case 1: request.task.parameters = try R.entries(value, "payload.task.parameters")
                    default:
                        var constraints = TaskConstraints()
                        try Self.walk(value, Self.constraints, "payload.task.constraints", required: 0) { (index, value, path) throws(CodecError) in
                            switch index {
                            case 0: constraints.maxExecutionTimeMilliseconds = try R.int64(value, path)
                            case 1: constraints.maxMemoryMB = try R.int64(value, path)
                            default: constraints.maxCostUSD = try R.double(value, path)
                            }
                        }
                        request.task.constraints = constraints
                    }
                }
            case 1:
                try Self.walk(value, Self.input, "payload.input", required: 0b10, nilIsValue: 0b01) { (index, value, path) throws(CodecError) in
                    switch index {
                    case 0: request.input.data = try R.value(value, path)
                    default:
                        let items = try R.array(value, "payload.input.files")
                        request.input.files = []
                        request.input.files.reserveCapacity(items.remaining)
                        let base = "payload.input.files"
                        for (position, item) in items.enumerated() {
                            request.input.files.append(try Self.file(item, FieldPath(parent: base, index: position)))
                        }
                    }
                }
            default:
                var preferences = TaskPreferences()
                try Self.walk(value, Self.preferences, "payload.preferences", required: 0b111) { (index, value, path) throws(CodecError) in
                    switch index {
                    case 0: preferences.qualityLevel = try R.enumeration(value, QualityLevel.self, path)
                    case 1: preferences.costOptimization = try R.bool(value, path)
                    default: preferences.streaming = try R.bool(value, path)
                    }
                }
                request.preferences = preferences
            }
        }
        return request
    }

    static func file(_ object: Object, _ p: FieldPath) throws(CodecError) -> FileInput {
        var name = ""
        var contentType = ""
        var size: Int64 = 0
        var url: String?
        var inline: [UInt8]?
        try Self.walk(object, Self.file, p, required: 0b00111) { (index, value, path) throws(CodecError) in
            switch index {
            case 0: name = try R.string(value, path)
            case 1: contentType = try R.string(value, path)
            case 2: size = try R.int64(value, path)
            case 3: url = try R.string(value, path)
            default: inline = try R.binary(value, path)
            }
        }
        switch (url, inline) {
        case (let url?, nil): return FileInput(name: name, contentType: contentType, sizeBytes: size, source: .url(url))
        case (nil, let bytes?): return FileInput(name: name, contentType: contentType, sizeBytes: size, source: .inline(bytes))
        case (nil, nil): throw CodecError(.missingKey, path: R.join(p, "url").description, "a file needs url or inline_data")
        default: throw CodecError(.duplicateKey, path: R.join(p, "inline_data").description, "a file has url or inline_data, not both")
        }
    }

    static func metrics(_ object: Object, _ p: FieldPath) throws(CodecError) -> TaskMetrics {
        var metrics = TaskMetrics()
        try Self.walk(object, Self.metrics, p, required: 0) { (index, value, path) throws(CodecError) in
            switch index {
            case 0: metrics.processingTimeMilliseconds = try R.int64(value, path)
            case 1: metrics.memoryUsedMB = try R.double(value, path)
            case 2: metrics.costUSD = try R.double(value, path)
            case 3: metrics.tokensUsed = try R.int64(value, path)
            default: metrics.qualityScore = try R.double(value, path)
            }
        }
        return metrics
    }

    static func amounts(_ object: Object, _ p: FieldPath) throws(CodecError) -> ResourceAmounts {
        var amounts = ResourceAmounts()
        try Self.walk(object, Self.amounts, p, required: 0) { (index, value, path) throws(CodecError) in
            switch index {
            case 0: amounts.tokens = try R.int64(value, path)
            case 1: amounts.costUSD = try R.double(value, path)
            case 2: amounts.concurrencySlots = try R.int64(value, path)
            default: amounts.memoryMB = try R.int64(value, path)
            }
        }
        return amounts
    }
}
