import CartritaCodec
import CartritaEnvelope

// MARK: - The actor contract the runtime drives

/// Every actor of the hierarchy, seen by the runtime: a deterministic step over a state that
/// round-trips through snapshot bytes. The orchestrator, the domain supervisors and every agent
/// (through `AgentActor`) conform; users' actors can too.
///
/// The step is (state, envelope, context) → (new state, effects). It reads nothing else, so the
/// state is a pure function of the records addressed to the actor, in log order.
public protocol StateMachine: Sendable {
    associatedtype State: Hashable & Sendable

    var address: Address { get }
    /// The format of `encodeState`'s bytes; a snapshot in another format is not used.
    var stateFormatVersion: UInt32 { get }

    func initialState() -> State
    func step(_ state: inout State, _ envelope: Envelope, _ context: DeliveryContext) -> [Effect]
    func encodeState(_ state: State) -> [UInt8]
    /// Appends exactly `encodeState(state)`'s bytes to `writer`. The default copies them; a
    /// machine whose state is large writes them in place (see `Orchestrator`).
    func encodeState(_ state: State, into writer: MsgPackWriter)
    func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State
    /// The state as a readable value (for `travel`, `recover --json`, the debugger).
    func describeState(_ state: State) -> MCPValue
}

extension StateMachine {
    public func encodeState(_ state: State, into writer: MsgPackWriter) {
        self.encodeState(state).withUnsafeBytes { writer.writeRaw($0) }
    }
}

extension Orchestrator: StateMachine {
    public var address: Address { Self.address }
    public func initialState() -> State { State() }
}

extension DomainSupervisor: StateMachine {}

extension AgentActor: StateMachine {
    public var stateFormatVersion: UInt32 { self.agent.stateFormatVersion }
    public func encodeState(_ state: Wrapped.State) -> [UInt8] { self.agent.encodeState(state) }
    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> Wrapped.State { try self.agent.decodeState(bytes) }
    public func describeState(_ state: Wrapped.State) -> MCPValue { self.agent.describeState(state) }
}

// MARK: - One delivery's outcome

/// What the runtime must do after one delivery. Everything in it is a function of the delivered
/// record, so recovery regenerates it exactly: that is how messages that were sent but not yet
/// delivered at a crash come back, and how the divergence detector checks a handler.
public struct Delivery: Sendable {
    /// Messages to deliver, with their ids assigned. One whose `timestamp` lies after the
    /// delivery's clock reading is a timer: it is not delivered before its timestamp.
    public var messages: [Envelope] = []
    /// Timers of this actor to forget, by correlation (the work they guarded is over).
    public var cancelledTimers: [MessageID] = []
    public var actions: [Action] = []
    /// Set when the runtime refused the message instead of handing it to the actor.
    public var refusal: TaskErrorCode?

    public init() {}

    /// Runtime actions that are not messages.
    public enum Action: Hashable, Sendable {
        case spawn(Address)
        case stop(Address)
        /// Hold deliveries to `child` until this clock reading (a restart with backoff).
        case restart(Address, untilMilliseconds: Int64)
    }
}

// MARK: - A cell: one actor and its state

/// A type-erased actor with its state, as a driver (production or simulation) holds it. Not
/// Sendable: exactly one driver thread or Swift actor owns a cell.
public protocol ActorCell: AnyObject {
    var address: Address { get }
    /// The seq of the last record delivered to this actor (0: none; a snapshot's seq after restore).
    var lastSeq: UInt64 { get }
    /// Deliveries handled since the cell was created or restored.
    var deliveriesSinceSnapshot: Int { get }

    /// Delivers one logged record: refuses it when its TTL has passed, else runs the step, and
    /// turns the effects into envelopes with ids drawn from the delivery's recorded entropy.
    func deliver(_ envelope: Envelope, _ context: DeliveryContext) -> Delivery

    var stateFormatVersion: UInt32 { get }
    func snapshotBytes() -> [UInt8]
    /// Appends `snapshotBytes()`'s bytes to `writer` (a buffer the driver reuses).
    func writeSnapshot(into writer: MsgPackWriter)
    /// Restores a snapshot that covers the log up to `seq`. False (and the state unchanged) when
    /// its format is another or its bytes cannot be read: the caller falls back.
    func restore(formatVersion: UInt32, bytes: [UInt8], seq: UInt64) -> Bool
    func reset()
    func describeState() -> MCPValue
    /// A snapshot of `bytes` bytes was just taken: counting starts again, and the next one is
    /// due by `snapshotDue(everyDeliveries:)`.
    func markSnapshotted(bytes: Int)
    /// The size of the last snapshot taken or restored (0: none yet).
    var lastSnapshotBytes: Int { get }

    /// True when the state can never change (a stateless agent): replay may then skip the
    /// handler and only note the delivery (`skip`), since nothing but its effects could differ.
    var isStateless: Bool { get }
    /// Notes that record `seq` was delivered without running the handler (see `isStateless`).
    func skip(seq: UInt64)
}

extension ActorCell {
    /// Whether a snapshot is due: after `everyDeliveries` deliveries, or, for an actor whose
    /// state is large, after one delivery per `bytesPerDelivery` bytes of its last snapshot
    /// (0: the interval alone decides). A snapshot costs time in proportion to the state;
    /// without the second rule an actor holding a backlog of 20,000 tasks would re-encode all of
    /// them every N deliveries, and snapshotting alone would grow with the square of the
    /// backlog. With it, snapshots cost O(1) per delivery amortized, and replay after a crash
    /// stays bounded by the larger of N and the state's size (a few thousand records at most
    /// for the largest states: milliseconds).
    public func snapshotDue(everyDeliveries: Int, bytesPerDelivery: Int = defaultSnapshotBytesPerDelivery) -> Bool {
        let spread = bytesPerDelivery > 0 ? self.lastSnapshotBytes / bytesPerDelivery : 0
        return self.deliveriesSinceSnapshot >= max(everyDeliveries, spread)
    }
}

/// See `ActorCell.snapshotDue`: a snapshot of up to 256 KiB keeps the default interval of 1,000
/// deliveries; a larger one spreads its cost over more.
public let defaultSnapshotBytesPerDelivery = 256

/// The cell of any `StateMachine`.
public final class MachineCell<Machine: StateMachine>: ActorCell {
    public let machine: Machine
    // Unchecked: a cell is owned by one driver thread or Swift actor (see `ActorCell`), so no
    // two accesses can overlap, and the dynamic check costs several times what a delivery's
    // bookkeeping does.
    @exclusivity(unchecked) public private(set) var state: Machine.State
    @exclusivity(unchecked) public private(set) var lastSeq: UInt64 = 0
    @exclusivity(unchecked) public private(set) var deliveriesSinceSnapshot = 0
    @exclusivity(unchecked) public private(set) var lastSnapshotBytes = 0

    public init(_ machine: Machine) {
        self.machine = machine
        self.state = machine.initialState()
    }

    public var address: Address { self.machine.address }
    public var stateFormatVersion: UInt32 { self.machine.stateFormatVersion }

    public func deliver(_ envelope: Envelope, _ context: DeliveryContext) -> Delivery {
        self.lastSeq = context.seq
        self.deliveriesSinceSnapshot += 1
        if let refusal = DeliveryGate.refusal(envelope, context) {
            var delivery = Delivery()
            delivery.refusal = refusal.code
            if let answer = refusal.answer {
                var ids = EffectIDs(context)
                delivery.messages.append(answer.envelope(id: ids.next(), sender: self.address, timestampMilliseconds: context.clockMilliseconds))
            }
            return delivery
        }
        let effects = self.machine.step(&self.state, envelope, context)
        return Materializer.materialize(effects, from: self.address, context)
    }

    public func snapshotBytes() -> [UInt8] { self.machine.encodeState(self.state) }

    public func writeSnapshot(into writer: MsgPackWriter) { self.machine.encodeState(self.state, into: writer) }

    public func restore(formatVersion: UInt32, bytes: [UInt8], seq: UInt64) -> Bool {
        guard formatVersion == self.machine.stateFormatVersion, let state = try? self.machine.decodeState(bytes) else {
            return false
        }
        self.state = state
        self.lastSeq = seq
        self.deliveriesSinceSnapshot = 0
        self.lastSnapshotBytes = bytes.count
        return true
    }

    public func reset() {
        self.state = self.machine.initialState()
        self.lastSeq = 0
        self.deliveriesSinceSnapshot = 0
        self.lastSnapshotBytes = 0
    }

    public func describeState() -> MCPValue { self.machine.describeState(self.state) }

    public func markSnapshotted(bytes: Int) {
        self.deliveriesSinceSnapshot = 0
        self.lastSnapshotBytes = bytes
    }

    public var isStateless: Bool { Machine.State.self == EmptyState.self }

    public func skip(seq: UInt64) {
        precondition(self.isStateless, "only a stateless actor's handler may be skipped")
        self.lastSeq = seq
        self.deliveriesSinceSnapshot += 1
    }
}

// MARK: - Checks at delivery

/// What the runtime checks when a logged message is about to reach its actor (MCP-SPEC §1).
public enum DeliveryGate {
    public struct Refusal: Sendable {
        public var code: TaskErrorCode
        /// The answer to the sender, or nil when answering would only make noise (an expired
        /// refusal is not refused again).
        public var answer: OutgoingMessage?
    }

    public static func refusal(_ envelope: Envelope, _ context: DeliveryContext) -> Refusal? {
        // Past `timestamp + ttl_ms` the message is not delivered; the sender hears `ttl_expired`.
        guard context.clockMilliseconds > envelope.timestampMilliseconds + Int64(envelope.ttlMilliseconds) else { return nil }
        let late = context.clockMilliseconds - envelope.timestampMilliseconds - Int64(envelope.ttlMilliseconds)
        if case .taskError(let error) = envelope.payload, error.code == .ttlExpired {
            return Refusal(code: .ttlExpired, answer: nil)
        }
        let error = TaskError(
            code: .ttlExpired, message: "\(envelope.type.rawValue) to \(envelope.recipient) expired \(late) ms before delivery", retryable: true)
        return Refusal(code: .ttlExpired, answer: .reply(to: envelope, payload: .taskError(error)))
    }
}

// MARK: - Effects into envelopes

/// The ids of one delivery's outgoing messages: UUIDv7 at the delivery's recorded clock, with
/// the counter and random bits drawn from its recorded entropy. Replay draws the same ids.
public struct EffectIDs {
    var generator = UUIDv7Generator()
    var entropy: SplitMix64
    let clockMilliseconds: Int64

    public init(_ context: DeliveryContext) {
        // Mixed with a constant so the ids never reuse the stream a handler gets from `entropy`.
        self.entropy = SplitMix64(seed: context.entropy ^ 0x6964_735F_6566_6663)
        self.clockMilliseconds = context.clockMilliseconds
    }

    public mutating func next() -> MessageID {
        self.generator.next(milliseconds: self.clockMilliseconds, entropy: &self.entropy)
    }
}

public enum Materializer {
    /// Turns a step's effects into what the runtime does, in the order the handler gave them.
    ///
    /// The effects are consumed: each is moved out of the array (a trivial effect is left in its
    /// place) and its message's strings and payload move into the envelope, where iterating
    /// the array copied each one (a retain per reference) and freeing it released them again.
    public static func materialize(_ effects: consuming [Effect], from sender: Address, _ context: DeliveryContext) -> Delivery {
        var delivery = Delivery()
        guard !effects.isEmpty else { return delivery }
        var ids = EffectIDs(context)
        delivery.messages.reserveCapacity(effects.count)
        var effects = effects
        for position in effects.indices {
            var effect = Effect.cancelTimers(correlationID: MessageID(high: 0, low: 0))
            swap(&effect, &effects[position])
            switch consume effect {
            case .send(let message):
                let id = ids.next()  // drawn even when unused, so later ids do not shift
                delivery.messages.append(message.envelope(id: message.id ?? id, sender: sender, timestampMilliseconds: context.clockMilliseconds))
            case .timer(let after, let message):
                // A timer is a message stamped with its due time: not delivered before it, and
                // its TTL counts from then.
                let id = ids.next()
                delivery.messages.append(message.envelope(
                    id: message.id ?? id, sender: sender, timestampMilliseconds: context.clockMilliseconds + max(0, after)))
            case .cancelTimers(let correlation):
                delivery.cancelledTimers.append(correlation)
            case .spawn(let child):
                delivery.actions.append(.spawn(child))
            case .stop(let child):
                delivery.actions.append(.stop(child))
            case .restart(let child, let after):
                delivery.actions.append(.restart(child, untilMilliseconds: context.clockMilliseconds + max(0, after)))
            case .escalate(let reason):
                // Escalation is a message like any other, so the orchestrator's log shows it.
                let error = TaskError(code: .supervisorEscalated, message: reason, retryable: false)
                let id = ids.next()
                delivery.messages.append(OutgoingMessage(
                    recipient: .orchestrator, payload: .taskError(error), parentID: nil, correlationID: id,
                    context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low)),
                    priority: .critical, deliveryMode: .atLeastOnce
                ).envelope(id: id, sender: sender, timestampMilliseconds: context.clockMilliseconds))
            }
        }
        return delivery
    }
}

extension TaskErrorCode {
    public static let supervisorEscalated = TaskErrorCode(rawValue: "supervisor_escalated")
    /// A supervisor's timer to itself: its cool-down after escalating is over, it starts again.
    public static let supervisorRestart = TaskErrorCode(rawValue: "supervisor_restart")
    public static let paused = TaskErrorCode(rawValue: "paused")
    public static let duplicateTask = TaskErrorCode(rawValue: "duplicate_task")
    public static let shuttingDown = TaskErrorCode(rawValue: "shutting_down")
}

extension MessageID {
    /// A second id that belongs to this one: same millisecond, the other bits mixed with `tag`.
    /// The runtime names its own answers this way (an `overloaded` refusal of message X), so that
    /// recovery can ask the log whether X was refused without any other index.
    public func derived(tag: UInt64) -> MessageID {
        var mix = SplitMix64(seed: self.low ^ (self.high << 16) ^ tag)
        let counterHigh = mix.next64() & 0x0FFF
        let low = (mix.next64() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return MessageID(high: (self.high & 0xFFFF_FFFF_FFFF_0000) | 0x7000 | counterHigh, low: low)
    }
}
