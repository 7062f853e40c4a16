import CartritaEnvelope

/// One field that differs between two states, with its path (`pending[3].status`,
/// `budget.slots_in_use`). `old` is nil for a field that appeared, `new` for one that went.
package struct FieldChange: Hashable, Sendable {
    package var path: String
    package var old: MCPValue?
    package var new: MCPValue?
}

/// Field-by-field differences between two readable states (`describeState`). Maps are compared
/// by key in the order of the newer one, then keys only the older one has. Arrays whose entries
/// all carry an id (task tables) are matched by id; other arrays by index, so a list that grew
/// shows the new entries as added and one that shrank the lost ones as removed.
/// Scalars of different kinds (an int that became a string) are one change.
package enum StateDiff {
    /// Past this many changes the rest are counted, not listed (a table of 100,000 tasks).
    package static let maxChanges = 10_000

    package static func changes(from old: MCPValue, to new: MCPValue, limit: Int = maxChanges) -> (changes: [FieldChange], omitted: Int) {
        var changes: [FieldChange] = []
        var omitted = 0
        func add(_ change: FieldChange) {
            if changes.count < limit { changes.append(change) } else { omitted += 1 }
        }
        func walk(_ path: String, _ old: MCPValue, _ new: MCPValue) {
            switch (old, new) {
            case (.map(let before), .map(let after)):
                for entry in after {
                    let child = Self.join(path, key: entry.key)
                    if let previous = before.first(where: { $0.key == entry.key }) {
                        walk(child, previous.value, entry.value)
                    } else {
                        add(FieldChange(path: child, old: nil, new: entry.value))
                    }
                }
                for entry in before where !after.contains(where: { $0.key == entry.key }) {
                    add(FieldChange(path: Self.join(path, key: entry.key), old: entry.value, new: nil))
                }
            case (.array(let before), .array(let after)):
                if let oldKeys = Self.identities(before), let newKeys = Self.identities(after) {
                    // A table of tasks: entries are matched by their id, not their position, so
                    // one finished task shows as one removal, not a shift of every later entry.
                    // Paths keep positions: the new one for kept and added entries, the old
                    // one for removed entries.
                    var oldIndex: [String: Int] = [:]
                    for (index, key) in oldKeys.enumerated() where oldIndex[key] == nil { oldIndex[key] = index }
                    let kept = Set(newKeys)
                    for (index, key) in oldKeys.enumerated() where !kept.contains(key) {
                        add(FieldChange(path: "\(path)[\(index)]", old: before[index], new: nil))
                    }
                    for (index, key) in newKeys.enumerated() {
                        if let previous = oldIndex[key] {
                            walk("\(path)[\(index)]", before[previous], after[index])
                        } else {
                            add(FieldChange(path: "\(path)[\(index)]", old: nil, new: after[index]))
                        }
                    }
                    return
                }
                for index in 0..<max(before.count, after.count) {
                    let child = "\(path)[\(index)]"
                    // Explicit optionals: MCPValue is ExpressibleByNilLiteral, so a bare `nil`
                    // here would become `.null`.
                    let previous: MCPValue? = index < before.count ? .some(before[index]) : .none
                    let next: MCPValue? = index < after.count ? .some(after[index]) : .none
                    if let previous, let next {
                        walk(child, previous, next)
                    } else if previous != nil || next != nil {
                        add(FieldChange(path: child, old: previous, new: next))
                    }
                }
            default:
                if old != new { add(FieldChange(path: path, old: old, new: new)) }
            }
        }
        walk("", old, new)
        return (changes, omitted)
    }

    /// Keys that name an entry of a table (a task, a grant), looked up in the entry and in its
    /// `request` (the orchestrator's and supervisors' tables hold the request envelope).
    static let identityKeys = ["id", "task_id", "correlation_id", "for_correlation_id"]

    /// Each entry's identity when every entry of the array has one and they are unique; nil
    /// otherwise (the array is then compared by position).
    static func identities(_ items: [MCPValue]) -> [String]? {
        guard !items.isEmpty else { return nil }
        var keys: [String] = []
        keys.reserveCapacity(items.count)
        for item in items {
            guard case .map = item else { return nil }
            var identity: String?
            for key in Self.identityKeys {
                if case .string(let text)? = item[key] ?? item["request"]?[key] {
                    identity = key + "=" + text
                    break
                }
            }
            guard let identity else { return nil }
            keys.append(identity)
        }
        return Set(keys).count == keys.count ? keys : nil
    }

    static func join(_ path: String, key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }
}

/// Differences of every actor between two travel points.
package struct ActorDiff: Sendable {
    package var address: Address
    package var fromDigest: String
    package var toDigest: String
    package var changes: [FieldChange]
    /// Changes past `StateDiff.maxChanges`, not listed.
    package var omitted: Int
}

extension TimeTravel {
    /// Per actor, the fields that changed between `from` and `to` (actors whose digest did not
    /// change are left out).
    package func diff(from: UInt64, to: UInt64, actors: [Address]? = nil) throws(TravelError) -> [ActorDiff] {
        let before = try self.state(at: from, actors: actors)
        let after = try self.state(at: to, actors: actors)
        var diffs: [ActorDiff] = []
        for (old, new) in zip(before.actors, after.actors) where old.digest != new.digest || old.state != new.state {
            precondition(old.address == new.address, "both travels list the same actors in address order")
            let (changes, omitted) = StateDiff.changes(from: old.state, to: new.state)
            diffs.append(ActorDiff(address: new.address, fromDigest: old.digest, toDigest: new.digest, changes: changes, omitted: omitted))
        }
        return diffs
    }
}
