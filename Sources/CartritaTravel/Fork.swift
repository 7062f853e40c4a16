import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime

/// What a fork found: how the counterfactual run went and how its outcomes differ from the
/// original's.
package struct ForkReport: Sendable {
    package struct TaskOutcome: Sendable, Equatable {
        /// `completed`, `failed` (with the error code when one was given) or `pending` (no
        /// terminal answer reached the client).
        package var status: String
        package var error: String?
    }

    package struct TaskDifference: Sendable {
        package var correlation: MessageID
        package var original: TaskOutcome
        package var fork: TaskOutcome
    }

    package struct ActorDifference: Sendable {
        package var address: Address
        package var originalDigest: String
        package var forkDigest: String
        package var same: Bool { self.originalDigest == self.forkDigest }
    }

    package var at: UInt64
    package var replacedSeq: UInt64
    package var replacedID: MessageID
    package var originalLastSeq: UInt64
    package var forkLastSeq: UInt64
    /// The fork's log is the original byte for byte (same last seq and head hash): the
    /// replacement changed nothing.
    package var identicalLog: Bool
    /// Records before the branch point, copied with their clock and entropy.
    package var copied: Int
    /// Original records after the branch that the fork delivered unchanged / changed (the fork's
    /// actors made them differently) / did not make at all.
    package var asRecorded: Int
    package var changed: Int
    package var originalOnly: Int
    /// Messages only the fork made (new ids: retries, new answers), delivered with fork-drawn
    /// entropy; I/O calls the original never made are answered `io_not_recorded`.
    package var new: Int
    /// Messages the fork made that the original still owed at its end: left owed, as there.
    package var heldBack: Int
    package var tasksCompared: Int
    package var tasks: [TaskDifference]
    package var actors: [ActorDifference]
    package var seconds: Double

    /// At most this many changed tasks are listed (`tasks_changed` counts them all).
    package static let maxListedTasks = 1_000
    package var tasksChanged: Int

    package var json: JSON {
        func outcome(_ outcome: TaskOutcome) -> JSON {
            var members: [(String, JSON)] = [("status", .string(outcome.status))]
            if let error = outcome.error { members.append(("error", .string(error))) }
            return .object(members)
        }
        return .object([
            ("at", .uint(self.at)),
            ("replaced_seq", .uint(self.replacedSeq)),
            ("replaced_id", .string(self.replacedID.description)),
            ("original_last_seq", .uint(self.originalLastSeq)),
            ("fork_last_seq", .uint(self.forkLastSeq)),
            ("identical_log", .bool(self.identicalLog)),
            ("records", .object([
                ("copied", .int(Int64(self.copied))), ("as_recorded", .int(Int64(self.asRecorded))),
                ("changed", .int(Int64(self.changed))), ("original_only", .int(Int64(self.originalOnly))),
                ("new", .int(Int64(self.new))), ("held_back", .int(Int64(self.heldBack))),
            ])),
            ("tasks_compared", .int(Int64(self.tasksCompared))),
            ("tasks_changed", .int(Int64(self.tasksChanged))),
            ("tasks", .array(self.tasks.map { task in
                .object([
                    ("correlation_id", .string(task.correlation.description)), ("original", outcome(task.original)),
                    ("fork", outcome(task.fork)),
                ])
            })),
            ("actors_changed", .int(Int64(self.actors.filter { !$0.same }.count))),
            ("actors", .object(self.actors.map { actor in
                (actor.address.rawValue, .object([
                    ("original_digest", .string(actor.originalDigest)), ("fork_digest", .string(actor.forkDigest)),
                    ("same", .bool(actor.same)),
                ]))
            })),
            ("seconds", .double(self.seconds)),
        ])
    }
}

/// A counterfactual run: the log up to a point, one recorded message or I/O result swapped,
/// and the same actors run forward from there into a new log.
///
/// The fork follows the original's delivery order. Before the branch point the records are
/// copied with their clock and entropy (same bytes, same hash chain). From it on, each original
/// record is taken in turn: an input (a client's request, an I/O answer, a runtime refusal) is
/// delivered again if the fork still made what it answers; a message an actor sent is delivered
/// in the version the fork's actor made under the same id (identical or not), with the recorded
/// clock and entropy, and is left out if the fork's actor did not make it. Messages only the
/// fork made (new ids) are delivered right after the delivery that made them (timers once the
/// recorded clock passes them, or at the end), with entropy drawn from a generator seeded by the
/// branch point. So the same fork of the same log gives the same new log, and a replacement
/// equal to the record gives back the original log byte for byte.
///
/// The actors are the production cells (the hierarchy's `makeCells`), as in recovery and the
/// simulator; the node's mailboxes, restart holds and overload refusals are not re-enacted
/// (the recorded order already holds their effect on recorded messages).
package struct Fork {
    /// New messages (not in the original) the fork delivers before it gives up with
    /// `fork_too_long`: a retry loop that never ends must not run forever.
    package static let maxNewDeliveries = 1_000_000
    /// Records buffered before they are appended to the new log.
    static let appendBatchRecords = 1_024
    /// Original records read per read transaction.
    static let readBatchRecords = 512

    package let travel: TimeTravel
    package let at: UInt64
    package let replacedSeq: UInt64
    package let replacement: ForkReplacement

    package init(travel: TimeTravel, at: UInt64, replacedSeq: UInt64, replacement: ForkReplacement) {
        self.travel = travel
        self.at = at
        self.replacedSeq = replacedSeq
        self.replacement = replacement
    }

    /// Checks the seqs and the replacement against the original log without writing anything.
    package func replacedEnvelope() throws(TravelError) -> (original: LogRecord, replacement: Envelope) {
        let log = self.travel.log
        let lastSeq = log.lastSeq
        guard self.at >= 1, self.at <= lastSeq else {
            throw TravelError(.seqOutOfRange, "--at \(self.at) is outside the log (1...\(lastSeq))")
        }
        guard self.replacedSeq >= 1, self.replacedSeq <= lastSeq else {
            throw TravelError(.seqOutOfRange, "--replace \(self.replacedSeq) is outside the log (1...\(lastSeq))")
        }
        guard self.replacedSeq >= self.at else {
            throw TravelError(.seqOutOfRange, "--replace \(self.replacedSeq) is before the branch point \(self.at): the fork starts at --at and can only change what comes after it")
        }
        do {
            guard let record = try log.record(self.replacedSeq) else { throw TravelError(.log, "record \(self.replacedSeq) is missing") }
            var request: Envelope?
            if record.envelope.sender.isIO, let parent = record.envelope.parentID, let seq = try log.seq(ofMessage: parent) {
                request = try log.record(seq)?.envelope
            }
            return (record, try self.replacement.envelope(replacing: record.envelope, request: request))
        } catch {
            throw TravelError.wrapping(error)
        }
    }

    /// Runs the fork into `output`, an empty log opened for writing.
    package func run(into output: EventLog) throws(TravelError) -> ForkReport {
        guard output.lastSeq == 0 else {
            throw TravelError(.forkTargetNotEmpty, "the output folder already holds a log of \(output.lastSeq) records: fork into a new folder")
        }
        let (replacedRecord, replacement) = try self.replacedEnvelope()
        let started = ContinuousClock.now
        do {
            var engine = try ForkEngine(fork: self, output: output, replacement: replacement)
            return try engine.run(replacedID: replacedRecord.envelope.id, started: started)
        } catch {
            throw TravelError.wrapping(error)
        }
    }
}

/// The forward run of one fork (single-threaded, deterministic).
struct ForkEngine {
    let fork: Fork
    let original: EventLog
    let output: EventLog
    let replacement: Envelope
    var cells: [Address: any ActorCell] = [:]
    /// Made by the fork, waiting for the original position of their id (or of their refusal).
    var pending: [MessageID: Envelope] = [:]
    /// The timers among `pending` (an actor's messages to itself), by owner and task, so that
    /// cancelling a task's timers does not walk every pending message.
    var pendingTimers: [TimerKey: [MessageID]] = [:]

    struct TimerKey: Hashable {
        var owner: Address
        var correlation: MessageID
    }
    /// Made by the fork only; delivered in order, timers when due.
    var fresh: [Envelope] = []
    /// Ids the fork has appended after the branch point (the new log's dedupe, as the id index).
    var appended: Set<MessageID> = []
    /// I/O requests the fork delivered: whether each equals the original's request under its id.
    var ioRequests: [MessageID: Bool] = [:]
    var buffer: [(envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64)] = []
    var nextSeq: UInt64
    var cursor: UInt64 = 0
    var clock: Int64 = 0
    var entropy: SplitMix64
    var originalOutcomes: [MessageID: ForkReport.TaskOutcome] = [:]
    var forkOutcomes: [MessageID: ForkReport.TaskOutcome] = [:]
    var touched: Set<MessageID> = []
    var counts = (asRecorded: 0, changed: 0, originalOnly: 0, new: 0, heldBack: 0)

    init(fork: Fork, output: EventLog, replacement: Envelope) throws {
        self.fork = fork
        self.original = fork.travel.log
        self.output = output
        self.replacement = replacement
        self.nextSeq = fork.at
        // Seeded by the branch: the same fork draws the same entropy for its new deliveries.
        self.entropy = SplitMix64(seed: 0x666F_726B_0000_0000 ^ (fork.at &* 0x9E37_79B9_7F4A_7C15) ^ fork.replacedSeq)
    }

    mutating func run(replacedID: MessageID, started: ContinuousClock.Instant) throws -> ForkReport {
        let lastSeq = self.original.lastSeq
        // 1. The prefix, record for record.
        var seq: UInt64 = 1
        while seq < self.fork.at {
            let records = try self.original.records(from: seq, limit: min(Fork.appendBatchRecords, Int(self.fork.at - seq)))
            guard !records.isEmpty else { break }
            let seqs = try self.output.appendInOrderAndWait(records.map { ($0.envelope, $0.header.clockMilliseconds, $0.header.entropy) })
            guard seqs == records.map(\.header.seq) else { throw TravelError(.log, "the copy of records \(seq)... got other seqs") }
            seq = records.last!.header.seq + 1
        }
        // 2. Every actor as it was just before the branch, with what it had sent that the log
        //    did not hold yet there.
        if self.fork.at > 1 {
            var owed: [Envelope] = []
            for rebuilt in try self.fork.travel.rebuild(at: self.fork.at - 1, actors: nil, trackOwed: true) {
                self.cells[rebuilt.cell.address] = rebuilt.cell
                owed += rebuilt.owed
            }
            self.cursor = self.fork.at - 1
            try self.place(owed)
        } else {
            for cell in self.fork.travel.hierarchy.makeCells() { self.cells[cell.address] = cell }
        }
        // 3. Forward, in the original's order.
        var next = self.fork.at
        while next <= lastSeq {
            let records = try self.original.records(from: next, limit: Fork.readBatchRecords)
            guard !records.isEmpty else { break }
            for record in records { try self.step(record) }
            next = records.last!.header.seq + 1
        }
        // 4. What only the fork made and is still waiting (timers, answers made late) runs now,
        //    except what the original too still owed at its end.
        if !self.fresh.isEmpty {
            let owedAtEnd = Set(try self.fork.travel.rebuild(at: lastSeq, actors: nil, trackOwed: true).flatMap { $0.owed.map(\.id) })
            self.counts.heldBack = self.fresh.filter { owedAtEnd.contains($0.id) }.count
            self.fresh.removeAll { owedAtEnd.contains($0.id) }
            while !self.fresh.isEmpty {
                let index = self.fresh.indices.min { (self.fresh[$0].timestampMilliseconds, $0) < (self.fresh[$1].timestampMilliseconds, $1) }!
                let message = self.fresh.remove(at: index)
                self.clock = max(self.clock, message.timestampMilliseconds)
                try self.deliverFresh(message)
            }
        }
        try self.flush()
        try self.output.flushAndWait()
        return try self.report(replacedID: replacedID, started: started)
    }

    // MARK: One original record

    mutating func step(_ record: LogRecord) throws {
        let envelope = record.envelope
        let seq = record.header.seq
        self.clock = max(self.clock, record.header.clockMilliseconds)
        try self.deliverDueFresh()
        self.cursor = seq
        self.touched.insert(envelope.correlationID)
        if envelope.recipient.isClient, let outcome = Self.outcome(envelope) { self.originalOutcomes[envelope.correlationID] = outcome }
        let context = (clock: record.header.clockMilliseconds, entropy: record.header.entropy)
        if seq == self.fork.replacedSeq {
            self.pending[envelope.id] = nil
            try self.deliver(self.replacement, clock: context.clock, entropy: context.entropy)
            if self.replacement == envelope { self.counts.asRecorded += 1 } else { self.counts.changed += 1 }
            return
        }
        if let parent = envelope.parentID, envelope.id == parent.derived(tag: Node.refusalTag) {
            // The runtime refused `parent` for its recipient: again, if the fork made it.
            if self.pending.removeValue(forKey: parent) != nil {
                try self.deliver(envelope, clock: context.clock, entropy: context.entropy)
                self.counts.asRecorded += 1
            } else {
                self.counts.originalOnly += 1
            }
            return
        }
        if envelope.sender.isIO, let request = envelope.parentID {
            // The recorded answer stands for a request the fork made as the original did.
            let same = try self.ioRequests[request] ?? (self.original.seq(ofMessage: request).map { $0 < self.fork.at } ?? false)
            guard self.ioRequests[request] != nil || same else {
                self.counts.originalOnly += 1
                return
            }
            self.ioRequests[request] = nil
            if same {
                try self.deliver(envelope, clock: context.clock, entropy: context.entropy)
                self.counts.asRecorded += 1
            } else {
                try self.deliver(Self.unrecorded(answering: envelope, clock: context.clock), clock: context.clock, entropy: context.entropy)
                self.counts.changed += 1
            }
            return
        }
        guard let sender = self.cells[envelope.sender], !sender.address.isClient else {
            // From outside the replayed actors (a client, another node): an input.
            try self.deliver(envelope, clock: context.clock, entropy: context.entropy)
            self.counts.asRecorded += 1
            return
        }
        guard let mine = self.pending.removeValue(forKey: envelope.id) else {
            self.counts.originalOnly += 1
            return
        }
        try self.deliver(mine, clock: context.clock, entropy: context.entropy)
        if mine == envelope { self.counts.asRecorded += 1 } else { self.counts.changed += 1 }
    }

    /// An I/O answer for a request the fork made differently: the outside world was not asked
    /// (a fork calls nothing), so the call fails with `io_not_recorded`.
    static func unrecorded(answering answer: Envelope, clock: Int64) -> Envelope {
        var request = answer
        request.id = answer.parentID ?? answer.id
        request.sender = answer.recipient
        request.recipient = answer.sender
        return Self.unrecorded(request: request, clock: clock, id: answer.id)
    }

    static func unrecorded(request: Envelope, clock: Int64, id: MessageID? = nil) -> Envelope {
        var answer = IOWire.answer(
            to: request,
            result: .failure(TaskError(
                code: TaskErrorCode(rawValue: "io_not_recorded"), message: "a fork calls nothing outside: the original never made this call",
                retryable: false)),
            timestampMilliseconds: clock)
        if let id { answer.id = id }
        return answer
    }

    // MARK: Delivering

    mutating func deliver(_ envelope: Envelope, clock: Int64, entropy: UInt64) throws {
        guard !self.appended.contains(envelope.id) else { return }  // the id index refuses a second copy
        let seq = self.nextSeq
        self.nextSeq += 1
        self.appended.insert(envelope.id)
        self.buffer.append((envelope, clock, entropy))
        if self.buffer.count >= Fork.appendBatchRecords { try self.flush() }
        self.touched.insert(envelope.correlationID)
        if envelope.recipient.isClient, let outcome = Self.outcome(envelope) { self.forkOutcomes[envelope.correlationID] = outcome }
        if envelope.recipient.isIO {
            if let seq = try self.original.seq(ofMessage: envelope.id), let recorded = try self.original.record(seq) {
                self.ioRequests[envelope.id] = recorded.envelope == envelope
            } else {
                self.ioRequests[envelope.id] = false
            }
            return
        }
        guard let cell = self.cells[envelope.recipient] else { return }
        // The origin's BUGGIFY sites (a simulated run's), so a fork of a simulation's log makes the
        // run's choices wherever it does not differ.
        let context = DeliveryContext(seq: seq, clockMilliseconds: clock, entropy: entropy, buggify: self.fork.travel.buggify)
        let delivery = cell.deliver(envelope, context)
        for correlation in delivery.cancelledTimers {
            let owner = cell.address
            func isCancelled(_ message: Envelope) -> Bool {
                message.sender == owner && message.recipient == owner && message.correlationID == correlation && message.timestampMilliseconds > clock
            }
            self.fresh.removeAll(where: isCancelled)
            let key = TimerKey(owner: owner, correlation: correlation)
            if let ids = self.pendingTimers.removeValue(forKey: key) {
                var kept: [MessageID] = []
                for id in ids {
                    guard let message = self.pending[id] else { continue }  // delivered meanwhile
                    if isCancelled(message) { self.pending[id] = nil } else { kept.append(id) }
                }
                if !kept.isEmpty { self.pendingTimers[key] = kept }
            }
        }
        try self.place(delivery.messages)
    }

    /// Files what the fork's actors made: under an id the original delivers later, it waits for
    /// that position; otherwise it is new.
    mutating func place(_ messages: [Envelope]) throws {
        guard !messages.isEmpty else { return }
        let ids = messages.map(\.id)
        let found = try self.original.seqs(ofMessages: ids + ids.map { $0.derived(tag: Node.refusalTag) })
        for (index, message) in messages.enumerated() {
            if self.appended.contains(message.id) { continue }
            if let seq = found[index] {
                if seq < self.fork.at { continue }  // in the copied prefix: delivered there
                if seq > self.cursor {
                    self.wait(message)
                    continue
                }
            } else if let refused = found[ids.count + index], refused > self.cursor {
                self.wait(message)
                continue
            }
            self.fresh.append(message)
        }
    }

    mutating func wait(_ message: Envelope) {
        self.pending[message.id] = message
        if message.sender == message.recipient {
            self.pendingTimers[TimerKey(owner: message.sender, correlation: message.correlationID), default: []].append(message.id)
        }
    }

    mutating func deliverDueFresh() throws {
        while let index = self.fresh.firstIndex(where: { $0.timestampMilliseconds <= self.clock }) {
            try self.deliverFresh(self.fresh.remove(at: index))
        }
    }

    mutating func deliverFresh(_ message: Envelope) throws {
        self.counts.new += 1
        guard self.counts.new <= Fork.maxNewDeliveries else {
            throw TravelError(.forkTooLong, "the fork made more than \(Fork.maxNewDeliveries) messages the original did not have")
        }
        try self.deliver(message, clock: self.clock, entropy: self.entropy.next())
        if message.recipient.isIO {
            // A call the original never made: answered at once, without calling anything.
            self.fresh.append(Self.unrecorded(request: message, clock: self.clock))
        }
    }

    mutating func flush() throws {
        guard !self.buffer.isEmpty else { return }
        let first = self.nextSeq - UInt64(self.buffer.count)
        let seqs = try self.output.appendInOrderAndWait(self.buffer)
        guard seqs.first == first, seqs.last == self.nextSeq - 1 else {
            throw TravelError(.log, "the fork's log gave seqs \(seqs.first ?? 0)... where \(first)... was delivered")
        }
        self.buffer.removeAll(keepingCapacity: true)
    }

    static func outcome(_ envelope: Envelope) -> ForkReport.TaskOutcome? {
        switch ClientMachine.outcome(envelope) {
        case .completed?: return ForkReport.TaskOutcome(status: "completed")
        case .failed?:
            switch envelope.payload {
            case .taskError(let error): return ForkReport.TaskOutcome(status: "failed", error: error.code.rawValue)
            case .taskResponse(let response): return ForkReport.TaskOutcome(status: "failed", error: response.status.rawValue)
            default: return ForkReport.TaskOutcome(status: "failed")
            }
        case nil: return nil
        }
    }

    // MARK: The difference

    func report(replacedID: MessageID, started: ContinuousClock.Instant) throws -> ForkReport {
        var tasks: [ForkReport.TaskDifference] = []
        var changed = 0
        for correlation in self.touched.sorted() {
            var before: ForkReport.TaskOutcome?
            if self.originalOutcomes[correlation] == nil || self.forkOutcomes[correlation] == nil {
                // A terminal answer before the branch holds for both.
                for seq in try self.original.seqs(correlation: correlation) where seq < self.fork.at {
                    if let record = try self.original.record(seq), record.envelope.recipient.isClient, let outcome = Self.outcome(record.envelope) {
                        before = outcome
                    }
                }
            }
            let pending = ForkReport.TaskOutcome(status: "pending")
            let original = self.originalOutcomes[correlation] ?? before ?? pending
            let fork = self.forkOutcomes[correlation] ?? before ?? pending
            guard original != fork else { continue }
            changed += 1
            if tasks.count < ForkReport.maxListedTasks { tasks.append(.init(correlation: correlation, original: original, fork: fork)) }
        }
        let originalStates = try self.fork.travel.state(at: self.original.lastSeq)
        var actors: [ForkReport.ActorDifference] = []
        for state in originalStates.actors {
            let forkDigest = self.cells[state.address].map { Recovery.digest(of: $0) } ?? ""
            actors.append(.init(address: state.address, originalDigest: state.digest, forkDigest: forkDigest))
        }
        let originalStat = try self.original.stat()
        let forkStat = try self.output.stat()
        return ForkReport(
            at: self.fork.at, replacedSeq: self.fork.replacedSeq, replacedID: replacedID, originalLastSeq: originalStat.lastSeq,
            forkLastSeq: forkStat.lastSeq, identicalLog: originalStat.lastSeq == forkStat.lastSeq && originalStat.headHash == forkStat.headHash,
            copied: Int(self.fork.at - 1), asRecorded: self.counts.asRecorded, changed: self.counts.changed,
            originalOnly: self.counts.originalOnly, new: self.counts.new, heldBack: self.counts.heldBack, tasksCompared: self.touched.count,
            tasks: tasks, actors: actors, seconds: secondsSince(started), tasksChanged: changed)
    }
}
