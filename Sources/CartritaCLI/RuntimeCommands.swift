import ArgumentParser
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation
import Synchronization

// MARK: - cartrita run

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run tasks through the in-process hierarchy; print `TASK_ID STATUS` as each is acknowledged.",
        discussion: """
            Recovers the log first (earlier work that is owed is finished too), then submits the tasks with at \
            most --concurrency in flight. A task is acknowledged once its answer to the client is in the log, so \
            the process may be killed at any moment: `cartrita recover` finishes what was owed.
            """)

    @OptionGroup var options: DataOption
    @Option(help: "How many tasks to submit.") var tasks: Int
    @Option(help: "A mix file: one `TASK_TYPE DELIVERY_MODE WEIGHT` per line (default: the standard mix).") var mix: String?
    @Option(help: "durable, relaxed or fast.") var durability: Durability = .durable
    @Option(help: "Most tasks in flight at once.") var concurrency: Int = 1_024
    @Option(help: "Seed of the generated task inputs (default: from the log's position).") var seed: UInt64?
    @Option(help: "Snapshot each actor after this many deliveries.") var snapshotEvery: Int = 1_000

    func validate() throws {
        guard self.tasks >= 0 else { throw ValidationError("--tasks must be >= 0") }
        guard (1...1_000_000).contains(self.concurrency) else { throw ValidationError("--concurrency must be 1...1000000") }
        guard self.snapshotEvery >= 1 else { throw ValidationError("--snapshot-every must be >= 1") }
    }

    func run() async throws {
        let workload = try loadWorkload(self.mix)
        let log = openLog(self.options.data, durability: self.durability)
        let window = TaskWindow(capacity: self.concurrency)
        let observer: @Sendable (Address, Envelope, UInt64) -> Void = { _, envelope, _ in
            guard let outcome = ClientMachine.outcome(envelope) else { return }
            printFlushed("\(envelope.correlationID) \(outcome.rawValue)")
            window.release()
        }
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = self.snapshotEvery
        let (node, report): (Node, Recovery.Report)
        do {
            (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: observer)
        } catch {
            fail("\(error)")
        }
        if let divergence = report.divergence { fail("recovery stopped: \(divergence)") }
        let seed = self.seed ?? report.lastSeq
        var submitted = 0
        while submitted < self.tasks {
            if let failure = node.storageFailure { fail("\(failure)") }
            // Answers to owed tasks of an earlier run release places too: the window is loose
            // by that many, which only lets a few more in at first.
            await window.acquire()
            let (request, mode) = workload.task(seed: seed, index: submitted)
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
            submitted += 1
        }
        if let failure = await node.waitUntilIdle() { fail("\(failure)") }
        await node.shutdown()
        log.close()
    }
}

func loadWorkload(_ path: String?) throws -> Workload {
    guard let path else { return .standard }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read the mix file \(path)") }
    do {
        return try Workload.parse(text)
    } catch {
        throw ValidationError("\(path): \(error)")
    }
}

extension Recovery.Handlers: ExpressibleByArgument {}

// MARK: - cartrita recover

struct Recover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild every actor from snapshots plus replay, finish what is owed, print the actors' digests.")

    @OptionGroup var options: DataOption
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: "Write the ids of all completed tasks to this file, one per line.") var ids: String?
    @Option(help: "Give up waiting for owed work after this many seconds.") var timeoutSeconds: Double = 120
    @Flag(help: "Ignore snapshots and replay the whole log (the digests must come out the same).") var noSnapshots = false
    @Option(help: "Handlers replay runs: all (every effect checked against the log) or stateful (stateless agents run only when their answer is owed).")
    var handlers: Recovery.Handlers = .all

    func run() async throws {
        let started = ContinuousClock.now
        let log = openLog(self.options.data)
        let (node, report): (Node, Recovery.Report)
        do {
            // A log the simulator wrote (`sim --write-log`) replays with the run's hierarchy and
            // BUGGIFY sites, which `simulation.json` beside it records.
            let origin = try SimulationOrigin.load(self.options.data)
            (node, report) = try Node.recover(
                log: log, hierarchy: origin?.hierarchy ?? .standard(), useSnapshots: !self.noSnapshots, handlers: self.handlers,
                buggify: origin?.buggify)
        } catch {
            fail("\(error)")
        }
        let recoverySeconds = (ContinuousClock.now - started).seconds
        if let divergence = report.divergence {
            if self.json {
                printJSON(.object([
                    ("divergence", .object([
                        ("seq", .uint(divergence.seq)), ("actor", .string(divergence.actor.rawValue)),
                        ("message", .string(divergence.message)), ("logged", .string(divergence.logged)),
                        ("replayed", .string(divergence.replayed)),
                    ])),
                    ("recovery_s", .double(recoverySeconds)),
                ]))
            } else {
                print(divergence)
            }
            log.close()
            throw ExitCode(2)
        }
        // Finish what recovery owes: resumed deliveries and timers.
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await node.waitUntilIdle() == nil }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(self.timeoutSeconds * 1e9))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if let failure = node.storageFailure { fail("\(failure)") }
        let totals = await node.taskTotals()
        let digests = await node.digests()
        await node.shutdown()
        if let path = self.ids {
            do {
                try writeCompletedIDs(log, to: path)
            } catch {
                fail("\(error)")
            }
        }
        log.close()
        let actors: [(String, JSON)] = digests.map { digest in
            (digest.address.rawValue, .object([("last_seq", .uint(digest.lastSeq)), ("digest", .string(digest.digest))]))
        }
        if self.json {
            printJSON(.object([
                ("actors", .object(actors)),
                ("completed", .int(Int64(totals.completed))), ("failed", .int(Int64(totals.failed))),
                ("pending", .int(Int64(totals.pending))), ("recovery_s", .double(recoverySeconds)),
                ("resumed", .int(Int64(report.pending.count))), ("replayed", .int(Int64(report.recordsReplayed))),
                ("from_snapshots", .int(Int64(report.cellsFromSnapshots))), ("scan_from_seq", .uint(report.scanFromSeq)),
                ("finished", .bool(finished)),
                ("snapshots_skipped", .array(report.snapshotsSkipped.map { .string($0) })),
            ]))
        } else {
            for digest in digests { print("\(digest.address) last_seq \(digest.lastSeq) digest \(digest.digest)") }
            print("completed \(totals.completed), failed \(totals.failed), pending \(totals.pending)")
            print("recovered in \(String(format: "%.3f", recoverySeconds)) s: \(report.cellsFromSnapshots) actors from snapshots, \(report.recordsReplayed) records replayed, \(report.pending.count) owed messages resumed")
        }
        if !finished { throw ExitCode(1) }
    }
}

/// The ids of every task a client was answered `completed` for, one per line, in log order.
func writeCompletedIDs(_ log: EventLog, to path: String) throws {
    var text = ""
    let decoder = EnvelopeDecoder(limits: log.configuration.codecLimits)
    try log.scanRaw { _, bytes in
        let record = try decoder.decodeRecord(bytes)
        if record.envelope.recipient.isClient, ClientMachine.outcome(record.envelope) == .completed {
            text += "\(record.envelope.correlationID)\n"
        }
        return true
    }
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}
