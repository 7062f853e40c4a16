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
///
/// The run's state is stored properties of this class, which every delivery reads and writes
/// dozens of times; the hot ones are `@exclusivity(unchecked)`: the dynamic exclusivity check
/// (swift_beginAccess, a thread-local access set) cost more than the work it guarded. A
/// simulation runs on one thread, and no access to one of them overlaps another to the same
/// one: the closures the simulation passes (snapshot lookups, I/O services) touch other
/// properties than the one being modified, and the simulator's tests ran clean with the
/// checks on before they were turned off. A change that passes `&self.x` to code that reaches back into
/// `self.x` must not be made.
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
        /// One agent crashes on every request for 50 to 300 ms (one or two storms a run): its
        /// supervisor restarts it until the intensity is exceeded, escalates, and starts again
        /// after its cool-down.
        case restartStorm = "restart_storm"
        /// Half of the process crashes are power losses: in the relaxed and fast durability
        /// modes the unsynced tail of the log is gone (relaxed: the last commit; fast: everything
        /// since the last periodic sync), with the snapshots taken after it.
        case tailLoss = "tail_loss"
        /// BUGGIFY: the runtime's rare-path sites (`BuggifySite`), each on or off for the run by
        /// the seed, firing at random where they are reached.
        case buggify
        /// External I/O results: a call fails (5%), times out (3%: the answer is `timeout`,
        /// after the call's time limit) or answers slowly (10%: 100 ms to 2 s late).
        case io
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
        /// Each actor snapshots after this many deliveries (small, so crashes meet snapshots;
        /// the buggify fault adds snapshots at random moments).
        public var snapshotEveryDeliveries = 200
        /// See `NodeConfiguration.snapshotBytesPerDelivery`.
        public var snapshotBytesPerDelivery = defaultSnapshotBytesPerDelivery
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
        /// The log's durability mode, which decides what a power loss (`tail_loss`) takes. nil:
        /// drawn from the seed when `tail_loss` is on, else durable.
        public var durability: Durability?
        /// A fast-mode log syncs this often (virtual time), as the writer does.
        public var fastSyncIntervalMilliseconds: Int64 = 100

        public init(seed: UInt64) {
            self.seed = seed
        }
    }

    public let configuration: Configuration
    let hierarchy: Hierarchy
    let workload: Workload
    @exclusivity(unchecked) var cells: [any ActorCell]
    @exclusivity(unchecked) var index = AddressIndex()
    /// What the hot path asks of each cell, by position, read once instead of through the cell's
    /// existential `address` (a copy of its text) on every delivery.
    @exclusivity(unchecked) var cellIsClient: [Bool] = []
    @exclusivity(unchecked) var cellIsAgent: [Bool] = []
    /// The log numbered the actors as the cells are numbered (see `SimulationLog.register`).
    @exclusivity(unchecked) var logKnowsPositions = false
    @exclusivity(unchecked) var mailboxes: [SimMailbox]
    @exclusivity(unchecked) var random: SplitMix64
    /// The virtual clock, in Unix milliseconds.
    @exclusivity(unchecked) var now: Int64
    @exclusivity(unchecked) var arrivals = ArrivalQueue()
    let log: any SimulationLog
    let trace = TraceDigest()
    /// Writes the snapshots (`NodeSnapshot`'s bytes) into buffers kept for the run.
    let snapshotEncoder = SnapshotEncoder()
    var client: Address

    /// Messages each actor sent that the log does not hold yet (by cell position): its
    /// snapshots carry them, as production's do.
    @exclusivity(unchecked) var sent: [SentMessages]
    var crashPoints: [Int] = []
    var plannedCrashes: [Int] = []
    public private(set) var crashCount = 0
    public private(set) var recoveryCount = 0
    var recoveryProblems: [String] = []

    // What the oracles watch.
    var planned: [(envelope: Envelope, at: Int64)] = []
    var submitted: [MessageID] = []
    /// Terminal answers the client got, by task (a counter; looked up, never iterated).
    @exclusivity(unchecked) var answers = MessageSeqTable(minimumCapacity: 1_024)
    var submittedModes: [MessageID: DeliveryMode] = [:]

    /// The run's start on the virtual clock: fixed, so runs compare across machines and days.
    public static let epochMilliseconds: Int64 = 1_800_000_000_000

    /// Per-actor clock skew (the `clock` fault), by cell position.
    @exclusivity(unchecked) var skew: [Int64]
    /// Appends still to fail in a log-full episode (the `storage` fault).
    @exclusivity(unchecked) var logFullFor = 0
    /// The faults in force now: the configured ones in the safety phase, none after.
    @exclusivity(unchecked) var activeFaults = FaultSet()
    /// The configured faults (`configuration.faults`), as bits for the hot path.
    let configuredFaults: FaultSet
    var safetyEndedAt: Int64?
    @exclusivity(unchecked) var lastAnswerAt: Int64 = 0
    /// The run ended because nothing was left to deliver (not at `maxDeliveries`).
    var ranToQuiescence = false
    /// Injected faults by kind, by `Fault.ordinal` (nil: never injected, not reported).
    @exclusivity(unchecked) var faultCounts = [Int?](repeating: nil, count: Fault.allCases.count)

    /// A restart's backoff (by cell position, on the global virtual clock): nothing is delivered
    /// to the actor before it. `stopped`: its supervisor gave up; new work is refused.
    @exclusivity(unchecked) var heldUntil: [Int64]
    @exclusivity(unchecked) var stopped: [Bool]
    /// The run's BUGGIFY sites (the `buggify` fault), shared with every delivery's context.
    public let buggify: Buggify?
    /// Restart storms: an agent (by position), the delivery count at which the storm starts
    /// (within the safety phase), how long it lasts, and when it started on the virtual clock.
    var storms: [(target: Int, startDelivery: Int, milliseconds: Int64, from: Int64?)] = []
    /// What the agents' crash rule is set to (0: no injected crashes).
    let crashesPerMillion: UInt64
    /// Each supervisor's restart decisions (the delivery's seq and clock reading), by cell
    /// position (the oracle). A power loss takes back those in the lost tail.
    @exclusivity(unchecked) var restartDecisions: [[(seq: UInt64, clock: Int64)]]
    public let durability: Durability
    /// What a power loss keeps: the log up to here is on disk.
    @exclusivity(unchecked) var syncedSeq: UInt64 = 0
    @exclusivity(unchecked) var lastSyncAt: Int64
    var tailRecordsLost = 0
    /// I/O requests the gateway logged: deliveries too, though to no actor.
    @exclusivity(unchecked) var gatewayDeliveries = 0

    /// The standard mix plus at_most_once tasks, which only the `drop` fault may lose.
    /// The standard mix plus at_most_once tasks, which only the `drop` fault may lose, and tasks
    /// whose input is a file the agents fetch through the I/O gateway.
    public static let workload = try! Workload(entries: Workload.standard.entries + [
        Workload.Entry(taskType: "text.keywords", deliveryMode: .atMostOnce, weight: 1),
        Workload.Entry(taskType: "data.csv-stats", deliveryMode: .atMostOnce, weight: 1),
        Workload.Entry(taskType: "data.csv-stats", deliveryMode: .exactlyOnce, weight: 1, inputByURL: true),
        Workload.Entry(taskType: "text.stats", deliveryMode: .atLeastOnce, weight: 1, inputByURL: true),
    ])

    /// The simulated I/O services by name: `files` serves the workload's URLs.
    public var ioServices: [String: any SimulatedIOService] = ["files": WorkloadFiles()]

    /// The standard hierarchy; with the `agent_crash` fault its agents crash on 2% of requests.
    public static func hierarchy(for configuration: Configuration) -> Hierarchy {
        var options = Hierarchy.Options()
        if configuration.faults.contains(.agentCrash) || configuration.faults.contains(.restartStorm) {
            options.agentCrashesPerMillion = Self.agentCrashesPerMillion
        }
        return .standard(options)
    }

    /// The agents' crash rate under the `agent_crash` fault (2%).
    public static let agentCrashesPerMillion: UInt64 = 20_000


    /// A run on the in-memory log (the fast default).
    public convenience init(_ configuration: Configuration, hierarchy: Hierarchy? = nil, workload: Workload = Simulation.workload) {
        // About eight records per task without faults (client, orchestrator, supervisor, agent
        // and back, with grants and I/O); faults add retries, and the log grows past this.
        self.init(configuration, hierarchy: hierarchy, workload: workload, log: MemoryLog(expectedRecords: configuration.tasks * 8))
    }

    /// A run on a real, empty LMDB event log: the same run as on the in-memory log (same
    /// digest), slower, and left in its folder for `cartrita recover`, `travel` and `log`.
    public convenience init(
        _ configuration: Configuration, hierarchy: Hierarchy? = nil, workload: Workload = Simulation.workload, eventLog: EventLog
    ) throws(SimulationError) {
        guard !configuration.faults.contains(.tailLoss) else { throw .tailLossNeedsTheMemoryLog }
        let log: LMDBSimulationLog
        do {
            log = try LMDBSimulationLog(eventLog)
        } catch {
            throw .log(error)
        }
        guard log.lastSeq == 0 else { throw .logNotEmpty(lastSeq: log.lastSeq) }
        self.init(configuration, hierarchy: hierarchy, workload: workload, log: log)
    }

    init(_ configuration: Configuration, hierarchy: Hierarchy?, workload: Workload, log: any SimulationLog) {
        self.log = log
        self.configuration = configuration
        self.hierarchy = hierarchy ?? Self.hierarchy(for: configuration)
        self.workload = workload
        self.cells = self.hierarchy.makeCells()
        self.mailboxes = self.cells.map { _ in SimMailbox() }
        self.sent = self.cells.map { _ in SentMessages() }
        self.configuredFaults = FaultSet(configuration.faults)
        self.random = SplitMix64(seed: configuration.seed)
        self.skew = self.cells.map { _ in 0 }
        self.heldUntil = self.cells.map { _ in Int64.min }
        self.stopped = self.cells.map { _ in false }
        self.restartDecisions = self.cells.map { _ in [] }
        self.buggify = configuration.faults.contains(.buggify) ? Buggify(seed: configuration.seed) : nil
        self.crashesPerMillion =
            configuration.faults.contains(.agentCrash) || configuration.faults.contains(.restartStorm) ? Self.agentCrashesPerMillion : 0
        if let durability = configuration.durability {
            self.durability = durability
        } else if configuration.faults.contains(.tailLoss) {
            self.durability = [Durability.durable, .relaxed, .fast][Int(configuration.seed % 3)]
        } else {
            self.durability = .durable
        }
        self.lastSyncAt = Self.epochMilliseconds
        if configuration.faults.contains(.clock) {
            for position in self.skew.indices { self.skew[position] = Int64(self.random.next64() % 71) - 20 }
        }
        self.now = Self.epochMilliseconds
        self.client = Hierarchy.runClient
        self.numberCells()
        if let first = self.cells.first(where: { $0.address.isClient }) { self.client = first.address }
        // The whole plan is drawn before the first delivery, so it can be printed at the start.
        self.plan()
    }

    /// Reads each cell's address once: the index by address, the flags the hot path asks, and
    /// the log's numbering of the actors (again after a recovery, which makes new cells).
    func numberCells() {
        let addresses = self.cells.map(\.address)
        self.index = AddressIndex(addresses)
        self.cellIsClient = addresses.map(\.isClient)
        self.cellIsAgent = addresses.map(\.isAgent)
        self.logKnowsPositions = self.log.register(actors: addresses)
    }

    /// The delivery counts at which the process will crash (the `crash` fault).
    public var plannedCrashPoints: [Int] { self.plannedCrashes }

    // MARK: Running

    public func run() -> SimulationReport {
        var deliveries = 0
        var attempts = 0
        self.activeFaults = self.configuredFaults
        let safety = self.configuration.safetyDeliveries ?? self.configuration.tasks * 3
        while deliveries < self.configuration.maxDeliveries {
            if self.safetyEndedAt == nil && deliveries >= safety {
                self.activeFaults = FaultSet()
                self.logFullFor = 0
                self.safetyEndedAt = self.now
            }
            if let next = self.crashPoints.first, deliveries >= next {
                self.crashPoints.removeFirst()
                self.crashAndRecover()
            }
            if !self.storms.isEmpty { self.startStorms(deliveries: deliveries) }
            self.admitArrivals()
            guard let position = self.pickActor() else {
                // Nothing to deliver now: the clock jumps to the next arrival or the end of a
                // restart's hold, or the run is over.
                guard let next = self.nextEventTime() else {
                    self.ranToQuiescence = true
                    break
                }
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
        return self.report(deliveries: deliveries + self.gatewayDeliveries)
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
        // Crash points: spread over the safety phase.
        let expected = UInt64(max(1, self.configuration.safetyDeliveries ?? self.configuration.tasks * 3))
        let crashes = self.configuration.faults.contains(.crash) ? self.configuration.crashes : 0
        self.crashPoints = (0..<crashes).map { _ in Int(1 + self.random.next64() % expected) }.sorted()
        self.plannedCrashes = self.crashPoints
        // Restart storms: one or two in the safety phase, on one agent each.
        let agents = self.cells.indices.filter { self.cells[$0].address.isAgent }
        if self.configuration.faults.contains(.restartStorm), !agents.isEmpty {
            for _ in 0..<(1 + Int(self.random.next64() % 2)) {
                let target = agents[Int(self.random.next64() % UInt64(agents.count))]
                let start = Int(self.random.next64() % (expected * 3 / 4 + 1))
                self.storms.append((target, start, 50 + Int64(self.random.next64() % 251), nil))
            }
            self.storms.sort { $0.startDelivery < $1.startDelivery }
        }
    }

    /// The run's log, in seq order (what `--write-log` saves and the tests inspect).
    public var records: [LogRecord] { self.log.records }

    /// Copies the run's log into an empty event log: every record with the clock reading and
    /// entropy it was delivered with (so seqs, ids and replay are the same), then the snapshots
    /// the run kept. For the time-travel tools and `cartrita recover` after a run in memory.
    public func writeLog(to target: EventLog) throws(EventLogError) {
        if let onDisk = self.log as? LMDBSimulationLog, onDisk.log === target {
            onDisk.flush()
            return
        }
        for record in self.log.records {
            _ = try target.appendAndWait(record.envelope, clockMilliseconds: record.header.clockMilliseconds, entropy: record.header.entropy)
        }
        if let memory = self.log as? MemoryLog {
            for snapshot in memory.allSnapshots { try target.saveSnapshotAndWait(snapshot) }
        }
        try target.flushAndWait()
    }

    /// The planned restart storms (agent, from, to on the run's virtual clock), for the plan.
    public var plannedStorms: [(agent: Address, atDelivery: Int, milliseconds: Int64)] {
        self.storms.map { (self.cells[$0.target].address, $0.startDelivery, $0.milliseconds) }
    }

    func startStorms(deliveries: Int) {
        for index in self.storms.indices where self.storms[index].from == nil && deliveries >= self.storms[index].startDelivery {
            self.storms[index].from = self.now
        }
    }

    func storming(_ position: Int) -> Bool {
        guard self.activeFaults.contains(.restartStorm) else { return false }
        return self.storms.contains { storm in
            guard storm.target == position, let from = storm.from else { return false }
            return self.now < from + storm.milliseconds
        }
    }

    /// When something can next be delivered: the next arrival, or the end of a hold on an actor
    /// with mail.
    func nextEventTime() -> Int64? {
        var next = self.arrivals.nextTime
        for position in self.mailboxes.indices where !self.mailboxes[position].isEmpty && !self.stopped[position] && self.heldUntil[position] > self.now {
            next = min(next ?? .max, self.heldUntil[position])
        }
        return next
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
        self.trace.add(UInt64(0xC8A5_4000 + self.crashCount))
        var live = self.cells.map { ($0.address, Recovery.digest(of: $0)) }
        // A power loss instead of a process crash: the log keeps what was synced.
        var lost = 0
        if self.activeFaults.contains(.tailLoss), self.random.next64() % 2 == 0 {
            self.count(.tailLoss)
            lost = self.log.truncate(after: self.syncedSeq)
            self.tailRecordsLost += lost
            for position in self.restartDecisions.indices { self.restartDecisions[position].removeAll { $0.seq > self.syncedSeq } }
            self.trace.add(UInt64(lost))
            if lost > 0 {
                // The committed prefix is what the log now holds: its state is what a full
                // replay (no snapshots) makes, and recovery from snapshots must equal it.
                do {
                    live = try Recovery(log: self.log, hierarchy: self.hierarchy, useSnapshots: false, buggify: self.buggify).run()
                        .cells.map { ($0.address, Recovery.digest(of: $0)) }
                } catch {
                    self.recoveryProblems.append("crash \(self.crashCount): full replay of the synced prefix failed: \(error)")
                    return
                }
            }
        }
        let useSnapshots = !(self.buggify?.fires(.recoverWithoutSnapshots, entropy: self.random.next64()) ?? false)
        let recovered: (cells: [any ActorCell], report: Recovery.Report)
        do {
            recovered = try Recovery(log: self.log, hierarchy: self.hierarchy, useSnapshots: useSnapshots, buggify: self.buggify).run()
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
        self.numberCells()
        self.mailboxes = self.cells.map { _ in SimMailbox() }
        self.sent = self.cells.map { _ in SentMessages() }
        self.arrivals = ArrivalQueue()
        // A new process: no holds, nothing stopped (an escalated supervisor's state says so).
        self.heldUntil = self.cells.map { _ in Int64.min }
        self.stopped = self.cells.map { _ in false }
        if lost > 0 {
            // Answers the client saw in the lost tail are gone with it: a relaxed or fast log
            // may lose acknowledged work on a power loss (that is what those modes trade). The
            // client counts what the log holds, and sends again what it does not.
            self.answers = MessageSeqTable(minimumCapacity: 1_024)
            for record in self.log.records where record.envelope.recipient.isClient && ClientMachine.outcome(record.envelope) != nil {
                _ = self.answers.increment(record.envelope.correlationID)
            }
        }
        // Owed timers first, as the node resumes them.
        for envelope in recovered.report.pending {
            let owner = self.index[envelope.sender]
            if let owner { self.sent[owner].add(envelope) }
            if envelope.timestampMilliseconds > self.now {
                self.arrivals.push(envelope, at: envelope.timestampMilliseconds, timerOf: owner)
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
        let bytes = self.snapshotEncoder.encode(cell, position: position, owed: owed)
        self.log.save(Snapshot(actor: cell.address.rawValue, seq: seq, formatVersion: cell.stateFormatVersion, state: bytes))
        cell.markSnapshotted(bytes: bytes.count)
    }

    func admitArrivals() {
        while let envelope = self.arrivals.pop(dueBy: self.now) {
            if envelope.recipient.isIO {
                self.performIO(envelope)
                continue
            }
            guard let position = self.index[envelope.recipient] else { continue }  // no such actor: dropped
            guard !self.stopped[position] else {
                self.refuseStopped(envelope)
                continue
            }
            self.mailboxes[position].push(envelope)
        }
    }

    /// The I/O gateway, simulated: the request is logged (write-ahead, as production's gateway
    /// logs it), the service answers from the seed, and with the `io` fault the answer is
    /// sometimes an error, a timeout or late. The answer travels like any message and is logged
    /// when the agent takes it: replay reads it from the log.
    func performIO(_ envelope: Envelope) {
        let entropy = self.random.next64()
        guard let seq = self.log.append(envelope, actor: nil, clockMilliseconds: self.now, entropy: entropy) else {
            self.traceRefusal(envelope)  // a resend of a request the gateway has
            return
        }
        self.gatewayDeliveries += 1
        self.trace.add(seq)
        self.trace.add(envelope.id)
        var latency = 1 + Int64(self.random.next64() % 20)
        var result: IOResult?
        guard let request = IOWire.parse(envelope) else {
            self.arrivals.push(
                IOWire.answer(
                    to: envelope, result: .failure(TaskError(code: .ioError, message: "not an I/O request", retryable: false)),
                    timestampMilliseconds: self.now + latency),
                at: self.now + latency)
            return
        }
        if self.activeFaults.contains(.io) {
            let roll = self.random.next64() % 100
            if roll < 5 {
                result = .failure(TaskError(code: .ioError, message: "io.\(request.service): injected failure (fault)", retryable: true))
                self.count(.io)
            } else if roll < 8 {
                latency = request.timeoutMilliseconds
                result = .failure(TaskError(
                    code: .timeout, message: "io.\(request.service) gave no answer within \(request.timeoutMilliseconds) ms (fault)", retryable: true))
                self.count(.io)
            } else if roll < 18 {
                latency += 100 + Int64(self.random.next64() % 1_901)
                self.count(.io)
            }
        }
        if result == nil {
            if let service = self.ioServices[request.service] {
                result = service.call(operation: request.operation, arguments: request.arguments, random: &self.random)
            } else {
                result = .failure(TaskError(code: .ioUnavailable, message: "no I/O service \(request.service) in this simulation", retryable: false))
            }
        }
        let answer = IOWire.answer(to: envelope, result: result!, timestampMilliseconds: self.now + latency)
        self.arrivals.push(answer, at: self.now + latency)
    }

    /// A stopped actor's mail, as the node treats it: new work is answered `shutting_down`, the
    /// rest is dropped (it was never logged).
    func refuseStopped(_ envelope: Envelope) {
        guard self.index[envelope.sender] != nil,
            let answer = Node.refusal(of: envelope, code: .shuttingDown, "\(envelope.recipient) is stopped", timestampMilliseconds: self.now)
        else { return }
        self.send(answer)
    }

    /// The delivery's actions on other actors, as the node performs them: a restart holds the
    /// child's deliveries until its backoff ends, a stop refuses its queued work, a spawn starts
    /// it again.
    func perform(_ actions: [Delivery.Action], from position: Int) {
        for action in actions {
            switch action {
            case .restart(let child, let until):
                guard let target = self.index[child] else { continue }
                // `until` is on the supervisor's (skewed) clock.
                self.heldUntil[target] = max(self.heldUntil[target], until - self.skew[position])
            case .stop(let child):
                guard let target = self.index[child], !self.stopped[target] else { continue }
                self.stopped[target] = true
                while let envelope = self.mailboxes[target].pop() { self.refuseStopped(envelope) }
            case .spawn(let child):
                guard let target = self.index[child] else { continue }
                self.stopped[target] = false
            }
        }
    }

    /// One actor with mail, chosen by the seed among all that have some (in the cells' fixed
    /// order, never a hash order); an actor in a restart's backoff waits.
    ///
    /// Counts the candidates, draws one, and walks to it: the same draw and the same choice as
    /// collecting them in an array, without allocating one per delivery.
    func pickActor() -> Int? {
        var candidates = 0
        for position in self.mailboxes.indices where self.isCandidate(position) { candidates += 1 }
        guard candidates > 0 else { return nil }
        var remaining = Int(self.random.next64() % UInt64(candidates))
        for position in self.mailboxes.indices where self.isCandidate(position) {
            if remaining == 0 { return position }
            remaining -= 1
        }
        preconditionFailure("the candidates changed while one was picked")
    }

    @inline(__always)
    func isCandidate(_ position: Int) -> Bool { !self.mailboxes[position].isEmpty && self.heldUntil[position] <= self.now }

    func count(_ fault: Fault) { self.faultCounts[fault.ordinal] = (self.faultCounts[fault.ordinal] ?? 0) + 1 }

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
        guard let envelope = self.mailboxes[position].pop() else { return false }
        if self.commitFails() {
            // Nothing was logged, so nothing is delivered: the message waits for the next try,
            // as production puts a batch back when its commit fails.
            self.mailboxes[position].push(envelope)
            self.trace.add(UInt64(0x5704_A6E0))
            return false
        }
        let cell = self.cells[position]
        let entropy = self.entropy(for: envelope, at: position)
        let clock = self.now + self.skew[position]
        guard let seq = self.log.append(envelope, actor: self.logKnowsPositions ? position : nil, clockMilliseconds: clock, entropy: entropy) else {
            self.traceRefusal(envelope)  // delivered before under this id: the exactly_once dedupe
            return false
        }
        self.synced(upTo: seq)
        let delivery = cell.deliver(envelope, DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: entropy, buggify: self.buggify))
        // The sender first: reading `payload` copies it (see `report`), and few senders are agents.
        if envelope.sender.isAgent, case .taskError(let error) = envelope.payload, error.code == .agentCrashed {
            self.count(.agentCrash)
        }
        self.traceDelivery(seq: seq, envelope: envelope, delivery: delivery)
        if self.cellIsClient[position], ClientMachine.outcome(envelope) != nil {
            _ = self.answers.increment(envelope.correlationID)
            self.lastAnswerAt = self.now
        }
        for correlation in delivery.cancelledTimers { self.arrivals.cancel(owner: position, correlation: correlation) }
        for message in delivery.messages {
            if message.timestampMilliseconds > clock {
                self.arrivals.push(message, at: max(self.now, message.timestampMilliseconds - self.skew[position]), timerOf: position)
            } else {
                self.send(message)
            }
        }
        if !delivery.actions.isEmpty {
            self.perform(delivery.actions, from: position)
            if delivery.actions.contains(where: { if case .restart = $0 { true } else { false } }) {
                self.restartDecisions[position].append((seq, clock))
            }
        }
        // `clock` is the actor's own (skewed) clock: its timers are stamped on it.
        self.sent[position].record(delivery, clock: clock)
        if cell.snapshotDue(everyDeliveries: self.configuration.snapshotEveryDeliveries, bytesPerDelivery: self.configuration.snapshotBytesPerDelivery)
            || (self.buggify?.fires(.snapshotNow, entropy: entropy) ?? false)
        {
            self.snapshot(position)
        }
        return true
    }

    /// The delivery's entropy: fresh from the seed. For an agent's request it is drawn again
    /// until the agents' crash rule says what the faults want: a crash during a storm on this
    /// agent; no crash when only storms (not `agent_crash`) are on. The log records it, so replay
    /// crashes the same deliveries.
    func entropy(for envelope: Envelope, at position: Int) -> UInt64 {
        var entropy = self.random.next64()
        // The payload last: reading it copies it (see `report`).
        guard self.crashesPerMillion > 0, self.cellIsAgent[position], case .taskRequest = envelope.payload else { return entropy }
        let storm = self.storming(position)
        guard storm || !self.configuredFaults.contains(.agentCrash) else { return entropy }
        // At 2% a crash takes ~50 draws; bounded in any case.
        var draws = 0
        while InjectedCrash.hits(entropy: entropy, perMillion: self.crashesPerMillion) != storm && draws < 100_000 {
            entropy = self.random.next64()
            draws += 1
        }
        if storm { self.count(.restartStorm) }
        return entropy
    }

    /// What a power loss would keep after this append, by the durability mode.
    func synced(upTo seq: UInt64) {
        switch self.durability {
        case .durable:
            self.syncedSeq = seq
        case .relaxed:
            // The meta page of the last commit is not synced: that commit may be undone.
            self.syncedSeq = seq - 1
        case .fast:
            if self.now - self.lastSyncAt >= self.configuration.fastSyncIntervalMilliseconds {
                self.syncedSeq = seq - 1  // the sync runs before this commit
                self.lastSyncAt = self.now
            }
        }
    }

    // MARK: The trace digest

    func traceDelivery(seq: UInt64, envelope: Envelope, delivery: Delivery) {
        self.trace.add(seq)
        self.trace.add(UInt64(bitPattern: self.now))
        self.trace.add(envelope)
        for message in delivery.messages { self.trace.add(message.id) }
    }

    func traceRefusal(_ envelope: Envelope) {
        self.trace.add(UInt64.max)
        self.trace.add(envelope.id)
    }

    // MARK: Oracles and the report

    func report(deliveries: Int) -> SimulationReport {
        var oracles: [(String, String)] = []
        // Every request gets exactly one terminal answer (no faults yet: at_most_once may not lose).
        var missing = 0
        var doubled = 0
        for id in self.submitted {
            let count = self.answers.seq(of: id) ?? 0
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
        // One pass over the log's agent traffic: the requests agents took, and the attempts they
        // answered `agent_crashed`, which are then left out. (The LMDB log reads every record
        // from disk; the in-memory one kept the few that matter aside as they were appended.)
        var crashedAttempts: Set<MessageID> = []
        var agentRequests: [(id: MessageID, task: MessageID)] = []
        self.log.forEachAgentTraffic { kind, envelope in
            switch kind {
            case .requestToAgent:
                agentRequests.append((envelope.id, envelope.correlationID))
            case .agentCrashed:
                if let parent = envelope.parentID { crashedAttempts.insert(parent) }
            case .other:
                break
            }
        }
        var agentDeliveries: [MessageID: Int] = [:]
        for request in agentRequests where !crashedAttempts.contains(request.id) { agentDeliveries[request.task, default: 0] += 1 }
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
        oracles.append(("nothing_left_pending", self.leftPending().map { "failed: " + $0 } ?? "ok"))
        oracles.append((
            "recovery_equals_committed_prefix",
            self.recoveryProblems.isEmpty ? "ok" : "failed: " + self.recoveryProblems.prefix(3).joined(separator: "; ")))
        oracles.append(("supervision_within_limits", self.supervisionProblems().map { "failed: " + $0 } ?? "ok"))
        oracles.append(("log_verifies", self.log.verify().map { "failed: " + $0 } ?? "ok"))
        let digest = self.trace.finalize()
        return SimulationReport(
            seed: self.configuration.seed, digest: digest, deliveries: deliveries,
            virtualMilliseconds: self.now - Self.epochMilliseconds, tasks: self.submitted.count,
            crashPoints: self.plannedCrashes, crashes: self.crashCount, recoveries: self.recoveryCount,
            faults: Fault.allCases.compactMap { fault in self.faultCounts[fault.ordinal].map { (fault.rawValue, $0) } },
            buggify: self.buggify?.report ?? [], durability: self.durability, tailRecordsLost: self.tailRecordsLost,
            oracles: oracles)
    }

    /// Once nothing is left to deliver, no tier may still hold a task: every entry of the
    /// orchestrator's pending table and of a supervisor's in-flight table must have been
    /// answered, cancelled, timed out or expired. An entry left over is a leak that grows with
    /// every lost answer (the at_most_once deadline exists for that).
    func leftPending() -> String? {
        guard self.ranToQuiescence else { return nil }
        var problems: [String] = []
        for cell in self.cells {
            let key = cell.address == .orchestrator ? "pending" : cell.address.isSupervisor ? "in_flight" : nil
            guard let key, case .array(let entries)? = cell.describeState()[key], !entries.isEmpty else { continue }
            problems.append("\(cell.address) still holds \(entries.count) tasks in \(key)")
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// Supervision limits: no supervisor decided more restarts within one period than its
    /// intensity allows (the next crash must escalate instead). Checked on the clock readings
    /// the supervisor saw, as its state machine counts them.
    func supervisionProblems() -> String? {
        for (supervisor, policy) in self.hierarchy.supervisionPolicies {
            guard let position = self.index[supervisor] else { continue }
            let times = self.restartDecisions[position].map(\.clock)
            var start = 0
            for (end, time) in times.enumerated() {
                while times[start] <= time - policy.periodMilliseconds { start += 1 }
                if end - start + 1 > policy.intensity {
                    return "\(supervisor) restarted \(end - start + 1) times within \(policy.periodMilliseconds) ms (intensity \(policy.intensity))"
                }
            }
        }
        return nil
    }
}

/// An I/O service as the simulator runs it: answers drawn from the seed, no outside world.
public protocol SimulatedIOService {
    func call(operation: String, arguments: MCPValue, random: inout SplitMix64) -> IOResult
}

/// The `files` service of the simulation: the workload's URLs (`Workload.content(at:)`), and
/// `io_error` for any other.
public struct WorkloadFiles: SimulatedIOService {
    public init() {}

    public func call(operation: String, arguments: MCPValue, random: inout SplitMix64) -> IOResult {
        guard operation == "read", case .string(let url)? = arguments["url"], let text = Workload.content(at: url) else {
            return .failure(TaskError(code: .ioError, message: "no such file in the simulation: \(arguments)", retryable: false))
        }
        let bytes = Array(text.utf8)
        return .success(.map([MCPValue.MapEntry("content", .binary(bytes)), MCPValue.MapEntry("size_bytes", .int(Int64(bytes.count)))]))
    }
}

/// Why a simulation cannot start.
public enum SimulationError: Error, CustomStringConvertible {
    /// A power loss truncates the log; LMDB records are never rewritten.
    case tailLossNeedsTheMemoryLog
    /// A simulation writes a log from its first record.
    case logNotEmpty(lastSeq: UInt64)
    case log(EventLogError)

    public var description: String {
        switch self {
        case .tailLossNeedsTheMemoryLog: "the tail_loss fault needs the in-memory log (an LMDB log's records are never rewritten)"
        case .logNotEmpty(let lastSeq): "the simulation's log must be empty; this one has \(lastSeq) records"
        case .log(let error): "the simulation's log: \(error)"
        }
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
    /// How often each enabled BUGGIFY site fired, in `BuggifySite` order.
    public var buggify: [(String, Int)]
    public var durability: Durability
    /// Records that power losses took (`tail_loss` in the relaxed and fast modes).
    public var tailRecordsLost: Int
    /// Oracle name and "ok" or "failed: …", in a fixed order.
    public var oracles: [(String, String)]

    public var passed: Bool { self.oracles.allSatisfy { $0.1 == "ok" } }
}

// MARK: - Arrivals: messages on their way, by arrival time

/// Messages sent but not yet in a mailbox, ordered by (arrival time, order of sending): a binary
/// heap of small keys, so the order never depends on hashing and the heap never moves envelopes.
/// The envelopes wait in a window indexed by order (orders only grow, and most messages arrive
/// within milliseconds, so the window stays short and needs no hashing). Timers can be
/// cancelled by (owner, task); the owner is the cell's position (a timer's owner is always a
/// cell: one whose sender is none could never be cancelled, so it waits as a plain message).
struct ArrivalQueue {
    struct Key: Comparable {
        var at: Int64
        var order: UInt64

        static func < (a: Key, b: Key) -> Bool { a.at != b.at ? a.at < b.at : a.order < b.order }
    }

    struct Waiting {
        var envelope: Envelope
        var timerOf: Int?
    }

    struct TimerKey: Hashable {
        var owner: Int
        var correlation: MessageID
    }

    var heap = MinHeap<Key>()
    var order: UInt64 = 0
    /// `window[i]` waits under order `base + i`; nil once delivered or cancelled.
    var window: [Waiting?] = []
    var base: UInt64 = 1
    var front = 0
    /// Looked up by key only, never iterated.
    var timers: [TimerKey: [UInt64]] = [:]

    var nextTime: Int64? { self.heap.first?.at }

    /// Consuming: a message the caller is done with moves into the window (no retain here and
    /// release at the caller); one it still needs is copied at the call.
    mutating func push(_ envelope: consuming Envelope, at: Int64, timerOf owner: Int? = nil) {
        self.order += 1
        if let owner { self.timers[TimerKey(owner: owner, correlation: envelope.correlationID), default: []].append(self.order) }
        self.window.append(Waiting(envelope: envelope, timerOf: owner))
        self.heap.push(Key(at: at, order: self.order))
    }

    mutating func take(_ order: UInt64) -> Waiting? {
        guard order >= self.base, order - self.base < UInt64(self.window.count) else { return nil }
        let slot = Int(order - self.base)
        // Moved out, leaving nil: no retain of the envelope here and release in the window.
        guard let entry = self.window[slot].take() else { return nil }
        // `front`: the empty slots before the first waiting one. Dropped when they are at least
        // half the window, so each slot is moved O(1) times.
        while self.front < self.window.count && self.window[self.front] == nil { self.front += 1 }
        if self.front > 64 && self.front * 2 >= self.window.count {
            self.window.removeFirst(self.front)
            self.base += UInt64(self.front)
            self.front = 0
        }
        return entry
    }

    mutating func cancel(owner: Int, correlation: MessageID) {
        guard let orders = self.timers.removeValue(forKey: TimerKey(owner: owner, correlation: correlation)) else { return }
        for order in orders { _ = self.take(order) }
    }

    /// The next message due by `now`, skipping cancelled timers.
    mutating func pop(dueBy now: Int64) -> Envelope? {
        while let first = self.heap.first, first.at <= now {
            _ = self.heap.popFirst()
            guard let entry = self.take(first.order) else { continue }  // cancelled
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
}
