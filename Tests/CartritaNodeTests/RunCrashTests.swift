import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaTestSupport
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Kills `cartrita run` with SIGKILL at seeded random moments, several times on the same data
/// folder (each run recovers what the previous one left), then runs `cartrita recover` and
/// checks: every task acknowledged `completed` before a kill is among the completed tasks,
/// nothing is left pending, exactly_once tasks reached their agent once, and the log verifies.
///
/// The seed comes from `CARTRITA_CRASH_SEED` or is drawn at random, and is printed.
final class RunCrashTests: XCTestCase {
    static let kills = 6

    func testSIGKILLOfRunLosesNoAcknowledgedTaskAndRepeatsNoExactlyOnceWork() throws {
        let executable = try XCTUnwrap(cartritaExecutable(), "the cartrita executable next to the test bundle")
        let seed = ProcessInfo.processInfo.environment["CARTRITA_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("run crash test: seed \(seed) (rerun with CARTRITA_CRASH_SEED=\(seed))")
        var random = SplitMix64(seed: seed)
        let directory = TemporaryDirectory("runcrash")
        let data = directory.path + "/data"
        var acknowledged: [String: String] = [:]
        for kill in 0..<Self.kills {
            let durability = Durability.allCases[kill % Durability.allCases.count]
            let killAfter = Int(50 + random.next64() % 3_000)
            let label = "seed \(seed) kill \(kill) (\(durability), after \(killAfter) acks)"
            let lines = try self.runAndKill(
                executable, ["run", "--data", data, "--tasks", "1000000", "--durability", durability.rawValue, "--concurrency", "256"],
                killAfterLines: killAfter, label: label)
            for line in lines {
                let parts = line.split(separator: " ")
                guard parts.count == 2 else { continue }
                XCTAssertTrue(["completed", "failed"].contains(parts[1]), "\(label): status \(parts[1])")
                acknowledged[String(parts[0])] = String(parts[1])
            }
        }
        XCTAssertGreaterThan(acknowledged.count, 0)

        // Recover: finish what is owed, list the completed tasks.
        let ids = directory.path + "/ids.txt"
        let output = try self.runToEnd(executable, ["recover", "--data", data, "--json", "--ids", ids])
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any], output)
        XCTAssertEqual(json["pending"] as? Int, 0, "nothing left pending: \(output)")
        XCTAssertEqual(json["finished"] as? Bool, true)
        let completed = Set(try String(contentsOfFile: ids, encoding: .utf8).split(separator: "\n").map(String.init))
        let lost = acknowledged.filter { $0.value == "completed" && !completed.contains($0.key) }
        XCTAssertTrue(lost.isEmpty, "seed \(seed): \(lost.count) acknowledged tasks are not completed after recovery, e.g. \(lost.keys.prefix(3))")

        // A second recover prints the same digests.
        let again = try self.runToEnd(executable, ["recover", "--data", data, "--json"])
        let json2 = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(again.utf8)) as? [String: Any])
        XCTAssertEqual(
            (json["actors"] as? [String: [String: Any]])?.mapValues { $0["digest"] as? String },
            (json2["actors"] as? [String: [String: Any]])?.mapValues { $0["digest"] as? String })

        // The log: verifies; exactly_once tasks reached their agent once.
        let log = try EventLog(path: data, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        let report = try log.verify()
        XCTAssertTrue(report.passed, "seed \(seed): \(report.firstProblem.map { "\($0)" } ?? "")")
        var exactlyOnce = Set<MessageID>()
        var agentDeliveries: [MessageID: Int] = [:]
        for record in try log.records() {
            let envelope = record.envelope
            guard case .taskRequest = envelope.payload else { continue }
            if envelope.sender.kind == "client" && envelope.deliveryMode == .exactlyOnce { exactlyOnce.insert(envelope.correlationID) }
            if envelope.recipient.kind == "agent" { agentDeliveries[envelope.correlationID, default: 0] += 1 }
        }
        var repeated = 0
        for task in exactlyOnce where (agentDeliveries[task] ?? 0) > 1 { repeated += 1 }
        XCTAssertEqual(repeated, 0, "seed \(seed): \(repeated) exactly_once tasks reached their agent more than once")
        let completedExactlyOnce = exactlyOnce.filter { completed.contains($0.description) }
        XCTAssertTrue(completedExactlyOnce.allSatisfy { agentDeliveries[$0] == 1 })
        print("run crash test: \(Self.kills) kills, \(acknowledged.count) acknowledged tasks, \(completed.count) completed, \(exactlyOnce.count) exactly_once (seed \(seed))")
    }

    /// Runs the command until it has printed `killAfterLines` lines, then SIGKILLs it.
    func runAndKill(_ executable: URL, _ arguments: [String], killAfterLines: Int, label: String) throws -> [String] {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        var lines: [String] = []
        var pending = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let fd = out.fileHandleForReading.fileDescriptor
        var killed = false
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: 0x0A) {
                lines.append(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
                if !killed && lines.count >= killAfterLines {
                    Glibc.kill(pid, SIGKILL)
                    killed = true
                }
            }
        }
        process.waitUntilExit()
        XCTAssertTrue(killed, "\(label): the run ended before the kill point")
        return lines  // a partial last line (cut by the kill) is not an acknowledgement
    }

    func runToEnd(_ executable: URL, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "\(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        return String(decoding: data, as: UTF8.self)
    }
}

/// The `cartrita` executable built next to the test bundle (or `CARTRITA_BIN`).
func cartritaExecutable() -> URL? { CartritaBinary.url() }
