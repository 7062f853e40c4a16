import CartritaEnvelope
import CartritaNode
import CartritaSim
import CartritaTestSupport
import Foundation
import XCTest

final class SimulationTests: XCTestCase {
    func run(_ seed: UInt64, tasks: Int = 60) -> SimulationReport {
        var configuration = Simulation.Configuration(seed: seed)
        configuration.tasks = tasks
        return Simulation(configuration).run()
    }

    func testTheSameSeedGivesTheSameRunBitForBit() {
        let first = self.run(42)
        let second = self.run(42)
        XCTAssertEqual(first.digest, second.digest)
        XCTAssertEqual(first.deliveries, second.deliveries)
        XCTAssertEqual(first.virtualMilliseconds, second.virtualMilliseconds)
        XCTAssertTrue(first.passed, "\(first.oracles)")
        // Six deliveries per task, two more (the gateway's and its answer's) when the agent
        // fetches its input by URL, nothing else.
        let byURL = (0..<60).filter { index in
            if case .url? = Simulation.workload.task(seed: 42, index: index).request.input.files.first?.source { return true }
            return false
        }.count
        XCTAssertGreaterThan(byURL, 0)
        XCTAssertEqual(first.deliveries, 60 * 6 + byURL * 2)
    }

    func testDifferentSeedsGiveDifferentSchedules() {
        let digests = Set((1...8).map { self.run($0).digest })
        XCTAssertEqual(digests.count, 8)
    }

    func testASweepOfSeedsPassesEveryOracle() {
        for seed in UInt64(100)..<UInt64(130) {
            let report = self.run(seed, tasks: 40)
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
        }
    }

    /// Whole-process crashes at seed-chosen points, each recovered by the production recovery
    /// code from the in-memory log and snapshots: the recovered actors equal the crashed ones,
    /// every task still gets exactly one answer, and the run is as reproducible as any other.
    func testCrashesRecoverToTheCommittedStateAndTheRunStaysReproducible() {
        var configuration = Simulation.Configuration(seed: 77)
        configuration.tasks = 150
        configuration.crashes = 6
        configuration.faults = [.crash]
        configuration.snapshotEveryDeliveries = 20
        let first = Simulation(configuration).run()
        let second = Simulation(configuration).run()
        XCTAssertTrue(first.passed, "\(first.oracles)")
        XCTAssertEqual(first.crashes, 6)
        XCTAssertEqual(first.recoveries, 6)
        XCTAssertEqual(first.digest, second.digest)
        XCTAssertEqual(first.crashPoints, second.crashPoints)
        configuration.faults = []
        XCTAssertNotEqual(Simulation(configuration).run().digest, first.digest, "a crash is part of the trace")
        for seed in UInt64(200)..<UInt64(220) {
            var sweep = Simulation.Configuration(seed: seed)
            sweep.tasks = 60
            sweep.crashes = 4
            sweep.faults = [.crash]
            sweep.snapshotEveryDeliveries = 15
            let report = Simulation(sweep).run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
        }
    }

    /// Every fault at once, over many seeds: the oracles hold, each fault kind fired somewhere,
    /// and a run with faults is as reproducible as one without.
    func testAllFaultsOverASweepOfSeeds() {
        var fired: [String: Int] = [:]
        for seed in UInt64(300)..<UInt64(330) {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = 80
            configuration.crashes = 3
            configuration.faults = Set(Simulation.Fault.allCases)
            let report = Simulation(configuration).run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
            for (kind, count) in report.faults { fired[kind, default: 0] += count }
            // BUGGIFY's firings are counted per site, under "buggify".
            fired[Simulation.Fault.buggify.rawValue, default: 0] += report.buggify.reduce(0) { $0 + $1.1 }
            if seed == 300 { XCTAssertEqual(Simulation(configuration).run().digest, report.digest) }
        }
        for fault in Simulation.Fault.allCases {
            XCTAssertGreaterThan(fired[fault.rawValue] ?? 0, 0, "\(fault.rawValue) never fired: \(fired)")
        }
    }

    func testTheLivenessOracleHoldsTheBoundAfterTheFaultsStop() {
        var configuration = Simulation.Configuration(seed: 21)
        configuration.tasks = 50
        configuration.faults = Set(Simulation.Fault.allCases)
        configuration.crashes = 2
        XCTAssertEqual(Simulation(configuration).run().oracles.first { $0.0 == "liveness" }?.1, "ok")
        // A bound no run can meet: faults stop at once, the tasks still take virtual time.
        configuration.safetyDeliveries = 1
        configuration.livenessBoundMilliseconds = 0
        let strict = Simulation(configuration).run()
        XCTAssertTrue(strict.oracles.first { $0.0 == "liveness" }?.1.hasPrefix("failed: the last answer came") ?? false, "\(strict.oracles)")
    }

    func testARunCutShortFailsTheLivenessOracle() {
        var configuration = Simulation.Configuration(seed: 5)
        configuration.tasks = 50
        configuration.maxDeliveries = 100  // far fewer than 50 tasks need
        let report = Simulation(configuration).run()
        XCTAssertFalse(report.passed)
        XCTAssertTrue(report.oracles.first { $0.0 == "one_terminal_answer" }?.1.hasPrefix("failed") ?? false)
    }

    /// Another process, same seed: same digest (nothing depends on the process's hash seed,
    /// addresses in memory or the wall clock).
    func testTheSameSeedPrintsTheSameDigestInAnotherProcess() throws {
        let executable = try XCTUnwrap(Self.cartrita(), "the cartrita executable next to the test bundle")
        let inProcess = self.run(7, tasks: 200)
        var digests: [String] = []
        for _ in 0..<2 {
            let process = Process()
            process.executableURL = executable
            process.arguments = ["sim", "--seed", "7", "--tasks", "200", "--json"]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
            let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            digests.append(try XCTUnwrap(json["digest"] as? String))
            XCTAssertEqual(json["passed"] as? Bool, true)
        }
        XCTAssertEqual(digests, [inProcess.digest, inProcess.digest])
    }

    /// `--write-log` leaves the run's log (and `simulation.json`) for the tools: it verifies,
    /// `recover` replays it with the run's hierarchy and BUGGIFY sites without divergence, and a
    /// failing seed's message says how to write its log.
    func testAWrittenLogVerifiesAndRecoversWithoutDivergence() throws {
        let executable = try XCTUnwrap(Self.cartrita(), "the cartrita executable next to the test bundle")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sim-write-log-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func cartrita(_ arguments: [String]) throws -> (status: Int32, json: [String: Any]) {
            let (status, data) = try Self.run(executable, arguments)
            let json = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
            return (status, json)
        }
        let sim = try cartrita(["sim", "--seed", "21", "--tasks", "120", "--faults", "all", "--write-log", directory, "--json"])
        XCTAssertEqual(sim.status, 0)
        XCTAssertEqual(sim.json["log_written_to"] as? String, directory)
        let verify = try cartrita(["log", "verify", "--data", directory, "--json"])
        XCTAssertEqual(verify.json["passed"] as? Bool, true)
        // Time travel replays it with the run's agent crash rule and BUGGIFY sites too: from the
        // first record it reaches the states the snapshots hold (with the standard hierarchy
        // instead, seed 21's replayed states differ).
        let last = try XCTUnwrap(verify.json["last_seq"] as? Int)
        func digests(_ json: [String: Any]) -> [String: String] {
            ((json["actors"] as? [String: [String: Any]]) ?? [:]).compactMapValues { $0["digest"] as? String }
        }
        let travelled = try cartrita(["travel", "--data", directory, "--at", "\(last)", "--json"])
        let replayed = try cartrita(["travel", "--data", directory, "--at", "\(last)", "--no-snapshots", "--json"])
        XCTAssertEqual(travelled.status, 0)
        XCTAssertFalse(digests(travelled.json).isEmpty)
        XCTAssertEqual(digests(travelled.json), digests(replayed.json))
        let recover = try cartrita(["recover", "--data", directory, "--json", "--timeout-seconds", "10"])
        XCTAssertEqual(recover.status, 0, "recover diverged or failed: \(recover.json)")
        XCTAssertNil(recover.json["divergence"])
        XCTAssertNotNil(recover.json["actors"])
        // Without simulation.json the standard hierarchy replays it (from the first record), and
        // the agents' injected crashes are no longer explained: the divergence detector says so.
        try FileManager.default.removeItem(atPath: directory + "/simulation.json")
        let bare = try cartrita(["recover", "--data", directory, "--json", "--no-snapshots", "--timeout-seconds", "10"])
        XCTAssertEqual(bare.status, 2)
        XCTAssertNotNil(bare.json["divergence"])
    }

    /// Runs the executable; its exit status and standard output.
    static func run(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, stdout: Data) {
        let outcome = try CartritaBinary.run(arguments, executable: executable)
        return (outcome.status, outcome.stdout)
    }

    static func cartrita() -> URL? { CartritaBinary.url() }
}
