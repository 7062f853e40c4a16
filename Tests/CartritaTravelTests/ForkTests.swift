import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTestSupport
@testable import CartritaTravel
import XCTest

final class ForkTests: XCTestCase {
    /// The first record after `from` whose envelope matches `predicate`.
    func firstRecord(_ log: EventLog, from: UInt64 = 1, where predicate: (LogRecord) -> Bool) throws -> LogRecord {
        try XCTUnwrap(try log.records(from: from).first(where: predicate))
    }

    func forkLog(_ label: String) -> (TemporaryDirectory, EventLog) {
        let directory = TemporaryDirectory(label)
        return (directory, try! EventLog(path: directory.path, configuration: EventLogConfiguration(durability: .relaxed)))
    }

    /// A fork that swaps an agent's successful answer for an error: that task now fails at the
    /// client, every other task ends as before, and the actors that saw the difference have
    /// other digests. Forking the same way twice gives the same log.
    func testReplacingAnAgentsAnswerWithAnErrorFailsThatTask() async throws {
        let recording = try await Recording.record(label: "fork-answer", batches: [30])
        let log = try recording.open()
        defer { log.close() }
        let answer = try self.firstRecord(log, from: log.lastSeq / 3) { record in
            guard record.envelope.sender.isAgent, !record.envelope.recipient.isIO,
                case .taskResponse(let response) = record.envelope.payload, response.status == .completed
            else { return false }
            return true
        }
        let file = #"{"version": 1, "type": "task_error", "payload": {"code": "invalid_input", "message": "the fork says no", "retryable": false}}"#
        let replacement = try ForkReplacement.parse(Array(file.utf8))
        let fork = Fork(travel: TimeTravel(log: log), at: answer.header.seq, replacedSeq: answer.header.seq, replacement: replacement)
        let (directory, output) = self.forkLog("fork-out")
        let report = try fork.run(into: output)
        XCTAssertFalse(report.identicalLog)
        XCTAssertEqual(report.tasksChanged, 1, "\(report.json.rendered())")
        let task = try XCTUnwrap(report.tasks.first)
        XCTAssertEqual(task.correlation, answer.envelope.correlationID)
        XCTAssertEqual(task.original, ForkReport.TaskOutcome(status: "completed"))
        XCTAssertEqual(task.fork.status, "failed")
        XCTAssertGreaterThanOrEqual(report.changed, 2, "the supervisor's and orchestrator's answers changed too")
        let client = try XCTUnwrap(report.actors.first { $0.address == Hierarchy.runClient })
        XCTAssertFalse(client.same)
        XCTAssertTrue(try XCTUnwrap(report.actors.first { $0.address == Hierarchy.multimodal }).same, "an actor the task never reached")

        // The new log is a log: it verifies, travel reads it, and its client counted one failure more.
        let verified = try output.verify()
        XCTAssertNil(verified.firstProblem, "\(String(describing: verified.firstProblem))")
        let forked = try TimeTravel(log: output).state(at: output.lastSeq, actors: [Hierarchy.runClient])
        let originalClient = try TimeTravel(log: log).state(at: log.lastSeq, actors: [Hierarchy.runClient])
        guard case .int(let failedBefore)? = originalClient.actors.first?.state["failed"] else { return XCTFail("no failed count") }
        XCTAssertEqual(forked.actors.first?.state["failed"], .int(failedBefore + 1))
        XCTAssertEqual(forked.actors.first?.digest, client.forkDigest)
        output.close()

        // Deterministic: the same fork again makes the same log.
        let (_, again) = self.forkLog("fork-again")
        _ = try Fork(travel: TimeTravel(log: log), at: answer.header.seq, replacedSeq: answer.header.seq, replacement: replacement).run(into: again)
        let first = try EventLog(path: directory.path, configuration: EventLogConfiguration(readOnly: true))
        XCTAssertEqual(try again.stat().headHash, try first.stat().headHash)
        first.close()
        again.close()
    }

    /// An agent that answers with progress instead of its result: the supervisor's timeout
    /// (a timer the original cancelled) fires in the fork, the task is retried under a new id,
    /// the agent answers the retry, and the task still completes. Every one of those messages is
    /// one the original never had.
    func testALostAnswerMakesTheForkTimeOutAndRetry() async throws {
        let recording = try await Recording.record(label: "fork-retry", batches: [20])
        let log = try recording.open()
        defer { log.close() }
        let answer = try self.firstRecord(log, from: log.lastSeq / 3) { record in
            guard record.envelope.sender.isAgent, record.envelope.deliveryMode == .atLeastOnce,
                case .taskResponse(let response) = record.envelope.payload, response.status == .completed
            else { return false }
            return true
        }
        let file = #"{"version": 1, "type": "task_progress", "payload": {"fraction": 0.5, "message": "still thinking"}}"#
        let fork = Fork(
            travel: TimeTravel(log: log), at: answer.header.seq, replacedSeq: answer.header.seq,
            replacement: try ForkReplacement.parse(Array(file.utf8)))
        let (_, output) = self.forkLog("fork-retry-out")
        defer { output.close() }
        let report = try fork.run(into: output)
        XCTAssertGreaterThanOrEqual(report.new, 3, "the timeout, the retry, the new answer: \(report.json.rendered())")
        XCTAssertGreaterThanOrEqual(report.changed, 2, "the progress, forwarded up under the answer's ids: \(report.json.rendered())")
        XCTAssertEqual(report.forkLastSeq, log.lastSeq + UInt64(report.new))
        XCTAssertEqual(report.tasksChanged, 0, "\(report.json.rendered())")
        let records = try output.seqs(correlation: answer.envelope.correlationID).compactMap { try output.record($0) }
        let retries = records.filter { $0.envelope.retryCount > 0 && $0.envelope.recipient.isAgent }
        XCTAssertEqual(retries.count, 1, "one retry to an agent")
        XCTAssertTrue(records.contains { $0.envelope.recipient.isClient && ForkEngine.outcome($0.envelope)?.status == "completed" })
        XCTAssertFalse(try XCTUnwrap(report.actors.first { $0.address == Hierarchy.runClient }).same, "the client counted the progress")
        XCTAssertEqual(report.actors.filter { !$0.same }.count, 1, "\(report.json.rendered())")
    }

    /// An I/O error swapped for a success: the agent that fetched its input through the gateway
    /// now completes the task.
    func testReplacingAnIOErrorWithASuccessCompletesTheTask() async throws {
        let directory = TemporaryDirectory("fork-io")
        let log = try EventLog(path: directory.path, configuration: Recording.configuration())
        var configuration = NodeConfiguration()
        configuration.ioServices = ["files": FilesService(root: directory.path + "/no-such-root")]
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        let workload = try Workload.parse("text.stats at_least_once 1 url\n")
        for index in 0..<3 {
            let (request, mode) = workload.task(seed: 5, index: index)
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
        }
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        await node.shutdown()
        let ioAnswer = try self.firstRecord(log) { record in
            guard record.envelope.sender.isIO, case .taskResponse(let response) = record.envelope.payload else { return false }
            return response.status == .failed
        }
        let recordedOutcome = try self.terminalStatus(log, ioAnswer.envelope.correlationID)
        XCTAssertEqual(recordedOutcome, "failed")
        let text = "A fork reads the log. The log is the truth. Replay calls nothing outside."
        let hex = Hex.encode(Array(text.utf8))
        let file = #"{"version": 1, "io_result": {"value": {"content": {"$binary": "\#(hex)"}, "size_bytes": \#(text.utf8.count)}}}"#
        let fork = Fork(
            travel: TimeTravel(log: log), at: ioAnswer.header.seq, replacedSeq: ioAnswer.header.seq,
            replacement: try ForkReplacement.parse(Array(file.utf8)))
        let (_, output) = self.forkLog("fork-io-out")
        defer { output.close() }
        let report = try fork.run(into: output)
        let task = try XCTUnwrap(report.tasks.first { $0.correlation == ioAnswer.envelope.correlationID }, "\(report.json.rendered())")
        XCTAssertEqual(task.original.status, "failed")
        XCTAssertEqual(task.fork.status, "completed", "\(report.json.rendered())")
        log.close()
    }

    func terminalStatus(_ log: EventLog, _ correlation: MessageID) throws -> String? {
        var status: String?
        for seq in try log.seqs(correlation: correlation) {
            guard let record = try log.record(seq), record.envelope.recipient.isClient else { continue }
            if let outcome = ForkEngine.outcome(record.envelope) { status = outcome.status }
        }
        return status
    }

    /// A replacement equal to the record changes nothing: the fork's log is the original byte
    /// for byte (same head hash) and every digest is the same.
    func testAForkWithNoChangeGivesTheSameLogAndDigests() async throws {
        let recording = try await Recording.record(label: "fork-same", batches: [25])
        let log = try recording.open()
        defer { log.close() }
        // An agent's answer after the middle, replaced by its own payload, taken from the
        // record's stored map: the same message.
        var chosen: (LogRecord, ForkReplacement)?
        for record in try log.records(from: log.lastSeq / 2) where record.envelope.sender.isAgent {
            guard case .taskResponse = record.envelope.payload else { continue }
            guard case .map(let entries) = try EnvelopeDecoder().decodeValue(try EnvelopeEncoder().encode(record.envelope)),
                let payload = entries.first(where: { $0.key == "payload" })?.value
            else { continue }
            let replacement = ForkReplacement(content: .message(type: record.envelope.type, payload: payload))
            XCTAssertEqual(try replacement.envelope(replacing: record.envelope, request: nil), record.envelope)
            chosen = (record, replacement)
            break
        }
        let (record, replacement) = try XCTUnwrap(chosen)
        let at = record.header.seq - 7
        let (_, output) = self.forkLog("fork-same-out")
        defer { output.close() }
        let report = try Fork(travel: TimeTravel(log: log), at: at, replacedSeq: record.header.seq, replacement: replacement).run(into: output)
        XCTAssertTrue(report.identicalLog, "\(report.json.rendered())")
        XCTAssertEqual(report.tasksChanged, 0)
        XCTAssertEqual(report.changed, 0)
        XCTAssertEqual(report.originalOnly, 0)
        XCTAssertEqual(report.new, 0)
        XCTAssertTrue(report.actors.allSatisfy(\.same), "\(report.json.rendered())")
        XCTAssertEqual(report.forkLastSeq, log.lastSeq)
    }

    /// Bad files and seqs are refused with named errors, and nothing is written.
    func testBadReplacementsAndSeqsAreRefusedWithNamedErrors() async throws {
        func code(_ text: String) -> TravelError.Code? {
            do {
                _ = try ForkReplacement.parse(Array(text.utf8))
                return nil
            } catch {
                return error.code
            }
        }
        XCTAssertEqual(code("not json"), .invalidReplacement)
        XCTAssertEqual(code("[1]"), .invalidReplacement)
        XCTAssertEqual(code(#"{"type": "task_error", "payload": {}}"#), .invalidReplacement, "version missing")
        XCTAssertEqual(code(#"{"version": 9, "type": "task_error", "payload": {}}"#), .unsupportedReplacementVersion)
        XCTAssertEqual(code(#"{"version": 1, "type": "task_eror", "payload": {}}"#), .invalidReplacement)
        XCTAssertEqual(code(#"{"version": 1, "type": "task_error"}"#), .invalidReplacement)
        XCTAssertEqual(code(#"{"version": 1, "type": "task_error", "payload": {}, "extra": 1}"#), .invalidReplacement)
        XCTAssertEqual(code(#"{"version": 1, "io_result": {"error": {"message": "no code"}}}"#), .invalidReplacement)

        let recording = try await Recording.record(label: "fork-bad", batches: [5])
        let log = try recording.open()
        defer { log.close() }
        let response = try self.firstRecord(log) { if case .taskResponse = $0.envelope.payload { true } else { false } }
        // Parses, but breaks the payload's rules (a task_error needs a code).
        let missing = try ForkReplacement.parse(Array(#"{"version": 1, "type": "task_error", "payload": {"message": "x", "retryable": false}}"#.utf8))
        XCTAssertThrowsError(try missing.envelope(replacing: response.envelope, request: nil)) { error in
            XCTAssertEqual((error as? TravelError)?.code, .invalidReplacement)
            XCTAssertTrue("\(error)".contains("code"), "\(error)")
        }
        // io_result on a record that is not an I/O answer.
        let io = try ForkReplacement.parse(Array(#"{"version": 1, "io_result": {"value": 1}}"#.utf8))
        XCTAssertThrowsError(try Fork(travel: TimeTravel(log: log), at: response.header.seq, replacedSeq: response.header.seq, replacement: io).replacedEnvelope()) {
            XCTAssertEqual(($0 as? TravelError)?.code, .invalidReplacement)
        }
        let good = try ForkReplacement.parse(Array(#"{"version": 1, "type": "task_error", "payload": {"code": "timeout", "message": "x", "retryable": false}}"#.utf8))
        let (_, output) = self.forkLog("fork-bad-out")
        defer { output.close() }
        for (at, replaced) in [(0, 3), (log.lastSeq + 1, log.lastSeq + 1), (3, log.lastSeq + 5), (10, 4)] as [(UInt64, UInt64)] {
            XCTAssertThrowsError(try Fork(travel: TimeTravel(log: log), at: at, replacedSeq: replaced, replacement: good).run(into: output)) {
                XCTAssertEqual(($0 as? TravelError)?.code, .seqOutOfRange, "at \(at) replace \(replaced)")
            }
        }
        XCTAssertEqual(output.lastSeq, 0, "nothing written")
        // A non-empty output is refused.
        _ = try output.appendAndWait(response.envelope, clockMilliseconds: 1, entropy: 1)
        XCTAssertThrowsError(try Fork(travel: TimeTravel(log: log), at: 3, replacedSeq: 3, replacement: good).run(into: output)) {
            XCTAssertEqual(($0 as? TravelError)?.code, .forkTargetNotEmpty)
        }
    }

    /// `cartrita fork` as a person runs it: one JSON object with --json; a bad file or seq exits 1
    /// with the error's code on stderr and leaves no output folder.
    func testForkCommand() async throws {
        let executable = try XCTUnwrap(cartritaExecutable(), "the cartrita executable next to the test bundle")
        let recording = try await Recording.record(label: "fork-cli", batches: [10])
        let log = try recording.open()
        let answer = try self.firstRecord(log) { record in
            if case .taskResponse = record.envelope.payload, record.envelope.sender.isAgent { true } else { false }
        }
        log.close()
        let work = TemporaryDirectory("fork-cli-work")
        let good = work.path + "/error.json"
        let bad = work.path + "/bad.json"
        try Data(#"{"version": 1, "type": "task_error", "payload": {"code": "timeout", "message": "too slow", "retryable": false}}"#.utf8).write(to: URL(fileURLWithPath: good))
        try Data("{".utf8).write(to: URL(fileURLWithPath: bad))
        func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
            let outcome = try CartritaBinary.run(arguments, executable: executable)
            return (outcome.status, outcome.out, outcome.err)
        }
        let seq = answer.header.seq
        let ok = try run(["fork", "--data", recording.directory.path, "--at", "\(seq)", "--replace", "\(seq)=\(good)", "-o", work.path + "/fork", "--json"])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertEqual(ok.out.split(separator: "\n").count, 1, "one JSON object")
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(ok.out.utf8)) as? [String: Any])
        XCTAssertEqual(report["tasks_changed"] as? Int, 1)
        XCTAssertEqual((report["tasks"] as? [[String: Any]])?.first?["correlation_id"] as? String, answer.envelope.correlationID.description)
        let badFile = try run(["fork", "--data", recording.directory.path, "--at", "\(seq)", "--replace", "\(seq)=\(bad)", "-o", work.path + "/fork2"])
        XCTAssertEqual(badFile.status, 1)
        XCTAssertTrue(badFile.err.contains("invalid_replacement"), badFile.err)
        let badSeq = try run(["fork", "--data", recording.directory.path, "--at", "\(seq)", "--replace", "99999999=\(good)", "-o", work.path + "/fork3"])
        XCTAssertEqual(badSeq.status, 1)
        XCTAssertTrue(badSeq.err.contains("seq_out_of_range"), badSeq.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.path + "/fork2"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.path + "/fork3"))
        let taken = try run(["fork", "--data", recording.directory.path, "--at", "\(seq)", "--replace", "\(seq)=\(good)", "-o", work.path + "/fork"])
        XCTAssertEqual(taken.status, 1)
        XCTAssertTrue(taken.err.contains("fork_target_not_empty"), taken.err)
    }
}
