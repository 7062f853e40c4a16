import CartritaCodec
import CartritaEnvelope
import Foundation
import XCTest

@testable import CartritaLog

/// Appending and reading back: seqs, the record header (hash chain, back-pointers, recorded
/// clock and entropy), group commit under many producers, and the durability modes.
final class AppendReadTests: XCTestCase {
    // MARK: Append and read back

    func testAppendReadBackAndRecordHeaders() async throws {
        let directory = TemporaryDirectory("append")
        let envelopes = sampleEnvelopes(seed: 11, count: 300)
        var log = try EventLog(path: directory.path)

        let seqs = try await appendAll(log, envelopes)
        XCTAssertEqual(seqs, Array(1...300), "seqs are 1, 2, 3… without gaps")
        XCTAssertEqual(log.lastSeq, 300)
        XCTAssertEqual(log.firstSeq, 1)

        // record(seq): the envelope as appended, and a header computed independently here.
        var lastOfRecipient: [String: UInt64] = [:]
        var previous: [UInt8]?
        let generic = EnvelopeDecoder()
        for (index, envelope) in envelopes.enumerated() {
            let seq = UInt64(index + 1)
            let record = try XCTUnwrap(try log.record(seq), "record \(seq)")
            let raw = try XCTUnwrap(try log.rawRecord(seq))
            XCTAssertEqual(record.envelope, envelope, "envelope of record \(seq)")
            XCTAssertEqual(record.header.seq, seq)
            XCTAssertEqual(record.header.clockMilliseconds, clockFor(index), "clock_ms of \(seq)")
            XCTAssertEqual(record.header.entropy, entropyFor(index), "entropy of \(seq)")
            XCTAssertEqual(record.header.prevHash, previous.map(sha256) ?? .zero, "prev_hash of \(seq) is SHA-256 of the bytes of \(seq - 1)")
            XCTAssertEqual(
                record.header.actorPrevSeq, lastOfRecipient[envelope.recipient.rawValue] ?? 0,
                "actor_prev_seq of \(seq) points at the previous record to \(envelope.recipient)")
            lastOfRecipient[envelope.recipient.rawValue] = seq
            previous = raw

            // MCP-SPEC §6: standard msgpack, one map keyed by field names.
            let value = try generic.decodeValue(raw)
            guard case .map(let entries) = value else { return XCTFail("record \(seq) is not a msgpack map") }
            let keys = entries.map(\.key)
            XCTAssertEqual(Array(keys.prefix(6)), ["v", "seq", "prev_hash", "actor_prev_seq", "clock_ms", "entropy"])
            for key in ["id", "correlation_id", "sender", "recipient", "timestamp", "ttl_ms", "type", "payload", "delivery_mode"] {
                XCTAssertTrue(keys.contains(key), "record \(seq) has key \(key)")
            }
            XCTAssertEqual(value["seq"], .int(Int64(seq)))
            XCTAssertEqual(value["id"], .binary(envelope.id.bytes))
        }
        XCTAssertNil(try log.record(0))
        XCTAssertNil(try log.record(301))
        XCTAssertNil(try log.rawRecord(301))

        // The head hash protects the last record.
        let stat = try log.stat()
        XCTAssertEqual(stat.records, 300)
        XCTAssertEqual(stat.firstSeq, 1)
        XCTAssertEqual(stat.lastSeq, 300)
        XCTAssertEqual(stat.headHash, sha256(previous!))
        XCTAssertEqual(stat.formatVersion, EventLog.formatVersion)
        XCTAssertEqual(stat.actors, lastOfRecipient.count)

        // records(from:limit:)
        let page = try log.records(from: 101, limit: 50)
        XCTAssertEqual(page.map(\.header.seq), Array(101...150))
        XCTAssertEqual(page.map(\.envelope), Array(envelopes[100..<150]))
        XCTAssertEqual(try log.records(from: 290, limit: 100).map(\.header.seq), Array(290...300))
        XCTAssertEqual(try log.records().count, 300)
        XCTAssertEqual(try log.records(from: 301).count, 0)
        XCTAssertEqual(try log.records(from: 5, limit: 0).count, 0)
        XCTAssertEqual(try log.records(from: 0, limit: 3).map(\.header.seq), [1, 2, 3])

        // scanRaw: the stored bytes in order, and it stops when asked to.
        var scanned: [UInt64] = []
        try log.scanRaw(from: 250) { seq, bytes in
            XCTAssertEqual([UInt8](bytes), try log.rawRecord(seq), "scanRaw bytes of \(seq)")
            scanned.append(seq)
            return true
        }
        XCTAssertEqual(scanned, Array(250...300))
        var visited = 0
        try log.scanRaw { _, _ in
            visited += 1
            return visited < 10
        }
        XCTAssertEqual(visited, 10, "scanRaw stops when the body returns false")
        struct Stop: Error {}
        XCTAssertThrowsError(try log.scanRaw { _, _ in throw Stop() }, "an error thrown by the body propagates")

        let report = try assertVerifies(log, records: 300)
        XCTAssertEqual(report.headHash, sha256(previous!))
        XCTAssertEqual(report.firstSeq, 1)
        XCTAssertEqual(report.lastSeq, 300)

        // Reopen: the writer recovers next seq, prev hash and the actors' heads from the file.
        log.close()
        log = try EventLog(path: directory.path)
        defer { log.close() }
        let more = sampleEnvelopes(seed: 12, count: 40)
        let moreSeqs = try await appendAll(log, more, firstIndex: 300)
        XCTAssertEqual(moreSeqs, Array(301...340))
        for (offset, envelope) in more.enumerated() {
            let seq = UInt64(301 + offset)
            let record = try XCTUnwrap(try log.record(seq))
            XCTAssertEqual(record.header.prevHash, sha256(previous!), "prev_hash of \(seq) after reopening")
            XCTAssertEqual(record.header.actorPrevSeq, lastOfRecipient[envelope.recipient.rawValue] ?? 0, "actor_prev_seq of \(seq) after reopening")
            lastOfRecipient[envelope.recipient.rawValue] = seq
            previous = try log.rawRecord(seq)
        }
        try assertVerifies(log, records: 340)
    }

    // MARK: Group commit

    func testGroupCommitUnderConcurrentProducers() async throws {
        let directory = TemporaryDirectory("group")
        let log = try EventLog(path: directory.path)
        defer { log.close() }
        let producers = 256
        let perProducer = 200
        let total = producers * perProducer
        let envelopes = sampleEnvelopes(seed: 21, count: total, payloadBytes: 48)

        let start = ContinuousClock.now
        let acknowledged = try await withThrowingTaskGroup(of: [(Int, UInt64)].self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var acks: [(Int, UInt64)] = []
                    for index in stride(from: producer, to: total, by: producers) {
                        let seq = try await log.append(envelopes[index], clockMilliseconds: clockFor(index), entropy: entropyFor(index))
                        if let last = acks.last {
                            XCTAssertGreaterThan(seq, last.1, "one producer's appends are acknowledged in order")
                        }
                        acks.append((index, seq))
                    }
                    return acks
                }
            }
            var all: [(Int, UInt64)] = []
            for try await acks in group { all += acks }
            return all
        }
        print("group commit: \(total) appends by \(producers) producers in \(ContinuousClock.now - start)")

        XCTAssertEqual(acknowledged.count, total)
        XCTAssertEqual(acknowledged.map(\.1).sorted(), Array(1...UInt64(total)), "every seq once, exactly 1...N")
        XCTAssertEqual(log.lastSeq, UInt64(total))
        var seqOfIndex = [UInt64](repeating: 0, count: total)
        for (index, seq) in acknowledged { seqOfIndex[index] = seq }
        for (index, envelope) in envelopes.enumerated() {
            let found = try log.seq(ofMessage: envelope.id)
            if found != seqOfIndex[index] {
                XCTFail("message \(index) acknowledged at \(seqOfIndex[index]), the id index says \(found.map(String.init) ?? "nothing")")
                break
            }
        }
        let records = try log.records()
        XCTAssertEqual(records.count, total)
        var indexOfSeq = [Int](repeating: -1, count: total + 1)
        for (index, seq) in acknowledged { indexOfSeq[Int(seq)] = index }
        for record in records {
            let index = indexOfSeq[Int(record.header.seq)]
            XCTAssertEqual(record.envelope, envelopes[index], "record \(record.header.seq) holds the envelope acknowledged with it")
            XCTAssertEqual(record.header.clockMilliseconds, clockFor(index))
            XCTAssertEqual(record.header.entropy, entropyFor(index))
        }
        try await log.flush()
        try assertVerifies(log, records: total)
    }

    func testAppendContentsOfBatches() async throws {
        let directory = TemporaryDirectory("batch")
        let log = try EventLog(path: directory.path)
        defer { log.close() }
        let batches = 32
        let batchSize = 100
        let envelopes = sampleEnvelopes(seed: 22, count: batches * batchSize, payloadBytes: 64)

        let results = await withTaskGroup(of: (Int, [Result<UInt64, EventLogError>]).self) { group in
            for batch in 0..<batches {
                group.addTask {
                    let slice = Array(envelopes[batch * batchSize..<(batch + 1) * batchSize])
                    return (batch, await log.append(contentsOf: slice, clockMilliseconds: 1_000 + Int64(batch), entropy: UInt64(batch) << 32))
                }
            }
            var all: [(Int, [Result<UInt64, EventLogError>])] = []
            for await result in group { all.append(result) }
            return all
        }

        var allSeqs: [UInt64] = []
        for (batch, batchResults) in results {
            XCTAssertEqual(batchResults.count, batchSize)
            let seqs = batchResults.compactMap { try? $0.get() }
            XCTAssertEqual(seqs.count, batchSize, "batch \(batch): every append succeeds")
            XCTAssertEqual(seqs, seqs.sorted(), "batch \(batch): appended in the order given")
            allSeqs += seqs
            for (position, seq) in seqs.enumerated() {
                let record = try XCTUnwrap(try log.record(seq))
                XCTAssertEqual(record.envelope, envelopes[batch * batchSize + position])
                XCTAssertEqual(record.header.clockMilliseconds, 1_000 + Int64(batch), "one clock reading for the batch")
                XCTAssertEqual(record.header.entropy, (UInt64(batch) << 32) &+ UInt64(position), "entropy + position in the batch")
            }
        }
        XCTAssertEqual(allSeqs.sorted(), Array(1...UInt64(batches * batchSize)))
        // An empty batch is a no-op.
        let empty = await log.append(contentsOf: [], clockMilliseconds: 0, entropy: 0)
        XCTAssertTrue(empty.isEmpty)
        XCTAssertEqual(log.lastSeq, UInt64(batches * batchSize))
        try assertVerifies(log, records: batches * batchSize)
    }

    /// The writer drops the process's mappings of the log file after every
    /// `releaseMappedPagesEveryBytes` committed (a server's RSS would grow with its log
    /// otherwise), and the records stay readable; 0 turns it off.
    func testWriterReleasesMappedPagesEveryConfiguredBytes() async throws {
        for everyBytes in [256 << 10, 0] {
            let directory = TemporaryDirectory("mapped-\(everyBytes)")
            let log = try EventLog(path: directory.path, configuration: EventLogConfiguration(releaseMappedPagesEveryBytes: everyBytes))
            defer { log.close() }
            let envelopes = sampleEnvelopes(seed: 41, count: 2_000, payloadBytes: 1_000)  // over 2 MiB of records
            for start in stride(from: 0, to: envelopes.count, by: 100) {
                let results = await log.append(contentsOf: Array(envelopes[start..<start + 100]), clockMilliseconds: 5_000, entropy: UInt64(start))
                XCTAssertEqual(results.compactMap { try? $0.get() }.count, 100)
            }
            let releases = log.writerMetrics.mappedPagesReleases
            if everyBytes == 0 {
                XCTAssertEqual(releases, 0, "off")
            } else {
                XCTAssertGreaterThanOrEqual(releases, 4, "about one release per 256 KiB of 2 MiB committed")
                XCTAssertEqual(log.writerMetrics.mappedPagesReleaseFailures, 0)
            }
            XCTAssertGreaterThan(try log.releaseMappedPages(), 2 << 20, "the explicit release covers the used map")
            XCTAssertEqual(try XCTUnwrap(try log.record(1_234)).envelope, envelopes[1_233])
            try assertVerifies(log, records: envelopes.count)
        }
    }

    /// A burst of lookups (records read by seq) releases the pages it mapped every
    /// `releaseMappedPagesEveryReads`, without waiting for the writer.
    func testRandomReadsReleaseTheirMappedPages() async throws {
        let directory = TemporaryDirectory("mapped-reads")
        let envelopes = sampleEnvelopes(seed: 43, count: 3_000, payloadBytes: 1_500)  // about 5 MiB of records
        do {
            let writing = try EventLog(path: directory.path)
            for start in stride(from: 0, to: envelopes.count, by: 500) {
                _ = await writing.append(contentsOf: Array(envelopes[start..<start + 500]), clockMilliseconds: 5_000, entropy: UInt64(start))
            }
            writing.close()
        }
        // Read-only: no writer that could release pages on its own while this test counts them.
        let log = try EventLog(path: directory.path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        func resident() throws -> Int {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps"))
            defer { try? handle.close() }
            var inFile = false
            var kib = 0
            for line in String(decoding: try handle.readToEnd() ?? Data(), as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                if let first = fields.first, first.contains("-"), first.first?.isHexDigit == true {
                    inFile = fields.last.map(String.init) == directory.path + "/data.mdb"
                } else if inFile, fields.first == "Rss:", fields.count >= 2 {
                    kib += Int(fields[1]) ?? 0
                }
            }
            return kib
        }
        log.readsSinceRelease.store(0, ordering: .relaxed)
        // Reads spread over the log: each maps its page and the cached pages around it.
        for index in 0..<(EventLog.releaseMappedPagesEveryReads - 1) {
            XCTAssertNotNil(try log.record(UInt64(index * 11 % envelopes.count + 1)))
        }
        let before = try resident()
        XCTAssertGreaterThan(before, 1_024, "the reads mapped pages")
        XCTAssertNotNil(try log.record(7))  // the 256th read releases
        XCTAssertLessThan(try resident(), before / 4, "released by the reader")
        XCTAssertEqual(try XCTUnwrap(try log.record(2_999)).envelope, envelopes[2_998])
    }

    // MARK: Durability modes

    func testEveryDurabilityModeKeepsDataAcrossReopen() async throws {
        for durability in Durability.allCases {
            let directory = TemporaryDirectory("durability-\(durability.rawValue)")
            let envelopes = sampleEnvelopes(seed: 31, count: 400, payloadBytes: 200)
            var log = try EventLog(path: directory.path, configuration: config(durability: durability) { $0.fastSyncIntervalMilliseconds = 20 })
            let writer = log
            let seqs = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                for part in 0..<4 {
                    group.addTask {
                        try await appendAll(writer, Array(envelopes[part * 100..<(part + 1) * 100]), firstIndex: part * 100)
                    }
                }
                var all: [UInt64] = []
                for try await seqs in group { all += seqs }
                return all
            }
            XCTAssertEqual(seqs.sorted(), Array(1...400), "\(durability)")
            let head = try log.stat().headHash
            log.close()

            // Reopen in the same mode, read-only, and in another mode: everything is there.
            for reopen in [config(durability: durability), config(readOnly: true), config(durability: .durable)] {
                log = try EventLog(path: directory.path, configuration: reopen)
                XCTAssertEqual(log.lastSeq, 400, "\(durability) reopened as \(reopen.durability) readOnly=\(reopen.readOnly)")
                XCTAssertEqual(try log.stat().headHash, head)
                for envelope in envelopes {
                    XCTAssertNotNil(try log.seq(ofMessage: envelope.id), "\(durability): \(envelope.id) survives reopening")
                }
                XCTAssertEqual(try log.records().map(\.envelope.id).sorted(), envelopes.map(\.id).sorted())
                try assertVerifies(log, records: 400)
                log.close()
            }
            // And appending continues after the last seq.
            log = try EventLog(path: directory.path, configuration: config(durability: durability))
            do {
                let got = try await appendAll(log, sampleEnvelopes(seed: 32, count: 3))
                XCTAssertEqual(got, [401, 402, 403])
            }
            log.close()
        }
    }
}
