import CartritaCodec
import CartritaEnvelope

// MARK: - Snapshot formats of the orchestrator and the domain supervisors

/// Format 1 of the orchestrator's and the domain supervisors' snapshots: the state as one msgpack
/// map, written by `MsgPackWriter` and read back by `EnvelopeDecoder.decodeValue`. The bytes are
/// fixed by this file and the codec alone (no Codable, no Foundation), so the same state always
/// gives the same bytes, which the node hashes into its state digest.
///
/// ```
/// orchestrator                              domain supervisor
/// format     "cartrita.orchestrator.state"  format       "cartrita.domain_supervisor.state"
/// version    2 (1 still decodes)            version      2 (1 still decodes)
/// pending    [{request, supervisor}]        supervision  {children, restart_times,
/// routed     int                                          consecutive_crashes, escalated}
/// unknown    int                            budget       {slots_in_use, tokens_reserved,
/// answered   int                                          tokens_spent, cost_reserved_usd,
/// cancelled  int                                          cost_spent_usd}
///                                           in_flight    [{request, agent, reserved, retries}]
///                                           grants       [{for_correlation_id, amounts, lease_ms}]
///                                           paused bool, paused_by str|nil, pause_reason
///                                           str|nil (version 2), then completed, failed,
///                                           restarts, cancelled, timed_out int
/// ```
/// Every key is always present, in this order (an absent optional is nil). Envelopes are `bin`
/// holding `EnvelopeEncoder`'s canonical bytes, ids 16-byte `bin`, addresses strings, money
/// float64 (bit for bit), amounts `{tokens, cost_usd, concurrency_slots, memory_mb}`. What the
/// actor's configuration says (supervision policy, budget limits, routes, agents) is not stored:
/// it comes from the actor the snapshot is restored into.
///
/// Decoding accepts exactly this shape: the format name first, then the version, then every key
/// in order with its type and range, and the invariants the steps rely on (one crash count per
/// child; a budget that holds every reservation its tasks and grants will settle). Anything else
/// is a `StateDecodingError` that names the field: never a trap, never a repair.
enum RuntimeStateFormat {
    static let orchestrator = "cartrita.orchestrator.state"
    static let domainSupervisor = "cartrita.domain_supervisor.state"

    /// Largest snapshot read back. A larger state cannot be restored from a snapshot; the
    /// runtime then replays the log instead.
    static let maxSnapshotBytes = 1 << 30
    /// Fewest entries per array or map a snapshot may hold; tables larger than the codec's
    /// default (the orchestrator's pending table may hold 100 000 tasks) raise it.
    static let minContainerEntries = 1 << 20
    /// Deepest nesting of a snapshot: root map, table, row, amounts.
    static let maxDepth = 6

    static func decoderLimits(maxEntries: Int) -> CodecLimits {
        CodecLimits(
            maxEnvelopeBytes: Self.maxSnapshotBytes,
            maxStringBytes: CodecLimits.default.maxStringBytes,
            // An envelope inside is at most what the codec accepts as an envelope.
            maxBinaryBytes: CodecLimits.default.maxEnvelopeBytes,
            maxDepth: Self.maxDepth,
            maxContainerEntries: max(maxEntries, Self.minContainerEntries))
    }

    // MARK: Writing

    /// How a state becomes a value: for a snapshot (ids and envelopes as bytes) or for display
    /// (ids as canonical strings, envelopes summarised).
    enum Style {
        case snapshot(EnvelopeEncoder)
        case display

        func envelope(_ envelope: Envelope) -> MCPValue {
            switch self {
            case .snapshot(let encoder):
                do {
                    return .binary(try encoder.encode(envelope))
                } catch {
                    // Every envelope a state holds was read from the log under the same limits.
                    preconditionFailure("an envelope held in actor state cannot be encoded: \(error)")
                }
            case .display:
                let taskType: MCPValue
                if case .taskRequest(let request) = envelope.payload {
                    taskType = .string(request.task.type)
                } else {
                    taskType = .null
                }
                return .map([
                    MCPValue.MapEntry("id", .string(envelope.id.description)),
                    MCPValue.MapEntry("correlation_id", .string(envelope.correlationID.description)),
                    MCPValue.MapEntry("sender", .string(envelope.sender.rawValue)),
                    MCPValue.MapEntry("type", .string(envelope.type.rawValue)),
                    MCPValue.MapEntry("task_type", taskType),
                ])
            }
        }

        func id(_ id: MessageID) -> MCPValue {
            switch self {
            case .snapshot: .binary(id.bytes)
            case .display: .string(id.description)
            }
        }

        var isDisplay: Bool {
            if case .display = self { return true }
            return false
        }
    }

    static func header(_ format: String, _ version: UInt32) -> [MCPValue.MapEntry] {
        [MCPValue.MapEntry("format", .string(format)), MCPValue.MapEntry("version", .int(Int64(version)))]
    }

    static func int(_ value: Int) -> MCPValue { .int(Int64(value)) }

    static func optional(_ value: Int64?) -> MCPValue { value.map { .int($0) } ?? .null }

    static func optional(_ value: Double?) -> MCPValue { value.map { .double($0) } ?? .null }

    static let amountKeys = ["tokens", "cost_usd", "concurrency_slots", "memory_mb"]

    static func amounts(_ amounts: ResourceAmounts) -> MCPValue {
        .map([
            MCPValue.MapEntry("tokens", Self.optional(amounts.tokens)),
            MCPValue.MapEntry("cost_usd", Self.optional(amounts.costUSD)),
            MCPValue.MapEntry("concurrency_slots", Self.optional(amounts.concurrencySlots)),
            MCPValue.MapEntry("memory_mb", Self.optional(amounts.memoryMB)),
        ])
    }

    static func bytes(_ value: MCPValue) -> [UInt8] {
        let writer = MsgPackWriter()
        writer.write(value)
        return writer.bytes
    }

    // MARK: Reading

    /// Decodes the bytes and checks the format name and version before anything else, so a
    /// snapshot of another actor or another format is named as such, not as a missing key.
    static func open(
        _ bytes: [UInt8], format: String, version: UInt32, keys: [String], maxEntries: Int
    ) throws(StateDecodingError) -> Fields {
        try self.open(bytes, format: format, versions: [version: keys], maxEntries: maxEntries).fields
    }

    /// As `open`, for a format that reads several versions: `versions` gives each readable
    /// version's keys; the answer says which version the snapshot is.
    static func open(
        _ bytes: [UInt8], format: String, versions: [UInt32: [String]], maxEntries: Int
    ) throws(StateDecodingError) -> (fields: Fields, version: UInt32) {
        let value: MCPValue
        do {
            value = try EnvelopeDecoder(limits: Self.decoderLimits(maxEntries: maxEntries)).decodeValue(bytes)
        } catch {
            throw StateDecodingError("not a readable snapshot: \(error)")
        }
        guard case .map(let entries) = value else {
            throw StateDecodingError("not a snapshot: the top level is \(Self.kind(value)), not a map")
        }
        guard let first = entries.first, first.key == "format" else {
            throw StateDecodingError("not a snapshot: the first key is not \"format\"")
        }
        guard case .string(let name) = first.value else {
            throw StateDecodingError("format: expected a string, got \(Self.kind(first.value))")
        }
        guard name == format else { throw StateDecodingError("a snapshot in format \"\(name)\", expected \"\(format)\"") }
        guard entries.count >= 2, entries[1].key == "version" else {
            throw StateDecodingError("no \"version\" after the format name")
        }
        guard case .int(let found) = entries[1].value else {
            throw StateDecodingError("version: expected an integer, got \(Self.kind(entries[1].value))")
        }
        guard let version = UInt32(exactly: found), let keys = versions[version] else {
            let readable = versions.keys.sorted().map(String.init).joined(separator: ", ")
            throw StateDecodingError("format version \(found); this build reads version \(readable)")
        }
        return (try Fields(value, "", keys: ["format", "version"] + keys), version)
    }

    /// A map whose keys were checked to be exactly the expected ones, in order.
    struct Fields {
        let entries: [MCPValue.MapEntry]
        let path: String

        init(_ value: MCPValue, _ path: String, keys: [String]) throws(StateDecodingError) {
            guard case .map(let entries) = value else {
                throw RuntimeStateFormat.error(path, "expected a map, got \(RuntimeStateFormat.kind(value))")
            }
            guard entries.count == keys.count, zip(entries, keys).allSatisfy({ $0.key == $1 }) else {
                throw RuntimeStateFormat.error(
                    path, "keys [\(entries.map(\.key).joined(separator: ", "))], expected [\(keys.joined(separator: ", "))]")
            }
            self.entries = entries
            self.path = path
        }

        func path(_ key: String) -> String { self.path.isEmpty ? key : "\(self.path).\(key)" }

        subscript(key: String) -> MCPValue {
            guard let entry = self.entries.first(where: { $0.key == key }) else {
                preconditionFailure("\(self.path(key)) is read but was not among the checked keys")
            }
            return entry.value
        }

        func map(_ key: String, keys: [String]) throws(StateDecodingError) -> Fields {
            try Fields(self[key], self.path(key), keys: keys)
        }

        /// The items with their paths.
        func array(_ key: String) throws(StateDecodingError) -> [(value: MCPValue, path: String)] {
            let path = self.path(key)
            guard case .array(let items) = self[key] else {
                throw RuntimeStateFormat.error(path, "expected an array, got \(RuntimeStateFormat.kind(self[key]))")
            }
            return items.enumerated().map { ($0.element, "\(path)[\($0.offset)]") }
        }

        func int64(_ key: String) throws(StateDecodingError) -> Int64 { try RuntimeStateFormat.int64(self[key], self.path(key)) }

        func count(_ key: String) throws(StateDecodingError) -> Int { try RuntimeStateFormat.count(self[key], self.path(key)) }

        func bool(_ key: String) throws(StateDecodingError) -> Bool {
            guard case .bool(let flag) = self[key] else {
                throw RuntimeStateFormat.error(self.path(key), "expected a boolean, got \(RuntimeStateFormat.kind(self[key]))")
            }
            return flag
        }

        func double(_ key: String) throws(StateDecodingError) -> Double { try RuntimeStateFormat.double(self[key], self.path(key)) }

        func optionalInt64(_ key: String) throws(StateDecodingError) -> Int64? {
            if case .null = self[key] { return nil }
            return try self.int64(key)
        }

        func optionalString(_ key: String) throws(StateDecodingError) -> String? {
            switch self[key] {
            case .null: return nil
            case .string(let text): return text
            default: throw RuntimeStateFormat.error(self.path(key), "expected a string or nil, got \(RuntimeStateFormat.kind(self[key]))")
            }
        }

        func optionalDouble(_ key: String) throws(StateDecodingError) -> Double? {
            if case .null = self[key] { return nil }
            return try self.double(key)
        }

        func address(_ key: String) throws(StateDecodingError) -> Address { try RuntimeStateFormat.address(self[key], self.path(key)) }

        func id(_ key: String) throws(StateDecodingError) -> MessageID {
            let path = self.path(key)
            guard case .binary(let bytes) = self[key] else {
                throw RuntimeStateFormat.error(path, "expected a 16-byte id, got \(RuntimeStateFormat.kind(self[key]))")
            }
            guard let id = MessageID(bytes: bytes) else { throw RuntimeStateFormat.error(path, "an id is 16 bytes, got \(bytes.count)") }
            return id
        }

        func envelope(_ key: String, _ decoder: EnvelopeDecoder) throws(StateDecodingError) -> Envelope {
            let path = self.path(key)
            guard case .binary(let bytes) = self[key] else {
                throw RuntimeStateFormat.error(path, "expected an encoded envelope, got \(RuntimeStateFormat.kind(self[key]))")
            }
            do {
                return try decoder.decode(bytes)
            } catch {
                throw RuntimeStateFormat.error(path, "not a valid envelope: \(error)")
            }
        }

        func amounts(_ key: String) throws(StateDecodingError) -> ResourceAmounts {
            let fields = try self.map(key, keys: RuntimeStateFormat.amountKeys)
            return ResourceAmounts(
                tokens: try fields.optionalInt64("tokens"), costUSD: try fields.optionalDouble("cost_usd"),
                concurrencySlots: try fields.optionalInt64("concurrency_slots"), memoryMB: try fields.optionalInt64("memory_mb"))
        }
    }

    static func error(_ path: String, _ message: String) -> StateDecodingError {
        StateDecodingError(path.isEmpty ? message : "\(path): \(message)")
    }

    static func int64(_ value: MCPValue, _ path: String) throws(StateDecodingError) -> Int64 {
        guard case .int(let number) = value else {
            throw Self.error(path, "expected an integer that fits Int64, got \(Self.kind(value))")
        }
        return number
    }

    /// A count or a non-negative quantity.
    static func count(_ value: MCPValue, _ path: String) throws(StateDecodingError) -> Int {
        let number = try Self.int64(value, path)
        guard number >= 0, let count = Int(exactly: number) else { throw Self.error(path, "expected a count, got \(number)") }
        return count
    }

    static func double(_ value: MCPValue, _ path: String) throws(StateDecodingError) -> Double {
        guard case .double(let number) = value else { throw Self.error(path, "expected a float64, got \(Self.kind(value))") }
        return number
    }

    static func address(_ value: MCPValue, _ path: String) throws(StateDecodingError) -> Address {
        guard case .string(let text) = value else { throw Self.error(path, "expected an address, got \(Self.kind(value))") }
        do {
            return try Address(validating: text)
        } catch {
            throw Self.error(path, "\(error)")
        }
    }

    static func kind(_ value: MCPValue) -> String {
        switch value {
        case .null: "nil"
        case .bool: "a boolean"
        case .int, .uint: "an integer"
        case .float: "a float32"
        case .double: "a float64"
        case .string: "a string"
        case .binary: "binary"
        case .array: "an array"
        case .map: "a map"
        }
    }
}

// MARK: - The orchestrator's snapshot

extension Orchestrator {
    /// 2 added `expired`. Version 1 still decodes (with `expired` 0); recovery itself reads only
    /// the current version and replays past older snapshots, as the recovery rules say.
    public var stateFormatVersion: UInt32 { 2 }

    /// The bytes `RuntimeStateFormat.bytes(self.stateValue(state, .snapshot(…)))` gives (a test
    /// compares them), written straight into one buffer: the pending table can hold thousands
    /// of requests and is snapshotted every thousand deliveries, and building the value tree
    /// first cost an array per request and a second pass over everything.
    public func encodeState(_ state: State) -> [UInt8] {
        // Room for the whole table at once (a pending request, kept without its input, is a
        // few hundred bytes): growing from 4 KiB by doubling copied and touched the buffer
        // again at every step. Room never written costs nothing (the pages are never touched).
        let writer = MsgPackWriter(initialCapacityBytes: 4_096 + state.pending.count * 512)
        self.encodeState(state, into: writer)
        return writer.bytes
    }

    /// `encodeState(state)`'s bytes, appended to `writer`: a driver that snapshots often (the
    /// simulator) writes them into a buffer it reuses, instead of a new one of the table's size
    /// each time, whose fresh pages were faulted in on every snapshot and then copied out.
    public func encodeState(_ state: State, into writer: MsgPackWriter) {
        let envelopes = EnvelopeEncoder()
        writer.writeMapHeader(2 + Self.stateKeys.count)
        writer.write("format")
        writer.write(RuntimeStateFormat.orchestrator)
        writer.write("version")
        writer.write(Int64(self.stateFormatVersion))
        writer.write("pending")
        writer.writeArrayHeader(state.pending.count)
        for entry in state.pending {
            writer.writeMapHeader(2)
            writer.write("request")
            envelopes.withEncoded(entry.request) { bytes in
                // `encode`'s size check, which `stateValue` turns into the same trap.
                precondition(
                    bytes.count <= envelopes.limits.maxEnvelopeBytes,
                    "an envelope held in actor state cannot be encoded: \(bytes.count) bytes, over the limit of \(envelopes.limits.maxEnvelopeBytes)")
                writer.writeBinary(bytes)
            }
            writer.write("supervisor")
            writer.write(entry.supervisor.rawValue)
        }
        for (key, value) in [("routed", state.routed), ("unknown", state.unknown), ("answered", state.answered), ("cancelled", state.cancelled), ("expired", state.expired)] {
            writer.write(key)
            writer.write(Int64(value))
        }
        writer.write("health")
        writer.writeArrayHeader(state.health.count)
        for health in state.health {
            writer.writeMapHeader(5)
            writer.write("supervisor")
            writer.write(health.supervisor.rawValue)
            writer.write("status")
            writer.write(health.heartbeat.status.rawValue)
            writer.write("queue_depth")
            writer.write(health.heartbeat.queueDepth)
            writer.write("in_flight")
            writer.write(health.heartbeat.inFlight)
            writer.write("at_ms")
            writer.write(health.atMilliseconds)
        }
    }

    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        do {
            return try self.readState(bytes)
        } catch {
            throw StateDecodingError("orchestrator state: \(error.message)")
        }
    }

    /// The state for display (`recover --json`, the debugger): the snapshot's fields, with ids
    /// as canonical strings and each request summarised.
    public func describeState(_ state: State) -> MCPValue {
        self.stateValue(state, .display)
    }

    static let stateKeys = ["pending", "routed", "unknown", "answered", "cancelled", "expired", "health"]
    static let stateKeysVersion1 = ["pending", "routed", "unknown", "answered", "cancelled", "health"]

    func stateValue(_ state: State, _ style: RuntimeStateFormat.Style) -> MCPValue {
        let pending: [MCPValue] = state.pending.map { entry in
            .map([
                MCPValue.MapEntry("request", style.envelope(entry.request)),
                MCPValue.MapEntry("supervisor", .string(entry.supervisor.rawValue)),
            ])
        }
        return .map(RuntimeStateFormat.header(RuntimeStateFormat.orchestrator, self.stateFormatVersion) + [
            MCPValue.MapEntry("pending", .array(pending)),
            MCPValue.MapEntry("routed", RuntimeStateFormat.int(state.routed)),
            MCPValue.MapEntry("unknown", RuntimeStateFormat.int(state.unknown)),
            MCPValue.MapEntry("answered", RuntimeStateFormat.int(state.answered)),
            MCPValue.MapEntry("cancelled", RuntimeStateFormat.int(state.cancelled)),
            MCPValue.MapEntry("expired", RuntimeStateFormat.int(state.expired)),
            MCPValue.MapEntry("health", .array(state.health.map { health in
                .map([
                    MCPValue.MapEntry("supervisor", .string(health.supervisor.rawValue)),
                    MCPValue.MapEntry("status", .string(health.heartbeat.status.rawValue)),
                    MCPValue.MapEntry("queue_depth", .int(health.heartbeat.queueDepth)),
                    MCPValue.MapEntry("in_flight", .int(health.heartbeat.inFlight)),
                    MCPValue.MapEntry("at_ms", .int(health.atMilliseconds)),
                ])
            })),
        ])
    }

    func readState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        let (root, version) = try RuntimeStateFormat.open(
            bytes, format: RuntimeStateFormat.orchestrator, versions: [1: Self.stateKeysVersion1, self.stateFormatVersion: Self.stateKeys],
            maxEntries: self.maxPendingTasks)
        let envelopes = EnvelopeDecoder()
        var state = State()
        for item in try root.array("pending") {
            let fields = try RuntimeStateFormat.Fields(item.value, item.path, keys: ["request", "supervisor"])
            let pending = Pending(request: try fields.envelope("request", envelopes), supervisor: try fields.address("supervisor"))
            guard state.pending.index(ofTask: pending.taskKey) == nil else {
                throw RuntimeStateFormat.error(item.path, "a second entry for task \(pending.taskKey)")
            }
            state.pending.append(pending)
        }
        state.routed = try root.count("routed")
        state.unknown = try root.count("unknown")
        state.answered = try root.count("answered")
        state.cancelled = try root.count("cancelled")
        state.expired = version >= 2 ? try root.count("expired") : 0
        for item in try root.array("health") {
            let fields = try RuntimeStateFormat.Fields(item.value, item.path, keys: ["supervisor", "status", "queue_depth", "in_flight", "at_ms"])
            guard case .string(let text) = fields["status"], let status = HealthStatus(rawValue: text) else {
                throw RuntimeStateFormat.error(fields.path("status"), "ok, degraded or failing")
            }
            state.health.append(Orchestrator.SupervisorHealth(
                supervisor: try fields.address("supervisor"),
                heartbeat: Heartbeat(status: status, queueDepth: try fields.int64("queue_depth"), inFlight: try fields.int64("in_flight")),
                atMilliseconds: try fields.int64("at_ms")))
        }
        return state
    }
}

// MARK: - A domain supervisor's snapshot

extension DomainSupervisor {
    /// 2 added `paused_by` and `pause_reason` after `paused` (who paused the supervisor, and
    /// why). Version 1 still decodes (as paused by nobody named); recovery itself reads only the
    /// current version and replays past older snapshots, as the recovery rules say.
    public var stateFormatVersion: UInt32 { 2 }

    public func encodeState(_ state: State) -> [UInt8] {
        RuntimeStateFormat.bytes(self.stateValue(state, .snapshot(EnvelopeEncoder())))
    }

    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        do {
            return try self.readState(bytes)
        } catch {
            throw StateDecodingError("\(self.address) state: \(error.message)")
        }
    }

    /// The state for display: the snapshot's fields (the budget with its configured limits
    /// beside it), ids as canonical strings, each request summarised.
    public func describeState(_ state: State) -> MCPValue {
        self.stateValue(state, .display)
    }

    static let stateKeys = [
        "supervision", "budget", "in_flight", "grants", "paused", "paused_by", "pause_reason", "completed", "failed", "restarts",
        "cancelled", "timed_out",
    ]
    static let stateKeysVersion1 = [
        "supervision", "budget", "in_flight", "grants", "paused", "completed", "failed", "restarts", "cancelled", "timed_out",
    ]
    static let supervisionKeys = ["children", "restart_times", "consecutive_crashes", "escalated"]
    static let budgetKeys = ["slots_in_use", "tokens_reserved", "tokens_spent", "cost_reserved_usd", "cost_spent_usd"]
    static let inFlightKeys = ["request", "agent", "reserved", "retries"]
    static let grantKeys = ["for_correlation_id", "amounts", "lease_ms"]

    func stateValue(_ state: State, _ style: RuntimeStateFormat.Style) -> MCPValue {
        let supervision = state.supervision
        let budget = state.budget
        var budgetEntries = [
            MCPValue.MapEntry("slots_in_use", .int(budget.slotsInUse)),
            MCPValue.MapEntry("tokens_reserved", .int(budget.tokensReserved)),
            MCPValue.MapEntry("tokens_spent", .int(budget.tokensSpent)),
            MCPValue.MapEntry("cost_reserved_usd", .double(budget.costReservedUSD)),
            MCPValue.MapEntry("cost_spent_usd", .double(budget.costSpentUSD)),
        ]
        if style.isDisplay {
            budgetEntries += [
                MCPValue.MapEntry("max_concurrent_tasks", .int(budget.maxConcurrentTasks)),
                MCPValue.MapEntry("token_budget", .int(budget.tokenBudget)),
                MCPValue.MapEntry("cost_budget_usd", .double(budget.costBudgetUSD)),
            ]
        }
        let inFlight: [MCPValue] = state.inFlight.map { flight in
            .map([
                MCPValue.MapEntry("request", style.envelope(flight.request)),
                MCPValue.MapEntry("agent", .string(flight.agent.rawValue)),
                MCPValue.MapEntry("reserved", RuntimeStateFormat.amounts(flight.reserved)),
                MCPValue.MapEntry("retries", .int(Int64(flight.retries))),
            ])
        }
        let grants: [MCPValue] = state.grants.map { grant in
            .map([
                MCPValue.MapEntry("for_correlation_id", style.id(grant.forCorrelationID)),
                MCPValue.MapEntry("amounts", RuntimeStateFormat.amounts(grant.amounts)),
                MCPValue.MapEntry("lease_ms", RuntimeStateFormat.optional(grant.leaseMilliseconds)),
            ])
        }
        return .map(RuntimeStateFormat.header(RuntimeStateFormat.domainSupervisor, self.stateFormatVersion) + [
            MCPValue.MapEntry("supervision", .map([
                MCPValue.MapEntry("children", .array(supervision.children.map { .string($0.rawValue) })),
                MCPValue.MapEntry("restart_times", .array(supervision.restartTimes.map { .int($0) })),
                MCPValue.MapEntry("consecutive_crashes", .array(supervision.consecutiveCrashes.map { RuntimeStateFormat.int($0) })),
                MCPValue.MapEntry("escalated", .bool(supervision.escalated)),
            ])),
            MCPValue.MapEntry("budget", .map(budgetEntries)),
            MCPValue.MapEntry("in_flight", .array(inFlight)),
            MCPValue.MapEntry("grants", .array(grants)),
            MCPValue.MapEntry("paused", .bool(state.paused)),
            MCPValue.MapEntry("paused_by", state.pausedBy.map { .string($0) } ?? .null),
            MCPValue.MapEntry("pause_reason", state.pauseReason.map { .string($0) } ?? .null),
            MCPValue.MapEntry("completed", RuntimeStateFormat.int(state.completed)),
            MCPValue.MapEntry("failed", RuntimeStateFormat.int(state.failed)),
            MCPValue.MapEntry("restarts", RuntimeStateFormat.int(state.restarts)),
            MCPValue.MapEntry("cancelled", RuntimeStateFormat.int(state.cancelled)),
            MCPValue.MapEntry("timed_out", RuntimeStateFormat.int(state.timedOut)),
        ])
    }

    func readState(_ bytes: [UInt8]) throws(StateDecodingError) -> State {
        let (root, version) = try RuntimeStateFormat.open(
            bytes, format: RuntimeStateFormat.domainSupervisor, versions: [1: Self.stateKeysVersion1, self.stateFormatVersion: Self.stateKeys],
            maxEntries: Int(clamping: self.maxConcurrentTasks))
        let envelopes = EnvelopeDecoder()
        // Start from the configured state: the policy and the budget's limits are the actor's.
        var state = self.initialState()

        let supervision = try root.map("supervision", keys: Self.supervisionKeys)
        var children: [Address] = []
        for item in try supervision.array("children") { children.append(try RuntimeStateFormat.address(item.value, item.path)) }
        var restartTimes: [Int64] = []
        for item in try supervision.array("restart_times") { restartTimes.append(try RuntimeStateFormat.int64(item.value, item.path)) }
        var crashes: [Int] = []
        for item in try supervision.array("consecutive_crashes") { crashes.append(try RuntimeStateFormat.count(item.value, item.path)) }
        guard crashes.count == children.count else {
            throw RuntimeStateFormat.error(
                supervision.path("consecutive_crashes"), "\(crashes.count) counts for \(children.count) children")
        }
        // The pool is configuration, like the policy and the limits: the children are the ones
        // configured now, in their configured order, each with the crash count the snapshot had
        // for it. A snapshot from before the pool changed must not hide an added agent (its
        // crashes would be "not ours" and it would never be restarted) nor keep a removed one.
        // With an unchanged pool this is the snapshot's list exactly.
        state.supervision.consecutiveCrashes = state.supervision.children.map { child in
            children.firstIndex(of: child).map { crashes[$0] } ?? 0
        }
        state.supervision.restartTimes = restartTimes
        state.supervision.escalated = try supervision.bool("escalated")

        let budget = try root.map("budget", keys: Self.budgetKeys)
        state.budget.slotsInUse = Int64(try budget.count("slots_in_use"))
        state.budget.tokensReserved = Int64(try budget.count("tokens_reserved"))
        state.budget.tokensSpent = Int64(try budget.count("tokens_spent"))
        state.budget.costReservedUSD = try budget.double("cost_reserved_usd")
        state.budget.costSpentUSD = try budget.double("cost_spent_usd")

        for item in try root.array("in_flight") {
            let fields = try RuntimeStateFormat.Fields(item.value, item.path, keys: Self.inFlightKeys)
            let retries = try fields.count("retries")
            guard let retries32 = Int32(exactly: retries) else {
                throw RuntimeStateFormat.error(fields.path("retries"), "\(retries) does not fit Int32")
            }
            let flight = InFlight(
                request: try fields.envelope("request", envelopes), agent: try fields.address("agent"),
                reserved: try fields.amounts("reserved"), retries: retries32)
            guard state.inFlight.index(ofTask: flight.taskKey) == nil else {
                throw RuntimeStateFormat.error(item.path, "a second entry for task \(flight.taskKey)")
            }
            state.inFlight.append(flight)
        }
        for item in try root.array("grants") {
            let fields = try RuntimeStateFormat.Fields(item.value, item.path, keys: Self.grantKeys)
            state.grants.append(ResourceGrant(
                forCorrelationID: try fields.id("for_correlation_id"), amounts: try fields.amounts("amounts"),
                leaseMilliseconds: try fields.optionalInt64("lease_ms")))
        }

        // Every reservation is settled against the budget later; one the budget does not hold
        // would take its counters below zero (a precondition in `Budget.settle`).
        var heldSlots: Int64 = 0
        var heldTokens: Int64 = 0
        for amounts in state.inFlight.map(\.reserved) + state.grants.map(\.amounts) {
            let slots = heldSlots.addingReportingOverflow(amounts.concurrencySlots ?? 0)
            let tokens = heldTokens.addingReportingOverflow(amounts.tokens ?? 0)
            guard !slots.overflow, !tokens.overflow else { throw StateDecodingError("budget: reservations overflow Int64") }
            heldSlots = slots.partialValue
            heldTokens = tokens.partialValue
        }
        guard heldSlots <= state.budget.slotsInUse, heldTokens <= state.budget.tokensReserved else {
            throw StateDecodingError(
                "budget: tasks and grants hold \(heldSlots) slots and \(heldTokens) tokens, the budget only "
                    + "\(state.budget.slotsInUse) and \(state.budget.tokensReserved)")
        }

        state.paused = try root.bool("paused")
        if version >= 2 {
            state.pausedBy = try root.optionalString("paused_by")
            state.pauseReason = try root.optionalString("pause_reason")
            guard state.paused || (state.pausedBy == nil && state.pauseReason == nil) else {
                throw RuntimeStateFormat.error(root.path("paused_by"), "set on a supervisor that is not paused")
            }
        }
        state.completed = try root.count("completed")
        state.failed = try root.count("failed")
        state.restarts = try root.count("restarts")
        state.cancelled = try root.count("cancelled")
        state.timedOut = try root.count("timed_out")
        return state
    }
}
