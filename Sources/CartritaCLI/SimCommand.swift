import ArgumentParser
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaSim
import Foundation

/// How a log the simulator wrote was made (`simulation.json` beside it): the tools that replay
/// it (recover, travel) need the run's hierarchy (its agents' crash rate) and BUGGIFY sites,
/// which are configuration, not records.
struct SimulationOrigin {
    var seed: UInt64
    var faults: Set<Simulation.Fault>
    var buggifyMask: UInt64

    static let fileName = "simulation.json"

    /// nil when the folder holds no simulation's log; a damaged file is an error, not a guess.
    static func load(_ directory: String) throws -> SimulationOrigin? {
        let path = directory + "/" + Self.fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let seed = (object["seed"] as? NSNumber)?.uint64Value,
            let faults = object["faults"] as? [String],
            let mask = (object["buggify_mask"] as? NSNumber)?.uint64Value
        else {
            throw ValidationError("\(path) is not a simulation's description (seed, faults, buggify_mask)")
        }
        var kinds: Set<Simulation.Fault> = []
        for name in faults {
            guard let kind = Simulation.Fault(rawValue: name) else { throw ValidationError("\(path): unknown fault \(name)") }
            kinds.insert(kind)
        }
        return SimulationOrigin(seed: seed, faults: kinds, buggifyMask: mask)
    }

    var hierarchy: Hierarchy {
        var configuration = Simulation.Configuration(seed: self.seed)
        configuration.faults = self.faults
        return Simulation.hierarchy(for: configuration)
    }

    var buggify: Buggify? { self.buggifyMask == 0 ? nil : Buggify(enabledMask: self.buggifyMask) }
}

enum SimulationLogKind: String, ExpressibleByArgument {
    case memory, lmdb
}

/// `cartrita sim --seed S --json`: one deterministic run of the whole hierarchy.
struct Sim: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the hierarchy under the seeded simulator; the same seed prints the same digest.",
        discussion: """
            Faults: crash (the whole process dies at delivery counts the seed picks and recovers from the log and \
            snapshots with the production code), delay, duplicate, drop (at_most_once only), agent_crash, clock \
            (jumps and per-actor skew), storage (failed commits, a full log for a while, slow commits), restart_storm \
            (one agent crashes on every request for a while: restarts, escalation, the supervisor's cool-down), \
            tail_loss (half the crashes are power losses: relaxed and fast logs lose their unsynced tail), buggify \
            (the runtime's rare-path sites, each on or off per seed, firing at random; counted under "buggify"), io \
            (external I/O results: calls through the I/O gateway fail, time out or answer late).
            """)

    @Option(help: "The seed: the only source of entropy of the run.") var seed: UInt64?
    @Option(help: "Run every seed of FROM..TO (inclusive) and print a summary.") var sweep: String?
    @Option(help: "Most deliveries before the run stops (a run that stops with work left fails its liveness oracle).") var steps: Int = 1_000_000
    @Option(help: "Tasks the client submits.") var tasks: Int = 200
    @Option(help: "Faults: none, all, or a comma-separated list of crash, delay, duplicate, drop, agent_crash, clock, storage, restart_storm, tail_loss, buggify, io.")
    var faults: String = "none"
    @Option(help: "The log's durability mode (decides what tail_loss takes): durable, relaxed or fast; default: from the seed when tail_loss is on, else durable.")
    var durability: Durability?
    @Option(help: "Process crashes when the crash fault is on.") var crashes: Int = 3
    @Option(help: "The log: memory (fast) or lmdb (the real event log; with --data it stays in DIR for recover, travel and log).")
    var log: SimulationLogKind = .memory
    @Option(help: "With --log lmdb: the folder of the run's log (new or empty). Default: a temporary folder, removed after.")
    var data: String?
    @Option(help: "Also write the run's log to this folder (new or empty), for the time-travel tools: the seed runs again on LMDB, same digest.")
    var writeLog: String?
    @Flag(help: "Print one JSON object.") var json = false

    static let faultKinds = Simulation.Fault.allCases.map(\.rawValue)

    func faultList() throws -> [String] {
        switch self.faults {
        case "none": return []
        case "all":
            // A power loss truncates the log: only the in-memory one can.
            return self.log == .lmdb ? Self.faultKinds.filter { $0 != Simulation.Fault.tailLoss.rawValue } : Self.faultKinds
        default:
            let kinds = self.faults.split(separator: ",").map(String.init)
            for kind in kinds where !Self.faultKinds.contains(kind) {
                throw ValidationError("unknown fault \(kind); known: \(Self.faultKinds.joined(separator: ", ")), or all, or none")
            }
            if self.log == .lmdb && kinds.contains(Simulation.Fault.tailLoss.rawValue) {
                throw ValidationError("tail_loss needs --log memory: an LMDB log's records are never rewritten")
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
        if self.data != nil && self.log != .lmdb { throw ValidationError("--data is the folder of an LMDB log: give --log lmdb too") }
        if self.sweep != nil && (self.data != nil || self.writeLog != nil) {
            throw ValidationError("--data and --write-log take one seed's log: use --seed S")
        }
    }

    func configuration(seed: UInt64, faults: [String]) -> Simulation.Configuration {
        var configuration = Simulation.Configuration(seed: seed)
        configuration.maxDeliveries = self.steps
        configuration.tasks = self.tasks
        configuration.crashes = self.crashes
        configuration.faults = Set(faults.compactMap(Simulation.Fault.init(rawValue:)))
        configuration.durability = self.durability
        return configuration
    }

    func run() async throws {
        if let seeds = try self.seeds() {
            try self.runSweep(seeds)
            return
        }
        let faults = try self.faultList()
        let configuration = self.configuration(seed: self.seed!, faults: faults)
        let simulation: Simulation
        var eventLog: EventLog?
        var temporary: String?
        switch self.log {
        case .memory:
            simulation = Simulation(configuration)
        case .lmdb:
            let directory = self.data ?? FileManager.default.temporaryDirectory.appendingPathComponent("cartrita-sim-\(getpid())-\(self.seed!)").path
            if self.data == nil { temporary = directory }
            let log = try Self.openEmptyLog(directory)
            eventLog = log
            simulation = try Simulation(configuration, eventLog: log)
        }
        defer {
            eventLog?.close()
            if let temporary { try? FileManager.default.removeItem(atPath: temporary) }
        }
        let plan: JSON = .object([
            ("tasks", .int(Int64(configuration.tasks))), ("submit_window_ms", .int(configuration.submitWindowMilliseconds)),
            ("max_delay_ms", .int(configuration.maxDelayMilliseconds)), ("max_deliveries", .int(Int64(configuration.maxDeliveries))),
            ("log", .string(self.log.rawValue)), ("durability", .string(simulation.durability.rawValue)),
            ("faults", .array(faults.map { .string($0) })),
            ("crash_at_deliveries", .array(simulation.plannedCrashPoints.map { .int(Int64($0)) })),
            ("restart_storms", .array(simulation.plannedStorms.map { storm in
                .object([("agent", .string(storm.agent.rawValue)), ("at_delivery", .int(Int64(storm.atDelivery))), ("ms", .int(storm.milliseconds))])
            })),
            ("buggify_sites", .array(simulation.buggify?.report.map { .string($0.0) } ?? [])),
        ])
        if !self.json { print("seed \(self.seed!): plan \(plan.rendered())") }
        let report = simulation.run()
        if self.log == .lmdb, let directory = self.data { try self.writeOrigin(of: simulation, report: report, to: directory) }
        var written: String?
        if let target = self.writeLog {
            written = try self.writeLog(of: simulation, report: report, to: target)
        }
        if self.json {
            printJSON(.object([
                ("seed", .uint(report.seed)), ("digest", .string(report.digest)), ("passed", .bool(report.passed)),
                ("plan", plan), ("deliveries", .int(Int64(report.deliveries))), ("crashes", .int(Int64(report.crashes))),
                ("recoveries", .int(Int64(report.recoveries))),
                ("faults", .object(report.faults.map { ($0.0, .int(Int64($0.1))) })),
                ("buggify", .object(report.buggify.map { ($0.0, .int(Int64($0.1))) })),
                ("tail_records_lost", .int(Int64(report.tailRecordsLost))),
                ("oracles", .object(report.oracles.map { ($0.0, .string($0.1)) })),
                ("virtual_ms", .int(report.virtualMilliseconds)),
                ("log_written_to", written.map { .string($0) } ?? .null),
            ]))
        } else {
            print("seed \(report.seed): \(report.passed ? "passed" : "FAILED"), \(report.deliveries) deliveries, digest \(report.digest)")
            for (name, verdict) in report.oracles { print("  \(name): \(verdict)") }
            if !report.buggify.isEmpty { print("  buggify: " + report.buggify.map { "\($0.0)=\($0.1)" }.joined(separator: " ")) }
            if let written { print("  log written to \(written) (cartrita log dump --data \(written))") }
        }
        if !report.passed {
            var message = "cartrita: seed \(report.seed) failed; reproduce with: \(self.reproduce(report.seed))\n"
            if written == nil { message += "  write its log for the time-travel tools with: \(self.reproduce(report.seed)) --write-log ./sim-\(report.seed)\n" }
            FileHandle.standardError.write(Data(message.utf8))
            throw ExitCode(1)
        }
    }

    /// `simulation.json` beside a log the simulator wrote: how to make the run again, and what
    /// replaying it needs (`SimulationOrigin`).
    func writeOrigin(of simulation: Simulation, report: SimulationReport, to directory: String) throws {
        let note: JSON = .object([
            ("seed", .uint(report.seed)), ("digest", .string(report.digest)), ("passed", .bool(report.passed)),
            ("command", .string(self.reproduce(report.seed))),
            ("faults", .array(simulation.configuration.faults.map(\.rawValue).sorted().map { .string($0) })),
            ("buggify_mask", .uint(simulation.buggify?.enabledMask ?? 0)),
            ("records", .uint(simulation.records.last?.header.seq ?? 0)),
        ])
        try (note.rendered() + "\n").write(toFile: directory + "/" + SimulationOrigin.fileName, atomically: true, encoding: .utf8)
    }

    static func openEmptyLog(_ directory: String) throws -> EventLog {
        let log: EventLog
        do {
            log = try EventLog(path: directory, configuration: EventLogConfiguration(durability: .fast))
        } catch {
            throw ValidationError("cannot open a log in \(directory): \(error)")
        }
        if let last = try? log.stat().lastSeq, last > 0 {
            log.close()
            throw ValidationError("\(directory) already holds a log (\(last) records): a simulation writes a new one")
        }
        return log
    }

    /// Writes the run's log (records with their recorded clock and entropy, and the snapshots)
    /// to a new LMDB log in `directory`, with `simulation.json` saying how it was made. BUGGIFY
    /// choices are not in the log: replaying it outside the simulator needs the same sites,
    /// which the JSON records (`buggify_mask`).
    func writeLog(of simulation: Simulation, report: SimulationReport, to directory: String) throws -> String {
        let log = try Self.openEmptyLog(directory)
        defer { log.close() }
        do {
            try simulation.writeLog(to: log)
        } catch {
            throw ValidationError("writing the log to \(directory): \(error)")
        }
        try self.writeOrigin(of: simulation, report: report, to: directory)
        return directory
    }

    func reproduce(_ seed: UInt64) -> String {
        "cartrita sim --seed \(seed) --steps \(self.steps) --tasks \(self.tasks) --faults \(self.faults) --crashes \(self.crashes)"
            + (self.durability.map { " --durability \($0.rawValue)" } ?? "") + " --json"
    }

    /// Many seeds, one summary: how many passed, which failed (with the command for each), and
    /// the total of deliveries and faults.
    func runSweep(_ seeds: ClosedRange<UInt64>) throws {
        let faults = try self.faultList()
        let started = ContinuousClock.now
        var failed: [UInt64] = []
        var deliveries = 0
        var fired: [String: Int] = [:]
        var buggified: [String: Int] = [:]
        for seed in seeds {
            let report = Simulation(self.configuration(seed: seed, faults: faults)).run()
            deliveries += report.deliveries
            for (kind, count) in report.faults { fired[kind, default: 0] += count }
            for (site, count) in report.buggify { buggified[site, default: 0] += count }
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
            ("buggify", .object(BuggifySite.allCases.compactMap { site in buggified[site.name].map { (site.name, .int(Int64($0))) } })),
        ])
        if self.json {
            printJSON(summary)
        } else {
            print("\(seeds.count - failed.count) of \(seeds.count) seeds passed, \(deliveries) deliveries in \(String(format: "%.1f", seconds)) s")
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }
}
