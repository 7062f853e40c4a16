import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import CartritaLog
import Foundation
import XCTest

/// The lookups (correlation, actor, heads) against an independent model of the appended
/// envelopes: before and after the deferred secondary indexes are applied, after a crash
/// between a commit and its index commit, and after a rebuild.
final class IndexTests: XCTestCase {
    func testLookupsMatchTheAppendedEnvelopesBeforeAndAfterFlush() async throws {
        let directory = TemporaryDirectory("index")
        let envelopes = sampleEnvelopes(seed: 41, count: 2_000, payloadBytes: 64)
        var model = IndexModel()
        var log = try EventLog(path: directory.path)

        // Phase A: append, then look up at once (the watermark may lag: the tail scan covers it).
        var seqs: [UInt64] = []
        for chunk in stride(from: 0, to: 1_500, by: 50) {
            let results = await log.append(contentsOf: Array(envelopes[chunk..<chunk + 50]), clockMilliseconds: 7, entropy: 9)
            seqs += try results.map { try $0.get() }
        }
        XCTAssertEqual(seqs, Array(1...1_500))
        model.add(Array(envelopes[0..<1_500]), seqs: seqs)
        try model.check(log, "before flush")

        try await log.flush()
        let stat = try log.stat()
        let indexes = Dictionary(uniqueKeysWithValues: stat.indexes.map { ($0.name, $0) })
        XCTAssertEqual(Set(indexes.keys), ["id", "actor_head", "correlation", "actor"])
        for name in ["id", "actor_head", "correlation", "actor"] {
            XCTAssertEqual(indexes[name]?.appliedSeq, 1_500, "after flush the \(name) index covers the whole log")
        }
        XCTAssertEqual(indexes["id"]?.entries, 1_500)
        XCTAssertEqual(indexes["correlation"]?.entries, 1_500)
        XCTAssertEqual(indexes["actor"]?.entries, 1_500)
        XCTAssertEqual(indexes["actor_head"]?.entries, model.byActor.count)
        XCTAssertEqual(indexes["id"]?.inMainCommit, true)
        XCTAssertEqual(indexes["correlation"]?.inMainCommit, false)
        XCTAssertEqual(stat.actors, model.byActor.count)
        try model.check(log, "after flush")
        log.close()

        // Phase B: simulate a process that died after committing 1101...1500 but before their
        // index commit: watermark back to 1100, index entries past it removed.
        try withRawLog(directory.path) { txn, open in
            let meta = try open("meta")
            for name in ["by_correlation", "by_actor"] {
                let database = try open(name)
                for key in try allKeys(txn, database) where trailingSeq(key) > 1_100 {
                    XCTAssertTrue(try txn.delete(database, key: key))
                }
            }
            try txn.put(meta, key: Array("index.applied_seq".utf8), value: bigEndianBytes(1_100))
        }
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        let lagging = try log.stat()
        XCTAssertEqual(lagging.indexes.first { $0.name == "correlation" }?.appliedSeq, 1_100)
        XCTAssertEqual(lagging.indexes.first { $0.name == "actor" }?.entries, 1_100)
        try model.check(log, "read-only with the watermark at 1100 of 1500")
        try assertVerifies(log, records: 1_500)
        log.close()

        // Phase C: a writer reopens it: the backlog is applied, lookups stay complete meanwhile.
        log = try EventLog(path: directory.path)
        try model.check(log, "reopened with pending index work")
        let moreSeqs = try await appendAll(log, Array(envelopes[1_500...]), firstIndex: 1_500)
        XCTAssertEqual(moreSeqs, Array(1_501...2_000))
        model.add(Array(envelopes[1_500...]), seqs: moreSeqs)
        try model.check(log, "after more appends, before flush")
        try await log.flush()
        for index in try log.stat().indexes {
            XCTAssertEqual(index.appliedSeq, 2_000, "\(index.name) caught up after reopening")
        }
        try model.check(log, "caught up")
        try assertVerifies(log, records: 2_000)
        log.close()

        // Closing a writer applies everything still pending: a fresh read-only open sees the
        // watermark at the end (MaxIndexLag small so that the indexes lag by many records).
        log = try EventLog(path: directory.path, configuration: config { $0.maxIndexLagRecords = 8 })
        let extra = sampleEnvelopes(seed: 42, count: 600, payloadBytes: 32)
        let extraSeqs = try await log.append(contentsOf: extra, clockMilliseconds: 1, entropy: 1).map { try $0.get() }
        model.add(extra, seqs: extraSeqs)
        log.close()
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        for index in try log.stat().indexes {
            XCTAssertEqual(index.appliedSeq, 2_600, "close() applies the pending \(index.name) index entries")
        }
        try model.check(log, "after close with a small index lag")
        try assertVerifies(log, records: 2_600)
        log.close()
    }

    func testRebuildIndexesRestoresDamagedIndexes() async throws {
        let directory = TemporaryDirectory("rebuild")
        let envelopes = sampleEnvelopes(seed: 43, count: 800, payloadBytes: 64)
        var log = try EventLog(path: directory.path)
        let seqs = try await log.append(contentsOf: envelopes, clockMilliseconds: 3, entropy: 4).map { try $0.get() }
        var model = IndexModel()
        model.add(envelopes, seqs: seqs)
        try await log.flush()
        log.close()

        // Damage: drop the actor entries of one actor, and point one correlation entry at the
        // wrong record (same entry count, so only a per-entry check sees it).
        let victim = envelopes[10].recipient.rawValue
        try withRawLog(directory.path) { txn, _ in
            let byActor = try txn.openDatabase(name: "by_actor", flags: [])
            for key in try allKeys(txn, byActor) where key.starts(with: Array(victim.utf8) + [0]) {
                try txn.delete(byActor, key: key)
            }
        }
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        var report = try log.verify()
        XCTAssertEqual(report.firstProblem?.kind, .secondaryIndex, "verify sees the missing actor entries: \(report.firstProblem.map { "\($0)" } ?? "passed")")
        XCTAssertNotEqual(try log.seqs(actor: victim), model.byActor[victim], "the damage is visible in lookups")
        log.close()

        log = try EventLog(path: directory.path)
        try await log.rebuildIndexes()
        try model.check(log, "after rebuildIndexes")
        for index in try log.stat().indexes {
            XCTAssertEqual(index.appliedSeq, 800, "\(index.name) after the rebuild")
        }
        try assertVerifies(log, records: 800)
        log.close()

        // A wrong entry with the right count.
        let moved = seqs[20]
        let correlation = envelopes[20].correlationID
        let other = envelopes.first { $0.correlationID != correlation }!.correlationID
        try withRawLog(directory.path) { txn, open in
            let byCorrelation = try open("by_correlation")
            XCTAssertTrue(try txn.delete(byCorrelation, key: correlation.bytes + bigEndianBytes(moved)))
            try txn.put(byCorrelation, key: other.bytes + bigEndianBytes(moved), value: [UInt8]())
        }
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        report = try log.verify()
        XCTAssertEqual(report.firstProblem?.kind, .secondaryIndex, "verify sees an index entry the log does not explain")
        XCTAssertEqual(report.firstProblem?.seq, moved)
        log.close()

        log = try EventLog(path: directory.path)
        try await log.rebuildIndexes()
        try model.check(log, "after the second rebuild")
        try assertVerifies(log, records: 800)

        // rebuildIndexes needs the writer.
        log.close()
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        await expectLogError(.readOnly, "rebuild on a read-only log") { try await log.rebuildIndexes() }
        log.close()
    }
}
