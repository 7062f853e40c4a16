import CartritaEnvelope

// MARK: - Effects: what a handler asks the runtime to do

/// A message a handler wants sent. The runtime turns it into an envelope when it logs it: the
/// id is a UUIDv7 from the delivery's recorded clock and entropy, the timestamp is the recorded
/// clock, the sender is the handling actor. So replay makes the same envelopes bit for bit.
public struct OutgoingMessage: Hashable, Sendable {
    public var recipient: Address
    public var payload: Payload
    /// The message this one answers or was caused by.
    public var parentID: MessageID?
    /// The task it belongs to; every message of one client request shares it.
    public var correlationID: MessageID
    public var context: MessageContext
    public var priority: Priority
    public var deliveryMode: DeliveryMode
    public var ttlMilliseconds: Int32
    public var maxRetries: Int32
    /// How many times this message was sent before (a redelivery or a retry after a crash).
    public var retryCount: Int32
    public var broadcast: Bool
    /// Normally nil: the runtime draws the id. Set to send a message again under the id it had,
    /// so the log's id index refuses it if it was delivered already (an exactly_once retry).
    public var id: MessageID?

    public init(
        recipient: Address, payload: Payload, parentID: MessageID?, correlationID: MessageID, context: MessageContext,
        priority: Priority = .normal, deliveryMode: DeliveryMode = .atLeastOnce, ttlMilliseconds: Int32 = 30_000,
        maxRetries: Int32 = 3, retryCount: Int32 = 0, broadcast: Bool = false
    ) {
        self.recipient = recipient
        self.payload = payload
        self.parentID = parentID
        self.correlationID = correlationID
        self.context = context
        self.priority = priority
        self.deliveryMode = deliveryMode
        self.ttlMilliseconds = ttlMilliseconds
        self.maxRetries = maxRetries
        self.retryCount = retryCount
        self.broadcast = broadcast
    }

    /// A reply to `request`: same task, same trace, caused by it, back to its sender.
    public static func reply(to request: Envelope, payload: Payload) -> OutgoingMessage {
        OutgoingMessage(
            recipient: request.sender, payload: payload, parentID: request.id, correlationID: request.correlationID,
            context: request.context, priority: request.priority, deliveryMode: request.deliveryMode,
            ttlMilliseconds: request.ttlMilliseconds, maxRetries: request.maxRetries)
    }

    /// The envelope the runtime logs for this message. Consuming: the materializer hands over
    /// a message it owns, so its strings and payload move into the envelope instead of being
    /// copied (a caller that keeps the message passes a copy).
    public consuming func envelope(id: MessageID, sender: Address, timestampMilliseconds: Int64) -> Envelope {
        Envelope(
            id: id, parentID: self.parentID, correlationID: self.correlationID, sender: sender, recipient: self.recipient,
            broadcast: self.broadcast, timestampMilliseconds: timestampMilliseconds, ttlMilliseconds: self.ttlMilliseconds,
            priority: self.priority, context: self.context, payload: self.payload, deliveryMode: self.deliveryMode,
            retryCount: self.retryCount, maxRetries: self.maxRetries)
    }
}

/// Effects are data: the handler returns them, the runtime performs them (and logs them first).
/// A handler never sleeps, spawns a task or calls out; a timer is a message to itself, and the
/// result of I/O comes back as a logged message.
public enum Effect: Hashable, Sendable {
    case send(OutgoingMessage)
    /// Deliver `message` this long after the clock reading of the current delivery: a timeout
    /// for the handling actor itself, or a delayed send (a retry after a restart's backoff).
    case timer(afterMilliseconds: Int64, message: OutgoingMessage)
    /// Forget this actor's timers of one task that have not fired yet (the work they guarded
    /// finished). A timer that already fired is a message in the log like any other.
    case cancelTimers(correlationID: MessageID)
    case spawn(Address)
    case stop(Address)
    /// Start `child` again after this long (a supervisor's restart, with its backoff).
    case restart(Address, afterMilliseconds: Int64)
    /// A supervisor gave up (intensity exceeded): the orchestrator must be told.
    case escalate(reason: String)
}
