import CartritaCodec
import CartritaEnvelope
import XCTest

/// Byte-level equality of two envelopes: encodes both. Unlike `==`, NaN equals itself.
func sameBytes(_ a: Envelope, _ b: Envelope) -> Bool {
    let encoder = EnvelopeEncoder()
    return (try? encoder.encode(a)) == (try? encoder.encode(b))
}

/// Asserts that decoding `bytes` fails with `code` at `path` (and `envelopeCode` when given).
@discardableResult
func assertDecodeError(
    _ bytes: [UInt8], _ code: CodecError.Code, at path: String? = nil, envelopeCode: EnvelopeError.Code? = nil,
    decoder: EnvelopeDecoder = EnvelopeDecoder(), record: Bool = false, file: StaticString = #filePath, line: UInt = #line
) -> CodecError? {
    do {
        if record {
            _ = try decoder.decodeRecord(bytes)
        } else {
            _ = try decoder.decode(bytes)
        }
        XCTFail("expected \(code) at \(path ?? "?"), but it decoded", file: file, line: line)
        return nil
    } catch {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        if let path { XCTAssertEqual(error.path, path, "\(error)", file: file, line: line) }
        if let envelopeCode { XCTAssertEqual(error.envelopeCode, envelopeCode, "\(error)", file: file, line: line) }
        return error
    }
}

/// A fixed, valid task request with a little of everything.
func sampleEnvelope() -> Envelope {
    var generator = UUIDv7Generator()
    var entropy = SplitMix64(seed: 99)
    let id = generator.next(milliseconds: 1_764_000_000_000, entropy: &entropy)
    let correlation = generator.next(milliseconds: 1_764_000_000_000, entropy: &entropy)
    return Envelope(
        id: id, parentID: correlation, correlationID: correlation, sender: .orchestrator,
        recipient: Address("supervisor.intelligence@v1.0"), broadcast: true, timestampMilliseconds: 1_764_000_000_000,
        ttlMilliseconds: 30_000, priority: .high,
        context: MessageContext(
            traceID: TraceID(hex: "0af7651916cd43dd8448eb211c80319c")!, spanID: SpanID(hex: "b7ad6b7169203331")!, userID: "user-1",
            customAttributes: [StringPair("tenant", "acme")]),
        payload: .taskRequest(
            TaskRequest(
                task: TaskSpec(
                    type: "llm.chat", parameters: [.init("model", "small"), .init("options", .map([.init("temperature", .double(0.2))]))],
                    constraints: TaskConstraints(maxExecutionTimeMilliseconds: 5000)),
                input: TaskInput(
                    data: "hello", files: [FileInput(name: "a.txt", contentType: "text/plain", sizeBytes: 2, source: .inline([0x68, 0x69]))]),
                preferences: TaskPreferences(qualityLevel: .fast))),
        deliveryMode: .exactlyOnce, retryCount: 0, maxRetries: 2)
}

/// The spec tree of the sample, for editing into bad inputs.
func sampleTree() -> MP { SpecTree.envelope(sampleEnvelope()) }

func bytes(_ tree: MP) -> [UInt8] { MiniWriter.encode(tree) }
