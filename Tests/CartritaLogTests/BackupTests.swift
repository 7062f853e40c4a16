import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

/// Hot backups: a consistent, compacted copy taken while appends go on.
final class BackupTests: XCTestCase {
    func testHotBackupWhileAppendingIsAVerifiedPrefix() async throws {
        let directory = TemporaryDirectory("backup")
        let log = try EventLog(path: directory.path)
        defer { log.close() }
        let envelopes = sampleEnvelopes(seed: 111, count: 20_000, payloadBytes: 128)
        let stop = LockedBox(false)

        let appender = Task.detached { () throws -> Int in
            var next = 0
            while !stop.get(), next < envelopes.count {
                let end = min(next + 20, envelopes.count)
                for result in await log.append(contentsOf: Array(envelopes[next..<end]), clockMilliseconds: 5, entropy: UInt64(next)) {
                    _ = try result.get()
                }
                next = end
            }
            return next
        }

        let copies = TemporaryDirectory("backup-copies")
        var backups: [String] = []
        for round in 0..<4 {
            while log.lastSeq < UInt64(500 * (round + 1)) { try await Task.sleep(nanoseconds: 1_000_000) }
            let target = copies.sub("copy-\(round)")
            try log.backup(to: target)
            backups.append(target)
        }
        // And one through the CLI, from another process, while this one keeps writing.
        let cliTarget = copies.sub("copy-cli")
        let cli = try runCartrita(["log", "backup", "--data", directory.path, "--to", cliTarget])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        backups.append(cliTarget)

        stop.set(true)
        let appended = try await appender.value
        try await log.flush()
        XCTAssertEqual(log.lastSeq, UInt64(appended))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: backups[0]), ["data.mdb"], "a backup is one file")

        var previousCount = 0
        for backup in backups {
            let copy = try EventLog(path: backup, configuration: config(readOnly: true))
            let report = try assertVerifies(copy)
            XCTAssertGreaterThan(report.records, 0, backup)
            XCTAssertEqual(report.firstSeq, 1)
            XCTAssertLessThanOrEqual(report.lastSeq, log.lastSeq)
            XCTAssertGreaterThanOrEqual(report.records, previousCount, "later backups hold at least as much")
            previousCount = report.records
            // A prefix: byte for byte the same records as the live log.
            try copy.scanRaw { seq, bytes in
                XCTAssertEqual([UInt8](bytes), try log.rawRecord(seq), "\(backup): record \(seq)")
                return true
            }
            XCTAssertEqual(try copy.stat().headHash, sha256(try XCTUnwrap(try log.rawRecord(report.lastSeq))))
            for index in stride(from: 0, to: report.records, by: 97) {
                XCTAssertEqual(try copy.seq(ofMessage: envelopes[index].id), try log.seq(ofMessage: envelopes[index].id))
            }
            copy.close()
        }

        // A backup is a log: a writer continues it.
        let continued = try EventLog(path: backups[0])
        let start = continued.lastSeq
        do {
            let got = try await appendAll(continued, sampleEnvelopes(seed: 112, count: 3))
            XCTAssertEqual(got, [start + 1, start + 2, start + 3])
        }
        try assertVerifies(continued)
        continued.close()

        // The target must be new or empty.
        await expectLogError(.storage, "backup into a non-empty folder") { try log.backup(to: backups[0]) }
    }
}
