import ArgumentParser
import CartritaEnvelope
import CartritaSim
import Foundation

/// `cartrita sim --seed S --json`: one deterministic run of the whole hierarchy.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the hierarchy under the seeded simulator; the same seed prints the same digest.",
        discussion: "Faults are not injected yet: this is the simulator's first step (issue 4).")

    @Option(help: "The seed: the only source of entropy of the run.") var seed: UInt64
    @Option(help: "Most deliveries before the run stops (a run that stops with work left fails its liveness oracle).") var steps: Int = 1_000_000
    @Option(help: "Tasks the client submits.") var tasks: Int = 200
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard self.steps > 0 else { throw ValidationError("--steps must be > 0") }
        guard (0...1_000_000).contains(self.tasks) else { throw ValidationError("--tasks must be 0...1000000") }
    }

    func run() async throws {
        var configuration = Simulation.Configuration(seed: self.seed)
        configuration.maxDeliveries = self.steps
        configuration.tasks = self.tasks
        let report = Simulation(configuration).run()
        let plan: JSON = .object([
            ("tasks", .int(Int64(configuration.tasks))), ("submit_window_ms", .int(configuration.submitWindowMilliseconds)),
            ("max_delay_ms", .int(configuration.maxDelayMilliseconds)), ("max_deliveries", .int(Int64(configuration.maxDeliveries))),
            ("log", .string("memory")), ("faults", .array([])),
        ])
        if self.json {
            printJSON(.object([
                ("seed", .uint(report.seed)), ("digest", .string(report.digest)), ("passed", .bool(report.passed)),
                ("plan", plan), ("deliveries", .int(Int64(report.deliveries))), ("crashes", .int(0)), ("recoveries", .int(0)),
                ("faults", .object([])), ("buggify", .object([])),
                ("oracles", .object(report.oracles.map { ($0.0, .string($0.1)) })),
                ("virtual_ms", .int(report.virtualMilliseconds)),
            ]))
        } else {
            print("seed \(report.seed): \(report.passed ? "passed" : "FAILED"), \(report.deliveries) deliveries, digest \(report.digest)")
            for (name, verdict) in report.oracles { print("  \(name): \(verdict)") }
        }
        if !report.passed {
            FileHandle.standardError.write(Data("cartrita: seed \(report.seed) failed; reproduce with: cartrita sim --seed \(report.seed) --steps \(self.steps) --tasks \(self.tasks) --json\n".utf8))
            throw ExitCode(1)
        }
    }
}
