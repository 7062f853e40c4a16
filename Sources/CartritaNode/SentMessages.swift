import CartritaEnvelope
import CartritaLog
import CartritaRuntime

/// What one actor sent that the log may not hold yet: production's `CellHost` and the
/// simulator both keep one per actor, and each snapshot carries what it says is owed, because
/// replay after the snapshot would not make those messages again.
///
/// at_most_once messages are kept too: they are not owed after a crash, but a snapshot must name
/// them, or recovery would take one that was delivered after the snapshot for a message replay
/// did not make (a false divergence). Timers a delivery cancels are forgotten at once.
public struct SentMessages: Sendable {
    /// By task, so that cancelling a task's timers is one lookup. Never iterated unsorted.
    var byTask: [MessageID: [Envelope]] = [:]
    public private(set) var count = 0

    /// Starts with messages recovery found owed (their sender must carry them until logged).
    public init(_ owed: [Envelope] = []) {
        for envelope in owed { self.add(envelope) }
    }

    public mutating func add(_ envelope: Envelope) {
        self.byTask[envelope.correlationID, default: []].append(envelope)
        self.count += 1
    }

    /// What one delivery sent, and the timers it cancelled: those due after `clock` (the
    /// delivery's recorded clock, on which the actor's timers are stamped).
    public mutating func record(_ delivery: Delivery, clock: Int64) {
        for correlation in delivery.cancelledTimers {
            guard var list = self.byTask[correlation] else { continue }
            let before = list.count
            list.removeAll { $0.timestampMilliseconds > clock }
            self.count -= before - list.count
            self.byTask[correlation] = list.isEmpty ? nil : list
        }
        for message in delivery.messages { self.add(message) }
    }

    /// The messages a snapshot covering the log up to `seq` must carry: those the log does not
    /// hold, or holds after `seq`. Those it holds are forgotten. `lookup` says where each id is
    /// in the log. The result is in a total order (id, retry, timestamp), whatever the hashing.
    public mutating func owed(
        atSnapshot seq: UInt64, lookup: ([MessageID]) throws(EventLogError) -> [UInt64?]
    ) throws(EventLogError) -> [Envelope] {
        // Sort small keys, not envelopes: an envelope is a large struct, and a snapshot may
        // cover thousands of them (every armed timeout of a busy supervisor).
        struct Key {
            var id: MessageID
            var retryCount: Int32
            var timestamp: Int64
            var task: MessageID
            var position: Int
        }
        var keys: [Key] = []
        keys.reserveCapacity(self.count)
        for (task, list) in self.byTask {
            for (position, envelope) in list.enumerated() {
                keys.append(Key(id: envelope.id, retryCount: envelope.retryCount, timestamp: envelope.timestampMilliseconds, task: task, position: position))
            }
        }
        keys.sort { ($0.id, $0.retryCount, $0.timestamp) < ($1.id, $1.retryCount, $1.timestamp) }
        let logged = try lookup(keys.map(\.id))
        var owed: [Envelope] = []
        var kept = SentMessages()
        for (key, at) in zip(keys, logged) where at == nil || at! > seq {
            let envelope = self.byTask[key.task]![key.position]
            owed.append(envelope)
            if at == nil { kept.add(envelope) }
        }
        self = kept
        return owed
    }
}
