import ArgumentParser
import CartritaEnvelope
import CartritaSim
import Foundation

/// `cartrita bench sim --json`: how fast the simulator runs the hierarchy (one core, in-memory
/// log, oracles on), with and without faults, and how much virtual time passes per real second.
struct BenchSim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sim", abstract: "Benchmark the deterministic simulator.")

    @Option(help: "Seeds to run for each figure.") var seeds: Int = 10
    @Option(help: "Tasks per seed.") var tasks: Int = 2_000
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        guard self.seeds > 0, self.tasks > 0 else { throw ValidationError("--seeds and --tasks must be > 0") }
        let plain = self.measure(faults: [])
        let faulty = self.measure(faults: Set(Simulation.Fault.allCases))
        let figures: [(String, JSON)] = [
            ("deliveries_per_s", .double(plain.rate.rounded())),
            ("deliveries_per_s_all_faults", .double(faulty.rate.rounded())),
            ("sim_time_ratio", .double((plain.ratio * 10).rounded() / 10)),
            ("sim_time_ratio_all_faults", .double((faulty.ratio * 10).rounded() / 10)),
            ("deliveries", .int(Int64(plain.deliveries + faulty.deliveries))),
            ("passed", .bool(plain.passed && faulty.passed)),
            ("log", .string("memory")),
        ]
        if self.json {
            printJSON(.object(figures))
        } else {
            for (key, value) in figures { print("\(key): \(value.rendered())") }
        }
    }

    func measure(faults: Set<Simulation.Fault>) -> (rate: Double, ratio: Double, deliveries: Int, passed: Bool) {
        var deliveries = 0
        var virtualMilliseconds: Int64 = 0
        var passed = true
        let started = ContinuousClock.now
        for seed in 1...UInt64(self.seeds) {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = self.tasks
            configuration.faults = faults
            configuration.crashes = 3
            configuration.snapshotEveryDeliveries = 1_000  // production's default
            let report = Simulation(configuration).run()
            deliveries += report.deliveries
            virtualMilliseconds += report.virtualMilliseconds
            passed = passed && report.passed
        }
        let seconds = (ContinuousClock.now - started).seconds
        return (Double(deliveries) / seconds, Double(virtualMilliseconds) / 1000 / seconds, deliveries, passed)
    }
}
