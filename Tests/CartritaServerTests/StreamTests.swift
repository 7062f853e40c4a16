import CartritaEnvelope
import Foundation
import HummingbirdWSClient
import Logging
import Synchronization
import XCTest

@testable import CartritaServer

final class WebSocketStreamTests: XCTestCase {
    /// Subscribe over /v3/stream to a task in flight, cancel it over HTTP, and see its terminal
    /// answer and the `finished` event arrive on the socket; a bad message gets an error event.
    func testSubscribedTaskMessagesArriveLive() async throws {
        let folder = TemporaryFolder()
        var configuration = testConfiguration(folder)
        configuration.ioServices["files"] = StallingFiles()
        // swift-websocket's client sends `Origin: ws://HOST` (no port): an origin the operator
        // must allow, like any other that is not the server's own.
        configuration.auth.allowedOrigins = ["ws://127.0.0.1"]
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)
        let accepted = try await client.send(.post, "/v3/tasks?async=true", body: fileTaskBody(url: "file:///stalls/ws.txt"))
        let id = try XCTUnwrap(accepted.string("task_id"))

        let plain = try await client.send(.get, "/v3/stream")
        XCTAssertEqual(plain.status, 426, plain.text)

        let received = Mutex<[String]>([])
        try await WebSocketClient.connect(url: "ws://127.0.0.1:\(server.port)/v3/stream", logger: Logger(label: "test")) { inbound, outbound, _ in
            try await outbound.write(.text(#"{"action": "dance"}"#))
            try await outbound.write(.text(#"{"action": "subscribe", "task_id": "\#(id)"}"#))
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message else { continue }
                received.withLock { $0.append(text) }
                if text.contains(#""event":"subscribed""#) {
                    let cancelled = try await client.send(.delete, "/v3/tasks/\(id)")
                    XCTAssertEqual(cancelled.status, 200, cancelled.text)
                }
                if text.contains(#""event":"finished""#) { break }
            }
            try await outbound.close(.normalClosure, reason: nil)
        }
        let texts = received.withLock { $0 }
        XCTAssertTrue(texts.first?.contains(#""event":"error""#) ?? false, "\(texts)")
        XCTAssertTrue(texts.contains { $0.contains(#""event":"message""#) && $0.contains(#""type":"task_error""#) && $0.contains("cancelled") }, "\(texts)")
        XCTAssertEqual(texts.last, #"{"event":"finished","task_id":"\#(id)","status":"cancelled"}"#)

        await client.close()
        try await server.shutdown()
    }
}
