import CartritaCodec
import CartritaEnvelope
import XCTest

@testable import CartritaNode

/// The stored-record checker's comparison (`StoredChecker.same`, with the encoder the checker
/// uses) accepts a replayed copy only when it is byte for byte the logged record: a result met
/// again (an answer forwarded up the hierarchy) still counts, and any changed value, however
/// small, does not. A faster comparison (cached bytes, fields compared without encoding) must
/// keep passing these.
final class StoredCheckerTests: XCTestCase {
    static let agent = Address("agent.datasage@v1.0")
    static let supervisor = Address("supervisor.intelligence@v1.0")
    static let orchestrator = Address("orchestrator@v1.0")

    static func answer(_ result: MCPValue, from sender: Address, to recipient: Address, id: UInt64) -> Envelope {
        Envelope(
            id: MessageID(high: 0x0190_0000_0000_7000 | id, low: 0x8000_0000_0000_0000 | id), parentID: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001),
            correlationID: MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0002), sender: sender, recipient: recipient,
            timestampMilliseconds: 1_700_000_000_000, ttlMilliseconds: 30_000,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)),
            payload: .taskResponse(TaskResponse(status: .completed, result: result)))
    }

    /// The record the log would hold for `envelope`: its bytes and its peek.
    static func record(_ envelope: Envelope, seq: UInt64) throws -> (bytes: ArraySlice<UInt8>, peek: RecordPeek) {
        let body = try EnvelopeEncoder().encodeBody(envelope)
        let writer = MsgPackWriter()
        writer.writeRecord(
            header: RecordHeader(seq: seq, prevHash: .zero, actorPrevSeq: 0, clockMilliseconds: 5, entropy: 6), envelope: body)
        let bytes = writer.bytes
        let peek = try XCTUnwrap(bytes.withUnsafeBytes { RecordPeek($0) })
        return (bytes[...], peek)
    }

    /// A result of a few dozen bytes, nested.
    static func result(_ mean: Double) -> MCPValue {
        .map([
            MCPValue.MapEntry("columns", .array([.string("alpha"), .string("beta"), .string("gamma")])),
            MCPValue.MapEntry("rows", .int(1_000)),
            MCPValue.MapEntry("mean", .double(mean)),
            MCPValue.MapEntry("summary", .string("three columns of numbers, one of text")),
        ])
    }

    func testAForwardedResultMatchesAndAnyChangeIsCaught() throws {
        let encoder = StoredChecker.makeEncoder()
        let result = Self.result(1.5)
        // The agent's answer, then the same result forwarded by the supervisor (same storage).
        let answer = Self.answer(result, from: Self.agent, to: Self.supervisor, id: 10)
        let forwarded = Self.answer(result, from: Self.supervisor, to: Self.orchestrator, id: 11)
        let answerRecord = try Self.record(answer, seq: 1)
        let forwardedRecord = try Self.record(forwarded, seq: 2)
        XCTAssertTrue(StoredChecker.same(answerRecord.bytes, answerRecord.peek, answer, encoder))
        XCTAssertTrue(StoredChecker.same(forwardedRecord.bytes, forwardedRecord.peek, forwarded, encoder))
        XCTAssertTrue(StoredChecker.same(forwardedRecord.bytes, forwardedRecord.peek, forwarded, encoder), "again")

        // A copy whose result differs in one value (copy-on-write: new storage) is not the record.
        guard case .map(var entries) = result else { return XCTFail("a map") }
        entries[2].value = .double(1.25)
        let changed = Self.answer(.map(entries), from: Self.supervisor, to: Self.orchestrator, id: 11)
        XCTAssertFalse(StoredChecker.same(forwardedRecord.bytes, forwardedRecord.peek, changed, encoder))
        // Nor is the original copy against a record whose result differs, though the encoder
        // wrote that copy's result before.
        let changedRecord = try Self.record(changed, seq: 2)
        XCTAssertFalse(StoredChecker.same(changedRecord.bytes, changedRecord.peek, forwarded, encoder))
        XCTAssertTrue(StoredChecker.same(changedRecord.bytes, changedRecord.peek, changed, encoder))
        // Every other field still counts: the right result under another sender is not the record.
        let otherSender = Self.answer(result, from: Self.agent, to: Self.orchestrator, id: 11)
        XCTAssertFalse(StoredChecker.same(forwardedRecord.bytes, forwardedRecord.peek, otherSender, encoder))
    }

    /// Many answers, most forwarded, some changed on the way: the checker says "same" exactly
    /// when a plain encoder's bytes of the copy are the record's.
    func testTheCheckersEncoderAgreesWithAPlainOneOverManyAnswers() throws {
        let encoder = StoredChecker.makeEncoder()
        let plain = EnvelopeEncoder()
        var results: [MCPValue] = []
        for step in 0..<600 {
            let result: MCPValue
            if step % 3 == 0 || results.isEmpty {
                result = Self.result(Double(step))
            } else if step % 5 == 0, case .map(var entries) = results[results.count - 1] {
                entries[1].value = .int(Int64(step))  // changed after it was written
                result = .map(entries)
            } else {
                result = results[results.count - 1]  // forwarded
            }
            results.append(result)
            let copy = Self.answer(result, from: Self.supervisor, to: Self.orchestrator, id: UInt64(step))
            // The logged record: the copy itself, or (every 7th) the answer before it.
            let logged = step % 7 == 0 && step > 0 ? Self.answer(results[step - 1], from: Self.supervisor, to: Self.orchestrator, id: UInt64(step)) : copy
            let record = try Self.record(logged, seq: UInt64(step + 1))
            let expected = try plain.encode(copy) == (try plain.encode(logged))
            XCTAssertEqual(StoredChecker.same(record.bytes, record.peek, copy, encoder), expected, "step \(step)")
        }
    }
}
