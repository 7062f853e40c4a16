import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Foundation
import Synchronization

// MARK: - Configuration

public struct NodeConfiguration: Sendable {
    /// Most new-work messages (requests, pings) one actor holds; past it the sender is answered
    /// `overloaded`. Answers are always taken (see `Mailbox.push`).
    public var mailboxCapacity = 10_000
    /// An actor snapshots its state after this many deliveries.
    public var snapshotEveryDeliveries = 1_000
    /// A large state is snapshotted less often: one delivery per this many bytes of its last
    /// snapshot at least (0: exactly every `snapshotEveryDeliveries`). See `ActorCell.snapshotDue`.
    public var snapshotBytesPerDelivery = defaultSnapshotBytesPerDelivery
    /// Most messages one actor appends and then handles per log commit.
    public var maxDeliveryBatch = 512
    /// The I/O gateway's services by name (`files` serves `io.files@v1.0`). None by default: a
    /// call to a missing service is answered `io_unavailable`.
    public var ioServices: [String: any IOService] = [:]
    /// Sees every record the node commits for a delivery (any actor, and the I/O gateway's
    /// requests), right after its commit and before the actor handles it: so a message is always
    /// tapped before anything it causes. A reading for outer layers (tracing), never an input:
    /// nothing it does reaches an actor. It runs on the delivering actor, so it must be cheap
    /// and never block (hand the record to a bounded queue).
    public var deliveryTap: (@Sendable (DeliveredRecord) -> Void)?
    /// Sees a handler's terminal answer to a client (`task_response` or `task_error`, not
    /// at_most_once) the moment the handler makes it, before the answer's own record is
    /// committed. What the answer is is already settled then: everything it depends on (the
    /// delivery that made it, with its recorded clock and entropy) is committed, so after a
    /// crash recovery makes the same answer, bit for bit, and sends it again. A front door can
    /// reply on it and save one commit of latency. An at_most_once answer is not tapped:
    /// recovery does not resend those. Cheap and non-blocking, as `deliveryTap`.
    public var answerTap: (@Sendable (Envelope) -> Void)?
    /// Sees each delivery once its handler has run and what it sent is queued at the
    /// recipients, with where the time went on the monotonic clock (see `StepTiming`). A
    /// reading for outer layers (the front door's tier-0 histograms), never an input. Cheap
    /// and non-blocking, as `deliveryTap`; an actor the tap does not see reads no clock for it.
    public var stepTap: (@Sendable (StepTiming) -> Void)?
    /// The actors whose deliveries `stepTap` sees (nil: every actor). The front door times only
    /// the orchestrator: the others then pay nothing for it on their delivery loops.
    public var stepTapActors: Set<Address>?
    /// The task priority of each actor's drains. By default the orchestrator's run at `.high`
    /// and every other actor's at `.medium`: every task passes through the orchestrator twice
    /// (the request and its answer), so each moment it waits for a thread behind tier-2 work
    /// delays every task in flight, while its steps are short (route, answer). On Linux the
    /// priorities are dispatch's root queues, each with its own threads, and the higher one's
    /// threads also run at a lower nice value where the process may set it. Each actor's
    /// priority is explicit: a drain started from another actor's drain would otherwise inherit
    /// that one's. Priority decides which runnable drain gets a thread first, never what a
    /// handler does: the log's order is still the mailboxes' and the commits'.
    public var drainPriority: @Sendable (Address) -> TaskPriority = { $0 == .orchestrator ? .high : .medium }
    /// Actors whose drains run on a thread of their own (`DedicatedThreadExecutor`) at nice
    /// `dedicatedThreadNice`, instead of on dispatch's pool. By default the orchestrator: every
    /// request waits behind its batches twice, and on a busy machine the pool's threads wait to
    /// be scheduled after each commit and are preempted mid-batch (the tier-0 routing overhead's
    /// tail). Like `drainPriority` it decides when a step runs, never what it does.
    public var dedicatedThreadActors: Set<Address> = [.orchestrator]
    /// The nice value of `dedicatedThreadActors`' threads (dispatch's high-priority pool runs at
    /// -4 and -2, the rest of the process at 0). Kept when the process may not lower it.
    public var dedicatedThreadNice: Int32 = -10
    /// Whether the log's writer runs `dedicatedThreadActors`' steps itself right after it has
    /// answered their appends, instead of waking their thread (see `DedicatedThreadExecutor`).
    public var writerResumesDedicatedActors = true

    public init() {}
}

/// Where one delivery's time went inside its actor, on the monotonic clock (the log's clock
/// readings are whole milliseconds, too coarse for this): see `NodeConfiguration.stepTap`.
///
/// An actor takes a batch from its mailbox, appends it (its next batch may follow while it
/// commits), waits for the batch's group commit, then handles the batch's messages in order. So
/// a message's time in the actor splits into what the log costs (commits) and what the actor
/// itself costs (waiting for a thread, waiting behind the handling of earlier messages, its own
/// step). Snapshots are stored in the background: the actor does not wait for them.
public struct StepTiming: Sendable {
    public var actor: Address
    public var envelope: Envelope
    /// When the actor took the batch holding this message from its mailbox.
    public var taken: ContinuousClock.Instant
    /// The batch's commit: from the append to the log's answer (read on the writer's thread:
    /// the wait for a thread to resume the actor after it is the actor's, not the log's).
    public var commit: Range<ContinuousClock.Instant>
    /// When the handler had run and what it sent was queued at its recipients.
    public var handedOn: ContinuousClock.Instant
    /// The actor's latest waits for the log that began before this batch was taken (commits,
    /// oldest first, at most `StepTiming.recentLogWaitsLimit`; the previous batch's may end
    /// after it, as a drain appends its next batch while one commits): the share of a mailbox
    /// wait that was the log's, not the actor's. `actorOverhead` counts them up to `taken`.
    public var recentLogWaits: [Range<ContinuousClock.Instant>]

    /// Log waits an actor remembers: a message waits in the mailbox at most one batch unless
    /// the mailbox holds more than `maxDeliveryBatch` messages.
    public static let recentLogWaitsLimit = 8

    /// The time from `queued` (when the message entered the mailbox) to `handedOn`, less the
    /// log's share: the waits for the log while it queued, and the batch's own commit. What
    /// is left is the actor's own overhead: scheduling, earlier messages, its step.
    public func actorOverhead(queuedAt queued: ContinuousClock.Instant) -> Duration {
        var logWaits = self.commit.upperBound - self.commit.lowerBound
        for wait in self.recentLogWaits {
            let start = max(wait.lowerBound, queued)
            let end = min(wait.upperBound, self.taken)
            if start < end { logWaits += end - start }
        }
        return max(.zero, (self.handedOn - queued) - logWaits)
    }
}

/// One committed delivery, as the log holds it: the record's seq and clock reading, and the
/// envelope (see `NodeConfiguration.deliveryTap`).
public struct DeliveredRecord: Sendable {
    public var seq: UInt64
    public var clockMilliseconds: Int64
    public var envelope: Envelope

    public init(seq: UInt64, clockMilliseconds: Int64, envelope: Envelope) {
        self.seq = seq
        self.clockMilliseconds = clockMilliseconds
        self.envelope = envelope
    }
}

/// The runtime's clock in production: the wall clock, never going backwards (a clock step back
/// would make a later delivery look older). It is read outside the deterministic core, and what
/// it said is recorded with each delivery.
public final class WallClock: Sendable {
    /// The last reading, and how far this clock runs ahead of the wall clock.
    private let state = Mutex<(last: Int64, offset: Int64)>((0, 0))

    public init() {}

    public func now() -> Int64 {
        let wall = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        return self.state.withLock { state in
            state.last = max(state.last, wall + state.offset)
            return state.last
        }
    }

    /// Continues from a log whose records reach `milliseconds`: if the wall clock is behind
    /// (it was stepped back, or the log was recorded on another machine or by the simulator's
    /// virtual clock), this clock runs that far ahead of it, so time never goes backwards
    /// within a log and timers still wait their real durations.
    public func continueFrom(_ milliseconds: Int64) {
        let wall = Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
        self.state.withLock { state in
            if wall + state.offset < milliseconds { state.offset = milliseconds - wall }
        }
    }
}

// MARK: - The node

/// Drives the hierarchy's actors in production: one mailbox and one Swift actor per cell, many
/// cells at once, every delivery appended to the event log before it is handled (write-ahead).
///
/// An actor's deliveries are its records in the log, in log order: the mailbox decides the
/// order (priority, then FIFO), the log records it, and replay follows the log. A message that
/// is sent but not yet delivered lives only in memory; after a crash, recovery makes it again by
/// replaying the delivery that sent it (see `Recovery`).
public final class Node: Sendable {
    public let log: EventLog
    public let configuration: NodeConfiguration
    let clock = WallClock()
    let hosts: [Address: CellHost]
    public let addresses: [Address]
    let timers: TimerQueue
    /// Messages queued or being handled anywhere, plus waiting timers that are not cancelled.
    let outstanding = Atomic<Int>(0)
    let failure = Mutex<EventLogError?>(nil)
    let ids = Mutex<(UUIDv7Generator, SystemEntropy)>((UUIDv7Generator(), SystemEntropy()))
    let observer: (@Sendable (Address, Envelope, UInt64) -> Void)?
    /// `EventLog.addAnswerHook` tokens of the dedicated actors' executors, removed at deinit.
    let answerHookTokens: [UInt64]

    /// Tag of the id of a refusal the runtime sends for message X: `X.id.derived(tag:)`.
    public static let refusalTag: UInt64 = 0x7265_6675_7365_6400

    /// `cells` come from a `Recovery` (or fresh from the hierarchy for an empty log), and `owed`
    /// is what that recovery found owed: each sender keeps its owed messages among those it must
    /// carry in its snapshots until the log has them. `resume` then sends them.
    /// `observer` sees every delivery to a client address after its record is committed.
    public init(
        log: EventLog, cells: [any ActorCell], owed: [Envelope] = [], configuration: NodeConfiguration = NodeConfiguration(),
        observer: (@Sendable (Address, Envelope, UInt64) -> Void)? = nil
    ) {
        self.log = log
        self.configuration = configuration
        self.observer = observer
        self.addresses = cells.map(\.address)
        let box = HostTable()
        let clock = self.clock
        self.timers = TimerQueue(clock: { clock.now() }, fire: { envelope in box.node?.enqueue(envelope, from: nil) })
        var hosts: [Address: CellHost] = [:]
        for cell in cells {
            let sent = owed.filter { $0.sender == cell.address }
            hosts[cell.address] = CellHost(cell: CellHandOff(cell), sent: sent, configuration: configuration)
        }
        self.hosts = hosts
        self.answerHookTokens =
            configuration.writerResumesDedicatedActors
            ? self.addresses.compactMap { hosts[$0]?.drainExecutor }.map { log.addAnswerHook($0.answerHook) } : []
        box.node = self
        for host in hosts.values { host.attach(self) }
        self.timers.start()
    }

    deinit {
        self.timers.stop()
        for token in self.answerHookTokens { self.log.removeAnswerHook(token) }
    }

    /// Starts again what recovery found owed: messages sent but not delivered, timers not fired.
    /// Timers go first: an owed answer handled at once may cancel its task's timer, which must
    /// then already be armed.
    public func resume(_ pending: [Envelope]) {
        let now = self.clock.now()
        for envelope in pending where envelope.timestampMilliseconds > now { self.timers.schedule(envelope) }
        for envelope in pending where envelope.timestampMilliseconds <= now { self.enqueue(envelope, from: nil) }
    }

    /// A new id from the runtime's clock and the system's entropy (an input: it is recorded in
    /// the log with the message that carries it).
    public func newID() -> MessageID {
        let now = self.clock.now()
        return self.ids.withLock { state in state.0.next(milliseconds: now, entropy: &state.1) }
    }

    /// Submits a client's task to the orchestrator. Returns its task id (the correlation id).
    @discardableResult
    public func submit(
        _ request: TaskRequest, from client: Address, deliveryMode: DeliveryMode = .atLeastOnce, priority: Priority = .normal,
        ttlMilliseconds: Int32 = 600_000, maxRetries: Int32 = 3, id: MessageID? = nil
    ) -> MessageID {
        let id = id ?? self.newID()
        let envelope = Envelope(
            id: id, parentID: nil, correlationID: id, sender: client, recipient: .orchestrator, broadcast: false,
            timestampMilliseconds: self.clock.now(), ttlMilliseconds: ttlMilliseconds, priority: priority,
            context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1)),
            payload: .taskRequest(request), deliveryMode: deliveryMode, retryCount: 0, maxRetries: maxRetries)
        self.enqueue(envelope, from: nil)
        return id
    }

    /// Sends a health probe (a `heartbeat`) from `client` to the orchestrator, which asks every
    /// supervisor; their heartbeats update its state's `health`, and `client` gets its own.
    public func probeHealth(from client: Address) {
        let id = self.newID()
        self.send(Envelope(
            id: id, parentID: nil, correlationID: id, sender: client, recipient: .orchestrator, broadcast: false,
            timestampMilliseconds: self.clock.now(), ttlMilliseconds: 10_000, priority: .high,
            context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1)),
            payload: .heartbeat(Heartbeat(status: .ok)), deliveryMode: .atMostOnce, retryCount: 0, maxRetries: 0))
    }

    /// Sends an arbitrary envelope into the hierarchy (a cancel, a ping, an admin action).
    public func send(_ envelope: Envelope) {
        self.enqueue(envelope, from: nil)
    }

    /// Waits until nothing is queued, being handled, or waiting on a timer, or a storage failure
    /// stopped the node. Returns the failure, if any.
    @discardableResult
    /// Waits until nothing is queued, handled or armed. A cancelled wait returns at once with
    /// `waitCancelled` (a caller racing it against a time limit gets its answer).
    public func waitUntilIdle(pollMicroseconds: UInt64 = 500) async -> EventLogError? {
        while true {
            if let failure = self.failure.withLock({ $0 }) { return failure }
            if self.outstanding.load(ordering: .acquiring) <= 0 && self.timers.pendingCount == 0 { return nil }
            do {
                try await Task.sleep(nanoseconds: pollMicroseconds * 1_000)
            } catch {
                return EventLogError(.waitCancelled, "the wait for idle was cancelled")
            }
        }
    }

    /// Snapshots every actor that handled something since its last snapshot, then stops the
    /// timers. The log stays open (its owner closes it).
    public func shutdown() async {
        for address in self.addresses {
            await self.hosts[address]?.snapshotIfChanged()
        }
        self.timers.stop()
        try? await self.log.flush()
    }

    /// Every actor's address, last delivered seq and state digest, in address order.
    public func digests() async -> [ActorDigest] {
        var result: [ActorDigest] = []
        for address in self.addresses.sorted() {
            if let host = self.hosts[address] { result.append(await host.digest()) }
        }
        return result
    }

    public func describeState(of address: Address) async -> MCPValue? {
        await self.hosts[address]?.describe()
    }

    // MARK: Routing

    /// Puts `envelope` in its recipient's mailbox, or answers its sender when it cannot be taken.
    func enqueue(_ envelope: Envelope, from sender: CellHost?) {
        if envelope.recipient.isIO {
            self.performIO(envelope)
            return
        }
        guard let host = self.hosts[envelope.recipient] else {
            self.refuse(envelope, code: TaskErrorCode(rawValue: "unknown_recipient"), "no actor \(envelope.recipient) on this node")
            return
        }
        self.outstanding.add(1, ordering: .relaxed)
        if case .refused(let code, let message) = host.enqueue(envelope, capacity: self.configuration.mailboxCapacity) {
            self.outstanding.subtract(1, ordering: .relaxed)
            self.refuse(envelope, code: code, message)
        }
    }

    func route(_ envelope: Envelope, now: Int64) {
        if envelope.timestampMilliseconds > now {
            self.timers.schedule(envelope)
        } else {
            self.enqueue(envelope, from: nil)
        }
    }

    func route(_ delivery: Delivery, from owner: Address, clock: Int64) {
        // Cancels first: a delivery that forgets a task's timers may arm new ones for it.
        for correlation in delivery.cancelledTimers { self.timers.cancel(owner: owner, correlation: correlation) }
        for message in delivery.messages {
            if let tap = self.configuration.answerTap, message.recipient.isClient, message.deliveryMode != .atMostOnce,
                ClientMachine.outcome(message) != nil
            {
                tap(message)
            }
            self.route(message, now: clock)
        }
        for action in delivery.actions {
            switch action {
            case .restart(let child, let until): self.hosts[child]?.hold(until: until)
            case .stop(let child): self.hosts[child]?.setStopped(true)
            case .spawn(let child): self.hosts[child]?.setStopped(false)
            }
        }
    }

    /// The runtime answers for an actor that cannot take a message. The answer's id is derived
    /// from the refused message's id, so recovery can tell a refused message from a lost one.
    func refuse(_ envelope: Envelope, code: TaskErrorCode, _ message: String) {
        // Never answer an answer: a refused reply is dropped with nothing waiting on it, and an
        // answer to a sender that does not exist would bounce forever.
        guard self.hosts[envelope.sender] != nil,
            let answer = Self.refusal(of: envelope, code: code, message, timestampMilliseconds: self.clock.now())
        else { return }
        self.outstanding.add(1, ordering: .relaxed)
        _ = self.hosts[envelope.sender]!.enqueue(answer, capacity: .max)  // an answer: never refused
    }

    /// The answer the runtime sends for a refused message (nil for anything but new work: an
    /// answer is never answered). Its id is derived from the refused message's
    /// (`refusalTag`). Public for the simulator, which refuses as the node does.
    public static func refusal(of envelope: Envelope, code: TaskErrorCode, _ message: String, timestampMilliseconds: Int64) -> Envelope? {
        guard Self.isNewWork(envelope) else { return nil }
        let error = TaskError(code: code, message: message, retryable: code == .overloaded)
        return OutgoingMessage.reply(to: envelope, payload: .taskError(error)).envelope(
            id: envelope.id.derived(tag: Self.refusalTag), sender: envelope.recipient, timestampMilliseconds: timestampMilliseconds)
    }

    /// Requests and pings are new work, limited by mailbox capacity; answers, progress, streams
    /// and control are not.
    static func isNewWork(_ envelope: Envelope) -> Bool {
        switch envelope.payload {
        case .taskRequest, .resourceRequest, .ping: true
        default: false
        }
    }

    func fail(_ error: EventLogError) {
        self.failure.withLock { if $0 == nil { $0 = error } }
    }

    public var storageFailure: EventLogError? { self.failure.withLock { $0 } }

    func delivered(_ envelope: Envelope, seq: UInt64, to address: Address) {
        self.observer?(address, envelope, seq)
    }
}

extension EventLogError.Code {
    /// `Node.waitUntilIdle` was cancelled before the node came to rest.
    public static let waitCancelled = EventLogError.Code(rawValue: "wait_cancelled")
}

/// The system's random generator as the runtime's entropy source (outside the core only).
struct SystemEntropy: EntropySource {
    var generator = SystemRandomNumberGenerator()
    mutating func next64() -> UInt64 { self.generator.next() }
}

/// The digest of one actor's state: SHA-256 of its snapshot bytes.
public struct ActorDigest: Hashable, Sendable {
    public init(address: Address, lastSeq: UInt64, digest: String) {
        self.address = address
        self.lastSeq = lastSeq
        self.digest = digest
    }

    public var address: Address
    public var lastSeq: UInt64
    public var digest: String
}

/// Moves a cell into the one host that will own it. Unchecked because the region checker cannot
/// see that each element of the array goes to exactly one host and the array is then dropped.
struct CellHandOff: @unchecked Sendable {
    let cell: any ActorCell
    init(_ cell: any ActorCell) { self.cell = cell }
}

/// Lets the timer thread reach the node without the node existing yet at init.
final class HostTable: @unchecked Sendable {
    weak var node: Node?
}

extension Node {
    /// Recovers the hierarchy from `log` and starts a node on it. What recovery found owed is
    /// resumed at once, unless replay diverged from the log: then the node starts with nothing
    /// resumed and the report says where (the caller decides whether to go on).
    public static func recover(
        log: EventLog, hierarchy: Hierarchy, configuration: NodeConfiguration = NodeConfiguration(),
        observer: (@Sendable (Address, Envelope, UInt64) -> Void)? = nil, useSnapshots: Bool = true,
        handlers: Recovery.Handlers = .all, buggify: Buggify? = nil
    ) throws(EventLogError) -> (node: Node, report: Recovery.Report) {
        let (cells, report) = try Recovery(log: log, hierarchy: hierarchy, useSnapshots: useSnapshots, handlers: handlers, buggify: buggify).run()
        let owed = report.divergence == nil ? report.pending : []
        let node = Node(log: log, cells: cells, owed: owed, configuration: configuration, observer: observer)
        // Time goes on from the log's last reading, never back from it.
        if report.lastSeq > 0, let last = try log.record(report.lastSeq) { node.clock.continueFrom(last.header.clockMilliseconds) }
        if report.divergence == nil { node.resume(report.pending) }
        return (node, report)
    }
}

/// What the clients of a node have been answered, and what the orchestrator still holds.
public struct TaskTotals: Hashable, Sendable {
    public var completed = 0
    public var failed = 0
    /// Tasks the orchestrator routed and has not answered yet.
    public var pending = 0
}

extension Node {
    public func taskTotals() async -> TaskTotals {
        var totals = TaskTotals()
        for address in self.addresses where address.isClient {
            let state = await self.describeState(of: address)
            if case .int(let completed)? = state?["completed"] { totals.completed += Int(completed) }
            if case .int(let failed)? = state?["failed"] { totals.failed += Int(failed) }
        }
        if case .array(let pending)? = await self.describeState(of: .orchestrator)?["pending"] { totals.pending = pending.count }
        return totals
    }

    /// Messages waiting in each actor's mailbox right now, in address order (the server's
    /// `mcp_queue_depth` gauge). A reading, not a decision: nothing may depend on it.
    public func queueDepths() -> [(address: Address, messages: Int)] {
        self.addresses.sorted().map { address in (address, self.hosts[address]?.inbox.withLock { $0.mailbox.count } ?? 0) }
    }
}
