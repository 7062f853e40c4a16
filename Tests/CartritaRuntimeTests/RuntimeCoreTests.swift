import CartritaEnvelope
import CartritaRuntime
import XCTest

final class MailboxTests: XCTestCase {
    func testPriorityOrderAndFIFOWithinAPriority() {
        var mailbox = Mailbox<String>(capacity: 100)
        let arrivals: [(String, Priority)] = [
            ("n1", .normal), ("l1", .low), ("c1", .critical), ("n2", .normal), ("h1", .high), ("c2", .critical), ("l2", .low),
        ]
        for (item, priority) in arrivals { XCTAssertTrue(mailbox.push(item, priority: priority)) }
        XCTAssertEqual(mailbox.count, 7)
        XCTAssertEqual(mailbox.count(of: .normal), 2)
        XCTAssertEqual(mailbox.peek()?.item, "c1")
        var served: [String] = []
        while let (item, _) = mailbox.pop() { served.append(item) }
        XCTAssertEqual(served, ["c1", "c2", "h1", "n1", "n2", "l1", "l2"])
        XCTAssertTrue(mailbox.isEmpty)
    }

    func testAFullMailboxRefusesAndKeepsEverything() {
        var mailbox = Mailbox<Int>(capacity: 3)
        XCTAssertTrue(mailbox.push(1, priority: .low))
        XCTAssertTrue(mailbox.push(2, priority: .low))
        XCTAssertTrue(mailbox.push(3, priority: .low))
        XCTAssertTrue(mailbox.isFull)
        XCTAssertFalse(mailbox.push(4, priority: .critical), "full: refused, even when critical")
        XCTAssertEqual(mailbox.count, 3)
        XCTAssertEqual(mailbox.pop()?.item, 1)
        XCTAssertTrue(mailbox.push(4, priority: .critical))
        XCTAssertEqual(mailbox.pop()?.item, 4)
    }

    func testLongRunsStayFIFOAcrossCompaction() {
        var mailbox = Mailbox<Int>(capacity: 10_000)
        var expected: [Int] = []
        var served: [Int] = []
        var next = 0
        var generator = SplitMix64(seed: 3)
        for _ in 0..<20_000 {
            if generator.next64() % 3 != 0 && !mailbox.isFull {
                mailbox.push(next, priority: .normal)
                expected.append(next)
                next += 1
            } else if let (item, _) = mailbox.pop() {
                served.append(item)
            }
        }
        while let (item, _) = mailbox.pop() { served.append(item) }
        XCTAssertEqual(served, expected)
    }

    func testRemoveAllForCancellationKeepsTheRestInOrder() {
        var mailbox = Mailbox<String>(capacity: 10)
        for (item, priority) in [("a1", Priority.normal), ("b1", .normal), ("a2", .high), ("b2", .low), ("a3", .low)] {
            mailbox.push(item, priority: priority)
        }
        _ = mailbox.pop()  // a2
        let removed = mailbox.removeAll { $0.hasPrefix("a") }
        XCTAssertEqual(removed, ["a1", "a3"])
        XCTAssertEqual(mailbox.count, 2)
        XCTAssertEqual(mailbox.pop()?.item, "b1")
        XCTAssertEqual(mailbox.pop()?.item, "b2")
        XCTAssertNil(mailbox.pop())
    }
}

final class RoutingTableTests: XCTestCase {
    func testTheStandardTableFollowsTheSpec() {
        let table = RoutingTable.standard
        let expectations: [(String, String?)] = [
            ("llm.chat", "supervisor.intelligence@v1.0"), ("huggingface.image-classification", "supervisor.intelligence@v1.0"),
            ("fine-tuning.start", "supervisor.intelligence@v1.0"), ("writing.draft", "supervisor.intelligence@v1.0"),
            ("vision.classify", "supervisor.multimodal@v1.0"), ("tts.speak", "supervisor.multimodal@v1.0"),
            ("image.generate", "supervisor.multimodal@v1.0"), ("tasks.create", "supervisor.system@v1.0"),
            ("data.csv-stats", "supervisor.system@v1.0"), ("lifeos.calendar", "supervisor.system@v1.0"),
            ("unknown.thing", nil), ("llm", nil), ("llm.", nil), ("llmx.chat", nil), ("", nil),
        ]
        for (type, supervisor) in expectations {
            XCTAssertEqual(table.supervisor(forTaskType: type)?.rawValue, supervisor, type)
        }
    }

    func testLongestPrefixWinsAndANewSupervisorPlugsInByConfiguration() throws {
        let table = try RoutingTable.parse(
            """
            # a micro-supervisor for OCR, the rest of vision stays multimodal
            vision.       supervisor.multimodal@v1.0
            vision.ocr.   supervisor.ocr@v1.0
            finance.      supervisor.finance@v2.1   # a new domain, no code change

            """)
        XCTAssertEqual(table.supervisor(forTaskType: "vision.ocr.receipt")?.rawValue, "supervisor.ocr@v1.0")
        XCTAssertEqual(table.supervisor(forTaskType: "vision.classify")?.rawValue, "supervisor.multimodal@v1.0")
        XCTAssertEqual(table.supervisor(forTaskType: "finance.invoice")?.rawValue, "supervisor.finance@v2.1")
        XCTAssertNil(table.supervisor(forTaskType: "llm.chat"))
        XCTAssertEqual(try RoutingTable.parse(table.configurationText), table, "the text form reads back")
        XCTAssertEqual(try RoutingTable.parse(RoutingTable.standard.configurationText), RoutingTable.standard)
    }

    func testBadConfigurationIsRefusedWithTheLine() {
        let cases: [(String, String)] = [
            ("llm. supervisor.intelligence@v1.0\nllm supervisor.intelligence@v1.0", "\"llm\""),
            ("llm.\n", "line 1"),
            ("llm. agent.datasage@v1.0", "not a supervisor"),
            ("llm. supervisor.intelligence@v1.0\nllm. supervisor.system@v1.0", "routed twice"),
            ("Llm. supervisor.intelligence@v1.0", "[a-z0-9_-]"),
            ("llm. supervisor.Intelligence", "line 1"),
            ("llm..x. supervisor.intelligence@v1.0", "segments"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try RoutingTable.parse(text), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) should mention \(expected)")
            }
        }
    }
}

/// Valid envelopes with fresh, deterministic ids.
struct EnvelopeMaker {
    var entropy = SplitMix64(seed: 9)
    var ids = UUIDv7Generator()
    let client = Address("client.test@v1.0")

    mutating func envelope(_ payload: Payload, from sender: Address, to recipient: Address, correlation: MessageID? = nil, parent: MessageID? = nil) -> Envelope {
        let id = self.ids.next(milliseconds: 1_764_000_000_000, entropy: &self.entropy)
        return Envelope(
            id: id, parentID: parent, correlationID: correlation ?? id, sender: sender, recipient: recipient,
            timestampMilliseconds: 1_764_000_000_000, ttlMilliseconds: 30_000, priority: .high,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), userID: "u1"),
            payload: payload, deliveryMode: .exactlyOnce, maxRetries: 2)
    }

    func request(_ type: String) -> Payload { .taskRequest(TaskRequest(task: TaskSpec(type: type))) }
}

final class OrchestratorTests: XCTestCase {
    var maker = EnvelopeMaker()
    var client: Address { self.maker.client }
    var ids: UUIDv7Generator {
        get { self.maker.ids }
        set { self.maker.ids = newValue }
    }
    var entropy: SplitMix64 {
        get { self.maker.entropy }
        set { self.maker.entropy = newValue }
    }

    func envelope(_ payload: Payload, from sender: Address, to recipient: Address, correlation: MessageID? = nil, parent: MessageID? = nil) -> Envelope {
        self.maker.envelope(payload, from: sender, to: recipient, correlation: correlation, parent: parent)
    }

    func request(_ type: String) -> Payload { self.maker.request(type) }

    func testRoutesThenAnswersTheClientExactlyOnce() throws {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        let context = DeliveryContext(seq: 1, clockMilliseconds: 1_764_000_000_000, entropy: 7)
        let fromClient = self.envelope(self.request("data.csv-stats"), from: self.client, to: .orchestrator)
        let routed = orchestrator.step(&state, fromClient, context)
        guard case .send(let forward)? = routed.first, routed.count == 1 else { return XCTFail("\(routed)") }
        XCTAssertEqual(forward.recipient.rawValue, "supervisor.system@v1.0")
        XCTAssertEqual(forward.parentID, fromClient.id)
        XCTAssertEqual(forward.correlationID, fromClient.correlationID)
        XCTAssertEqual(forward.context, fromClient.context, "trace and user flow to the next tier")
        XCTAssertEqual(forward.priority, .high)
        XCTAssertEqual(forward.deliveryMode, .exactlyOnce)
        XCTAssertEqual(state.pending.count, 1)

        let sent = forward.envelope(id: self.ids.next(milliseconds: 1_764_000_000_001, entropy: &self.entropy), sender: .orchestrator, timestampMilliseconds: 1_764_000_000_001)
        XCTAssertNoThrow(try sent.validate(), "the effect makes a valid envelope")

        let progress = self.envelope(.taskProgress(TaskProgress(fraction: 0.5, message: "half")), from: forward.recipient, to: .orchestrator, correlation: fromClient.correlationID)
        let passed = orchestrator.step(&state, progress, context)
        XCTAssertEqual(passed.count, 1, "progress passes through to the client")

        let answer = self.envelope(.taskResponse(TaskResponse(status: .completed, result: "ok")), from: forward.recipient, to: .orchestrator, correlation: fromClient.correlationID)
        let replies = orchestrator.step(&state, answer, context)
        guard case .send(let reply)? = replies.first, replies.count == 1 else { return XCTFail("\(replies)") }
        XCTAssertEqual(reply.recipient, self.client)
        XCTAssertEqual(reply.parentID, fromClient.id, "paired with the request through parent_id")
        XCTAssertEqual(reply.payload, answer.payload)
        XCTAssertTrue(state.pending.isEmpty)
        XCTAssertEqual(orchestrator.step(&state, answer, context), [], "a second terminal answer is not forwarded")
        XCTAssertEqual(state.answered, 1)
    }

    /// An at_most_once task whose answer is lost would stay in the pending table forever: the
    /// orchestrator arms a deadline, answers `timeout` when it passes, and ignores a later answer.
    func testAnAtMostOnceTaskWhoseAnswerIsLostExpiresAtItsDeadline() throws {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        let context = DeliveryContext(seq: 1, clockMilliseconds: 1_764_000_000_000, entropy: 7)
        var fromClient = self.envelope(self.request("data.csv-stats"), from: self.client, to: .orchestrator)
        fromClient.deliveryMode = .atMostOnce
        fromClient.maxRetries = 1
        let routed = orchestrator.step(&state, fromClient, context)
        XCTAssertEqual(routed.count, 2, "the forward and the deadline: \(routed)")
        guard case .timer(let after, let deadline)? = routed.last else { return XCTFail("\(routed)") }
        XCTAssertEqual(after, 2 * DomainSupervisor.defaultTimeoutMilliseconds + Orchestrator.deadlineGraceMilliseconds)
        XCTAssertEqual(deadline.recipient, .orchestrator)
        XCTAssertEqual(deadline.correlationID, fromClient.correlationID)

        // The deadline fires: the client hears `timeout`, the entry goes.
        let fired = deadline.envelope(id: self.ids.next(milliseconds: 1_764_000_100_000, entropy: &self.entropy), sender: .orchestrator, timestampMilliseconds: 1_764_000_100_000)
        let answers = orchestrator.step(&state, fired, context)
        guard case .send(let reply)? = answers.first, answers.count == 1, case .taskError(let error) = reply.payload else { return XCTFail("\(answers)") }
        XCTAssertEqual(reply.recipient, self.client)
        XCTAssertEqual(reply.parentID, fromClient.id)
        XCTAssertEqual(error.code, .timeout)
        XCTAssertTrue(state.pending.isEmpty)
        XCTAssertEqual(state.expired, 1)

        // The supervisor's answer arrives after all: nobody holds the task, nothing is sent.
        let late = self.envelope(.taskResponse(TaskResponse(status: .completed, result: "ok")), from: Address("supervisor.system@v1.0"), to: .orchestrator, correlation: fromClient.correlationID)
        XCTAssertEqual(orchestrator.step(&state, late, context), [])
        XCTAssertEqual(orchestrator.step(&state, fired, context), [], "a deadline for a finished task does nothing")
    }

    func testAnsweringAnAtMostOnceTaskCancelsItsDeadline() throws {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        let context = DeliveryContext(seq: 1, clockMilliseconds: 1_764_000_000_000, entropy: 7)
        var fromClient = self.envelope(self.request("data.csv-stats"), from: self.client, to: .orchestrator)
        fromClient.deliveryMode = .atMostOnce
        _ = orchestrator.step(&state, fromClient, context)
        let answer = self.envelope(.taskResponse(TaskResponse(status: .completed, result: "ok")), from: Address("supervisor.system@v1.0"), to: .orchestrator, correlation: fromClient.correlationID)
        let effects = orchestrator.step(&state, answer, context)
        XCTAssertEqual(effects.first, .cancelTimers(correlationID: fromClient.correlationID))
        XCTAssertEqual(effects.count, 2)
        XCTAssertEqual(state.expired, 0)

        // An at_least_once task arms no deadline (its answer is redelivered, never lost).
        let durable = self.envelope(self.request("data.csv-stats"), from: self.client, to: .orchestrator)
        XCTAssertEqual(orchestrator.step(&state, durable, context).count, 1)
    }

    func testUnknownTaskTypeIsAnsweredNeverDropped() {
        let orchestrator = Orchestrator()
        var state = Orchestrator.State()
        let fromClient = self.envelope(self.request("astrology.horoscope"), from: self.client, to: .orchestrator)
        let effects = orchestrator.step(&state, fromClient, DeliveryContext(seq: 1, clockMilliseconds: 0, entropy: 0))
        guard case .send(let reply)? = effects.first else { return XCTFail("\(effects)") }
        XCTAssertEqual(reply.recipient, self.client)
        guard case .taskError(let error) = reply.payload else { return XCTFail("\(reply.payload)") }
        XCTAssertEqual(error.code, .unknownTaskType)
        XCTAssertFalse(error.retryable)
        XCTAssertEqual(state.unknown, 1)
        XCTAssertTrue(state.pending.isEmpty)
    }

    func testOverloadedWhenTooManyTasksAreInFlight() {
        let orchestrator = Orchestrator(maxPendingTasks: 2)
        var state = Orchestrator.State()
        let context = DeliveryContext(seq: 1, clockMilliseconds: 0, entropy: 0)
        for _ in 0..<2 { _ = orchestrator.step(&state, self.envelope(self.request("tasks.list"), from: self.client, to: .orchestrator), context) }
        let effects = orchestrator.step(&state, self.envelope(self.request("tasks.list"), from: self.client, to: .orchestrator), context)
        guard case .send(let reply)? = effects.first, case .taskError(let error) = reply.payload else { return XCTFail("\(effects)") }
        XCTAssertEqual(error.code, .overloaded)
        XCTAssertTrue(error.retryable)
        XCTAssertEqual(state.pending.count, 2)
    }

    func testPingIsAnsweredWithItsNonce() {
        var state = Orchestrator.State()
        let ping = self.envelope(.ping(Ping(nonce: 42)), from: self.client, to: .orchestrator)
        let effects = Orchestrator().step(&state, ping, DeliveryContext(seq: 1, clockMilliseconds: 0, entropy: 0))
        XCTAssertEqual(effects, [.send(.reply(to: ping, payload: .pong(Pong(nonce: 42))))])
    }

    /// The same inputs give the same state and effects: the step is a pure function.
    func testTheStepIsDeterministic() {
        func run() -> (Orchestrator.State, [Effect]) {
            var local = EnvelopeMaker()
            var state = Orchestrator.State()
            var all: [Effect] = []
            let orchestrator = Orchestrator()
            for index in 0..<200 {
                let types = ["llm.chat", "vision.classify", "tasks.create", "nope.x"]
                let request = local.envelope(local.request(types[index % 4]), from: local.client, to: .orchestrator)
                all += orchestrator.step(&state, request, DeliveryContext(seq: UInt64(index), clockMilliseconds: Int64(index), entropy: 1))
            }
            return (state, all)
        }
        let first = run()
        let second = run()
        XCTAssertEqual(first.0, second.0)
        XCTAssertEqual(first.1, second.1)
        XCTAssertEqual(first.0.routed, 150)
        XCTAssertEqual(first.0.unknown, 50)
    }
}

final class MinHeapTests: XCTestCase {
    /// The heap against the swapping form it replaced: the same elements in the same places after
    /// every push and pop, with many equal keys (so the order of ties, which a timer queue with
    /// equal due times sees, is the same too).
    func testTheHeapIsTheSwappingHeapElementForElement() {
        struct Key: Comparable {
            var due: Int
            var tag: Int
            static func < (a: Key, b: Key) -> Bool { a.due < b.due }  // ties: equal, whatever the tag
        }
        var heap = MinHeap<Key>()
        var reference: [Key] = []
        var random = SplitMix64(seed: 11)
        for step in 0..<10_000 {
            if random.next64() % 5 < 3 {
                let key = Key(due: Int(random.next64() % 16), tag: step)
                heap.push(key)
                reference.append(key)
                var child = reference.count - 1
                while child > 0 {
                    let parent = (child - 1) / 2
                    guard reference[child] < reference[parent] else { break }
                    reference.swapAt(child, parent)
                    child = parent
                }
            } else {
                var expected: Key?
                if let first = reference.first {
                    expected = first
                    let last = reference.removeLast()
                    if !reference.isEmpty {
                        reference[0] = last
                        var parent = 0
                        while true {
                            let left = 2 * parent + 1
                            let right = left + 1
                            var smallest = parent
                            if left < reference.count && reference[left] < reference[smallest] { smallest = left }
                            if right < reference.count && reference[right] < reference[smallest] { smallest = right }
                            if smallest == parent { break }
                            reference.swapAt(parent, smallest)
                            parent = smallest
                        }
                    }
                }
                XCTAssertEqual(heap.popFirst()?.tag, expected?.tag, "step \(step)")
            }
            if step % 25 == 0 { XCTAssertEqual(heap.elements.map(\.tag), reference.map(\.tag), "step \(step)") }
        }
    }
}

final class KeyedListTests: XCTestCase {
    struct Entry: TaskKeyed, Hashable, Sendable {
        var taskKey: MessageID
        var number: Int
    }

    /// Random appends and removals, with ids crowded into few buckets (a handful of values per
    /// half), so probes run long and removals shift entries: every task is found where the
    /// list holds it, and no removed one is found.
    func testTheIndexFindsEveryTaskWhereTheListHoldsIt() {
        var random = SplitMix64(seed: 21)
        var list = KeyedList<Entry>()
        for step in 0..<6_000 {
            let id = MessageID(high: random.next64() % 32, low: random.next64() % 8)
            if random.next64() % 3 != 0 {
                if list.index(ofTask: id) == nil { list.append(Entry(taskKey: id, number: step)) }
            } else if !list.isEmpty {
                let removed = list.remove(at: Int(random.next64() % UInt64(list.count)))
                XCTAssertNil(list.index(ofTask: removed.taskKey), "step \(step)")
            }
            if step % 50 == 0 {
                for high in 0..<UInt64(32) {
                    for low in 0..<UInt64(8) {
                        let probe = MessageID(high: high, low: low)
                        XCTAssertEqual(list.index(ofTask: probe), list.firstIndex { $0.taskKey == probe }, "step \(step), \(probe)")
                    }
                }
            }
        }
        list.removeAll()
        XCTAssertNil(list.index(ofTask: MessageID(high: 1, low: 1)))
    }
}

