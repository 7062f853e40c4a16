import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
@testable import CartritaSim
import XCTest

/// The faults that exercise supervision, durability modes and the runtime's rare paths.
final class FaultTests: XCTestCase {
    func configuration(_ seed: UInt64, faults: Set<Simulation.Fault>, tasks: Int = 120) -> Simulation.Configuration {
        var configuration = Simulation.Configuration(seed: seed)
        configuration.tasks = tasks
        configuration.faults = faults
        configuration.crashes = 3
        return configuration
    }

    func count(_ report: SimulationReport, _ fault: Simulation.Fault) -> Int {
        report.faults.first { $0.0 == fault.rawValue }?.1 ?? 0
    }

    /// A storm crashes one agent on every request: its supervisor restarts it, escalates past
    /// its intensity, answers what it held, and starts again after its cool-down, so every task
    /// still gets one answer and no supervisor restarts more often than its policy allows.
    func testARestartStormEscalatesAndTheSupervisorStartsAgain() {
        var escalations = 0
        var restartsAfterCoolDown = 0
        for seed in UInt64(1)...12 {
            var configuration = self.configuration(seed, faults: [.restartStorm], tasks: 300)
            configuration.submitWindowMilliseconds = 400
            let simulation = Simulation(configuration)
            let report = simulation.run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
            XCTAssertGreaterThan(self.count(report, .restartStorm), 0, "seed \(seed): the storm crashed nothing")
            XCTAssertEqual(report.digest, Simulation(configuration).run().digest)
            for record in simulation.records {
                guard case .taskError(let error) = record.envelope.payload else { continue }
                if error.code == .supervisorEscalated { escalations += 1 }
                if error.code == .supervisorRestart { restartsAfterCoolDown += 1 }
            }
        }
        XCTAssertGreaterThan(escalations, 0, "no storm exceeded a supervisor's intensity")
        XCTAssertGreaterThan(restartsAfterCoolDown, 0, "no supervisor started again after its cool-down")
    }

    /// Under every strategy, with storms and random crashes on a tight policy, no supervisor
    /// restarts more often than its intensity allows and every task is still answered.
    func testTheSupervisionOracleHoldsUnderEveryStrategy() {
        for strategy in SupervisionStrategy.allCases {
            var configuration = self.configuration(5, faults: [.restartStorm, .agentCrash], tasks: 200)
            configuration.submitWindowMilliseconds = 300
            var options = Hierarchy.Options()
            options.policy = SupervisionPolicy(strategy: strategy, intensity: 2, periodMilliseconds: 2_000)
            options.agentCrashesPerMillion = Simulation.agentCrashesPerMillion
            let report = Simulation(configuration, hierarchy: .standard(options)).run()
            XCTAssertTrue(report.passed, "\(strategy): \(report.oracles)")
        }
    }

    /// In relaxed and fast modes a power loss takes the unsynced tail; recovery rebuilds the
    /// synced prefix (checked against a full replay of it), the client sends again what the log
    /// lost, and every task is still answered once by the end. Durable loses nothing.
    func testTailLossInEachDurabilityMode() {
        var lostIn: [Durability: Int] = [:]
        for durability in Durability.allCases {
            for seed in UInt64(1)...10 {
                var configuration = self.configuration(seed, faults: [.crash, .tailLoss], tasks: 150)
                configuration.durability = durability
                configuration.crashes = 4
                let report = Simulation(configuration).run()
                XCTAssertTrue(report.passed, "\(durability) seed \(seed): \(report.oracles)")
                XCTAssertEqual(report.durability, durability)
                lostIn[durability, default: 0] += report.tailRecordsLost
            }
        }
        XCTAssertEqual(lostIn[.durable], 0, "a durable log loses nothing")
        XCTAssertGreaterThan(lostIn[.relaxed] ?? 0, 0, "relaxed power losses took no commit")
        XCTAssertGreaterThan(lostIn[.fast] ?? 0, lostIn[.relaxed] ?? 0, "fast mode should lose up to a sync interval")
    }

    /// BUGGIFY: sites are on or off per seed, fire where reached, are counted, and replay
    /// (recovery inside the run) makes the same choices: no divergence, same digest again.
    func testBuggifySitesFireAreCountedAndReplay() {
        var fired: [String: Int] = [:]
        for seed in UInt64(1)...16 {
            let configuration = self.configuration(seed, faults: [.buggify, .crash], tasks: 150)
            let report = Simulation(configuration).run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
            XCTAssertEqual(report.digest, Simulation(configuration).run().digest, "seed \(seed)")
            for (site, count) in report.buggify { fired[site, default: 0] += count }
        }
        for site in BuggifySite.allCases {
            XCTAssertGreaterThan(fired[site.name] ?? 0, 0, "\(site.name) never fired in 16 seeds")
        }
        // Off without the fault: no site is reported.
        XCTAssertTrue(Simulation(self.configuration(1, faults: [.crash])).run().buggify.isEmpty)
    }

    /// The BUGGIFY choice is a function of the enabled sites and the entropy only.
    func testBuggifyChoicesArePureAndCountingIsSeparate() {
        let live = Buggify(enabledMask: ~0)
        let replay = live.replaying()
        var random = SplitMix64(seed: 9)
        var fires = 0
        for _ in 0..<10_000 {
            let entropy = random.next64()
            let a = live.fires(.agentProgress, entropy: entropy)
            XCTAssertEqual(a, replay.fires(.agentProgress, entropy: entropy))
            if a { fires += 1 }
        }
        XCTAssertEqual(live.fired[BuggifySite.agentProgress.rawValue], fires)
        XCTAssertEqual(replay.fired[BuggifySite.agentProgress.rawValue], 0, "a replaying copy does not count")
        XCTAssertTrue((2_000...3_000).contains(fires), "agent_progress fires about a quarter of the time: \(fires)")
        XCTAssertFalse(Buggify(enabledMask: 0).fires(.agentProgress, entropy: 1))
    }

    /// External I/O under faults: the workload's by-URL tasks fetch their input through the
    /// simulated gateway, some calls fail, time out or answer late, the agents answer the task
    /// either way, and the run is as reproducible as any.
    func testIOFaultsErrorsTimeoutsAndSlowAnswers() {
        var fetched = 0
        var failed = 0
        for seed in UInt64(1)...12 {
            let configuration = self.configuration(seed, faults: [.io, .crash], tasks: 150)
            let simulation = Simulation(configuration)
            let report = simulation.run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
            XCTAssertEqual(report.digest, Simulation(configuration).run().digest, "seed \(seed)")
            for record in simulation.records where record.envelope.sender.isIO {
                guard case .taskResponse(let response) = record.envelope.payload else { continue }
                if response.status == .completed { fetched += 1 } else { failed += 1 }
            }
        }
        XCTAssertGreaterThan(fetched, 100, "by-URL inputs were fetched")
        XCTAssertGreaterThan(failed, 0, "the io fault failed no call")
    }

    /// Every fault at once over a sweep, as CI runs it.
    func testEveryFaultTogether() {
        for seed in UInt64(1)...20 {
            let configuration = self.configuration(seed, faults: Set(Simulation.Fault.allCases), tasks: 100)
            let report = Simulation(configuration).run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
        }
    }
}

/// The simulator on the real LMDB log: the same run as in memory, and a log the production
/// tools read afterwards.
final class LMDBSimulationTests: XCTestCase {
    func testTheSameSeedGivesTheSameDigestOnTheLMDBLog() throws {
        var configuration = Simulation.Configuration(seed: 7)
        configuration.tasks = 60
        configuration.crashes = 2
        configuration.faults = [.crash, .storage, .duplicate, .delay, .agentCrash, .restartStorm, .clock]
        let memory = Simulation(configuration).run()
        XCTAssertTrue(memory.passed, "\(memory.oracles)")

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sim-lmdb-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(path: directory, configuration: EventLogConfiguration(durability: .fast))
        let onDisk = try Simulation(configuration, eventLog: log).run()
        XCTAssertTrue(onDisk.passed, "\(onDisk.oracles)")
        XCTAssertEqual(onDisk.digest, memory.digest, "the log's kind must not change the run")
        XCTAssertEqual(onDisk.deliveries, memory.deliveries)
        XCTAssertTrue(onDisk.oracles.contains { $0 == ("log_verifies", "ok") })

        // The production recovery reads the simulated log: no divergence, nothing left owed
        // that the log does not explain.
        let recovered = try Recovery(log: log, hierarchy: Simulation.hierarchy(for: configuration)).run()
        XCTAssertNil(recovered.report.divergence)
        XCTAssertEqual(try log.stat().lastSeq, UInt64(memory.deliveries))
        log.close()
    }

    /// The LMDB log commits appends in batches and answers them (seq, or refusal of a known id)
    /// before the commit: the log it leaves holds exactly the in-memory log's records, with the
    /// same clock readings and entropy, through duplicates, crashes and recoveries, and batches
    /// longer than `maxPendingRecords`.
    func testTheBatchedLMDBLogHoldsTheInMemoryRecords() throws {
        var configuration = Simulation.Configuration(seed: 11)
        configuration.tasks = 250
        configuration.crashes = 2
        configuration.snapshotEveryDeliveries = 1_000  // long stretches without a snapshot: full batches
        configuration.faults = [.crash, .duplicate, .delay, .io, .buggify, .agentCrash]
        let memory = Simulation(configuration)
        let memoryReport = memory.run()
        XCTAssertTrue(memoryReport.passed, "\(memoryReport.oracles)")
        XCTAssertGreaterThan(memoryReport.deliveries, 4 * LMDBSimulationLog.maxPendingRecords)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sim-lmdb-batch-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(path: directory, configuration: EventLogConfiguration(durability: .fast))
        defer { log.close() }
        let onDisk = try Simulation(configuration, eventLog: log)
        let onDiskReport = onDisk.run()
        XCTAssertTrue(onDiskReport.passed, "\(onDiskReport.oracles)")
        XCTAssertEqual(onDiskReport.digest, memoryReport.digest)
        let expected = memory.records
        let stored = try log.records()
        XCTAssertEqual(stored.count, expected.count)
        for (written, wanted) in zip(stored, expected) {
            XCTAssertEqual(written.header.seq, wanted.header.seq)
            XCTAssertEqual(written.header.clockMilliseconds, wanted.header.clockMilliseconds, "seq \(wanted.header.seq)")
            XCTAssertEqual(written.header.entropy, wanted.header.entropy, "seq \(wanted.header.seq)")
            XCTAssertEqual(written.header.actorPrevSeq, wanted.header.actorPrevSeq, "seq \(wanted.header.seq)")
            XCTAssertEqual(written.envelope, wanted.envelope, "seq \(wanted.header.seq)")
        }
    }

    func testTheLMDBLogRefusesTailLossAndALogInUse() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sim-lmdb-refuse-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(path: directory, configuration: EventLogConfiguration(durability: .fast))
        defer { log.close() }
        var configuration = Simulation.Configuration(seed: 1)
        configuration.faults = [.tailLoss]
        XCTAssertThrowsError(try Simulation(configuration, eventLog: log)) { error in
            guard case SimulationError.tailLossNeedsTheMemoryLog = error else { return XCTFail("\(error)") }
        }
        configuration.faults = []
        configuration.tasks = 5
        _ = try Simulation(configuration, eventLog: log).run()
        XCTAssertThrowsError(try Simulation(configuration, eventLog: log)) { error in
            guard case SimulationError.logNotEmpty(let lastSeq) = error else { return XCTFail("\(error)") }
            XCTAssertGreaterThanOrEqual(lastSeq, 30, "six records per task at least")
        }
    }
}
