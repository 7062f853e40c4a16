import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaRuntime
import Crypto
import Synchronization

/// One actor of the hierarchy in production: a Swift actor that owns the cell (its state
/// machine and state), fed by a mailbox that any thread may push to.
///
/// The mailbox sits behind a mutex rather than in the actor so that a sender never waits for the
/// recipient: a push is a lock and an append, and it starts a drain task only when the actor
/// was idle. The drain takes a batch in priority order, appends it to the log in one group
/// commit, and only then hands each message to the cell (write-ahead).
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
            guard !inbox.scheduled, !inbox.stopped else { return false }
            inbox.scheduled = true
            return true
        }
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
        let start: Bool = self.inbox.withLock { inbox in
            inbox.stopped = stopped
            if stopped {
                dropped = inbox.mailbox.removeAll { _ in true }
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

    func drain() async {
        guard let node = self.node else { return }
        while true {
            let now = node.clock.now()
            let maxBatch = self.configuration.maxDeliveryBatch
            var heldUntil: Int64?
            let batch: [Envelope] = self.inbox.withLock { inbox in
                if inbox.stopped || node.storageFailure != nil {
                    inbox.scheduled = false
                    return []
                }
                if inbox.heldUntil > now {
                    heldUntil = inbox.heldUntil  // stays scheduled: the wake-up drains
                    return []
                }
                var batch: [Envelope] = []
                batch.reserveCapacity(min(maxBatch, inbox.mailbox.count))
                while batch.count < maxBatch, let (item, _) = inbox.mailbox.pop() { batch.append(item) }
                if batch.isEmpty {
                    inbox.scheduled = false
                    if inbox.draining { inbox.stopped = true }  // drained: now it stops
                }
                return batch
            }
            if let heldUntil {
                node.timers.wake(at: heldUntil) { self.startDrain() }
                return
            }
            if batch.isEmpty { return }
            await self.deliver(batch, node, taken: self.stepTap == nil ? nil : ContinuousClock.now)
        }
    }

    /// `taken`: when the batch left the mailbox, read only when there is a step tap.
    func deliver(_ batch: [Envelope], _ node: Node, taken: ContinuousClock.Instant? = nil) async {
        let clock = node.clock.now()
        let entropy = UInt64.random(in: .min ... .max)
        let stepTap = taken == nil ? nil : self.stepTap
        let results: [Result<UInt64, EventLogError>]
        var commit: Range<ContinuousClock.Instant>?
        if stepTap != nil {
            let started = ContinuousClock.now
            let answered: ContinuousClock.Instant
            (results, answered) = await node.log.appendTimed(contentsOf: batch, clockMilliseconds: clock, entropy: entropy)
            commit = started..<max(started, answered)
        } else {
            results = await node.log.append(contentsOf: batch, clockMilliseconds: clock, entropy: entropy)
        }
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
        if self.cell.snapshotDue(
            everyDeliveries: self.configuration.snapshotEveryDeliveries, bytesPerDelivery: self.configuration.snapshotBytesPerDelivery)
        {
            self.snapshotInBackground(node)
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
    static let magic = "cartrita.node-snapshot"
    static let version: Int64 = 1

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
