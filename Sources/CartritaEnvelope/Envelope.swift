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
///
/// A value type whose fields live in one shared, copy-on-write box. An envelope is copied many
/// times on its way (into a mailbox, a batch, the log's queue, a delivery, a state table), and a
/// copy of the fields themselves retains every string and payload inside and moves a few hundred
/// bytes; a copy of the box is one retain and one word. Writes copy the box first when it is
/// shared, so envelopes behave exactly as plain structs do.
public struct Envelope: Hashable, Sendable {
    /// The stored fields, in the order of MCP-SPEC §1.
    @usableFromInline
    struct Fields: Hashable, Sendable {
        @usableFromInline var id: MessageID
        @usableFromInline var parentID: MessageID?
        @usableFromInline var correlationID: MessageID
        @usableFromInline var sender: Address
        @usableFromInline var recipient: Address
        @usableFromInline var broadcast: Bool
        @usableFromInline var timestampMilliseconds: Int64
        @usableFromInline var ttlMilliseconds: Int32
        @usableFromInline var priority: Priority
        @usableFromInline var context: MessageContext
        @usableFromInline var payload: Payload
        @usableFromInline var deliveryMode: DeliveryMode
        @usableFromInline var retryCount: Int32
        @usableFromInline var maxRetries: Int32
    }

    /// Shared between copies; written only when uniquely referenced (`mutableFields`), so no
    /// thread ever sees a box change under it, which is what makes `@unchecked Sendable` true.
    @usableFromInline
    final class Box: @unchecked Sendable {
        // Unchecked: exclusivity is guaranteed by copy-on-write (a box is written only while
        // one envelope owns it), and the dynamic check would cost more than the copy saved.
        @exclusivity(unchecked) @usableFromInline var fields: Fields

        @inlinable init(_ fields: Fields) {
            self.fields = fields
        }
    }

    @usableFromInline var box: Box

    @inlinable var fields: Fields { self.box.fields }

    /// The fields for writing: the box is copied first unless this envelope is its only owner.
    @inlinable var mutableFields: Fields {
        _read { yield self.box.fields }
        _modify {
            if !isKnownUniquelyReferenced(&self.box) { self.box = Box(self.box.fields) }
            yield &self.box.fields
        }
    }

    /// The identity of the shared storage. Two envelopes with the same identity are the same
    /// value (a write copies the storage first unless it is unshared), as long as one of them
    /// keeps the storage alive: a cache of bytes derived from envelopes may key on it if it
    /// holds the envelope too (the simulator's snapshots).
    public var storageIdentity: ObjectIdentifier { ObjectIdentifier(self.box) }

    public static func == (lhs: Envelope, rhs: Envelope) -> Bool {
        lhs.box === rhs.box || lhs.box.fields == rhs.box.fields
    }

    public func hash(into hasher: inout Hasher) {
        self.box.fields.hash(into: &hasher)
    }

    @inlinable public var id: MessageID {
        get { self.box.fields.id }
        set { self.mutableFields.id = newValue }
    }
    @inlinable public var parentID: MessageID? {
        get { self.box.fields.parentID }
        set { self.mutableFields.parentID = newValue }
    }
    @inlinable public var correlationID: MessageID {
        get { self.box.fields.correlationID }
        set { self.mutableFields.correlationID = newValue }
    }
    // The fields that hold references (addresses' text, the context's strings, the payload) are
    // read through `_read`: the caller borrows the value inside the box, which the envelope
    // keeps alive, instead of getting a copy (a retain of every reference in it, and a release
    // after). A `switch envelope.payload` or an `envelope.recipient.isAgent` runs on every
    // delivery, at every tier, and in the encoder for every envelope it writes.
    @inlinable public var sender: Address {
        _read { yield self.box.fields.sender }
        set { self.mutableFields.sender = newValue }
    }
    @inlinable public var recipient: Address {
        _read { yield self.box.fields.recipient }
        set { self.mutableFields.recipient = newValue }
    }
    @inlinable public var broadcast: Bool {
        get { self.box.fields.broadcast }
        set { self.mutableFields.broadcast = newValue }
    }
    /// Milliseconds since the Unix epoch, set by the runtime when the message is logged.
    @inlinable public var timestampMilliseconds: Int64 {
        get { self.box.fields.timestampMilliseconds }
        set { self.mutableFields.timestampMilliseconds = newValue }
    }
    @inlinable public var ttlMilliseconds: Int32 {
        get { self.box.fields.ttlMilliseconds }
        set { self.mutableFields.ttlMilliseconds = newValue }
    }
    @inlinable public var priority: Priority {
        get { self.box.fields.priority }
        set { self.mutableFields.priority = newValue }
    }
    @inlinable public var context: MessageContext {
        _read { yield self.box.fields.context }
        _modify { yield &self.mutableFields.context }
    }
    @inlinable public var payload: Payload {
        _read { yield self.box.fields.payload }
        _modify { yield &self.mutableFields.payload }
    }
    @inlinable public var deliveryMode: DeliveryMode {
        get { self.box.fields.deliveryMode }
        set { self.mutableFields.deliveryMode = newValue }
    }
    @inlinable public var retryCount: Int32 {
        get { self.box.fields.retryCount }
        set { self.mutableFields.retryCount = newValue }
    }
    @inlinable public var maxRetries: Int32 {
        get { self.box.fields.maxRetries }
        set { self.mutableFields.maxRetries = newValue }
    }

    @inlinable public var type: MessageType { self.payload.type }

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
        self.box = Box(Fields(
            id: id, parentID: parentID, correlationID: correlationID, sender: sender, recipient: recipient, broadcast: broadcast,
            timestampMilliseconds: timestampMilliseconds, ttlMilliseconds: ttlMilliseconds, priority: priority, context: context,
            payload: payload, deliveryMode: deliveryMode, retryCount: retryCount, maxRetries: maxRetries))
    }
}
