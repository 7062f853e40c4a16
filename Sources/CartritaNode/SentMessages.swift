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
        var sent: [Envelope] = []
        sent.reserveCapacity(self.count)
        for list in self.byTask.values { sent.append(contentsOf: list) }
        sent.sort { ($0.id, $0.retryCount, $0.timestampMilliseconds) < ($1.id, $1.retryCount, $1.timestampMilliseconds) }
        let logged = try lookup(sent.map(\.id))
        var owed: [Envelope] = []
        self = SentMessages()
        for (envelope, at) in zip(sent, logged) {
            if at == nil || at! > seq { owed.append(envelope) }
            if at == nil { self.add(envelope) }
        }
        return owed
    }
}
