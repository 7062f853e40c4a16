import CartritaCodec
import CartritaEnvelope
import CartritaLog
@testable import CartritaNode
import CartritaRuntime
import XCTest

/// The readers of `RecordPipeline` seek to their own batches: every record from the start seq
/// to the end must come exactly once, in order, whatever the start (on a batch boundary or
/// not) and however the log's length falls against the batch size.
final class ReplayPipelineTests: XCTestCase {
    func testEveryRecordComesOnceInOrderFromAnyStart() async throws {
        let directory = TemporaryDirectory("pipeline")
        do {
            let log = try openLog(directory)
            let (node, _) = try Node.recover(log: log, hierarchy: .standard())
            await runStandardTasks(node, count: 120, seed: 11)
            log.close()
        }
        let log = try openLog(directory)
        defer { log.close() }
        let last = log.lastSeq
        let batch = RecordPipeline.batchRecords
        XCTAssertGreaterThan(last, 2 * batch + 1, "the log spans several batches")
        XCTAssertNotEqual(last % batch, 0, "the last batch is a partial one")
        let stored = [Address.orchestrator, Hierarchy.intelligence]
        for start in [1, 2, batch - 1, batch, batch + 1, 2 * batch + 3, last - 1, last, last + 1] {
            var seqs: [UInt64] = []
            var storedCount = 0
            try log.replayEntries(from: start, storedSenders: stored) { entries in
                for (seq, entry) in entries {
                    seqs.append(seq)
                    switch entry {
                    case .stored(let bytes, let peek):
                        storedCount += 1
                        XCTAssertEqual(peek.header.seq, seq)
                        let record = try? EnvelopeDecoder().decodeRecord(bytes)
                        XCTAssertTrue(record.map { stored.contains($0.envelope.sender) } ?? false, "record \(seq) is stored only for a stored sender")
                    case .decoded(let record):
                        XCTAssertEqual(record.header.seq, seq)
                        XCTAssertFalse(stored.contains(record.envelope.sender), "record \(seq) of a stored sender came decoded")
                    }
                }
                return true
            }
            XCTAssertEqual(seqs, start <= last ? Array(start...last) : [], "from \(start)")
            if start == 1 { XCTAssertGreaterThan(storedCount, 0) }
            var decoded: [UInt64] = []
            try log.replay(from: start) { records in
                decoded += records.map(\.seq)
                return true
            }
            XCTAssertEqual(decoded, seqs, "replay from \(start)")
        }
        // Stopping early leaves the readers and the log in order (the log closes after).
        var batches = 0
        try log.replay(from: 1) { _ in
            batches += 1
            return batches < 2
        }
        XCTAssertEqual(batches, 2)
    }
}
