import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

// MARK: - One simulated client: a keep-alive HTTP/1.1 connection, one request at a time

/// What one client measured. Confined to its event loop while the run goes on (`NIOLoopBound`),
/// read once the client is done.
final class ClientTally {
    /// Latency of each answered request, in microseconds (monotonic clock).
    var latenciesMicroseconds: [UInt32] = []
    var ok = 0
    var errors: [String: Int] = [:]
    /// Task ids from the answers (for the message-flow check), with their task type.
    var tasks: [(id: String, type: String)] = []
    var connects = 0

    func error(_ type: String) { self.errors[type, default: 0] += 1 }
}

/// The pre-rendered requests a client cycles through: the mix's bodies, rendered once, so the
/// load generator spends its CPU on I/O, not on JSON (it shares the machine with the server).
struct RequestTemplate: Sendable {
    var taskType: String
    var body: ByteBuffer
}

/// Drives one client: connect, send, read the answer, send the next, until the deadline;
/// reconnect after a connection error or a timeout (each counted by type). Lives on one event
/// loop; every method runs there.
final class LoadClient {
    let eventLoop: any EventLoop
    let target: SocketAddress
    let headers: HTTPHeaders
    let templates: [RequestTemplate]
    let deadline: NIODeadline
    let requestTimeout: TimeAmount
    let tally = ClientTally()
    let done: EventLoopPromise<Void>
    /// Which template goes next: clients start at different offsets so the mix is spread.
    var next: Int
    var finished = false

    init(eventLoop: any EventLoop, target: SocketAddress, headers: HTTPHeaders, templates: [RequestTemplate], first: Int, deadline: NIODeadline, requestTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.target = target
        self.headers = headers
        self.templates = templates
        self.next = first
        self.deadline = deadline
        self.requestTimeout = requestTimeout
        self.done = eventLoop.makePromise()
    }

    func start() {
        self.eventLoop.assertInEventLoop()
        self.connect()
    }

    func connect() {
        guard NIODeadline.now() < self.deadline else { return self.finish() }
        self.tally.connects += 1
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        ClientBootstrap(group: self.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(client: bound.value))
                }
            }
            .connect(to: self.target)
            .whenComplete { result in
                if case .failure(let error) = result {
                    bound.value.tally.error(Self.classify(error))
                    // A refused or failed connect: try again shortly, not in a hot loop.
                    bound.value.eventLoop.scheduleTask(in: .milliseconds(20)) { bound.value.connect() }
                }
            }
    }

    /// The connection closed (by either side, or after a timeout or error): go on with a new one.
    func connectionClosed() {
        guard !self.finished else { return }
        self.connect()
    }

    func finish() {
        guard !self.finished else { return }
        self.finished = true
        self.done.succeed(())
    }

    func nextTemplate() -> RequestTemplate? {
        guard NIODeadline.now() < self.deadline else { return nil }
        let template = self.templates[self.next % self.templates.count]
        self.next &+= 1
        return template
    }

    /// Names an error by kind, as the report's `errors` keys.
    static func classify(_ error: any Error) -> String {
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED: return "connection_refused"
            case ECONNRESET: return "connection_reset"
            case EPIPE: return "broken_pipe"
            case ETIMEDOUT: return "timeout"
            default: return "io_error"
            }
        }
        if let channel = error as? ChannelError {
            switch channel {
            case .connectTimeout: return "connect_timeout"
            case .ioOnClosedChannel, .alreadyClosed, .eof: return "connection_closed"
            default: return "channel_error"
            }
        }
        if error is HTTPParserError { return "bad_http" }
        return "other"
    }
}

/// The pipeline's end: sends a request, reads its answer, classifies and times it, sends the next.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPClientRequestPart

    /// Most bytes of an answer kept to read its task id from; the rest is counted and dropped.
    static let maxKeptBodyBytes = 4_096

    enum State {
        case idle
        case waiting(started: NIODeadline, template: RequestTemplate, status: HTTPResponseStatus?, body: ByteBuffer?)
        case closing
    }

    let client: LoadClient
    var state = State.idle
    var timeout: Scheduled<Void>?

    init(client: LoadClient) {
        self.client = client
    }

    func channelActive(context: ChannelHandlerContext) {
        self.sendNext(context: context)
    }

    func sendNext(context: ChannelHandlerContext) {
        guard let template = self.client.nextTemplate() else {
            self.state = .closing
            context.close(promise: nil)
            self.client.finish()
            return
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/v3/tasks", headers: self.client.headers)
        head.headers.replaceOrAdd(name: "Content-Length", value: String(template.body.readableBytes))
        self.state = .waiting(started: .now(), template: template, status: nil, body: nil)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(.byteBuffer(template.body))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timeout = context.eventLoop.scheduleTask(in: self.client.requestTimeout) {
            let (handler, context) = loopBound.value
            guard case .waiting = handler.state else { return }
            handler.client.tally.error("timeout")
            handler.state = .closing
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .waiting(let started, let template, var status, var body) = self.state else { return }
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
            self.state = .waiting(started: started, template: template, status: status, body: body)
        case .body(var part):
            if (body?.readableBytes ?? 0) < Self.maxKeptBodyBytes {
                let room = Self.maxKeptBodyBytes - (body?.readableBytes ?? 0)
                if var slice = part.readSlice(length: min(room, part.readableBytes)) {
                    if body == nil { body = slice } else { body!.writeBuffer(&slice) }
                }
            }
            self.state = .waiting(started: started, template: template, status: status, body: body)
        case .end:
            self.timeout?.cancel()
            let elapsed = NIODeadline.now() - started
            self.completed(status: status, body: body, template: template, microseconds: elapsed.nanoseconds / 1_000)
            self.state = .idle
            self.sendNext(context: context)
        }
    }

    func completed(status: HTTPResponseStatus?, body: ByteBuffer?, template: RequestTemplate, microseconds: Int64) {
        let tally = self.client.tally
        guard let status else { return tally.error("bad_http") }
        guard status == .ok else {
            // 202 on a synchronous request: the server's wait for the answer ran out.
            tally.error(status == .accepted ? "sync_timeout" : "http_\(status.code)")
            return
        }
        let text = body.map { String(buffer: $0) } ?? ""
        // Answered tasks, failed ones too, are what the flow check samples: a failure has a
        // flow to check as well (an unrouted type must be answered by the orchestrator itself).
        if let id = Self.field("task_id", in: text), tally.tasks.count < LoadConfiguration.maxKeptTasksPerClient {
            tally.tasks.append((id, template.taskType))
        }
        // The synchronous answer carries the task's terminal status; a failed task is an error
        // of the run too, named by its code.
        if let failed = Self.field("status", in: text), failed != "completed" {
            tally.error("task_\(failed)" + (Self.field("code", in: text).map { ":\($0)" } ?? ""))
            return
        }
        tally.ok += 1
        tally.latenciesMicroseconds.append(UInt32(clamping: microseconds))
    }

    /// The first `"name":"value"` string member of a JSON text (the server renders without
    /// spaces). Enough for the answer's top-level `task_id`, `status` and error `code`.
    static func field(_ name: String, in text: String) -> String? {
        guard let range = text.range(of: "\"\(name)\":\"") else { return nil }
        let rest = text[range.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case .waiting = self.state { self.client.tally.error(LoadClient.classify(error)) }
        self.state = .closing
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timeout?.cancel()
        if case .waiting = self.state {
            // The server closed the connection with our request unanswered.
            self.client.tally.error("connection_closed")
        }
        self.state = .closing
        self.client.connectionClosed()
    }
}
