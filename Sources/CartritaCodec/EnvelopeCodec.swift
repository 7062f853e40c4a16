import CartritaEnvelope

// MARK: - Field names (Schemas/envelope-msgpack.md is the byte-level description)

enum Fields {
    /// Envelope keys in the order the encoder writes them.
    static let envelope = FieldTable([
        "id", "parent_id", "correlation_id", "sender", "recipient", "broadcast", "timestamp", "ttl_ms",
        "priority", "context", "type", "payload", "delivery_mode", "retry_count", "max_retries",
    ])
    static let envelopeRequired = envelope.mask(
        "id", "correlation_id", "sender", "recipient", "timestamp", "ttl_ms", "priority", "context", "type",
        "payload", "delivery_mode")

    /// A record: the header keys, then the envelope keys, in one flat map.
    static let record = FieldTable(RecordHeader.fieldNames + envelope.names)
    static let recordHeaderCount = RecordHeader.fieldNames.count
    static let recordRequired = record.mask(
        "v", "seq", "prev_hash", "actor_prev_seq", "clock_ms", "entropy",
        "id", "correlation_id", "sender", "recipient", "timestamp", "ttl_ms", "priority", "context", "type",
        "payload", "delivery_mode")

    static let context = FieldTable([
        "trace_id", "span_id", "user_id", "conversation_id", "session_id", "workspace_id", "custom_attributes",
    ])
    static let contextRequired = context.mask("trace_id", "span_id")
}

// MARK: - Encoding

/// Encodes envelopes as standard msgpack maps keyed by the spec's field names.
///
/// Canonical output: keys in `Fields.envelope` order, absent optionals omitted, integers in
/// their smallest msgpack form, ids as 16-byte bin, enums as their spec strings. Equal
/// envelopes give equal bytes, which the hash chain and the determinism tests rely on.
///
/// Not thread-safe (it reuses one buffer): one encoder per thread or task.
public final class EnvelopeEncoder {
    public let writer: MsgPackWriter
    public let limits: CodecLimits
    /// Bytes of task results already written, reused when the same result is written again (see
    /// `ResultBytes`); nil unless asked for.
    let resultBytes: ResultBytes?

    /// `initialCapacityBytes`: the writer's first buffer (it grows as needed); a caller that
    /// gathers many envelopes in it (`append`) starts it at the size it flushes at.
    /// `reusesResultBytes`: for a caller that encodes the same answers again and again as they
    /// travel up the hierarchy (the simulator's trace digest); the bytes are the same either way.
    public init(limits: CodecLimits = .default, initialCapacityBytes: Int = 4096, reusesResultBytes: Bool = false) {
        self.writer = MsgPackWriter(initialCapacityBytes: initialCapacityBytes)
        self.limits = limits
        self.resultBytes = reusesResultBytes ? ResultBytes() : nil
    }

    /// The envelope as a standalone msgpack map.
    public func encode(_ envelope: Envelope) throws(CodecError) -> [UInt8] {
        self.writer.reset()
        self.writer.writeMapHeader(Self.fieldCount(envelope))
        self.writeFields(envelope)
        try self.checkSize()
        return self.writer.bytes
    }

    /// Hands the envelope's canonical bytes to `body` without copying them out (the simulator's
    /// trace digest hashes every delivery). No size check: nothing is stored.
    public func withEncoded<R>(_ envelope: Envelope, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        self.writer.reset()
        self.writer.writeMapHeader(Self.fieldCount(envelope))
        self.writeFields(envelope)
        return try self.writer.withBytes(body)
    }

    /// Appends the envelope's canonical bytes (what `encode` returns) after whatever the writer
    /// holds, without resetting it: the simulator's trace digest gathers many deliveries, with
    /// its own framing between them (`MsgPackWriter.writeRaw`), and hashes them in large chunks
    /// straight from this buffer instead of copying each envelope out. No size check: nothing
    /// is stored. The caller resets the writer.
    public func append(_ envelope: Envelope) {
        self.writer.writeMapHeader(Self.fieldCount(envelope))
        self.writeFields(envelope)
    }

    /// The envelope's pairs exactly as `encodeBody` writes them, and their count, handed to
    /// `body` without copying: recovery compares them with a stored record's (`RecordPeek`).
    /// No size check: nothing is stored.
    public func withEncodedBody<R>(_ envelope: Envelope, _ body: (UnsafeRawBufferPointer, Int) throws -> R) rethrows -> R {
        self.writer.reset()
        self.writeFields(envelope)
        return try self.writer.withBytes { try body($0, Self.fieldCount(envelope)) }
    }

    /// The envelope's key/value pairs without the map header, for the log, which puts its
    /// record header in the same map. The count tells the record writer how many pairs follow.
    public func encodeBody(_ envelope: Envelope) throws(CodecError) -> EncodedEnvelope {
        self.writer.reset()
        self.writeFields(envelope)
        // Judged as the standalone envelope (body plus its one-byte fixmap header), so an
        // envelope is accepted or refused the same way by both entry points.
        try self.checkSize(headerBytes: 1)
        return EncodedEnvelope(body: self.writer.bytes, fieldCount: Self.fieldCount(envelope))
    }

    func checkSize(headerBytes: Int = 0) throws(CodecError) {
        let size = self.writer.count + headerBytes
        guard size <= self.limits.maxEnvelopeBytes else {
            throw CodecError(
                .tooLarge, path: "$",
                "encoded envelope is \(size) bytes, over the limit of \(self.limits.maxEnvelopeBytes)")
        }
    }

    static func fieldCount(_ envelope: Envelope) -> Int { envelope.parentID == nil ? 14 : 15 }

    func writeFields(_ envelope: Envelope) {
        let w = self.writer
        // Read once: each read of `payload` (and `type`, which reads it) copies it out of the
        // envelope's box, retaining and releasing everything inside.
        let payload = envelope.payload
        w.writeKey("id")
        w.write(envelope.id)
        if let parentID = envelope.parentID {
            w.writeKey("parent_id")
            w.write(parentID)
        }
        w.writeKey("correlation_id")
        w.write(envelope.correlationID)
        w.writeKey("sender")
        w.write(envelope.sender.rawValue)
        w.writeKey("recipient")
        w.write(envelope.recipient.rawValue)
        w.writeKey("broadcast")
        w.write(envelope.broadcast)
        w.writeKey("timestamp")
        w.write(envelope.timestampMilliseconds)
        w.writeKey("ttl_ms")
        w.write(Int64(envelope.ttlMilliseconds))
        w.writeKey("priority")
        w.write(envelope.priority.rawValue)
        w.writeKey("context")
        self.writeContext(envelope.context)
        w.writeKey("type")
        w.write(payload.type.rawValue)
        w.writeKey("payload")
        self.writePayload(payload)
        w.writeKey("delivery_mode")
        w.write(envelope.deliveryMode.rawValue)
        w.writeKey("retry_count")
        w.write(Int64(envelope.retryCount))
        w.writeKey("max_retries")
        w.write(Int64(envelope.maxRetries))
    }

    func writeContext(_ context: MessageContext) {
        let w = self.writer
        var count = 2
        if context.userID != nil { count += 1 }
        if context.conversationID != nil { count += 1 }
        if context.sessionID != nil { count += 1 }
        if context.workspaceID != nil { count += 1 }
        if !context.customAttributes.isEmpty { count += 1 }
        w.writeMapHeader(count)
        w.writeKey("trace_id")
        w.write(MessageID(high: context.traceID.high, low: context.traceID.low))
        w.writeKey("span_id")
        var span = context.spanID.rawValue.bigEndian
        withUnsafeBytes(of: &span) { w.writeBinary($0) }
        self.optional("user_id", context.userID)
        self.optional("conversation_id", context.conversationID)
        self.optional("session_id", context.sessionID)
        self.optional("workspace_id", context.workspaceID)
        if !context.customAttributes.isEmpty {
            w.writeKey("custom_attributes")
            w.writeMapHeader(context.customAttributes.count)
            for attribute in context.customAttributes {
                w.write(attribute.key)
                w.write(attribute.value)
            }
        }
    }

    func optional(_ key: StaticString, _ value: String?) {
        guard let value else { return }
        self.writer.writeKey(key)
        self.writer.write(value)
    }

    func optional(_ key: StaticString, _ value: Int64?) {
        guard let value else { return }
        self.writer.writeKey(key)
        self.writer.write(value)
    }

    func optional(_ key: StaticString, _ value: Double?) {
        guard let value else { return }
        self.writer.writeKey(key)
        self.writer.write(value)
    }

    func writePayload(_ payload: Payload) {
        let w = self.writer
        switch payload {
        case .ping(let ping):
            w.writeMapHeader(1)
            w.writeKey("nonce")
            w.write(ping.nonce)
        case .pong(let pong):
            w.writeMapHeader(1)
            w.writeKey("nonce")
            w.write(pong.nonce)
        case .heartbeat(let beat):
            w.writeMapHeader(3)
            w.writeKey("status")
            w.write(beat.status.rawValue)
            w.writeKey("queue_depth")
            w.write(beat.queueDepth)
            w.writeKey("in_flight")
            w.write(beat.inFlight)
        case .shutdown(let shutdown):
            w.writeMapHeader(shutdown.deadlineMilliseconds == nil ? 2 : 3)
            w.writeKey("reason")
            w.write(shutdown.reason)
            w.writeKey("drain")
            w.write(shutdown.drain)
            self.optional("deadline_ms", shutdown.deadlineMilliseconds)
        case .override(let override):
            w.writeMapHeader(2)
            w.writeKey("action")
            w.write(override.action.rawValue)
            w.writeKey("reason")
            w.write(override.reason)
        case .taskRequest(let request):
            self.writeTaskRequest(request)
        case .taskResponse(let response):
            var count = 1
            if response.result != nil { count += 1 }
            if response.metrics != nil { count += 1 }
            if response.errorMessage != nil { count += 1 }
            w.writeMapHeader(count)
            w.writeKey("status")
            w.write(response.status.rawValue)
            if let result = response.result {
                w.writeKey("result")
                if let resultBytes = self.resultBytes { resultBytes.write(result, to: w) } else { w.write(result) }
            }
            if let metrics = response.metrics {
                w.writeKey("metrics")
                let fields: [Bool] = [
                    metrics.processingTimeMilliseconds != nil, metrics.memoryUsedMB != nil, metrics.costUSD != nil,
                    metrics.tokensUsed != nil, metrics.qualityScore != nil,
                ]
                w.writeMapHeader(fields.filter { $0 }.count)
                self.optional("processing_time_ms", metrics.processingTimeMilliseconds)
                self.optional("memory_used_mb", metrics.memoryUsedMB)
                self.optional("cost_usd", metrics.costUSD)
                self.optional("tokens_used", metrics.tokensUsed)
                self.optional("quality_score", metrics.qualityScore)
            }
            self.optional("error_message", response.errorMessage)
        case .taskError(let error):
            w.writeMapHeader(3)
            w.writeKey("code")
            w.write(error.code.rawValue)
            w.writeKey("message")
            w.write(error.message)
            w.writeKey("retryable")
            w.write(error.retryable)
        case .taskProgress(let progress):
            var count = 1
            if progress.fraction != nil { count += 1 }
            if progress.step != nil { count += 1 }
            if progress.totalSteps != nil { count += 1 }
            w.writeMapHeader(count)
            self.optional("fraction", progress.fraction)
            self.optional("step", progress.step)
            self.optional("total_steps", progress.totalSteps)
            w.writeKey("message")
            w.write(progress.message)
        case .resourceRequest(let request):
            w.writeMapHeader(request.reason == nil ? 2 : 3)
            w.writeKey("correlation_id")
            w.write(request.forCorrelationID)
            w.writeKey("amounts")
            self.writeAmounts(request.amounts)
            self.optional("reason", request.reason)
        case .resourceGrant(let grant):
            w.writeMapHeader(grant.leaseMilliseconds == nil ? 2 : 3)
            w.writeKey("correlation_id")
            w.write(grant.forCorrelationID)
            w.writeKey("amounts")
            self.writeAmounts(grant.amounts)
            self.optional("lease_ms", grant.leaseMilliseconds)
        case .resourceDeny(let deny):
            w.writeMapHeader(4)
            w.writeKey("correlation_id")
            w.write(deny.forCorrelationID)
            w.writeKey("requested")
            self.writeAmounts(deny.requested)
            w.writeKey("code")
            w.write(deny.code.rawValue)
            w.writeKey("reason")
            w.write(deny.reason)
        case .streamStart(let start):
            w.writeMapHeader(2)
            w.writeKey("stream_id")
            w.write(start.streamID)
            w.writeKey("content_type")
            w.write(start.contentType)
        case .streamData(let data):
            w.writeMapHeader(3)
            w.writeKey("stream_id")
            w.write(data.streamID)
            w.writeKey("index")
            w.write(data.index)
            w.writeKey("chunk")
            w.writeBinary(data.chunk)
        case .streamEnd(let end):
            w.writeMapHeader(3)
            w.writeKey("stream_id")
            w.write(end.streamID)
            w.writeKey("count")
            w.write(end.count)
            w.writeKey("digest")
            w.writeBinary(end.digest)
        }
    }

    func writeTaskRequest(_ request: TaskRequest) {
        let w = self.writer
        w.writeMapHeader(request.preferences == nil ? 2 : 3)
        w.writeKey("task")
        w.writeMapHeader(request.task.constraints == nil ? 2 : 3)
        w.writeKey("type")
        w.write(request.task.type)
        w.writeKey("parameters")
        w.write(MCPValue.map(request.task.parameters))
        if let constraints = request.task.constraints {
            w.writeKey("constraints")
            var count = 0
            if constraints.maxExecutionTimeMilliseconds != nil { count += 1 }
            if constraints.maxMemoryMB != nil { count += 1 }
            if constraints.maxCostUSD != nil { count += 1 }
            w.writeMapHeader(count)
            self.optional("max_execution_time_ms", constraints.maxExecutionTimeMilliseconds)
            self.optional("max_memory_mb", constraints.maxMemoryMB)
            self.optional("max_cost_usd", constraints.maxCostUSD)
        }
        w.writeKey("input")
        w.writeMapHeader(request.input.data == nil ? 1 : 2)
        if let data = request.input.data {
            w.writeKey("data")
            w.write(data)
        }
        w.writeKey("files")
        w.writeArrayHeader(request.input.files.count)
        for file in request.input.files {
            w.writeMapHeader(4)
            w.writeKey("name")
            w.write(file.name)
            w.writeKey("content_type")
            w.write(file.contentType)
            w.writeKey("size_bytes")
            w.write(file.sizeBytes)
            switch file.source {
            case .url(let url):
                w.writeKey("url")
                w.write(url)
            case .inline(let bytes):
                w.writeKey("inline_data")
                w.writeBinary(bytes)
            }
        }
        if let preferences = request.preferences {
            w.writeKey("preferences")
            w.writeMapHeader(3)
            w.writeKey("quality_level")
            w.write(preferences.qualityLevel.rawValue)
            w.writeKey("cost_optimization")
            w.write(preferences.costOptimization)
            w.writeKey("streaming")
            w.write(preferences.streaming)
        }
    }

    func writeAmounts(_ amounts: ResourceAmounts) {
        var count = 0
        if amounts.tokens != nil { count += 1 }
        if amounts.costUSD != nil { count += 1 }
        if amounts.concurrencySlots != nil { count += 1 }
        if amounts.memoryMB != nil { count += 1 }
        self.writer.writeMapHeader(count)
        self.optional("tokens", amounts.tokens)
        self.optional("cost_usd", amounts.costUSD)
        self.optional("concurrency_slots", amounts.concurrencySlots)
        self.optional("memory_mb", amounts.memoryMB)
    }
}

/// An envelope's msgpack key/value pairs without the map header (see `encodeBody`).
public struct EncodedEnvelope: Sendable {
    public var body: [UInt8]
    public var fieldCount: Int
}

// MARK: - Decoding

/// Decodes envelopes and log records, whatever arrives.
///
/// Order of checks: size limit, structural scan (`Preflight`: truncation, lying lengths,
/// nesting, trailing bytes), parse into a reused list of values (`MsgPackTape`), typed
/// conversion with the field path (wrong types, unknown/duplicate/missing keys, bad enum
/// values, invalid UTF-8), then the envelope rules of MCP-SPEC (`Envelope.validate`). The first
/// failure is thrown as a `CodecError`; nothing is ever repaired or dropped silently.
///
/// Not thread-safe (it reuses one tape): one decoder per thread or task.
public final class EnvelopeDecoder {
    public let limits: CodecLimits
    /// False only for records the log itself wrote, read back for replay: they were validated
    /// when appended and the hash chain shows they are unchanged, and replay must read an old
    /// record even if a later build tightened a rule. The structure is still checked in full.
    public let validatesEnvelopes: Bool
    let tape = MsgPackTape()
    let interner = StringInterner()

    public init(limits: CodecLimits = .default, validatesEnvelopes: Bool = true) {
        self.limits = limits
        self.validatesEnvelopes = validatesEnvelopes
    }

    public func decode(_ bytes: [UInt8]) throws(CodecError) -> Envelope {
        try withBytes(bytes) { (raw) throws(CodecError) in try self.decode(raw) }
    }

    public func decode(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Envelope {
        let root = try self.parse(bytes, maxBytes: self.limits.maxEnvelopeBytes)
        var builder = EnvelopeBuilder(interner: self.interner)
        let seen = try ObjectReader.fields(root, Fields.envelope, "$") { (index, value) throws(CodecError) in
            try builder.set(index, value)
        }
        try ObjectReader.require(seen, Fields.envelopeRequired, Fields.envelope, "$")
        return try builder.finish(limits: self.limits, validate: self.validatesEnvelopes)
    }

    public func decodeRecord(_ bytes: [UInt8]) throws(CodecError) -> LogRecord {
        try withBytes(bytes) { (raw) throws(CodecError) in try self.decodeRecord(raw) }
    }

    /// A record inside a larger buffer (replay's readers gather a batch's records in one).
    public func decodeRecord(_ bytes: ArraySlice<UInt8>) throws(CodecError) -> LogRecord {
        let result: Result<LogRecord, CodecError> = bytes.withUnsafeBytes { raw in
            do throws(CodecError) { return .success(try self.decodeRecord(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// A log record: the header keys and the envelope keys of one flat map.
    public func decodeRecord(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> LogRecord {
        let root = try self.parse(bytes, maxBytes: self.limits.maxRecordBytes)
        var header = RecordHeader(seq: 0, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 0, entropy: 0)
        var version: UInt64 = 0
        var builder = EnvelopeBuilder(interner: self.interner)
        let headerCount = Fields.recordHeaderCount
        // The version decides how everything else is read, so it is judged first, wherever it
        // sits in the map: a newer record is `unsupported_version`, never an `unknown_key` of a
        // field this build does not know yet. The writer puts it first, so this finds it at once.
        guard let versionPair = root.pairs.first(where: { Self.isVersionKey($0.key) }) else {
            throw CodecError(.missingKey, path: "v", "record format version is missing")
        }
        version = try ObjectReader.uint64(versionPair.val, "v")
        guard version == UInt64(RecordHeader.formatVersion) else {
            throw CodecError(
                .unsupportedVersion, path: "v",
                "record format \(version); this build reads format \(RecordHeader.formatVersion)")
        }
        let seen = try ObjectReader.fields(root, Fields.record, "$") { (index, value) throws(CodecError) in
            switch index {
            case 0:
                break  // judged above
            case 1: header.seq = try ObjectReader.uint64(value, "seq")
            case 2: header.prevHash = Digest32(bytes: try ObjectReader.fixedBinary(value, count: 32, "prev_hash"))
            case 3: header.actorPrevSeq = try ObjectReader.uint64(value, "actor_prev_seq")
            case 4: header.clockMilliseconds = try ObjectReader.int64(value, "clock_ms")
            case 5: header.entropy = try ObjectReader.uint64(value, "entropy")
            default: try builder.set(index - headerCount, value)
            }
        }
        try ObjectReader.require(seen, Fields.recordRequired, Fields.record, "$")
        return LogRecord(header: header, envelope: try builder.finish(limits: self.limits, validate: self.validatesEnvelopes))
    }

    @inline(__always)
    static func isVersionKey(_ key: MsgPackObject) -> Bool {
        guard key.kind == .string else { return false }
        let bytes = key.bytes
        return bytes.count == 1 && bytes[0] == UInt8(ascii: "v")
    }

    /// Size limit, structural scan, then the parse into `tape`. The result is valid until the
    /// next parse, and while `bytes` live.
    func parse(_ bytes: UnsafeRawBufferPointer, maxBytes: Int) throws(CodecError) -> MsgPackObject {
        try Preflight.check(bytes, limits: self.limits, maxBytes: maxBytes)
        let root = try self.tape.parse(bytes)
        guard root.kind == .map else { throw ObjectReader.wrongType(root, expected: "map", "$") }
        return root
    }
}

/// Collects envelope fields in any key order; the payload is decoded last, once the type is known.
struct EnvelopeBuilder {
    let interner: StringInterner
    var id: MessageID?
    var parentID: MessageID?
    var correlationID: MessageID?
    var sender: Address?
    var recipient: Address?
    var broadcast = false
    var timestamp: Int64 = 0
    var ttl: Int32 = 0
    var priority: Priority = .normal
    var context: MessageContext?
    var type: MessageType = .ping
    var payload: MsgPackObject?
    var deliveryMode: DeliveryMode = .atMostOnce
    var retryCount: Int32 = 0
    var maxRetries: Int32 = 0

    /// `index` is into `Fields.envelope`.
    mutating func set(_ index: Int, _ value: MsgPackObject) throws(CodecError) {
        // Optional fields (parent_id, broadcast, retry_count, max_retries) may be explicit nil,
        // which means absent, as in context and payloads.
        if ObjectReader.isNil(value) && Fields.envelopeRequired & (1 << UInt64(index)) == 0 { return }
        switch index {
        case 0: self.id = try ObjectReader.messageID(value, "id")
        case 1: self.parentID = try ObjectReader.messageID(value, "parent_id")
        case 2: self.correlationID = try ObjectReader.messageID(value, "correlation_id")
        case 3: self.sender = Address(unchecked: try self.interner.string(value, "sender"))
        case 4: self.recipient = Address(unchecked: try self.interner.string(value, "recipient"))
        case 5: self.broadcast = try ObjectReader.bool(value, "broadcast")
        case 6: self.timestamp = try ObjectReader.int64(value, "timestamp")
        case 7: self.ttl = try ObjectReader.int32(value, "ttl_ms")
        case 8: self.priority = try ObjectReader.enumeration(value, Priority.self, "priority")
        case 9: self.context = try Self.context(value)
        case 10: self.type = try ObjectReader.enumeration(value, MessageType.self, "type")
        case 11: self.payload = value
        case 12: self.deliveryMode = try ObjectReader.enumeration(value, DeliveryMode.self, "delivery_mode")
        case 13: self.retryCount = try ObjectReader.int32(value, "retry_count")
        case 14: self.maxRetries = try ObjectReader.int32(value, "max_retries")
        default: preconditionFailure("field index \(index) out of range")
        }
    }

    func finish(limits: CodecLimits, validate: Bool = true) throws(CodecError) -> Envelope {
        // `require` has run, so every required field is set.
        let payload = try PayloadDecoder.decode(self.type, self.payload!)
        let envelope = Envelope(
            id: self.id!, parentID: self.parentID, correlationID: self.correlationID!,
            sender: self.sender!, recipient: self.recipient!, broadcast: self.broadcast,
            timestampMilliseconds: self.timestamp, ttlMilliseconds: self.ttl, priority: self.priority,
            context: self.context!, payload: payload, deliveryMode: self.deliveryMode,
            retryCount: self.retryCount, maxRetries: self.maxRetries)
        guard validate else { return envelope }
        do {
            try envelope.validate(limits: limits.envelope)
        } catch {
            throw CodecError(invalid: error)
        }
        return envelope
    }

    static func context(_ object: MsgPackObject) throws(CodecError) -> MessageContext {
        var context = MessageContext(traceID: TraceID(high: 0, low: 0), spanID: SpanID(0))
        let seen = try ObjectReader.fields(object, Fields.context, "context") { (index, value) throws(CodecError) in
            if ObjectReader.isNil(value) && index >= 2 { return }  // optional fields may be nil
            switch index {
            case 0:
                let id = try ObjectReader.fixedBinary(value, count: 16, "context.trace_id")
                context.traceID = TraceID(bytes: id)!
            case 1:
                let span = try ObjectReader.fixedBinary(value, count: 8, "context.span_id")
                context.spanID = SpanID(bytes: span)!
            case 2: context.userID = try ObjectReader.string(value, "context.user_id")
            case 3: context.conversationID = try ObjectReader.string(value, "context.conversation_id")
            case 4: context.sessionID = try ObjectReader.string(value, "context.session_id")
            case 5: context.workspaceID = try ObjectReader.string(value, "context.workspace_id")
            case 6:
                let entries = try ObjectReader.entries(value, "context.custom_attributes")
                var pairs: [StringPair] = []
                pairs.reserveCapacity(entries.count)
                for entry in entries {
                    guard case .string(let text) = entry.value else {
                        throw CodecError(.wrongType, path: "context.custom_attributes.\(entry.key)", "attribute values must be strings")
                    }
                    pairs.append(StringPair(entry.key, text))
                }
                context.customAttributes = pairs
            default: preconditionFailure("context field \(index)")
            }
        }
        try ObjectReader.require(seen, Fields.contextRequired, Fields.context, "context")
        return context
    }
}

/// `Array.withUnsafeBytes` is `rethrows`, which widens a typed error to `any Error`.
@inline(__always)
func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(CodecError) -> T) throws(CodecError) -> T {
    let result: Result<T, CodecError> = bytes.withUnsafeBytes { raw in
        do throws(CodecError) { return .success(try body(raw)) } catch { return .failure(error) }
    }
    return try result.get()
}
