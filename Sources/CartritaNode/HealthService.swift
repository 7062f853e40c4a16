import CartritaEnvelope
import CartritaLog
import CartritaRuntime

// MARK: - The health service: the node's own state, as an I/O answer

/// `io.health` (operation `report`): what `system.health_check` reports. The node is outside the
/// deterministic core, so an agent may not read it; SystemMonitor asks this service through the
/// I/O gateway instead, and the gateway's answer is logged like a file's content: replay reads
/// the same report back and calls nothing.
///
/// The report (sections as asked, `supervisors`, `log`, `indexes`):
/// - `supervisors`: per supervisor, in address order: `up` (not escalated), `escalated`,
///   `paused`, `pool_size` (its agents), `restarts`, `in_flight`, `completed`, `failed`,
///   `queue_depth` (its mailbox).
/// - `log`: `writable` (no storage failure), `storage_failure` when there is one, `first_seq`,
///   `last_seq`, `records`, `file_bytes`, `map_size_bytes`, `durability`, `head_hash`.
/// - `indexes`: per index, `entries`, `applied_seq`, `lag_records`, `expected_entries` and
///   `consistent`: the id index holds one entry per record (it is written in the same commit);
///   the correlation and actor indexes one per record up to their watermark.
/// - `healthy`: every supervisor up, the log writable, every index consistent.
///
/// Every node has it (`Node.ioService(named:)`); a configured service named `health` wins.
public struct HealthService: IOService {
    let node: Node

    public init(node: Node) {
        self.node = node
    }

    public static let sections = ["supervisors", "log", "indexes"]

    public func call(operation: String, arguments: MCPValue) async -> IOResult {
        guard operation == "report" else {
            return .failure(TaskError(code: .ioError, message: "io.health has no operation \(operation); it has report", retryable: false))
        }
        var sections = Self.sections
        if let asked = arguments["sections"] {
            guard case .array(let items) = asked else {
                return .failure(TaskError(code: .ioError, message: "io.health: sections is an array of names", retryable: false))
            }
            let names = items.compactMap { item -> String? in if case .string(let name) = item { name } else { nil } }
            guard names.count == items.count, names.allSatisfy(Self.sections.contains) else {
                return .failure(TaskError(
                    code: .ioError, message: "io.health: sections are \(Self.sections.joined(separator: ", "))", retryable: false))
            }
            sections = Self.sections.filter(names.contains)
        }
        var healthy = true
        var entries: [MCPValue.MapEntry] = []
        if sections.contains("supervisors") {
            let supervisors = await self.supervisors()
            healthy = healthy && supervisors.allSatisfy { $0["up"] == .bool(true) }
            entries.append(MCPValue.MapEntry("supervisors", .array(supervisors)))
        }
        let stat: LogStat
        do {
            stat = try self.node.log.stat()
        } catch {
            return .failure(TaskError(code: .ioError, message: "io.health: reading the log's figures: \(error)", retryable: true))
        }
        if sections.contains("log") {
            let failure = self.node.storageFailure
            healthy = healthy && failure == nil
            var log: [MCPValue.MapEntry] = [MCPValue.MapEntry("writable", .bool(failure == nil))]
            if let failure { log.append(MCPValue.MapEntry("storage_failure", .string("\(failure)"))) }
            log += [
                MCPValue.MapEntry("first_seq", .int(Int64(clamping: stat.firstSeq))),
                MCPValue.MapEntry("last_seq", .int(Int64(clamping: stat.lastSeq))),
                MCPValue.MapEntry("records", .int(Int64(stat.records))),
                MCPValue.MapEntry("file_bytes", .int(Int64(stat.fileBytes))),
                MCPValue.MapEntry("map_size_bytes", .int(Int64(stat.mapSizeBytes))),
                MCPValue.MapEntry("durability", .string(self.node.log.configuration.durability.rawValue)),
                MCPValue.MapEntry("head_hash", .string(stat.headHash.description)),
            ]
            entries.append(MCPValue.MapEntry("log", .map(log)))
        }
        if sections.contains("indexes") {
            let indexes = Self.indexes(stat)
            healthy = healthy && indexes.allSatisfy { $0["consistent"] == .bool(true) }
            entries.append(MCPValue.MapEntry("indexes", .array(indexes)))
        }
        entries.append(MCPValue.MapEntry("healthy", .bool(healthy)))
        return .success(.map(entries))
    }

    /// Each supervisor of the node, from its live state.
    func supervisors() async -> [MCPValue] {
        let depths = self.node.queueDepths()
        var result: [MCPValue] = []
        for address in self.node.addresses.sorted() where address.isSupervisor {
            guard let state = await self.node.describeState(of: address) else { continue }
            let escalated = state["supervision"]?["escalated"] == .bool(true)
            var pool = 0
            if case .array(let children)? = state["supervision"]?["children"] { pool = children.count }
            var inFlight = 0
            if case .array(let flights)? = state["in_flight"] { inFlight = flights.count }
            let depth = depths.first { $0.address == address }?.messages ?? 0
            result.append(.map([
                MCPValue.MapEntry("address", .string(address.rawValue)),
                MCPValue.MapEntry("up", .bool(!escalated)),
                MCPValue.MapEntry("escalated", .bool(escalated)),
                MCPValue.MapEntry("paused", state["paused"] ?? .bool(false)),
                MCPValue.MapEntry("pool_size", .int(Int64(pool))),
                MCPValue.MapEntry("restarts", state["restarts"] ?? .int(0)),
                MCPValue.MapEntry("in_flight", .int(Int64(inFlight))),
                MCPValue.MapEntry("completed", state["completed"] ?? .int(0)),
                MCPValue.MapEntry("failed", state["failed"] ?? .int(0)),
                MCPValue.MapEntry("queue_depth", .int(Int64(depth))),
            ]))
        }
        return result
    }

    /// The indexes against the log, from one read transaction's figures.
    static func indexes(_ stat: LogStat) -> [MCPValue] {
        let records = stat.records
        return stat.indexes.filter { $0.name != "actor_head" }.map { index in
            // The id index is written with the records: one entry each. The correlation and
            // actor indexes trail behind their watermark: one entry per record up to it.
            let applied = min(index.appliedSeq, stat.lastSeq)
            let expected = index.inMainCommit ? records : (records == 0 || applied < stat.firstSeq ? 0 : Int(applied - stat.firstSeq + 1))
            return .map([
                MCPValue.MapEntry("name", .string(index.name)),
                MCPValue.MapEntry("entries", .int(Int64(index.entries))),
                MCPValue.MapEntry("applied_seq", .int(Int64(clamping: applied))),
                MCPValue.MapEntry("lag_records", .int(Int64(clamping: stat.lastSeq - applied))),
                MCPValue.MapEntry("expected_entries", .int(Int64(expected))),
                MCPValue.MapEntry("consistent", .bool(index.entries == expected)),
            ])
        }
    }
}

extension Node {
    /// The gateway service called `name`: a configured one, else the node's own (`health`).
    func ioService(named name: String) -> (any IOService)? {
        if let service = self.configuration.ioServices[name] { return service }
        if name == "health" { return HealthService(node: self) }
        return nil
    }
}
