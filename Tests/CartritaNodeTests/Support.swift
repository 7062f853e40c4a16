import CartritaEnvelope
import CartritaLog
import CartritaNode
import Foundation
import Synchronization
import XCTest

/// A fresh directory under /tmp (mkdtemp), removed when released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String = "node") {
        var template = Array("/tmp/cartrita-nodetests-\(label)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed: \(errno)")
        self.path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// Collects what the node delivers to clients.
final class Answers: Sendable {
    let state = Mutex<[(Address, Envelope, UInt64)]>([])

    var observer: @Sendable (Address, Envelope, UInt64) -> Void {
        { address, envelope, seq in self.state.withLock { $0.append((address, envelope, seq)) } }
    }

    var all: [(Address, Envelope, UInt64)] { self.state.withLock { $0 } }

    /// Terminal answers by task id.
    var terminal: [MessageID: ClientMachine.Outcome] {
        var result: [MessageID: ClientMachine.Outcome] = [:]
        for (_, envelope, _) in self.all {
            if let outcome = ClientMachine.outcome(envelope) { result[envelope.correlationID] = outcome }
        }
        return result
    }
}

/// Submits `count` tasks of the standard mix (`seed`) to `node`, waits until it is idle, fails
/// the test if storage failed, and shuts the node down (the log stays open).
func runStandardTasks(_ node: Node, count: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) async {
    for index in 0..<count {
        let (request, mode) = Workload.standard.task(seed: seed, index: index)
        _ = node.submit(request, from: Hierarchy.runClient, deliveryMode: mode)
    }
    let failure = await node.waitUntilIdle()
    XCTAssertNil(failure, file: file, line: line)
    await node.shutdown()
}

func openLog(_ directory: TemporaryDirectory, durability: Durability = .relaxed) throws -> EventLog {
    try EventLog(path: directory.path, configuration: EventLogConfiguration(durability: durability))
}
