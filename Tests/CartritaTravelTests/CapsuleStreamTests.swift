import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
@testable import CartritaTravel
import Foundation
import Crypto
import XCTest

/// `capsule replay` verifies the records on another thread while recovery replays them. These
/// check that this changes nothing a user sees: the same refusals with the same messages, the
/// same outcome as replaying records verified up front, and a bounded queue.
final class CapsuleStreamTests: XCTestCase {
    /// A range capsule of a log with enough records for several stream batches.
    static func rangeCapsule(label: String) async throws -> (Recording, Capsule) {
        let recording = try await Recording.record(label: label, batches: [20, 120])
        let log = try recording.open()
        defer { log.close() }
        let capsule = try TimeTravel(log: log).exportCapsule(from: recording.checkpoints[0].seq + 1, to: recording.checkpoints[1].seq)
        XCTAssertGreaterThan(capsule.records.count, 2 * CapsuleRecordStream.batchRecords, "the bad records below sit in a later batch")
        return (recording, try Capsule.decode(capsule.encode()))
    }

    /// The error a capsule is refused with; nil when it replays.
    static func refusal(_ body: () throws(TravelError) -> Void) -> TravelError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    func testStreamedReplayRefusesExactlyWhatTheUpFrontCheckRefuses() async throws {
        let (_, good) = try await Self.rangeCapsule(label: "stream-refusals")
        let late = good.records.count * 3 / 4
        var damaged: [(String, Capsule)] = []

        var inputs = good
        inputs.inputs[late].clockMilliseconds += 1
        damaged.append(("inputs differ", inputs))

        var cut = good
        cut.records[late].bytes.removeLast()
        damaged.append(("does not decode", cut))

        // One bit of prev_hash: the record still decodes, but no longer chains to the one before.
        var chain = good
        let key = Array("prev_hash".utf8)
        let bytes = chain.records[late].bytes
        let at = try XCTUnwrap((0...(bytes.count - key.count)).first { Array(bytes[$0..<$0 + key.count]) == key })
        chain.records[late].bytes[at + key.count + 2 + 5] ^= 0x01  // after the key: bin8 marker, length, then the hash
        damaged.append(("does not chain", chain))

        // A record that is whole and still chains (the hash is of its bytes as they are), but no
        // longer decodes: one letter of a key. A replayed actor sent it, so the replay compares
        // its own copy with it rather than decoding it first; the refusal must be the same.
        var renamed = good
        let sent = try XCTUnwrap((late..<good.records.count).first { index in
            guard let record = try? EnvelopeDecoder().decodeRecord(good.records[index].bytes) else { return false }
            return !record.envelope.sender.isClient && good.records[index].bytes.count > 0
        })
        let name = Array("max_retries".utf8)
        let record = renamed.records[sent].bytes
        let nameAt = try XCTUnwrap((0...(record.count - name.count)).first { Array(record[$0..<$0 + name.count]) == name })
        renamed.records[sent].bytes[nameAt + name.count - 1] = UInt8(ascii: "z")
        // Re-chain the next record to the changed bytes, as a forger would.
        if sent + 1 < renamed.records.count, renamed.records[sent + 1].seq == renamed.records[sent].seq + 1 {
            let next = renamed.records[sent + 1].bytes
            let hashKey = Array("prev_hash".utf8)
            let hashAt = try XCTUnwrap((0...(next.count - hashKey.count)).first { Array(next[$0..<$0 + hashKey.count]) == hashKey })
            let digest: [UInt8] = Array(SHA256.hash(data: renamed.records[sent].bytes))
            let hashStart = hashAt + hashKey.count + 2
            renamed.records[sent + 1].bytes.replaceSubrange(hashStart..<(hashStart + 32), with: digest)
        }
        let renamedUpFront = Self.refusal { () throws(TravelError) in _ = try renamed.verifiedRecords() }
        let renamedStreamed = Self.refusal { () throws(TravelError) in _ = try Capsule.decode(renamed.encode()).replay() }
        XCTAssertEqual(renamedUpFront?.code, .malformed)
        XCTAssertEqual(renamedStreamed?.code, .malformed, "\(renamedStreamed.map { "\($0)" } ?? "replayed")")
        let seqText = "record \(renamed.records[sent].seq) "
        XCTAssertTrue(renamedUpFront?.message.contains(seqText) == true, renamedUpFront?.message ?? "")
        XCTAssertTrue(renamedStreamed?.message.contains(seqText) == true, renamedStreamed?.message ?? "")

        for (name, capsule) in damaged {
            let upFront = Self.refusal { () throws(TravelError) in _ = try capsule.verifiedRecords() }
            let streamed = Self.refusal { () throws(TravelError) in _ = try Capsule.decode(capsule.encode()).replay() }
            XCTAssertEqual(upFront?.code, .malformed, name)
            XCTAssertEqual(streamed, upFront, name)
            XCTAssertTrue(upFront?.message.contains("\(capsule.records[late].seq)") == true, "\(name): \(upFront?.message ?? "")")
        }
        XCTAssertTrue(try good.replay().passed, "the good capsule still replays")
    }

    /// A divergence stops the replay early; a damaged record after it must still refuse the
    /// capsule, as when every record was checked before the replay began.
    func testADamagedRecordAfterADivergenceStillRefusesTheCapsule() async throws {
        let (_, good) = try await Self.rangeCapsule(label: "stream-diverge")
        let changed = CapsuleTests.hierarchy(language: ChangedLanguageMaestro())
        let divergence = try XCTUnwrap(try good.replay(hierarchy: changed).divergence)
        var damaged = good
        let last = damaged.records.count - 1
        XCTAssertGreaterThan(damaged.records[last].seq, divergence.seq)
        damaged.inputs[last].entropy ^= 1
        let error = Self.refusal { () throws(TravelError) in _ = try damaged.replay(hierarchy: changed) }
        XCTAssertEqual(error?.code, .malformed)
        XCTAssertEqual(error, Self.refusal { () throws(TravelError) in _ = try damaged.verifiedRecords() })
    }

    /// Streaming changes nothing in the outcome: recovery over the same records verified and
    /// decoded up front (as `CapsuleReader` holds them) ends every actor in the same state, with
    /// the same owed messages.
    func testStreamedReplayMatchesReplayOfRecordsDecodedUpFront() async throws {
        let (_, capsule) = try await Self.rangeCapsule(label: "stream-same")
        let streamed = try capsule.replay()
        XCTAssertTrue(streamed.passed)
        let wanted = Set(capsule.meta.actors)
        let makeCells = Hierarchy.standard().makeCells
        let hierarchy = Hierarchy(addresses: capsule.meta.actors) { makeCells().filter { wanted.contains($0.address) } }
        let log = CapsuleLog(records: try capsule.verifiedRecords(), snapshots: capsule.snapshots)
        let (cells, report) = try Recovery(log: log, hierarchy: hierarchy, useSnapshots: true, handlers: .all).run()
        XCTAssertNil(report.divergence)
        XCTAssertEqual(report.recordsReplayed, streamed.replayed)
        XCTAssertEqual(report.pending.count, streamed.madeOutside)
        XCTAssertEqual(
            cells.sorted { $0.address < $1.address }.map { "\($0.address) \(Recovery.digest(of: $0))" },
            streamed.actors.map { "\($0.address) \($0.digest)" })
    }

    /// The lookups recovery makes after the scan answer as a table of every record would.
    func testStreamedLookupsAnswerForEveryRecord() async throws {
        let (_, capsule) = try await Self.rangeCapsule(label: "stream-lookups")
        let records = try capsule.verifiedRecords()
        let streamed = CapsuleLog(streaming: capsule)
        defer { streamed.finish() }
        let decoded = CapsuleLog(records: records, snapshots: capsule.snapshots)
        XCTAssertEqual(try streamed.heads().map { "\($0.actor)@\($0.seq)" }, try decoded.heads().map { "\($0.actor)@\($0.seq)" })
        var heads: [String: UInt64] = [:]
        for (seq, record) in records { heads[record.envelope.recipient.rawValue] = seq }
        XCTAssertEqual(try streamed.heads().map { "\($0.actor)@\($0.seq)" }, heads.sorted { $0.key < $1.key }.map { "\($0.key)@\($0.value)" })
        let picks = stride(from: 0, to: records.count, by: 37).map { records[$0] }
        let unknown = MessageID(high: 1, low: 2)
        XCTAssertEqual(try streamed.seqs(ofMessages: picks.map(\.record.envelope.id) + [unknown]), picks.map(\.seq) + [nil])
        for (seq, record) in picks {
            XCTAssertEqual(try streamed.record(seq), record)
            let task = records.filter { $0.record.envelope.correlationID == record.envelope.correlationID }.map(\.seq)
            XCTAssertEqual(try streamed.seqs(correlation: record.envelope.correlationID), task)
            XCTAssertEqual(try decoded.seqs(correlation: record.envelope.correlationID), task)
        }
        XCTAssertNil(try streamed.record(capsule.meta.toSeq + 1))
        XCTAssertEqual(try streamed.seqs(correlation: unknown), [])
        // The stream went by in the lookups: a replay now decodes the records again, in full.
        var replayed: [UInt64] = []
        try streamed.replay(from: records[10].seq) { batch in
            replayed += batch.map(\.seq)
            return true
        }
        XCTAssertEqual(replayed, records.dropFirst(10).map(\.seq))
    }

    /// The verifying thread never gets more than `maxQueuedBatches` ahead of a consumer that
    /// does not take anything, and a consumer that stops early lets it go.
    func testTheStreamIsBoundedAndStopsWhenTheConsumerDoes() async throws {
        let (_, capsule) = try await Self.rangeCapsule(label: "stream-bound")
        let stream = CapsuleRecordStream(records: capsule.records, inputs: capsule.inputs, batchRecords: 4, maxQueuedBatches: 3)
        let first = try XCTUnwrap(try stream.next())
        XCTAssertEqual(first.map(\.seq), capsule.records.prefix(4).map(\.seq))
        // Give the thread every chance to run ahead.
        let deadline = ContinuousClock.now + .seconds(5)
        while stream.queuedHighWater < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertEqual(stream.queuedHighWater, 3)
        stream.finish()  // returns: the thread left while waiting for room
        stream.finish()
    }

    /// `RecipientPeek` reads the recipient the decoder reads (or nothing, and the record is
    /// decoded), and never more than the bytes it is given, however they are cut or changed.
    func testRecordPeekReadsTheRecipientTheDecoderReads() async throws {
        let (_, capsule) = try await Self.rangeCapsule(label: "stream-peek")
        let decoder = EnvelopeDecoder(limits: CodecLimits.default)
        func peek(_ bytes: [UInt8]) -> String? {
            bytes.withUnsafeBytes { RecipientPeek.recipient($0).map { String(decoding: $0, as: UTF8.self) } }
        }
        var random = SplitMix64(seed: 6)
        var agreed = 0
        for (index, entry) in capsule.records.enumerated() {
            let recipient = try decoder.decodeRecord(entry.bytes).envelope.recipient.rawValue
            XCTAssertEqual(peek(entry.bytes), recipient, "record \(entry.seq)")
            guard index % 50 == 0 else { continue }
            for cut in 0..<entry.bytes.count {
                let read = peek(Array(entry.bytes.prefix(cut)))
                XCTAssertTrue(read == nil || read == recipient, "record \(entry.seq) cut at \(cut): \(read ?? "")")
            }
            for _ in 0..<200 {
                var bytes = entry.bytes
                bytes[Int(random.next64() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next64())
                let read = peek(bytes)
                if let record = try? decoder.decodeRecord(bytes), let read {
                    XCTAssertEqual(read, record.envelope.recipient.rawValue, "record \(entry.seq) changed")
                    agreed += 1
                }
            }
        }
        XCTAssertGreaterThan(agreed, 0, "some changed records still decode, and the peek agreed on them")
    }
}
