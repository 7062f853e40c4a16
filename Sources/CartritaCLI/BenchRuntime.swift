import ArgumentParser
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation
import Synchronization

/// `cartrita bench runtime --json`: tasks per second end to end (client → orchestrator →
/// supervisor → agent and back, six durably logged deliveries per task under group commit) at
/// several concurrencies with latency percentiles; replay speed; and recovery of a large log
/// with and without snapshots.
struct BenchRuntime: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "runtime", abstract: "Benchmark the runtime end to end.")

    @Option(help: "Seconds each concurrency runs.") var seconds: Double = 3
    @Option(help: "Concurrencies (tasks in flight) to measure, comma-separated.") var concurrencies: String = "64,256,1024"
    @Option(help: "durable, relaxed or fast.") var durability: Durability = .durable
    @Option(help: "Messages in the log built for the recovery figures (0: skip them).") var messages: Int = 1_000_000
    @Option(help: "Keep the recovery log in this folder (it must not exist yet).") var data: String?
    @Option(help: "Measure replay and recovery only, on this existing log (kept as it is; recovery only reads it): a quick loop for replay work.")
    var log: String?
    @Option(help: "With --log: replay it this many times without snapshots, running these handlers (all or stateful), and print each rate (a loop to profile).")
    var replayOnly: Recovery.Handlers?
    @Option(help: "With --replay-only: how many replays.") var repeats: Int = 1
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        let scratch = NSTemporaryDirectory() + "cartrita-bench-runtime-\(getpid())"
        try? FileManager.default.removeItem(atPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let levels = self.concurrencies.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        guard !levels.isEmpty else { throw ValidationError("--concurrencies needs at least one positive number") }

        if let existing = self.log, let handlers = self.replayOnly {
            let log = try EventLog(path: existing, configuration: EventLogConfiguration(durability: .durable))
            defer { log.close() }
            for _ in 0..<max(1, self.repeats) {
                // CPU time as well as wall time: on a shared machine the wall time says more
                // about the neighbours than about the change. The scan runs on this thread.
                let threadCPU = Self.cpuSeconds(CLOCK_THREAD_CPUTIME_ID)
                let processCPU = Self.cpuSeconds(CLOCK_PROCESS_CPUTIME_ID)
                let started = ContinuousClock.now
                let (cells, report) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false, handlers: handlers).run()
                let seconds = (ContinuousClock.now - started).seconds
                let replayThreadCPU = Self.cpuSeconds(CLOCK_THREAD_CPUTIME_ID) - threadCPU
                let allThreadsCPU = Self.cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - processCPU
                // The digests `recover --json` prints, to check a change to replay against.
                let actors: [(String, JSON)] = cells.sorted { $0.address < $1.address }.map { cell in
                    (cell.address.rawValue, .object([("last_seq", .uint(cell.lastSeq)), ("digest", .string(Recovery.digest(of: cell)))]))
                }
                printJSON(.object([
                    ("handlers", .string(handlers.rawValue)), ("replay_messages_per_s", .double((Double(report.recordsReplayed) / seconds).rounded())),
                    ("seconds", .double(seconds)), ("replay_thread_cpu_s", .double(replayThreadCPU)), ("process_cpu_s", .double(allThreadsCPU)),
                    ("divergence", .bool(report.divergence != nil)), ("owed", .int(Int64(report.pending.count))),
                    ("actors", .object(actors)),
                ]))
            }
            return
        }
        if let existing = self.log {
            let figures = try Self.recoveryFigures(path: existing)
            if self.json {
                printJSON(.object(figures))
            } else {
                for (key, value) in figures { print("\(key): \(value.rendered())") }
            }
            return
        }

        // Throughput and latency, a fresh log per concurrency.
        var byConcurrency: [(String, JSON)] = []
        var best: (rate: Double, p50: Double, p99: Double, concurrency: Int) = (0, 0, 0, 0)
        for (index, concurrency) in levels.enumerated() {
            let path = scratch + "/throughput-\(index)"
            let result = try await Self.measure(path: path, durability: self.durability, concurrency: concurrency, seconds: self.seconds, tasks: nil)
            let writer = result.writer
            let commitsPerSecond = (Double(writer.batches) / result.elapsedSeconds).rounded()
            let recordsPerCommit = (writer.averageBatchRecords * 10).rounded() / 10
            let commitMilliseconds = (writer.averageCommitMilliseconds * 1000).rounded() / 1000
            // Share of the wall time the writer spent inside commits (near 1: the log is the bottleneck).
            let commitShare = (Double(writer.commitNanoseconds) / 1e9 / result.elapsedSeconds * 100).rounded() / 100
            // Where the rest of the writer's wall time went: building the batch (records, hashes,
            // puts) against LMDB's commit proper (pages and sync), answering (with the steps the
            // answer hooks run on the writer's thread), lingering for a batch, indexing.
            func share(_ nanoseconds: Int64) -> JSON { .double((Double(nanoseconds) / 1e9 / result.elapsedSeconds * 1000).rounded() / 1000) }
            let figures: [(String, JSON)] = [
                ("tasks_per_s", .double(result.rate.rounded())), ("p50_ms", .double(result.p50)), ("p99_ms", .double(result.p99)),
                ("tasks", .int(Int64(result.tasks))), ("messages_per_task", .double(result.messagesPerTask)),
                ("log_commits_per_s", .double(commitsPerSecond)), ("records_per_commit", .double(recordsPerCommit)),
                ("commit_ms_mean", .double(commitMilliseconds)), ("writer_commit_share", .double(commitShare)),
                ("writer_build_share", share(writer.commitBuildNanoseconds)),
                ("writer_lmdb_commit_share", share(writer.commitNanoseconds - writer.commitBuildNanoseconds)),
                ("writer_answer_share", share(writer.answerNanoseconds)), ("writer_linger_share", share(writer.lingerNanoseconds)),
                ("writer_index_share", share(writer.indexNanoseconds)),
                ("writer_other_share", share(writer.otherNanoseconds)),
                ("writer_other_requests_per_s", .double((Double(writer.otherRequests) / result.elapsedSeconds).rounded())),
                // CPU per task says more than the rate on a shared machine; cores used, how near the 2 it runs.
                ("cpu_us_per_task", .double(result.tasks == 0 ? 0 : (result.cpuSeconds / Double(result.tasks) * 1e7).rounded() / 10)),
                ("cpu_cores", .double((result.cpuSeconds / result.elapsedSeconds * 100).rounded() / 100)),
            ]
            byConcurrency.append(("\(concurrency)", .object(figures)))
            if result.rate > best.rate { best = (result.rate, result.p50, result.p99, concurrency) }
            try? FileManager.default.removeItem(atPath: path)
        }

        // A large log for replay and recovery: the same workload, until it holds `messages` records.
        var recovery: [(String, JSON)] = []
        if self.messages > 0 {
            let path = self.data ?? scratch + "/recovery"
            let messagesPerTask = 6.0
            let tasks = Int((Double(self.messages) / messagesPerTask).rounded(.up))
            // Built like a process that is then killed: no snapshots at the end, only the
            // periodic ones, so recovery replays each actor's tail as it would after a crash.
            let built = try await Self.measure(
                path: path, durability: .fast, concurrency: levels.max()!, seconds: nil, tasks: tasks, snapshotAtEnd: false)
            recovery = try Self.recoveryFigures(path: path) + [("build_tasks_per_s_fast", .double(built.rate.rounded()))]
        }

        let figures: [(String, JSON)] = [
            ("tasks_per_s", .double(best.rate.rounded())), ("p50_ms", .double(best.p50)), ("p99_ms", .double(best.p99)),
            ("at_concurrency", .int(Int64(best.concurrency))), ("durability", .string(self.durability.rawValue)),
            ("by_concurrency", .object(byConcurrency)),
        ] + recovery
        if self.json {
            printJSON(.object(figures))
        } else {
            for (key, value) in figures { print("\(key): \(value.rendered())") }
        }
    }

    /// Recovery of the log at `path` with snapshots, then replay of all of it without them: the
    /// stateful actors' handlers, then every handler.
    static func recoveryFigures(path: String) throws -> [(String, JSON)] {
        let log = try EventLog(path: path, configuration: EventLogConfiguration(durability: .durable))
        defer { log.close() }
        let started = ContinuousClock.now
        let (_, withSnapshots) = try Recovery(log: log, hierarchy: .standard()).run()
        let withSnapshotsSeconds = (ContinuousClock.now - started).seconds
        let startedFull = ContinuousClock.now
        let (_, full) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false, handlers: .stateful).run()
        let fullSeconds = (ContinuousClock.now - startedFull).seconds
        let startedAll = ContinuousClock.now
        let (_, all) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false, handlers: .all).run()
        let allSeconds = (ContinuousClock.now - startedAll).seconds
        return [
            ("replay_messages_per_s", .double((Double(full.recordsReplayed) / fullSeconds).rounded())),
            ("recovery_s_1m_snapshots", .double(withSnapshotsSeconds)),
            ("recovery_s_1m_no_snapshots", .double(fullSeconds)),
            ("replay_messages_per_s_all_handlers", .double((Double(all.recordsReplayed) / allSeconds).rounded())),
            ("recovery_log_messages", .uint(full.lastSeq)),
            ("recovery_records_replayed_with_snapshots", .int(Int64(withSnapshots.recordsReplayed))),
            ("recovery_scan_from_seq_with_snapshots", .uint(withSnapshots.scanFromSeq)),
            ("recovery_owed_messages", .int(Int64(withSnapshots.pending.count))),
            ("recovery_divergence", .bool(full.divergence != nil || withSnapshots.divergence != nil || all.divergence != nil)),
        ]
    }

    static func cpuSeconds(_ clock: clockid_t) -> Double {
        var time = timespec()
        clock_gettime(clock, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    struct Result {
        var rate: Double
        var p50: Double
        var p99: Double
        var tasks: Int
        var messagesPerTask: Double
        /// The log writer's group commits while the workload ran: where a durable run's time goes.
        var writer: WriterMetrics
        var elapsedSeconds: Double
        /// The process's CPU time while the workload ran (every thread: actors, writer, client).
        var cpuSeconds: Double
    }

    /// Runs the standard mix with `concurrency` tasks in flight for `seconds` (or until `tasks`
    /// are done) on a fresh log at `path`.
    static func measure(
        path: String, durability: Durability, concurrency: Int, seconds: Double?, tasks: Int?, snapshotAtEnd: Bool = true
    ) async throws -> Result {
        let log = try EventLog(path: path, configuration: EventLogConfiguration(durability: durability))
        let clock = ContinuousClock()
        let origin = clock.now
        let submittedAt = Mutex<[MessageID: Duration]>([:])
        let latencies = Mutex<[Double]>([])
        let window = TaskWindow(capacity: concurrency)
        let observer: @Sendable (Address, Envelope, UInt64) -> Void = { _, envelope, _ in
            guard ClientMachine.outcome(envelope) != nil else { return }
            let now = clock.now - origin
            if let start = submittedAt.withLock({ $0.removeValue(forKey: envelope.correlationID) }) {
                let milliseconds = (now - start).seconds * 1000
                latencies.withLock { $0.append(milliseconds) }
            }
            window.release()
        }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), observer: observer)
        let workload = Workload.standard
        var submitted = 0
        let cpuStarted = Self.cpuSeconds(CLOCK_PROCESS_CPUTIME_ID)
        let started = clock.now
        let deadline = seconds.map { started + .milliseconds(Int64($0 * 1000)) }
        while true {
            if let tasks, submitted >= tasks { break }
            if let deadline, clock.now >= deadline { break }
            if let failure = node.storageFailure { throw failure }
            await window.acquire()
            let (request, mode) = workload.task(seed: 42, index: submitted)
            let id = node.newID()
            submittedAt.withLock { $0[id] = clock.now - origin }
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode, id: id)
            submitted += 1
        }
        if let failure = await node.waitUntilIdle() { throw failure }
        let elapsed = (clock.now - started).seconds
        let writer = log.writerMetrics
        let cpu = Self.cpuSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpuStarted
        if snapshotAtEnd {
            await node.shutdown()
        } else {
            try? await log.flush()
        }
        let messages = log.lastSeq
        log.close()
        var sorted = latencies.withLock { $0 }
        sorted.sort()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return (sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000).rounded() / 1000
        }
        return Result(
            rate: Double(submitted) / elapsed, p50: percentile(0.5), p99: percentile(0.99), tasks: submitted,
            messagesPerTask: submitted == 0 ? 0 : (Double(messages) / Double(submitted) * 100).rounded() / 100,
            writer: writer, elapsedSeconds: elapsed, cpuSeconds: cpu)
    }
}
