import CartritaCodec
import CartritaEnvelope
import CartritaLMDB
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The append-only, crash-safe log of every MCP message (MCP-SPEC §6), in one LMDB environment.
///
/// Databases (see ARCHITECTURE.md and Schemas/envelope-msgpack.md):
/// - `log`: big-endian u64 seq → record (msgpack map: header pairs, then envelope pairs).
/// - `ids`: 16-byte message id → seq. Written in the same commit as the record: the exactly_once
///   dedupe must never disagree with the log.
/// - `heads`: actor address → last seq addressed to it. Same commit (the records' back-pointers
///   depend on it).
/// - `meta`: format version, head hash, how far the secondary indexes are applied, retention anchor.
/// - `by_correlation` (correlation id ‖ seq) and `by_actor` (address ‖ 0x00 ‖ seq): secondary
///   indexes, applied after the commit by the same writer thread and rebuildable from the log.
///   `meta/index.applied_seq` says how far they go; lookups scan the tail past it, so they are
///   always complete.
/// - `snapshots`: address ‖ 0x00 ‖ seq → snapshot (see `Snapshot`).
///
/// Writes go through one dedicated writer thread (LMDB wants a write transaction to begin and
/// commit on one OS thread; Swift concurrency hops threads). Producers encode their envelopes on
/// their own threads and enqueue them; the writer puts everything queued into one transaction
/// (group commit, up to `maxBatchRecords`), commits with the configured durability, then
/// acknowledges every producer of the batch. Reads run on the caller's thread in their own
/// read-only transactions and never block the writer.
public final class EventLog: @unchecked Sendable {
    public static let formatVersion: UInt8 = 1

    public let path: String
    public let configuration: EventLogConfiguration
    let environment: LMDBEnvironment
    let databases: Databases
    let writer: LogWriter?
    /// Held while the log is open for writing; nil when read-only.
    let writerLock: WriterLock?
    let encoders: EncoderPool
    /// Records read at random (by seq) since the mapped pages were last released by a reader:
    /// each maps its page and up to 15 cached neighbours (the kernel's fault-around, 64 KiB),
    /// so a burst of lookups (a client reading tasks' flows) would fill RSS between the
    /// writer's releases. See `noteReads`.
    let readsSinceRelease = Atomic<Int>(0)
    /// Random record reads between two releases by readers: at most about 16 MiB mapped.
    static let releaseMappedPagesEveryReads = 256
    /// Id-index entries (16-byte key, 8-byte seq, 8-byte node header) a 4 KiB leaf page holds,
    /// rounded down: what one page of sorted id lookups covers, for `noteReads`.
    static let idEntriesPerPageEstimate = 64

    struct Databases: Sendable {
        var log: LMDBDatabase
        var ids: LMDBDatabase
        var heads: LMDBDatabase
        var meta: LMDBDatabase
        var byCorrelation: LMDBDatabase
        var byActor: LMDBDatabase
        var snapshots: LMDBDatabase
    }

    enum MetaKey {
        static let format = "format"
        static let headHash = "head.hash"
        static let indexAppliedSeq = "index.applied_seq"
        /// Retention: the first seq still in this file, and the hash its `prev_hash` holds.
        static let firstSeq = "log.first_seq"
        static let anchorHash = "log.anchor_hash"
    }

    // MARK: Open and close

    /// Opens (creating if needed) the log in `path`. A second writer on the same folder, in this
    /// or another process, is refused with `locked`.
    public init(path: String, configuration: EventLogConfiguration = EventLogConfiguration()) throws(EventLogError) {
        self.configuration = configuration
        self.encoders = EncoderPool(limits: configuration.codecLimits)
        if configuration.readOnly {
            // LMDB would create data.mdb (and the folder) on open: a read-only open must not.
            guard FileManager.default.fileExists(atPath: path + "/data.mdb") else {
                throw EventLogError(.notFound, "no event log in \(path)")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw EventLogError(.storage, "cannot create \(path): \(error)")
            }
        }
        self.path = path

        let writerLock = configuration.readOnly ? nil : try WriterLock.acquire(folder: path)
        self.writerLock = writerLock

        var flags: LMDBEnvironmentFlags = []
        switch configuration.durability {
        case .durable: break
        case .relaxed: flags.insert(.noMetaSync)
        case .fast: flags.insert(.noSync)
        }
        do {
            let existing = Self.dataFileBytes(in: path)
            let environment = try LMDBEnvironment(
                path: path,
                configuration: .init(
                    mapSizeBytes: max(configuration.initialMapSizeBytes, existing),
                    maxDatabases: 16, maxReaders: 256, flags: flags))
            self.environment = environment
            // Stale reader slots of dead processes would pin old pages forever.
            _ = try? environment.readerCheck()
            // Handles are opened in a write transaction even for read-only use: LMDB keeps a
            // handle opened in a transaction only if that transaction commits. Read-only opens
            // do not create anything, so a folder without a log is reported, not initialised.
            let create: LMDBDatabaseFlags = configuration.readOnly ? [] : [.create]
            self.databases = try environment.write { txn in
                func open(_ name: String) throws -> LMDBDatabase { try txn.openDatabase(name: name, flags: create) }
                let databases = Databases(
                    log: try open("log"), ids: try open("ids"), heads: try open("heads"), meta: try open("meta"),
                    byCorrelation: try open("by_correlation"), byActor: try open("by_actor"),
                    snapshots: try open("snapshots"))
                if !configuration.readOnly, try txn.get(databases.meta, key: Self.metaKey(MetaKey.format)) == nil {
                    try Self.putMeta(txn, databases, MetaKey.format, [Self.formatVersion])
                }
                return databases
            }
        } catch let error as LMDBError where error.code == .notFound && configuration.readOnly {
            writerLock?.release()
            throw EventLogError(.notFound, "no event log in \(path)")
        } catch {
            writerLock?.release()
            throw EventLogError.wrap(error, "opening \(path)")
        }

        do {
            let environment = self.environment
            let meta = self.databases.meta
            let format = try environment.read { txn in
                try txn.get(meta, key: Self.metaKey(MetaKey.format)).map { [UInt8]($0) }
            }
            guard let format, format.count == 1 else {
                throw EventLogError(.corrupted, "meta/format is missing or malformed")
            }
            guard format[0] == Self.formatVersion else {
                throw EventLogError(.unsupportedFormat, "log format \(format[0]); this build reads format \(Self.formatVersion)")
            }
            self.writer = configuration.readOnly ? nil : try LogWriter(environment: environment, databases: self.databases, configuration: configuration)
        } catch {
            writerLock?.release()
            throw EventLogError.wrap(error, "opening \(path)")
        }
        self.writer?.start()
    }

    /// Commits everything queued, applies the secondary indexes, syncs, stops the writer and
    /// closes the environment. Idempotent.
    public func close() {
        self.writer?.stop()
        try? self.environment.close()
        self.writerLock?.release()
    }

    deinit {
        // The writer commits what is queued first; the lock goes after (WriterLock's deinit).
        self.writer?.stop()
    }

    /// Code the writer's thread runs around the answers it gives: before it resumes the
    /// appenders of a committed batch (or answers a snapshot or a barrier), and after. What it is
    /// for: an executor whose jobs the writer's thread may run right after answering
    /// (`CartritaNode`'s `DedicatedThreadExecutor`), so the actor it serves goes on at once, on a
    /// thread that is already awake, instead of waiting for its own thread to be scheduled.
    /// Both run on the writer's thread with no lock of the log held; they must not wait for the
    /// writer (close the log, flush and wait), or it would wait for itself. `didAnswer` is told
    /// how many records wait for the writer's next commit: what it does delays them, so with a
    /// backlog it should leave its work to another thread.
    public struct AnswerHook: Sendable {
        public var willAnswer: @Sendable () -> Void
        public var didAnswer: @Sendable (_ queuedRecords: Int) -> Void

        public init(willAnswer: @escaping @Sendable () -> Void, didAnswer: @escaping @Sendable (_ queuedRecords: Int) -> Void) {
            self.willAnswer = willAnswer
            self.didAnswer = didAnswer
        }
    }

    /// Adds `hook`; the token removes it. A read-only log has no writer: nothing runs.
    public func addAnswerHook(_ hook: AnswerHook) -> UInt64 {
        self.writer?.answerHooks.add(hook) ?? 0
    }

    public func removeAnswerHook(_ token: UInt64) {
        self.writer?.answerHooks.remove(token)
    }

    /// Size on disk of the log's data file in `folder` (0 when there is none). Reopening maps at
    /// least this much, `stat` reports it, the benchmark divides it by the record count.
    public static func dataFileBytes(in folder: String) -> Int {
        let attributes = try? FileManager.default.attributesOfItem(atPath: folder + "/data.mdb")
        return (attributes?[.size] as? NSNumber)?.intValue ?? 0
    }

    // MARK: Appending

    /// Validates, encodes (on the caller's thread) and appends one envelope; returns its seq once
    /// the commit that holds it is durable per the configured mode.
    ///
    /// `clockMilliseconds` and `entropy` are the runtime's clock reading and the entropy given to
    /// the handler that will receive the message; they are recorded so replay needs neither.
    public func append(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) async throws(EventLogError) -> UInt64 {
        let pending = try self.prepare(envelope, clockMilliseconds: clockMilliseconds, entropy: entropy)
        return try await self.submit(pending)
    }

    /// Appends an envelope that arrives as msgpack bytes from outside (a socket, a file). The
    /// bytes go through the hardened decoder first: malformed input is refused with the codec's
    /// named error and never reaches the log.
    public func append(msgpack bytes: [UInt8], clockMilliseconds: Int64, entropy: UInt64) async throws(EventLogError) -> UInt64 {
        let envelope: Envelope
        do {
            envelope = try EnvelopeDecoder(limits: self.configuration.codecLimits).decode(bytes)
        } catch {
            throw EventLogError.codec(error)
        }
        // The decoder has already applied the envelope rules: encode without validating twice.
        let pending = try self.prepare(envelope, clockMilliseconds: clockMilliseconds, entropy: entropy, validated: true)
        return try await self.submit(pending)
    }

    /// Appends several envelopes; they are queued together, so they usually share one commit.
    /// Each gets its own result (a duplicate id fails alone).
    public func append(contentsOf envelopes: [Envelope], clockMilliseconds: Int64, entropy: UInt64) async
        -> [Result<UInt64, EventLogError>]
    {
        await self.enqueue(contentsOf: envelopes, clockMilliseconds: clockMilliseconds, entropy: entropy).results().results
    }

    /// Queues `envelopes` (validated and encoded on the caller's thread, as `append` does) and
    /// returns at once: the caller goes on (it may queue another batch) and hears the answer
    /// through the returned handle. For an actor that keeps a second batch in flight while the
    /// first is committed (`CellHost`).
    public func submit(contentsOf envelopes: [Envelope], clockMilliseconds: Int64, entropy: UInt64, timed: Bool = false) -> PendingAppend {
        PendingAppend(ticket: self.enqueue(contentsOf: envelopes, clockMilliseconds: clockMilliseconds, entropy: entropy, timed: timed))
    }

    /// Validates and encodes `envelopes` on the caller's thread and queues them for the writer
    /// before it returns; the ticket answers once they are committed, with one answer per
    /// batch rather than a closure per record. `timed`: the ticket also reads the monotonic
    /// clock when the last record is answered (`submit(timed:)`, for `StepTiming`).
    func enqueue(contentsOf envelopes: [Envelope], clockMilliseconds: Int64, entropy: UInt64, timed: Bool = false) -> AppendTicket {
        let ticket = AppendTicket(count: envelopes.count, timed: timed)
        var pending: [PendingRecord] = []
        pending.reserveCapacity(envelopes.count)
        for (index, envelope) in envelopes.enumerated() {
            do {
                var record = try self.prepare(envelope, clockMilliseconds: clockMilliseconds, entropy: entropy &+ UInt64(index))
                record.ticket = ticket
                record.ticketIndex = index
                pending.append(record)
            } catch {
                ticket.set(index, .failure(error))
            }
        }
        guard !pending.isEmpty else { return ticket }
        guard let writer = self.writer else {
            for record in pending { ticket.set(record.ticketIndex, .failure(EventLogError(.readOnly, "the log was opened read-only"))) }
            return ticket
        }
        do throws(EventLogError) {
            try writer.enqueue(pending)
        } catch {
            for record in pending { ticket.set(record.ticketIndex, .failure(error)) }
        }
        return ticket
    }

    /// The blocking form of `append`, for callers outside Swift concurrency (tools, C callbacks).
    /// Never call it from a task on the cooperative pool.
    public func appendAndWait(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64) throws(EventLogError) -> UInt64 {
        let pending = try self.prepare(envelope, clockMilliseconds: clockMilliseconds, entropy: entropy)
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        try self.writerOrThrow().enqueue([pending.with { result in
            box.result = result
            done.signal()
        }])
        done.wait()
        return try box.result!.get()
    }

    /// Appends envelopes in the given order, each with its own recorded clock reading and
    /// entropy, queued together so they share commits, and blocks until all are committed. For
    /// tools that write a log outside Swift concurrency: `cartrita fork` writes a branch this
    /// way, and copying records with their original clock and entropy gives identical bytes and
    /// hash chain. At most `maxQueuedRecords` at once (the writer's queue limit). Never call it
    /// from a task on the cooperative pool.
    public func appendInOrderAndWait(_ items: [(envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64)]) throws(EventLogError) -> [UInt64] {
        guard !items.isEmpty else { return [] }
        var pending: [PendingRecord] = []
        pending.reserveCapacity(items.count)
        let ticket = AppendTicket(count: items.count, timed: false)
        for (index, item) in items.enumerated() {
            var record = try self.prepare(item.envelope, clockMilliseconds: item.clockMilliseconds, entropy: item.entropy)
            record.ticket = ticket
            record.ticketIndex = index
            pending.append(record)
        }
        try self.writerOrThrow().enqueue(pending)
        var seqs: [UInt64] = []
        seqs.reserveCapacity(items.count)
        for result in ticket.waitBlocking() { seqs.append(try result.get()) }
        return seqs
    }

    /// The blocking form of `flush`, for callers outside Swift concurrency.
    public func flushAndWait() throws(EventLogError) {
        let writer = try self.writerOrThrow()
        let done = DispatchSemaphore(value: 0)
        let box = FlushResultBox()
        writer.barrier { result in
            box.result = result
            done.signal()
        }
        done.wait()
        try box.result!.get()
    }

    /// Waits until everything queued before the call is committed and the secondary indexes are
    /// applied up to it.
    public func flush() async throws(EventLogError) {
        let writer = try self.writerOrThrow()
        let result: Result<Void, EventLogError> = await withCheckedContinuation { continuation in
            writer.barrier { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    func writerOrThrow() throws(EventLogError) -> LogWriter {
        guard let writer = self.writer else { throw EventLogError(.readOnly, "the log was opened read-only") }
        return writer
    }

    func prepare(_ envelope: Envelope, clockMilliseconds: Int64, entropy: UInt64, validated: Bool = false) throws(EventLogError) -> PendingRecord {
        if !validated {
            do {
                try envelope.validate(limits: self.configuration.codecLimits.envelope)
            } catch {
                throw EventLogError.codec(CodecError(invalid: error))
            }
        }
        let encoded: EncodedEnvelope
        do {
            encoded = try self.encoders.withEncoder { (encoder) throws(CodecError) in try encoder.encodeBody(envelope) }
        } catch {
            throw EventLogError.codec(error)
        }
        return PendingRecord(
            id: envelope.id, correlationID: envelope.correlationID, recipient: envelope.recipient.rawValue,
            encoded: encoded, clockMilliseconds: clockMilliseconds, entropy: entropy, completion: nil)
    }

    func submit(_ pending: PendingRecord) async throws(EventLogError) -> UInt64 {
        let writer = try self.writerOrThrow()
        // Unsafe (unchecked) continuation: this is the hot path of every append, and each path
        // below resumes it exactly once: the writer calls the completion once per record, or
        // enqueue throws and the catch resumes.
        let result: Result<UInt64, EventLogError> = await withUnsafeContinuation { continuation in
            do throws(EventLogError) {
                try writer.enqueue(one: pending.with { continuation.resume(returning: $0) })
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        return try result.get()
    }

    // MARK: Keys

    static func metaKey(_ name: String) -> [UInt8] { Array(name.utf8) }

    static func putMeta(_ txn: LMDBWriteTransaction, _ databases: Databases, _ name: String, _ value: [UInt8]) throws {
        try Self.metaKey(name).withUnsafeBytes { key in
            try value.withUnsafeBytes { _ = try txn.put(databases.meta, key: key, value: $0) }
        }
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { [UInt8]($0) }
    }

    /// `address ‖ 0x00 ‖ seq`: addresses never contain 0x00, so one actor's keys are contiguous
    /// and ordered by seq.
    static func actorKey(_ actor: String, _ seq: UInt64) -> [UInt8] {
        var key = Array(actor.utf8)
        key.append(0)
        key += Self.bigEndian(seq)
        return key
    }

    static func correlationKey(_ correlation: MessageID, _ seq: UInt64) -> [UInt8] {
        correlation.bytes + Self.bigEndian(seq)
    }
}

// MARK: - Helpers for completions

/// One record waiting for the writer.
struct PendingRecord: @unchecked Sendable {
    var id: MessageID
    var correlationID: MessageID
    var recipient: String
    var encoded: EncodedEnvelope
    var clockMilliseconds: Int64
    var entropy: UInt64
    var completion: (@Sendable (Result<UInt64, EventLogError>) -> Void)?
    /// The batch form's answer (`EventLog.enqueue`): one ticket for the whole batch instead of a
    /// closure per record. The writer answers runs of a ticket's records under one lock.
    var ticket: AppendTicket?
    var ticketIndex = 0

    func with(_ completion: @escaping @Sendable (Result<UInt64, EventLogError>) -> Void) -> PendingRecord {
        var copy = self
        copy.completion = completion
        return copy
    }
}

final class FlushResultBox: @unchecked Sendable {
    var result: Result<Void, EventLogError>?
}

final class ResultBox: @unchecked Sendable {
    var result: Result<UInt64, EventLogError>?
}

/// A batch `EventLog.submit` queued: one answer per record, once the batch is committed.
public struct PendingAppend: Sendable {
    let ticket: AppendTicket

    /// Every record has its answer.
    public var isAnswered: Bool { self.ticket.isAnswered }

    /// Runs `body` once every record is answered: at once if they are, else on the log's writer
    /// thread, which it must not hold up (resume a waiter, no more). One callback per batch.
    public func whenAnswered(_ body: @escaping @Sendable () -> Void) { self.ticket.whenAnswered(body) }

    /// The answers, in the order of the envelopes, and (when submitted `timed`) when the last
    /// was given on the monotonic clock. Only once `isAnswered`.
    public func answers() -> (results: [Result<UInt64, EventLogError>], answered: ContinuousClock.Instant?) {
        precondition(self.ticket.isAnswered, "the batch is not answered yet")
        return self.ticket.collect()
    }
}

/// The answer to one `EventLog.enqueue`: a result per envelope, in the order given, once the
/// writer has answered all of them. Waited on at most once.
final class AppendTicket: @unchecked Sendable {
    // Unchecked: every field is guarded by `lock`.
    let lock = NSLock()
    var results: [Result<UInt64, EventLogError>?]
    var remaining: Int
    let timed: Bool
    var answered: ContinuousClock.Instant?
    var waiter: UnsafeContinuation<Void, Never>?
    var blockingWaiter: DispatchSemaphore?
    /// Called once every record is answered (`PendingAppend.whenAnswered`), after the waiters.
    var onAnswered: (@Sendable () -> Void)?

    init(count: Int, timed: Bool) {
        self.results = Array(repeating: nil, count: count)
        self.remaining = count
        self.timed = timed
    }

    func set(_ index: Int, _ result: Result<UInt64, EventLogError>) {
        self.lock.lock()
        self.results[index] = result
        self.remaining -= 1
        self.finishIfDoneLocked()
    }

    /// Results for the ticket's records `first ..< first + results.count`, from one commit.
    func set(from first: Int, _ results: ArraySlice<Result<UInt64, EventLogError>>) {
        self.lock.lock()
        var index = first
        for result in results {
            self.results[index] = result
            index += 1
        }
        self.remaining -= results.count
        self.finishIfDoneLocked()
    }

    /// Called with `lock` held; releases it.
    private func finishIfDoneLocked() {
        guard self.remaining == 0 else {
            self.lock.unlock()
            return
        }
        if self.timed { self.answered = .now }
        let waiter = self.waiter
        self.waiter = nil
        let blockingWaiter = self.blockingWaiter
        let onAnswered = self.onAnswered
        self.onAnswered = nil
        self.lock.unlock()
        waiter?.resume()
        blockingWaiter?.signal()
        onAnswered?()
    }

    var isAnswered: Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.remaining == 0
    }

    /// Runs `body` once every record is answered: at once (here) if they are already, else on
    /// the thread of the last answer.
    func whenAnswered(_ body: @escaping @Sendable () -> Void) {
        self.lock.lock()
        guard self.remaining > 0 else {
            self.lock.unlock()
            body()
            return
        }
        precondition(self.onAnswered == nil, "one callback per ticket")
        self.onAnswered = body
        self.lock.unlock()
    }

    /// `results()` for callers outside Swift concurrency; never call it on the cooperative pool.
    func waitBlocking() -> [Result<UInt64, EventLogError>] {
        self.lock.lock()
        if self.remaining > 0 {
            let semaphore = DispatchSemaphore(value: 0)
            self.blockingWaiter = semaphore
            self.lock.unlock()
            semaphore.wait()
        } else {
            self.lock.unlock()
        }
        return self.collect().results
    }

    /// The results, once every record is answered, and (for a timed ticket) when the last was.
    func results() async -> (results: [Result<UInt64, EventLogError>], answered: ContinuousClock.Instant?) {
        // Unsafe (unchecked) continuation: the hot path of every batch. It is parked under the
        // lock the answers take, and resumed exactly once: here if everything was answered
        // meanwhile, else by the last answer.
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            if !self.park(continuation) { continuation.resume() }
        }
        return self.collect()
    }

    /// Parks the waiter unless every record is answered already.
    private func park(_ continuation: UnsafeContinuation<Void, Never>) -> Bool {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard self.remaining > 0 else { return false }
        self.waiter = continuation
        return true
    }

    /// The results (all answered), and when the last was answered.
    func collect() -> (results: [Result<UInt64, EventLogError>], answered: ContinuousClock.Instant?) {
        self.lock.lock()
        defer { self.lock.unlock() }
        return (self.results.map { $0! }, self.answered)
    }
}

/// Encoders reuse a buffer and are not thread-safe; producers borrow one from this pool so a
/// steady stream of appends allocates nothing for encoding.
final class EncoderPool: @unchecked Sendable {
    let lock = NSLock()
    var free: [EnvelopeEncoder] = []
    let limits: CodecLimits
    static let maxPooled = 64

    init(limits: CodecLimits) {
        self.limits = limits
    }

    func withEncoder<T>(_ body: (EnvelopeEncoder) throws(CodecError) -> T) throws(CodecError) -> T {
        self.lock.lock()
        let encoder = self.free.popLast() ?? EnvelopeEncoder(limits: self.limits)
        self.lock.unlock()
        defer {
            self.lock.lock()
            if self.free.count < Self.maxPooled { self.free.append(encoder) }
            self.lock.unlock()
        }
        return try body(encoder)
    }
}

/// `writer.lock` in the data folder, held with `flock` while a log is open for writing, so a
/// second writer (this process or another) is refused with `locked`. The descriptor is released
/// exactly once, by `close()` or at the latest by deinit: closing it twice could close an
/// unrelated file that reused the number.
final class WriterLock: @unchecked Sendable {
    private let mutex = NSLock()
    private var descriptor: Int32

    private init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    static func acquire(folder: String) throws(EventLogError) -> WriterLock {
        let descriptor = open(folder + "/writer.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw EventLogError(.storage, "cannot open \(folder)/writer.lock: errno \(errno)")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            Glibc.close(descriptor)
            throw EventLogError(.locked, "another process is writing to \(folder)")
        }
        return WriterLock(descriptor: descriptor)
    }

    func release() {
        self.mutex.lock()
        defer { self.mutex.unlock() }
        guard self.descriptor >= 0 else { return }
        flock(self.descriptor, LOCK_UN)
        Glibc.close(self.descriptor)
        self.descriptor = -1
    }

    deinit { self.release() }
}
