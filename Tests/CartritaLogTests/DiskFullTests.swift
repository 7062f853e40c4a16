import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

/// A real full disk: a 2 MiB tmpfs mounted for the test (needs root; skipped otherwise).
final class DiskFullTests: XCTestCase {
    func testFullFileSystemGivesDiskFullAndLeavesTheLogIntact() async throws {
        let mountPoint = NSTemporaryDirectory() + "cartrita-diskfull-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        guard Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (needs root)")
        }
        defer { _ = Self.run("/bin/umount", [mountPoint]) }

        let path = mountPoint + "/log"
        var acknowledged: [(UInt64, MessageID)] = []
        var diskFull = 0
        var other: [String] = []
        do {
            let log = try EventLog(path: path, configuration: EventLogConfiguration(initialMapSizeBytes: 64 << 20))
            var traffic = SampleTraffic(seed: 11)
            for _ in 0..<4000 {
                let envelope = traffic.next()
                do {
                    let seq = try await log.append(envelope, clockMilliseconds: envelope.timestampMilliseconds, entropy: 1)
                    acknowledged.append((seq, envelope.id))
                } catch where error.code == .diskFull {
                    diskFull += 1
                } catch {
                    other.append("\(error)")
                }
            }
            log.close()
        }
        XCTAssertGreaterThan(acknowledged.count, 100, "some records fit in 2 MiB")
        XCTAssertGreaterThan(diskFull, 0, "the file system filled up and said so")
        XCTAssertEqual(other, [], "every failure is named disk_full")

        // Nothing acknowledged is lost, the chain verifies.
        let log = try EventLog(path: path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        XCTAssertEqual(log.lastSeq, UInt64(acknowledged.count))
        for (seq, id) in acknowledged {
            XCTAssertEqual(try log.seq(ofMessage: id), seq)
        }
        let report = try log.verify()
        XCTAssertTrue(report.passed, "\(String(describing: report.firstProblem))")
        XCTAssertEqual(report.records, acknowledged.count)
    }

    static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
