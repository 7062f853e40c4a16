import CartritaEnvelope
import XCTest

/// Every rule of Validation.swift, each broken once, with its code and field path.
final class ValidationTests: XCTestCase {
    let notV7 = MessageID(string: "f47ac10b-58cc-4372-a567-0e02b2c3d479")!
    let small = EnvelopeLimits(maxTextBytes: 8, maxEntries: 2, maxValueDepth: 3, maxTaskTypeBytes: 128)

    /// `levels` arrays around a scalar: `nested(2)` is `[[1]]`.
    func nested(_ levels: Int) -> MCPValue {
        var value: MCPValue = 1
        for _ in 0..<levels { value = .array([value]) }
        return value
    }

    func amountsPayload(_ amounts: ResourceAmounts) -> Payload {
        .resourceRequest(ResourceRequest(forCorrelationID: Fixture.id(), amounts: amounts))
    }

    // MARK: Valid

    func testEveryPayloadTypeHasAValidExample() throws {
        let id = Fixture.id()
        let payloads: [Payload] = [
            .ping(Ping(nonce: 1)), .pong(Pong(nonce: .max)),
            .heartbeat(Heartbeat(status: .degraded, queueDepth: 3, inFlight: 1)),
            .shutdown(Shutdown(reason: "", drain: false, deadlineMilliseconds: 0)),
            .override(Override(action: .pause, reason: "")),
            .taskRequest(TaskRequest(task: TaskSpec(type: "llm.chat"))),
            .taskResponse(
                TaskResponse(
                    status: .completed, result: .map(["text": "hi"]),
                    metrics: TaskMetrics(processingTimeMilliseconds: 0, memoryUsedMB: 0, costUSD: 0, tokensUsed: 0, qualityScore: 1))),
            .taskError(TaskError(code: .ttlExpired, message: "", retryable: false)),
            .taskProgress(TaskProgress(fraction: 0, message: "")),
            .taskProgress(TaskProgress(step: 3, totalSteps: 3, message: "done")),
            .resourceRequest(ResourceRequest(forCorrelationID: id, amounts: ResourceAmounts(tokens: 0))),
            .resourceGrant(ResourceGrant(forCorrelationID: id, amounts: ResourceAmounts(costUSD: 0.5), leaseMilliseconds: 1)),
            .resourceDeny(
                ResourceDeny(forCorrelationID: id, requested: ResourceAmounts(memoryMB: 1), code: .budgetExceeded, reason: "over")),
            .streamStart(StreamStart(streamID: id, contentType: "text/plain")),
            .streamData(StreamData(streamID: id, index: 0, chunk: [])),
            .streamEnd(StreamEnd(streamID: id, count: 0, digest: [UInt8](repeating: 0xAB, count: 32))),
        ]
        XCTAssertEqual(Set(payloads.map(\.type)), Set(MessageType.allCases))
        for payload in payloads {
            let envelope = Fixture.envelope(payload)
            XCTAssertEqual(envelope.type, payload.type)
            XCTAssertNoThrow(try envelope.validate(), "\(payload.type)")
        }
        XCTAssertNoThrow(try Fixture.taskRequest().validate())
        // Float NaN inside free-form values is carried faithfully, not refused.
        XCTAssertNoThrow(try Fixture.taskRequest { $0.input.data = .array([.double(.nan), .float(.infinity)]) }.validate())
        var broadcast = Fixture.envelope()
        broadcast.broadcast = true
        XCTAssertNoThrow(try broadcast.validate())
    }

    // MARK: Envelope

    func testIdentifiersMustBeUUIDv7() {
        var envelope = Fixture.envelope()
        envelope.id = self.notV7
        assertInvalid(envelope, .notUUIDv7, at: "id")
        envelope = Fixture.envelope()
        envelope.parentID = self.notV7
        assertInvalid(envelope, .notUUIDv7, at: "parent_id")
        envelope = Fixture.envelope()
        envelope.correlationID = MessageID(high: 0x0123_4567_89AB_7000, low: 0)  // version 7, wrong variant
        assertInvalid(envelope, .notUUIDv7, at: "correlation_id")
    }

    func testBroadcastOnlyToASupervisor() {
        var envelope = Fixture.envelope()
        envelope.recipient = Address("agent.visionmaster@v1.3")
        envelope.broadcast = true
        assertInvalid(envelope, .broadcastToNonSupervisor, at: "broadcast")
        envelope.recipient = .orchestrator
        assertInvalid(envelope, .broadcastToNonSupervisor, at: "broadcast")
    }

    func testTimestampRange() {
        var envelope = Fixture.envelope()
        envelope.timestampMilliseconds = -1
        assertInvalid(envelope, .invalidTimestamp, at: "timestamp")
        envelope.timestampMilliseconds = 1 << 48
        assertInvalid(envelope, .invalidTimestamp, at: "timestamp")
        envelope.timestampMilliseconds = (1 << 48) - 1
        XCTAssertNoThrow(try envelope.validate())
    }

    func testTTLMustBePositive() {
        var envelope = Fixture.envelope()
        envelope.ttlMilliseconds = 0
        assertInvalid(envelope, .invalidTTL, at: "ttl_ms")
        envelope.ttlMilliseconds = -5
        assertInvalid(envelope, .invalidTTL, at: "ttl_ms")
        envelope.ttlMilliseconds = .max
        XCTAssertNoThrow(try envelope.validate())
        XCTAssertEqual(envelope.expiresAtMilliseconds, 1_764_000_000_000 + Int64(Int32.max))
    }

    func testRetryCounts() {
        var envelope = Fixture.envelope()
        envelope.retryCount = -1
        assertInvalid(envelope, .invalidRetryCount, at: "retry_count")
        envelope = Fixture.envelope()
        envelope.maxRetries = -1
        assertInvalid(envelope, .invalidRetryCount, at: "max_retries")
        envelope = Fixture.envelope()
        envelope.maxRetries = 3
        envelope.retryCount = 4
        assertInvalid(envelope, .retryCountExceedsMax, at: "retry_count")
        envelope.retryCount = 3
        XCTAssertNoThrow(try envelope.validate())
    }

    // MARK: Context

    func testTraceAndSpanMustNotBeZero() {
        var envelope = Fixture.envelope()
        envelope.context.traceID = TraceID(high: 0, low: 0)
        assertInvalid(envelope, .invalidTraceID, at: "context.trace_id")
        envelope = Fixture.envelope()
        envelope.context.spanID = SpanID(0)
        assertInvalid(envelope, .invalidSpanID, at: "context.span_id")
    }

    func testContextTexts() {
        let fields: [(WritableKeyPath<MessageContext, String?>, String)] = [
            (\.userID, "context.user_id"), (\.conversationID, "context.conversation_id"),
            (\.sessionID, "context.session_id"), (\.workspaceID, "context.workspace_id"),
        ]
        for (keyPath, path) in fields {
            var envelope = Fixture.envelope()
            envelope.context[keyPath: keyPath] = ""
            assertInvalid(envelope, .emptyField, at: path)
            envelope.context[keyPath: keyPath] = "123456789"
            assertInvalid(envelope, .stringTooLong, at: path, limits: self.small)
            envelope.context[keyPath: keyPath] = "12345678"
            XCTAssertNoThrow(try envelope.validate(limits: self.small))
        }
    }

    func testCustomAttributes() {
        var envelope = Fixture.envelope()
        envelope.context.customAttributes = [StringPair("tenant", "a"), StringPair("region", "eu"), StringPair("tenant", "b")]
        assertInvalid(envelope, .duplicateKey, at: "context.custom_attributes.tenant")
        envelope.context.customAttributes = [StringPair("a", "1"), StringPair("b", "2"), StringPair("c", "3")]
        assertInvalid(envelope, .tooManyEntries, at: "context.custom_attributes", limits: self.small)
        envelope.context.customAttributes = [StringPair("", "1")]
        assertInvalid(envelope, .emptyField, at: "context.custom_attributes.")
        envelope.context.customAttributes = [StringPair("k", "123456789")]
        assertInvalid(envelope, .stringTooLong, at: "context.custom_attributes.k", limits: self.small)
        envelope.context.customAttributes = [StringPair("k", "")]
        XCTAssertNoThrow(try envelope.validate(), "an empty attribute value is allowed")
    }

    // MARK: Control payloads

    func testHeartbeatAndShutdown() {
        assertInvalid(Fixture.envelope(.heartbeat(Heartbeat(status: .ok, queueDepth: -1))), .invalidMetric, at: "payload.queue_depth")
        assertInvalid(Fixture.envelope(.heartbeat(Heartbeat(status: .ok, inFlight: -1))), .invalidMetric, at: "payload.in_flight")
        assertInvalid(
            Fixture.envelope(.shutdown(Shutdown(reason: "x", deadlineMilliseconds: -1))), .invalidConstraint, at: "payload.deadline_ms")
        assertInvalid(
            Fixture.envelope(.shutdown(Shutdown(reason: "123456789"))), .stringTooLong, at: "payload.reason", limits: self.small)
    }

    // MARK: Task request

    func testTaskTypes() {
        let bad = [
            "", "llm", "llm.", ".chat", "llm..chat", "LLM.chat", "llm.Chat", "llm.-chat", "llm._chat", "llm.chat!",
            "llm chat.x", "llm.chät", String(repeating: "a", count: 125) + ".abc",
        ]
        for type in bad {
            assertInvalid(Fixture.taskRequest { $0.task.type = type }, .invalidTaskType, at: "payload.task.type")
        }
        for type in ["llm.chat", "huggingface.image-classification", "fine-tuning.run_1", "a.b.c", "1.2", "x.y-", "x.y_"] {
            XCTAssertNoThrow(try Fixture.taskRequest { $0.task.type = type }.validate(), type)
        }
        XCTAssertNoThrow(try Fixture.taskRequest { $0.task.type = String(repeating: "a", count: 124) + ".abc" }.validate())
    }

    func testParameters() {
        // Duplicate key.
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [MCPValue.MapEntry("k", 1), MCPValue.MapEntry("j", 2), MCPValue.MapEntry("k", 3)] },
            .duplicateKey, at: "payload.task.parameters.k")
        // Duplicate key in a nested map.
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [MCPValue.MapEntry("outer", .array([.map([.init("x", 1), .init("x", 2)])]))] },
            .duplicateKey, at: "payload.task.parameters.outer[0].x")
        // Nesting: the parameters map is level 1, so 23 more arrays are fine and 24 are too deep.
        XCTAssertNoThrow(try Fixture.taskRequest { $0.task.parameters = [MCPValue.MapEntry("a", self.nested(23))] }.validate())
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [MCPValue.MapEntry("a", self.nested(24))] },
            .nestingTooDeep, at: "payload.task.parameters.a" + String(repeating: "[0]", count: 23))
        // Too many entries, in the map itself and in a nested array.
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [.init("a", 1), .init("b", 2), .init("c", 3)] },
            .tooManyEntries, at: "payload.task.parameters", limits: self.small)
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [.init("a", [1, 2, 3])] },
            .tooManyEntries, at: "payload.task.parameters.a", limits: self.small)
        assertInvalid(
            Fixture.taskRequest { $0.task.parameters = [.init("a", .map([.init("x", 1), .init("y", 2), .init("z", 3)]))] },
            .tooManyEntries, at: "payload.task.parameters.a", limits: self.small)
    }

    func testConstraints() {
        assertInvalid(
            Fixture.taskRequest { $0.task.constraints?.maxExecutionTimeMilliseconds = 0 }, .invalidConstraint,
            at: "payload.task.constraints.max_execution_time_ms")
        assertInvalid(
            Fixture.taskRequest { $0.task.constraints?.maxMemoryMB = -1 }, .invalidConstraint, at: "payload.task.constraints.max_memory_mb")
        assertInvalid(
            Fixture.taskRequest { $0.task.constraints?.maxCostUSD = -0.01 }, .invalidConstraint, at: "payload.task.constraints.max_cost_usd")
        assertInvalid(
            Fixture.taskRequest { $0.task.constraints?.maxCostUSD = .infinity }, .notFinite, at: "payload.task.constraints.max_cost_usd")
        assertInvalid(
            Fixture.taskRequest { $0.task.constraints?.maxCostUSD = .nan }, .notFinite, at: "payload.task.constraints.max_cost_usd")
        XCTAssertNoThrow(try Fixture.taskRequest { $0.task.constraints = TaskConstraints() }.validate())
    }

    func testInputData() {
        assertInvalid(
            Fixture.taskRequest { $0.input.data = .map([.init("x", self.nested(24))]) }, .nestingTooDeep,
            at: "payload.input.data.x" + String(repeating: "[0]", count: 23))
        XCTAssertNoThrow(try Fixture.taskRequest { $0.input.data = self.nested(24) }.validate())
        assertInvalid(Fixture.taskRequest { $0.input.data = self.nested(25) }, .nestingTooDeep, at: "payload.input.data" + String(repeating: "[0]", count: 24))
    }

    func testFiles() {
        func file(_ edit: (inout FileInput) -> Void) -> Envelope {
            Fixture.taskRequest { request in edit(&request.input.files[0]) }
        }
        assertInvalid(file { $0.source = .inline([1, 2]) }, .invalidFile, at: "payload.input.files[0].inline_data")
        assertInvalid(file { $0.sizeBytes = 4 }, .invalidFile, at: "payload.input.files[0].inline_data")
        assertInvalid(file { $0.sizeBytes = -1 }, .invalidFile, at: "payload.input.files[0].size_bytes")
        assertInvalid(file { $0.name = "" }, .emptyField, at: "payload.input.files[0].name")
        assertInvalid(file { $0.contentType = "" }, .emptyField, at: "payload.input.files[0].content_type")
        assertInvalid(file { $0.source = .url("") }, .emptyField, at: "payload.input.files[0].url")
        XCTAssertNoThrow(try file { $0.source = .url("https://example.com/cat.png"); $0.sizeBytes = 99 }.validate())
        let three = Fixture.taskRequest { $0.input.files = Array(repeating: $0.input.files[0], count: 3) }
        assertInvalid(three, .tooManyEntries, at: "payload.input.files", limits: self.small)
        var second = Fixture.taskRequest()
        if case .taskRequest(var request) = second.payload {
            request.input.files.append(FileInput(name: "b", contentType: "c", sizeBytes: 1, source: .inline([])))
            second.payload = .taskRequest(request)
        }
        assertInvalid(second, .invalidFile, at: "payload.input.files[1].inline_data")
    }

    // MARK: Task response, error, progress

    func testTaskResponse() {
        func response(_ metrics: TaskMetrics, result: MCPValue? = nil, message: String? = nil) -> Envelope {
            Fixture.envelope(.taskResponse(TaskResponse(status: .failed, result: result, metrics: metrics, errorMessage: message)))
        }
        assertInvalid(response(TaskMetrics(processingTimeMilliseconds: -1)), .invalidMetric, at: "payload.metrics.processing_time_ms")
        assertInvalid(response(TaskMetrics(tokensUsed: -1)), .invalidMetric, at: "payload.metrics.tokens_used")
        assertInvalid(response(TaskMetrics(memoryUsedMB: -1)), .invalidMetric, at: "payload.metrics.memory_used_mb")
        assertInvalid(response(TaskMetrics(memoryUsedMB: .nan)), .notFinite, at: "payload.metrics.memory_used_mb")
        assertInvalid(response(TaskMetrics(costUSD: -.infinity)), .notFinite, at: "payload.metrics.cost_usd")
        assertInvalid(response(TaskMetrics(costUSD: -0.5)), .invalidMetric, at: "payload.metrics.cost_usd")
        assertInvalid(response(TaskMetrics(qualityScore: 1.5)), .invalidMetric, at: "payload.metrics.quality_score")
        assertInvalid(response(TaskMetrics(qualityScore: -0.1)), .invalidMetric, at: "payload.metrics.quality_score")
        assertInvalid(response(TaskMetrics(qualityScore: .nan)), .notFinite, at: "payload.metrics.quality_score")
        assertInvalid(response(TaskMetrics(), message: ""), .emptyField, at: "payload.error_message")
        assertInvalid(response(TaskMetrics(), result: self.nested(25)), .nestingTooDeep, at: "payload.result" + String(repeating: "[0]", count: 24))
        XCTAssertNoThrow(try response(TaskMetrics(), result: .null, message: "x").validate())
    }

    func testTaskErrorCodes() {
        for code in ["", "Timeout", "1abc", "_x", "ttl-expired", "a b", "é", String(repeating: "a", count: 65)] {
            assertInvalid(
                Fixture.envelope(.taskError(TaskError(code: TaskErrorCode(rawValue: code), message: "m", retryable: true))),
                .invalidErrorCode, at: "payload.code")
        }
        for code in ["a", "ttl_expired", "x1_2", String(repeating: "a", count: 64)] {
            XCTAssertNoThrow(
                try Fixture.envelope(.taskError(TaskError(code: TaskErrorCode(rawValue: code), message: "", retryable: true))).validate())
        }
        assertInvalid(
            Fixture.envelope(.taskError(TaskError(code: .timeout, message: "123456789", retryable: true))), .stringTooLong,
            at: "payload.message", limits: self.small)
    }

    func testTaskProgress() {
        func progress(_ value: TaskProgress) -> Envelope { Fixture.envelope(.taskProgress(value)) }
        assertInvalid(progress(TaskProgress(message: "x")), .invalidProgress, at: "payload")
        assertInvalid(progress(TaskProgress(fraction: 1.5, message: "")), .invalidProgress, at: "payload.fraction")
        assertInvalid(progress(TaskProgress(fraction: -0.25, message: "")), .invalidProgress, at: "payload.fraction")
        assertInvalid(progress(TaskProgress(fraction: .nan, message: "")), .notFinite, at: "payload.fraction")
        assertInvalid(progress(TaskProgress(step: -1, message: "")), .invalidProgress, at: "payload.step")
        assertInvalid(progress(TaskProgress(step: 1, totalSteps: 0, message: "")), .invalidProgress, at: "payload.total_steps")
        assertInvalid(progress(TaskProgress(step: 4, totalSteps: 3, message: "")), .invalidProgress, at: "payload.step")
        assertInvalid(
            progress(TaskProgress(fraction: 0.5, message: "123456789")), .stringTooLong, at: "payload.message", limits: self.small)
        XCTAssertNoThrow(try progress(TaskProgress(fraction: 1, step: 0, totalSteps: 1, message: "")).validate())
    }

    // MARK: Coordination

    func testResourceAmounts() {
        assertInvalid(Fixture.envelope(self.amountsPayload(ResourceAmounts())), .invalidResourceAmounts, at: "payload.amounts")
        assertInvalid(Fixture.envelope(self.amountsPayload(ResourceAmounts(tokens: -1))), .invalidResourceAmounts, at: "payload.amounts.tokens")
        assertInvalid(
            Fixture.envelope(self.amountsPayload(ResourceAmounts(concurrencySlots: -1))), .invalidResourceAmounts,
            at: "payload.amounts.concurrency_slots")
        assertInvalid(
            Fixture.envelope(self.amountsPayload(ResourceAmounts(memoryMB: -1))), .invalidResourceAmounts, at: "payload.amounts.memory_mb")
        assertInvalid(
            Fixture.envelope(self.amountsPayload(ResourceAmounts(costUSD: -1))), .invalidResourceAmounts, at: "payload.amounts.cost_usd")
        assertInvalid(Fixture.envelope(self.amountsPayload(ResourceAmounts(costUSD: .nan))), .notFinite, at: "payload.amounts.cost_usd")
    }

    func testResourceMessages() {
        let id = Fixture.id()
        let amounts = ResourceAmounts(tokens: 10)
        assertInvalid(
            Fixture.envelope(.resourceRequest(ResourceRequest(forCorrelationID: self.notV7, amounts: amounts))), .notUUIDv7,
            at: "payload.correlation_id")
        assertInvalid(
            Fixture.envelope(.resourceRequest(ResourceRequest(forCorrelationID: id, amounts: amounts, reason: ""))), .emptyField,
            at: "payload.reason")
        assertInvalid(
            Fixture.envelope(.resourceGrant(ResourceGrant(forCorrelationID: self.notV7, amounts: amounts))), .notUUIDv7,
            at: "payload.correlation_id")
        assertInvalid(
            Fixture.envelope(.resourceGrant(ResourceGrant(forCorrelationID: id, amounts: ResourceAmounts()))), .invalidResourceAmounts,
            at: "payload.amounts")
        assertInvalid(
            Fixture.envelope(.resourceGrant(ResourceGrant(forCorrelationID: id, amounts: amounts, leaseMilliseconds: 0))),
            .invalidResourceAmounts, at: "payload.lease_ms")
        func deny(_ edit: (inout ResourceDeny) -> Void) -> Envelope {
            var deny = ResourceDeny(forCorrelationID: id, requested: amounts, code: .budgetExceeded, reason: "over budget")
            edit(&deny)
            return Fixture.envelope(.resourceDeny(deny))
        }
        XCTAssertNoThrow(try deny { _ in }.validate())
        assertInvalid(deny { $0.forCorrelationID = self.notV7 }, .notUUIDv7, at: "payload.correlation_id")
        assertInvalid(deny { $0.requested = ResourceAmounts() }, .invalidResourceAmounts, at: "payload.requested")
        assertInvalid(deny { $0.requested = ResourceAmounts(tokens: -2) }, .invalidResourceAmounts, at: "payload.requested.tokens")
        assertInvalid(deny { $0.code = TaskErrorCode(rawValue: "Concurrency") }, .invalidErrorCode, at: "payload.code")
        assertInvalid(deny { $0.reason = "" }, .emptyField, at: "payload.reason")
    }

    // MARK: Streams

    func testStreams() {
        let id = Fixture.id()
        assertInvalid(Fixture.envelope(.streamStart(StreamStart(streamID: self.notV7, contentType: "a/b"))), .notUUIDv7, at: "payload.stream_id")
        assertInvalid(Fixture.envelope(.streamStart(StreamStart(streamID: id, contentType: ""))), .emptyField, at: "payload.content_type")
        assertInvalid(
            Fixture.envelope(.streamData(StreamData(streamID: self.notV7, index: 0, chunk: [1]))), .notUUIDv7, at: "payload.stream_id")
        assertInvalid(Fixture.envelope(.streamData(StreamData(streamID: id, index: -1, chunk: [1]))), .invalidStream, at: "payload.index")
        let digest = [UInt8](repeating: 1, count: 32)
        assertInvalid(
            Fixture.envelope(.streamEnd(StreamEnd(streamID: self.notV7, count: 1, digest: digest))), .notUUIDv7, at: "payload.stream_id")
        assertInvalid(Fixture.envelope(.streamEnd(StreamEnd(streamID: id, count: -1, digest: digest))), .invalidStream, at: "payload.count")
        assertInvalid(
            Fixture.envelope(.streamEnd(StreamEnd(streamID: id, count: 1, digest: Array(digest.prefix(31))))), .invalidStream,
            at: "payload.digest")
        assertInvalid(
            Fixture.envelope(.streamEnd(StreamEnd(streamID: id, count: 1, digest: digest + [0]))), .invalidStream, at: "payload.digest")
    }

    /// The first broken rule wins, in field order: the id is judged before the ttl.
    func testFirstBrokenRuleWins() {
        var envelope = Fixture.envelope()
        envelope.ttlMilliseconds = 0
        envelope.id = self.notV7
        assertInvalid(envelope, .notUUIDv7, at: "id")
    }

    func testErrorDescription() {
        let error = EnvelopeError(.invalidTTL, path: "ttl_ms", "must be > 0")
        XCTAssertEqual(error.description, "invalid_ttl at ttl_ms: must be > 0")
        XCTAssertEqual(EnvelopeError.Code.broadcastToNonSupervisor.rawValue, "broadcast_to_non_supervisor")
    }
}

final class KeyIdentityTests: XCTestCase {
    /// "é" (U+00E9) and "e" + U+0301 are equal Swift strings but different msgpack keys: both
    /// must be accepted as distinct, in small and large maps and in custom attributes.
    func testCanonicallyEquivalentKeysAreDistinct() {
        let composed = "\u{e9}"
        let decomposed = "e\u{301}"
        XCTAssertEqual(composed, decomposed, "Swift treats them as equal; the wire does not")
        XCTAssertNil(MCPValue.firstDuplicateKey([.init(composed, 1), .init(decomposed, 2)]))
        let large = (0..<40).map { MCPValue.MapEntry("k\($0)", .int(Int64($0))) } + [.init(composed, 1), .init(decomposed, 2)]
        XCTAssertNil(MCPValue.firstDuplicateKey(large))
        XCTAssertEqual(MCPValue.firstDuplicateKey(large + [.init("k3", 0)]), "k3")
        XCTAssertEqual(MCPValue.firstDuplicateKey([.init("a", 1), .init("b", 1), .init("a", 2)]), "a")
    }
}

/// Validation walks a free-form value twice only when it is invalid: a fast pass without paths,
/// then a pass that says where. Both must agree with the rules on every tree, small maps
/// (pairwise key compare) and large ones (hash table) alike.
final class ValueRulesAgreementTests: XCTestCase {
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            self.state = self.state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((self.state >> 33) % UInt64(bound))
        }
    }

    let limits = EnvelopeLimits(maxTextBytes: 64, maxEntries: 24, maxValueDepth: 4, maxTaskTypeBytes: 128)

    func tree(_ generator: inout Generator, depth: Int) -> MCPValue {
        switch generator.next(depth + 2) {
        case 0:
            // Now and then more items than the limit allows.
            let count = generator.next(12) == 0 ? 20 + generator.next(8) : generator.next(4)
            return .array((0..<count).map { _ in self.tree(&generator, depth: depth + 1) })
        case 1:
            // Sizes on both sides of 16 (pairwise compare below, hash table above), unique keys
            // except now and then one repeated, possibly far apart.
            let count = generator.next(5) == 0 ? 14 + generator.next(14) : generator.next(5)
            var entries = (0..<count).map { MCPValue.MapEntry("k\($0)", self.tree(&generator, depth: depth + 1)) }
            if count > 1, generator.next(6) == 0 {
                let later = 1 + generator.next(count - 1)
                entries[later].key = entries[generator.next(later)].key
            }
            return .map(entries)
        default:
            return .int(Int64(generator.next(100)))
        }
    }

    /// The rules, written plainly: nesting, entry counts, keys unique by their bytes.
    func holds(_ value: MCPValue, depth: Int) -> Bool {
        switch value {
        case .array(let items):
            return depth < self.limits.maxValueDepth && items.count <= self.limits.maxEntries
                && items.allSatisfy { !$0.isContainer || self.holds($0, depth: depth + 1) }
        case .map(let entries):
            let keys = entries.map { Array($0.key.utf8) }
            return depth < self.limits.maxValueDepth && entries.count <= self.limits.maxEntries && Set(keys).count == keys.count
                && entries.allSatisfy { !$0.value.isContainer || self.holds($0.value, depth: depth + 1) }
        default:
            return true
        }
    }

    func testBothPassesAgreeWithTheRules() {
        var generator = Generator(state: 42)
        var valid = 0
        var invalid = 0
        for round in 0..<3000 {
            let entries = (0..<generator.next(4)).map { MCPValue.MapEntry("p\($0)", self.tree(&generator, depth: 0)) }
            let parameters = MCPValue.map(entries)
            let envelope = Fixture.taskRequest { $0.task.parameters = entries }
            let expected = self.holds(parameters, depth: 0)
            do {
                try envelope.validate(limits: self.limits)
                XCTAssertTrue(expected, "round \(round): accepted a value that breaks a rule")
                valid += 1
            } catch {
                XCTAssertFalse(expected, "round \(round): refused a valid value: \(error)")
                XCTAssertTrue(error.path.hasPrefix("payload.task.parameters"), error.path)
                invalid += 1
            }
        }
        // The generator must exercise both outcomes, or the test proves nothing.
        XCTAssertGreaterThan(valid, 200)
        XCTAssertGreaterThan(invalid, 200)
    }
}
