import CartritaAgents
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import XCTest

final class NodeTests: XCTestCase {
    func testTasksFlowThroughTheThreeTiersAndRecoveryEqualsLiveState() async throws {
        let directory = TemporaryDirectory()
        let answers = Answers()
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 50
        var live: [ActorDigest] = []
        var ids: [MessageID] = []
        do {
            let log = try openLog(directory)
            let (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: answers.observer)
            XCTAssertNil(report.divergence)
            XCTAssertEqual(report.pending.count, 0)
            for index in 0..<300 {
                let (request, mode) = Workload.standard.task(seed: 7, index: index)
                ids.append(node.submit(request, from: Hierarchy.runClient, deliveryMode: mode))
            }
            let failure = await node.waitUntilIdle()
            XCTAssertNil(failure)
            live = await node.digests()
            await node.shutdown()
            log.close()
        }
        let terminal = answers.terminal
        XCTAssertEqual(terminal.count, 300)
        XCTAssertEqual(terminal.values.filter { $0 == .completed }.count, 300, "every task of the standard mix completes")
        XCTAssertEqual(Set(ids), Set(terminal.keys))

        // Reopen: the same digests from snapshots plus replay, nothing owed.
        let log = try openLog(directory)
        defer { log.close() }
        let (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        XCTAssertNil(report.divergence)
        XCTAssertEqual(report.pending.count, 0)
        XCTAssertGreaterThan(report.cellsFromSnapshots, 0)
        let recovered = await node.digests()
        XCTAssertEqual(recovered, live)
        await node.shutdown()

        // And from no snapshots at all: a full replay gives the same digests.
        let (cells, full) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false).run()
        XCTAssertNil(full.divergence)
        XCTAssertEqual(full.scanFromSeq, 1)
        let fullDigests = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
        XCTAssertEqual(fullDigests.sorted { $0.address < $1.address }, live)
        XCTAssertTrue(try log.verify().passed)
    }
}
