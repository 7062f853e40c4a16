import ArgumentParser
import CartritaEnvelope
import CartritaLog
import CartritaSim
import Foundation

/// `cartrita bench sim --json`: how fast the simulator runs the hierarchy (one core, in-memory
/// log, oracles on), with and without faults, and how much virtual time passes per real second.
struct BenchSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Benchmark the deterministic simulator.")

    @Option(help: "Seeds to run for each figure.") var seeds: Int = 10
    @Option(help: "Tasks per seed.") var tasks: Int = 2_000
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Only the in-memory figure, printed alone (for profiling).") var onlyInMemory = false

    func run() async throws {
        guard self.seeds > 0, self.tasks > 0 else { throw ValidationError("--seeds and --tasks must be > 0") }
        let plain = try self.measure(faults: [])
        if self.onlyInMemory {
            print(plain.rate.rounded())
            return
        }
        let faulty = try self.measure(faults: Set(Simulation.Fault.allCases))
        let lmdb = try self.measure(faults: [], onLMDB: true)
        let figures: [(String, JSON)] = [
            ("deliveries_per_s", .double(plain.rate.rounded())),
            ("deliveries_per_s_all_faults", .double(faulty.rate.rounded())),
            ("deliveries_per_s_lmdb", .double(lmdb.rate.rounded())),
            // Ratios within this run: the figures that stay meaningful on a noisy machine.
            ("lmdb_vs_memory", .double((lmdb.rate / plain.rate * 1000).rounded() / 1000)),
            ("sim_time_ratio", .double((plain.ratio * 10).rounded() / 10)),
            ("sim_time_ratio_all_faults", .double((faulty.ratio * 10).rounded() / 10)),
            ("deliveries", .int(Int64(plain.deliveries + faulty.deliveries + lmdb.deliveries))),
            ("passed", .bool(plain.passed && faulty.passed && lmdb.passed)),
            ("same_digests_memory_lmdb", .bool(plain.digests == lmdb.digests)),
            ("log", .string("memory")),
        ]
        if self.json {
            printJSON(.object(figures))
        } else {
            for (key, value) in figures { print("\(key): \(value.rendered())") }
        }
    }

    /// Runs the seeds; on LMDB each in a new log in a temporary folder (`fast` durability, one
    /// commit per delivery), timed without opening and removing the folders.
    func measure(faults: Set<Simulation.Fault>, onLMDB: Bool = false) throws -> (
        rate: Double, ratio: Double, deliveries: Int, passed: Bool, digests: [String]
    ) {
        var deliveries = 0
        var virtualMilliseconds: Int64 = 0
        var passed = true
        var digests: [String] = []
        var elapsed = Duration.zero
        for seed in 1...UInt64(self.seeds) {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = self.tasks
            configuration.faults = faults
            configuration.crashes = 3
            configuration.snapshotEveryDeliveries = 1_000  // production's default
            var directory: String?
            var log: EventLog?
            defer {
                log?.close()
                if let directory { try? FileManager.default.removeItem(atPath: directory) }
            }
            let simulation: Simulation
            if onLMDB {
                directory = FileManager.default.temporaryDirectory.appendingPathComponent("cartrita-bench-sim-\(getpid())-\(seed)").path
                log = try Sim.openEmptyLog(directory!)
                simulation = try Simulation(configuration, eventLog: log!)
            } else {
                simulation = Simulation(configuration)
            }
            // The run alone is timed. Without `withExtendedLifetime` the optimiser may free the
            // simulation (its log, mailboxes and every message it kept) right after `run`, before
            // the clock is read again, and the figure then counted that teardown as well.
            let report = withExtendedLifetime(simulation) {
                let started = ContinuousClock.now
                let report = simulation.run()
                elapsed += ContinuousClock.now - started
                return report
            }
            deliveries += report.deliveries
            virtualMilliseconds += report.virtualMilliseconds
            passed = passed && report.passed
            digests.append(report.digest)
        }
        let seconds = elapsed.seconds
        return (Double(deliveries) / seconds, Double(virtualMilliseconds) / 1000 / seconds, deliveries, passed, digests)
    }
}
