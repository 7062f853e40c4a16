import CartritaCodec
import CartritaEnvelope
import CartritaRuntime
import Crypto
import XCTest

@testable import CartritaNode
@testable import CartritaSim

/// The simulator's hot-path tables against the plain structures they replace: the same answers,
/// whatever the order of operations.
final class SimulationTablesTests: XCTestCase {
    /// Random inserts, lookups and removals, with ids crowded into few buckets (only a handful of
    /// distinct values per half), so probes run long and backward-shift deletion moves entries.
    func testTheIdTableAgreesWithADictionary() {
        var random = SplitMix64(seed: 42)
        var table = MessageSeqTable(minimumCapacity: 4)
        var reference: [MessageID: UInt64] = [:]
        var nextSeq: UInt64 = 1
        for step in 0..<20_000 {
            let id = MessageID(high: random.next64() % 64, low: random.next64() % 8)
            switch random.next64() % 3 {
            case 0, 1:
                let inserted = table.insert(id, seq: nextSeq)
                XCTAssertEqual(inserted, reference[id] == nil, "step \(step)")
                if inserted { reference[id] = nextSeq }
                nextSeq += 1
            default:
                table.remove(id)
                reference[id] = nil
            }
            XCTAssertEqual(table.count, reference.count, "step \(step)")
            if step % 97 == 0 {
                for high in 0..<UInt64(64) {
                    for low in 0..<UInt64(8) {
                        let probe = MessageID(high: high, low: low)
                        XCTAssertEqual(table.seq(of: probe), reference[probe], "step \(step), \(probe)")
                    }
                }
            }
        }
    }

    /// The in-memory log's id index (hash bits and seqs, ids read back through `idAt`) against a
    /// dictionary, with the same crowded ids and random inserts, lookups and removals.
    func testTheRecordIdTableAgreesWithADictionary() {
        var random = SplitMix64(seed: 43)
        var table = RecordIDTable(minimumCapacity: 4)
        var reference: [MessageID: UInt64] = [:]
        var idOfSeq: [UInt32: MessageID] = [:]
        let idAt = { (seq: UInt32) -> MessageID in idOfSeq[seq]! }
        var nextSeq: UInt64 = 1
        for step in 0..<20_000 {
            let id = MessageID(high: random.next64() % 64, low: random.next64() % 8)
            switch random.next64() % 3 {
            case 0, 1:
                let inserted = table.insert(id, seq: nextSeq, idAt: idAt)
                XCTAssertEqual(inserted, reference[id] == nil, "step \(step)")
                if inserted {
                    reference[id] = nextSeq
                    idOfSeq[UInt32(nextSeq)] = id
                }
                nextSeq += 1
            default:
                table.remove(id, idAt: idAt)
                reference[id] = nil
            }
            XCTAssertEqual(table.count, reference.count, "step \(step)")
            if step % 97 == 0 {
                for high in 0..<UInt64(64) {
                    for low in 0..<UInt64(8) {
                        let probe = MessageID(high: high, low: low)
                        XCTAssertEqual(table.seq(of: probe, idAt: idAt), reference[probe], "step \(step), \(probe)")
                    }
                }
            }
        }
    }

    /// The address index answers as the dictionary it replaced: every cell of the standard
    /// hierarchy at its position, a repeated address at its last one, unknown addresses nil.
    func testTheAddressIndexAgreesWithADictionary() {
        var addresses = Hierarchy.standard().makeCells().map(\.address)
        addresses.append(addresses[2])
        var reference: [Address: Int] = [:]
        for (position, address) in addresses.enumerated() { reference[address] = position }
        let index = AddressIndex(addresses)
        for address in addresses + [Address("agent.nobody@v1.0"), Address("io.files@v1.0"), Address("client.run@v1.0")] {
            XCTAssertEqual(index[address], reference[address], "\(address)")
        }
        XCTAssertNil(AddressIndex()[Address.orchestrator])
    }

    /// The id table as a counter (the client's answers per task), through its growth.
    func testTheIdTableCountsLikeADictionary() {
        var random = SplitMix64(seed: 44)
        var table = MessageSeqTable(minimumCapacity: 2)
        var reference: [MessageID: UInt64] = [:]
        for _ in 0..<5_000 {
            let id = MessageID(high: random.next64() % 300, low: random.next64() % 3)
            reference[id, default: 0] += 1
            XCTAssertEqual(table.increment(id), reference[id])
        }
        XCTAssertEqual(table.count, reference.count)
        for (id, count) in reference { XCTAssertEqual(table.seq(of: id), count) }
    }

    /// The simulator's mailbox serves in the runtime's `Mailbox` order (priority, then FIFO),
    /// through the compactions of long queues.
    func testTheMailboxServesInTheRuntimesOrder() {
        var random = SplitMix64(seed: 7)
        var mailbox = SimMailbox()
        var reference = Mailbox<Envelope>(capacity: Int.max)
        let priorities = Priority.allCases
        for step in 0..<5_000 {
            if random.next64() % 5 < 3 {
                let priority = priorities[Int(random.next64() % 4)]
                let envelope = Self.envelope(number: UInt64(step), priority: priority)
                mailbox.push(envelope)
                reference.push(envelope, priority: priority)
            } else {
                XCTAssertEqual(mailbox.pop()?.id, reference.pop()?.item.id, "step \(step)")
            }
            XCTAssertEqual(mailbox.count, reference.count)
        }
        while let expected = reference.pop() { XCTAssertEqual(mailbox.pop()?.id, expected.item.id) }
        XCTAssertNil(mailbox.pop())
        XCTAssertTrue(mailbox.isEmpty)
    }

    /// Each fault's bit and counter is its place in `allCases` (the order the report prints).
    func testFaultOrdinalsFollowAllCases() {
        for (position, fault) in Simulation.Fault.allCases.enumerated() {
            XCTAssertEqual(fault.ordinal, position, "\(fault)")
            XCTAssertTrue(FaultSet([fault]).contains(fault))
            XCTAssertEqual(Simulation.Fault.allCases.filter { FaultSet([fault]).contains($0) }, [fault])
        }
        XCTAssertFalse(FaultSet().contains(.crash))
    }

    /// Buffering the trace changes no digest: SHA-256 over the same bytes, fed whole.
    func testTheBufferedTraceDigestIsTheStreamsSHA256() {
        var random = SplitMix64(seed: 3)
        let trace = TraceDigest()
        let encoder = EnvelopeEncoder()
        var stream: [UInt8] = []
        for step in 0..<2_000 {
            switch random.next64() % 4 {
            case 3:
                // An envelope, encoded in place: `encode`'s bytes.
                let envelope = Self.envelope(number: UInt64(step), priority: .normal)
                trace.add(envelope)
                stream += try! encoder.encode(envelope)
            case 0:
                let value = random.next64()
                trace.add(value)
                withUnsafeBytes(of: value.bigEndian) { stream.append(contentsOf: $0) }
            case 1:
                let id = MessageID(high: random.next64(), low: random.next64())
                trace.add(id)
                id.withBytes { stream.append(contentsOf: $0) }
            default:
                // Up to twice the buffer, so some pieces bypass it.
                let bytes = (0..<Int(random.next64() % UInt64(2 * TraceDigest.bufferBytes))).map { _ in UInt8(truncatingIfNeeded: random.next64()) }
                bytes.withUnsafeBytes { trace.add($0) }
                stream += bytes
            }
        }
        XCTAssertEqual(trace.finalize(), Hex.encode(Array(SHA256.hash(data: stream))))
    }

    /// The workload's byte-built requests are the plain ones (interpolation, joins, upper-casing),
    /// with the same draws from the seed, for every task type and many indexes and seeds.
    func testTheWorkloadsFastRequestsAreThePlainOnes() {
        let types = Simulation.workload.entries.map(\.taskType) + ["tasks.list", "data.other", "text.other", "other"]
        for seed in [UInt64(1), 7, 0xDEAD_BEEF] {
            for index in 0..<400 {
                for type in types {
                    var fast = SplitMix64(seed: seed ^ UInt64(index))
                    var plain = fast
                    XCTAssertEqual(
                        Workload.request(for: type, index: index, random: &fast), Workload.plainRequest(for: type, index: index, random: &plain),
                        "\(type) seed \(seed) index \(index)")
                    XCTAssertEqual(fast.next64(), plain.next64(), "draws: \(type) seed \(seed) index \(index)")
                }
            }
        }
    }

    /// Prices print as `Double(hundredths) / 100` does: every value the workload draws, and a
    /// stride beyond.
    func testHundredthsPrintAsDoublesDo() {
        for hundredths in Array(0..<UInt64(10_000)) + Array(stride(from: UInt64(10_000), to: 1_000_000, by: 997)) + [999_999] {
            var bytes: [UInt8] = []
            Workload.appendHundredths(hundredths, to: &bytes)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "\(Double(hundredths) / 100)")
        }
        for value in [UInt64(0), 9, 10, 99, 100, 12_345, .max] {
            var bytes: [UInt8] = [UInt8(ascii: "x")]
            Workload.appendDecimal(value, to: &bytes)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "x\(value)")
        }
    }

    /// The in-memory log after appends, refusals and power losses: its heads, id and task
    /// indexes agree with its records, and it verifies.
    func testTheMemoryLogKeepsItsIndexesThroughTruncation() throws {
        let actors = [Address("orchestrator@v1.0"), Address("agent.one@v1.0"), Address("client.run@v1.0")]
        let log = MemoryLog(expectedRecords: 4)
        XCTAssertTrue(log.register(actors: actors))
        var random = SplitMix64(seed: 9)
        var appended: [(id: MessageID, correlation: MessageID, actor: Int)] = []
        for step in 0..<3_000 {
            if random.next64() % 50 == 0, !appended.isEmpty {
                let keep = Int(random.next64() % UInt64(appended.count))
                XCTAssertEqual(log.truncate(after: UInt64(keep)), appended.count - keep)
                appended.removeLast(appended.count - keep)
            } else {
                let actor = Int(random.next64() % 4)  // 3: the I/O gateway, named by text
                let recipient = actor < 3 ? actors[actor] : Address("io.files@v1.0")
                // Now and then an id seen before: refused.
                let id = random.next64() % 10 == 0 && !appended.isEmpty
                    ? appended[Int(random.next64() % UInt64(appended.count))].id : MessageID(high: UInt64(step), low: random.next64())
                let correlation = MessageID(high: 1, low: random.next64() % 20)
                let seq = log.append(
                    Self.envelope(id: id, correlation: correlation, recipient: recipient), actor: actor < 3 ? actor : nil,
                    clockMilliseconds: Int64(step), entropy: random.next64())
                if appended.contains(where: { $0.id == id }) {
                    XCTAssertNil(seq, "step \(step)")
                } else {
                    XCTAssertEqual(seq, UInt64(appended.count + 1), "step \(step)")
                    appended.append((id, correlation, actor))
                }
            }
            if step % 101 == 0 {
                XCTAssertNil(log.verify(), "step \(step)")
                XCTAssertEqual(try log.seqs(ofMessages: appended.map(\.id)), appended.indices.map { UInt64($0 + 1) })
                for low in 0..<UInt64(20) {
                    let correlation = MessageID(high: 1, low: low)
                    let expected = appended.indices.filter { appended[$0].correlation == correlation }.map { UInt64($0 + 1) }
                    XCTAssertEqual(try log.seqs(correlation: correlation), expected, "step \(step)")
                }
                let names = actors.map(\.rawValue) + ["io.files@v1.0"]
                let heads = names.indices.compactMap { actor in
                    appended.lastIndex { $0.actor == actor }.map { (names[actor], UInt64($0 + 1)) }
                }.sorted { $0.0 < $1.0 }
                XCTAssertEqual(try log.heads().map(\.actor), heads.map(\.0), "step \(step)")
                XCTAssertEqual(try log.heads().map(\.seq), heads.map(\.1), "step \(step)")
            }
        }
        XCTAssertNil(log.verify())
    }

    /// The simulator's snapshot writer gives `NodeSnapshot.encode`'s bytes: for every cell of a
    /// run stopped with work in flight (the orchestrator's pending table full, supervisors
    /// holding tasks), with no owed messages, a few, and one too large for the codec, which the
    /// node's wrapper leaves out. The writer is reused across all of them, as a run reuses it.
    func testSnapshotsAreTheNodesBytes() {
        var configuration = Simulation.Configuration(seed: 11)
        configuration.tasks = 300
        configuration.maxDeliveries = 700
        let simulation = Simulation(configuration)
        _ = simulation.run()
        var oversized = simulation.planned[0].envelope
        oversized.payload = .taskRequest(TaskRequest(task: TaskSpec(type: "text.stats"), input: TaskInput(data: .string(String(repeating: "x", count: 1 << 20)))))
        let owedLists: [[Envelope]] = [
            [], simulation.planned.prefix(5).map(\.envelope), [oversized] + simulation.planned.suffix(20).map(\.envelope) + [oversized],
        ]
        let encoder = SnapshotEncoder()
        var statesWithContent = 0
        // Twice over each list and in both orders, so owed messages' cached bytes are used too.
        for (position, cell) in simulation.cells.enumerated() {
            if cell.snapshotBytes().count > 200 { statesWithContent += 1 }
            for owed in owedLists + owedLists.reversed() + owedLists {
                XCTAssertEqual(
                    encoder.encode(cell, position: position, owed: owed), NodeSnapshot(state: cell.snapshotBytes(), owed: owed).encode(),
                    "\(cell.address)")
            }
        }
        XCTAssertGreaterThan(statesWithContent, 1)
    }

    static func envelope(number: UInt64, priority: Priority) -> Envelope {
        var envelope = Self.envelope(id: MessageID(high: number, low: 1), correlation: MessageID(high: number, low: 1), recipient: .orchestrator)
        envelope.priority = priority
        return envelope
    }

    static func envelope(id: MessageID, correlation: MessageID, recipient: Address) -> Envelope {
        Envelope(
            id: id, parentID: nil, correlationID: correlation, sender: Address("client.run@v1.0"), recipient: recipient, broadcast: false,
            timestampMilliseconds: 1_800_000_000_000, ttlMilliseconds: 600_000, priority: .normal,
            context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1)),
            payload: .ping(Ping(nonce: id.low)), deliveryMode: .atLeastOnce, retryCount: 0, maxRetries: 3)
    }
}
