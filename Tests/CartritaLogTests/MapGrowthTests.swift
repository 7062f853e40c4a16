import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

/// MDB_MAP_FULL handling: the map doubles up to `maxMapSizeBytes`, a failed batch is retried
/// whole in the bigger map, and past the cap appends fail with `log_full` without harm.
final class MapGrowthTests: XCTestCase {
    func testMapGrowsFromOneMiBWhileReadersRun() async throws {
        let directory = TemporaryDirectory("grow")
        let initial = 1 << 20
        let log = try EventLog(path: directory.path, configuration: config { $0.initialMapSizeBytes = initial })
        let envelopes = sampleEnvelopes(seed: 81, count: 7_200, payloadBytes: 8_000)
        XCTAssertLessThan(try log.stat().mapSizeBytes, 2 * initial)

        let producers = 8
        let perProducer = envelopes.count / producers
        let stop = LockedBox(false)
        // A reader keeps transactions open while the writer grows the map.
        let reader = Task.detached { () -> Int in
            var reads = 0
            var random = SplitMix64(seed: 82)
            while !stop.get() {
                let last = log.lastSeq
                if last > 0 {
                    let seq = 1 + random.next64() % last
                    if let record = try? log.record(seq) { XCTAssertEqual(record.header.seq, seq) } else { XCTFail("record \(seq) of \(last) unreadable during growth") }
                    reads += 1
                }
                _ = try? log.stat()
            }
            return reads
        }
        let acknowledged = try await withThrowingTaskGroup(of: [(Int, UInt64)].self) { group in
            for producer in 0..<producers {
                group.addTask {
                    var acks: [(Int, UInt64)] = []
                    let base = producer * perProducer
                    for chunk in stride(from: base, to: base + perProducer, by: 50) {
                        let end = min(chunk + 50, base + perProducer)
                        let results = await log.append(contentsOf: Array(envelopes[chunk..<end]), clockMilliseconds: 1, entropy: 1)
                        for (offset, result) in results.enumerated() { acks.append((chunk + offset, try result.get())) }
                    }
                    return acks
                }
            }
            var all: [(Int, UInt64)] = []
            for try await acks in group { all += acks }
            return all
        }
        stop.set(true)
        let reads = await reader.value
        XCTAssertGreaterThan(reads, 0)

        XCTAssertEqual(acknowledged.count, envelopes.count)
        XCTAssertEqual(acknowledged.map(\.1).sorted(), Array(1...UInt64(envelopes.count)))
        for (index, seq) in acknowledged {
            XCTAssertEqual(try log.seq(ofMessage: envelopes[index].id), seq, "acknowledged message \(index)")
        }
        try await log.flush()
        let stat = try log.stat()
        print("map grew from \(initial) to \(stat.mapSizeBytes) bytes; file \(stat.fileBytes) bytes, records use \(stat.recordBytes)")
        var storedBytes = 0
        try log.scanRaw { _, bytes in
            storedBytes += bytes.count
            return true
        }
        XCTAssertGreaterThan(storedBytes, 20_000_000, "about 20 MB of records")
        XCTAssertGreaterThan(stat.recordBytes, storedBytes)
        XCTAssertGreaterThan(stat.mapSizeBytes, 20_000_000, "the map grew")
        XCTAssertGreaterThanOrEqual(stat.mapSizeBytes, stat.fileBytes)
        try assertVerifies(log, records: envelopes.count)
        log.close()

        // Reopening with the small initial size maps what is there.
        let reopened = try EventLog(path: directory.path, configuration: config { $0.initialMapSizeBytes = initial })
        defer { reopened.close() }
        XCTAssertEqual(reopened.lastSeq, UInt64(envelopes.count))
        let more = sampleEnvelopes(seed: 83, count: 100, payloadBytes: 8_000)
        do {
            let got = try await appendAll(reopened, more)
            XCTAssertEqual(got, Array(UInt64(envelopes.count + 1)...UInt64(envelopes.count + 100)))
        }
        try assertVerifies(reopened, records: envelopes.count + 100)
    }

    func testMaxMapSizeCapGivesLogFullThenReopeningWithMoreRoomContinues() async throws {
        let directory = TemporaryDirectory("full")
        let cap = 1 << 20
        var log = try EventLog(path: directory.path, configuration: config {
            $0.initialMapSizeBytes = cap
            $0.maxMapSizeBytes = cap
        })
        let envelopes = sampleEnvelopes(seed: 84, count: 2_000, payloadBytes: 2_000)
        var appended: [(Int, UInt64)] = []
        var fullAt: Int?
        for (index, envelope) in envelopes.enumerated() {
            do throws(EventLogError) {
                appended.append((index, try await log.append(envelope, clockMilliseconds: clockFor(index), entropy: entropyFor(index))))
            } catch {
                XCTAssertEqual(error.code, .logFull, "the first failure is log_full: \(error)")
                fullAt = index
                break
            }
        }
        let full = try XCTUnwrap(fullAt, "1 MiB must fill up before 2000 records of 2 KB")
        XCTAssertGreaterThan(appended.count, 10)
        XCTAssertEqual(appended.map(\.1), Array(1...UInt64(appended.count)))
        print("log_full after \(appended.count) records at a cap of \(cap) bytes")

        // Still full, still intact, nothing half-written.
        await expectLogError(.logFull, "the next append") {
            try await log.append(envelopes[full], clockMilliseconds: 0, entropy: 0)
        }
        let batch = await log.append(contentsOf: Array(envelopes[full..<full + 5]), clockMilliseconds: 0, entropy: 0)
        for result in batch {
            if case .failure(let error) = result { XCTAssertEqual(error.code, .logFull) } else { XCTFail("a batch into a full log succeeded") }
        }
        XCTAssertEqual(log.lastSeq, UInt64(appended.count))
        for (index, seq) in appended {
            XCTAssertEqual(try log.seq(ofMessage: envelopes[index].id), seq)
            XCTAssertEqual(try log.record(seq)?.envelope, envelopes[index])
        }
        XCTAssertNil(try log.seq(ofMessage: envelopes[full].id), "the refused append left no id behind")
        XCTAssertLessThanOrEqual(try log.stat().mapSizeBytes, cap)
        try assertVerifies(log, records: appended.count)
        log.close()

        // Read-only: still verifies.
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        try assertVerifies(log, records: appended.count)
        log.close()

        // More room: appending continues where it stopped.
        log = try EventLog(path: directory.path, configuration: config {
            $0.initialMapSizeBytes = cap
            $0.maxMapSizeBytes = 64 << 20
        })
        defer { log.close() }
        let next = try await appendAll(log, Array(envelopes[full..<full + 200]), firstIndex: full)
        XCTAssertEqual(next, Array(UInt64(appended.count + 1)...UInt64(appended.count + 200)))
        try await log.flush()
        XCTAssertGreaterThan(try log.stat().mapSizeBytes, cap)
        for index in try log.stat().indexes { XCTAssertEqual(index.appliedSeq, log.lastSeq, index.name) }
        try assertVerifies(log, records: appended.count + 200)
    }
}
