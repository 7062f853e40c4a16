import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaAgents

// Helpers shared by the agent tests. Every outcome produced through `run` is also wrapped in a
// reply envelope and validated, so all tests check that results respect the envelope's limits.

func request(
    _ type: String, _ parameters: KeyValuePairs<String, MCPValue> = [:], data: MCPValue? = nil, files: [FileInput] = []
) -> TaskRequest {
    TaskRequest(
        task: TaskSpec(type: type, parameters: parameters.map { MCPValue.MapEntry($0.key, $0.value) }),
        input: TaskInput(data: data, files: files))
}

func textRequest(_ type: String, _ text: String, _ parameters: KeyValuePairs<String, MCPValue> = [:]) -> TaskRequest {
    request(type, parameters, data: .string(text))
}

func inlineFile(_ bytes: [UInt8], name: String = "data.csv", contentType: String = "text/csv") -> FileInput {
    FileInput(name: name, contentType: contentType, sizeBytes: Int64(bytes.count), source: .inline(bytes))
}

/// Handles one request and checks that the reply envelope carrying the outcome is valid.
@discardableResult
func deliver<A: Agent>(
    _ agent: A, _ request: TaskRequest, state: inout A.State, seq: UInt64 = 1, clock: Int64 = 1_700_000_000_000,
    file: StaticString = #filePath, line: UInt = #line
) -> AgentOutcome {
    let outcome: AgentOutcome
    do {
        outcome = try agent.handle(request, state: &state, context: DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: seq))
    } catch {
        XCTFail("the agent threw: \(error)", file: file, line: line)
        return .failed(TaskError(code: .agentCrashed, message: "\(error)", retryable: true))
    }
    assertValidReply(outcome, from: agent.address, seed: seq, file: file, line: line)
    return outcome
}

@discardableResult
func deliver<A: Agent>(_ agent: A, _ request: TaskRequest, file: StaticString = #filePath, line: UInt = #line) -> AgentOutcome
where A.State == EmptyState {
    var state = EmptyState()
    return deliver(agent, request, state: &state, file: file, line: line)
}

/// Wraps the outcome's payload in a reply envelope with UUIDv7 ids (SplitMix64 entropy) and a
/// valid trace context, and validates it.
func assertValidReply(_ outcome: AgentOutcome, from sender: Address, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
    var entropy = SplitMix64(seed: seed)
    var ids = UUIDv7Generator()
    let now: Int64 = 1_700_000_000_000
    let envelope = Envelope(
        id: ids.next(milliseconds: now, entropy: &entropy),
        parentID: ids.next(milliseconds: now, entropy: &entropy),
        correlationID: ids.next(milliseconds: now, entropy: &entropy),
        sender: sender,
        recipient: Address("supervisor.system@v1.0"),
        timestampMilliseconds: now,
        ttlMilliseconds: 30_000,
        context: MessageContext(traceID: TraceID(high: entropy.next64() | 1, low: entropy.next64()), spanID: SpanID(entropy.next64() | 1)),
        payload: outcome.payload!)
    do {
        try envelope.validate()
    } catch {
        XCTFail("reply envelope is invalid: \(error)", file: file, line: line)
    }
}

extension AgentOutcome {
    var result: MCPValue? {
        guard case .completed(let result, _) = self else { return nil }
        return result
    }

    var error: TaskError? {
        guard case .failed(let error) = self else { return nil }
        return error
    }
}

func assertFailed(
    _ outcome: AgentOutcome, _ code: String, _ fragment: String = "", file: StaticString = #filePath, line: UInt = #line
) {
    guard let error = outcome.error else {
        return XCTFail("expected \(code), got \(outcome)", file: file, line: line)
    }
    XCTAssertEqual(error.code.rawValue, code, error.message, file: file, line: line)
    XCTAssertFalse(error.retryable, file: file, line: line)
    if !fragment.isEmpty {
        XCTAssertTrue(error.message.contains(fragment), "message \"\(error.message)\" lacks \"\(fragment)\"", file: file, line: line)
    }
}

/// Reads `result[path...]` through maps (string keys) and arrays (int keys).
func value(_ root: MCPValue?, _ path: Any...) -> MCPValue? {
    var current = root
    for step in path {
        switch (current, step) {
        case (.map, let key as String): current = current?[key]
        case (.array(let items), let index as Int): current = items.indices.contains(index) ? items[index] : nil
        default: return nil
        }
    }
    return current
}

func int(_ value: MCPValue?) -> Int64? {
    if case .int(let int) = value { return int }
    return nil
}

func string(_ value: MCPValue?) -> String? {
    if case .string(let text) = value { return text }
    return nil
}

/// An upper bound of the value's msgpack size (every header counted at its widest), to show a
/// result fits the codec's 1 MiB envelope without depending on the codec target.
func msgpackUpperBound(_ value: MCPValue) -> Int {
    switch value {
    case .null, .bool: 1
    case .int, .uint, .float, .double: 9
    case .string(let text): 5 + text.utf8.count
    case .binary(let bytes): 5 + bytes.count
    case .array(let items): 5 + items.reduce(0) { $0 + msgpackUpperBound($1) }
    case .map(let entries): 5 + entries.reduce(0) { $0 + 5 + $1.key.utf8.count + msgpackUpperBound($1.value) }
    }
}
