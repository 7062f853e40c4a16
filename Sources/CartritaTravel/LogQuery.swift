import CartritaCodec
import CartritaEnvelope
import CartritaLog
import Foundation

/// Which records `cartrita log filter` prints. Every condition given must hold.
///
/// `actor` selects the records addressed to the actor: a record belongs to its recipient, the
/// actor whose state it changes (as in the log's `by_actor` index). Times are the records'
/// `clock_ms` (when the message was delivered), both bounds inclusive.
package struct RecordFilter: Sendable {
    package var actor: Address?
    package var type: MessageType?
    package var correlation: MessageID?
    package var sinceMilliseconds: Int64?
    package var untilMilliseconds: Int64?

    package init(
        actor: Address? = nil, type: MessageType? = nil, correlation: MessageID? = nil, sinceMilliseconds: Int64? = nil,
        untilMilliseconds: Int64? = nil
    ) {
        self.actor = actor
        self.type = type
        self.correlation = correlation
        self.sinceMilliseconds = sinceMilliseconds
        self.untilMilliseconds = untilMilliseconds
    }

    package func matches(_ record: LogRecord) -> Bool {
        if let actor, record.envelope.recipient != actor { return false }
        if let type, record.envelope.type != type { return false }
        if let correlation, record.envelope.correlationID != correlation { return false }
        if let since = self.sinceMilliseconds, record.header.clockMilliseconds < since { return false }
        if let until = self.untilMilliseconds, record.header.clockMilliseconds > until { return false }
        return true
    }

    /// A time for `--since`/`--until`: Unix milliseconds, or ISO 8601 (`2026-11-25T04:55:24Z`,
    /// with optional fractional seconds and an offset instead of `Z`).
    package static func parseTime(_ text: String) throws(TravelError) -> Int64 {
        if let milliseconds = Int64(text) { return milliseconds }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return Int64((date.timeIntervalSince1970 * 1000).rounded()) }
        throw TravelError(.invalidArgument, "'\(text)' is neither Unix milliseconds nor an ISO 8601 time like 2026-11-25T04:55:24.123Z")
    }
}

extension EventLog {
    /// Hands the records that match `filter` to `body`, in log order, until it returns false.
    /// A correlation id or an actor narrows the read to that index's records (correlation
    /// first: a task has a handful); otherwise the log is scanned once.
    package func filter(_ filter: RecordFilter, _ body: (LogRecord) throws -> Bool) throws(TravelError) {
        do {
            let decoder = EnvelopeDecoder(limits: self.configuration.codecLimits)
            let seqs: [UInt64]?
            if let correlation = filter.correlation {
                seqs = try self.seqs(correlation: correlation)
            } else if let actor = filter.actor {
                seqs = try self.seqs(actor: actor.rawValue)
            } else {
                seqs = nil
            }
            guard let seqs else {
                try self.scanRaw { seq, bytes in
                    let record: LogRecord
                    do {
                        record = try decoder.decodeRecord(bytes)
                    } catch {
                        throw TravelError(.log, "record \(seq): \(error)")
                    }
                    return try !filter.matches(record) || body(record)
                }
                return
            }
            var start = 0
            while start < seqs.count {
                let chunk = Array(seqs[start..<min(seqs.count, start + 512)])
                start += chunk.count
                for (seq, bytes) in zip(chunk, try self.rawRecords(chunk)) {
                    guard let bytes else { continue }  // moved out by retention since the index was read
                    let record: LogRecord
                    do {
                        record = try decoder.decodeRecord(bytes)
                    } catch {
                        throw TravelError(.log, "record \(seq): \(error)")
                    }
                    if filter.matches(record), try !body(record) { return }
                }
            }
        } catch {
            throw TravelError.wrapping(error)
        }
    }
}

/// Follows a log that another process may be appending to (`cartrita log tail -f`): each
/// `poll` hands over the records committed since the previous one. The log is opened read-only
/// and never blocks its writer; LMDB readers see each commit once it is durable.
package final class LogFollower {
    package let log: EventLog
    /// The next seq to hand over.
    package private(set) var nextSeq: UInt64
    let decoder: EnvelopeDecoder

    /// Starts after the last `lastRecords` records that exist now.
    package init(log: EventLog, lastRecords: UInt64) {
        self.log = log
        let last = log.lastSeq
        self.nextSeq = last >= lastRecords ? last - lastRecords + 1 : 1
        self.decoder = EnvelopeDecoder(limits: log.configuration.codecLimits)
    }

    /// Most records one `poll` hands over: a follower far behind catches up in pages.
    package static let pollLimit = 4_096

    /// The records committed since the last poll, in order; at most `limit` per call.
    package func poll(limit: Int = LogFollower.pollLimit, _ body: (LogRecord) -> Void) throws(TravelError) -> Int {
        var count = 0
        do {
            try self.log.scanRaw(from: self.nextSeq) { seq, bytes in
                let record: LogRecord
                do {
                    record = try self.decoder.decodeRecord(bytes)
                } catch {
                    throw TravelError(.log, "record \(seq): \(error)")
                }
                body(record)
                self.nextSeq = seq + 1
                count += 1
                return count < limit
            }
        } catch {
            throw .log(error)  // scanRaw throws EventLogError only (a bad record's too)
        }
        return count
    }
}
