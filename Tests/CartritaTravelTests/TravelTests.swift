import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
@testable import CartritaTravel
import XCTest

final class TravelTests: XCTestCase {
    /// Travel equals live: at each point where the live node was idle, travel (snapshots plus
    /// replay) and a replay of each actor from its first record both give the live digests and
    /// readable states; and every snapshot the live node stored (its state at that seq) equals
    /// what a replay without snapshots gives there.
    func testTravelEqualsTheLiveStateAtManyPoints() async throws {
        let recording = try await Recording.record(label: "live", batches: [20, 35, 1, 50, 40])
        let log = try recording.open()
        defer { log.close() }
        let travel = TimeTravel(log: log)
        let replayOnly = TimeTravel(log: log, useSnapshots: false)
        var fromSnapshots = 0
        for checkpoint in recording.checkpoints {
            let travelled = try travel.state(at: checkpoint.seq)
            let replayed = try replayOnly.state(at: checkpoint.seq)
            XCTAssertEqual(travelled.actors.map(\.digest), checkpoint.digests.map(\.digest), "travel at \(checkpoint.seq)")
            XCTAssertEqual(travelled.actors.map(\.lastSeq), checkpoint.digests.map(\.lastSeq), "travel at \(checkpoint.seq)")
            XCTAssertEqual(travelled.actors.map(\.address), checkpoint.digests.map(\.address))
            XCTAssertEqual(replayed.actors.map(\.digest), checkpoint.digests.map(\.digest), "replay at \(checkpoint.seq)")
            for actor in travelled.actors { XCTAssertEqual(actor.state, checkpoint.states[actor.address], "\(actor.address) at \(checkpoint.seq)") }
            fromSnapshots += travelled.actors.filter { $0.snapshotSeq > 0 }.count
        }
        XCTAssertGreaterThan(fromSnapshots, 5, "travel started from snapshots")

        // Every stored snapshot is the live state at its seq.
        var compared = 0
        for address in Hierarchy.standard().addresses {
            for info in try log.snapshots(of: address.rawValue) where info.problem == nil {
                let snapshot = try XCTUnwrap(try log.latestSnapshot(of: address.rawValue, atOrBefore: info.seq))
                let cell = try XCTUnwrap(Hierarchy.standard().makeCells().first { $0.address == address })
                let wrapper = try XCTUnwrap(NodeSnapshot.decode(snapshot.state))
                XCTAssertTrue(cell.restore(formatVersion: snapshot.formatVersion, bytes: wrapper.state, seq: snapshot.seq))
                let replayed = try replayOnly.state(at: info.seq, actors: [address])
                XCTAssertEqual(replayed.actors.first?.digest, Recovery.digest(of: cell), "\(address) at its snapshot \(info.seq)")
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 15, "live snapshots compared")

        // And at arbitrary points between, snapshots plus replay agree with replay alone.
        let last = log.lastSeq
        let step = max(1, last / 37)
        for seq in Array(stride(from: UInt64(1), through: last, by: Int(step))) + [last] {
            XCTAssertEqual(
                try travel.state(at: seq).actors.map(\.digest), try replayOnly.state(at: seq).actors.map(\.digest), "at \(seq)")
        }
    }

    /// A long-lived traveller keeps checkpoints as it replays; travels that start from them
    /// (forwards and backwards through the log) give the same answers as travels that do not.
    func testCheckpointsGiveTheSameAnswers() async throws {
        let recording = try await Recording.record(label: "checkpoints", batches: [40, 40])
        let log = try recording.open()
        defer { log.close() }
        let plain = TimeTravel(log: log, useSnapshots: false)
        let stepping = TimeTravel(log: log, useSnapshots: false, checkpoints: .init(everyDeliveries: 5))
        let last = log.lastSeq
        let points = Array(stride(from: UInt64(1), through: last, by: 13)) + [last] + Array(stride(from: last, through: 1, by: -29))
        for seq in points {
            let expected = try plain.state(at: seq)
            let travelled = try stepping.state(at: seq)
            XCTAssertEqual(travelled.actors.map(\.digest), expected.actors.map(\.digest), "at \(seq)")
            XCTAssertEqual(travelled.actors.map(\.lastSeq), expected.actors.map(\.lastSeq), "at \(seq)")
        }
        XCTAssertGreaterThan(stepping.checkpointCount, 20)
        // From checkpoints, a travel replays fewer records than from the first one.
        let mid = last / 2
        XCTAssertLessThan(try stepping.state(at: mid).recordsReplayed, try plain.state(at: mid).recordsReplayed)
    }

    func testTravelAtTheLastSeqEqualsRecoverDigests() async throws {
        let recording = try await Recording.record(label: "recover", batches: [60])
        let log = try recording.open(readOnly: false)
        let (node, report) = try Node.recover(log: log, hierarchy: .standard())
        XCTAssertNil(report.divergence)
        _ = await node.waitUntilIdle()
        let recovered = await node.digests()
        await node.shutdown()
        let travelled = try TimeTravel(log: log).state(at: log.lastSeq)
        XCTAssertEqual(travelled.actors.map(\.address), recovered.map(\.address))
        XCTAssertEqual(travelled.actors.map(\.digest), recovered.map(\.digest))
        XCTAssertEqual(travelled.actors.map(\.lastSeq), recovered.map(\.lastSeq))
        log.close()
    }

    func testTravelRefusesBadInputWithNamedErrors() async throws {
        let recording = try await Recording.record(label: "bad", batches: [3])
        let log = try recording.open()
        defer { log.close() }
        let travel = TimeTravel(log: log)
        XCTAssertThrowsError(try travel.state(at: 0)) { XCTAssertEqual(($0 as? TravelError)?.code, .seqOutOfRange) }
        XCTAssertThrowsError(try travel.state(at: log.lastSeq + 1)) { XCTAssertEqual(($0 as? TravelError)?.code, .seqOutOfRange) }
        XCTAssertThrowsError(try travel.state(at: 1, actors: [Address("agent.nobody@v1.0")])) {
            XCTAssertEqual(($0 as? TravelError)?.code, .unknownActor)
        }
        let one = try travel.state(at: log.lastSeq, actors: [.orchestrator])
        XCTAssertEqual(one.actors.map(\.address), [.orchestrator])
    }

    func testDiffShowsTheFieldsThatChanged() async throws {
        let recording = try await Recording.record(label: "diff", batches: [10, 7])
        let log = try recording.open()
        defer { log.close() }
        let (before, after) = (recording.checkpoints[0].seq, recording.checkpoints[1].seq)
        let diffs = try TimeTravel(log: log).diff(from: before, to: after)
        let client = try XCTUnwrap(diffs.first { $0.address == Hierarchy.runClient })
        XCTAssertEqual(client.changes, [FieldChange(path: "completed", old: .int(10), new: .int(17))])
        let orchestrator = try XCTUnwrap(diffs.first { $0.address == .orchestrator })
        XCTAssertTrue(orchestrator.changes.contains(FieldChange(path: "routed", old: .int(10), new: .int(17))), "\(orchestrator.changes)")
        XCTAssertTrue(orchestrator.changes.contains(FieldChange(path: "answered", old: .int(10), new: .int(17))), "\(orchestrator.changes)")
        // The multimodal supervisor got none of these tasks: it did not change.
        XCTAssertNil(diffs.first { $0.address == Hierarchy.multimodal })
        // Nothing changes between a point and itself.
        XCTAssertTrue(try TimeTravel(log: log).diff(from: after, to: after).isEmpty)

        // Mid-task: a point where the orchestrator holds the task pending.
        let firstTask = recording.taskIDs[10]
        let seqs = try log.seqs(correlation: firstTask)
        let mid = try TimeTravel(log: log).diff(from: before, to: seqs[0], actors: [.orchestrator])
        XCTAssertTrue(mid.first?.changes.contains { $0.path == "pending[0]" && $0.old == nil } ?? false, "\(mid)")
    }

    func testStateDiffPaths() {
        let old: MCPValue = .map([
            "pending": .array([.map(["id": 1, "status": "queued"]), .map(["id": 2, "status": "queued"]), .map(["id": 3, "status": "queued"]), .map(["id": 4, "status": "queued"])]),
            "count": 4, "gone": true,
        ])
        let new: MCPValue = .map([
            "pending": .array([.map(["id": 1, "status": "queued"]), .map(["id": 2, "status": "queued"]), .map(["id": 3, "status": "queued"]), .map(["id": 4, "status": "running"]), .map(["id": 5, "status": "queued"])]),
            "count": 5, "added": "x",
        ])
        let (changes, omitted) = StateDiff.changes(from: old, to: new)
        XCTAssertEqual(omitted, 0)
        XCTAssertEqual(changes, [
            FieldChange(path: "pending[3].status", old: "queued", new: "running"),
            FieldChange(path: "pending[4]", old: nil, new: .map(["id": 5, "status": "queued"])),
            FieldChange(path: "count", old: 4, new: 5),
            FieldChange(path: "added", old: nil, new: "x"),
            FieldChange(path: "gone", old: true, new: nil),
        ])
        XCTAssertEqual(StateDiff.changes(from: old, to: new, limit: 2).omitted, 3)
    }
}
