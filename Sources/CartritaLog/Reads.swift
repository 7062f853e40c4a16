import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import Foundation

/// Figures of `cartrita log stat`.
public struct LogStat: Sendable {
    public struct IndexStat: Sendable {
        public var name: String
        public var entries: Int
        /// The last seq the index covers. Equal to `lastSeq` for indexes written in the main commit.
        public var appliedSeq: UInt64
        /// True when written in the same commit as the records.
        public var inMainCommit: Bool
    }

    public var records: Int
    public var firstSeq: UInt64
    public var lastSeq: UInt64
    /// Size of data.mdb on disk.
    public var fileBytes: Int
    /// Pages in use by the records themselves (the `log` database) times the page size.
    public var recordBytes: Int
    public var mapSizeBytes: Int
    public var actors: Int
    public var snapshots: Int
    public var indexes: [IndexStat]
    public var headHash: Digest32
    public var formatVersion: UInt8
}

extension EventLog {
    // MARK: Sequence bounds

    /// The last committed seq (0 for an empty log).
    public var lastSeq: UInt64 {
        if let writer = self.writer {
            writer.published.lock()
            defer { writer.published.unlock() }
            return writer.publishedLastSeq
        }
        return (try? self.environment.read { txn in
            try txn.withCursor(self.databases.log) { try $0.last()?.key.bigEndianUInt64() ?? 0 }
        }) ?? 0
    }

    /// The writer's counters since open (zero for a read-only log).
    public var writerMetrics: WriterMetrics {
        guard let writer = self.writer else { return WriterMetrics() }
        writer.published.lock()
        defer { writer.published.unlock() }
        return writer.metrics
    }

    /// Drops this process's mappings of the log file's pages now (they stay in the page cache):
    /// after a pass that read much of the log (recovery, a verify), so RSS does not keep the
    /// log's size. The writer also does it on its own (`releaseMappedPagesEveryBytes`).
    /// Returns the bytes of map covered.
    @discardableResult
    public func releaseMappedPages() throws(EventLogError) -> Int {
        do {
            return try self.environment.releaseMappedPages()
        } catch {
            throw EventLogError.wrap(error, "releasing mapped pages")
        }
    }

    /// Counts `count` records read at random; past `releaseMappedPagesEveryReads`, this reader
    /// releases the log's mapped pages itself (when releases are on at all).
    func noteReads(_ count: Int) {
        guard self.configuration.releaseMappedPagesEveryBytes > 0 else { return }
        let total = self.readsSinceRelease.add(count, ordering: .relaxed).newValue
        guard total >= Self.releaseMappedPagesEveryReads else { return }
        // One reader wins the reset and releases; the others go on.
        guard self.readsSinceRelease.compareExchange(expected: total, desired: 0, ordering: .relaxed).exchanged else { return }
        _ = try? self.environment.releaseMappedPages()
    }

    /// The first seq still in this file (1 unless retention moved older segments out).
    public var firstSeq: UInt64 {
        (try? self.environment.read { txn in
            try txn.withCursor(self.databases.log) { try $0.first()?.key.bigEndianUInt64() }
        }) ?? nil ?? 1
    }

    // MARK: Records

    /// The stored bytes of record `seq`, copied out.
    public func rawRecord(_ seq: UInt64) throws(EventLogError) -> [UInt8]? {
        self.noteReads(1)
        do {
            return try self.environment.read { txn in
                try txn.get(self.databases.log, key: EventLog.bigEndian(seq)).map { [UInt8]($0) }
            }
        } catch {
            throw EventLogError.wrap(error, "reading record \(seq)")
        }
    }

    /// Record `seq`, decoded and checked.
    public func record(_ seq: UInt64) throws(EventLogError) -> LogRecord? {
        guard let bytes = try self.rawRecord(seq) else { return nil }
        do {
            return try EnvelopeDecoder(limits: self.configuration.codecLimits).decodeRecord(bytes)
        } catch {
            throw EventLogError(.corrupted, "record \(seq): \(error)")
        }
    }

    /// Calls `body` with each record's seq and stored bytes (borrowed: copy what you keep), from
    /// `seq` on, in order, in one consistent read snapshot, until `body` returns false.
    public func scanRaw(from seq: UInt64 = 1, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws(EventLogError) {
        do {
            try self.environment.read { txn in
                _ = try txn.withCursor(self.databases.log) { cursor in
                    try cursor.forEach(from: EventLog.bigEndian(seq)) { key, value in
                        try body(key.bigEndianUInt64() ?? 0, value)
                    }
                }
            }
        } catch let error as EventLogError {
            throw error
        } catch {
            throw EventLogError.wrap(error, "scanning from \(seq)")
        }
    }

    /// Decoded records from `seq`, at most `limit`.
    public func records(from seq: UInt64 = 1, limit: Int = .max) throws(EventLogError) -> [LogRecord] {
        let decoder = EnvelopeDecoder(limits: self.configuration.codecLimits)
        var records: [LogRecord] = []
        try self.scanRaw(from: seq) { current, bytes in
            guard records.count < limit else { return false }
            do {
                records.append(try decoder.decodeRecord(bytes))
            } catch {
                throw EventLogError(.corrupted, "record \(current): \(error)")
            }
            return records.count < limit
        }
        return records
    }

    // MARK: Lookups

    /// Where message `id` is in the log (the exactly_once dedupe lookup).
    public func seq(ofMessage id: MessageID) throws(EventLogError) -> UInt64? {
        do {
            return try self.environment.read { txn in
                try id.withBytes { key in try txn.get(self.databases.ids, key: key)?.bigEndianUInt64() }
            }
        } catch {
            throw EventLogError.wrap(error, "looking up \(id)")
        }
    }

    /// Where each of `ids` is in the log, in one read snapshot (nil: not logged).
    public func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?] {
        guard !ids.isEmpty else { return [] }
        do {
            return try self.environment.read { txn in
                var lookedUp = 0
                return try ids.map { id in
                    // Counted by the pages they may map, not one read per id: an id entry takes
                    // 32 bytes of a 4 KiB page, and a snapshot's thousands of ids are recent and
                    // sorted, so neighbours share their leaf. Counting each id as a page made a
                    // busy node drop and fault back its mappings hundreds of times a second
                    // (a sixth of its CPU) to bound pages that were never there. Still counted
                    // during the lookup, so a long one releases as it goes.
                    lookedUp += 1
                    if lookedUp % Self.idEntriesPerPageEstimate == 1 { self.noteReads(1) }
                    return try id.withBytes { key in try txn.get(self.databases.ids, key: key)?.bigEndianUInt64() }
                }
            }
        } catch {
            throw EventLogError.wrap(error, "looking up \(ids.count) message ids")
        }
    }

    /// Every seq of the task `correlation`, in order. Index entries up to the watermark, plus a
    /// scan of the records the index has not reached yet, in one read snapshot.
    public func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64] {
        try self.indexLookup(self.databases.byCorrelation, prefix: correlation.bytes) { $0.correlationID == correlation }
    }

    /// Every seq addressed to `actor` after `seq`, in order.
    public func seqs(actor: String, after seq: UInt64 = 0) throws(EventLogError) -> [UInt64] {
        let all = try self.indexLookup(self.databases.byActor, prefix: Array(actor.utf8) + [0], from: seq + 1) {
            $0.recipient.rawValue == actor
        }
        return all
    }

    /// The first `limit` seqs addressed to `actor` after `seq`, in order: a page, read without
    /// walking the rest of the index (an actor of a long log has hundreds of thousands).
    public func seqs(actor: String, after seq: UInt64, limit: Int) throws(EventLogError) -> [UInt64] {
        guard limit > 0 else { return [] }
        return try self.indexLookup(self.databases.byActor, prefix: Array(actor.utf8) + [0], from: seq + 1, limit: limit) {
            $0.recipient.rawValue == actor
        }
    }

    /// Every seq addressed to `actor` in `after+1 ... through`, in order: one actor's records up
    /// to a point (time travel), without reading the index past it.
    public func seqs(actor: String, after seq: UInt64, through last: UInt64) throws(EventLogError) -> [UInt64] {
        guard last > seq else { return [] }
        return try self.indexLookup(self.databases.byActor, prefix: Array(actor.utf8) + [0], from: seq + 1, through: last) {
            $0.recipient.rawValue == actor
        }
    }

    /// The stored bytes of each of `seqs`, copied out, in one read snapshot (nil: not in the log).
    public func rawRecords(_ seqs: [UInt64]) throws(EventLogError) -> [[UInt8]?] {
        guard !seqs.isEmpty else { return [] }
        self.noteReads(seqs.count)
        do {
            return try self.environment.read { txn in
                try seqs.map { seq in try txn.get(self.databases.log, key: EventLog.bigEndian(seq)).map { [UInt8]($0) } }
            }
        } catch {
            throw EventLogError.wrap(error, "reading \(seqs.count) records")
        }
    }

    /// The last seq addressed to `actor`, 0 if none.
    public func head(of actor: String) throws(EventLogError) -> UInt64 {
        do {
            return try self.environment.read { txn in
                try txn.get(self.databases.heads, key: Array(actor.utf8))?.bigEndianUInt64() ?? 0
            }
        } catch {
            throw EventLogError.wrap(error, "reading the head of \(actor)")
        }
    }

    /// Every actor with its last seq, sorted by address.
    public func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)] {
        do {
            return try self.environment.read { txn in
                var heads: [(actor: String, seq: UInt64)] = []
                _ = try txn.withCursor(self.databases.heads) { cursor in
                    try cursor.forEach { key, value in
                        heads.append((String(decoding: key, as: UTF8.self), value.bigEndianUInt64() ?? 0))
                        return true
                    }
                }
                return heads
            }
        } catch {
            throw EventLogError.wrap(error, "reading actor heads")
        }
    }

    func indexLookup(
        _ database: LMDBDatabase, prefix: [UInt8], from seq: UInt64 = 0, through last: UInt64 = .max, limit: Int = .max,
        matches: (Envelope) -> Bool
    ) throws(EventLogError) -> [UInt64] {
        do {
            return try self.environment.read { txn in
                var seqs: [UInt64] = []
                let applied = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.indexAppliedSeq))?.bigEndianUInt64() ?? 0
                _ = try txn.withCursor(database) { cursor in
                    try cursor.forEach(from: prefix + EventLog.bigEndian(seq)) { key, _ in
                        guard key.count == prefix.count + 8, key.starts(with: prefix) else { return false }
                        let found = key.bigEndianUInt64(atByteOffset: prefix.count) ?? 0
                        guard found <= last else { return false }
                        seqs.append(found)
                        return seqs.count < limit
                    }
                }
                // The tail the index has not reached yet.
                guard applied < last, seqs.count < limit else { return seqs }
                let decoder = EnvelopeDecoder(limits: self.configuration.codecLimits)
                _ = try txn.withCursor(self.databases.log) { cursor in
                    try cursor.forEach(from: EventLog.bigEndian(max(applied + 1, seq))) { key, value in
                        guard (key.bigEndianUInt64() ?? 0) <= last else { return false }
                        let record = try decoder.decodeRecord(value)
                        if matches(record.envelope) { seqs.append(record.header.seq) }
                        return seqs.count < limit
                    }
                }
                return seqs
            }
        } catch {
            throw EventLogError.wrap(error, "index lookup")
        }
    }

    // MARK: Maintenance

    public func stat() throws(EventLogError) -> LogStat {
        do {
            let info = try self.environment.info()
            let pageSize = try self.environment.stat().pageSizeBytes
            return try self.environment.read { txn in
                let log = try txn.stat(self.databases.log)
                var first: UInt64 = 0
                var last: UInt64 = 0
                _ = try txn.withCursor(self.databases.log) { cursor in
                    first = try cursor.first()?.key.bigEndianUInt64() ?? 0
                    last = try cursor.last()?.key.bigEndianUInt64() ?? 0
                }
                let applied = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.indexAppliedSeq))?.bigEndianUInt64() ?? 0
                let headHash = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.headHash)).map { $0.count == 32 ? Digest32(bytes: $0) : .zero } ?? .zero
                let format = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.format))?.first ?? 0
                return LogStat(
                    records: log.entries, firstSeq: first, lastSeq: last,
                    fileBytes: EventLog.dataFileBytes(in: self.path),
                    recordBytes: (log.branchPages + log.leafPages + log.overflowPages) * pageSize,
                    mapSizeBytes: info.mapSizeBytes,
                    actors: try txn.stat(self.databases.heads).entries,
                    snapshots: try txn.stat(self.databases.snapshots).entries,
                    indexes: [
                        .init(name: "id", entries: try txn.stat(self.databases.ids).entries, appliedSeq: last, inMainCommit: true),
                        .init(name: "actor_head", entries: try txn.stat(self.databases.heads).entries, appliedSeq: last, inMainCommit: true),
                        .init(name: "correlation", entries: try txn.stat(self.databases.byCorrelation).entries, appliedSeq: min(applied, last), inMainCommit: false),
                        .init(name: "actor", entries: try txn.stat(self.databases.byActor).entries, appliedSeq: min(applied, last), inMainCommit: false),
                    ],
                    headHash: headHash, formatVersion: format)
            }
        } catch {
            throw EventLogError.wrap(error, "reading stats")
        }
    }

    /// A consistent copy of the whole log into `directory` (which must not hold files), taken
    /// while appends go on: LMDB copies from one read snapshot. The copy is compacted.
    public func backup(to directory: String) throws(EventLogError) {
        do {
            try self.environment.copy(to: directory, compact: true)
        } catch {
            throw EventLogError.wrap(error, "backing up to \(directory)")
        }
    }

    /// Drops the secondary indexes and rebuilds them from the log.
    public func rebuildIndexes() async throws(EventLogError) {
        let writer = try self.writerOrThrow()
        let result: Result<Void, EventLogError> = await withCheckedContinuation { continuation in
            writer.enqueue(.rebuildIndexes { continuation.resume(returning: $0) })
        }
        try result.get()
    }

    /// Clears reader slots left by dead processes; returns how many.
    public func clearStaleReaders() throws(EventLogError) -> Int {
        do {
            return try self.environment.readerCheck()
        } catch {
            throw EventLogError.wrap(error, "checking readers")
        }
    }
}
