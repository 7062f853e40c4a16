import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Kills `cartrita demo` with SIGKILL at seeded random moments while 64 producers append, then
/// checks that every append the child acknowledged is in the log at the acknowledged seq, that
/// the log verifies and is gap-free, and that a writer can continue it.
///
/// The seed comes from `CARTRITA_CRASH_SEED` or is drawn at random; it is printed, and every
/// failure names the seed and the iteration. `CARTRITA_CRASH_ITERATIONS` overrides the count.
final class CrashTests: XCTestCase {
    static let minimumIterations = 24
    static let maximumIterations = 60
    /// The loop stops starting new iterations past this (after the minimum is done).
    static let budgetSeconds = 30.0

    func testSIGKILLNeverLosesAnAcknowledgedAppend() throws {
        let executable = try XCTUnwrap(cartritaExecutable(), "the cartrita executable next to the test bundle")
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["CARTRITA_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        let fixedIterations = environment["CARTRITA_CRASH_ITERATIONS"].flatMap { Int($0) }
        print("crash test: seed \(seed) (rerun with CARTRITA_CRASH_SEED=\(seed))")
        var random = SplitMix64(seed: seed)
        let start = ContinuousClock.now
        var iteration = 0
        var totalAcks = 0
        var totalRecords = 0
        while true {
            let elapsed = (ContinuousClock.now - start) / .seconds(1)
            if let fixedIterations {
                if iteration >= fixedIterations { break }
            } else if iteration >= Self.maximumIterations || (iteration >= Self.minimumIterations && elapsed > Self.budgetSeconds) {
                break
            }
            let durability = Durability.allCases[iteration % Durability.allCases.count]
            // Three kinds of moments: after N acknowledgements, after a delay (possibly before
            // the first commit, or during the open), and very early.
            let kind = random.next64() % 4
            let killAfterAcks: Int? = kind < 3 ? Int(50 + random.next64() % 4_951) : nil
            let killAfterMilliseconds = kind == 3 ? Int(random.next64() % 600) : nil
            let label = "seed \(seed) iteration \(iteration) (\(durability), kill after \(killAfterAcks.map { "\($0) acks" } ?? "\(killAfterMilliseconds!) ms"))"
            let (acks, records) = try self.crashOnce(
                executable: executable, durability: durability, killAfterAcks: killAfterAcks,
                killAfterMilliseconds: killAfterMilliseconds, label: label)
            totalAcks += acks
            totalRecords += records
            iteration += 1
            if self.testRun?.failureCount ?? 0 > 0 {
                print("crash test: stopping after the failure in \(label)")
                break
            }
        }
        let seconds = Double((ContinuousClock.now - start).components.seconds) + Double((ContinuousClock.now - start).components.attoseconds) / 1e18
        print("crash test: \(iteration) kills in \(String(format: "%.1f", seconds)) s, \(totalAcks) acknowledged appends checked, \(totalRecords) records verified (seed \(seed))")
        XCTAssertGreaterThanOrEqual(iteration, min(fixedIterations ?? Self.minimumIterations, Self.minimumIterations))
    }

    /// One child, one kill, one check. Returns the acknowledged count and the records found.
    func crashOnce(
        executable: URL, durability: Durability, killAfterAcks: Int?, killAfterMilliseconds: Int?, label: String
    ) throws -> (Int, Int) {
        let directory = TemporaryDirectory("crash")
        let data = directory.sub("data")
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "demo", "--data", data, "--messages", "1000000", "--producers", "64",
            "--durability", durability.rawValue, "--print-acks",
        ]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let pid = process.processIdentifier

        // Drain both pipes until EOF so the child never blocks on a full pipe; the stdout
        // reader kills the child itself the moment it has seen enough acknowledgements.
        let acks = LockedBox<[(UInt64, String)]>([])
        let stderrText = LockedBox(Data())
        let killed = LockedBox(false)
        let readersDone = DispatchGroup()
        readersDone.enter()
        Thread.detachNewThread {
            defer { readersDone.leave() }
            var pending = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            let fd = out.fileHandleForReading.fileDescriptor
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                pending += buffer[0..<count]
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    let parts = line.split(separator: " ")
                    guard parts.count == 3, parts[0] == "ACK", let seq = UInt64(parts[1]) else { continue }
                    let total = acks.update { list -> Int in
                        list.append((seq, String(parts[2])))
                        return list.count
                    }
                    if let killAfterAcks, total == killAfterAcks {
                        kill(pid, SIGKILL)
                        killed.set(true)
                    }
                }
            }
            // A partial last line (cut by the kill) is not an acknowledgement: ignore it.
        }
        readersDone.enter()
        Thread.detachNewThread {
            defer { readersDone.leave() }
            let data = err.fileHandleForReading.readDataToEndOfFile()
            stderrText.set(data)
        }

        let deadline = ContinuousClock.now + .seconds(30)
        if let killAfterMilliseconds {
            Thread.sleep(forTimeInterval: Double(killAfterMilliseconds) / 1000)
            kill(pid, SIGKILL)
            killed.set(true)
        }
        while process.isRunning && ContinuousClock.now < deadline && !killed.get() {
            Thread.sleep(forTimeInterval: 0.002)
        }
        if process.isRunning && !killed.get() {
            kill(pid, SIGKILL)
            XCTFail("\(label): the child neither reached the kill point nor exited within 30 s")
        }
        readersDone.wait()
        process.waitUntilExit()
        let acknowledged = acks.get()
        let stderr = String(decoding: stderrText.get(), as: UTF8.self)
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "\(label): the child was killed, not exited (status \(process.terminationStatus), stderr: \(stderr))")
        XCTAssertFalse(stderr.contains("append failed"), "\(label): the child reported failed appends: \(stderr)")

        // Open what the dead process left.
        let log: EventLog
        do throws(EventLogError) {
            log = try EventLog(path: data, configuration: config(readOnly: true))
        } catch {
            if acknowledged.isEmpty && (error.code == .notFound || !FileManager.default.fileExists(atPath: data + "/data.mdb")) {
                return (0, 0)  // killed before the log existed
            }
            XCTFail("\(label): cannot open the log after the kill: \(error); \(acknowledged.count) acks")
            return (acknowledged.count, 0)
        }
        let report = try log.verify()
        XCTAssertTrue(report.passed, "\(label): verify after the kill: \(report.firstProblem.map { "\($0)" } ?? "")")
        XCTAssertEqual(report.firstSeq, report.records == 0 ? 0 : 1, "\(label)")
        XCTAssertEqual(UInt64(report.records), report.lastSeq, "\(label): gap-free 1...\(report.lastSeq)")
        XCTAssertEqual(log.lastSeq, report.lastSeq, label)
        XCTAssertGreaterThanOrEqual(report.records, acknowledged.count, "\(label): at least every acknowledged record")

        var seen = Set<UInt64>()
        var lost = 0
        for (seq, idText) in acknowledged {
            XCTAssertTrue(seen.insert(seq).inserted, "\(label): seq \(seq) acknowledged twice")
            guard let id = MessageID(string: idText) else {
                XCTFail("\(label): unparsable id \(idText)")
                continue
            }
            let found = try log.seq(ofMessage: id)
            if found != seq {
                lost += 1
                if lost <= 5 { XCTFail("\(label): acknowledged \(id) at seq \(seq); the log has \(found.map(String.init) ?? "nothing")") }
                continue
            }
            if seq % 13 == 0 { XCTAssertEqual(try log.record(seq)?.envelope.id, id, "\(label): record \(seq)") }
        }
        XCTAssertEqual(lost, 0, "\(label): \(lost) of \(acknowledged.count) acknowledged appends lost")
        log.close()

        // A writer continues: the index backlog of the dead process is applied, appends go on.
        let writer = try EventLog(path: data, configuration: config(durability: durability))
        defer { writer.close() }
        let next = try writer.appendAndWait(sampleEnvelopes(seed: 1_000_003, count: 1)[0], clockMilliseconds: 0, entropy: 0)
        XCTAssertEqual(next, report.lastSeq + 1, "\(label): the next append follows the last record")
        let semaphore = DispatchSemaphore(value: 0)
        let flushed = LockedBox<Bool?>(nil)
        Task {
            do { try await writer.flush(); flushed.set(true) } catch { flushed.set(false) }
            semaphore.signal()
        }
        semaphore.wait()
        XCTAssertEqual(flushed.get(), true, label)
        for index in try writer.stat().indexes {
            XCTAssertEqual(index.appliedSeq, next, "\(label): \(index.name) index caught up")
        }
        let after = try writer.verify()
        XCTAssertTrue(after.passed, "\(label): verify after continuing: \(after.firstProblem.map { "\($0)" } ?? "")")
        return (acknowledged.count, report.records)
    }
}
