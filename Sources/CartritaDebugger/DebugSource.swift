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
    /// The records matching `filter` with seq in `range`, in order (descending: from the top), at
    /// most `limit`, and how far the search got: a search stops early at `limit` or at its
    /// budget of records looked at, and goes on from `reached` next time.
    func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> RecordPage
    func record(_ seq: UInt64) throws(TravelError) -> LogRecord?
    func state(at: UInt64, actor: Address) throws(TravelError) -> ActorState
    func trace(_ correlation: MessageID) throws(TravelError) -> TaskTrace
}

/// One search of the timeline.
package struct RecordPage: Sendable {
    package var records: [LogRecord]
    /// The last seq looked at, in the search's direction (the range's end when it was finished).
    package var reached: UInt64
}

// MARK: - A log

/// A log read in pages through its LMDB cursors and indexes. One traveller with in-memory
/// checkpoints serves every state request (stepping back and forth stays fast); it is not
/// thread-safe, so a lock serialises travels.
package final class LogSource: DebugSource, @unchecked Sendable {
    package let log: EventLog
    let traveller: TimeTravel
    let lock = NSLock()

    /// `hierarchy` and `buggify`: what the log was made with (a simulation's, see `sim
    /// --write-log`), so states are replayed as the run made them.
    package init(log: EventLog, hierarchy: Hierarchy = .standard(), buggify: Buggify? = nil) {
        self.log = log
        self.traveller = TimeTravel(
            log: log, hierarchy: hierarchy, checkpoints: TimeTravel.CheckpointPolicy(everyDeliveries: 2_000, maxBytes: 128 << 20),
            buggify: buggify)
        self.actors = hierarchy.addresses.sorted()
    }

    package var kind: String { "log" }
    package var firstSeq: UInt64 { self.log.lastSeq == 0 ? 0 : 1 }
    package var lastSeq: UInt64 { self.log.lastSeq }
    package let actors: [Address]

    package func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> RecordPage {
        do {
            return try self.read(range, filter, limit, descending)
        } catch {
            throw TravelError.wrapping(error)
        }
    }

    func read(_ range: ClosedRange<UInt64>, _ filter: RecordFilter, _ limit: Int, _ descending: Bool) throws -> RecordPage {
        var result: [LogRecord] = []
        let end = descending ? range.lowerBound : range.upperBound
        func reached() -> UInt64 { result.count == limit ? result.last!.header.seq : end }
        // With an index: the seqs first (cheap: keys only), then only the records needed.
        if filter.correlation == nil, let actor = filter.actor {
            // The actor index in windows of the range, nearest the start first, so a page of a
            // busy actor on a long log reads a few windows of keys, not all of them.
            var window: (low: UInt64, high: UInt64) = descending
                ? (range.upperBound - min(range.upperBound - range.lowerBound, DebuggerAPI.indexWindowSeqs - 1), range.upperBound)
                : (range.lowerBound, range.lowerBound + min(range.upperBound - range.lowerBound, DebuggerAPI.indexWindowSeqs - 1))
            var windows = 0
            while result.count < limit {
                var seqs = try self.log.seqs(actor: actor.rawValue, after: window.low - 1, through: window.high)
                if descending { seqs.reverse() }
                result += try self.decode(seqs, filter, limit - result.count)
                windows += 1
                if result.count < limit && windows == DebuggerAPI.maxIndexWindows {
                    return RecordPage(records: result, reached: descending ? window.low : window.high)
                }
                if descending {
                    guard window.low > range.lowerBound else { break }
                    window = (window.low - 1 - min(window.low - 1 - range.lowerBound, DebuggerAPI.indexWindowSeqs - 1), window.low - 1)
                } else {
                    guard window.high < range.upperBound else { break }
                    window = (window.high + 1, window.high + 1 + min(range.upperBound - window.high - 1, DebuggerAPI.indexWindowSeqs - 1))
                }
            }
            return RecordPage(records: result, reached: reached())
        }
        if let correlation = filter.correlation {
            var seqs = try self.log.seqs(correlation: correlation).filter { range.contains($0) }
            if descending { seqs.reverse() }
            result = try self.decode(seqs, filter, limit)
            return RecordPage(records: result, reached: reached())
        }
        // No index applies: windows of the seq range, forwards or backwards, at most
        // `maxScanRecords` looked at per request.
        var scanned = 0
        if !descending {
            var next = range.lowerBound
            while next <= range.upperBound && result.count < limit {
                if scanned >= DebuggerAPI.maxScanRecords { return RecordPage(records: result, reached: next - 1) }
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
            while high >= range.lowerBound && result.count < limit {
                if scanned >= DebuggerAPI.maxScanRecords { return RecordPage(records: result, reached: high + 1) }
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
        return RecordPage(records: result, reached: reached())
    }

    /// The records of `seqs` (from an index) that match, at most `limit`, read in chunks.
    func decode(_ seqs: [UInt64], _ filter: RecordFilter, _ limit: Int) throws -> [LogRecord] {
        var result: [LogRecord] = []
        var start = 0
        let decoder = EnvelopeDecoder(limits: self.log.configuration.codecLimits)
        while start < seqs.count && result.count < limit {
            let chunk = Array(seqs[start..<min(seqs.count, start + DebuggerAPI.readChunkRecords)])
            start += chunk.count
            for (seq, bytes) in zip(chunk, try self.log.rawRecords(chunk)) {
                guard let bytes else { throw TravelError(.log, "record \(seq) is indexed but missing") }
                let record = try decoder.decodeRecord(bytes)
                if filter.matches(record) { result.append(record) }
                if result.count == limit { break }
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

    package func records(in range: ClosedRange<UInt64>, filter: RecordFilter, limit: Int, descending: Bool) throws(TravelError) -> RecordPage {
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
        let reached = result.count == limit ? result.last!.header.seq : (descending ? range.lowerBound : range.upperBound)
        return RecordPage(records: result, reached: reached)
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
