import ArgumentParser
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import CartritaTravel
import Foundation

/// `cartrita bench travel --json`: how fast time travel answers at random points of a large log
/// (default snapshots), and how fast a capsule of its last records replays offline.
struct BenchTravel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "travel", abstract: "Benchmark time travel and capsule replay on a large log.")

    @Option(help: "Messages in the log (built like `bench runtime` builds its recovery log).") var messages: Int = 1_000_000
    @Option(help: "Random points to travel to.") var points: Int = 50
    @Option(help: "Records in the replayed capsule (the log's last ones).") var capsuleRecords: Int = 100_000
    @Option(help: "Keep the log in this folder and reuse it when it is there already.") var data: String?
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        guard self.messages > 0, self.points > 0, self.capsuleRecords > 0 else {
            throw ValidationError("--messages, --points and --capsule-records must be > 0")
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cartrita-bench-travel-\(getpid())").path
        let path = self.data ?? scratch
        defer { if self.data == nil { try? FileManager.default.removeItem(atPath: scratch) } }
        if !FileManager.default.fileExists(atPath: path + "/data.mdb") {
            // Built like a process that is then killed: periodic snapshots only.
            _ = try await BenchRuntime.measure(
                path: path, durability: .fast, concurrency: 1024, seconds: nil, tasks: Int((Double(self.messages) / 6).rounded(.up)),
                snapshotAtEnd: false)
        }
        let log = try EventLog(path: path, configuration: EventLogConfiguration(readOnly: true))
        defer { log.close() }
        let lastSeq = log.lastSeq

        // Travel: every actor's state at points drawn from a fixed seed (the same points each run).
        var random = SplitMix64(seed: 0x7472_6176_656C)
        var milliseconds: [Double] = []
        for _ in 0..<self.points {
            let at = 1 + random.next64() % lastSeq
            let started = ContinuousClock.now
            _ = try TimeTravel(log: log).state(at: at)
            milliseconds.append((ContinuousClock.now - started).seconds * 1000)
        }
        milliseconds.sort()
        func percentile(_ p: Double) -> Double {
            milliseconds[min(milliseconds.count - 1, Int((Double(milliseconds.count) * p).rounded(.up)) - 1)]
        }

        // Capsule: export the last records, encode, decode, replay offline.
        let from = lastSeq > UInt64(self.capsuleRecords) ? lastSeq - UInt64(self.capsuleRecords) + 1 : 1
        let capsule = try Capsule.decode(try TimeTravel(log: log).exportCapsule(from: from, to: lastSeq).encode())
        let report = try capsule.replay()
        let exact = report.passed
        let figures: [(String, JSON)] = [
            ("travel_ms_p50", .double((percentile(0.5) * 10).rounded() / 10)),
            ("travel_ms_p99", .double((percentile(0.99) * 10).rounded() / 10)),
            ("travel_ms_max", .double((milliseconds.last! * 10).rounded() / 10)),
            ("capsule_replay_messages_per_s", .double(report.messagesPerSecond.rounded())),
            ("capsule_records", .int(Int64(report.records))),
            ("capsule_bit_exact", .bool(exact)),
            ("log_messages", .uint(lastSeq)),
            ("points", .int(Int64(self.points))),
        ]
        if self.json {
            printJSON(.object(figures))
        } else {
            for (key, value) in figures { print("\(key): \(value.rendered())") }
        }
        if !exact { throw ExitCode(2) }
    }
}
