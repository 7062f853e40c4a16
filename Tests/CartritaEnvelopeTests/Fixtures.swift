import CartritaEnvelope
import XCTest

/// Valid envelopes to start from; each test breaks exactly one rule.
enum Fixture {
    /// A UUIDv7 with the given millisecond timestamp and fixed low bits.
    static func id(_ milliseconds: Int64 = 1_764_000_000_000, _ salt: UInt64 = 1) -> MessageID {
        var entropy = SplitMix64(seed: salt)
        var generator = UUIDv7Generator()
        return generator.next(milliseconds: milliseconds, entropy: &entropy)
    }

    static let context = MessageContext(
        traceID: TraceID(high: 0x0af7_6519_16cd_43dd, low: 0x8448_eb21_1c80_319c),
        spanID: SpanID(0xb7ad_6b71_6920_3331))

    static func envelope(_ payload: Payload = .ping(Ping(nonce: 7))) -> Envelope {
        Envelope(
            id: Self.id(1_764_000_000_000, 1), correlationID: Self.id(1_764_000_000_000, 2),
            sender: .orchestrator, recipient: Address("supervisor.intelligence@v1.0"),
            timestampMilliseconds: 1_764_000_000_000, ttlMilliseconds: 30_000, context: Self.context, payload: payload,
            maxRetries: 3)
    }

    static func taskRequest(_ edit: (inout TaskRequest) -> Void = { _ in }) -> Envelope {
        var request = TaskRequest(
            task: TaskSpec(
                type: "huggingface.image-classification", parameters: [MCPValue.MapEntry("top_k", 5)],
                constraints: TaskConstraints(maxExecutionTimeMilliseconds: 1000, maxMemoryMB: 512, maxCostUSD: 0.25)),
            input: TaskInput(
                data: "a cat", files: [FileInput(name: "cat.png", contentType: "image/png", sizeBytes: 3, source: .inline([1, 2, 3]))]),
            preferences: TaskPreferences(qualityLevel: .best))
        edit(&request)
        return Self.envelope(.taskRequest(request))
    }
}

/// Asserts that `body` throws an `EnvelopeError` with `code` at `path`.
func assertRule(
    _ code: EnvelopeError.Code, at path: String, file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws(EnvelopeError) -> Void
) {
    do {
        try body()
        XCTFail("expected \(code) at \(path), but it passed", file: file, line: line)
    } catch {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        XCTAssertEqual(error.path, path, "\(error)", file: file, line: line)
    }
}

/// Asserts that `envelope` is refused with `code` at `path`.
func assertInvalid(
    _ envelope: Envelope, _ code: EnvelopeError.Code, at path: String, limits: EnvelopeLimits = .default,
    file: StaticString = #filePath, line: UInt = #line
) {
    assertRule(code, at: path, file: file, line: line) { () throws(EnvelopeError) in try envelope.validate(limits: limits) }
}
