import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import XCTest

@testable import CartritaNode

/// `SentMessages` (an array with per-task chains and a fixed-hash table) against the plain
/// structure it replaced, a dictionary of per-task lists: the same count after every step and the
/// same owed messages, in the same order, at every snapshot.
final class SentMessagesTests: XCTestCase {
    /// The reference: messages by task, cancels remove a task's messages stamped after the clock.
    struct Reference {
        var byTask: [MessageID: [Envelope]] = [:]

        var count: Int { self.byTask.values.reduce(0) { $0 + $1.count } }

        mutating func record(_ delivery: Delivery, clock: Int64) {
            for correlation in delivery.cancelledTimers {
                self.byTask[correlation]?.removeAll { $0.timestampMilliseconds > clock }
                if self.byTask[correlation]?.isEmpty == true { self.byTask[correlation] = nil }
            }
            for message in delivery.messages { self.byTask[message.correlationID, default: []].append(message) }
        }

        /// Owed: not logged or logged after `seq`, sorted by (id, retry, timestamp); kept: not logged.
        mutating func owed(atSnapshot seq: UInt64, logged: [MessageID: UInt64]) -> [Envelope] {
            let all = self.byTask.values.flatMap { $0 }.sorted {
                ($0.id, $0.retryCount, $0.timestampMilliseconds) < ($1.id, $1.retryCount, $1.timestampMilliseconds)
            }
            let owed = all.filter { logged[$0.id].map { $0 > seq } ?? true }
            self.byTask = [:]
            for envelope in owed where logged[envelope.id] == nil { self.byTask[envelope.correlationID, default: []].append(envelope) }
            return owed
        }
    }

    static func envelope(id: MessageID, task: MessageID, timestamp: Int64, retry: Int32) -> Envelope {
        Envelope(
            id: id, parentID: nil, correlationID: task, sender: Hierarchy.system, recipient: Address("agent.datasage@v1.0"),
            broadcast: false, timestampMilliseconds: timestamp, ttlMilliseconds: 1_000, priority: .normal,
            context: MessageContext(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)),
            payload: .taskRequest(TaskRequest(task: TaskSpec(type: "data.csv-stats"))), deliveryMode: .exactlyOnce,
            retryCount: retry, maxRetries: 3)
    }

    /// Random deliveries over few tasks (so chains are long and cancels hit often), timers
    /// stamped after the clock, cancels, messages logged at random seqs, and snapshots; long
    /// enough between snapshots that the holes are compacted away more than once.
    func testAgreesWithADictionaryOfListsOverRandomRuns() throws {
        for seed in UInt64(1)...UInt64(6) {
            var random = SplitMix64(seed: seed)
            var sent = SentMessages()
            var reference = Reference()
            var logged: [MessageID: UInt64] = [:]
            var seq: UInt64 = 0
            var clock: Int64 = 1_000
            var nextID: UInt64 = 1
            let tasks = (0..<(3 + Int(seed) * 7)).map { MessageID(high: 0xAB00 + UInt64($0) % 4, low: UInt64($0) * 0x9E37_79B9) }
            let snapshotEvery = [50, 400, 5_000][Int(seed % 3)]
            for step in 0..<12_000 {
                clock += Int64(random.next64() % 3)
                var delivery = Delivery()
                for _ in 0..<Int(random.next64() % 3) where random.next64() % 3 == 0 {
                    delivery.cancelledTimers.append(tasks[Int(random.next64() % UInt64(tasks.count))])
                }
                for _ in 0..<Int(random.next64() % 4) {
                    let task = tasks[Int(random.next64() % UInt64(tasks.count))]
                    let timer = random.next64() % 2 == 0
                    let id = MessageID(high: 0x0190_0000_0000_7000 + nextID % 5, low: nextID)
                    nextID += 1
                    delivery.messages.append(Self.envelope(
                        id: id, task: task, timestamp: clock + (timer ? 1 + Int64(random.next64() % 50) : 0),
                        retry: Int32(random.next64() % 2)))
                }
                sent.record(delivery, clock: clock)
                reference.record(delivery, clock: clock)
                XCTAssertEqual(sent.count, reference.count, "seed \(seed) step \(step)")
                // Some sent messages reach the log.
                for message in delivery.messages where random.next64() % 2 == 0 {
                    seq += 1
                    logged[message.id] = seq
                }
                if step % snapshotEvery == snapshotEvery - 1 {
                    let at = seq > 10 ? seq - random.next64() % 10 : seq
                    let owed = try sent.owed(atSnapshot: at) { (ids) throws(EventLogError) in ids.map { logged[$0] } }
                    XCTAssertEqual(owed, reference.owed(atSnapshot: at, logged: logged), "seed \(seed) step \(step)")
                    XCTAssertEqual(sent.count, reference.count, "seed \(seed) step \(step)")
                }
            }
            let owed = try sent.owed(atSnapshot: seq) { (ids) throws(EventLogError) in ids.map { logged[$0] } }
            XCTAssertEqual(owed, reference.owed(atSnapshot: seq, logged: logged), "seed \(seed) at the end")
        }
    }

    /// Messages recovery found owed start the list, and a failed lookup leaves it as it was.
    func testStartsWithOwedMessagesAndSurvivesAFailedLookup() throws {
        let task = MessageID(high: 7, low: 7)
        let first = Self.envelope(id: MessageID(high: 1, low: 1), task: task, timestamp: 10, retry: 0)
        let second = Self.envelope(id: MessageID(high: 1, low: 2), task: task, timestamp: 50, retry: 0)
        var sent = SentMessages([second, first])
        XCTAssertEqual(sent.count, 2)
        XCTAssertThrowsError(try sent.owed(atSnapshot: 1) { (_) throws(EventLogError) in throw EventLogError(.closed, "the log is closed") })
        XCTAssertEqual(sent.count, 2)
        var delivery = Delivery()
        delivery.cancelledTimers = [task]
        sent.record(delivery, clock: 20)  // forgets the one stamped 50
        XCTAssertEqual(sent.count, 1)
        XCTAssertEqual(try sent.owed(atSnapshot: 1) { (ids) throws(EventLogError) in ids.map { _ in nil } }, [first])
    }
}
