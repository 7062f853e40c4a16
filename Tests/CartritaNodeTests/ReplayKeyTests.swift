import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaNode

/// The replay scan's tables hash their keys cheaply (`ActorKey`, `Recovery.TimerKey`); a table
/// still finds exactly what `Address`'s and the key's own equality say, and routing by first
/// bytes picks the supervisor the table's rule picks.
final class ReplayKeyTests: XCTestCase {
    func testEqualKeysHashEqualAndEveryActorIsFound() {
        let addresses = Hierarchy.standard().addresses + [
            Address("a@v1.0"), Address("agent.x@v1.0"), Address("agent.datasage.1@v1.0"), Address("agent.datasage.2@v1.0"),
        ]
        var table: [ActorKey: Int] = [:]
        for (index, address) in addresses.enumerated() where table[ActorKey(address)] == nil { table[ActorKey(address)] = index }
        for address in addresses {
            // The same text in another string (as a decoder makes it) finds the same entry.
            let again = Address(unchecked: String(decoding: Array(address.rawValue.utf8), as: UTF8.self))
            XCTAssertEqual(ActorKey(again)._rawHashValue(seed: 7), ActorKey(address)._rawHashValue(seed: 7))
            XCTAssertEqual(table[ActorKey(again)], addresses.firstIndex(of: address))
        }
        XCTAssertNil(table[ActorKey(Address("agent.datasage.3@v1.0"))])
    }

    func testTimerKeysCompareTheirOwnerToo() {
        let id = MessageID(high: 0x0123_4567_89AB_7DEF, low: 0x8123_4567_89AB_CDEF)
        let first = Recovery.TimerKey(owner: Address("supervisor.system@v1.0"), correlation: id)
        let second = Recovery.TimerKey(owner: Address("orchestrator@v1.0"), correlation: id)
        var timers: [Recovery.TimerKey: Int] = [first: 1, second: 2]
        XCTAssertEqual(timers[first], 1)
        XCTAssertEqual(timers[second], 2)
        timers[first] = nil
        XCTAssertNil(timers[first])
        XCTAssertEqual(timers[second], 2)
    }

    func testRoutingPicksTheLongestWholeSegmentPrefix() throws {
        let table = try RoutingTable(routes: [
            .init(prefix: "vision.", supervisor: Address("supervisor.multimodal@v1.0")),
            .init(prefix: "vision.ocr.", supervisor: Address("supervisor.system@v1.0")),
            .init(prefix: "llm.", supervisor: Address("supervisor.intelligence@v1.0")),
        ])
        XCTAssertEqual(table.supervisor(forTaskType: "vision.ocr.scan"), Address("supervisor.system@v1.0"))
        XCTAssertEqual(table.supervisor(forTaskType: "vision.detect"), Address("supervisor.multimodal@v1.0"))
        XCTAssertEqual(table.supervisor(forTaskType: "llm.chat"), Address("supervisor.intelligence@v1.0"))
        for unrouted in ["", "llm.", "llmx.chat", "vision", "x.vision.a", "éllm.chat", "Llm.chat"] {
            XCTAssertNil(table.supervisor(forTaskType: unrouted), unrouted)
        }
    }
}
