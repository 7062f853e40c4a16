// MARK: - Enumerations of MCP-SPEC §1–2

/// Mailboxes serve higher priorities first, FIFO within one priority.
public enum Priority: String, CaseIterable, Comparable, Sendable {
    case low, normal, high, critical

    /// 0 for low … 3 for critical, in `allCases` order.
    public var rank: Int {
        switch self {
        case .low: 0
        case .normal: 1
        case .high: 2
        case .critical: 3
        }
    }

    public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rank < rhs.rank }
}

public enum DeliveryMode: String, CaseIterable, Sendable {
    case atMostOnce = "at_most_once"
    case atLeastOnce = "at_least_once"
    case exactlyOnce = "exactly_once"
}

public enum MessageType: String, CaseIterable, Sendable {
    // Control
    case ping, pong, heartbeat, shutdown
    /// The emergency override (admin): pause or resume a supervisor, drain the front door.
    case override
    // Task
    case taskRequest = "task_request"
    case taskResponse = "task_response"
    case taskError = "task_error"
    case taskProgress = "task_progress"
    // Coordination
    case resourceRequest = "resource_request"
    case resourceGrant = "resource_grant"
    case resourceDeny = "resource_deny"
    // Streaming
    case streamStart = "stream_start"
    case streamData = "stream_data"
    case streamEnd = "stream_end"
}

// MARK: - Trace context

/// W3C trace id: 16 bytes, not all zero. Shown as 32 lower-case hex digits.
public struct TraceID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    @inlinable
    public init?(bytes: UnsafeRawBufferPointer) {
        guard let id = MessageID(bytes: bytes) else { return nil }
        self.init(high: id.high, low: id.low)
    }

    @inlinable
    public init?(bytes: [UInt8]) {
        guard let id = MessageID(bytes: bytes) else { return nil }
        self.init(high: id.high, low: id.low)
    }

    public init?(hex: String) {
        guard hex.utf8.count == 32, let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] { MessageID(high: self.high, low: self.low).bytes }
    public var isValid: Bool { self.high != 0 || self.low != 0 }
    public var description: String { Hex.encode(self.bytes) }
}

/// W3C span id: 8 bytes, not all zero. Shown as 16 lower-case hex digits.
public struct SpanID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    @inlinable
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 8 else { return nil }
        self.rawValue = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
    }

    @inlinable
    public init?(bytes: [UInt8]) {
        guard let span = bytes.withUnsafeBytes({ SpanID(bytes: $0) }) else { return nil }
        self = span
    }

    public init?(hex: String) {
        guard hex.utf8.count == 16, let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: self.rawValue >> (56 - 8 * UInt64($0))) } }
    public var isValid: Bool { self.rawValue != 0 }
    public var description: String { Hex.encode(self.bytes) }
}

/// A string-to-string pair; custom attributes keep their order (never a Dictionary).
public struct StringPair: Hashable, Sendable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

public struct MessageContext: Hashable, Sendable {
    public var traceID: TraceID
    public var spanID: SpanID
    /// A string, not the seed's number: API keys and JWT subjects name users by text.
    public var userID: String?
    public var conversationID: String?
    public var sessionID: String?
    public var workspaceID: String?
    public var customAttributes: [StringPair]

    public init(
        traceID: TraceID,
        spanID: SpanID,
        userID: String? = nil,
        conversationID: String? = nil,
        sessionID: String? = nil,
        workspaceID: String? = nil,
        customAttributes: [StringPair] = []
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.userID = userID
        self.conversationID = conversationID
        self.sessionID = sessionID
        self.workspaceID = workspaceID
        self.customAttributes = customAttributes
    }
}

// MARK: - The envelope

/// One MCP message (MCP-SPEC §1). The message type is the payload's case, so the two can
/// never disagree.
public struct Envelope: Hashable, Sendable {
    public var id: MessageID
    public var parentID: MessageID?
    public var correlationID: MessageID
    public var sender: Address
    public var recipient: Address
    public var broadcast: Bool
    /// Milliseconds since the Unix epoch, set by the runtime when the message is logged.
    public var timestampMilliseconds: Int64
    public var ttlMilliseconds: Int32
    public var priority: Priority
    public var context: MessageContext
    public var payload: Payload
    public var deliveryMode: DeliveryMode
    public var retryCount: Int32
    public var maxRetries: Int32

    public var type: MessageType { self.payload.type }

    /// The instant after which the message must not be delivered.
    public var expiresAtMilliseconds: Int64 { self.timestampMilliseconds + Int64(self.ttlMilliseconds) }

    public init(
        id: MessageID,
        parentID: MessageID? = nil,
        correlationID: MessageID,
        sender: Address,
        recipient: Address,
        broadcast: Bool = false,
        timestampMilliseconds: Int64,
        ttlMilliseconds: Int32,
        priority: Priority = .normal,
        context: MessageContext,
        payload: Payload,
        deliveryMode: DeliveryMode = .atLeastOnce,
        retryCount: Int32 = 0,
        maxRetries: Int32 = 0
    ) {
        self.id = id
        self.parentID = parentID
        self.correlationID = correlationID
        self.sender = sender
        self.recipient = recipient
        self.broadcast = broadcast
        self.timestampMilliseconds = timestampMilliseconds
        self.ttlMilliseconds = ttlMilliseconds
        self.priority = priority
        self.context = context
        self.payload = payload
        self.deliveryMode = deliveryMode
        self.retryCount = retryCount
        self.maxRetries = maxRetries
    }
}
