import CartritaCodec
import CartritaEnvelope
import CartritaLog
import CartritaNode
import CartritaRuntime
import CartritaTravel
import Foundation

/// What the web debugger reads: a log (offline, or the live one of `cartrita serve`) or a
/// capsule. Every read is bounded: records come in pages by seq range, never the whole log.
package protocol DebugSource: AnyObject, Sendable {
    /// `log` or `capsule`.
    var kind: String { get }
    var firstSeq: UInt64 { get }
    /// Read at each call: a live log grows.
    var lastSeq: UInt64 { get }
    var actors: [Address] { get }
    /// The records matching `filter` with seq in `range`, in order, at most `limit`; also where a
    /// continuation would start when the range was not finished (`scanned` counts the records or
    /// index entries looked at).
    func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> [LogRecord]
    func record(_ seq: UInt64) throws(TravelError) -> LogRecord?
    func state(at: UInt64, actor: Address) throws(TravelError) -> ActorState
    func trace(_ correlation: MessageID) throws(TravelError) -> TaskTrace
}

// MARK: - A log

/// A log read in pages through its LMDB cursors and indexes. One traveller with in-memory
/// checkpoints serves every state request (stepping back and forth stays fast); it is not
/// thread-safe, so a lock serialises travels.
package final class LogSource: DebugSource, @unchecked Sendable {
    package let log: EventLog
    let traveller: TimeTravel
    let lock = NSLock()

    package init(log: EventLog, hierarchy: Hierarchy = .standard()) {
        self.log = log
        self.traveller = TimeTravel(log: log, hierarchy: hierarchy, checkpoints: TimeTravel.CheckpointPolicy(everyDeliveries: 2_000, maxBytes: 128 << 20))
        self.actors = hierarchy.addresses.sorted()
    }

    package var kind: String { "log" }
    package var firstSeq: UInt64 { self.log.lastSeq == 0 ? 0 : 1 }
    package var lastSeq: UInt64 { self.log.lastSeq }
    package let actors: [Address]

    package func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> [LogRecord] {
        do {
            return try self.read(range, filter, limit, descending)
        } catch let error as TravelError {
            throw error
        } catch let error as EventLogError {
            throw .log(error)
        } catch {
            throw TravelError(.log, "\(error)")
        }
    }

    func read(_ range: ClosedRange<UInt64>, _ filter: RecordFilter, _ limit: Int, _ descending: Bool) throws -> [LogRecord] {
        var result: [LogRecord] = []
        // With an index: the seqs first (cheap: keys only), then only the records needed.
        var candidates: [UInt64]?
        if let correlation = filter.correlation {
            candidates = try self.log.seqs(correlation: correlation).filter { range.contains($0) }
        } else if let actor = filter.actor {
            candidates = try self.log.seqs(actor: actor.rawValue, after: range.lowerBound - 1, through: range.upperBound)
        }
        if var seqs = candidates {
            if descending { seqs.reverse() }
            var start = 0
            while start < seqs.count && result.count < limit {
                let chunk = Array(seqs[start..<min(seqs.count, start + DebuggerAPI.readChunkRecords)])
                start += chunk.count
                let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits)
                for (seq, bytes) in zip(chunk, try self.log.rawRecords(chunk)) {
                    guard let bytes else { throw TravelError(.log, "record \(seq) is indexed but missing") }
                    let record = try decoder.decodeRecord(bytes)
                    if filter.matches(record) { result.append(record) }
                    if result.count == limit { break }
                }
            }
            return result
        }
        // No index applies: windows of the seq range, forwards or backwards, at most
        // `maxScanRecords` looked at per request.
        var scanned = 0
        if !descending {
            var next = range.lowerBound
            while next <= range.upperBound && result.count < limit && scanned < DebuggerAPI.maxScanRecords {
                let count = Int(min(UInt64(DebuggerAPI.readChunkRecords), range.upperBound - next + 1))
                let records = try self.log.records(from: next, limit: count)
                guard let last = records.last else { break }
                scanned += records.count
                for record in records where filter.matches(record) {
                    result.append(record)
                    if result.count == limit { break }
                }
                next = last.header.seq + 1
            }
        } else {
            var high = range.upperBound
            while high >= range.lowerBound && result.count < limit && scanned < DebuggerAPI.maxScanRecords {
                let low = high - min(high - range.lowerBound, UInt64(DebuggerAPI.readChunkRecords) - 1)
                let records = try self.log.records(from: low, limit: Int(high - low + 1))
                scanned += records.count
                for record in records.reversed() where filter.matches(record) {
                    result.append(record)
                    if result.count == limit { break }
                }
                guard low > range.lowerBound else { break }
                high = low - 1
            }
        }
        return result
    }

    package func record(_ seq: UInt64) throws(TravelError) -> LogRecord? {
        do {
            return try self.log.record(seq)
        } catch {
            throw .log(error)
        }
    }

    package func state(at: UInt64, actor: Address) throws(TravelError) -> ActorState {
        self.lock.lock()
        defer { self.lock.unlock() }
        let result = try self.traveller.state(at: at, actors: [actor])
        guard let state = result.actors.first else { throw TravelError(.unknownActor, "no actor \(actor)") }
        return state
    }

    package func trace(_ correlation: MessageID) throws(TravelError) -> TaskTrace {
        try TaskTrace.load(log: self.log, correlation: correlation)
    }
}

// MARK: - A capsule

/// A capsule, decoded once and held in memory (its records are bounded by `Capsule.maxRecords`;
/// capsules are one incident, not a log).
package final class CapsuleSource: DebugSource, @unchecked Sendable {
    let reader: CapsuleReader
    let lock = NSLock()

    package init(_ capsule: Capsule) throws(TravelError) {
        self.reader = try CapsuleReader(capsule)
    }

    package var kind: String { "capsule" }
    package var firstSeq: UInt64 { self.reader.records.first?.seq ?? 0 }
    package var lastSeq: UInt64 { self.reader.records.last?.seq ?? 0 }
    package var actors: [Address] { self.reader.capsule.meta.actors }

    package func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> [LogRecord] {
        let all = self.reader.records
        // Binary search for the range's start: the records are in seq order.
        var low = 0
        var high = all.count
        while low < high {
            let middle = (low + high) / 2
            if all[middle].seq < range.lowerBound { low = middle + 1 } else { high = middle }
        }
        var end = low
        while end < all.count && all[end].seq <= range.upperBound { end += 1 }
        var result: [LogRecord] = []
        let indices: [Int] = descending ? Array((low..<end).reversed()) : Array(low..<end)
        for index in indices where filter.matches(all[index].record) {
            result.append(all[index].record)
            if result.count == limit { break }
        }
        return result
    }

    package func record(_ seq: UInt64) throws(TravelError) -> LogRecord? {
        self.reader.records.first { $0.seq == seq }?.record
    }

    package func state(at: UInt64, actor: Address) throws(TravelError) -> ActorState {
        self.lock.lock()
        defer { self.lock.unlock() }
        return try self.reader.state(at: at, actor: actor)
    }

    package func trace(_ correlation: MessageID) throws(TravelError) -> TaskTrace {
        let records = self.reader.records.filter { $0.record.envelope.correlationID == correlation }.map(\.record)
        guard !records.isEmpty else { throw TravelError(.unknownCorrelation, "the capsule has no record of task \(correlation)") }
        return TaskTrace(correlation: correlation, records: records)
    }
}
