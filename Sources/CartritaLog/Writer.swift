import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import Crypto
import Foundation

/// The log's single writer: a dedicated OS thread that owns every LMDB write transaction.
///
/// State machine of one loop turn: wait for work (or, with index work pending, for at most
/// `indexIdleWaitMilliseconds`); take the queue up to the batch caps; commit the appends in one
/// transaction; acknowledge; then either apply pending secondary-index entries (idle, or lag over
/// the cap) or run the next batch. Everything the writer keeps in memory (`nextSeq`, `prevHash`,
/// actor heads) changes only after a commit succeeded, so a failed batch leaves both the file
/// and the writer exactly as they were.
final class LogWriter: @unchecked Sendable {
    enum Request {
        case append(PendingRecord)
        case snapshot(PendingSnapshot)
        /// Runs after everything before it is committed and indexed.
        case barrier(@Sendable (Result<Void, EventLogError>) -> Void)
        case rebuildIndexes(@Sendable (Result<Void, EventLogError>) -> Void)
    }

    let environment: LMDBEnvironment
    let databases: EventLog.Databases
    let configuration: EventLogConfiguration

    // MARK: Queue (guarded by `condition`)
    let condition = NSCondition()
    var queue: [Request] = []
    var queuedRecords = 0
    var stopping = false
    var stopped = false
    var thread: Thread?

    // MARK: Writer-thread state
    var nextSeq: UInt64
    var prevHash: Digest32
    var heads: [String: UInt64]
    /// Secondary-index entries committed to the log but not yet to the indexes, in seq order.
    var pendingIndex: [IndexEntry] = []
    var indexAppliedSeq: UInt64
    var lastSync = ContinuousClock.now
    /// Size of the previous batch, for the group-commit linger.
    var lastBatchRecords = 0
    var lastReaderCheck = ContinuousClock.now
    /// Bytes of records committed since the log's mapped pages were last released.
    var committedBytesSinceRelease = 0
    var lastMappedPagesRelease = ContinuousClock.now
    /// When idle, mapped pages (touched by readers too) are released at most this often.
    static let idleMappedPagesReleaseInterval = Duration.seconds(1)
    /// When busy, at least this often too: the pages a commit touches grow with the indexes
    /// (each fault maps its neighbours as well), not only with the bytes committed.
    static let busyMappedPagesReleaseInterval = Duration.milliseconds(250)
    /// How often an idle writer clears reader slots left by dead processes (a dead reader's slot
    /// pins old pages, so the file would grow without bound).
    static let readerCheckInterval = Duration.seconds(30)
    let recordWriter = MsgPackWriter(initialCapacityBytes: 1 << 16)
    /// Where the writer's time went since the last batch's metrics were published (writer
    /// thread only; moved into `metrics` once per batch, under one lock).
    struct Times {
        var build: Int64 = 0
        var linger: Int64 = 0
        var index: Int64 = 0
        var answer: Int64 = 0
    }
    var times = Times()
    let answerHooks = AnswerHooks()

    /// Published for readers on other threads (`EventLog.lastSeq`, `EventLog.writerMetrics`).
    let published = NSLock()
    var publishedLastSeq: UInt64
    var metrics = WriterMetrics()

    static let indexIdleWaitMilliseconds = 2

    struct IndexEntry {
        var seq: UInt64
        var correlationID: MessageID
        var recipient: String
    }

    init(environment: LMDBEnvironment, databases: EventLog.Databases, configuration: EventLogConfiguration) throws {
        self.environment = environment
        self.databases = databases
        self.configuration = configuration
        // Recover the writer's view from the file: last seq, head hash, heads, index watermark.
        let state = try environment.read { txn -> (UInt64, Digest32, [String: UInt64], UInt64) in
            var last: UInt64 = 0
            _ = try txn.withCursor(databases.log) { cursor in
                if let entry = try cursor.last() { last = entry.key.bigEndianUInt64() ?? 0 }
            }
            var hash = Digest32.zero
            if let stored = try txn.get(databases.meta, key: EventLog.metaKey(EventLog.MetaKey.headHash)), stored.count == 32 {
                hash = Digest32(bytes: stored)
            } else if let anchor = try txn.get(databases.meta, key: EventLog.metaKey(EventLog.MetaKey.anchorHash)), anchor.count == 32 {
                hash = Digest32(bytes: anchor)
            }
            var heads: [String: UInt64] = [:]
            _ = try txn.withCursor(databases.heads) { cursor in
                try cursor.forEach { key, value in
                    heads[String(decoding: key, as: UTF8.self)] = value.bigEndianUInt64() ?? 0
                    return true
                }
            }
            let applied = try txn.get(databases.meta, key: EventLog.metaKey(EventLog.MetaKey.indexAppliedSeq))?.bigEndianUInt64() ?? 0
            return (last, hash, heads, applied)
        }
        if state.0 == 0 {
            let first = try environment.read { txn in
                try txn.get(databases.meta, key: EventLog.metaKey(EventLog.MetaKey.firstSeq))?.bigEndianUInt64()
            }
            self.nextSeq = first ?? 1
        } else {
            self.nextSeq = state.0 + 1
        }
        self.prevHash = state.1
        self.heads = state.2
        self.indexAppliedSeq = min(state.3, state.0)
        self.publishedLastSeq = state.0
        // Index entries the previous process committed to the log but not to the indexes.
        if self.indexAppliedSeq < state.0 {
            try self.loadIndexBacklog(after: self.indexAppliedSeq)
        }
    }

    func start() {
        let thread = Thread { [self] in self.run() }
        thread.name = "cartrita-log-writer"
        self.thread = thread
        thread.start()
    }

    /// Commits what is queued, applies the indexes, syncs, and ends the thread. Idempotent.
    func stop() {
        self.condition.lock()
        guard !self.stopped else {
            self.condition.unlock()
            return
        }
        self.stopping = true
        self.condition.broadcast()
        while !self.stopped { self.condition.wait() }
        self.condition.unlock()
    }

    // MARK: Producers' side

    /// One record, without the array of the batch form (the common case, once per append).
    func enqueue(one record: PendingRecord) throws(EventLogError) {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.stopping else { throw EventLogError(.closed, "the log is closed") }
        guard self.queuedRecords < self.configuration.maxQueuedRecords else {
            throw EventLogError(.overloaded, "\(self.queuedRecords) records already wait for the writer (limit \(self.configuration.maxQueuedRecords))")
        }
        self.queue.append(.append(record))
        self.queuedRecords += 1
        self.condition.signal()
    }

    func enqueue(_ records: [PendingRecord]) throws(EventLogError) {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.stopping else { throw EventLogError(.closed, "the log is closed") }
        guard self.queuedRecords + records.count <= self.configuration.maxQueuedRecords else {
            throw EventLogError(.overloaded, "\(self.queuedRecords) records already wait for the writer (limit \(self.configuration.maxQueuedRecords))")
        }
        for record in records { self.queue.append(.append(record)) }
        self.queuedRecords += records.count
        self.condition.signal()
    }

    func enqueue(_ request: Request) {
        self.condition.lock()
        defer { self.condition.unlock() }
        guard !self.stopping else {
            let closed = EventLogError(.closed, "the log is closed")
            switch request {
            case .append(let record): Self.answer([record], [.failure(closed)])
            case .snapshot(let snapshot): snapshot.completion(.failure(closed))
            case .barrier(let done), .rebuildIndexes(let done): done(.failure(closed))
            }
            return
        }
        self.queue.append(request)
        self.condition.signal()
    }

    func barrier(_ done: @escaping @Sendable (Result<Void, EventLogError>) -> Void) {
        self.enqueue(.barrier(done))
    }

    // MARK: The loop

    func run() {
        // Set from inside the thread: only then does Foundation pass the name to the OS (Linux
        // shows it in top -H, perf and gdb). 15 characters at most.
        Thread.current.name = "cartrita-writer"
        while true {
            self.condition.lock()
            if self.queue.isEmpty && !self.stopping {
                if self.pendingIndex.isEmpty && self.configuration.durability != .fast {
                    // Wake at least once per reader-check interval, even with nothing to do, and
                    // once a second when mapped pages are released (readers map pages too).
                    let seconds: Double = self.configuration.releaseMappedPagesEveryBytes > 0 ? 1 : 30
                    _ = self.condition.wait(until: Date(timeIntervalSinceNow: seconds))
                } else {
                    // Something to do when idle: index entries, or the periodic sync.
                    let wait = self.pendingIndex.isEmpty ? self.configuration.fastSyncIntervalMilliseconds : Self.indexIdleWaitMilliseconds
                    _ = self.condition.wait(until: Date(timeIntervalSinceNow: Double(wait) / 1000))
                }
            }
            if self.queue.isEmpty {
                let stopping = self.stopping
                self.condition.unlock()
                // Idle: catch the indexes up, sync in fast mode, clear dead readers now and then.
                if !self.pendingIndex.isEmpty { self.applyIndexes(limit: self.configuration.maxIndexLagRecords) }
                // Closing: leave the indexes complete, so the next open has no backlog to rebuild.
                while stopping && !self.pendingIndex.isEmpty {
                    guard self.applyIndexes(limit: self.configuration.maxIndexLagRecords) else { break }
                }
                self.syncIfDue(force: stopping)
                self.clearStaleReadersIfDue()
                self.releaseMappedPagesIfDue(idle: true)
                if stopping {
                    self.condition.lock()
                    if self.queue.isEmpty {
                        self.stopped = true
                        self.condition.broadcast()
                        self.condition.unlock()
                        return
                    }
                    self.condition.unlock()
                }
                continue
            }
            // Linger: when fewer records wait than the last batch held, the producers that batch
            // acknowledged are probably about to append again; waiting a moment lets them join
            // this commit instead of paying for the next sync. Bounded, and off when set to 0.
            if self.configuration.groupCommitLingerMicroseconds > 0, self.queuedRecords > 0,
                self.queuedRecords < min(self.lastBatchRecords, self.configuration.maxBatchRecords), !self.stopping
            {
                let lingerStart = ContinuousClock.now
                let deadline = Date(timeIntervalSinceNow: Double(self.configuration.groupCommitLingerMicroseconds) / 1e6)
                while self.queuedRecords < min(self.lastBatchRecords, self.configuration.maxBatchRecords), !self.stopping {
                    if !self.condition.wait(until: deadline) { break }
                }
                self.times.linger += (ContinuousClock.now - lingerStart).nanoseconds
            }
            // Take a batch: consecutive appends up to the caps, with the snapshots among them
            // (saved in the same transaction), or one other request.
            var batch: [PendingRecord] = []
            var snapshots: [PendingSnapshot] = []
            var other: Request?
            var bytes = 0
            var taken = 0
            taking: while taken < self.queue.count {
                switch self.queue[taken] {
                case .append(let record):
                    guard batch.count < self.configuration.maxBatchRecords,
                        batch.isEmpty || bytes + record.encoded.body.count <= self.configuration.maxBatchBytes
                    else { break taking }
                    batch.append(record)
                    bytes += record.encoded.body.count
                    taken += 1
                case .snapshot(let snapshot):
                    guard snapshots.count < Self.maxSnapshotsPerBatch,
                        batch.isEmpty && snapshots.isEmpty || bytes + snapshot.encoded.count <= self.configuration.maxBatchBytes
                    else { break taking }
                    snapshots.append(snapshot)
                    bytes += snapshot.encoded.count
                    taken += 1
                default:
                    if batch.isEmpty && snapshots.isEmpty {
                        other = self.queue[taken]
                        taken += 1
                    }
                    break taking
                }
            }
            self.queue.removeFirst(taken)
            self.queuedRecords -= batch.count
            self.condition.unlock()

            if !batch.isEmpty || !snapshots.isEmpty {
                if !batch.isEmpty { self.lastBatchRecords = batch.count }
                let commitStart = ContinuousClock.now
                let (results, snapshotResults) = self.commit(batch, snapshots: snapshots)
                let commitNanoseconds = (ContinuousClock.now - commitStart).nanoseconds
                self.published.lock()
                self.metrics.batches += 1
                self.metrics.records += batch.count
                self.metrics.snapshotsSaved += snapshotResults.count(where: { (try? $0.get()) != nil })
                self.metrics.maxBatchRecords = max(self.metrics.maxBatchRecords, batch.count)
                self.metrics.commitNanoseconds += commitNanoseconds
                self.metrics.maxCommitNanoseconds = max(self.metrics.maxCommitNanoseconds, commitNanoseconds)
                self.metrics.commitBuildNanoseconds += self.times.build
                self.metrics.lingerNanoseconds += self.times.linger
                self.metrics.indexNanoseconds += self.times.index
                self.metrics.answerNanoseconds += self.times.answer
                self.published.unlock()
                self.times = Times()
                let answerStart = ContinuousClock.now
                let hooks = self.answerHooks.current()
                for hook in hooks { hook.willAnswer() }
                Self.answer(batch, results)
                for (snapshot, result) in zip(snapshots, snapshotResults) { snapshot.completion(result) }
                if !hooks.isEmpty {
                    let queued = self.queuedRecordsNow()
                    for hook in hooks { hook.didAnswer(queued) }
                }
                let answered = ContinuousClock.now
                self.times.answer += (answered - answerStart).nanoseconds
                if self.pendingIndex.count >= self.configuration.maxIndexLagRecords {
                    self.applyIndexes(limit: self.configuration.maxIndexLagRecords)
                    self.times.index += (ContinuousClock.now - answered).nanoseconds
                }
                self.syncIfDue(force: false)
                self.committedBytesSinceRelease += bytes
                self.releaseMappedPagesIfDue(idle: false)
            }
            if let other {
                let hooks = self.answerHooks.current()
                for hook in hooks { hook.willAnswer() }
                let otherStart = ContinuousClock.now
                self.perform(other)
                let otherNanoseconds = (ContinuousClock.now - otherStart).nanoseconds
                self.published.lock()
                self.metrics.otherRequests += 1
                self.metrics.otherNanoseconds += otherNanoseconds
                self.published.unlock()
                if !hooks.isEmpty {
                    let queued = self.queuedRecordsNow()
                    for hook in hooks { hook.didAnswer(queued) }
                }
            }
        }
    }

    /// Hands each record its result: a ticket's consecutive records in one call (one lock).
    static func answer(_ batch: [PendingRecord], _ results: [Result<UInt64, EventLogError>]) {
        var position = 0
        while position < batch.count {
            let record = batch[position]
            if let ticket = record.ticket {
                var end = position + 1
                while end < batch.count, batch[end].ticket === ticket, batch[end].ticketIndex == record.ticketIndex + (end - position) {
                    end += 1
                }
                ticket.set(from: record.ticketIndex, results[position..<end])
                position = end
            } else {
                record.completion?(results[position])
                position += 1
            }
        }
    }

    func queuedRecordsNow() -> Int {
        self.condition.lock()
        defer { self.condition.unlock() }
        return self.queuedRecords
    }

    func perform(_ request: Request) {
        switch request {
        case .append:
            preconditionFailure("appends are batched")
        case .snapshot:
            preconditionFailure("snapshots ride in the group commits")
        case .barrier(let done):
            while !self.pendingIndex.isEmpty {
                guard self.applyIndexes(limit: self.configuration.maxIndexLagRecords) else {
                    done(.failure(EventLogError(.storage, "the secondary indexes could not be applied")))
                    return
                }
            }
            self.syncIfDue(force: self.configuration.durability == .fast)
            done(.success(()))
        case .rebuildIndexes(let done):
            done(self.rebuildIndexes())
        }
    }

    // MARK: Group commit

    /// Snapshots saved in one group commit at most (the rest wait for the next).
    static let maxSnapshotsPerBatch = 64

    /// Commits one batch, with `snapshots` in the same transaction. Returns one result per
    /// record and one per snapshot, in order. A snapshot that covers records the log does not
    /// hold fails alone; a failed transaction fails everything in it.
    func commit(
        _ batch: [PendingRecord], snapshots: [PendingSnapshot] = []
    ) -> (records: [Result<UInt64, EventLogError>], snapshots: [Result<Void, EventLogError>]) {
        // Checked against what is committed before this batch: a snapshot never covers its records.
        let refusals = snapshots.map { self.checkSnapshot($0) }
        var snapshotResults: [Result<Void, EventLogError>] = refusals.map { $0.map { .failure($0) } ?? .success(()) }
        while true {
            var results = [Result<UInt64, EventLogError>](repeating: .failure(EventLogError(.storage, "not written")), count: batch.count)
            var nextSeq = self.nextSeq
            var prevHash = self.prevHash
            var touched: [String: UInt64] = [:]
            var indexEntries: [IndexEntry] = []
            indexEntries.reserveCapacity(batch.count)
            do {
                let buildStart = ContinuousClock.now
                try self.environment.write { txn in
                    // One 8-byte key buffer for the whole batch, rewritten per record: the commit
                    // loop is the hot path and allocates nothing per record for keys.
                    let seqKey = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
                    defer { seqKey.deallocate() }
                    let seqBytes = UnsafeRawBufferPointer(seqKey)
                    for (position, record) in batch.enumerated() {
                        seqKey.storeBytes(of: nextSeq.bigEndian, as: UInt64.self)
                        // The id index is the exactly_once dedupe: refuse a second copy.
                        let put = try record.id.withBytes { idKey in
                            try txn.put(self.databases.ids, key: idKey, value: seqBytes, flags: .noOverwrite)
                        }
                        if case .keyExists(let existing) = put {
                            var error = EventLogError(.duplicateID, "message \(record.id) is already in the log")
                            error.existingSeq = existing.bigEndianUInt64()
                            results[position] = .failure(error)
                            continue
                        }
                        let seq = nextSeq
                        let header = RecordHeader(
                            seq: seq, prevHash: prevHash,
                            actorPrevSeq: touched[record.recipient] ?? self.heads[record.recipient] ?? 0,
                            clockMilliseconds: record.clockMilliseconds, entropy: record.entropy)
                        self.recordWriter.reset()
                        self.recordWriter.writeRecord(header: header, envelope: record.encoded)
                        prevHash = try self.recordWriter.withBytes { bytes in
                            try txn.put(self.databases.log, key: seqBytes, value: bytes, flags: .append)
                            return RecordHash.sha256(bytes)
                        }
                        touched[record.recipient] = seq
                        indexEntries.append(IndexEntry(seq: seq, correlationID: record.correlationID, recipient: record.recipient))
                        results[position] = .success(seq)
                        nextSeq += 1
                    }
                    if nextSeq != self.nextSeq {  // else only duplicates: no record to commit
                        for (actor, seq) in touched {
                            try txn.put(self.databases.heads, key: Array(actor.utf8), value: EventLog.bigEndian(seq))
                        }
                        try txn.put(self.databases.meta, key: EventLog.metaKey(EventLog.MetaKey.headHash), value: prevHash.bytes)
                    }
                    for (snapshot, refusal) in zip(snapshots, refusals) where refusal == nil { try self.putSnapshot(snapshot, in: txn) }
                    self.times.build += (ContinuousClock.now - buildStart).nanoseconds
                }
            } catch let error as LMDBError where error.code == .mapFull {
                if let failure = self.growMap() {
                    for index in refusals.indices where refusals[index] == nil { snapshotResults[index] = .failure(failure) }
                    return (batch.map { _ in .failure(failure) }, snapshotResults)
                }
                continue  // retry the whole batch in a bigger map: nothing was acknowledged
            } catch {
                let failure = self.classify(error, context: "committing \(batch.count) records", neededBytes: batch.reduce(0) { $0 + $1.encoded.body.count })
                for index in refusals.indices where refusals[index] == nil { snapshotResults[index] = .failure(failure) }
                return (batch.map { _ in .failure(failure) }, snapshotResults)
            }
            // Committed: now, and only now, the writer's memory moves forward.
            self.nextSeq = nextSeq
            self.prevHash = prevHash
            for (actor, seq) in touched { self.heads[actor] = seq }
            self.pendingIndex += indexEntries
            self.published.lock()
            self.publishedLastSeq = nextSeq - 1
            self.published.unlock()
            return (results, snapshotResults)
        }
    }

    /// LMDB reports a short write as EIO, which is what a full file system gives it: an I/O
    /// failure while the file system has less room than the batch needs is `disk_full`.
    func classify(_ error: any Error, context: String, neededBytes: Int) -> EventLogError {
        var failure = EventLogError.wrap(error, context)
        guard failure.code == .storage, let lmdb = failure.lmdbError, lmdb.code == .ioError || lmdb.code == .diskFull else {
            return failure
        }
        var info = statvfs()
        if statvfs(self.environment.path, &info) == 0 {
            let freeBytes = Int(info.f_bavail) * Int(info.f_frsize)
            // Pages are copied on write: a commit needs room for at least twice its records.
            if freeBytes < 2 * neededBytes + (1 << 20) {
                failure.code = .diskFull
                failure.message = "\(context): the file system holding \(self.environment.path) is full (\(freeBytes) bytes free): \(lmdb)"
            }
        }
        return failure
    }

    /// Doubles the map, up to `maxMapSizeBytes`. Returns an error when the cap is reached.
    func growMap() -> EventLogError? {
        do {
            let current = try self.environment.info().mapSizeBytes
            guard current < self.configuration.maxMapSizeBytes else {
                return EventLogError(.logFull, "the log reached its maximum map size of \(self.configuration.maxMapSizeBytes) bytes")
            }
            let target = min(current * 2, self.configuration.maxMapSizeBytes)
            try self.environment.setMapSize(target)
            return nil
        } catch {
            return EventLogError.wrap(error, "growing the map")
        }
    }

    func syncIfDue(force: Bool) {
        guard self.configuration.durability == .fast else { return }
        let interval = Duration.milliseconds(self.configuration.fastSyncIntervalMilliseconds)
        guard force || ContinuousClock.now - self.lastSync >= interval else { return }
        try? self.environment.sync(force: true)
        self.lastSync = ContinuousClock.now
    }

    func clearStaleReadersIfDue() {
        guard ContinuousClock.now - self.lastReaderCheck >= Self.readerCheckInterval else { return }
        self.lastReaderCheck = ContinuousClock.now
        let cleared = (try? self.environment.readerCheck()) ?? 0
        if cleared > 0 {
            self.published.lock()
            self.metrics.staleReadersCleared += cleared
            self.published.unlock()
        }
    }

    /// Releases the process's mappings of the log file's pages (see
    /// `EventLogConfiguration.releaseMappedPagesEveryBytes`): after that many committed bytes or
    /// a quarter of a second of commits, or when idle and a second has passed. A failure only leaves pages mapped, so it is counted,
    /// not thrown.
    func releaseMappedPagesIfDue(idle: Bool) {
        let everyBytes = self.configuration.releaseMappedPagesEveryBytes
        guard everyBytes > 0 else { return }
        if idle {
            guard ContinuousClock.now - self.lastMappedPagesRelease >= Self.idleMappedPagesReleaseInterval else { return }
        } else {
            guard self.committedBytesSinceRelease >= everyBytes
                || ContinuousClock.now - self.lastMappedPagesRelease >= Self.busyMappedPagesReleaseInterval
            else { return }
        }
        let released = (try? self.environment.releaseMappedPages()) != nil
        self.committedBytesSinceRelease = 0
        self.lastMappedPagesRelease = ContinuousClock.now
        self.published.lock()
        if released { self.metrics.mappedPagesReleases += 1 } else { self.metrics.mappedPagesReleaseFailures += 1 }
        self.published.unlock()
    }

    // MARK: Secondary indexes

    /// Applies up to `limit` pending entries in one transaction with the new watermark.
    @discardableResult
    func applyIndexes(limit: Int) -> Bool {
        let count = min(limit, self.pendingIndex.count)
        guard count > 0 else { return true }
        while true {
            do {
                try self.environment.write { txn in
                    // Up to `maxIndexLagRecords` entries in one go on the writer's thread (the
                    // commit that follows waits): the keys are built in one reused buffer, not
                    // two arrays per entry. Same bytes as `correlationKey` and `actorKey`.
                    let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 8)
                    defer { scratch.deallocate() }
                    let empty = UnsafeRawBufferPointer(start: scratch.baseAddress, count: 0)
                    for entry in self.pendingIndex[0..<count] {
                        let seq = entry.seq.bigEndian
                        entry.correlationID.withBytes { id in scratch.copyMemory(from: id) }
                        withUnsafeBytes(of: seq) { UnsafeMutableRawBufferPointer(rebasing: scratch[16..<24]).copyMemory(from: $0) }
                        try txn.put(self.databases.byCorrelation, key: UnsafeRawBufferPointer(rebasing: scratch[0..<24]), value: empty)
                        var actorKeyBytes = 0
                        var recipient = entry.recipient
                        let fits = recipient.withUTF8 { utf8 -> Bool in
                            guard utf8.count + 9 <= scratch.count else { return false }
                            UnsafeMutableRawBufferPointer(rebasing: scratch[0..<utf8.count]).copyMemory(from: UnsafeRawBufferPointer(utf8))
                            scratch[utf8.count] = 0
                            withUnsafeBytes(of: seq) { UnsafeMutableRawBufferPointer(rebasing: scratch[(utf8.count + 1)..<(utf8.count + 9)]).copyMemory(from: $0) }
                            actorKeyBytes = utf8.count + 9
                            return true
                        }
                        if fits {
                            try txn.put(self.databases.byActor, key: UnsafeRawBufferPointer(rebasing: scratch[0..<actorKeyBytes]), value: empty)
                        } else {
                            try txn.put(self.databases.byActor, key: EventLog.actorKey(entry.recipient, entry.seq), value: [UInt8]())
                        }
                    }
                    try txn.put(
                        self.databases.meta, key: EventLog.metaKey(EventLog.MetaKey.indexAppliedSeq),
                        value: EventLog.bigEndian(self.pendingIndex[count - 1].seq))
                }
            } catch let error as LMDBError where error.code == .mapFull {
                if self.growMap() != nil { return false }
                continue
            } catch {
                return false  // stays pending; lookups scan the tail, so nothing is missed
            }
            self.indexAppliedSeq = self.pendingIndex[count - 1].seq
            self.pendingIndex.removeFirst(count)
            return true
        }
    }

    /// Reads the records after `seq` back into `pendingIndex` (after a crash or a rebuild).
    func loadIndexBacklog(after seq: UInt64) throws {
        let decoder = EnvelopeDecoder(limits: self.configuration.codecLimits)
        try self.environment.read { txn in
            _ = try txn.withCursor(self.databases.log) { cursor in
                try cursor.forEach(from: EventLog.bigEndian(seq + 1)) { key, value in
                    let record = try decoder.decodeRecord(value)
                    self.pendingIndex.append(
                        IndexEntry(seq: record.header.seq, correlationID: record.envelope.correlationID, recipient: record.envelope.recipient.rawValue))
                    return true
                }
            }
        }
    }

    /// Drops both secondary indexes and rebuilds them from the log.
    func rebuildIndexes() -> Result<Void, EventLogError> {
        do {
            try self.environment.write { txn in
                try txn.drop(self.databases.byCorrelation, delete: false)
                try txn.drop(self.databases.byActor, delete: false)
                try txn.put(self.databases.meta, key: EventLog.metaKey(EventLog.MetaKey.indexAppliedSeq), value: EventLog.bigEndian(0))
            }
            self.indexAppliedSeq = 0
            self.pendingIndex = []
            try self.loadIndexBacklog(after: 0)
            while !self.pendingIndex.isEmpty {
                guard self.applyIndexes(limit: self.configuration.maxIndexLagRecords) else {
                    return .failure(EventLogError(.storage, "rebuilding the secondary indexes failed"))
                }
            }
            return .success(())
        } catch {
            return .failure(EventLogError.wrap(error, "rebuilding the secondary indexes"))
        }
    }
}

/// Counters of the writer, for benchmarks and metrics (append latency, batch size).
public struct WriterMetrics: Sendable, Hashable {
    public var batches = 0
    public var records = 0
    public var maxBatchRecords = 0
    /// Time inside group commits (building records, hashing, LMDB puts, commit and sync).
    public var commitNanoseconds: Int64 = 0
    public var maxCommitNanoseconds: Int64 = 0
    /// The part of `commitNanoseconds` spent before LMDB's commit: building records, hashing,
    /// puts. The rest is LMDB's commit (writing pages, and the sync when durable).
    public var commitBuildNanoseconds: Int64 = 0
    /// Waiting for more appends to join a batch (the group-commit linger).
    public var lingerNanoseconds: Int64 = 0
    /// Applying deferred secondary-index entries while appends were coming in.
    public var indexNanoseconds: Int64 = 0
    /// Answering appends, with the answer hooks (the steps they run on the writer's thread).
    public var answerNanoseconds: Int64 = 0
    /// Requests other than appends (snapshots, barriers, index rebuilds): how many, how long.
    public var otherRequests = 0
    public var otherNanoseconds: Int64 = 0
    /// Snapshots stored (each in the transaction of a group commit).
    public var snapshotsSaved = 0
    /// Reader slots of dead processes cleared by the idle writer.
    public var staleReadersCleared = 0
    /// Times the writer dropped the process's mappings of the log file's pages, and failed to.
    public var mappedPagesReleases = 0
    public var mappedPagesReleaseFailures = 0

    public var averageBatchRecords: Double { self.batches == 0 ? 0 : Double(self.records) / Double(self.batches) }
    public var averageCommitMilliseconds: Double { self.batches == 0 ? 0 : Double(self.commitNanoseconds) / Double(self.batches) / 1e6 }
}

extension Duration {
    var nanoseconds: Int64 {
        let parts = self.components
        return parts.seconds * 1_000_000_000 + parts.attoseconds / 1_000_000_000
    }
}

/// `EventLog.addAnswerHook`'s list, read by the writer once per batch.
final class AnswerHooks: @unchecked Sendable {
    private let lock = NSLock()
    private var hooks: [(token: UInt64, hook: EventLog.AnswerHook)] = []
    private var nextToken: UInt64 = 1
    /// What the writer runs, kept apart so that reading it per batch copies nothing when empty.
    private var snapshot: [EventLog.AnswerHook] = []

    func add(_ hook: EventLog.AnswerHook) -> UInt64 {
        self.lock.lock()
        defer { self.lock.unlock() }
        let token = self.nextToken
        self.nextToken += 1
        self.hooks.append((token, hook))
        self.snapshot = self.hooks.map(\.hook)
        return token
    }

    func remove(_ token: UInt64) {
        self.lock.lock()
        defer { self.lock.unlock() }
        self.hooks.removeAll { $0.token == token }
        self.snapshot = self.hooks.map(\.hook)
    }

    func current() -> [EventLog.AnswerHook] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.snapshot
    }
}
