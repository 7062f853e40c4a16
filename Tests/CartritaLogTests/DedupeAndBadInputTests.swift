import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

/// The exactly_once dedupe by id, and refusals that must leave the log exactly as it was.
final class DedupeAndBadInputTests: XCTestCase {
    // MARK: Dedupe

    func testDuplicateIDIsRefusedAndConsumesNoSeq() async throws {
        let directory = TemporaryDirectory("dedupe")
        let envelopes = sampleEnvelopes(seed: 51, count: 10)
        var log = try EventLog(path: directory.path)

        do {
            let got = try await log.append(envelopes[0], clockMilliseconds: 1, entropy: 1)
            XCTAssertEqual(got, 1)
        }
        do {
            let got = try await log.append(envelopes[1], clockMilliseconds: 2, entropy: 2)
            XCTAssertEqual(got, 2)
        }
        let headBefore = try log.stat().headHash
        let error = await expectLogError(.duplicateID, "second copy of record 1") {
            try await log.append(envelopes[0], clockMilliseconds: 3, entropy: 3)
        }
        XCTAssertEqual(error?.existingSeq, 1)
        // A copy that differs in everything but the id is the same message.
        var changed = envelopes[1]
        changed.ttlMilliseconds = 99
        changed.priority = .critical
        let changedError = await expectLogError(.duplicateID, "same id, other content") {
            try await log.append(changed, clockMilliseconds: 4, entropy: 4)
        }
        XCTAssertEqual(changedError?.existingSeq, 2)
        // Through the msgpack door too.
        let bytes = try EnvelopeEncoder().encode(envelopes[0])
        let msgpackError = await expectLogError(.duplicateID, "duplicate as msgpack") {
            try await log.append(msgpack: bytes, clockMilliseconds: 5, entropy: 5)
        }
        XCTAssertEqual(msgpackError?.existingSeq, 1)
        XCTAssertEqual(try log.stat().headHash, headBefore, "a refused duplicate writes nothing")
        XCTAssertEqual(log.lastSeq, 2)

        do {
            let got = try await log.append(envelopes[2], clockMilliseconds: 6, entropy: 6)
            XCTAssertEqual(got, 3, "no seq was consumed")
        }
        XCTAssertEqual(try log.record(2)?.envelope, envelopes[1], "the first copy is untouched")
        log.close()

        // Across close and reopen: the id index is on disk.
        log = try EventLog(path: directory.path)
        let reopened = await expectLogError(.duplicateID, "after reopening") {
            try await log.append(envelopes[2], clockMilliseconds: 7, entropy: 7)
        }
        XCTAssertEqual(reopened?.existingSeq, 3)
        do {
            let got = try await log.append(envelopes[3], clockMilliseconds: 8, entropy: 8)
            XCTAssertEqual(got, 4)
        }

        // Two copies in one batch, and a copy of an old record: only the first new copy lands.
        let batch = [envelopes[4], envelopes[5], envelopes[4], envelopes[0], envelopes[6]]
        let results = await log.append(contentsOf: batch, clockMilliseconds: 9, entropy: 9)
        XCTAssertEqual(try results[0].get(), 5)
        XCTAssertEqual(try results[1].get(), 6)
        for (position, existing) in [(2, UInt64(5)), (3, UInt64(1))] {
            switch results[position] {
            case .success(let seq): XCTFail("batch position \(position) should be a duplicate, got seq \(seq)")
            case .failure(let error):
                XCTAssertEqual(error.code, .duplicateID)
                XCTAssertEqual(error.existingSeq, existing)
            }
        }
        XCTAssertEqual(try results[4].get(), 7, "duplicates in a batch consume no seq")
        // A batch of nothing but duplicates.
        let onlyDuplicates = await log.append(contentsOf: [envelopes[1], envelopes[1]], clockMilliseconds: 10, entropy: 10)
        XCTAssertEqual(onlyDuplicates.compactMap { try? $0.get() }, [])
        do {
            let got = try await log.append(envelopes[7], clockMilliseconds: 11, entropy: 11)
            XCTAssertEqual(got, 8)
        }
        XCTAssertEqual(try log.records().map(\.envelope.id), [0, 1, 2, 3, 4, 5, 6, 7].map { envelopes[$0].id })
        try assertVerifies(log, records: 8)
        log.close()
    }

    func testConcurrentDuplicatesLandOnce() async throws {
        let directory = TemporaryDirectory("dedupe-race")
        let log = try EventLog(path: directory.path)
        defer { log.close() }
        let envelopes = sampleEnvelopes(seed: 52, count: 50)
        // 8 producers each append all 50: each id lands exactly once, the rest are refused.
        let outcomes = await withTaskGroup(of: [(Int, Result<UInt64, EventLogError>)].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var outcomes: [(Int, Result<UInt64, EventLogError>)] = []
                    for (index, envelope) in envelopes.enumerated() {
                        do throws(EventLogError) {
                            outcomes.append((index, .success(try await log.append(envelope, clockMilliseconds: 0, entropy: 0))))
                        } catch {
                            outcomes.append((index, .failure(error)))
                        }
                    }
                    return outcomes
                }
            }
            var all: [(Int, Result<UInt64, EventLogError>)] = []
            for await outcomes in group { all += outcomes }
            return all
        }
        var winners: [Int: UInt64] = [:]
        for (index, outcome) in outcomes {
            if case .success(let seq) = outcome {
                XCTAssertNil(winners[index], "message \(index) appended twice")
                winners[index] = seq
            }
        }
        XCTAssertEqual(winners.count, 50)
        XCTAssertEqual(winners.values.sorted(), Array(1...50))
        for (index, outcome) in outcomes {
            if case .failure(let error) = outcome {
                XCTAssertEqual(error.code, .duplicateID)
                XCTAssertEqual(error.existingSeq, winners[index])
            }
        }
        try assertVerifies(log, records: 50)
    }

    // MARK: Bad input

    func testBadInputLeavesTheLogIntact() async throws {
        let directory = TemporaryDirectory("bad-input")
        var limits = CodecLimits()
        limits.maxEnvelopeBytes = 4_096
        let log = try EventLog(path: directory.path, configuration: config { $0.codecLimits = limits })
        defer { log.close() }
        let envelopes = sampleEnvelopes(seed: 61, count: 20, payloadBytes: 128)
        _ = try await appendAll(log, Array(envelopes[0..<10]))

        let good = try EnvelopeEncoder().encode(envelopes[10])
        var zeroTTL = envelopes[10]
        zeroTTL.ttlMilliseconds = 0
        let zeroTTLBytes = try EnvelopeEncoder().encode(zeroTTL)
        let record1 = try XCTUnwrap(try log.rawRecord(1))
        var random = SplitMix64(seed: 62)
        let garbage = (0..<300).map { _ in UInt8(truncatingIfNeeded: random.next64()) }

        var cases: [(String, [UInt8], CodecError.Code?)] = [
            ("empty", [], nil),
            ("truncated", Array(good.dropLast(7)), .truncated),
            ("only the map header", [good[0]], .truncated),
            ("garbage", garbage, nil),
            ("0xc1", [0xc1], .malformed),
            ("trailing bytes", good + [0x00], .trailingBytes),
            ("not a map", [0x93, 0x01, 0x02, 0x03], .wrongType),
            ("wrong envelope: a foreign map", [0x81, 0xa3, 0x66, 0x6f, 0x6f, 0x01], nil),
            ("wrong envelope: a stored log record", record1, .unknownKey),
        ]
        // Every single-byte truncation of a valid envelope.
        for cut in stride(from: 1, to: good.count, by: max(1, good.count / 40)) {
            cases.append(("cut at \(cut)", Array(good.prefix(cut)), nil))
        }

        func assertUnchanged(_ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let stat = try log.stat()
            XCTAssertEqual(stat.records, 10, "\(label): record count", file: file, line: line)
            XCTAssertEqual(stat.headHash, sha256(try XCTUnwrap(try log.rawRecord(10))), "\(label): head hash", file: file, line: line)
            XCTAssertEqual(log.lastSeq, 10, "\(label): last seq", file: file, line: line)
        }

        for (label, bytes, code) in cases {
            let error = await expectLogError(.codec, label) {
                try await log.append(msgpack: bytes, clockMilliseconds: 1, entropy: 1)
            }
            XCTAssertNotNil(error?.codecError, "\(label): the codec's error is attached")
            if let code { XCTAssertEqual(error?.codecError?.code, code, "\(label): \(error.map { "\($0)" } ?? "")") }
            try assertUnchanged(label)
        }

        // A rule of MCP-SPEC broken: ttl_ms 0, as a value and as bytes.
        for (label, attempt) in [
            ("ttl 0", { () async throws(EventLogError) -> UInt64 in try await log.append(zeroTTL, clockMilliseconds: 1, entropy: 1) }),
            ("ttl 0 as msgpack", { () async throws(EventLogError) -> UInt64 in try await log.append(msgpack: zeroTTLBytes, clockMilliseconds: 1, entropy: 1) }),
        ] {
            let error = await expectLogError(.invalidEnvelope, label, attempt)
            XCTAssertEqual(error?.codecError?.envelopeCode, .invalidTTL, label)
            try assertUnchanged(label)
        }
        var selfAddressed = envelopes[11]
        selfAddressed.retryCount = 5
        selfAddressed.maxRetries = 1
        let retryError = await expectLogError(.invalidEnvelope, "retry_count > max_retries") {
            try await log.append(selfAddressed, clockMilliseconds: 1, entropy: 1)
        }
        XCTAssertEqual(retryError?.codecError?.envelopeCode, .retryCountExceedsMax)
        // In a batch, the invalid one fails alone.
        let mixed = await log.append(contentsOf: [envelopes[10], zeroTTL, envelopes[11]], clockMilliseconds: 1, entropy: 1)
        XCTAssertEqual(try mixed[0].get(), 11)
        XCTAssertThrowsError(try mixed[1].get())
        XCTAssertEqual(try mixed[2].get(), 12, "the refused envelope consumed no seq")

        // Oversized: over codecLimits.maxEnvelopeBytes, as a value and as bytes.
        let big = sampleEnvelopes(seed: 63, count: 1, payloadBytes: 8_000)[0]
        let bigError = await expectLogError(.codec, "oversized envelope") {
            try await log.append(big, clockMilliseconds: 1, entropy: 1)
        }
        XCTAssertEqual(bigError?.codecError?.code, .tooLarge)
        let bigBytes = try EnvelopeEncoder(limits: CodecLimits(maxEnvelopeBytes: 1 << 20)).encode(big)
        XCTAssertGreaterThan(bigBytes.count, 4_096)
        let bigBytesError = await expectLogError(.codec, "oversized msgpack") {
            try await log.append(msgpack: bigBytes, clockMilliseconds: 1, entropy: 1)
        }
        XCTAssertEqual(bigBytesError?.codecError?.code, .tooLarge)

        XCTAssertEqual(log.lastSeq, 12)
        do {
            let got = try await log.append(msgpack: try EnvelopeEncoder().encode(envelopes[12]), clockMilliseconds: 1, entropy: 1)
            XCTAssertEqual(got, 13)
        }
        XCTAssertEqual(try log.record(13)?.envelope, envelopes[12])
        try await log.flush()
        try assertVerifies(log, records: 13)
    }

    // MARK: Opening

    func testSecondWriterIsLockedAndReadOnlyNeedsALog() async throws {
        let directory = TemporaryDirectory("lock")
        let log = try EventLog(path: directory.path)
        defer { log.close() }
        do {
            let got = try await appendAll(log, sampleEnvelopes(seed: 71, count: 5))
            XCTAssertEqual(got, [1, 2, 3, 4, 5])
        }

        // In this process.
        expectLogErrorSync(.locked, "second writer in the same process") { try EventLog(path: directory.path) }
        expectLogErrorSync(.locked, "second writer, other durability") { try EventLog(path: directory.path, configuration: config(durability: .fast)) }

        // From a child process: `cartrita demo` on the folder held open here must fail.
        let output = try runCartrita(["demo", "--data", directory.path, "--messages", "10", "--producers", "2"])
        XCTAssertNotEqual(output.status, 0, "cartrita demo on a locked folder exits non-zero; stdout: \(output.stdout)")
        XCTAssertTrue(output.stderr.contains("locked"), "stderr names the lock: \(output.stderr)")
        XCTAssertEqual(log.lastSeq, 5)
        try assertVerifies(log, records: 5)

        // Read-only opens of a folder without a log are reported, and create nothing.
        let empty = TemporaryDirectory("empty")
        expectLogErrorSync(.notFound, "read-only open of an empty folder") {
            try EventLog(path: empty.path, configuration: config(readOnly: true))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: empty.path), [], "a read-only open leaves the folder empty")
        let missing = empty.sub("does/not/exist")
        expectLogErrorSync(.notFound, "read-only open of a missing folder") {
            try EventLog(path: missing, configuration: config(readOnly: true))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing), "a read-only open creates no folder")
        // After a refused read-only open, a writer can still create the log there.
        let created = try EventLog(path: empty.path)
        do {
            let got = try await appendAll(created, sampleEnvelopes(seed: 72, count: 2))
            XCTAssertEqual(got, [1, 2])
        }
        created.close()

        // Read-only: appends and snapshots are refused.
        let reader = try EventLog(path: empty.path, configuration: config(readOnly: true))
        defer { reader.close() }
        await expectLogError(.readOnly, "append on a read-only log") {
            try await reader.append(sampleEnvelopes(seed: 73, count: 1)[0], clockMilliseconds: 0, entropy: 0)
        }
        await expectLogError(.readOnly, "flush on a read-only log") { try await reader.flush() }
        await expectLogError(.readOnly, "snapshot on a read-only log") {
            try await reader.saveSnapshot(Snapshot(actor: "orchestrator@v1.0", seq: 1, formatVersion: 1, state: [1]))
        }
        let batch = await reader.append(contentsOf: sampleEnvelopes(seed: 74, count: 2), clockMilliseconds: 0, entropy: 0)
        XCTAssertEqual(batch.compactMap { result -> EventLogError.Code? in
            if case .failure(let error) = result { return error.code }
            return nil
        }, [.readOnly, .readOnly])
        XCTAssertEqual(reader.lastSeq, 2)

        // A closed log refuses appends with `closed`.
        let closedDirectory = TemporaryDirectory("closed")
        let closing = try EventLog(path: closedDirectory.path)
        closing.close()
        closing.close()  // idempotent
        await expectLogError(.closed, "append after close") {
            try await closing.append(sampleEnvelopes(seed: 75, count: 1)[0], clockMilliseconds: 0, entropy: 0)
        }
    }
}
