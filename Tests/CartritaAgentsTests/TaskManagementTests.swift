import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaAgents

final class TaskManagementTests: XCTestCase {
    let agent = TaskManagement()

    func testLifecycleWithIdsFromSeq() {
        var state = self.agent.initialState()
        let first = deliver(self.agent, request("tasks.create", ["title": "Write spec", "priority": "high", "tags": ["b", "a", "b"]]), state: &state, seq: 10, clock: 1_000)
        XCTAssertEqual(
            value(first.result, "task"),
            .map([
                "id": "t-10", "title": "Write spec", "description": "", "priority": "high", "status": "open",
                "created_ms": 1_000, "updated_ms": 1_000, "tags": ["a", "b"],
            ]))
        let second = deliver(self.agent, request("tasks.create", ["title": "Review", "due_ms": 5_000]), state: &state, seq: 11, clock: 2_000)
        XCTAssertEqual(string(value(second.result, "task", "id")), "t-11")
        XCTAssertEqual(value(second.result, "task", "due_ms"), 5_000)

        let updated = deliver(self.agent, request("tasks.update", ["id": "t-10", "status": "in_progress", "description": "draft"]), state: &state, seq: 12, clock: 3_000)
        XCTAssertEqual(value(updated.result, "task", "status"), "in_progress")
        XCTAssertEqual(value(updated.result, "task", "description"), "draft")
        XCTAssertEqual(value(updated.result, "task", "created_ms"), 1_000)
        XCTAssertEqual(value(updated.result, "task", "updated_ms"), 3_000)

        let completed = deliver(self.agent, request("tasks.complete", ["id": "t-11"]), state: &state, seq: 13, clock: 4_000)
        XCTAssertEqual(value(completed.result, "task", "status"), "done")
        // Completing again changes nothing, not even updated_ms.
        let again = deliver(self.agent, request("tasks.complete", ["id": "t-11"]), state: &state, seq: 14, clock: 9_000)
        XCTAssertEqual(value(again.result, "task", "updated_ms"), 4_000)

        let ids = { (parameters: KeyValuePairs<String, MCPValue>) -> [String] in
            guard case .array(let tasks) = value(deliver(self.agent, request("tasks.list", parameters), state: &state).result, "tasks") else { return [] }
            return tasks.compactMap { string(value($0, "id")) }
        }
        XCTAssertEqual(ids([:]), ["t-10", "t-11"])
        XCTAssertEqual(ids(["status": "done"]), ["t-11"])
        XCTAssertEqual(ids(["status": "open"]), [])
        XCTAssertEqual(ids(["tag": "a"]), ["t-10"])
        XCTAssertEqual(ids(["tag": "a", "status": "done"]), [])

        let deleted = deliver(self.agent, request("tasks.delete", ["id": "t-10"]), state: &state, seq: 15)
        XCTAssertEqual(value(deleted.result, "deleted"), "t-10")
        XCTAssertEqual(value(deleted.result, "task", "title"), "Write spec")
        XCTAssertEqual(ids([:]), ["t-11"])
        XCTAssertEqual(state.tasks.map(\.id), ["t-11"])
        XCTAssertEqual(state.lastCreatedSeq, 11)

        // Clearing fields with null.
        let cleared = deliver(self.agent, request("tasks.update", ["id": "t-11", "due_ms": nil, "tags": nil, "description": nil]), state: &state, seq: 16, clock: 5_000)
        XCTAssertNil(value(cleared.result, "task", "due_ms"))
        XCTAssertEqual(value(cleared.result, "task", "tags"), [])
    }

    func testUnknownIdsAreNotFound() {
        var state = self.agent.initialState()
        deliver(self.agent, request("tasks.create", ["title": "Only"]), state: &state, seq: 5)
        for id in ["t-99", "t-05", "t-+5", "t-", "x", "t-5 ", "T-5", "t-99999999999999999999999"] {
            assertFailed(deliver(self.agent, request("tasks.update", ["id": .string(id), "title": "New"]), state: &state), "not_found", "no task")
            assertFailed(deliver(self.agent, request("tasks.complete", ["id": .string(id)]), state: &state), "not_found")
            assertFailed(deliver(self.agent, request("tasks.delete", ["id": .string(id)]), state: &state), "not_found")
        }
        deliver(self.agent, request("tasks.delete", ["id": "t-5"]), state: &state, seq: 6)
        assertFailed(deliver(self.agent, request("tasks.delete", ["id": "t-5"]), state: &state, seq: 7), "not_found")
    }

    func testBadFieldsAreInvalidAndChangeNothing() {
        var state = self.agent.initialState()
        deliver(self.agent, request("tasks.create", ["title": "Keep me"]), state: &state, seq: 1)
        let before = state
        let cases: [(TaskRequest, String)] = [
            (request("tasks.create"), "needs a title"),
            (request("tasks.create", ["title": nil]), "needs a title"),
            (request("tasks.create", ["title": " \n\t"]), "blank"),
            (request("tasks.create", ["title": .string(String(repeating: "é", count: 251))]), "longer than 500 bytes"),
            (request("tasks.create", ["title": 7]), "must be a string"),
            (request("tasks.create", ["title": "x", "priority": "urgent"]), "priority"),
            (request("tasks.create", ["title": "x", "status": "closed"]), "status"),
            (request("tasks.create", ["title": "x", "tags": ["ok", ""]]), "tag"),
            (request("tasks.create", ["title": "x", "tags": .array((0..<33).map { .string("t\($0)") })]), "at most 32 tags"),
            (request("tasks.create", ["title": "x", "tags": "solo"]), "array of strings"),
            (request("tasks.create", ["title": "x", "due_ms": -1]), "due_ms"),
            (request("tasks.create", ["title": "x", "due_ms": "tomorrow"]), "due_ms"),
            (request("tasks.create", ["title": "x", "description": .string(String(repeating: "d", count: 16 * 1024 + 1))]), "description"),
            (request("tasks.create", ["titel": "x"]), "unknown parameter \"titel\""),
            (request("tasks.update", ["id": "t-1"]), "at least one"),
            (request("tasks.update", ["id": "t-1", "title": nil]), "cannot be removed"),
            (request("tasks.update", ["title": "x"]), "id"),
            (request("tasks.update", ["id": 1, "title": "x"]), "must be a string"),
            (request("tasks.list", ["status": "later"]), "status"),
            (request("tasks.list", ["limit": 1_001]), "limit"),
            (request("tasks.list", ["offset": -1]), "offset"),
        ]
        for (request, fragment) in cases {
            assertFailed(deliver(self.agent, request, state: &state, seq: 2, clock: 99), "invalid_input", fragment)
            XCTAssertEqual(state, before, "a refused request left the state changed: \(request.task)")
        }
        assertFailed(deliver(self.agent, request("tasks.archive", ["id": "t-1"]), state: &state, seq: 2), "unknown_task_type")
        XCTAssertEqual(state, before)
    }

    /// A create delivered twice (the same seq) makes one task and answers the same both times;
    /// once its task is deleted, the redelivery does not bring it back.
    func testRedeliveredCreateIsIdempotent() {
        var state = self.agent.initialState()
        let create = request("tasks.create", ["title": "Once"])
        let first = deliver(self.agent, create, state: &state, seq: 3, clock: 10)
        let second = deliver(self.agent, create, state: &state, seq: 3, clock: 10)
        XCTAssertEqual(first, second)
        XCTAssertEqual(state.tasks.count, 1)
        deliver(self.agent, request("tasks.delete", ["id": "t-3"]), state: &state, seq: 4)
        assertFailed(deliver(self.agent, create, state: &state, seq: 3, clock: 10), "not_found", "handled before")
        XCTAssertTrue(state.tasks.isEmpty)
        // Seq 0 is a valid first seq.
        var fresh = self.agent.initialState()
        XCTAssertEqual(string(value(deliver(self.agent, create, state: &fresh, seq: 0).result, "task", "id")), "t-0")
    }

    func testListPaging() {
        var state = self.agent.initialState()
        for seq in 1...5 as ClosedRange<UInt64> {
            deliver(self.agent, request("tasks.create", ["title": .string("n\(seq)"), "tags": seq % 2 == 0 ? ["even"] : []]), state: &state, seq: seq)
        }
        let page = deliver(self.agent, request("tasks.list", ["offset": 1, "limit": 2]), state: &state).result
        XCTAssertEqual(value(page, "tasks", 0, "id"), "t-2")
        XCTAssertEqual(value(page, "tasks", 1, "id"), "t-3")
        XCTAssertEqual(value(page, "total"), 5)
        XCTAssertEqual(value(page, "next_offset"), 3)
        let last = deliver(self.agent, request("tasks.list", ["offset": 3, "limit": 2]), state: &state).result
        XCTAssertNil(value(last, "next_offset"))
        let even = deliver(self.agent, request("tasks.list", ["tag": "even", "limit": 1]), state: &state).result
        XCTAssertEqual(value(even, "tasks", 0, "id"), "t-2")
        XCTAssertEqual(value(even, "total"), 2)
        XCTAssertEqual(value(even, "next_offset"), 1)
    }

    /// Pages stop at a byte budget as well as at `limit`, so even 16 KiB descriptions give
    /// pages that fit one envelope; following `next_offset` visits every task once, in order.
    func testLargeTasksArePagedBySize() {
        var state = self.agent.initialState()
        let description = MCPValue.string(String(repeating: "d", count: 16 * 1024))
        for seq in 1...100 as ClosedRange<UInt64> {
            deliver(self.agent, request("tasks.create", ["title": "big", "description": description]), state: &state, seq: seq)
        }
        var seen: [String] = []
        var offset: Int64? = 0
        while let start = offset {
            let page = deliver(self.agent, request("tasks.list", ["offset": .int(start), "limit": 1_000]), state: &state).result
            guard case .array(let tasks) = value(page, "tasks") else { return XCTFail() }
            XCTAssertFalse(tasks.isEmpty)
            XCTAssertLessThan(msgpackUpperBound(page!), 1 << 20)
            seen += tasks.compactMap { string(value($0, "id")) }
            offset = int(value(page, "next_offset"))
        }
        XCTAssertEqual(seen, (1...100).map { "t-\($0)" })
    }

    func testTaskLimit() throws {
        var state = Self.fullState()
        let outcome = deliver(self.agent, request("tasks.create", ["title": "one too many"]), state: &state, seq: 200_000)
        assertFailed(outcome, "limit_reached", "100000")
        // The largest page is a valid reply: 1,000 tasks, under 1 MiB.
        let page = deliver(self.agent, request("tasks.list", ["limit": 1_000]), state: &state).result
        XCTAssertLessThan(msgpackUpperBound(page!), 1 << 20)
        // A full list survives a snapshot.
        XCTAssertEqual(try self.agent.decodeState(self.agent.encodeState(state)), state)
    }

    static func fullState() -> TaskListState {
        var state = TaskListState()
        state.tasks = (1...TaskManagement.maxTasks).map { number in
            TaskItem(
                seq: UInt64(number), title: "task \(number)", description: "", priority: .normal, status: .open,
                createdMilliseconds: Int64(number), updatedMilliseconds: Int64(number), dueMilliseconds: nil, tags: ["bulk"])
        }
        state.lastCreatedSeq = UInt64(TaskManagement.maxTasks)
        return state
    }

    // MARK: Snapshots

    func testGoldenSnapshotBytes() throws {
        // Computed independently (FNV-1a 64 and LEB128 by hand in Python) from the documented layout.
        XCTAssertEqual(Hex.encode(self.agent.encodeState(self.agent.initialState())), "43544d530100008f14f254bb767b29")
        var state = self.agent.initialState()
        deliver(self.agent, request("tasks.create", ["title": "Hi", "priority": "high", "due_ms": 5_000, "tags": ["a"]]), state: &state, seq: 10, clock: 1_000)
        let bytes = self.agent.encodeState(state)
        XCTAssertEqual(Hex.encode(bytes), "43544d5301010a010a024869000200d00fd00f01904e0101619c6edbcb7112cece")
        XCTAssertEqual(try self.agent.decodeState(bytes), state)
        XCTAssertEqual(self.agent.stateFormatVersion, 1)
    }

    func testSnapshotRoundTripForGeneratedStates() throws {
        var rng = SplitMix64(seed: 0xC0FFEE)
        var tasks: [TaskItem] = []
        for round in 0..<300 {
            let (_, state, _) = Workload.generate(self.agent, steps: Int(rng.next64() % 60), seed: rng.next64())
            tasks += state.tasks
            let bytes = self.agent.encodeState(state)
            XCTAssertEqual(try self.agent.decodeState(bytes), state, "round \(round)")
            XCTAssertEqual(self.agent.encodeState(try self.agent.decodeState(bytes)), bytes, "re-encoding is byte-identical")
        }
        // The generated states exercise every field.
        XCTAssertGreaterThan(tasks.count, 1_000)
        XCTAssertTrue(tasks.contains { $0.dueMilliseconds != nil } && tasks.contains { $0.tags.count > 1 })
        XCTAssertTrue(tasks.contains { $0.createdMilliseconds < 0 } && tasks.contains { !$0.description.isEmpty })
        XCTAssertEqual(Set(tasks.map(\.status)).count, 3)
        XCTAssertEqual(Set(tasks.map(\.priority)).count, 4)
    }

    func testTruncatedAndGarbageSnapshotsAreRejected() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<20 {
            let (_, state, _) = Workload.generate(self.agent, steps: 25, seed: rng.next64())
            let bytes = self.agent.encodeState(state)
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try self.agent.decodeState(Array(bytes.prefix(length))), "prefix of \(length) bytes")
            }
            XCTAssertThrowsError(try self.agent.decodeState(bytes + [0]), "a trailing byte")
            // Every single-byte change is caught.
            for index in bytes.indices {
                var changed = bytes
                changed[index] ^= UInt8(truncatingIfNeeded: rng.next64() % 255 + 1)
                XCTAssertThrowsError(try self.agent.decodeState(changed), "byte \(index) changed")
            }
        }
        for _ in 0..<2_000 {
            let garbage = (0..<Int(rng.next64() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next64()) }
            XCTAssertThrowsError(try self.agent.decodeState(garbage))
            XCTAssertThrowsError(try self.agent.decodeState(Array("CTMS".utf8) + [1] + garbage))
        }
    }

    /// Bytes with a correct checksum but a broken body: each rule of the decoder is reached.
    func testWellSealedButInvalidSnapshotsAreRejected() {
        func sealed(_ body: [UInt8]) -> [UInt8] {
            let checksum = TaskStateCodec.fnv1a(body[...])
            return body + (0..<8).map { UInt8(truncatingIfNeeded: checksum >> (56 - 8 * UInt64($0))) }
        }
        let header: [UInt8] = Array("CTMS".utf8) + [1]
        // One task: seq, title "x", empty description, priority, status, created 0, updated 0, no due, no tags.
        func item(seq: UInt8, priority: UInt8 = 1, status: UInt8 = 0, tags: [[UInt8]] = []) -> [UInt8] {
            [seq, 1, 0x78, 0, priority, status, 0, 0, 0, UInt8(tags.count)] + tags.flatMap { [UInt8($0.count)] + $0 }
        }
        let cases: [(String, [UInt8])] = [
            ("version 2", Array("CTMS".utf8) + [2, 0, 0]),
            ("unknown flag", header + [2, 0]),
            ("non-minimal varint", header + [0, 0x80, 0x00]),
            ("varint over 64 bits", header + [1] + [UInt8](repeating: 0xFF, count: 9) + [0x02, 0]),
            ("count beyond the input", header + [1, 5, 0x7F]),
            ("tasks without lastCreatedSeq", header + [0, 1] + item(seq: 1)),
            ("seq above lastCreatedSeq", header + [1, 1, 1] + item(seq: 2)),
            ("seqs out of order", header + [1, 9, 2] + item(seq: 5) + item(seq: 4)),
            ("duplicate seq", header + [1, 9, 2] + item(seq: 5) + item(seq: 5)),
            ("priority 4", header + [1, 9, 1] + item(seq: 5, priority: 4)),
            ("status 3", header + [1, 9, 1] + item(seq: 5, status: 3)),
            ("unsorted tags", header + [1, 9, 1] + item(seq: 5, tags: [[0x62], [0x61]])),
            ("duplicate tags", header + [1, 9, 1] + item(seq: 5, tags: [[0x61], [0x61]])),
            ("invalid UTF-8", header + [1, 9, 1] + item(seq: 5, tags: [[0xC3]])),
            ("trailing bytes", header + [0, 0, 0]),
        ]
        for (name, body) in cases {
            XCTAssertThrowsError(try self.agent.decodeState(sealed(body)), name)
        }
        // The same construction with valid fields decodes, so the cases above fail for their reason.
        XCTAssertEqual(try self.agent.decodeState(sealed(header + [1, 9, 2] + item(seq: 4) + item(seq: 5, tags: [[0x61], [0x62]]))).tasks.map(\.id), ["t-4", "t-5"])
    }

    // MARK: Event sourcing

    /// The state is a function of the requests and their delivery contexts: replaying the same
    /// deliveries from the initial state gives an equal state and the same outcomes, and so does
    /// resuming from a snapshot taken half way.
    func testReplayRebuildsTheSameState() throws {
        var rng = SplitMix64(seed: 2024)
        for _ in 0..<40 {
            let (deliveries, state, outcomes) = Workload.generate(self.agent, steps: 80, seed: rng.next64())
            var replayed = self.agent.initialState()
            let replayedOutcomes = deliveries.map { self.agent.handle($0.request, state: &replayed, context: $0.context) }
            XCTAssertEqual(replayed, state)
            XCTAssertEqual(replayedOutcomes, outcomes)

            let middle = deliveries.count / 2
            var resumed = self.agent.initialState()
            for delivery in deliveries[..<middle] { _ = self.agent.handle(delivery.request, state: &resumed, context: delivery.context) }
            resumed = try self.agent.decodeState(self.agent.encodeState(resumed))
            let tail = deliveries[middle...].map { self.agent.handle($0.request, state: &resumed, context: $0.context) }
            XCTAssertEqual(resumed, state)
            XCTAssertEqual(tail, Array(outcomes[middle...]))
        }
    }
}

/// Seeded random traffic for the task list: creates, updates (all fields, nulls, bad values),
/// completes, deletes, lists and unknown ids, with Unicode text, negative clocks and duplicate
/// deliveries.
enum Workload {
    struct Delivery {
        var request: TaskRequest
        var context: DeliveryContext
    }

    static let alphabet: [String] = ["a", "Z", " ", "é", "e\u{301}", "日", "🙂", "\"", "\\", "\n", "\0", "ß"]
    static let tagPool: [String] = ["a", "b", "urgent", "é", "日本", "🙂"]

    static func generate(_ agent: TaskManagement, steps: Int, seed: UInt64) -> ([Delivery], TaskListState, [AgentOutcome]) {
        var rng = SplitMix64(seed: seed)
        func pick(_ bound: Int) -> Int { Int(rng.next64() % UInt64(bound)) }
        func text(_ maxLength: Int) -> String { (0..<pick(maxLength + 1)).map { _ in alphabet[pick(alphabet.count)] }.joined() }
        func fields() -> [MCPValue.MapEntry] {
            var entries: [MCPValue.MapEntry] = []
            if pick(2) == 0 { entries.append(.init("title", .string("T" + text(10)))) }
            if pick(3) == 0 { entries.append(.init("description", pick(4) == 0 ? .null : .string(text(20)))) }
            if pick(3) == 0 { entries.append(.init("priority", .string(Priority.allCases[pick(4)].rawValue))) }
            if pick(4) == 0 { entries.append(.init("status", .string(TaskItem.Status.allCases[pick(3)].rawValue))) }
            if pick(4) == 0 { entries.append(.init("due_ms", pick(4) == 0 ? .null : .int(Int64(rng.next64() % (1 << 48))))) }
            if pick(3) == 0 { entries.append(.init("tags", .array((0..<pick(5)).map { _ in .string(tagPool[pick(tagPool.count)]) }))) }
            if pick(20) == 0 { entries.append(.init("priority", "bogus")) }  // duplicate key or bad value: refused
            return entries
        }

        var state = agent.initialState()
        var deliveries: [Delivery] = []
        var outcomes: [AgentOutcome] = []
        var seq = rng.next64() % 1_000
        var clock = Int64(rng.next64() % 2_000_000) - 1_000_000
        for _ in 0..<steps {
            let existing = state.tasks.isEmpty || pick(8) == 0 ? "t-\(rng.next64() % 2_000)" : state.tasks[pick(state.tasks.count)].id
            let id = MCPValue.MapEntry("id", .string(existing))
            let spec: TaskSpec
            switch pick(10) {
            case 0...3: spec = TaskSpec(type: "tasks.create", parameters: [.init("title", .string("New " + text(8)))] + fields().filter { $0.key != "title" })
            case 4, 5: spec = TaskSpec(type: "tasks.update", parameters: [id] + fields())
            case 6: spec = TaskSpec(type: "tasks.complete", parameters: [id])
            case 7: spec = TaskSpec(type: "tasks.delete", parameters: [id])
            case 8: spec = TaskSpec(type: "tasks.list", parameters: [.init("limit", .int(Int64(1 + pick(5))))])
            default: spec = TaskSpec(type: "tasks.create", parameters: [.init("title", .string(text(3)))])  // often blank
            }
            // Now and then a delivery comes again with the same seq (at-least-once).
            if pick(12) != 0 { seq += 1 + rng.next64() % 3 }
            clock += Int64(pick(5_000))
            let delivery = Delivery(request: TaskRequest(task: spec), context: DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: rng.next64()))
            deliveries.append(delivery)
            outcomes.append(agent.handle(delivery.request, state: &state, context: delivery.context))
        }
        return (deliveries, state, outcomes)
    }
}
