import CartritaAgents
import CartritaCodec
import CartritaEnvelope
import CartritaLog
@testable import CartritaNode
import CartritaRuntime
import XCTest

/// The emergency override through the real node and log: a paused supervisor refuses its
/// domain's new tasks with a retryable `paused`, serves again after resume, and the flag (with
/// who set it) survives a restart, from snapshots and from a full replay alike.
final class OverrideTests: XCTestCase {
    let admin = "ops-admin"

    func override(_ node: Node, _ action: OverrideAction, to supervisor: Address) {
        let id = node.newID()
        node.send(Envelope(
            id: id, parentID: nil, correlationID: id, sender: Hierarchy.runClient, recipient: supervisor, broadcast: false,
            timestampMilliseconds: id.unixMilliseconds, ttlMilliseconds: 60_000, priority: .critical,
            context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1), userID: self.admin),
            payload: .override(Override(action: action, reason: "incident 42")), deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 0))
    }

    /// Submits the first `count` tasks of the standard mix; answers their ids by supervisor.
    func submit(_ node: Node, seed: UInt64, count: Int) -> [(MessageID, Address)] {
        (0..<count).map { index in
            let (request, mode) = Workload.standard.task(seed: seed, index: index)
            let supervisor = RoutingTable.standard.supervisor(forTaskType: request.task.type)!
            return (node.submit(request, from: Hierarchy.runClient, deliveryMode: mode), supervisor)
        }
    }

    func idle(_ node: Node, file: StaticString = #filePath, line: UInt = #line) async {
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure, file: file, line: line)
    }

    func errorCode(_ answers: Answers, _ id: MessageID) -> String? {
        for (_, envelope, _) in answers.all where envelope.correlationID == id {
            if case .taskError(let error) = envelope.payload { return error.code.rawValue }
        }
        return nil
    }

    func testAPausedSupervisorRefusesNewTasksServesAfterResumeAndThePauseSurvivesRecovery() async throws {
        let directory = TemporaryDirectory("override")
        let answers = Answers()
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 30
        let paused = Hierarchy.intelligence
        var live: [ActorDigest] = []
        do {
            let log = try openLog(directory)
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: answers.observer)
            self.override(node, .pause, to: paused)
            await self.idle(node)
            let shown = await node.describeState(of: paused)
            XCTAssertEqual(shown?["paused"], .bool(true))
            XCTAssertEqual(shown?["paused_by"], .string(self.admin), "who paused it is part of the state")

            let first = self.submit(node, seed: 11, count: 60)
            await self.idle(node)
            let refused = first.filter { $0.1 == paused }
            XCTAssertGreaterThan(refused.count, 5, "the mix sends work to the paused domain")
            for (id, _) in refused { XCTAssertEqual(self.errorCode(answers, id), "paused", "task \(id)") }
            for (id, _) in first where !refused.contains(where: { $0.0 == id }) {
                XCTAssertEqual(answers.terminal[id], .completed, "other domains are served")
            }
            // The refusal is retryable: a client may come back later.
            for (_, envelope, _) in answers.all where envelope.correlationID == refused[0].0 {
                if case .taskError(let error) = envelope.payload { XCTAssertTrue(error.retryable) }
            }
            // The admin who sent the override hears back: degraded while paused.
            let acknowledged = answers.all.contains { _, envelope, _ in
                if case .heartbeat(let beat) = envelope.payload { return envelope.sender == paused && beat.status == .degraded }
                return false
            }
            XCTAssertTrue(acknowledged)
            live = await node.digests()
            await node.shutdown()
            log.close()
        }

        // Restart while paused: the flag comes back from the snapshot and from a full replay.
        do {
            let log = try openLog(directory)
            let (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: answers.observer)
            XCTAssertNil(report.divergence)
            let observed1 = await node.digests()
            XCTAssertEqual(observed1, live, "recovery equals the live state")
            let (cells, full) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false).run()
            XCTAssertNil(full.divergence)
            let replayed = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
            XCTAssertEqual(replayed.sorted { $0.address < $1.address }, live, "a full replay too")
            let observed2 = await node.describeState(of: paused)?["paused"]
            XCTAssertEqual(observed2, .bool(true))

            let whilePaused = self.submit(node, seed: 12, count: 40).filter { $0.1 == paused }
            await self.idle(node)
            XCTAssertFalse(whilePaused.isEmpty)
            for (id, _) in whilePaused { XCTAssertEqual(self.errorCode(answers, id), "paused") }

            self.override(node, .resume, to: paused)
            await self.idle(node)
            let observed3 = await node.describeState(of: paused)?["paused"]
            XCTAssertEqual(observed3, .bool(false))
            let observed4 = await node.describeState(of: paused)?["paused_by"]
            XCTAssertEqual(observed4, .null)
            let afterResume = self.submit(node, seed: 13, count: 40).filter { $0.1 == paused }
            await self.idle(node)
            XCTAssertFalse(afterResume.isEmpty)
            for (id, _) in afterResume { XCTAssertEqual(answers.terminal[id], .completed, "served again after resume") }
            live = await node.digests()
            await node.shutdown()
            log.close()
        }
        let log = try openLog(directory)
        defer { log.close() }
        let (node, report) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        XCTAssertNil(report.divergence)
        let observed5 = await node.digests()
        XCTAssertEqual(observed5, live)
        let observed6 = await node.describeState(of: paused)?["paused"]
        XCTAssertEqual(observed6, .bool(false))
        await node.shutdown()
        XCTAssertTrue(try log.verify().passed)
    }

    /// A supervisor snapshot of format 1 (before `paused_by`) in the log: recovery reads only the
    /// current version, so it replays past it (MCP-SPEC §6) and reaches the same state.
    func testAVersion1SupervisorSnapshotFallsBackToReplay() async throws {
        let directory = TemporaryDirectory("override-v1")
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 20
        let log = try openLog(directory)
        defer { log.close() }
        var live: [ActorDigest] = []
        do {
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
            _ = self.submit(node, seed: 5, count: 60)
            await self.idle(node)
            live = await node.digests()
            await node.shutdown()
        }
        // The newest snapshot of the system supervisor, rewritten as format 1 under the same seq.
        let system = Hierarchy.system.rawValue
        let newest = try XCTUnwrap(try log.latestSnapshot(of: system))
        XCTAssertEqual(newest.formatVersion, 2)
        guard case .map(let entries) = try EnvelopeDecoder().decodeValue(newest.state) else { return XCTFail("a map") }
        let version1 = entries.filter { $0.key != "paused_by" && $0.key != "pause_reason" }
            .map { $0.key == "version" ? MCPValue.MapEntry("version", .int(1)) : $0 }
        let writer = MsgPackWriter()
        writer.write(MCPValue.map(version1))
        var old = newest
        old.formatVersion = 1
        old.state = writer.bytes
        try await log.saveSnapshot(old)
        XCTAssertEqual(try log.latestSnapshot(of: system)?.formatVersion, 1)

        let (cells, report) = try Recovery(log: log, hierarchy: .standard()).run()
        XCTAssertNil(report.divergence)
        let digests = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
        XCTAssertEqual(digests.sorted { $0.address < $1.address }, live, "an older snapshot or replay, never a wrong state")
    }
}
