import Foundation
import XCTest

/// The tools that run actors over a simulation's written log (`fork`, like `travel` and
/// `recover`) use the run's hierarchy and BUGGIFY sites from `simulation.json`: with the
/// standard ones, the injected agent crashes and BUGGIFY choices would not happen again and
/// every such delivery would look like a changed outcome.
final class SimulationLogToolsTests: XCTestCase {
    func run(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, stdout: Data) {
        try SimulationTests.run(executable, arguments)
    }

    /// A fork whose replacement is the recorded answer itself changes no outcome and no actor's
    /// state, and makes no message the original did not have. That holds only if the fork
    /// re-runs the agents with the simulation's crash rule and BUGGIFY sites (with the standard
    /// ones, seed 21 changes 4 tasks and 4 actors). The faults are those the log fully records:
    /// a message the simulated network dropped is not in the log, so a fork would deliver it.
    /// (The answer goes through JSON, where a whole double such as 1.0 comes back as an integer,
    /// so the replaced record and its two forwards may differ in bytes: `changed` is not 0.)
    func testAnIdentityForkOfASimulationsLogChangesNothing() throws {
        let executable = try XCTUnwrap(SimulationTests.cartrita(), "the cartrita executable next to the test bundle")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sim-fork-\(UInt64.random(in: 0...UInt64.max))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = root + "/log"
        let sim = try self.run(executable, ["sim", "--seed", "21", "--tasks", "120", "--faults", "agent_crash,buggify,io,clock", "--write-log", data, "--json"])
        XCTAssertEqual(sim.status, 0)
        let simJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: sim.stdout) as? [String: Any])
        let faults = try XCTUnwrap(simJSON["faults"] as? [String: Int])
        XCTAssertGreaterThan(faults["agent_crash", default: 0], 0, "the seed injects agent crashes: \(faults)")

        // An agent's answer, late in the run, replaced by itself.
        let filtered = try self.run(executable, ["log", "filter", "--data", data, "--type", "task_response"])
        let answers = String(decoding: filtered.stdout, as: UTF8.self).split(separator: "\n").compactMap { line in
            try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }.filter { ($0["sender"] as? String)?.hasPrefix("agent.") == true }
        let answer = try XCTUnwrap(answers.last, "the run has agents' answers")
        let seq = try XCTUnwrap(answer["seq"] as? Int)
        let replacement = root + "/same.json"
        let body: [String: Any] = ["version": 1, "type": "task_response", "payload": try XCTUnwrap(answer["payload"])]
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: replacement))

        let fork = try self.run(
            executable, ["fork", "--data", data, "--at", "1", "--replace", "\(seq)=\(replacement)", "-o", root + "/fork", "--json"])
        XCTAssertEqual(fork.status, 0)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: fork.stdout) as? [String: Any])
        XCTAssertEqual(report["tasks_changed"] as? Int, 0, "\(report)")
        XCTAssertEqual(report["actors_changed"] as? Int, 0, "\(report)")
        let records = try XCTUnwrap(report["records"] as? [String: Int])
        XCTAssertEqual(records["original_only"], 0)
        XCTAssertEqual(records["new"], 0)
        XCTAssertLessThanOrEqual(records["changed", default: .max], 3)
        // The fork carries the run's description, so the tools read it as the simulation's log.
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/fork/simulation.json"))
    }
}
