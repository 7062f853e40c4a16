import CartritaEnvelope
import CartritaRuntime

/// One task of the list. Fields are read-only outside the agent, so every state in existence
/// was made by `TaskManagement.handle` or `decodeState` and keeps their invariants.
public struct TaskItem: Hashable, Sendable {
    public enum Status: String, CaseIterable, Sendable {
        case open
        case inProgress = "in_progress"
        case done
    }

    /// The log sequence number of the delivery that created the task; the id is `t-<seq>`.
    public internal(set) var seq: UInt64
    public internal(set) var title: String
    public internal(set) var description: String
    public internal(set) var priority: Priority
    public internal(set) var status: Status
    public internal(set) var createdMilliseconds: Int64
    public internal(set) var updatedMilliseconds: Int64
    public internal(set) var dueMilliseconds: Int64?
    /// Unique, sorted by UTF-8 bytes, so equal tag sets are equal arrays.
    public internal(set) var tags: [String]

    public var id: String { "t-\(self.seq)" }

    /// An upper bound of the task's size in a reply: its text plus room for keys and numbers.
    var estimatedBytes: Int {
        self.title.utf8.count + self.description.utf8.count + self.tags.reduce(0) { $0 + $1.utf8.count + 5 } + 256
    }

    var value: MCPValue {
        var entries: [MCPValue.MapEntry] = [
            .init("id", .string(self.id)),
            .init("title", .string(self.title)),
            .init("description", .string(self.description)),
            .init("priority", .string(self.priority.rawValue)),
            .init("status", .string(self.status.rawValue)),
            .init("created_ms", .int(self.createdMilliseconds)),
            .init("updated_ms", .int(self.updatedMilliseconds)),
        ]
        if let due = self.dueMilliseconds { entries.append(.init("due_ms", .int(due))) }
        entries.append(.init("tags", .array(self.tags.map { .string($0) })))
        return .map(entries)
    }
}

/// TaskManagement's state: the tasks in creation order. Invariants (checked by `decodeState`):
/// `seq` strictly increases along `tasks` (so a lookup by id is a binary search), and no task
/// has a `seq` above `lastCreatedSeq`.
public struct TaskListState: Hashable, Sendable {
    public internal(set) var tasks: [TaskItem] = []
    /// The seq of the newest delivery that created a task, even if that task was deleted since;
    /// nil before the first. A create delivered again (same seq) is recognised by it.
    public internal(set) var lastCreatedSeq: UInt64? = nil

    func index(ofSeq seq: UInt64) -> Int? {
        var low = 0
        var high = self.tasks.count
        while low < high {
            let middle = (low + high) / 2
            if self.tasks[middle].seq < seq { low = middle + 1 } else { high = middle }
        }
        return low < self.tasks.count && self.tasks[low].seq == seq ? low : nil
    }
}

/// Tier-2 agent keeping a task list: the only stateful one. Event-sourced: the list is a pure
/// function of the requests handled and their delivery contexts, so replaying the log from a
/// snapshot rebuilds it exactly.
///
/// Task types and parameters (all fields optional unless said):
/// - `tasks.create`: `title` (required, non-blank, at most 500 bytes), `description` (at most
///   16 KiB), `priority` (low | normal | high | critical, default normal), `status` (open |
///   in_progress | done, default open), `due_ms` (Unix ms), `tags` (at most 32 strings of 1 to 64
///   bytes; kept sorted and unique). The id is `t-<seq>` of the creating delivery, and
///   `created_ms`/`updated_ms` are the delivery's clock: no hidden id generator, no wall clock.
///   A create delivered twice (same seq) is answered with the task it made, not a second copy.
/// - `tasks.update`: `id` and at least one field to change; `due_ms: null` clears the due date,
///   `tags` replaces the tags.
/// - `tasks.complete`: `id`; sets status done (already done: no change).
/// - `tasks.delete`: `id`; removes the task and returns it.
/// - `tasks.list`: optional `status` and `tag` filters, paging by `offset` (default 0) and
///   `limit` (1–1,000, default 100, so a page stays under the envelope's 1,024-entry limit);
///   tasks in creation order, with `total` matches and `next_offset` when more follow. A page
///   ends early at 512 KiB of task text, so it always fits in one envelope.
/// An unknown id fails with `not_found`; bad fields with `invalid_input`; a create beyond
/// 100,000 tasks with `limit_reached`.
public struct TaskManagement: Agent {
    public typealias State = TaskListState

    public static let maxTasks = 100_000
    static let maxTitleBytes = 500
    static let maxDescriptionBytes = 16 * 1024
    static let maxTags = 32
    static let maxTagBytes = 64
    static let maxListLimit: Int64 = 1_000
    /// A page also stops before this much text, so it fits the codec's 1 MiB envelope even when
    /// every task has a 16 KiB description; `next_offset` then says where to go on.
    static let maxPageBytes = 512 * 1024
    /// The envelope's timestamp range: [0, 2^48) ms.
    static let timeRange: ClosedRange<Int64> = 0...((1 << 48) - 1)

    public let address = Address("agent.taskmanagement@v1.0")
    public let taskTypes = ["tasks.create", "tasks.update", "tasks.complete", "tasks.list", "tasks.delete"]
    public let stateFormatVersion: UInt32 = 1

    public init() {}

    public func initialState() -> TaskListState { TaskListState() }

    public func handle(_ request: TaskRequest, state: inout TaskListState, context: DeliveryContext) -> AgentOutcome {
        guard self.taskTypes.contains(request.task.type) else {
            return AgentKit.unknownTaskType(request.task.type, agent: self.address, handles: self.taskTypes)
        }
        // Each operation validates everything before its one mutation, so a refused request
        // leaves the state untouched. (Working on a copy instead would copy the whole array on
        // every request, making a replay of n creates cost n².)
        return AgentKit.run { () throws(Refusal) in
            switch request.task.type {
            case "tasks.create": return try Self.create(request, &state, context)
            case "tasks.update": return try Self.update(request, &state, context)
            case "tasks.complete": return try Self.complete(request, &state, context)
            case "tasks.delete": return try Self.delete(request, &state)
            default: return try Self.list(request, state)
            }
        }
    }

    // MARK: Operations

    static let fieldKeys = ["title", "description", "priority", "status", "due_ms", "tags"]

    static func create(_ request: TaskRequest, _ state: inout TaskListState, _ context: DeliveryContext) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: Self.fieldKeys)
        if let last = state.lastCreatedSeq, context.seq <= last {
            // Seqs only grow, so this delivery was handled before: answer with the task it made.
            // None left means it was deleted since (or the first delivery was refused).
            guard let index = state.index(ofSeq: context.seq) else {
                throw Refusal(.notFound, "delivery \(context.seq) was handled before and task t-\(context.seq) does not exist now")
            }
            return .map(["task": state.tasks[index].value])
        }
        guard state.tasks.count < Self.maxTasks else {
            throw Refusal(.limitReached, "the task list holds the maximum of \(Self.maxTasks) tasks; delete some first")
        }
        guard parameters.value("title") != nil else { throw .invalid("tasks.create needs a title") }
        var item = TaskItem(
            seq: context.seq, title: "", description: "", priority: .normal, status: .open,
            createdMilliseconds: context.clockMilliseconds, updatedMilliseconds: context.clockMilliseconds,
            dueMilliseconds: nil, tags: [])
        try Self.apply(parameters, to: &item)
        state.tasks.append(item)
        state.lastCreatedSeq = context.seq
        return .map(["task": item.value])
    }

    static func update(_ request: TaskRequest, _ state: inout TaskListState, _ context: DeliveryContext) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: ["id"] + Self.fieldKeys)
        let index = try Self.find(parameters, state)
        guard Self.fieldKeys.contains(where: parameters.has) else {
            throw .invalid("tasks.update needs at least one of \(Self.fieldKeys.joined(separator: ", "))")
        }
        var item = state.tasks[index]
        try Self.apply(parameters, to: &item)
        item.updatedMilliseconds = context.clockMilliseconds
        state.tasks[index] = item
        return .map(["task": item.value])
    }

    static func complete(_ request: TaskRequest, _ state: inout TaskListState, _ context: DeliveryContext) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: ["id"])
        let index = try Self.find(parameters, state)
        if state.tasks[index].status != .done {
            state.tasks[index].status = .done
            state.tasks[index].updatedMilliseconds = context.clockMilliseconds
        }
        return .map(["task": state.tasks[index].value])
    }

    static func delete(_ request: TaskRequest, _ state: inout TaskListState) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: ["id"])
        let index = try Self.find(parameters, state)
        let removed = state.tasks.remove(at: index)
        return .map(["deleted": .string(removed.id), "task": removed.value])
    }

    static func list(_ request: TaskRequest, _ state: TaskListState) throws(Refusal) -> MCPValue {
        let parameters = try Parameters(request.task.parameters, allowed: ["status", "tag", "offset", "limit"])
        let status = try parameters.string("status").map { (text: String) throws(Refusal) -> TaskItem.Status in
            guard let status = TaskItem.Status(rawValue: text) else { throw .invalid("status must be open, in_progress or done") }
            return status
        }
        let tag = try parameters.string("tag")
        let offset = Int(try parameters.int("offset", in: 0...Int64(Self.maxTasks)) ?? 0)
        let limit = Int(try parameters.int("limit", in: 1...Self.maxListLimit) ?? 100)
        var page: [MCPValue] = []
        var pageBytes = 0
        var pageFull = false
        var total = 0
        for item in state.tasks {
            if let status, item.status != status { continue }
            if let tag, !item.tags.contains(where: { $0.utf8.elementsEqual(tag.utf8) }) { continue }
            if total >= offset, !pageFull {
                let size = item.estimatedBytes
                if page.count < limit, pageBytes + size <= Self.maxPageBytes {
                    page.append(item.value)
                    pageBytes += size
                } else {
                    pageFull = true  // the page stays contiguous: nothing after a task left out
                }
            }
            total += 1
        }
        var result: [MCPValue.MapEntry] = [
            .init("tasks", .array(page)),
            .init("total", .int(Int64(total))),
            .init("offset", .int(Int64(offset))),
            .init("limit", .int(Int64(limit))),
        ]
        if offset + page.count < total { result.append(.init("next_offset", .int(Int64(offset + page.count)))) }
        return .map(result)
    }

    // MARK: Fields

    static func find(_ parameters: Parameters, _ state: TaskListState) throws(Refusal) -> Int {
        guard let id = try parameters.string("id"), !id.isEmpty else { throw .invalid("an id (\"t-<n>\") is required") }
        // Only the canonical spelling names a task: "t-" and decimal digits, no leading zero.
        let digits = id.utf8.dropFirst(2)
        guard id.utf8.starts(with: "t-".utf8), !digits.isEmpty, digits.count <= 20,
            digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            digits.first != UInt8(ascii: "0") || digits.count == 1,
            let seq = UInt64(String(decoding: digits, as: UTF8.self)), let index = state.index(ofSeq: seq)
        else {
            throw Refusal(.notFound, "no task with id \(AgentKit.quoted(id))")
        }
        return index
    }

    /// Applies the fields present in `parameters` to `item`, a copy the caller stores only if
    /// this returns.
    static func apply(_ parameters: Parameters, to item: inout TaskItem) throws(Refusal) {
        if let title = try parameters.string("title") {
            guard title.contains(where: { !$0.isWhitespace }) else { throw .invalid("title must not be blank") }
            guard title.utf8.count <= Self.maxTitleBytes else { throw .invalid("title is longer than \(Self.maxTitleBytes) bytes") }
            item.title = title
        } else if parameters.has("title") {
            throw .invalid("title cannot be removed")
        }
        if let description = try parameters.string("description") {
            guard description.utf8.count <= Self.maxDescriptionBytes else {
                throw .invalid("description is longer than \(Self.maxDescriptionBytes) bytes")
            }
            item.description = description
        } else if parameters.isNull("description") {
            item.description = ""
        }
        if let priority = try parameters.string("priority") {
            guard let parsed = Priority(rawValue: priority) else { throw .invalid("priority must be low, normal, high or critical") }
            item.priority = parsed
        }
        if let status = try parameters.string("status") {
            guard let parsed = TaskItem.Status(rawValue: status) else { throw .invalid("status must be open, in_progress or done") }
            item.status = parsed
        }
        if let due = try parameters.int("due_ms", in: Self.timeRange) {
            item.dueMilliseconds = due
        } else if parameters.isNull("due_ms") {
            item.dueMilliseconds = nil
        }
        if let tags = try parameters.stringArray("tags") {
            item.tags = try Self.normalizedTags(tags)
        } else if parameters.isNull("tags") {
            item.tags = []
        }
    }

    static func normalizedTags(_ tags: [String]) throws(Refusal) -> [String] {
        var sorted: [String] = []
        for tag in tags.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        where sorted.last.map({ !$0.utf8.elementsEqual(tag.utf8) }) ?? true {
            sorted.append(tag)
        }
        guard sorted.count <= Self.maxTags else { throw .invalid("at most \(Self.maxTags) tags") }
        for tag in sorted where tag.isEmpty || tag.utf8.count > Self.maxTagBytes {
            throw .invalid("a tag must be 1 to \(Self.maxTagBytes) bytes, got \(AgentKit.quoted(tag))")
        }
        return sorted
    }

    // MARK: State snapshots

    public func encodeState(_ state: TaskListState) -> [UInt8] { TaskStateCodec.encode(state) }

    public func decodeState(_ bytes: [UInt8]) throws(StateDecodingError) -> TaskListState {
        try TaskStateCodec.decode(bytes)
    }
}
