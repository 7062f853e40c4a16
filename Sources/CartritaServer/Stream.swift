import CartritaEnvelope
import CartritaNode
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging

// MARK: - GET /v3/stream (WebSocket)

/// One WebSocket carries the live messages of the tasks its client subscribes to.
///
/// Client → server, one JSON text message each:
/// `{"action": "subscribe", "task_id": ID}`, `{"action": "unsubscribe", "task_id": ID}`.
/// Server → client: `{"event": "subscribed", "task_id"}`; `{"event": "message", "task_id", "seq",
/// "type", "envelope"}` for each `task_progress`, `stream_*` and terminal answer addressed to
/// the client (first those already in the log, then live); `{"event": "finished", "task_id",
/// "status"}`; `{"event": "error", "error": {code, message, field}}` for a bad message (the
/// socket stays open). Credentials and Origin are checked at the upgrade, as for every /v3 route.
enum StreamSocket {
    /// Most tasks one socket follows at once; largest client message.
    static let maxSubscriptionsPerSocket = 100
    static let maxMessageBytes = 16 << 10
    /// Frames queued for a slow client before the oldest are dropped.
    static let maxQueuedFrames = 1_024

    static func serverBuilder(_ door: FrontDoor) -> HTTPServerBuilder {
        .http1WebSocketUpgrade { head, _, _ in
            guard head.path?.split(separator: "?").first == "/v3/stream" else { return .dontUpgrade }
            // A refused upgrade falls through to the HTTP route, which answers the JSON error.
            guard let caller = try? await door.admit(headers: head.headerFields, authority: head.authority) else { return .dontUpgrade }
            return .upgrade([:]) { inbound, outbound, context in
                await Self.serve(door, caller: caller, inbound: inbound, outbound: outbound, logger: context.logger)
            }
        }
    }

    static func serve(
        _ door: FrontDoor, caller: Caller, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger
    ) async {
        // Every frame goes out through one writer task: subscriptions produce concurrently.
        let (frames, sink) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(Self.maxQueuedFrames))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await text in frames {
                    do { try await outbound.write(.text(text)) } catch { return }
                }
            }
            var subscriptions: [MessageID: AsyncStream<EventHub.Event>.Continuation] = [:]
            do {
                for try await message in inbound.messages(maxSize: Self.maxMessageBytes) {
                    guard case .text(let text) = message else {
                        sink.yield(Self.error(APIError(.badRequest, .malformedJSON, "messages are JSON text")))
                        continue
                    }
                    do throws(APIError) {
                        try Self.handle(text, door: door, caller: caller, subscriptions: &subscriptions, sink: sink, group: &group)
                    } catch {
                        sink.yield(Self.error(error))
                    }
                }
            } catch {
                logger.debug("websocket closed", metadata: ["error": "\(error)"])
            }
            for continuation in subscriptions.values { continuation.finish() }
            sink.finish()
        }
    }

    static func handle(
        _ text: String, door: FrontDoor, caller: Caller, subscriptions: inout [MessageID: AsyncStream<EventHub.Event>.Continuation],
        sink: AsyncStream<String>.Continuation, group: inout TaskGroup<Void>
    ) throws(APIError) {
        let json: JSON
        do {
            json = try JSONParser(limits: .init(maxDepth: 8, maxInputBytes: Self.maxMessageBytes)).parse(text)
        } catch {
            throw APIError(.badRequest, .malformedJSON, "not JSON: \(error)")
        }
        guard case .object(let members) = json else { throw APIError.badField("$", "a message is a JSON object") }
        try TaskBody.onlyKeys(members, ["action", "task_id"], path: "")
        guard case .string(let idText)? = json["task_id"] else {
            throw APIError(.badRequest, .missingField, "task_id is required", field: "task_id")
        }
        let id = try FrontDoor.taskID(idText)
        switch json["action"] {
        case .string("subscribe")?:
            guard subscriptions[id] == nil else { return }
            guard subscriptions.count < Self.maxSubscriptionsPerSocket else {
                throw APIError(.tooManyRequests, .tooManyWaiting, "at most \(Self.maxSubscriptionsPerSocket) subscriptions per socket")
            }
            guard let (live, continuation) = door.events.subscribe(id) else {
                throw APIError(.tooManyRequests, .tooManyWaiting, "too many event streams open", retryAfterSeconds: 1)
            }
            let view: FrontDoor.TaskView?
            do {
                view = try door.view(of: id, flowLimit: door.configuration.maxFlowRecords)
            } catch {
                continuation.finish()
                throw error
            }
            guard let view, caller.maySee(user: view.userID ?? door.tracker.tracked(id)?.user) else {
                continuation.finish()
                throw APIError(.notFound, .notFound, "no task \(id)", field: "task_id")
            }
            subscriptions[id] = continuation
            sink.yield(JSON.object([("event", .string("subscribed")), ("task_id", .string(id.description))]).rendered())
            let past = view.flow.filter { $0.envelope.recipient == FrontDoor.httpClient }
                .map { EventHub.Event(seq: $0.header.seq, envelope: $0.envelope) }
            // Done once the answer's record is in the log; a settled answer one commit ahead
            // of its record is followed live until the record comes (as the SSE stream does).
            if view.answerLogged { continuation.finish() }
            group.addTask {
                var sent: UInt64 = 0
                var status = view.status
                for event in past {
                    sink.yield(Self.message(event))
                    sent = event.seq
                }
                for await event in live where event.seq > sent {
                    sink.yield(Self.message(event))
                    sent = event.seq
                    if ClientMachine.outcome(event.envelope) != nil {
                        status = FrontDoor.TaskView(id: id, request: nil, requestLogged: true, answer: event.envelope, flow: []).status
                    }
                }
                if status != "pending" {
                    sink.yield(JSON.object([("event", .string("finished")), ("task_id", .string(id.description)), ("status", .string(status))]).rendered())
                }
            }
        case .string("unsubscribe")?:
            subscriptions.removeValue(forKey: id)?.finish()
        default:
            throw APIError.badField("action", "action is subscribe or unsubscribe")
        }
    }

    static func message(_ event: EventHub.Event) -> String {
        JSON.object([
            ("event", .string("message")), ("task_id", .string(event.envelope.correlationID.description)), ("seq", .uint(event.seq)),
            ("type", .string(event.envelope.type.rawValue)), ("envelope", event.envelope.json),
        ]).rendered()
    }

    static func error(_ error: APIError) -> String {
        guard case .object(let members) = error.json else { return "{}" }
        return JSON.object([("event", .string("error"))] + members).rendered()
    }
}
