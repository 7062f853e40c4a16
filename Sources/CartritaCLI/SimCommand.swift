import ArgumentParser
import CartritaEnvelope
import CartritaSim
import Foundation

/// `cartrita sim --seed S --json`: one deterministic run of the whole hierarchy.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the hierarchy under the seeded simulator; the same seed prints the same digest.",
        discussion: """
            Faults: crash (the whole process dies at delivery counts the seed picks and recovers from the log and \
            snapshots with the production code), delay, duplicate, drop (at_most_once only), agent_crash, clock \
            (jumps and per-actor skew), storage (failed commits, a full log for a while, slow commits). External I/O \
            results and BUGGIFY sites come next.
            """)

    @Option(help: "The seed: the only source of entropy of the run.") var seed: UInt64?
    @Option(help: "Run every seed of FROM..TO (inclusive) and print a summary.") var sweep: String?
    @Option(help: "Most deliveries before the run stops (a run that stops with work left fails its liveness oracle).") var steps: Int = 1_000_000
    @Option(help: "Tasks the client submits.") var tasks: Int = 200
    @Option(help: "Faults: none, all, or a comma-separated list of crash, delay, duplicate, drop, agent_crash, clock, storage.")
    var faults: String = "none"
    @Option(help: "Process crashes when the crash fault is on.") var crashes: Int = 3
    @Flag(help: "Print one JSON object.") var json = false

    static let faultKinds = Simulation.Fault.allCases.map(\.rawValue)

    func faultList() throws -> [String] {
        switch self.faults {
        case "none": return []
        case "all": return Self.faultKinds
        default:
            let kinds = self.faults.split(separator: ",").map(String.init)
            for kind in kinds where !Self.faultKinds.contains(kind) {
                throw ValidationError("unknown fault \(kind); known: \(Self.faultKinds.joined(separator: ", ")), or all, or none")
            }
            return kinds
        }
    }

    func seeds() throws -> ClosedRange<UInt64>? {
        guard let sweep = self.sweep else { return nil }
        let parts = sweep.components(separatedBy: "..")
        guard parts.count == 2, let from = UInt64(parts[0]), let to = UInt64(parts[1]), from <= to else {
            throw ValidationError("--sweep is FROM..TO, two seeds with FROM <= TO, e.g. 1..500")
        }
        return from...to
    }

    func validate() throws {
        guard self.steps > 0 else { throw ValidationError("--steps must be > 0") }
        guard (self.seed == nil) != (self.sweep == nil) else { throw ValidationError("give --seed S or --sweep FROM..TO") }
        _ = try self.seeds()
        guard (0...1_000).contains(self.crashes) else { throw ValidationError("--crashes must be 0...1000") }
        _ = try self.faultList()
        guard (0...1_000_000).contains(self.tasks) else { throw ValidationError("--tasks must be 0...1000000") }
    }

    func configuration(seed: UInt64, faults: [String]) -> Simulation.Configuration {
        var configuration = Simulation.Configuration(seed: seed)
        configuration.maxDeliveries = self.steps
        configuration.tasks = self.tasks
        configuration.crashes = self.crashes
        configuration.faults = Set(faults.compactMap(Simulation.Fault.init(rawValue:)))
        return configuration
    }

    func run() async throws {
        if let seeds = try self.seeds() {
            try self.runSweep(seeds)
            return
        }
        var configuration = Simulation.Configuration(seed: self.seed!)
        let faults = try self.faultList()
        configuration = self.configuration(seed: self.seed!, faults: faults)
        let report = Simulation(configuration).run()
        let plan: JSON = .object([
            ("tasks", .int(Int64(configuration.tasks))), ("submit_window_ms", .int(configuration.submitWindowMilliseconds)),
            ("max_delay_ms", .int(configuration.maxDelayMilliseconds)), ("max_deliveries", .int(Int64(configuration.maxDeliveries))),
            ("log", .string("memory")), ("faults", .array(faults.map { .string($0) })),
            ("crash_at_deliveries", .array(report.crashPoints.map { .int(Int64($0)) })),
        ])
        if self.json {
            printJSON(.object([
                ("seed", .uint(report.seed)), ("digest", .string(report.digest)), ("passed", .bool(report.passed)),
                ("plan", plan), ("deliveries", .int(Int64(report.deliveries))), ("crashes", .int(Int64(report.crashes))),
                ("recoveries", .int(Int64(report.recoveries))),
                ("faults", .object(report.faults.map { ($0.0, .int(Int64($0.1))) })), ("buggify", .object([])),
                ("oracles", .object(report.oracles.map { ($0.0, .string($0.1)) })),
                ("virtual_ms", .int(report.virtualMilliseconds)),
            ]))
        } else {
            print("seed \(report.seed): \(report.passed ? "passed" : "FAILED"), \(report.deliveries) deliveries, digest \(report.digest)")
            for (name, verdict) in report.oracles { print("  \(name): \(verdict)") }
        }
        if !report.passed {
            FileHandle.standardError.write(Data("cartrita: seed \(report.seed) failed; reproduce with: \(self.reproduce(report.seed))\n".utf8))
            throw ExitCode(1)
        }
    }

    func reproduce(_ seed: UInt64) -> String {
        "cartrita sim --seed \(seed) --steps \(self.steps) --tasks \(self.tasks) --faults \(self.faults) --crashes \(self.crashes) --json"
    }

    /// Many seeds, one summary: how many passed, which failed (with the command for each), and
    /// the total of deliveries and faults.
    func runSweep(_ seeds: ClosedRange<UInt64>) throws {
        let faults = try self.faultList()
        let started = ContinuousClock.now
        var failed: [UInt64] = []
        var deliveries = 0
        var fired: [String: Int] = [:]
        for seed in seeds {
            let report = Simulation(self.configuration(seed: seed, faults: faults)).run()
            deliveries += report.deliveries
            for (kind, count) in report.faults { fired[kind, default: 0] += count }
            if !report.passed {
                failed.append(seed)
                FileHandle.standardError.write(Data("cartrita: seed \(seed) failed: \(report.oracles.filter { $0.1 != "ok" })\n  reproduce with: \(self.reproduce(seed))\n".utf8))
            }
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let summary: JSON = .object([
            ("from", .uint(seeds.lowerBound)), ("to", .uint(seeds.upperBound)), ("runs", .int(Int64(seeds.count))),
            ("passed", .int(Int64(seeds.count - failed.count))), ("failed", .array(failed.map { .uint($0) })),
            ("deliveries", .int(Int64(deliveries))), ("seconds", .double(seconds)),
            ("faults", .object(Simulation.Fault.allCases.compactMap { kind in fired[kind.rawValue].map { (kind.rawValue, .int(Int64($0))) } })),
        ])
        if self.json {
            printJSON(summary)
        } else {
            print("\(seeds.count - failed.count) of \(seeds.count) seeds passed, \(deliveries) deliveries in \(String(format: "%.1f", seconds)) s")
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }
}
