import CartritaAgents
import CartritaEnvelope
import CartritaLog
@testable import CartritaNode
import CartritaRuntime
import Foundation
import Synchronization
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

        // Stateless agents run as pools of two; the task id spreads the work over both.
        for agent in ["agent.languagemaestro", "agent.datasage"] {
            let first = try log.seqs(actor: agent + "@v1.0").count
            let second = try log.seqs(actor: agent + ".2@v1.0").count
            XCTAssertGreaterThan(first, 10, agent)
            XCTAssertGreaterThan(second, 10, agent)
        }
    }
}

/// Waits (at most 5 s) for the executor's idle thread to end.
private func waitForThreadToEnd(_ executor: DedicatedThreadExecutor) async throws {
    var waitedMilliseconds = 0
    while executor.isThreadRunning, waitedMilliseconds < 5_000 {
        try await Task.sleep(nanoseconds: 10_000_000)
        waitedMilliseconds += 10
    }
}

/// The step tap's timings: where a delivery's time went inside its actor.
final class StepTimingTests: XCTestCase {
    /// The arithmetic: the log's waits while the message queued (clipped to that span) and the
    /// batch's commit are taken out; what is left is the actor's.
    func testTheActorsOverheadLeavesOutTheLogsWaits() {
        let zero = ContinuousClock.now
        func at(_ milliseconds: Int) -> ContinuousClock.Instant { zero + .milliseconds(milliseconds) }
        var traffic = SampleTraffic(seed: 1)
        let envelope = traffic.request()
        var timing = StepTiming(
            actor: .orchestrator, envelope: envelope, taken: at(10), commit: at(11)..<at(14), handedOn: at(15),
            recentLogWaits: [at(0)..<at(2), at(4)..<at(7), at(8)..<at(9)])
        // Queued at 5: of 5..10, the waits 5..7 and 8..9 were the log's (3 ms), then the commit
        // (3 ms): 10 ms in the actor, 4 of them its own.
        XCTAssertEqual(timing.actorOverhead(queuedAt: at(5)), .milliseconds(4))
        // Queued at 9.5, after every earlier wait: only the commit is taken out.
        XCTAssertEqual(timing.actorOverhead(queuedAt: at(9) + .microseconds(500)), .microseconds(2_500))
        // Never negative, whatever the readings.
        timing.commit = at(0)..<at(30)
        XCTAssertEqual(timing.actorOverhead(queuedAt: at(5)), .zero)
    }

    /// A tap that names its actors sees only theirs.
    func testTheStepTapSeesOnlyTheActorsItNames() async throws {
        let directory = TemporaryDirectory()
        let actors = Mutex<Set<Address>>([])
        var configuration = NodeConfiguration()
        configuration.stepTap = { timing in actors.withLock { _ = $0.insert(timing.actor) } }
        configuration.stepTapActors = [.orchestrator]
        let log = try openLog(directory)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        await runStandardTasks(node, count: 10, seed: 4)
        XCTAssertEqual(actors.withLock { $0 }, [.orchestrator])
    }

    /// The orchestrator's deliveries run on its own thread, at the configured nice value where
    /// the process may lower it, or on the log's writer right after it answered them; never on
    /// dispatch's pool with the other actors.
    func testTheOrchestratorRunsOnItsOwnThreadOrTheWriters() async throws {
        for writerResumes in [false, true] {
            let directory = TemporaryDirectory()
            // Per actor: the threads (pthread ids) and nice values its deliveries ran at.
            let seen = Mutex<[Address: (threads: Set<UInt>, nice: Set<Int32>)]>([:])
            var configuration = NodeConfiguration()
            configuration.dedicatedThreadNice = -3  // dispatch's own threads run at 0, -2 and -4
            configuration.writerResumesDedicatedActors = writerResumes
            configuration.stepTap = { timing in
                // The tap runs on the delivering actor's drain: this thread is the one that handled it.
                let thread = UInt(pthread_self())
                let nice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
                seen.withLock {
                    $0[timing.actor, default: ([], [])].threads.insert(thread)
                    $0[timing.actor, default: ([], [])].nice.insert(nice)
                }
            }
            let log = try openLog(directory, durability: .durable)
            defer { log.close() }
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
            await runStandardTasks(node, count: 30, seed: 5)
            let seenByActor = seen.withLock { $0 }
            let orchestrator = try XCTUnwrap(seenByActor[.orchestrator])
            let executor = try XCTUnwrap(node.hosts[.orchestrator]?.drainExecutor)
            if writerResumes {
                XCTAssertGreaterThan(executor.jobsRunByWriter, 0, "the writer ran the orchestrator's steps")
                XCTAssertLessThanOrEqual(orchestrator.threads.count, 2, "its own thread and the writer's")
            } else {
                XCTAssertEqual(executor.jobsRunByWriter, 0)
                // One thread while busy; it may end and start again if the run idles for a second.
                XCTAssertFalse(orchestrator.threads.isEmpty)
                if geteuid() == 0 { XCTAssertEqual(orchestrator.nice, [-3]) }
            }
            XCTAssertGreaterThan(seenByActor.count, 3)
            for (actor, other) in seenByActor where actor != .orchestrator {
                XCTAssertTrue(other.threads.isDisjoint(with: orchestrator.threads), "\(actor) ran on the orchestrator's thread")
                XCTAssertFalse(other.nice.contains(-3), "\(actor) ran at the orchestrator's nice")
            }
        }
    }

    /// The log's writer runs the jobs queued while it answered, unless records wait for its
    /// next commit past `maxWriterBacklogRecords`: then the actor's own thread does.
    func testTheWriterRunsTheJobsUnlessItIsBehind() async throws {
        let executor = DedicatedThreadExecutor(name: "cartrita-test", niceValue: 5, idleExitSeconds: 0.05)
        let hook = executor.answerHook
        for (backlog, runByWriter) in [(0, 1), (DedicatedThreadExecutor.maxWriterBacklogRecords + 1, 0), (10, 1)] {
            // The actor's own thread, while up, may take a queued job first (it runs whatever it
            // finds awake, which is as good): wait for it to end so only the writer can.
            try await waitForThreadToEnd(executor)
            XCTAssertFalse(executor.isThreadRunning)
            let before = executor.jobsRunByWriter
            hook.willAnswer()
            // Queued while the writer answers: no thread is woken for it.
            let task = Task(executorPreference: executor) { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }
            // The writer's side, on a thread of its own as the writer's is.
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread.detachNewThread {
                    hook.didAnswer(backlog)
                    done.resume()
                }
            }
            let nice = await task.value
            XCTAssertEqual(executor.jobsRunByWriter - before, runByWriter, "backlog \(backlog)")
            if runByWriter == 0 { XCTAssertEqual(nice, 5, "backlog \(backlog): the actor's own thread ran it") }
        }
    }

    /// The thread ends when idle and starts again for the next job: no thread outlives its use,
    /// and no job waits for a thread that is gone.
    func testTheDedicatedThreadEndsWhenIdleAndComesBack() async throws {
        // A positive nice needs no privilege, and no pool thread runs at it.
        let executor = DedicatedThreadExecutor(name: "cartrita-test", niceValue: 5, idleExitSeconds: 0.05)
        XCTAssertFalse(executor.isThreadRunning)
        for round in 0..<3 {
            let nice = await Task(executorPreference: executor) {
                getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
            }.value
            XCTAssertEqual(nice, 5, "round \(round): the job ran on the executor's thread")
            try await waitForThreadToEnd(executor)
            XCTAssertFalse(executor.isThreadRunning, "round \(round): the idle thread ended")
        }
    }

    /// Live: each delivery is tapped once, after its handler, with readings in order, and the
    /// orchestrator's overhead of a task is below its whole time in the orchestrator.
    func testEveryDeliveryIsTappedOnceWithReadingsInOrder() async throws {
        let directory = TemporaryDirectory()
        let timings = Mutex<[StepTiming]>([])
        let priorities = Mutex<[Address: Set<UInt8>]>([:])  // TaskPriority.rawValue
        var configuration = NodeConfiguration()
        configuration.stepTap = { timing in
            timings.withLock { $0.append(timing) }
            let priority = Task.currentPriority  // the tap runs on the delivering actor's drain
            priorities.withLock { _ = $0[timing.actor, default: []].insert(priority.rawValue) }
        }
        let log = try openLog(directory, durability: .durable)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        var submitted: [MessageID: ContinuousClock.Instant] = [:]
        for index in 0..<50 {
            let (request, mode) = Workload.standard.task(seed: 3, index: index)
            let before = ContinuousClock.now
            submitted[node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)] = before
        }
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        await node.shutdown()

        let all = timings.withLock { $0 }
        XCTAssertEqual(all.count, Int(log.lastSeq), "one timing per committed delivery")
        XCTAssertEqual(Set(all.map(\.envelope.id)).count, all.count, "each delivery once")
        for timing in all {
            XCTAssertLessThanOrEqual(timing.taken, timing.commit.lowerBound)
            XCTAssertLessThanOrEqual(timing.commit.upperBound, timing.handedOn)
            XCTAssertLessThanOrEqual(timing.recentLogWaits.count, StepTiming.recentLogWaitsLimit)
            // Earlier waits only: each began before this batch was taken (the previous batch's
            // commit may end after it, since a drain appends its next batch meanwhile).
            XCTAssertTrue(timing.recentLogWaits.allSatisfy { $0.lowerBound <= timing.taken }, "earlier waits only")
        }
        // The orchestrator's drains run at high priority, every other actor's at medium, even
        // when the orchestrator's drain is what started them (no inherited priority).
        let seen = priorities.withLock { $0 }
        XCTAssertEqual(seen[.orchestrator], [TaskPriority.high.rawValue])
        XCTAssertGreaterThan(seen.count, 3)
        for (actor, values) in seen where actor != .orchestrator { XCTAssertEqual(values, [TaskPriority.medium.rawValue], "\(actor)") }
        let routed = all.filter { $0.actor == .orchestrator && $0.envelope.type == .taskRequest }
        XCTAssertEqual(routed.count, 50)
        for timing in routed {
            let queued = try XCTUnwrap(submitted[timing.envelope.id])
            let overhead = timing.actorOverhead(queuedAt: queued)
            XCTAssertLessThan(overhead, timing.handedOn - queued, "a durable commit is never the actor's")
        }
    }
}

final class ControlMessageTests: XCTestCase {
    func testAHealthProbeReachesEverySupervisorAndTheOrchestratorKeepsTheirHeartbeats() async throws {
        let directory = TemporaryDirectory("health")
        let answers = Answers()
        let log = try openLog(directory)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), observer: answers.observer)
        node.probeHealth(from: Hierarchy.runClient)
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        let health = await node.describeState(of: .orchestrator)?["health"]
        guard case .array(let entries)? = health else { return XCTFail("no health in \(String(describing: health))") }
        XCTAssertEqual(entries.compactMap { $0["supervisor"] }, [
            .string(Hierarchy.intelligence.rawValue), .string(Hierarchy.multimodal.rawValue), .string(Hierarchy.system.rawValue),
        ])
        XCTAssertTrue(entries.allSatisfy { $0["status"] == .string("ok") })
        // The client got the orchestrator's own heartbeat.
        XCTAssertTrue(answers.all.contains { if case .heartbeat = $0.1.payload { true } else { false } })
        await node.shutdown()
    }

    func testShutdownWithDrainFinishesQueuedWorkThenRefusesNewWork() async throws {
        let directory = TemporaryDirectory("shutdown")
        let answers = Answers()
        let log = try openLog(directory)
        defer { log.close() }
        var options = Hierarchy.Options()
        options.statelessAgentInstances = 1  // one DataSage, so every csv task meets the stopped one
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(options), observer: answers.observer)
        let admin = Address("client.admin@v1.0")
        let id = node.newID()
        node.send(Envelope(
            id: id, parentID: nil, correlationID: id, sender: admin, recipient: Address("agent.datasage@v1.0"), broadcast: false,
            timestampMilliseconds: 0, ttlMilliseconds: Int32.max, priority: .critical,
            context: MessageContext(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1)),
            payload: .shutdown(Shutdown(reason: "maintenance", drain: true)), deliveryMode: .atMostOnce, retryCount: 0, maxRetries: 0))
        var failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        // DataSage is stopped: its tasks are refused `shutting_down`; the other agents still work.
        let csv = node.submit(TaskRequest(task: TaskSpec(type: "data.csv-stats"), input: TaskInput(data: .string("a\n1\n"))), from: Hierarchy.runClient)
        let text = node.submit(TaskRequest(task: TaskSpec(type: "text.stats"), input: TaskInput(data: .string("One sentence."))), from: Hierarchy.runClient)
        failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        let answered = Dictionary(answers.all.map { ($0.1.correlationID, $0.1) }, uniquingKeysWith: { $1 })
        guard case .taskError(let error)? = answered[csv]?.payload else { return XCTFail("the csv task should fail: \(String(describing: answered[csv]))") }
        XCTAssertEqual(error.code, .shuttingDown)
        XCTAssertEqual(answered[text].flatMap(ClientMachine.outcome), .completed)
        await node.shutdown()
    }
}

final class NodeSnapshotTests: XCTestCase {
    /// A stateful agent's state may be far larger than an envelope (TaskManagement holds up to
    /// 100,000 tasks): the node's snapshot wrapper must still read back, or every restart would
    /// replay that agent from the first record.
    func testASnapshotLargerThanAnEnvelopeReadsBack() throws {
        var random = SplitMix64(seed: 9)
        let state = (0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: random.next64()) }
        let id = MessageID(high: 0x0190_0000_0000_7000, low: 0x8000_0000_0000_0001)
        let owed = Envelope(
            id: id, parentID: nil, correlationID: id, sender: Hierarchy.system, recipient: Address("agent.datasage@v1.0"),
            broadcast: false, timestampMilliseconds: 1_700_000_000_000, ttlMilliseconds: 1_000, priority: .normal,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)),
            payload: .taskRequest(TaskRequest(task: TaskSpec(type: "data.csv-stats"))), deliveryMode: .exactlyOnce, retryCount: 0,
            maxRetries: 3)
        let bytes = NodeSnapshot(state: state, owed: [owed]).encode()
        let decoded = try XCTUnwrap(NodeSnapshot.decode(bytes), "a 3 MiB state must read back")
        XCTAssertEqual(decoded.state, state)
        XCTAssertEqual(decoded.owed, [owed])
        XCTAssertNil(NodeSnapshot.decode(Array(bytes.dropLast())), "a truncated wrapper is refused, not trusted")
    }
}

final class SnapshotFallbackTests: XCTestCase {
    /// The newest snapshot of an actor is garbage, another is in a format the actor does not
    /// know: recovery skips both, uses the older good one (or replays), and the digests still
    /// equal the live run's.
    func testUnreadableAndOtherFormatSnapshotsFallBackToOlderOnesOrReplay() async throws {
        let directory = TemporaryDirectory("fallback")
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 40
        var live: [ActorDigest] = []
        let log = try openLog(directory)
        defer { log.close() }
        do {
            let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
            for index in 0..<120 {
                let (request, mode) = Workload.standard.task(seed: 3, index: index)
                node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
            }
            let failure = await node.waitUntilIdle()
            XCTAssertNil(failure)
            live = await node.digests()
        }
        let last = log.lastSeq
        let orchestrator = Orchestrator.address.rawValue
        let tasks = "agent.taskmanagement@v1.0"
        XCTAssertFalse(try log.snapshots(of: orchestrator).isEmpty, "the run took snapshots")
        try await log.saveSnapshot(Snapshot(actor: orchestrator, seq: last, formatVersion: Orchestrator().stateFormatVersion, state: [0xC1, 0x00, 0x13]))
        try await log.saveSnapshot(Snapshot(actor: tasks, seq: last, formatVersion: 99, state: [1, 2, 3]))

        let (cells, report) = try Recovery(log: log, hierarchy: .standard()).run()
        XCTAssertNil(report.divergence)
        XCTAssertEqual(report.snapshotsSkipped.first, "\(orchestrator)@\(last)", "the garbage one is reported")
        XCTAssertFalse(report.snapshotsSkipped.contains { $0.hasPrefix(tasks) }, "another format is not even tried")
        let digests = cells.map { ActorDigest(address: $0.address, lastSeq: $0.lastSeq, digest: Recovery.digest(of: $0)) }
        XCTAssertEqual(digests.sorted { $0.address < $1.address }, live)
    }
}

final class WorkloadTests: XCTestCase {
    func testAMixFileParsesAndItsErrorsNameTheLine() throws {
        let mix = try Workload.parse("""
            # a comment
            text.stats      at_least_once  3

            tasks.create    exactly_once   1   # trailing comment
            """)
        XCTAssertEqual(mix.entries, [
            Workload.Entry(taskType: "text.stats", deliveryMode: .atLeastOnce, weight: 3),
            Workload.Entry(taskType: "tasks.create", deliveryMode: .exactlyOnce, weight: 1),
        ])
        XCTAssertThrowsError(try Workload.parse("text.stats sometimes 1")) { error in
            XCTAssertTrue("\(error)".contains("line 1"), "\(error)")
        }
        XCTAssertThrowsError(try Workload.parse("\ntext.stats at_least_once 0")) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
        }
        XCTAssertThrowsError(try Workload.parse("# nothing\n"))
        // The same seed and index always give the same task; the weights shape the mix.
        XCTAssertEqual(mix.task(seed: 5, index: 7).request, mix.task(seed: 5, index: 7).request)
        let creates = (0..<4_000).filter { mix.task(seed: 1, index: $0).request.task.type == "tasks.create" }.count
        XCTAssertEqual(Double(creates) / 4_000, 0.25, accuracy: 0.03)
    }
}

final class AtMostOnceSnapshotTests: XCTestCase {
    /// Found by the simulator: an at_most_once message sent before its sender's snapshot and
    /// delivered after it must be named by the snapshot, or recovery reports a divergence for a
    /// handler that did nothing wrong.
    func testAtMostOnceMessagesAcrossSnapshotsAreNoDivergence() async throws {
        let directory = TemporaryDirectory("amo")
        let log = try openLog(directory)
        defer { log.close() }
        var configuration = NodeConfiguration()
        configuration.snapshotEveryDeliveries = 3
        let mix = try Workload.parse("text.stats at_most_once 1\ndata.csv-stats at_most_once 1\ntasks.create exactly_once 1")
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration)
        for index in 0..<300 {
            let (request, mode) = mix.task(seed: 11, index: index)
            node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
        }
        // Copies taken while messages are in flight, as a kill would leave the log, once the
        // first snapshots exist (on a loaded machine the first copies could come before any).
        for _ in 0..<2_000 where try log.stat().snapshots == 0 { try? await Task.sleep(nanoseconds: 1_000_000) }
        var copies: [String] = []
        for copy in 0..<6 {
            try? await Task.sleep(nanoseconds: 3_000_000)
            let path = directory.path + "/copy-\(copy)"
            try log.backup(to: path)
            copies.append(path)
        }
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        var snapshotsUsed = 0
        for path in copies {
            let copy = try EventLog(path: path, configuration: EventLogConfiguration(readOnly: true))
            defer { copy.close() }
            let (_, report) = try Recovery(log: copy, hierarchy: .standard()).run()
            XCTAssertNil(report.divergence, "\(path): \(report.divergence.map { "\($0)" } ?? "")")
            snapshotsUsed += report.cellsFromSnapshots
        }
        XCTAssertGreaterThan(snapshotsUsed, 0)
    }
}

final class AnswerTapTests: XCTestCase {
    /// A client's answer is tapped when the orchestrator makes it, before its record is
    /// committed, and it is the answer the log then holds, byte for byte; an at_most_once answer
    /// is not tapped (recovery would not send it again after a crash).
    func testSettledAnswersAreTappedBeforeTheirCommitAndEqualIt() async throws {
        let directory = TemporaryDirectory("answer-tap")
        let order = Mutex<[(String, MessageID, Envelope)]>([])
        var configuration = NodeConfiguration()
        configuration.answerTap = { envelope in order.withLock { $0.append(("settled", envelope.id, envelope)) } }
        let log = try openLog(directory, durability: .durable)
        defer { log.close() }
        let (node, _) = try Node.recover(log: log, hierarchy: .standard(), configuration: configuration) { address, envelope, _ in
            guard ClientMachine.outcome(envelope) != nil else { return }
            order.withLock { $0.append(("committed", envelope.id, envelope)) }
        }
        var modes: [MessageID: DeliveryMode] = [:]
        for index in 0..<30 {
            let (request, _) = Workload.standard.task(seed: 3, index: index)
            let mode: DeliveryMode = [.atLeastOnce, .exactlyOnce, .atMostOnce][index % 3]
            modes[node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)] = mode
        }
        let failure = await node.waitUntilIdle()
        XCTAssertNil(failure)
        await node.shutdown()

        let events = order.withLock { $0 }
        let committed = events.filter { $0.0 == "committed" }
        XCTAssertEqual(committed.count, 30)
        for (_, id, answer) in committed {
            let settled = events.firstIndex { $0.0 == "settled" && $0.1 == id }
            let commit = events.firstIndex { $0.0 == "committed" && $0.1 == id }!
            if modes[answer.correlationID] == .atMostOnce {
                XCTAssertNil(settled, "an at_most_once answer is not tapped")
                continue
            }
            let index = try XCTUnwrap(settled, "the answer to \(answer.correlationID) was tapped")
            XCTAssertLessThan(index, commit, "tapped before its commit")
            XCTAssertEqual(events[index].2, answer, "the tapped answer is the committed one")
            let seq = try XCTUnwrap(try log.seq(ofMessage: id))
            XCTAssertEqual(try log.record(seq)?.envelope, events[index].2)
        }
    }
}
