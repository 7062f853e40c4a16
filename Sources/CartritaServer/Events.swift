import CartritaCodec
import CartritaEnvelope
import CartritaNode
import HTTPTypes
import Hummingbird
import Synchronization

// MARK: - GET /v3/tasks/{id}/events (Server-Sent Events)

/// Live deliveries to the HTTP client, by task: `task_progress`, `stream_start|data|end` and the
/// terminal answer, each after its record is committed (the node's observer feeds it). A
/// subscriber's buffer holds at most `maxBufferedEvents`; a client too slow to keep up loses the
/// oldest events, never the server's memory (and `GET /v3/tasks/{id}` still has them all).
final class EventHub: Sendable {
    struct Event: Sendable {
        var seq: UInt64
        var envelope: Envelope
    }

    let maxSubscribers: Int
    let maxBufferedEvents = 256
    let subscribers = Mutex<[MessageID: [(token: Int, continuation: AsyncStream<Event>.Continuation)]]>([:])
    let nextToken = Atomic<Int>(0)
    let count = Atomic<Int>(0)

    init(maxSubscribers: Int) {
        self.maxSubscribers = maxSubscribers
    }

    /// A stream of task `id`'s events from now on, and its continuation (finish it to end this
    /// subscriber's stream alone); nil when there are too many subscribers.
    func subscribe(_ id: MessageID) -> (stream: AsyncStream<Event>, continuation: AsyncStream<Event>.Continuation)? {
        guard self.count.add(1, ordering: .relaxed).newValue <= self.maxSubscribers else {
            self.count.subtract(1, ordering: .relaxed)
            return nil
        }
        let token = self.nextToken.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<Event>.makeStream(bufferingPolicy: .bufferingNewest(self.maxBufferedEvents))
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            self.subscribers.withLock { table in
                table[id]?.removeAll { $0.token == token }
                if table[id]?.isEmpty == true { table[id] = nil }
            }
            self.count.subtract(1, ordering: .relaxed)
        }
        self.subscribers.withLock { $0[id, default: []].append((token, continuation)) }
        return (stream, continuation)
    }

    func publish(_ envelope: Envelope, seq: UInt64) {
        let targets = self.subscribers.withLock { $0[envelope.correlationID]?.map(\.continuation) ?? [] }
        for continuation in targets {
            continuation.yield(Event(seq: seq, envelope: envelope))
            if ClientMachine.outcome(envelope) != nil { continuation.finish() }
        }
    }

    /// Ends every stream (shutdown).
    func finishAll() {
        let all = self.subscribers.withLock { $0.values.flatMap { $0.map(\.continuation) } }
        for continuation in all { continuation.finish() }
    }

    /// One SSE frame: the record's seq as the event id (a client reconnecting with
    /// `Last-Event-ID` skips what it has), the message type as the event name, the envelope as data.
    static func frame(_ event: Event) -> ByteBuffer {
        ByteBuffer(string: "id: \(event.seq)\nevent: \(event.envelope.type.rawValue)\ndata: \(event.envelope.json.rendered())\n\n")
    }
}

extension FrontDoor {
    /// The task's client-bound messages already in the log, then the live ones, until the
    /// terminal answer (or `maxEventStreamMilliseconds`).
    func events(_ idText: String, request: Request, caller: Caller) throws(APIError) -> Response {
        let id = try Self.taskID(idText)
        // Subscribe before reading the log, so nothing committed in between is missed; what
        // both see is sent once (by seq).
        guard let (live, subscription) = self.events.subscribe(id) else {
            throw APIError(.tooManyRequests, .tooManyWaiting, "too many event streams open", retryAfterSeconds: 1)
        }
        let view: TaskView?
        do {
            view = try self.view(of: id, flowLimit: self.configuration.maxFlowRecords)
        } catch {
            subscription.finish()
            throw error
        }
        guard let view, caller.maySee(user: view.userID ?? self.tracker.tracked(id)?.user) else {
            subscription.finish()
            throw APIError(.notFound, .notFound, "no task \(id)", field: "id")
        }
        let lastEventID = HTTPField.Name("Last-Event-ID").flatMap { request.headers[$0] }.flatMap { UInt64($0) } ?? 0
        let past = view.flow.filter { $0.envelope.recipient == Self.httpClient && $0.header.seq > lastEventID }
            .map { EventHub.Event(seq: $0.header.seq, envelope: $0.envelope) }
        // Finished once the answer is in the log. A settled answer can be one commit ahead of
        // its record (the waiting request was answered on it, see `answerTap`): the stream
        // then follows until the record is committed, so it always ends with the answer.
        let finished = view.answerLogged
        let limit = self.configuration.maxEventStreamMilliseconds
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let body = ResponseBody { writer in
            var sent = lastEventID
            for event in past {
                try await writer.write(EventHub.frame(event))
                sent = max(sent, event.seq)
            }
            if !finished {
                let deadline = Task {
                    try? await Task.sleep(for: .milliseconds(limit))
                    subscription.finish()
                }
                defer { deadline.cancel() }
                for await event in live where event.seq > sent {
                    try await writer.write(EventHub.frame(event))
                    sent = event.seq
                }
            }
            subscription.finish()
            try await writer.finish(nil)
        }
        if finished { subscription.finish() }
        return Response(status: .ok, headers: headers, body: body)
    }
}
