import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Foundation
import XCTest

/// I/O through the gateway on a real log: agents fetch their input files with the `files`
/// service, the log records the request and the answer, and recovery replays the answer from
/// the log without reading the file again.
final class IOTests: XCTestCase {
    func request(_ type: String, url: String, contentType: String = "text/csv") -> TaskRequest {
        TaskRequest(
            task: TaskSpec(type: type),
            input: TaskInput(files: [FileInput(name: "input", contentType: contentType, sizeBytes: 0, source: .url(url))]))
    }

    func testAgentsFetchFilesThroughTheGatewayAndReplayReadsTheLog() async throws {
        let directory = TemporaryDirectory("io")
        let files = TemporaryDirectory("io-files")
        try "region,units\nnorth,10\nsouth,30\n".write(toFile: files.path + "/sales.csv", atomically: true, encoding: .utf8)
        try "Replay reads the log. It never calls the outside world twice.".write(
            toFile: files.path + "/note.txt", atomically: true, encoding: .utf8)
        try "secret".write(toFile: directory.path + "/outside.txt", atomically: true, encoding: .utf8)
        var configuration = NodeConfiguration()
        configuration.ioServices = ["files": FilesService(root: files.path)]
        let answers = Answers()
        var live: [ActorDigest] = []
        let csv: MessageID, text: MessageID, relative: MessageID, outside: MessageID, missing: MessageID, noService: MessageID
        do {
            let log = try openLog(directory)
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration, observer: answers.observer)
            csv = node.submit(self.request("data.csv-stats", url: "file://" + files.path + "/sales.csv"), from: Hierarchy.runClient, deliveryMode: .exactlyOnce)
            text = node.submit(self.request("text.stats", url: "note.txt", contentType: "text/plain"), from: Hierarchy.runClient)
            relative = node.submit(self.request("data.analyze", url: "sales.csv"), from: Hierarchy.runClient)
            outside = node.submit(self.request("data.csv-stats", url: "file://" + directory.path + "/outside.txt"), from: Hierarchy.runClient)
            missing = node.submit(self.request("data.csv-stats", url: "nothing-here.csv"), from: Hierarchy.runClient)
            noService = node.submit(
                TaskRequest(task: TaskSpec(type: "text.stats"), input: TaskInput(files: [
                    FileInput(name: "x", contentType: "text/plain", sizeBytes: 0, source: .url("https://example.com/x.txt"))
                ])), from: Hierarchy.runClient)
            let failure = await node.waitUntilIdle()
            XCTAssertNil(failure)
            live = await node.digests()
            await node.shutdown()
            log.close()
        }
        var byTask: [MessageID: Envelope] = [:]
        for (_, envelope, _) in answers.all where ClientMachine.outcome(envelope) != nil { byTask[envelope.correlationID] = envelope }
        func result(_ id: MessageID) -> MCPValue? {
            if case .taskResponse(let response)? = byTask[id]?.payload, response.status == .completed { return response.result }
            return nil
        }
        func error(_ id: MessageID) -> TaskError? {
            if case .taskError(let error)? = byTask[id]?.payload { return error }
            return nil
        }
        XCTAssertEqual(result(csv)?["rows"], .int(2), "\(String(describing: byTask[csv]))")
        XCTAssertEqual(result(relative)?["rows"], .int(2))
        XCTAssertEqual(result(text)?["sentences"], .int(2), "\(String(describing: byTask[text]))")
        XCTAssertEqual(error(outside)?.code, .ioError)
        XCTAssertTrue(error(outside)?.message.contains("outside the files root") ?? false, "\(String(describing: error(outside)))")
        XCTAssertEqual(error(missing)?.code, .ioError)
        XCTAssertEqual(error(noService)?.code, .ioError, "https is not a files URL: \(String(describing: error(noService)))")

        // The log holds each request to the gateway and its answer to the agent.
        let log = try openLog(directory)
        defer { log.close() }
        let records = try log.records()
        let requests = records.filter { $0.envelope.recipient == IOWire.address(of: "files") }
        let answersToAgents = records.filter { $0.envelope.sender == IOWire.address(of: "files") }
        XCTAssertEqual(requests.count, 6)
        XCTAssertEqual(answersToAgents.count, 6)
        XCTAssertTrue(try log.verify().passed)

        // Replay without the file: remove it, recover with no I/O service at all. The answer
        // comes from the log; nothing diverges and nothing is owed.
        try FileManager.default.removeItem(atPath: files.path + "/sales.csv")
        let (cells, report) = try Recovery(log: log, hierarchy: .standard(), useSnapshots: false).run()
        XCTAssertNil(report.divergence)
        XCTAssertEqual(report.pending.count, 0)
        let digests = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
        XCTAssertEqual(digests.sorted { $0.address < $1.address }, live)
    }

    /// A service that takes longer than the call's limit is answered `timeout` by the gateway.
    func testTheGatewayAnswersTimeoutWhenAServiceIsTooSlow() async throws {
        struct Sleepy: IOService {
            func call(operation: String, arguments: MCPValue) async -> IOResult {
                try? await Task.sleep(nanoseconds: 5_000_000_000)
                return .success(.null)
            }
        }
        let request = IOWire.Request(service: "sleepy", operation: "nap", arguments: .null, timeoutMilliseconds: 50)
        let started = ContinuousClock.now
        let result = await Node.perform(request, on: Sleepy())
        guard case .failure(let error) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(error.code, TaskErrorCode.timeout)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(4), "the slow call was not waited for")
    }
}

final class WallClockTests: XCTestCase {
    /// After a log recorded ahead of this machine's clock, time goes on from the log's reading
    /// and still advances in real time.
    func testTheClockContinuesFromALogAheadOfTheWallClock() async throws {
        let clock = WallClock()
        let ahead = clock.now() + 60 * 86_400_000  // two months ahead, as a simulated log is
        clock.continueFrom(ahead)
        let first = clock.now()
        XCTAssertGreaterThanOrEqual(first, ahead)
        try await Task.sleep(nanoseconds: 20_000_000)
        XCTAssertGreaterThan(clock.now(), first, "it advances")
        clock.continueFrom(0)
        XCTAssertGreaterThanOrEqual(clock.now(), first, "never back")
    }
}
