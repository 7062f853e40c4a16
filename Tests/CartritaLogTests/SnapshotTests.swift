import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import CartritaLog
import Foundation
import Synchronization
import XCTest

/// Actor snapshots (MCP-SPEC §6): the newest usable one at or before a seq, pruning, and
/// unreadable or refused ones skipped in favour of older ones, never a crash.
final class SnapshotTests: XCTestCase {
    static let actor = "orchestrator@v1.0"
    /// Sorts right after `actor ‖ 0x00 …` keys ("0" > 0x00): pruning and lookups must stop at the boundary.
    static let neighbour = "orchestrator@v1.00"
    /// Sorts right before.
    static let before = "orchestrator@v1."

    func state(_ seq: UInt64, bytes: Int = 64) -> [UInt8] {
        var random = SplitMix64(seed: seq)
        return (0..<bytes).map { _ in UInt8(truncatingIfNeeded: random.next64()) }
    }

    func makeLog(_ directory: TemporaryDirectory, keep: Int = 3) async throws -> EventLog {
        let log = try EventLog(path: directory.path, configuration: config { $0.snapshotsKeptPerActor = keep })
        _ = try await log.append(contentsOf: sampleEnvelopes(seed: 91, count: 100, payloadBytes: 32), clockMilliseconds: 0, entropy: 0).map { try $0.get() }
        return log
    }

    /// Snapshots queued among appends are stored in the transaction of a group commit, never
    /// as commits of their own; one that covers records the log lacks fails alone, and the
    /// records and snapshots around it are stored.
    func testSnapshotsRideInTheGroupCommitsAndABadOneFailsAlone() async throws {
        let directory = TemporaryDirectory("snapshots-in-batches")
        let log = try await self.makeLog(directory)
        defer { log.close() }
        let outcomes = Mutex<[UInt64: Result<Void, EventLogError>]>([:])
        let appended = try await withThrowingTaskGroup(of: Int.self) { group -> Int in
            for round in 0..<20 {
                group.addTask {
                    let results = await log.append(
                        contentsOf: sampleEnvelopes(seed: 1_000 + UInt64(round), count: 50, payloadBytes: 64), clockMilliseconds: 0, entropy: 0)
                    return try results.map { try $0.get() }.count
                }
                // Seqs 10…29 are in the log already; 1_000_000 + round never will be.
                for seq in [UInt64(10 + round), 1_000_000 + UInt64(round)] {
                    try log.saveSnapshot(Snapshot(actor: "actor.\(round)@v1.0", seq: seq, formatVersion: 1, state: self.state(seq))) { result in
                        outcomes.withLock { $0[seq] = result }
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(appended, 1_000)
        try await log.flush()
        let results = outcomes.withLock { $0 }
        XCTAssertEqual(results.count, 40, "every snapshot hears its outcome")
        for round in 0..<20 {
            XCTAssertNoThrow(try results[UInt64(10 + round)]?.get())
            XCTAssertEqual(try log.latestSnapshot(of: "actor.\(round)@v1.0")?.seq, UInt64(10 + round))
            guard case .failure(let error)? = results[1_000_000 + UInt64(round)] else { return XCTFail("a snapshot beyond the log was stored") }
            XCTAssertEqual(error.code, .invalidArgument)
        }
        let metrics = log.writerMetrics
        XCTAssertEqual(metrics.snapshotsSaved, 20)
        // At most flush's barrier (counted once it has answered, so maybe not yet): no snapshot
        // was a commit of its own.
        XCTAssertLessThanOrEqual(metrics.otherRequests, 1)
        _ = try assertVerifies(log, records: 1_100)
    }

    /// Older snapshots are thinned to one per window of seqs, not all deleted: time travel to
    /// an old point starts from a snapshot near it.
    func testOlderSnapshotsAreThinnedToOnePerWindow() async throws {
        let directory = TemporaryDirectory("snapshots-spaced")
        let log = try EventLog(path: directory.path, configuration: config {
            $0.snapshotsKeptPerActor = 2
            $0.snapshotRetentionSpacingSeqs = 25
        })
        defer { log.close() }
        _ = try await log.append(contentsOf: sampleEnvelopes(seed: 92, count: 100, payloadBytes: 16), clockMilliseconds: 0, entropy: 0).map { try $0.get() }
        for seq in stride(from: UInt64(5), through: 95, by: 5) {
            try await log.saveSnapshot(Snapshot(actor: Self.actor, seq: seq, formatVersion: 1, state: self.state(seq)))
        }
        // The newest two, then the newest of each window of 25 seqs: 50…74, 25…49, 0…24.
        XCTAssertEqual(try log.snapshots(of: Self.actor).map(\.seq), [95, 90, 70, 45, 20])
        XCTAssertEqual(try log.latestSnapshot(of: Self.actor, atOrBefore: 60)?.seq, 45, "an old point has a snapshot near it")
        XCTAssertEqual(try log.latestSnapshot(of: Self.actor, atOrBefore: 19)?.seq, nil)

        // Spacing 0 is the old rule: the newest N only.
        var retention = SnapshotRetention(keepNewest: 2, spacingSeqs: 0)
        XCTAssertEqual([95, 90, 70, 45, 20].map { retention.keeps(seq: $0) }, [true, true, false, false, false])
        // Over a long log the count grows with its length over the spacing, not with the snapshots taken.
        var long = SnapshotRetention(keepNewest: 3, spacingSeqs: 16_384)
        let kept = stride(from: UInt64(1_000_000), to: 0, by: -1_000).filter { long.keeps(seq: $0) }
        XCTAssertTrue((1_000_000 / 16_384...3 + 1_000_000 / 16_384 + 1).contains(kept.count), "1,000 snapshots of a 1M-seq log keep \(kept.count)")
        for (newer, older) in zip(kept.dropFirst(3), kept.dropFirst(4)) {
            XCTAssertLessThan(newer - older, 2 * 16_384, "no gap of two windows between kept snapshots")
        }
    }

    func testSaveLoadLatestAndPruning() async throws {
        let directory = TemporaryDirectory("snapshots")
        let log = try await self.makeLog(directory)
        defer { log.close() }
        let actor = Self.actor

        XCTAssertNil(try log.latestSnapshot(of: actor), "no snapshot yet: replay from the start")
        XCTAssertEqual(try log.snapshots(of: actor), [])

        try await log.saveSnapshot(Snapshot(actor: Self.neighbour, seq: 95, formatVersion: 1, state: self.state(1_095)))
        try await log.saveSnapshot(Snapshot(actor: Self.before, seq: 96, formatVersion: 1, state: self.state(2_096)))
        for seq: UInt64 in [10, 20, 30] {
            try await log.saveSnapshot(Snapshot(actor: actor, seq: seq, formatVersion: 1, state: self.state(seq)))
        }
        let loaded = try XCTUnwrap(try log.latestSnapshot(of: actor))
        XCTAssertEqual(loaded, Snapshot(actor: actor, seq: 30, formatVersion: 1, state: self.state(30)), "save then load gives the same snapshot")

        // Two more: only the newest three remain, the neighbours untouched.
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 40, formatVersion: 1, state: self.state(40)))
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 50, formatVersion: 2, state: self.state(50, bytes: 10_000)))
        XCTAssertEqual(try log.snapshots(of: actor).map(\.seq), [50, 40, 30], "newest first, snapshotsKeptPerActor = 3")
        XCTAssertEqual(try log.snapshots(of: actor).map(\.problem), [nil, nil, nil])
        XCTAssertEqual(try log.snapshots(of: actor).map(\.formatVersion), [2, 1, 1])
        XCTAssertEqual(try log.snapshots(of: actor).map(\.stateBytes), [10_000, 64, 64])
        XCTAssertEqual(try log.snapshots(of: Self.neighbour).map(\.seq), [95])
        XCTAssertEqual(try log.snapshots(of: Self.before).map(\.seq), [96])
        XCTAssertEqual(try log.latestSnapshot(of: Self.neighbour)?.state, self.state(1_095))
        XCTAssertEqual(try log.latestSnapshot(of: Self.before)?.state, self.state(2_096))
        XCTAssertEqual(try log.stat().snapshots, 5)

        // At or before a seq.
        XCTAssertEqual(try log.latestSnapshot(of: actor)?.seq, 50)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: .max)?.seq, 50)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 100)?.seq, 50)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 50)?.seq, 50)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 49)?.seq, 40)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 40)?.seq, 40)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 31)?.seq, 30)
        XCTAssertNil(try log.latestSnapshot(of: actor, atOrBefore: 29), "older ones were pruned")
        XCTAssertNil(try log.latestSnapshot(of: actor, atOrBefore: 0))
        XCTAssertNil(try log.latestSnapshot(of: "agent.nobody@v1.0"))
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 50)?.state, self.state(50, bytes: 10_000))

        // A format the caller refuses is skipped for an older one.
        XCTAssertEqual(try log.latestSnapshot(of: actor, accepting: { $0 == 1 })?.seq, 40)
        XCTAssertNil(try log.latestSnapshot(of: actor, accepting: { $0 == 7 }))

        // Saving an older seq than the kept ones: it is the oldest, so it is pruned at once.
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 5, formatVersion: 1, state: self.state(5)))
        XCTAssertEqual(try log.snapshots(of: actor).map(\.seq), [50, 40, 30])
        // Saving the same seq again replaces it.
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 40, formatVersion: 1, state: self.state(41)))
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 45)?.state, self.state(41))
        XCTAssertEqual(try log.snapshots(of: actor).map(\.seq), [50, 40, 30])

        // The last seq is fine, beyond the log is refused.
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 100, formatVersion: 1, state: self.state(100)))
        XCTAssertEqual(try log.snapshots(of: actor).map(\.seq), [100, 50, 40])
        await expectLogError(.invalidArgument, "a snapshot beyond the log") {
            try await log.saveSnapshot(Snapshot(actor: actor, seq: 101, formatVersion: 1, state: self.state(101)))
        }
        await expectLogError(.invalidArgument, "a snapshot far beyond the log") {
            try await log.saveSnapshot(Snapshot(actor: actor, seq: .max, formatVersion: 1, state: []))
        }
        XCTAssertEqual(try log.snapshots(of: actor).map(\.seq), [100, 50, 40], "a refused snapshot changes nothing")
        try assertVerifies(log, records: 100)
    }

    func testCorruptedAndRefusedSnapshotsAreSkipped() async throws {
        let directory = TemporaryDirectory("snapshot-corrupt")
        var log = try await self.makeLog(directory, keep: 5)
        let actor = Self.actor
        for seq: UInt64 in [10, 20, 30, 40] {
            try await log.saveSnapshot(Snapshot(actor: actor, seq: seq, formatVersion: seq == 30 ? 9 : 1, state: self.state(seq)))
        }
        try await log.saveSnapshot(Snapshot(actor: Self.neighbour, seq: 50, formatVersion: 1, state: self.state(50)))
        log.close()

        // Tamper through raw LMDB: flip one byte of the state of 40 (checksum), replace 20 by
        // bytes that are not msgpack at all, and make the neighbour's an unknown store format.
        try withRawLog(directory.path) { txn, open in
            let snapshots = try open("snapshots")
            var stored = try XCTUnwrap(try txn.getBytes(snapshots, key: actorKey(actor, 40)))
            stored[stored.count - 1] ^= 0x20
            try txn.put(snapshots, key: actorKey(actor, 40), value: stored)
            try txn.put(snapshots, key: actorKey(actor, 20), value: [0xc1, 0xc1, 0x00])
            var neighbour = try XCTUnwrap(try txn.getBytes(snapshots, key: actorKey(Self.neighbour, 50)))
            // {"v": 1, …}: the value of "v" is the byte after 0x86 0xa1 0x76.
            XCTAssertEqual(Array(neighbour.prefix(4)), [0x86, 0xa1, 0x76, 0x01])
            neighbour[3] = 0x02
            try txn.put(snapshots, key: actorKey(Self.neighbour, 50), value: neighbour)
        }

        log = try EventLog(path: directory.path)
        defer { log.close() }
        // 40 is corrupted, 30 has a format this caller refuses: 10 is the newest usable.
        XCTAssertEqual(try log.latestSnapshot(of: actor, accepting: { $0 == 1 }), Snapshot(actor: actor, seq: 10, formatVersion: 1, state: self.state(10)))
        XCTAssertEqual(try log.latestSnapshot(of: actor)?.seq, 30, "a caller that accepts format 9 gets 30")
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 25)?.seq, 10, "20 is unreadable")
        XCTAssertNil(try log.latestSnapshot(of: actor, atOrBefore: 9))
        XCTAssertNil(try log.latestSnapshot(of: Self.neighbour), "an unknown store format is skipped")

        let infos = try log.snapshots(of: actor)
        XCTAssertEqual(infos.map(\.seq), [40, 30, 20, 10])
        XCTAssertEqual(infos[0].problem, "checksum mismatch")
        XCTAssertNil(infos[1].problem)
        XCTAssertEqual(infos[1].formatVersion, 9)
        XCTAssertNotNil(infos[2].problem)
        XCTAssertTrue(infos[2].problem?.hasPrefix("undecodable") ?? false, "\(infos[2].problem ?? "nil")")
        XCTAssertNil(infos[3].problem)
        XCTAssertEqual(try log.snapshots(of: Self.neighbour).first?.problem, "snapshot store format 2 is not supported")

        // A new snapshot is still saved and preferred; the damaged ones stay reported.
        try await log.saveSnapshot(Snapshot(actor: actor, seq: 60, formatVersion: 1, state: self.state(60)))
        XCTAssertEqual(try log.latestSnapshot(of: actor)?.seq, 60)
        try assertVerifies(log, records: 100)
    }

    func testSnapshotUnderTheWrongKeyIsSkipped() async throws {
        // A value copied under another seq or another actor's key (a swapped page, a buggy
        // tool) decodes and checksums fine, but must not be used: replay would start after the
        // wrong seq.
        let directory = TemporaryDirectory("snapshot-misplaced")
        var log = try await self.makeLog(directory, keep: 5)
        let actor = Self.actor
        for seq: UInt64 in [10, 20, 30] {
            try await log.saveSnapshot(Snapshot(actor: actor, seq: seq, formatVersion: 1, state: self.state(seq)))
        }
        try await log.saveSnapshot(Snapshot(actor: Self.neighbour, seq: 25, formatVersion: 1, state: self.state(1_025)))
        log.close()
        try withRawLog(directory.path) { txn, open in
            let snapshots = try open("snapshots")
            let thirty = try XCTUnwrap(try txn.getBytes(snapshots, key: actorKey(actor, 30)))
            let other = try XCTUnwrap(try txn.getBytes(snapshots, key: actorKey(Self.neighbour, 25)))
            try txn.put(snapshots, key: actorKey(actor, 20), value: thirty)
            try txn.put(snapshots, key: actorKey(actor, 25), value: other)
        }
        log = try EventLog(path: directory.path, configuration: config(readOnly: true))
        defer { log.close() }
        XCTAssertEqual(try log.latestSnapshot(of: actor)?.seq, 30)
        XCTAssertEqual(try log.latestSnapshot(of: actor, atOrBefore: 27), Snapshot(actor: actor, seq: 10, formatVersion: 1, state: self.state(10)))
        let infos = try log.snapshots(of: actor)
        XCTAssertEqual(infos.map(\.seq), [30, 25, 20, 10])
        XCTAssertEqual(infos.map { $0.problem == nil }, [true, false, false, true], "\(infos)")
    }
}
