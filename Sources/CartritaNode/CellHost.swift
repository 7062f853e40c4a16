import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Crypto
import Foundation
import Synchronization

/// One actor of the hierarchy in production: a Swift actor that owns the cell (its state
/// machine and state), fed by a mailbox that any thread may push to.
///
/// The mailbox sits behind a mutex rather than in the actor so that a sender never waits for the
/// recipient: a push is a lock and an append, and it starts a drain task only when the actor
/// was idle. The drain takes a batch in priority order, appends it to the log in one group
/// commit, and only then hands each message to the cell (write-ahead). While a batch commits,
/// the drain may take and append the next (`maxBatchesInFlight`); batches are handled in the
/// order they were appended, so the log's order is the delivery order.
actor CellHost {
    struct Inbox {
        var mailbox: Mailbox<Envelope>
        /// A drain task is running or about to (it will look again before it ends).
        var scheduled = false
        /// Stopped by its supervisor (escalation): messages wait, nothing is delivered.
        var stopped = false
        /// A restart's backoff: nothing is delivered before this clock reading.
        var heldUntil: Int64 = 0
        /// A `shutdown` with drain was delivered: new work is refused, queued work finishes,
        /// then the actor stops.
        var draining = false
        /// The drain waits for its oldest batch's commit with room for another batch: a push
        /// wakes it (`wake`) so that what arrives joins the writer's queue at once.
        var wantsMail = false
    }

    enum Enqueued {
        case queued, refused(TaskErrorCode, String)
    }

    nonisolated let address: Address
    /// Whether deliveries here go to the node's observer (answers to a client).
    nonisolated let isClient: Bool
    /// The drain's task priority (the orchestrator's drains run above the rest by default: see
    /// `NodeConfiguration.drainPriority`).
    nonisolated let drainPriority: TaskPriority
    /// The drains' own thread, when `NodeConfiguration.dedicatedThreadActors` names this actor.
    nonisolated let drainExecutor: DedicatedThreadExecutor?
    /// `NodeConfiguration.stepTap` if it sees this actor, else nil.
    let stepTap: (@Sendable (StepTiming) -> Void)?
    nonisolated let inbox: Mutex<Inbox>
    let configuration: NodeConfiguration
    var cell: any ActorCell
    // Set once by the node right after init, before any message can arrive.
    nonisolated(unsafe) weak var node: Node?
    /// Messages this actor sent that may not be in the log yet (see `SentMessages`).
    var sent: SentMessages
    /// This actor's latest waits for the log, for `StepTiming` (kept only with a step tap).
    var recentLogWaits: [Range<ContinuousClock.Instant>] = []
    /// Where the drain waits for an answer or mail (`waitForAnswerOrMail`).
    nonisolated let wake = DrainWake()
    /// A snapshot is due and waits for the batches in flight to be delivered (see `deliver`).
    var snapshotWaitsForDeliveries = false

    init(cell handOff: CellHandOff, sent: [Envelope], configuration: NodeConfiguration) {
        self.address = handOff.cell.address
        self.isClient = handOff.cell.address.isClient
        self.drainPriority = configuration.drainPriority(handOff.cell.address)
        self.drainExecutor =
            configuration.dedicatedThreadActors.contains(handOff.cell.address)
            ? DedicatedThreadExecutor(name: "cartrita-\(handOff.cell.address.rawValue)".prefix(15).description, niceValue: configuration.dedicatedThreadNice)
            : nil
        let tapped = configuration.stepTapActors?.contains(handOff.cell.address) ?? true
        self.stepTap = tapped ? configuration.stepTap : nil
        self.cell = handOff.cell
        self.configuration = configuration
        self.sent = SentMessages(sent)
        // The capacity is enforced by `enqueue` (new work only); the mailbox itself never refuses.
        self.inbox = Mutex(Inbox(mailbox: Mailbox(capacity: Int.max)))
    }

    nonisolated func attach(_ node: Node) {
        self.node = node
    }

    /// Takes `envelope` unless it is new work and `capacity` messages already wait. A cancel
    /// first removes the queued work of its task: the cancel reaches this tier even when the
    /// work has not started.
    nonisolated func enqueue(_ envelope: Envelope, capacity: Int) -> Enqueued {
        var purged = 0
        var refusal: Enqueued?
        var wakeDrain = false
        let start: Bool = self.inbox.withLock { inbox in
            if case .taskError(let error) = envelope.payload, error.code == .cancelled, !envelope.sender.isAgent {
                purged = inbox.mailbox.removeAll {
                    $0.correlationID == envelope.correlationID && Node.isNewWork($0)
                }.count
            }
            if Node.isNewWork(envelope) {
                if inbox.draining || inbox.stopped {
                    refusal = .refused(.shuttingDown, "\(self.address) is shutting down")
                    return false
                }
                if inbox.mailbox.count >= capacity {
                    refusal = .refused(.overloaded, "the mailbox of \(self.address) is full")
                    return false
                }
            }
            inbox.mailbox.push(envelope, priority: envelope.priority, overCapacity: true)
            if inbox.wantsMail {
                inbox.wantsMail = false
                wakeDrain = true
            }
            guard !inbox.scheduled, !inbox.stopped else { return false }
            inbox.scheduled = true
            return true
        }
        if wakeDrain { self.wake.signal() }
        if purged > 0 { self.node?.outstanding.subtract(purged, ordering: .relaxed) }
        if let refusal { return refusal }
        if start { self.startDrain() }
        return .queued
    }

    /// A delivered `shutdown`: stop now, or refuse new work and stop once the queue is empty.
    func shutDown(_ shutdown: Shutdown, clock: Int64) {
        if shutdown.drain {
            self.inbox.withLock { $0.draining = true }
        } else {
            self.setStopped(true)
        }
        if let deadline = shutdown.deadlineMilliseconds, let node = self.node {
            node.timers.wake(at: clock + max(0, deadline)) { [self] in self.setStopped(true) }
        }
    }

    nonisolated func hold(until milliseconds: Int64) {
        self.inbox.withLock { $0.heldUntil = max($0.heldUntil, milliseconds) }
    }

    /// Stops the actor (its supervisor gave up, or a shutdown's time is up) or starts it again.
    /// A stopped actor's queued work is refused `shutting_down` (its sender may be waiting; a
    /// supervisor that escalated has already answered its tasks and ignores these), and the
    /// rest of its queue is dropped: nothing stays counted as outstanding forever. What was
    /// dropped was never logged, so after a process restart recovery sends it again.
    nonisolated func setStopped(_ stopped: Bool) {
        var dropped: [Envelope] = []
        var wakeDrain = false
        let start: Bool = self.inbox.withLock { inbox in
            inbox.stopped = stopped
            if stopped {
                dropped = inbox.mailbox.removeAll { _ in true }
                wakeDrain = inbox.wantsMail
                inbox.wantsMail = false
                return false
            }
            guard !inbox.scheduled, !inbox.mailbox.isEmpty else { return false }
            inbox.scheduled = true
            return true
        }
        if let node = self.node, !dropped.isEmpty {
            for envelope in dropped where Node.isNewWork(envelope) {
                node.refuse(envelope, code: .shuttingDown, "\(self.address) is stopped")
            }
            node.outstanding.subtract(dropped.count, ordering: .releasing)
        }
        if wakeDrain { self.wake.signal() }
        if start { self.startDrain() }
    }

    // MARK: Draining


    nonisolated func startDrain() {
        if let drainExecutor {
            Task(executorPreference: drainExecutor, priority: self.drainPriority) { await self.drain() }
        } else {
            Task(priority: self.drainPriority) { await self.drain() }
        }
    }

    /// A batch appended and not delivered yet.
    struct InFlight {
        var batch: [Envelope]
        var append: PendingAppend
        var clock: Int64
        var entropy: UInt64
        /// When the batch left the mailbox and was appended, read only with a step tap.
        var taken: ContinuousClock.Instant?
    }

    /// Batches a drain keeps appended ahead of its deliveries: while the oldest is committed,
    /// the next is already in the writer's queue. With one, an actor waiting for its commit
    /// left what arrived meanwhile in its mailbox until the commit came back and the batch was
    /// handled; sampled at 1024 tasks in flight, a third of the messages in flight sat there
    /// (322 in 3.8 mailboxes, 7 of 11 actors waiting for the log). Delivery order is still the
    /// log's order: batches are delivered oldest first, each in its own order.
    static let maxBatchesInFlight = 2

    func drain() async {
        guard let node = self.node else { return }
        var inFlight: [InFlight] = []
        inFlight.reserveCapacity(Self.maxBatchesInFlight)
        while true {
            // 1. Room for another batch: take one from the mailbox and append it (not while a
            //    snapshot waits for the batches in flight to be delivered).
            var mayTake = inFlight.count < Self.maxBatchesInFlight && !self.snapshotWaitsForDeliveries
            if mayTake {
                switch self.takeBatch(node, ending: inFlight.isEmpty) {
                case .batch(let batch):
                    inFlight.append(self.append(batch, node))
                    continue  // more may wait
                case .end:
                    return
                case .held(let until):
                    if inFlight.isEmpty {
                        node.timers.wake(at: until) { self.startDrain() }
                        return
                    }
                    mayTake = false  // held, stopped or failed: mail would not be taken now
                case .empty:
                    break
                }
            }
            // 2. The oldest batch is committed: deliver it.
            if let oldest = inFlight.first, oldest.append.isAnswered {
                inFlight.removeFirst()
                await self.deliver(oldest, node, othersInFlight: !inFlight.isEmpty)
                continue
            }
            // 3. Wait for the oldest batch's answer or, with room for another, for mail.
            guard let oldest = inFlight.first else { continue }
            await self.waitForAnswerOrMail(oldest.append, wantsMail: mayTake)
        }
    }

    enum Taken {
        case batch([Envelope])
        /// Nothing to take now, batches in flight: the drain goes on.
        case empty
        /// A restart's backoff holds the mailbox until this clock reading; or (`.max`) the actor
        /// is stopped or the node failed while batches are in flight (they are delivered first).
        case held(Int64)
        /// Nothing to take and nothing in flight: the drain has ended (`scheduled` is off).
        case end
    }

    /// A batch in priority order from the mailbox. `ending`: nothing is in flight, so with
    /// nothing to take the drain ends, in the same critical section that finds the mailbox
    /// empty (a push after it starts a new drain).
    private func takeBatch(_ node: Node, ending: Bool) -> Taken {
        let now = node.clock.now()
        let maxBatch = self.configuration.maxDeliveryBatch
        return self.inbox.withLock { inbox -> Taken in
            inbox.wantsMail = false
            if inbox.stopped || node.storageFailure != nil {
                guard ending else { return .held(.max) }  // what is in flight is logged: delivered first
                inbox.scheduled = false
                return .end
            }
            if inbox.heldUntil > now {
                return .held(inbox.heldUntil)  // stays scheduled: the wake-up drains
            }
            var batch: [Envelope] = []
            batch.reserveCapacity(min(maxBatch, inbox.mailbox.count))
            while batch.count < maxBatch, let (item, _) = inbox.mailbox.pop() { batch.append(item) }
            if !batch.isEmpty { return .batch(batch) }
            guard ending else { return .empty }
            inbox.scheduled = false
            if inbox.draining { inbox.stopped = true }  // drained: now it stops
            return .end
        }
    }

    /// Appends `batch` to the log (write-ahead) without waiting for the commit.
    private func append(_ batch: [Envelope], _ node: Node) -> InFlight {
        let taken: ContinuousClock.Instant? = self.stepTap == nil ? nil : .now
        let clock = node.clock.now()
        let entropy = UInt64.random(in: .min ... .max)
        let append = node.log.submit(contentsOf: batch, clockMilliseconds: clock, entropy: entropy, timed: taken != nil)
        // The answer wakes the drain if it waits (a signal before it parks is kept).
        let wake = self.wake
        append.whenAnswered { wake.signal() }
        return InFlight(batch: batch, append: append, clock: clock, entropy: entropy, taken: taken)
    }

    /// Suspends until a batch in flight is answered (each signals `wake`) or, with
    /// `wantsMail`, a message arrives. It may return for a batch other than the oldest, or for a
    /// signal left from before: the drain looks again and waits again.
    private func waitForAnswerOrMail(_ append: PendingAppend, wantsMail: Bool) async {
        if append.isAnswered { return }
        if wantsMail {
            let arrived = self.inbox.withLock { inbox -> Bool in
                if !inbox.mailbox.isEmpty { return true }
                inbox.wantsMail = true
                return false
            }
            if arrived { return }
        }
        let wake = self.wake
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in wake.park(continuation) }
    }

    /// Delivers a committed batch: each message whose append succeeded goes to the cell.
    func deliver(_ inFlight: InFlight, _ node: Node, othersInFlight: Bool) async {
        let batch = inFlight.batch
        let clock = inFlight.clock
        let entropy = inFlight.entropy
        let stepTap = inFlight.taken == nil ? nil : self.stepTap
        let taken = inFlight.taken
        let (results, answered) = inFlight.append.answers()
        var commit: Range<ContinuousClock.Instant>?
        if let taken { commit = taken..<max(taken, answered ?? .now) }
        var handled = 0
        var retry: [Envelope] = []
        for (index, envelope) in batch.enumerated() {
            switch results[index] {
            case .success(let seq):
                // The log holds it: now it may be delivered. Tapped first, so a tap sees a
                // message before any message its handling causes.
                if let tap = self.configuration.deliveryTap { tap(DeliveredRecord(seq: seq, clockMilliseconds: clock, envelope: envelope)) }
                let context = DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: entropy &+ UInt64(index))
                let delivery = self.cell.deliver(envelope, context)
                if case .shutdown(let shutdown) = envelope.payload { self.shutDown(shutdown, clock: clock) }
                self.sent.record(delivery, clock: clock)
                node.route(delivery, from: self.address, clock: clock)
                if self.isClient { node.delivered(envelope, seq: seq, to: self.address) }
                if let stepTap, let taken, let commit {
                    stepTap(StepTiming(
                        actor: self.address, envelope: envelope, taken: taken, commit: commit, handedOn: .now,
                        recentLogWaits: self.recentLogWaits))
                }
                handled += 1
            case .failure(let error) where error.code == .duplicateID:
                handled += 1  // delivered before under this id: the exactly_once dedupe
            case .failure(let error) where error.code == .invalidEnvelope || error.code == .codec:
                // A message that breaks the envelope rules never reaches its actor; its sender
                // hears why (a handler produced it: that is a bug to see, not to hide).
                node.refuse(envelope, code: .invalidEnvelope, "\(error)")
                handled += 1
            case .failure(let error) where error.code == .overloaded:
                retry.append(envelope)  // the writer's queue is full: try again shortly
            case .failure(let error):
                // Storage failed (disk full, log full, I/O): keep the message, stop delivering.
                node.fail(error)
                retry.append(envelope)
            }
        }
        if !retry.isEmpty {
            self.inbox.withLock { inbox in
                for envelope in retry { inbox.mailbox.push(envelope, priority: envelope.priority, overCapacity: true) }
            }
            if node.storageFailure == nil { try? await Task.sleep(nanoseconds: 200_000) }
        }
        // Queued before the batch counts as handled: once the node is idle, its snapshots are
        // in the writer's queue (a reader that must see them waits for the writer, `flush`).
        // A snapshot is taken with nothing of this actor's logged and undelivered: what it
        // records as sent and not yet logged (`SentMessages.owed`) assumes that every record
        // addressed here after the snapshot's seq was appended after it. With a batch still in
        // flight it waits (no new batch is taken) until that batch is delivered.
        if self.snapshotWaitsForDeliveries
            || self.cell.snapshotDue(
                everyDeliveries: self.configuration.snapshotEveryDeliveries, bytesPerDelivery: self.configuration.snapshotBytesPerDelivery)
        {
            if othersInFlight {
                self.snapshotWaitsForDeliveries = true
            } else {
                self.snapshotWaitsForDeliveries = false
                self.snapshotInBackground(node)
            }
        }
        node.outstanding.subtract(handled, ordering: .releasing)
        if let commit { self.noteLogWait(commit) }
    }

    func noteLogWait(_ wait: Range<ContinuousClock.Instant>) {
        if self.recentLogWaits.count >= StepTiming.recentLogWaitsLimit { self.recentLogWaits.removeFirst() }
        self.recentLogWaits.append(wait)
    }

    // MARK: Snapshots

    func snapshotIfChanged() async {
        guard let node = self.node, self.cell.deliveriesSinceSnapshot > 0 else { return }
        await self.snapshot(node)
    }

    /// Takes a snapshot and waits until the log holds it (shutdown).
    func snapshot(_ node: Node) async {
        guard let snapshot = self.takeSnapshot(node) else { return }
        do {
            try await node.log.saveSnapshot(snapshot)
            self.cell.markSnapshotted(bytes: snapshot.state.count)
        } catch {
            node.fail(error)
        }
    }

    /// Takes a snapshot and goes on delivering while the writer stores it with its next group
    /// commit. Waiting held the actor's mailbox for a whole commit every `snapshotEveryDeliveries`
    /// (the orchestrator: about 45 times a second at 1024 tasks in flight). Nothing depends on
    /// the snapshot being stored: a crash before it is falls back to the previous one, and the
    /// messages it records as owed were taken from `sent` either way. A failure to store it is
    /// a storage failure of the node, as before.
    func snapshotInBackground(_ node: Node) {
        guard let snapshot = self.takeSnapshot(node) else { return }
        self.cell.markSnapshotted(bytes: snapshot.state.count)
        do {
            try node.log.saveSnapshot(snapshot) { result in
                // A log closed meanwhile (the node stopping) keeps the previous snapshot: no failure.
                if case .failure(let error) = result, error.code != .closed { node.fail(error) }
            }
        } catch where error.code != .closed {
            node.fail(error)
        } catch {}
    }

    /// The actor's state now, with the messages it sent that the log does not hold yet.
    private func takeSnapshot(_ node: Node) -> Snapshot? {
        let seq = self.cell.lastSeq
        let owed: [Envelope]
        do {
            owed = try self.sent.owed(atSnapshot: seq) { (ids) throws(EventLogError) in try node.log.seqs(ofMessages: ids) }
        } catch {
            node.fail(error)
            return nil
        }
        let bytes = NodeSnapshot(state: self.cell.snapshotBytes(), owed: owed).encode()
        return Snapshot(actor: self.address.rawValue, seq: seq, formatVersion: self.cell.stateFormatVersion, state: bytes)
    }

    func digest() -> ActorDigest {
        ActorDigest(address: self.address, lastSeq: self.cell.lastSeq, digest: NodeSnapshot.digest(self.cell.snapshotBytes()))
    }

    func describe() -> MCPValue { self.cell.describeState() }
}

// MARK: - The node's snapshot wrapper

/// What the node stores as an actor's snapshot: the machine's state bytes (in the machine's own
/// format, whose version the store records) and the messages the actor had sent that the log
/// did not hold yet at the snapshot's seq.
public struct NodeSnapshot: Sendable {
    /// The wrapper's format name and version (the simulator's `SnapshotEncoder` writes them too).
    public static let magic = "cartrita.node-snapshot"
    public static let version: Int64 = 1

    public var state: [UInt8]
    public var owed: [Envelope]

    public init(state: [UInt8], owed: [Envelope]) {
        self.state = state
        self.owed = owed
    }

    public func encode() -> [UInt8] {
        let encoder = EnvelopeEncoder()
        let owed: [MCPValue] = self.owed.compactMap { envelope in (try? encoder.encode(envelope)).map(MCPValue.binary) }
        let writer = MsgPackWriter(initialCapacityBytes: self.state.count + 64)
        writer.write(.map([
            MCPValue.MapEntry("format", .string(Self.magic)), MCPValue.MapEntry("v", .int(Self.version)),
            MCPValue.MapEntry("state", .binary(self.state)), MCPValue.MapEntry("owed", .array(owed)),
        ]))
        return writer.withBytes { [UInt8]($0) }
    }

    /// A stateful agent's state can be large (TaskManagement: up to 100,000 tasks), far past an
    /// envelope's 1 MiB: the wrapper is read with limits of its own. Owed messages are bounded by
    /// the actor's batches between snapshots.
    static let limits = CodecLimits(
        maxEnvelopeBytes: 1 << 30, maxStringBytes: 1 << 20, maxBinaryBytes: 1 << 30, maxContainerEntries: 1 << 22)

    public static func decode(_ bytes: [UInt8]) -> NodeSnapshot? {
        guard let value = try? EnvelopeDecoder(limits: Self.limits).decodeValue(bytes), value["format"] == .string(Self.magic),
            value["v"] == .int(Self.version), case .binary(let state)? = value["state"], case .array(let list)? = value["owed"]
        else { return nil }
        let decoder = EnvelopeDecoder()
        var owed: [Envelope] = []
        for item in list {
            guard case .binary(let encoded) = item, let envelope = try? decoder.decode(encoded) else { return nil }
            owed.append(envelope)
        }
        return NodeSnapshot(state: state, owed: owed)
    }

    static func digest(_ bytes: [UInt8]) -> String {
        Hex.encode(Array(SHA256.hash(data: bytes)))
    }
}

/// One parked drain and whether it was signalled: an answer and a push may both signal, before
/// or after the drain parks, and it resumes exactly once (a signal before it parks is kept).
final class DrainWake: @unchecked Sendable {
    // Unchecked: both fields are guarded by `lock`.
    private let lock = NSLock()
    private var waiter: UnsafeContinuation<Void, Never>?
    private var signalled = false

    /// Parks `continuation`, or resumes it at once if a signal came first.
    func park(_ continuation: UnsafeContinuation<Void, Never>) {
        self.lock.lock()
        if self.signalled {
            self.signalled = false
            self.lock.unlock()
            continuation.resume()
            return
        }
        self.waiter = continuation
        self.lock.unlock()
    }

    func signal() {
        self.lock.lock()
        guard let waiter = self.waiter else {
            self.signalled = true
            self.lock.unlock()
            return
        }
        self.waiter = nil
        self.lock.unlock()
        waiter.resume()
    }
}
