import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import XCTest

@testable import CartritaServer

// MARK: - A server on loopback, and a client for it

/// A temporary data folder, removed at the end of the test.
final class TemporaryFolder {
    let path: String

    init() {
        self.path = NSTemporaryDirectory() + "cartrita-server-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// An HTTP answer with its body as JSON (parsed by the server's own strict parser).
struct Answer {
    var status: Int
    var headers: HTTPFields
    var text: String

    var json: JSON? { try? JSONParser().parse(self.text) }

    func string(_ path: String...) -> String? {
        var value = self.json
        for key in path { value = value?[key] }
        if case .string(let text)? = value { return text }
        return nil
    }

    var errorCode: String? { self.string("error", "code") }
    var errorField: String? { self.string("error", "field") }
}

func testConfiguration(_ folder: TemporaryFolder) -> ServerConfiguration {
    var configuration = ServerConfiguration()
    configuration.dataPath = folder.path + "/data"
    configuration.port = 0
    configuration.durability = .fast
    configuration.syncTimeoutMilliseconds = 20_000
    return configuration
}

/// One keep-alive connection to the server; requests go one after the other.
struct Client {
    let client: TestClient

    init(port: Int) {
        self.client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(60)))
        self.client.connect()
    }

    func close() async {
        try? await self.client.shutdown()
    }

    func send(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: [String: String] = [:]) async throws -> Answer {
        var fields = HTTPFields()
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { fields[HTTPField.Name(name)!] = value }
        if body != nil { fields[.contentType] = "application/json" }
        let request = TestClient.Request(uri, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) })
        let response = try await self.client.execute(request)
        let text = response.body.map { String(buffer: $0) } ?? ""
        return Answer(status: Int(response.status.code), headers: response.headers, text: text)
    }

    /// Polls GET /v3/tasks/ID until the task is no longer pending (at most `attempts` times, 20 ms
    /// apart: a bound on waiting, not an assertion on speed).
    func waitForTask(_ id: String, headers: [String: String] = [:], attempts: Int = 1_500) async throws -> Answer {
        var answer = try await self.send(.get, "/v3/tasks/\(id)", headers: headers)
        var tries = 0
        while answer.status == 200, answer.string("status") == "pending", tries < attempts {
            try await Task.sleep(for: .milliseconds(20))
            answer = try await self.send(.get, "/v3/tasks/\(id)", headers: headers)
            tries += 1
        }
        return answer
    }
}

let textStatsBody = #"{"task": {"type": "text.stats"}, "input": {"data": "The ledger records every actor. Replay rebuilds the state."}}"#

/// A `files` service that holds every read until the test is over (or the call times out):
/// a task that reads a file through it stays in flight as long as the test needs.
struct StallingFiles: IOService {
    func call(operation: String, arguments: MCPValue) async -> IOResult {
        try? await Task.sleep(for: .seconds(600))
        return .failure(TaskError(code: .ioError, message: "stalled on purpose", retryable: true))
    }
}

func fileTaskBody(url: String, maxExecutionMilliseconds: Int? = nil) -> String {
    let constraints = maxExecutionMilliseconds.map { #", "constraints": {"max_execution_time_ms": \#($0)}"# } ?? ""
    return #"{"task": {"type": "text.stats"\#(constraints)}, "input": {"files": [{"name": "a.txt", "content_type": "text/plain", "url": "\#(url)"}]}}"#
}
