import CartritaCodec
import CartritaEnvelope
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
    public struct Configuration: Sendable {
        public var seed: UInt64
        /// Tasks the client submits, spread over the first `submitWindowMilliseconds`.
        public var tasks = 200
        public var submitWindowMilliseconds: Int64 = 200
        /// Largest network delay between a send and the arrival in the mailbox.
        public var maxDelayMilliseconds: Int64 = 3
        /// Stop after this many deliveries even if work is left (the oracles then say so).
        public var maxDeliveries = 1_000_000

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

    // What the oracles watch.
    var submitted: [MessageID] = []
    var answers: [MessageID: Int] = [:]
    var submittedModes: [MessageID: DeliveryMode] = [:]

    /// The run's start on the virtual clock: fixed, so runs compare across machines and days.
    public static let epochMilliseconds: Int64 = 1_800_000_000_000

    public init(_ configuration: Configuration, hierarchy: Hierarchy = .standard(), workload: Workload = .standard) {
        self.configuration = configuration
        self.hierarchy = hierarchy
        self.workload = workload
        self.cells = hierarchy.makeCells()
        self.mailboxes = self.cells.map { _ in Mailbox(capacity: Int.max) }
        self.random = SplitMix64(seed: configuration.seed)
        self.now = Self.epochMilliseconds
        self.client = Hierarchy.runClient
        for (position, cell) in self.cells.enumerated() { self.index[cell.address] = position }
        if let first = self.cells.first(where: { $0.address.hasKind("client") }) { self.client = first.address }
    }

    // MARK: Running

    public func run() -> SimulationReport {
        self.plan()
        var deliveries = 0
        while deliveries < self.configuration.maxDeliveries {
            self.admitArrivals()
            guard let position = self.pickActor() else {
                // Nothing to deliver now: the clock jumps to the next arrival, or the run is over.
                guard let next = self.arrivals.nextTime else { break }
                self.now = max(self.now, next)
                continue
            }
            self.deliverHead(of: position)
            deliveries += 1
            // Time passes while handlers run: sometimes a millisecond, as the seed says.
            if self.random.next64() % 4 == 0 { self.now += 1 }
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
            self.arrivals.push(envelope, at: at)
        }
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

    func deliverHead(of position: Int) {
        guard let (envelope, _) = self.mailboxes[position].pop() else { return }
        let entropy = self.random.next64()
        guard let seq = self.log.append(envelope, clockMilliseconds: self.now, entropy: entropy) else {
            self.traceRefusal(envelope)  // delivered before under this id: the exactly_once dedupe
            return
        }
        let cell = self.cells[position]
        let delivery = cell.deliver(envelope, DeliveryContext(seq: seq, clockMilliseconds: self.now, entropy: entropy))
        self.traceDelivery(seq: seq, envelope: envelope, delivery: delivery)
        if cell.address.hasKind("client"), ClientMachine.outcome(envelope) != nil {
            self.answers[envelope.correlationID, default: 0] += 1
        }
        for correlation in delivery.cancelledTimers { self.arrivals.cancel(owner: cell.address, correlation: correlation, after: self.now) }
        for message in delivery.messages {
            if message.timestampMilliseconds > self.now {
                self.arrivals.push(message, at: message.timestampMilliseconds, timerOf: cell.address)
            } else {
                let delay = Int64(self.random.next64() % UInt64(self.configuration.maxDelayMilliseconds + 1))
                self.arrivals.push(message, at: self.now + delay)
            }
        }
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
            if count == 0 { missing += 1 }
            if count > 1 { doubled += 1 }
        }
        oracles.append((
            "one_terminal_answer",
            missing == 0 && doubled == 0 ? "ok" : "failed: \(missing) tasks unanswered, \(doubled) answered more than once"))
        // exactly_once work happens once: each such task reaches an agent at most once.
        var agentDeliveries: [MessageID: Int] = [:]
        for record in self.log.records where record.envelope.recipient.hasKind("agent") {
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
        let digest = Hex.encode(Array(self.trace.finalize()))
        return SimulationReport(
            seed: self.configuration.seed, digest: digest, deliveries: deliveries,
            virtualMilliseconds: self.now - Self.epochMilliseconds, tasks: self.submitted.count, oracles: oracles)
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
    /// Oracle name and "ok" or "failed: …", in a fixed order.
    public var oracles: [(String, String)]

    public var passed: Bool { self.oracles.allSatisfy { $0.1 == "ok" } }
}

// MARK: - Arrivals: messages on their way, by arrival time

/// Messages sent but not yet in a mailbox, ordered by (arrival time, order of sending): a binary
/// heap, so the order never depends on hashing. Timers can be cancelled by (owner, task).
struct ArrivalQueue {
    struct Entry {
        var at: Int64
        var order: UInt64
        var envelope: Envelope
        var timerOf: Address?
    }

    var heap: [Entry] = []
    var order: UInt64 = 0
    var cancelled: Set<UInt64> = []
    var timers: [TimerKey: [UInt64]] = [:]

    struct TimerKey: Hashable {
        var owner: Address
        var correlation: MessageID
    }

    var nextTime: Int64? { self.heap.first?.at }

    mutating func push(_ envelope: Envelope, at: Int64, timerOf owner: Address? = nil) {
        self.order += 1
        if let owner { self.timers[TimerKey(owner: owner, correlation: envelope.correlationID), default: []].append(self.order) }
        self.heap.append(Entry(at: at, order: self.order, envelope: envelope, timerOf: owner))
        var child = self.heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(self.heap[child], self.heap[parent]) else { break }
            self.heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func cancel(owner: Address, correlation: MessageID, after now: Int64) {
        guard let orders = self.timers.removeValue(forKey: TimerKey(owner: owner, correlation: correlation)) else { return }
        for order in orders { self.cancelled.insert(order) }
    }

    /// The next message due by `now`, skipping cancelled timers.
    mutating func pop(dueBy now: Int64) -> Envelope? {
        while let first = self.heap.first, first.at <= now {
            let entry = self.popFirst()
            if self.cancelled.remove(entry.order) != nil { continue }
            if let owner = entry.timerOf {
                let key = TimerKey(owner: owner, correlation: entry.envelope.correlationID)
                if var orders = self.timers[key] {
                    orders.removeAll { $0 == entry.order }
                    self.timers[key] = orders.isEmpty ? nil : orders
                }
            }
            return entry.envelope
        }
        return nil
    }

    static func before(_ a: Entry, _ b: Entry) -> Bool { a.at != b.at ? a.at < b.at : a.order < b.order }

    mutating func popFirst() -> Entry {
        let first = self.heap[0]
        let last = self.heap.removeLast()
        if !self.heap.isEmpty {
            self.heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.heap.count && Self.before(self.heap[left], self.heap[smallest]) { smallest = left }
                if right < self.heap.count && Self.before(self.heap[right], self.heap[smallest]) { smallest = right }
                if smallest == parent { break }
                self.heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

// MARK: - The in-memory log

/// The log of a simulation, kept in memory: seqs from 1, the clock and entropy of each delivery,
/// and the id index that refuses a second delivery of the same id (exactly_once).
final class MemoryLog {
    struct Record {
        var seq: UInt64
        var clockMilliseconds: Int64
        var entropy: UInt64
        var envelope: Envelope
    }

    private(set) var records: [Record] = []
    private var ids: Set<MessageID> = []

    /// The new record's seq, or nil when a record with this id exists (refused, nothing changes).
    func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) -> UInt64? {
        guard self.ids.insert(envelope.id).inserted else { return nil }
        let seq = UInt64(self.records.count + 1)
        self.records.append(Record(seq: seq, clockMilliseconds: clockMilliseconds, entropy: entropy, envelope: envelope))
        return seq
    }
}
