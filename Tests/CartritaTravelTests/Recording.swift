import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation
import XCTest

/// A run of the standard hierarchy on a real LMDB log, with what the live node said at a few
/// points: after each batch of tasks the node is idle, so every record up to the log's last seq
/// has been delivered and `digests()` is the live state at that seq.
struct Recording {
    struct Checkpoint {
        var seq: UInt64
        var digests: [ActorDigest]
        var states: [Address: MCPValue]
    }

    let directory: TemporaryDirectory
    var checkpoints: [Checkpoint] = []
    var taskIDs: [MessageID] = []

    /// Snapshots often and keeps them all, so that travel has many to start from and the live
    /// snapshots can be compared with replay.
    static func configuration(readOnly: Bool = false) -> EventLogConfiguration {
        EventLogConfiguration(durability: .relaxed, snapshotsKeptPerActor: 1_000, readOnly: readOnly)
    }

    static func record(label: String, batches: [Int], snapshotEvery: Int = 40, seed: UInt64 = 11) async throws -> Recording {
        var recording = Recording(directory: TemporaryDirectory(label))
        let log = try EventLog(path: recording.directory.path, configuration: Self.configuration())
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = snapshotEvery
        let (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        XCTAssertNil(report.divergence)
        var index = 0
        for batch in batches {
            for _ in 0..<batch {
                let (request, mode) = Workload.standard.task(seed: seed, index: index)
                recording.taskIDs.append(node.submit(request, from: Hierarchy.runClient, deliveryMode: mode))
                index += 1
            }
            let failure = await node.waitUntilIdle()
            XCTAssertNil(failure)
            var states: [Address: MCPValue] = [:]
            for address in node.addresses { states[address] = await node.describeState(of: address) }
            recording.checkpoints.append(Checkpoint(seq: log.lastSeq, digests: await node.digests(), states: states))
        }
        await node.shutdown()
        log.close()
        return recording
    }

    func open(readOnly: Bool = true) throws -> EventLog {
        try EventLog(path: self.directory.path, configuration: Self.configuration(readOnly: readOnly))
    }
}
