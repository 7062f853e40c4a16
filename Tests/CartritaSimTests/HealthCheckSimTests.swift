import CartritaEnvelope
import CartritaNode
import CartritaSim
import XCTest

/// `system.health_check` under the simulator: there is no `health` service in the simulated
/// world (the node it would report on is not there), so the gateway answers `io_unavailable`,
/// deterministically, and every oracle holds with every fault on.
final class HealthCheckSimTests: XCTestCase {
    static let mix = try! Workload.parse("system.health_check at_least_once 1\ntext.stats at_least_once 2\n")

    func testHealthChecksAreAnsweredAndTheRunIsReproducible() {
        var configuration = Simulation.Configuration(seed: 5)
        configuration.tasks = 60
        let first = Simulation(configuration, workload: Self.mix).run()
        let second = Simulation(configuration, workload: Self.mix).run()
        XCTAssertTrue(first.passed, "\(first.oracles)")
        XCTAssertEqual(first.digest, second.digest)
        // Six deliveries per task, two more per health check: its call to the gateway and the
        // gateway's answer.
        let checks = (0..<60).filter { Self.mix.task(seed: 5, index: $0).request.task.type == "system.health_check" }.count
        XCTAssertGreaterThan(checks, 0)
        XCTAssertEqual(first.deliveries, 60 * 6 + checks * 2)
    }

    func testEveryFaultOnAHealthCheckMixPassesTheOracles() {
        for seed in UInt64(1)...15 {
            var configuration = Simulation.Configuration(seed: seed)
            configuration.tasks = 80
            configuration.faults = Set(Simulation.Fault.allCases)
            configuration.crashes = 2
            let report = Simulation(configuration, workload: Self.mix).run()
            XCTAssertTrue(report.passed, "seed \(seed): \(report.oracles)")
        }
    }
}
