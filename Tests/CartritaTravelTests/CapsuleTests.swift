import CartritaAgents
import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
@testable import CartritaTravel
import Foundation
import XCTest

final class CapsuleTests: XCTestCase {
    /// Export a task and a range, write them out, drop the log, read the files back elsewhere
    /// and replay: no divergence and the digests the source log gave (the live ones at a
    /// checkpoint).
    func testCapsuleRoundTripReplaysBitExactWithoutTheLog() async throws {
        var recording: Recording? = try await Recording.record(label: "capsule", batches: [30, 25, 20])
        let checkpoints = recording!.checkpoints
        let task = recording!.taskIDs[40]
        var files: [String: [UInt8]] = [:]
        do {
            let log = try recording!.open()
            let travel = TimeTravel(log: log)
            files["task"] = try travel.exportCapsule(correlation: task).encode()
            files["range"] = try travel.exportCapsule(from: checkpoints[0].seq + 1, to: checkpoints[1].seq).encode()
            files["start"] = try travel.exportCapsule(from: 1, to: checkpoints[0].seq).encode()
            log.close()
        }
        recording = nil  // the log's folder is gone: the capsules must stand alone
        let elsewhere = TemporaryDirectory("capsule-elsewhere")
        for (name, bytes) in files {
            let path = elsewhere.path + "/\(name).capsule"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            let capsule = try Capsule.decode([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path))))
            let report = try capsule.replay()
            XCTAssertNil(report.divergence, "\(name): \(report.divergence.map(String.init(describing:)) ?? "")")
            XCTAssertTrue(report.passed, "\(name): \(report.actors.filter { !$0.matches }.map(\.address))")
            XCTAssertGreaterThan(report.replayed, 0, name)
            XCTAssertEqual(report.actors.count, capsule.meta.actors.count)
            if name == "range" || name == "start" {
                // Every record of the range is in the capsule, and its actors end as the live node did.
                let live = name == "range" ? checkpoints[1] : checkpoints[0]
                XCTAssertEqual(capsule.records.count, Int(capsule.meta.toSeq - capsule.meta.fromSeq + 1))
                for actor in report.actors {
                    XCTAssertEqual(actor.digest, live.digests.first { $0.address == actor.address }?.digest, "\(name) \(actor.address)")
                }
            }
            if name == "task" {
                XCTAssertEqual(capsule.meta.kind, .correlation)
                XCTAssertEqual(capsule.meta.correlation, task)
                XCTAssertTrue(capsule.meta.actors.contains(.orchestrator))
                XCTAssertTrue(capsule.meta.actors.contains(Hierarchy.runClient))
                XCTAssertFalse(capsule.snapshots.isEmpty, "a task in the middle of the log starts from snapshots")
            }
        }
    }

    /// After a deliberate change of a handler, replay reports the first divergence with the seq
    /// of the delivery whose effects changed; with the unchanged handler it is bit-exact.
    func testADivergenceIsReportedAfterACodeChange() async throws {
        let recording = try await Recording.record(label: "diverge", batches: [24, 24])
        let log = try recording.open()
        defer { log.close() }
        let capsule = try TimeTravel(log: log).exportCapsule(from: recording.checkpoints[0].seq + 1, to: recording.checkpoints[1].seq)
        let decoded = try Capsule.decode(capsule.encode())

        let same = try decoded.replay(hierarchy: Self.hierarchy(language: LanguageMaestro()))
        XCTAssertTrue(same.passed, "the same handlers built by hand replay bit-exact")

        let changed = try decoded.replay(hierarchy: Self.hierarchy(language: ChangedLanguageMaestro()))
        XCTAssertFalse(changed.passed)
        // The same report every time, actor digests included: the replay stops at the divergence
        // however far ahead of the byte checker it ran.
        let again = try decoded.replay(hierarchy: Self.hierarchy(language: ChangedLanguageMaestro()))
        XCTAssertEqual(again.divergence, changed.divergence)
        XCTAssertEqual(again.actors.map(\.digest), changed.actors.map(\.digest))
        XCTAssertEqual(again.replayed, changed.replayed)
        let divergence = try XCTUnwrap(changed.divergence)
        XCTAssertEqual(divergence.actor.name.hasPrefix("agent.languagemaestro"), true, "\(divergence)")
        // The seq is the delivery whose handler now answers differently: a request to that agent.
        let record = try XCTUnwrap(try log.record(divergence.seq))
        XCTAssertEqual(record.envelope.recipient, divergence.actor)
        XCTAssertEqual(record.envelope.type, .taskRequest)
        XCTAssertTrue(divergence.replayed.contains("\"changed\":true"), divergence.replayed)
        // It is the first one in log order: the first answer of a LanguageMaestro in the capsule
        // to a request delivered inside it (answers to earlier requests were made before the
        // capsule starts, by the recorded code, and travel in its snapshots).
        var first: LogRecord?
        for record in try log.records(from: decoded.meta.fromSeq, limit: Int(decoded.meta.toSeq - decoded.meta.fromSeq + 1)) {
            guard record.envelope.sender.name.hasPrefix("agent.languagemaestro"), record.envelope.type == .taskResponse,
                let parent = record.envelope.parentID, let requestSeq = try log.seq(ofMessage: parent), requestSeq >= decoded.meta.fromSeq
            else { continue }
            first = record
            break
        }
        let answer = try XCTUnwrap(first)
        XCTAssertTrue(divergence.logged.contains(answer.envelope.id.description), "\(divergence.logged) vs \(answer.envelope.id)")
        XCTAssertEqual(try log.seq(ofMessage: try XCTUnwrap(answer.envelope.parentID)), divergence.seq)
    }

    func testBadCapsulesAreRefusedWithNamedErrors() async throws {
        let recording = try await Recording.record(label: "bad-capsule", batches: [8])
        let log = try recording.open()
        defer { log.close() }
        let good = try TimeTravel(log: log).exportCapsule(correlation: recording.taskIDs[2]).encode()
        XCTAssertNoThrow(try Capsule.decode(good))
        func refusal(_ bytes: [UInt8]) -> TravelError.Code? {
            do {
                _ = try Capsule.decode(bytes)
                return nil
            } catch {
                return error.code
            }
        }
        // Truncated anywhere: in the header, inside a section, before or inside the trailer.
        XCTAssertEqual(refusal([]), .truncated)
        XCTAssertEqual(refusal(Array(good.prefix(12))), .truncated)
        XCTAssertEqual(refusal(Array(good.prefix(good.count / 2))), .truncated)
        XCTAssertEqual(refusal(Array(good.dropLast(20))), .truncated)
        XCTAssertEqual(refusal(Array(good.dropLast(36))), .truncated)
        // A byte changed inside a section, or in the file's checksum.
        var flipped = good
        flipped[good.count / 2] ^= 0x01
        XCTAssertEqual(refusal(flipped), .checksumMismatch)
        var trailer = good
        trailer[good.count - 1] ^= 0x80
        XCTAssertEqual(refusal(trailer), .checksumMismatch)
        // A format version this build does not read, and a file that is no capsule at all.
        var future = good
        future[9] = 2
        XCTAssertEqual(refusal(future), .unsupportedVersion)
        XCTAssertEqual(refusal(Array("{\"not\": \"a capsule\"}".utf8)), .notACapsule)
        // Consistent checksums around inconsistent content: a record filed under another seq.
        var capsule = try Capsule.decode(good)
        capsule.records[0].seq += 1_000_000
        capsule.inputs[0].seq += 1_000_000
        XCTAssertThrowsError(try Capsule.decode(capsule.encode()).replay()) { XCTAssertEqual(($0 as? TravelError)?.code, .malformed) }
        // The good one still replays (nothing above changed it).
        XCTAssertTrue(try Capsule.decode(good).replay().passed)
    }

    /// The standard hierarchy, built by hand, with `language` in the LanguageMaestro pool.
    static func hierarchy<Language: Agent>(language: Language) -> Hierarchy {
        let data = DataSage()
        let base = Address("agent.languagemaestro@v1.0")
        return .custom(
            routing: .standard,
            supervisors: [
                .init(address: Hierarchy.intelligence, agents: (1...2).map { .agent(language, address: base.instance($0)) }),
                .init(address: Hierarchy.multimodal, agents: []),
                .init(
                    address: Hierarchy.system,
                    agents: (1...2).map { .agent(data, address: data.address.instance($0)) } + [.agent(TaskManagement()), .agent(SystemMonitor())]),
            ],
            clients: [Hierarchy.runClient])
    }
}

/// LanguageMaestro after a "fix" that changes its answers: what capsule replay must catch.
struct ChangedLanguageMaestro: Agent {
    typealias State = EmptyState
    let inner = LanguageMaestro()
    var address: Address { self.inner.address }
    var taskTypes: [String] { self.inner.taskTypes }

    func handle(_ request: TaskRequest, state: inout EmptyState, context: DeliveryContext) throws -> AgentOutcome {
        switch self.inner.handle(request, state: &state, context: context) {
        case .completed(let result, let metrics): return .completed(result: .map(["changed": true, "was": result]), metrics: metrics)
        case let other: return other
        }
    }
}
