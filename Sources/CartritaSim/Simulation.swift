import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import Crypto

// MARK: - A deterministic simulation of the hierarchy

/// Runs the real actors of the runtime (the cells a `Hierarchy` makes: the same code as
/// production) under one driver: a seeded PRNG that is the only source of entropy, a virtual
/// clock, and a total order of deliveries chosen by the seed, one handler at a time. The same
/// seed gives the same run, bit for bit: the `digest` over the ordered trace says so.
///
/// The model follows production: a message sent by a handler reaches its recipient's mailbox
/// after a delay the seed picks (timers at their due time); the scheduler picks, by the seed, one
/// actor among those with mail and delivers the head of its mailbox (priority order, FIFO within
/// one); the delivery is appended to the log with the virtual clock reading and fresh entropy
/// before the handler runs.
public final class Simulation {
    /// The faults a run can inject, each derived from the seed (see `Configuration.faults`).
    public enum Fault: String, CaseIterable, Sendable {
        /// The whole process dies and recovers from the log and snapshots.
        case crash
        /// A message takes 10 to 200 ms longer (5% of messages): reorders too.
        case delay
        /// A message arrives twice (2%): the log's id index refuses the second.
        case duplicate
        /// An at_most_once message is lost (5% of them): the only mode that allows it.
        case drop
        /// An agent crashes on a request (2%), chosen by the delivery's recorded entropy, so
        /// replay crashes the same ones; its supervisor restarts it and retries per the mode.
        case agentCrash = "agent_crash"
        /// The clock jumps ahead (0.5% of deliveries, up to 5 s; 0.05% up to 40 s, past the
        /// supervisors' timeouts), and each actor's clock is skewed by −20 to +50 ms.
        case clock
        /// The log fails a commit (1% of appends: a write error), fills up for a while (0.2%:
        /// the next 5 to 50 appends fail, as MAP_FULL at the cap would), or commits slowly (2%:
        /// 1 to 20 ms). A failed append delivers nothing; the message waits in its mailbox.
        case storage
    }

    public struct Configuration: Sendable {
        public var seed: UInt64
        /// Tasks the client submits, spread over the first `submitWindowMilliseconds`.
        public var tasks = 200
        public var submitWindowMilliseconds: Int64 = 200
        /// Largest network delay between a send and the arrival in the mailbox.
        public var maxDelayMilliseconds: Int64 = 3
        /// Stop after this many deliveries even if work is left (the oracles then say so).
        public var maxDeliveries = 1_000_000
        /// Each actor snapshots after this many deliveries (small, so crashes meet snapshots).
        public var snapshotEveryDeliveries = 50
        /// Whole-process crashes, each at a delivery count the seed picks, each followed by
        /// recovery from the log and snapshots with the production recovery code.
        public var crashes = 0
        /// Which faults are on (`crash` also needs `crashes` > 0).
        public var faults: Set<Fault> = []
        /// The safety phase: faults are injected during the first this-many deliveries (nil:
        /// half of what the tasks need), then the liveness phase runs with the network, clock,
        /// storage and crash faults off. (Injected agent crashes are part of the agents: they go
        /// on, and the supervisors' retries must still finish every task.)
        public var safetyDeliveries: Int?
        /// Liveness: once the faults stop, every task is answered within this much virtual time.
        public var livenessBoundMilliseconds: Int64 = 300_000

        public init(seed: UInt64) {
            self.seed = seed
        }
    }

    public let configuration: Configuration
    let hierarchy: Hierarchy
    let workload: Workload
    var cells: [any ActorCell]
    var index: [Address: Int] = [:]
    var mailboxes: [Mailbox<Envelope>]
    var random: SplitMix64
    /// The virtual clock, in Unix milliseconds.
    var now: Int64
    var arrivals = ArrivalQueue()
    let log = MemoryLog()
    var trace = SHA256()
    let encoder = EnvelopeEncoder()
    var client: Address

    /// Messages each actor sent that the log does not hold yet (by cell position): its
    /// snapshots carry them, as production's do.
    var sent: [SentMessages]
    var crashPoints: [Int] = []
    var plannedCrashes: [Int] = []
    public private(set) var crashCount = 0
    public private(set) var recoveryCount = 0
    var recoveryProblems: [String] = []

    // What the oracles watch.
    var planned: [(envelope: Envelope, at: Int64)] = []
    var submitted: [MessageID] = []
    var answers: [MessageID: Int] = [:]
    var submittedModes: [MessageID: DeliveryMode] = [:]

    /// The run's start on the virtual clock: fixed, so runs compare across machines and days.
    public static let epochMilliseconds: Int64 = 1_800_000_000_000

    /// Per-actor clock skew (the `clock` fault), by cell position.
    var skew: [Int64]
    /// Appends still to fail in a log-full episode (the `storage` fault).
    var logFullFor = 0
    /// The faults in force now: the configured ones in the safety phase, none after.
    var activeFaults: Set<Fault> = []
    var safetyEndedAt: Int64?
    var lastAnswerAt: Int64 = 0
    /// Injected faults by kind, in `Fault.allCases` order when reported.
    var faultCounts: [Fault: Int] = [:]

    /// The standard mix plus at_most_once tasks, which only the `drop` fault may lose.
    public static let workload = try! Workload(entries: Workload.standard.entries + [
        Workload.Entry(taskType: "text.keywords", deliveryMode: .atMostOnce, weight: 1),
        Workload.Entry(taskType: "data.csv-stats", deliveryMode: .atMostOnce, weight: 1),
    ])

    /// The standard hierarchy; with the `agent_crash` fault its agents crash on 2% of requests.
    public static func hierarchy(for configuration: Configuration) -> Hierarchy {
        var options = Hierarchy.Options()
        if configuration.faults.contains(.agentCrash) { options.agentCrashesPerMillion = 20_000 }
        return .standard(options)
    }

    public init(_ configuration: Configuration, hierarchy: Hierarchy? = nil, workload: Workload = Simulation.workload) {
        self.configuration = configuration
        self.hierarchy = hierarchy ?? Self.hierarchy(for: configuration)
        self.workload = workload
        self.cells = self.hierarchy.makeCells()
        self.mailboxes = self.cells.map { _ in Mailbox(capacity: Int.max) }
        self.sent = self.cells.map { _ in SentMessages() }
        self.random = SplitMix64(seed: configuration.seed)
        self.skew = self.cells.map { _ in 0 }
        if configuration.faults.contains(.clock) {
            for position in self.skew.indices { self.skew[position] = Int64(self.random.next64() % 71) - 20 }
        }
        self.now = Self.epochMilliseconds
        self.client = Hierarchy.runClient
        for (position, cell) in self.cells.enumerated() { self.index[cell.address] = position }
        if let first = self.cells.first(where: { $0.address.isClient }) { self.client = first.address }
    }

    // MARK: Running

    public func run() -> SimulationReport {
        self.plan()
        var deliveries = 0
        var attempts = 0
        self.activeFaults = self.configuration.faults
        let safety = self.configuration.safetyDeliveries ?? self.configuration.tasks * 3
        while deliveries < self.configuration.maxDeliveries {
            if self.safetyEndedAt == nil && deliveries >= safety {
                self.activeFaults = []
                self.logFullFor = 0
                self.safetyEndedAt = self.now
            }
            if let next = self.crashPoints.first, deliveries >= next {
                self.crashPoints.removeFirst()
                self.crashAndRecover()
            }
            self.admitArrivals()
            guard let position = self.pickActor() else {
                // Nothing to deliver now: the clock jumps to the next arrival, or the run is over.
                guard let next = self.arrivals.nextTime else { break }
                self.now = max(self.now, next)
                continue
            }
            attempts += 1
            if self.deliverHead(of: position) { deliveries += 1 }
            guard attempts < self.configuration.maxDeliveries * 2 else { break }  // failed commits count too
            // Time passes while handlers run: sometimes a millisecond, as the seed says.
            if self.random.next64() % 4 == 0 { self.now += 1 }
            if self.activeFaults.contains(.clock) {
                let roll = self.random.next64() % 10_000
                if roll < 5 {
                    self.now += 1 + Int64(self.random.next64() % 40_000)
                    self.count(.clock)
                } else if roll < 55 {
                    self.now += 1 + Int64(self.random.next64() % 5_000)
                    self.count(.clock)
                }
            }
        }
        return self.report(deliveries: deliveries)
    }

    /// The client's submissions: which task, when, in which mode, all drawn from the seed.
    func plan() {
        let window = max(1, self.configuration.submitWindowMilliseconds)
        for position in 0..<self.configuration.tasks {
            let (request, mode) = self.workload.task(seed: self.configuration.seed, index: position)
            let at = Self.epochMilliseconds + Int64(self.random.next64() % UInt64(window))
            var ids = UUIDv7Generator()
            let id = ids.next(milliseconds: at, entropy: &self.random)
            let envelope = Envelope(
                id: id, parentID: nil, correlationID: id, sender: self.client, recipient: .orchestrator, broadcast: false,
                timestampMilliseconds: at, ttlMilliseconds: 600_000, priority: .normal,
                context: MessageContext(traceID: TraceID(high: id.high, low: id.low), spanID: SpanID(id.low | 1)),
                payload: .taskRequest(request), deliveryMode: mode, retryCount: 0, maxRetries: 3)
            self.submitted.append(id)
            self.submittedModes[id] = mode
            self.planned.append((envelope, at))
            self.arrivals.push(envelope, at: at)
        }
        // Crash points: spread over the deliveries the tasks need (six each).
        let expected = UInt64(max(1, self.configuration.safetyDeliveries ?? self.configuration.tasks * 3))
        let crashes = self.configuration.faults.contains(.crash) ? self.configuration.crashes : 0
        self.crashPoints = (0..<crashes).map { _ in Int(1 + self.random.next64() % expected) }.sorted()
        self.plannedCrashes = self.crashPoints
    }


    // MARK: Crashes

    /// The whole process dies: mailboxes, messages on their way, timers and the actors' memory
    /// are gone; the log and its snapshots stay. The production recovery code rebuilds the
    /// actors, which must equal their state at the crash (everything delivered was committed),
    /// and what it finds owed is sent again. The client sends again what it had sent that the
    /// log does not hold (same ids: a resend of a delivered one would be refused).
    func crashAndRecover() {
        self.crashCount += 1
        self.count(.crash)
        withUnsafeBytes(of: UInt64(0xC8A5_4000 + self.crashCount).bigEndian) { self.trace.update(bufferPointer: $0) }
        let live = self.cells.map { ($0.address, Recovery.digest(of: $0)) }
        let recovered: (cells: [any ActorCell], report: Recovery.Report)
        do {
            recovered = try Recovery(log: self.log, hierarchy: self.hierarchy).run()
        } catch {
            self.recoveryProblems.append("crash \(self.crashCount): recovery failed: \(error)")
            return
        }
        self.recoveryCount += 1
        if let divergence = recovered.report.divergence {
            self.recoveryProblems.append("crash \(self.crashCount): \(divergence)")
        }
        for ((address, before), cell) in zip(live, recovered.cells) {
            let after = Recovery.digest(of: cell)
            if cell.address != address || after != before {
                self.recoveryProblems.append("crash \(self.crashCount): \(address) recovered with digest \(after.prefix(12)), had \(before.prefix(12))")
            }
        }
        self.cells = recovered.cells
        self.mailboxes = self.cells.map { _ in Mailbox(capacity: Int.max) }
        self.sent = self.cells.map { _ in SentMessages() }
        self.arrivals = ArrivalQueue()
        // Owed timers first, as the node resumes them.
        for envelope in recovered.report.pending {
            if let position = self.index[envelope.sender] { self.sent[position].add(envelope) }
            if envelope.timestampMilliseconds > self.now {
                self.arrivals.push(envelope, at: envelope.timestampMilliseconds, timerOf: envelope.sender)
            }
        }
        for envelope in recovered.report.pending where envelope.timestampMilliseconds <= self.now {
            self.arrivals.push(envelope, at: self.now + self.delay())
        }
        for (envelope, at) in self.planned where !self.log.contains(envelope.id) {
            self.arrivals.push(envelope, at: max(at, self.now + self.delay()))
        }
    }

    func delay() -> Int64 {
        Int64(self.random.next64() % UInt64(self.configuration.maxDelayMilliseconds + 1))
    }

    /// A message on the network: delayed, and with the network faults on, sometimes delayed
    /// much more, doubled, or (at_most_once only) lost.
    func send(_ message: Envelope) {
        let faults = self.activeFaults
        if faults.contains(.drop), message.deliveryMode == .atMostOnce, self.random.next64() % 100 < 5 {
            self.count(.drop)
            return
        }
        var delay = self.delay()
        if faults.contains(.delay), self.random.next64() % 100 < 5 {
            delay += 10 + Int64(self.random.next64() % 191)
            self.count(.delay)
        }
        self.arrivals.push(message, at: self.now + delay)
        if faults.contains(.duplicate), self.random.next64() % 100 < 2 {
            self.arrivals.push(message, at: self.now + self.delay() + Int64(self.random.next64() % 20))
            self.count(.duplicate)
        }
    }

    // MARK: Snapshots

    func snapshot(_ position: Int) {
        let cell = self.cells[position]
        let seq = cell.lastSeq
        // The in-memory log's lookups cannot fail.
        let owed = (try? self.sent[position].owed(atSnapshot: seq) { (ids) throws(EventLogError) in try self.log.seqs(ofMessages: ids) }) ?? []
        self.log.save(Snapshot(
            actor: cell.address.rawValue, seq: seq, formatVersion: cell.stateFormatVersion,
            state: NodeSnapshot(state: cell.snapshotBytes(), owed: owed).encode()))
        cell.markSnapshotted()
    }

    func admitArrivals() {
        while let envelope = self.arrivals.pop(dueBy: self.now) {
            guard let position = self.index[envelope.recipient] else { continue }  // no such actor: dropped
            self.mailboxes[position].push(envelope, priority: envelope.priority, overCapacity: true)
        }
    }

    /// One actor with mail, chosen by the seed among all that have some (in the cells' fixed
    /// order, never a hash order).
    func pickActor() -> Int? {
        var candidates: [Int] = []
        for (position, mailbox) in self.mailboxes.enumerated() where !mailbox.isEmpty { candidates.append(position) }
        guard !candidates.isEmpty else { return nil }
        return candidates[Int(self.random.next64() % UInt64(candidates.count))]
    }

    func count(_ fault: Fault) { self.faultCounts[fault, default: 0] += 1 }

    /// Whether the `storage` fault fails this append (and slows the clock when it commits slowly).
    func commitFails() -> Bool {
        guard self.activeFaults.contains(.storage) else { return false }
        if self.logFullFor > 0 {
            self.logFullFor -= 1
            return true
        }
        let roll = self.random.next64() % 1_000
        if roll < 2 {
            self.logFullFor = 5 + Int(self.random.next64() % 46)
            self.count(.storage)
            return true
        }
        if roll < 12 {
            self.count(.storage)
            return true
        }
        if roll < 32 {
            self.now += 1 + Int64(self.random.next64() % 20)
            self.count(.storage)
        }
        return false
    }

    /// Delivers the head of one mailbox; false when nothing was delivered.
    @discardableResult
    func deliverHead(of position: Int) -> Bool {
        guard let (envelope, _) = self.mailboxes[position].pop() else { return false }
        if self.commitFails() {
            // Nothing was logged, so nothing is delivered: the message waits for the next try,
            // as production puts a batch back when its commit fails.
            self.mailboxes[position].push(envelope, priority: envelope.priority, overCapacity: true)
            withUnsafeBytes(of: UInt64(0x5704_A6E0).bigEndian) { self.trace.update(bufferPointer: $0) }
            return false
        }
        let entropy = self.random.next64()
        let clock = self.now + self.skew[position]
        guard let seq = self.log.append(envelope, clockMilliseconds: clock, entropy: entropy) else {
            self.traceRefusal(envelope)  // delivered before under this id: the exactly_once dedupe
            return false
        }
        let cell = self.cells[position]
        let delivery = cell.deliver(envelope, DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: entropy))
        if case .taskError(let error) = envelope.payload, error.code == .agentCrashed, envelope.sender.isAgent {
            self.count(.agentCrash)
        }
        self.traceDelivery(seq: seq, envelope: envelope, delivery: delivery)
        if cell.address.isClient, ClientMachine.outcome(envelope) != nil {
            self.answers[envelope.correlationID, default: 0] += 1
            self.lastAnswerAt = self.now
        }
        for correlation in delivery.cancelledTimers { self.arrivals.cancel(owner: cell.address, correlation: correlation) }
        for message in delivery.messages {
            if message.timestampMilliseconds > clock {
                self.arrivals.push(message, at: max(self.now, message.timestampMilliseconds - self.skew[position]), timerOf: cell.address)
            } else {
                self.send(message)
            }
        }
        // `clock` is the actor's own (skewed) clock: its timers are stamped on it.
        self.sent[position].record(delivery, clock: clock)
        if cell.deliveriesSinceSnapshot >= self.configuration.snapshotEveryDeliveries { self.snapshot(position) }
        return true
    }

    // MARK: The trace digest

    func traceDelivery(seq: UInt64, envelope: Envelope, delivery: Delivery) {
        withUnsafeBytes(of: seq.bigEndian) { self.trace.update(bufferPointer: $0) }
        withUnsafeBytes(of: self.now.bigEndian) { self.trace.update(bufferPointer: $0) }
        if let bytes = try? self.encoder.encode(envelope) { bytes.withUnsafeBytes { self.trace.update(bufferPointer: $0) } }
        for message in delivery.messages {
            message.id.withBytes { self.trace.update(bufferPointer: $0) }
        }
    }

    func traceRefusal(_ envelope: Envelope) {
        withUnsafeBytes(of: UInt64.max.bigEndian) { self.trace.update(bufferPointer: $0) }
        envelope.id.withBytes { self.trace.update(bufferPointer: $0) }
    }

    // MARK: Oracles and the report

    func report(deliveries: Int) -> SimulationReport {
        var oracles: [(String, String)] = []
        // Every request gets exactly one terminal answer (no faults yet: at_most_once may not lose).
        var missing = 0
        var doubled = 0
        for id in self.submitted {
            let count = self.answers[id] ?? 0
            // at_most_once may lose a task; nothing may be answered twice.
            if count == 0 && self.submittedModes[id] != .atMostOnce { missing += 1 }
            if count > 1 { doubled += 1 }
        }
        oracles.append((
            "one_terminal_answer",
            missing == 0 && doubled == 0 ? "ok" : "failed: \(missing) tasks unanswered, \(doubled) answered more than once"))
        // exactly_once work happens once: each such task takes effect at an agent at most once.
        // An attempt the agent answered `agent_crashed` took no effect (a crash is a throw before
        // or instead of the work), so it does not count.
        var crashedAttempts: Set<MessageID> = []
        for record in self.log.records where record.envelope.sender.isAgent {
            if case .taskError(let error) = record.envelope.payload, error.code == .agentCrashed, let parent = record.envelope.parentID {
                crashedAttempts.insert(parent)
            }
        }
        var agentDeliveries: [MessageID: Int] = [:]
        for record in self.log.records where record.envelope.recipient.isAgent && !crashedAttempts.contains(record.envelope.id) {
            if case .taskRequest = record.envelope.payload { agentDeliveries[record.envelope.correlationID, default: 0] += 1 }
        }
        let repeated = self.submitted.filter { self.submittedModes[$0] == .exactlyOnce && (agentDeliveries[$0] ?? 0) > 1 }.count
        oracles.append(("exactly_once_effects_once", repeated == 0 ? "ok" : "failed: \(repeated) exactly_once tasks reached an agent more than once"))
        // Budgets are never overspent: every supervisor's budget figures stay within bounds.
        var budgetProblems: [String] = []
        for cell in self.cells where cell.address.isSupervisor {
            guard let budget = cell.describeState()["budget"] else { continue }
            for key in ["slots_in_use", "tokens_reserved", "tokens_spent"] {
                if case .int(let value)? = budget[key], value < 0 { budgetProblems.append("\(cell.address) \(key) \(value)") }
            }
            if case .int(let slots)? = budget["slots_in_use"], case .int(let maximum)? = budget["max_concurrent_tasks"], slots > maximum {
                budgetProblems.append("\(cell.address) holds \(slots) slots of \(maximum)")
            }
        }
        oracles.append(("budgets_within_limits", budgetProblems.isEmpty ? "ok" : "failed: " + budgetProblems.joined(separator: "; ")))
        // Liveness: with the faults off, the last answer comes within the bound.
        let end = self.safetyEndedAt ?? self.now
        let late = self.lastAnswerAt - end
        oracles.append((
            "liveness",
            missing > 0 ? "failed: \(missing) tasks never answered"
                : late <= self.configuration.livenessBoundMilliseconds ? "ok"
                : "failed: the last answer came \(late) ms after the faults stopped (bound \(self.configuration.livenessBoundMilliseconds) ms)"))
        oracles.append((
            "recovery_equals_committed_prefix",
            self.recoveryProblems.isEmpty ? "ok" : "failed: " + self.recoveryProblems.prefix(3).joined(separator: "; ")))
        let digest = Hex.encode(Array(self.trace.finalize()))
        return SimulationReport(
            seed: self.configuration.seed, digest: digest, deliveries: deliveries,
            virtualMilliseconds: self.now - Self.epochMilliseconds, tasks: self.submitted.count,
            crashPoints: self.plannedCrashes, crashes: self.crashCount, recoveries: self.recoveryCount,
            faults: Fault.allCases.compactMap { fault in self.faultCounts[fault].map { (fault.rawValue, $0) } },
            oracles: oracles)
    }
}

/// What one run found. `passed` when every oracle said ok.
public struct SimulationReport: Sendable {
    public var seed: UInt64
    /// SHA-256 over the ordered trace: each delivery's seq, clock and envelope bytes, and the ids
    /// of what its handler sent.
    public var digest: String
    public var deliveries: Int
    public var virtualMilliseconds: Int64
    public var tasks: Int
    /// The delivery counts at which the process crashed (from the seed).
    public var crashPoints: [Int]
    public var crashes: Int
    public var recoveries: Int
    /// How often each fault was injected, in `Simulation.Fault.allCases` order.
    public var faults: [(String, Int)]
    /// Oracle name and "ok" or "failed: …", in a fixed order.
    public var oracles: [(String, String)]

    public var passed: Bool { self.oracles.allSatisfy { $0.1 == "ok" } }
}

// MARK: - Arrivals: messages on their way, by arrival time

/// Messages sent but not yet in a mailbox, ordered by (arrival time, order of sending): a binary
/// heap of small keys, so the order never depends on hashing and the heap never moves envelopes;
/// the envelopes wait in a table by order. Timers can be cancelled by (owner, task).
struct ArrivalQueue {
    struct Key {
        var at: Int64
        var order: UInt64
    }

    struct Waiting {
        var envelope: Envelope
        var timerOf: Address?
    }

    struct TimerKey: Hashable {
        var owner: Address
        var correlation: MessageID
    }

    var heap = MinHeap<Key>(by: ArrivalQueue.before)
    var order: UInt64 = 0
    /// Looked up by order only, never iterated.
    var waiting: [UInt64: Waiting] = [:]
    var timers: [TimerKey: [UInt64]] = [:]

    var nextTime: Int64? { self.heap.first?.at }

    mutating func push(_ envelope: Envelope, at: Int64, timerOf owner: Address? = nil) {
        self.order += 1
        if let owner { self.timers[TimerKey(owner: owner, correlation: envelope.correlationID), default: []].append(self.order) }
        self.waiting[self.order] = Waiting(envelope: envelope, timerOf: owner)
        self.heap.push(Key(at: at, order: self.order))
    }

    mutating func cancel(owner: Address, correlation: MessageID) {
        guard let orders = self.timers.removeValue(forKey: TimerKey(owner: owner, correlation: correlation)) else { return }
        for order in orders { self.waiting[order] = nil }
    }

    /// The next message due by `now`, skipping cancelled timers.
    mutating func pop(dueBy now: Int64) -> Envelope? {
        while let first = self.heap.first, first.at <= now {
            _ = self.heap.popFirst()
            guard let entry = self.waiting.removeValue(forKey: first.order) else { continue }  // cancelled
            if let owner = entry.timerOf {
                let key = TimerKey(owner: owner, correlation: entry.envelope.correlationID)
                if var orders = self.timers[key] {
                    orders.removeAll { $0 == first.order }
                    self.timers[key] = orders.isEmpty ? nil : orders
                }
            }
            return entry.envelope
        }
        return nil
    }

    static func before(_ a: Key, _ b: Key) -> Bool { a.at != b.at ? a.at < b.at : a.order < b.order }
}

// MARK: - The in-memory log

/// The log of a simulation, kept in memory, with what recovery needs (`ReplayableLog`): seqs
/// from 1, the clock and entropy of each delivery, the id index that refuses a second delivery of
/// the same id (exactly_once), heads, a task index and a snapshot store. A crash of the simulated
/// process loses nothing here: this is what was committed.
final class MemoryLog: ReplayableLog {
    private(set) var records: [LogRecord] = []
    private var ids: [MessageID: UInt64] = [:]
    private var byCorrelation: [MessageID: [UInt64]] = [:]
    private var headOf: [String: UInt64] = [:]
    private var snapshotStore: [String: [Snapshot]] = [:]

    var lastSeq: UInt64 { UInt64(self.records.count) }

    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        guard self.ids[envelope.id] == nil else { return nil }
        let seq = UInt64(self.records.count + 1)
        let actor = envelope.recipient.rawValue
        let header = RecordHeader(
            seq: seq, prevHash: .zero, actorPrevSeq: self.headOf[actor] ?? 0, clockMilliseconds: clockMilliseconds, entropy: entropy)
        self.records.append(LogRecord(header: header, envelope: envelope))
        self.ids[envelope.id] = seq
        self.byCorrelation[envelope.correlationID, default: []].append(seq)
        self.headOf[actor] = seq
        return seq
    }

    func contains(_ id: MessageID) -> Bool { self.ids[id] != nil }


    func save(_ snapshot: Snapshot) {
        var list = self.snapshotStore[snapshot.actor, default: []]
        list.append(snapshot)
        if list.count > 3 { list.removeFirst(list.count - 3) }  // the newest three, as the LMDB store keeps
        self.snapshotStore[snapshot.actor] = list
    }

    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot? {
        self.snapshotStore[actor]?.last { $0.seq <= seq && accepting($0.formatVersion) }
    }

    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] {
        self.headOf.map { (actor: $0.key, seq: $0.value) }.sorted { $0.actor < $1.actor }
    }

    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] { ids.map { self.ids[$0] } }

    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        seq >= 1 && seq <= self.lastSeq ? self.records[Int(seq - 1)] : nil
    }

    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] { self.byCorrelation[correlation] ?? [] }

    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        var position = Int(max(1, seq)) - 1
        while position < self.records.count {
            let end = min(self.records.count, position + 256)
            let batch = self.records[position..<end].map { (seq: $0.header.seq, record: $0) }
            if !body(batch) { return }
            position = end
        }
    }
}
