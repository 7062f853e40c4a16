import CartritaCodec

/// How hard a commit tries to reach the disk before producers are told it is done.
public enum Durability: String, CaseIterable, Sendable {
    /// fsync on every commit (LMDB's default). An acknowledged record survives a process kill
    /// and a power loss. The default.
    case durable
    /// MDB_NOMETASYNC: data pages are synced, the meta page is not. A power loss (not a process
    /// kill) may undo the last committed transaction; the file stays consistent.
    case relaxed
    /// MDB_NOSYNC, with a sync every `fastSyncIntervalMilliseconds`. A process kill loses
    /// nothing (the data is in the OS page cache); a power loss or kernel crash may lose up to
    /// one interval of acknowledged records, and on file systems that reorder writes may leave
    /// the file needing `cartrita log verify` and a restore from backup. For bulk imports and
    /// simulations, not for production.
    case fast
}

public struct EventLogConfiguration: Sendable {
    public var durability: Durability
    /// Map size at first open. LMDB reserves address space, not disk: the file grows as used.
    public var initialMapSizeBytes: Int
    /// The map doubles on MDB_MAP_FULL up to this size; past it appends fail with `log_full`.
    public var maxMapSizeBytes: Int
    /// Group commit: at most this many records in one transaction.
    public var maxBatchRecords: Int
    /// Group commit: stop adding to a batch past this many bytes of records.
    public var maxBatchBytes: Int
    /// Group commit: when fewer records wait than the previous batch held, wait at most this
    /// long for the rest before committing (0: never wait). Trades a little latency for fewer
    /// syncs per record when many producers each wait for their own acknowledgement.
    public var groupCommitLingerMicroseconds: Int
    /// Producers waiting for the writer beyond this count are refused with `overloaded`.
    public var maxQueuedRecords: Int
    /// In `fast` mode, how often the writer syncs.
    public var fastSyncIntervalMilliseconds: Int
    /// Secondary indexes (correlation, actor) are applied when the writer is idle, or at the
    /// latest when this many records are waiting for them.
    public var maxIndexLagRecords: Int
    /// The newest snapshots kept per actor, whatever their spacing.
    public var snapshotsKeptPerActor: Int
    /// Older snapshots are thinned, not all deleted: one per actor is kept in every window of
    /// this many seqs (the newest in the window), so time travel to any point of the log starts
    /// from a snapshot at most about this far back instead of replaying from the start.
    /// 0: only the newest `snapshotsKeptPerActor`. Costs about one snapshot per actor per
    /// window: on `bench travel`'s 1M-message log, 575 snapshots and 4.5% more file (1.23 GB
    /// instead of 1.18 GB with 16,384), for travel p99 of 103 ms instead of 212 ms.
    public var snapshotRetentionSpacingSeqs: UInt64
    public var codecLimits: CodecLimits
    /// The writer drops the process's mappings of the log file's pages
    /// (`LMDBEnvironment.releaseMappedPages`) after committing this many bytes of records (or
    /// a quarter of a second of commits), and when it is idle after reads or writes: pages touched through LMDB's map stay in RSS
    /// otherwise, and a server's RSS would grow with its log. 0: never.
    public var releaseMappedPagesEveryBytes: Int
    /// Open without the writer: reads only, no lock taken.
    public var readOnly: Bool

    public init(
        durability: Durability = .durable,
        initialMapSizeBytes: Int = 256 << 20,
        maxMapSizeBytes: Int = 1 << 40,
        maxBatchRecords: Int = 4096,
        maxBatchBytes: Int = 16 << 20,
        maxQueuedRecords: Int = 1 << 20,
        groupCommitLingerMicroseconds: Int = 200,
        fastSyncIntervalMilliseconds: Int = 100,
        maxIndexLagRecords: Int = 65_536,
        snapshotsKeptPerActor: Int = 3,
        snapshotRetentionSpacingSeqs: UInt64 = 8_192,
        codecLimits: CodecLimits = .default,
        releaseMappedPagesEveryBytes: Int = 1 << 20,
        readOnly: Bool = false
    ) {
        self.durability = durability
        self.initialMapSizeBytes = initialMapSizeBytes
        self.maxMapSizeBytes = maxMapSizeBytes
        self.maxBatchRecords = maxBatchRecords
        self.maxBatchBytes = maxBatchBytes
        self.maxQueuedRecords = maxQueuedRecords
        self.groupCommitLingerMicroseconds = groupCommitLingerMicroseconds
        self.fastSyncIntervalMilliseconds = fastSyncIntervalMilliseconds
        self.maxIndexLagRecords = maxIndexLagRecords
        self.snapshotsKeptPerActor = snapshotsKeptPerActor
        self.snapshotRetentionSpacingSeqs = snapshotRetentionSpacingSeqs
        self.codecLimits = codecLimits
        self.releaseMappedPagesEveryBytes = releaseMappedPagesEveryBytes
        self.readOnly = readOnly
    }
}
