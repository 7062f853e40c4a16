import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation
import XCTest

/// Golden fixtures in `Snapshots/`: a log written by format 1 must keep loading, verifying and
/// answering the same lookups as formats evolve (see Snapshots/README.md).
///
/// `testWriteGoldenFixtures` regenerates them and runs only with CARTRITA_WRITE_FIXTURES=1.
/// `testGoldenLogV1Loads` always runs, on a copy in /tmp: nothing ever writes into Snapshots/.
final class GoldenFixtureTests: XCTestCase {
    static let name = "log-v1"
    static let seed: UInt64 = 7
    static let recordCount = 200
    static let snapshotActor = "orchestrator@v1.0"
    static let snapshotSeqs: [UInt64] = [100, 200]
    static let sampledSeqs: [UInt64] = [1, 2, 3, 50, 99, 100, 101, 150, 199, 200]

    static var fixtureFolder: URL { packageRoot().appendingPathComponent("Snapshots/\(name)") }
    static var expectedFile: URL { packageRoot().appendingPathComponent("Snapshots/\(name).expected.json") }

    static func snapshotState(_ seq: UInt64) -> [UInt8] {
        Array("state of \(snapshotActor) after \(seq) records".utf8) + (0..<64).map { UInt8(truncatingIfNeeded: Int(seq) &* 31 &+ $0) }
    }

    // MARK: Generator

    func testWriteGoldenFixtures() async throws {
        guard ProcessInfo.processInfo.environment["CARTRITA_WRITE_FIXTURES"] == "1" else {
            throw XCTSkip("set CARTRITA_WRITE_FIXTURES=1 to regenerate Snapshots/\(Self.name)")
        }
        let work = TemporaryDirectory("fixture")
        let live = work.sub("live")
        let log = try EventLog(path: live)
        for envelope in sampleEnvelopes(seed: Self.seed, count: Self.recordCount) {
            _ = try await log.append(envelope, clockMilliseconds: envelope.timestampMilliseconds, entropy: envelope.id.low)
        }
        for seq in Self.snapshotSeqs {
            try await log.saveSnapshot(Snapshot(actor: Self.snapshotActor, seq: seq, formatVersion: 1, state: Self.snapshotState(seq)))
        }
        try await log.flush()
        try assertVerifies(log, records: Self.recordCount)
        // Compacted copy: only the pages in use, no lock file.
        let compact = work.sub("compact")
        try log.backup(to: compact)
        log.close()

        let fileManager = FileManager.default
        try? fileManager.removeItem(at: Self.fixtureFolder)
        try fileManager.createDirectory(at: Self.fixtureFolder, withIntermediateDirectories: true)
        try fileManager.copyItem(atPath: compact + "/data.mdb", toPath: Self.fixtureFolder.appendingPathComponent("data.mdb").path)

        // The expected values are read back from a copy of what was just written.
        let copy = work.sub("copy")
        try fileManager.createDirectory(atPath: copy, withIntermediateDirectories: true)
        try fileManager.copyItem(atPath: compact + "/data.mdb", toPath: copy + "/data.mdb")
        let fixture = try EventLog(path: copy, configuration: config(readOnly: true))
        defer { fixture.close() }
        let stat = try fixture.stat()
        var records: [[String: Any]] = []
        for seq in Self.sampledSeqs {
            let raw = try XCTUnwrap(try fixture.rawRecord(seq))
            let record = try XCTUnwrap(try fixture.record(seq))
            records.append([
                "seq": seq,
                "id": record.envelope.id.description,
                "sha256": sha256(raw).description,
                "bytes": raw.count,
                "prev_hash": record.header.prevHash.description,
                "actor_prev_seq": record.header.actorPrevSeq,
                "clock_ms": record.header.clockMilliseconds,
                "entropy": String(record.header.entropy),
                "correlation_id": record.envelope.correlationID.description,
                "recipient": record.envelope.recipient.rawValue,
                "type": record.envelope.type.rawValue,
            ])
        }
        let correlation = try XCTUnwrap(try fixture.record(100)).envelope.correlationID
        let expected: [String: Any] = [
            "comment": "Expected contents of Snapshots/\(Self.name)/data.mdb; see Snapshots/README.md. Written by GoldenFixtureTests.testWriteGoldenFixtures.",
            "generator": ["sample_traffic_seed": Self.seed, "records": Self.recordCount, "clock_ms": "envelope timestamp", "entropy": "low 64 bits of the envelope id"],
            "log_format_version": Int(stat.formatVersion),
            "record_format_version": Int(RecordHeader.formatVersion),
            "snapshot_store_format_version": Int(Snapshot.storeFormatVersion),
            "record_count": stat.records,
            "first_seq": stat.firstSeq,
            "last_seq": stat.lastSeq,
            "head_hash": stat.headHash.description,
            "actors": try fixture.heads().map { ["actor": $0.actor, "head": $0.seq] },
            "records": records,
            "correlation": ["id": correlation.description, "seqs": try fixture.seqs(correlation: correlation)],
            "snapshots": try fixture.snapshots(of: Self.snapshotActor).map { info -> [String: Any] in
                let snapshot = try XCTUnwrap(try fixture.latestSnapshot(of: Self.snapshotActor, atOrBefore: info.seq))
                return [
                    "actor": info.actor, "seq": info.seq, "format_version": Int(info.formatVersion ?? 0),
                    "state_bytes": info.stateBytes, "state_sha256": sha256(snapshot.state).description,
                ]
            },
        ]
        let json = try JSONSerialization.data(withJSONObject: expected, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (json + Data("\n".utf8)).write(to: Self.expectedFile)
        print("wrote \(Self.fixtureFolder.path) (\(try fileManager.attributesOfItem(atPath: Self.fixtureFolder.appendingPathComponent("data.mdb").path)[.size] ?? 0) bytes) and \(Self.expectedFile.path)")
    }

    // MARK: The fixture must keep loading

    func testGoldenLogV1Loads() async throws {
        let fileManager = FileManager.default
        let source = Self.fixtureFolder.appendingPathComponent("data.mdb").path
        guard fileManager.fileExists(atPath: source), fileManager.fileExists(atPath: Self.expectedFile.path) else {
            return XCTFail("missing golden fixture \(source) or \(Self.expectedFile.path); generate with CARTRITA_WRITE_FIXTURES=1")
        }
        let expected = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.expectedFile)) as? [String: Any])
        func number(_ value: Any?) -> UInt64? { (value as? NSNumber)?.uint64Value }

        // Work on copies: the read-only check, and a writer that continues the old log.
        let work = TemporaryDirectory("golden")
        for name in ["read", "write"] {
            try fileManager.createDirectory(atPath: work.sub(name), withIntermediateDirectories: true)
            try fileManager.copyItem(atPath: source, toPath: work.sub(name) + "/data.mdb")
        }
        let log = try EventLog(path: work.sub("read"), configuration: config(readOnly: true))
        defer { log.close() }

        let stat = try log.stat()
        XCTAssertEqual(Int(stat.formatVersion), (expected["log_format_version"] as? NSNumber)?.intValue)
        XCTAssertEqual(stat.records, (expected["record_count"] as? NSNumber)?.intValue)
        XCTAssertEqual(stat.firstSeq, number(expected["first_seq"]))
        XCTAssertEqual(stat.lastSeq, number(expected["last_seq"]))
        XCTAssertEqual(stat.headHash.description, expected["head_hash"] as? String)
        let report = try assertVerifies(log, records: (expected["record_count"] as? NSNumber)?.intValue)
        XCTAssertEqual(report.headHash.description, expected["head_hash"] as? String)

        let records = try XCTUnwrap(expected["records"] as? [[String: Any]])
        XCTAssertFalse(records.isEmpty)
        for entry in records {
            let seq = try XCTUnwrap(number(entry["seq"]))
            let raw = try XCTUnwrap(try log.rawRecord(seq), "record \(seq)")
            XCTAssertEqual(sha256(raw).description, entry["sha256"] as? String, "bytes of record \(seq)")
            XCTAssertEqual(raw.count, (entry["bytes"] as? NSNumber)?.intValue)
            let record = try XCTUnwrap(try log.record(seq), "record \(seq) decodes")
            XCTAssertEqual(record.header.seq, seq)
            XCTAssertEqual(record.envelope.id.description, entry["id"] as? String)
            XCTAssertEqual(record.header.prevHash.description, entry["prev_hash"] as? String)
            XCTAssertEqual(record.header.actorPrevSeq, number(entry["actor_prev_seq"]))
            XCTAssertEqual(record.header.clockMilliseconds, (entry["clock_ms"] as? NSNumber)?.int64Value)
            XCTAssertEqual(String(record.header.entropy), entry["entropy"] as? String)
            XCTAssertEqual(record.envelope.correlationID.description, entry["correlation_id"] as? String)
            XCTAssertEqual(record.envelope.recipient.rawValue, entry["recipient"] as? String)
            XCTAssertEqual(record.envelope.type.rawValue, entry["type"] as? String)
            let id = try XCTUnwrap(MessageID(string: try XCTUnwrap(entry["id"] as? String)))
            XCTAssertEqual(try log.seq(ofMessage: id), seq, "id index of \(seq)")
        }

        let actors = try XCTUnwrap(expected["actors"] as? [[String: Any]])
        let heads = try log.heads()
        XCTAssertEqual(heads.map(\.actor), actors.map { $0["actor"] as? String ?? "" })
        XCTAssertEqual(heads.map(\.seq), actors.map { number($0["head"]) ?? 0 })

        let correlation = try XCTUnwrap(expected["correlation"] as? [String: Any])
        let correlationID = try XCTUnwrap(MessageID(string: try XCTUnwrap(correlation["id"] as? String)))
        XCTAssertEqual(try log.seqs(correlation: correlationID), (correlation["seqs"] as? [NSNumber])?.map(\.uint64Value))

        let snapshots = try XCTUnwrap(expected["snapshots"] as? [[String: Any]])
        XCTAssertEqual(snapshots.count, Self.snapshotSeqs.count)
        let infos = try log.snapshots(of: Self.snapshotActor)
        XCTAssertEqual(infos.map(\.seq), snapshots.map { number($0["seq"]) ?? 0 })
        for entry in snapshots {
            let seq = try XCTUnwrap(number(entry["seq"]))
            let actor = try XCTUnwrap(entry["actor"] as? String)
            let snapshot = try XCTUnwrap(try log.latestSnapshot(of: actor, atOrBefore: seq), "snapshot \(actor) at \(seq)")
            XCTAssertEqual(snapshot.seq, seq)
            XCTAssertEqual(Int(snapshot.formatVersion), (entry["format_version"] as? NSNumber)?.intValue)
            XCTAssertEqual(snapshot.state.count, (entry["state_bytes"] as? NSNumber)?.intValue)
            XCTAssertEqual(sha256(snapshot.state).description, entry["state_sha256"] as? String)
        }
        XCTAssertTrue(infos.allSatisfy { $0.problem == nil }, "\(infos)")

        // A writer of today continues the old log.
        let writer = try EventLog(path: work.sub("write"))
        defer { writer.close() }
        let last = try XCTUnwrap(number(expected["last_seq"]))
        let next = sampleEnvelopes(seed: 99_007, count: 2)
        do {
            let got = try await appendAll(writer, next)
            XCTAssertEqual(got, [last + 1, last + 2])
        }
        XCTAssertEqual(try writer.record(last + 1)?.header.prevHash.description, expected["head_hash"] as? String)
        try await writer.flush()
        try assertVerifies(writer, records: stat.records + 2)
    }
}
