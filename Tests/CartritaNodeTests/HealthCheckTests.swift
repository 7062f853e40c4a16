import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation
import Synchronization
import XCTest

/// `system.health_check` on a real log: routed to the system supervisor's SystemMonitor, which
/// asks the node's `health` service through the I/O gateway; the report is logged, and replay
/// reads it back without asking again.
final class HealthCheckTests: XCTestCase {
    /// Counts calls, so a test can tell a report was made live and not again on replay.
    final class CountingHealth: IOService {
        let node = Mutex<Node?>(nil)
        let calls = Atomic<Int>(0)

        func call(operation: String, arguments: MCPValue) async -> IOResult {
            self.calls.add(1, ordering: .relaxed)
            guard let node = self.node.withLock({ $0 }) else { return .failure(TaskError(code: .ioUnavailable, message: "no node", retryable: false)) }
            return await HealthService(node: node).call(operation: operation, arguments: arguments)
        }
    }

    func answer(_ answers: Answers, _ id: MessageID) -> Envelope? {
        answers.all.map(\.1).first { $0.correlationID == id && ClientMachine.outcome($0) != nil }
    }

    func testTheReportNamesEachSupervisorTheLogAndItsIndexesAndReplayReadsItFromTheLog() async throws {
        let directory = TemporaryDirectory("health-check")
        let answers = Answers()
        let counting = CountingHealth()
        var configuration = NodeConfiguration()
        configuration.ioServices = ["health": counting]
        var live: [ActorDigest] = []
        let check: MessageID, partial: MessageID, bad: MessageID
        do {
            let log = try openLog(directory)
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: answers.observer)
            counting.node.withLock { $0 = node }
            for index in 0..<40 {
                let (request, mode) = Workload.standard.task(seed: 3, index: index)
                node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
            }
            _ = await node.waitUntilIdle()
            check = node.submit(TaskRequest(task: TaskSpec(type: "system.health_check")), from: Hierarchy.runClient)
            partial = node.submit(
                TaskRequest(task: TaskSpec(type: "system.health_check", parameters: [MCPValue.MapEntry("sections", .array([.string("log")]))])),
                from: Hierarchy.runClient)
            bad = node.submit(
                TaskRequest(task: TaskSpec(type: "system.health_check", parameters: [MCPValue.MapEntry("sections", .array([.string("disks")]))])),
                from: Hierarchy.runClient)
            let failure = await node.waitUntilIdle()
            XCTAssertNil(failure)
            live = await node.digests()
            await node.shutdown()
            log.close()
        }
        XCTAssertEqual(counting.calls.load(ordering: .relaxed), 2, "one call per valid check; the refused one asks nothing")

        guard case .taskResponse(let response)? = self.answer(answers, check)?.payload, response.status == .completed,
            let report = response.result
        else { return XCTFail("no report: \(String(describing: self.answer(answers, check)))") }
        XCTAssertEqual(report["healthy"], .bool(true), "\(report)")
        guard case .array(let supervisors)? = report["supervisors"] else { return XCTFail("\(report)") }
        XCTAssertEqual(supervisors.compactMap { $0["address"] }, [
            .string(Hierarchy.intelligence.rawValue), .string(Hierarchy.multimodal.rawValue), .string(Hierarchy.system.rawValue),
        ])
        XCTAssertTrue(supervisors.allSatisfy { $0["up"] == .bool(true) && $0["escalated"] == .bool(false) && $0["restarts"] == .int(0) })
        // Pools: LanguageMaestro ×2; none; DataSage ×2, TaskManagement, SystemMonitor.
        XCTAssertEqual(supervisors.compactMap { $0["pool_size"] }, [.int(2), .int(0), .int(4)])
        // The check itself is in flight at the system supervisor while the report is made (and
        // the two submitted with it may be).
        XCTAssertTrue((1...3).contains(supervisors[2]["in_flight"]?.intValue ?? 0), "\(supervisors[2])")
        XCTAssertGreaterThan(supervisors[2]["completed"]?.intValue ?? 0, 0)

        let log = report["log"]
        XCTAssertEqual(log?["writable"], .bool(true))
        XCTAssertEqual(log?["durability"], .string("relaxed"))
        XCTAssertGreaterThan(log?["last_seq"]?.intValue ?? 0, 40 * 6, "every earlier task's six deliveries are in the log")
        XCTAssertEqual(log?["records"], log?["last_seq"])
        XCTAssertGreaterThan(log?["file_bytes"]?.intValue ?? 0, 0)
        guard case .array(let indexes)? = report["indexes"] else { return XCTFail("\(report)") }
        XCTAssertEqual(indexes.compactMap { $0["name"] }, [.string("id"), .string("correlation"), .string("actor")])
        XCTAssertTrue(indexes.allSatisfy { $0["consistent"] == .bool(true) }, "\(indexes)")
        XCTAssertEqual(indexes[0]["entries"], log?["records"])

        guard case .taskResponse(let only)? = self.answer(answers, partial)?.payload else { return XCTFail("no partial report") }
        XCTAssertNotNil(only.result?["log"])
        XCTAssertNil(only.result?["supervisors"])
        XCTAssertNil(only.result?["indexes"])
        guard case .taskError(let refusal)? = self.answer(answers, bad)?.payload else { return XCTFail("an unknown section is refused") }
        XCTAssertEqual(refusal.code, .invalidInput)
        XCTAssertTrue(refusal.message.contains("disks"), refusal.message)

        // Replay: the report is read from the log; with no health service at all and a full
        // replay, nothing diverges, nothing is owed, the digests are the live ones.
        let reopened = try openLog(directory)
        defer { reopened.close() }
        let calls = counting.calls.load(ordering: .relaxed)
        let (cells, recovery) = try Recovery(log: reopened, hierarchy: .standard(), useSnapshots: false).run()
        XCTAssertNil(recovery.divergence)
        XCTAssertEqual(recovery.pending.count, 0)
        let digests = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
        XCTAssertEqual(digests.sorted { $0.address < $1.address }, live)
        XCTAssertEqual(counting.calls.load(ordering: .relaxed), calls, "replay called nothing")
        let gateway = try reopened.records().filter { $0.envelope.sender == IOWire.address(of: "health") }
        XCTAssertEqual(gateway.count, 2, "each report is a logged answer")
        XCTAssertTrue(try reopened.verify().passed)
    }

    /// Every node has the health service, without configuring it.
    func testEveryNodeAnswersAHealthCheckWithItsOwnService() async throws {
        let directory = TemporaryDirectory("health-default")
        let answers = Answers()
        let log = try openLog(directory)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), observer: answers.observer)
        let id = node.submit(TaskRequest(task: TaskSpec(type: "system.health_check")), from: Hierarchy.runClient)
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        guard case .taskResponse(let response)? = self.answer(answers, id)?.payload else {
            return XCTFail("\(String(describing: self.answer(answers, id)))")
        }
        XCTAssertEqual(response.result?["healthy"], .bool(true))
        await node.shutdown()
    }

    func testTheServiceRefusesUnknownOperationsAndSections() async throws {
        let directory = TemporaryDirectory("health-refusals")
        let log = try openLog(directory)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard())
        let service = HealthService(node: node)
        guard case .failure(let operation) = await service.call(operation: "reboot", arguments: .null) else { return XCTFail() }
        XCTAssertEqual(operation.code, .ioError)
        guard case .failure(let section) = await service.call(operation: "report", arguments: .map([MCPValue.MapEntry("sections", .array([.string("x")]))])) else {
            return XCTFail()
        }
        XCTAssertEqual(section.code, .ioError)
        guard case .success(let empty) = await service.call(operation: "report", arguments: .null) else { return XCTFail() }
        XCTAssertEqual(empty["log"]?["last_seq"], .int(0))
        XCTAssertEqual(empty["healthy"], .bool(true))
        await node.shutdown()
    }
}

extension MCPValue {
    var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }
}
