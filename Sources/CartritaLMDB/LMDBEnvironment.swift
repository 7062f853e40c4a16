import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Flags for `mdb_env_open`. MDB_NOTLS is always added and MDB_NOSUBDIR/MDB_NOLOCK are not offered:
/// an environment here is always a directory with a lock file.
public struct LMDBEnvironmentFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Don't fsync on commit: a crash may lose the last transactions (never corrupts). Changeable at runtime.
    public static let noSync = LMDBEnvironmentFlags(rawValue: UInt32(MDB_NOSYNC))
    /// fsync data but not the meta page: a crash may lose the last transaction. Changeable at runtime.
    public static let noMetaSync = LMDBEnvironmentFlags(rawValue: UInt32(MDB_NOMETASYNC))
    /// With `.writeMap`, flush asynchronously. Changeable at runtime.
    public static let mapAsync = LMDBEnvironmentFlags(rawValue: UInt32(MDB_MAPASYNC))
    /// Don't zero malloc'd pages before writing. Changeable at runtime.
    public static let noMemInit = LMDBEnvironmentFlags(rawValue: UInt32(MDB_NOMEMINIT))
    public static let writeMap = LMDBEnvironmentFlags(rawValue: UInt32(MDB_WRITEMAP))
    public static let noReadAhead = LMDBEnvironmentFlags(rawValue: UInt32(MDB_NORDAHEAD))
    public static let readOnly = LMDBEnvironmentFlags(rawValue: UInt32(MDB_RDONLY))

    /// The subset `mdb_env_set_flags` accepts after open.
    public static let changeableAtRuntime: LMDBEnvironmentFlags = [.noSync, .noMetaSync, .mapAsync, .noMemInit]
}

/// `MDB_envinfo`, with units in the names.
public struct LMDBEnvironmentInfo: Sendable, Hashable {
    public var mapSizeBytes: Int
    public var lastPageNumber: Int
    public var lastTransactionID: Int
    public var maxReaders: Int
    public var readersInUse: Int
}

/// `MDB_stat`, for the environment's main database or for one named database.
public struct LMDBStat: Sendable, Hashable {
    public var pageSizeBytes: Int
    public var treeDepth: Int
    public var branchPages: Int
    public var leafPages: Int
    public var overflowPages: Int
    public var entries: Int

    init(_ stat: MDB_stat) {
        self.pageSizeBytes = Int(stat.ms_psize)
        self.treeDepth = Int(stat.ms_depth)
        self.branchPages = stat.ms_branch_pages
        self.leafPages = stat.ms_leaf_pages
        self.overflowPages = stat.ms_overflow_pages
        self.entries = stat.ms_entries
    }
}

/// One LMDB environment (a directory holding data.mdb and lock.mdb).
///
/// Thread safety (why `@unchecked Sendable` is honest):
/// - LMDB's `MDB_env` is safe to share between threads; we always open it with MDB_NOTLS, so a read
///   transaction is tied to its `LMDBReadTransaction` object, not to the OS thread (Swift concurrency hops).
/// - The operations LMDB does NOT allow concurrently are serialised here: map resizing and closing take the
///   `TransactionGate` exclusively (no transaction may be live), every transaction and every call that touches
///   the map (`info`, `stat`, `sync`, `copy`) holds it shared, and `mdb_env_set_flags` runs under a mutex.
/// - What remains the caller's duty: a write transaction must begin and commit on the same OS thread (LMDB's
///   writer lock is a thread-owned mutex). `write(_:)` is synchronous, so call it from one dedicated thread.
public final class LMDBEnvironment: @unchecked Sendable {
    public struct Configuration: Sendable, Hashable {
        /// Initial map size; LMDB rounds it up to a whole number of pages. Grow later with `setMapSize`.
        public var mapSizeBytes: Int
        /// How many named databases may be opened (MDB_DBS_FULL beyond it).
        public var maxDatabases: UInt32
        /// Reader slots in the lock file, shared by every process using the environment.
        public var maxReaders: UInt32
        public var flags: LMDBEnvironmentFlags
        /// Permissions for data.mdb/lock.mdb (and for the directory when we create it).
        public var fileMode: mode_t

        public init(mapSizeBytes: Int = 64 << 20, maxDatabases: UInt32 = 16, maxReaders: UInt32 = 126,
                    flags: LMDBEnvironmentFlags = [], fileMode: mode_t = 0o640) {
            self.mapSizeBytes = mapSizeBytes
            self.maxDatabases = maxDatabases
            self.maxReaders = maxReaders
            self.flags = flags
            self.fileMode = fileMode
        }
    }

    /// The canonical (realpath) directory; also the key in the process-wide registry of open environments.
    public let path: String
    /// Guarded by `gate`: written only under exclusive access, read under a share.
    private var handle: OpaquePointer?
    let gate = TransactionGate()
    private let flagsLock = PThreadMutex()

    public init(path: String, configuration: Configuration = Configuration()) throws {
        try makeDirectories(path, mode: configuration.fileMode | 0o700)
        self.path = try canonicalPath(path)
        try openEnvironments.register(self.path)
        var env: OpaquePointer?
        do {
            try lmdbCheck(mdb_env_create(&env), "mdb_env_create")
            try lmdbCheck(mdb_env_set_mapsize(env, configuration.mapSizeBytes), "mdb_env_set_mapsize")
            try lmdbCheck(mdb_env_set_maxdbs(env, MDB_dbi(configuration.maxDatabases)), "mdb_env_set_maxdbs")
            try lmdbCheck(mdb_env_set_maxreaders(env, configuration.maxReaders), "mdb_env_set_maxreaders")
            // MDB_NOTLS always: reader slots follow transaction objects, not threads.
            let flags = configuration.flags.rawValue | UInt32(MDB_NOTLS)
            try lmdbCheck(mdb_env_open(env, self.path, flags, configuration.fileMode), "mdb_env_open")
        } catch {
            if env != nil { mdb_env_close(env) }  // LMDB requires close even after a failed open
            openEnvironments.unregister(self.path)
            throw error
        }
        self.handle = env
    }

    deinit {
        // Transactions retain their environment, so none can be live here and close cannot block.
        try? self.close()
    }

    /// Closes the environment (waits for live transactions on other threads). Idempotent.
    /// Every `LMDBDatabase` handle from this environment becomes invalid.
    public func close() throws {
        try self.gate.withExclusive(operation: "mdb_env_close") {
            guard let env = self.handle else { return }
            mdb_env_close(env)
            self.handle = nil
            openEnvironments.unregister(self.path)
        }
    }

    /// Runs `body` with the open handle while holding a share of the gate (the map cannot move meanwhile).
    func withHandle<R>(_ operation: String, _ body: (OpaquePointer) throws -> R) throws -> R {
        try self.gate.withShared {
            guard let env = self.handle else { throw LMDBError.closed(operation) }
            return try body(env)
        }
    }

    // MARK: Transactions

    /// Begins a raw transaction holding a gate share. On MDB_MAP_RESIZED (another process grew the map)
    /// adopts the new size under the exclusive gate and retries once.
    func beginTransaction(flags: UInt32) throws -> (txn: OpaquePointer, gateOwner: UInt) {
        var adoptedForeignResize = false
        while true {
            let owner = self.gate.acquireShared()
            var txn: OpaquePointer?
            let rc: Int32
            if let env = self.handle {
                rc = mdb_txn_begin(env, nil, flags, &txn)
            } else {
                self.gate.releaseShared(owner)
                throw LMDBError.closed("mdb_txn_begin")
            }
            if rc == 0, let txn {
                return (txn, owner)
            }
            self.gate.releaseShared(owner)
            guard rc == MDB_MAP_RESIZED, !adoptedForeignResize else {
                throw LMDBError(returnCode: rc, operation: "mdb_txn_begin")
            }
            adoptedForeignResize = true
            try self.gate.withExclusive(operation: "mdb_env_set_mapsize") {
                guard let env = self.handle else { throw LMDBError.closed("mdb_env_set_mapsize") }
                // Size 0 means: adopt the size recorded in the meta page by the other process.
                try lmdbCheck(mdb_env_set_mapsize(env, 0), "mdb_env_set_mapsize")
            }
        }
    }

    /// Begins a read-only transaction. Prefer `read(_:)`; a manual transaction holds a reader slot and blocks
    /// map growth until it ends, so keep it short. It may end on another thread (MDB_NOTLS).
    public func beginRead() throws -> LMDBReadTransaction {
        let (txn, owner) = try self.beginTransaction(flags: UInt32(MDB_RDONLY))
        return LMDBReadTransaction(environment: self, handle: txn, gateOwner: owner)
    }

    /// Begins a write transaction. It must commit or abort on the same OS thread; LMDB allows one writer at a
    /// time (a second `beginWrite` blocks, and deadlocks if on the same thread). Prefer `write(_:)`.
    public func beginWrite() throws -> LMDBWriteTransaction {
        let (txn, owner) = try self.beginTransaction(flags: 0)
        return LMDBWriteTransaction(environment: self, handle: txn, gateOwner: owner)
    }

    /// Runs `body` in a read-only transaction (a consistent snapshot), always ending it afterwards.
    /// Buffers obtained inside are borrowed from the map: copy out what must outlive the closure.
    @discardableResult
    public func read<R>(_ body: (LMDBReadTransaction) throws -> R) throws -> R {
        let txn = try self.beginRead()
        defer { txn.abort() }
        return try body(txn)
    }

    /// Runs `body` in a write transaction: commits if it returns, aborts if it throws.
    ///
    /// Synchronous on purpose: LMDB requires a write transaction to begin and commit on the same OS thread, so
    /// never `await` inside and call this from the event log's dedicated writer thread. If `body` ended the
    /// transaction itself (commit/abort), nothing more happens.
    @discardableResult
    public func write<R>(_ body: (LMDBWriteTransaction) throws -> R) throws -> R {
        let txn = try self.beginWrite()
        let result: R
        do {
            result = try body(txn)
        } catch {
            txn.abort()
            throw error
        }
        if txn.isActive {
            try txn.commit()
        }
        return result
    }

    /// Opens (and by default creates) a named database in its own write transaction.
    /// Same threading rule as `write(_:)`; the handle stays valid until the environment closes.
    public func openDatabase(name: String?, create: Bool = true,
                             flags: LMDBDatabaseFlags = []) throws -> LMDBDatabase {
        try self.write { txn in
            try txn.openDatabase(name: name, flags: create ? flags.union(.create) : flags)
        }
    }

    // MARK: Map size

    /// The current map size in bytes as this process sees it.
    public var mapSizeBytes: Int {
        get throws { try self.info().mapSizeBytes }
    }

    /// Sets the map size. Waits until no transaction of this process is live (LMDB requirement), and throws
    /// `.transactionActiveOnThisThread` if the caller itself holds one (e.g. inside `write`): after MDB_MAP_FULL,
    /// let the failed transaction abort, grow, then retry the transaction.
    /// Sizes smaller than the data are raised by LMDB to the current data size.
    public func setMapSize(_ bytes: Int) throws {
        try self.gate.withExclusive(operation: "mdb_env_set_mapsize") {
            guard let env = self.handle else { throw LMDBError.closed("mdb_env_set_mapsize") }
            try lmdbCheck(mdb_env_set_mapsize(env, bytes), "mdb_env_set_mapsize")
        }
    }

    /// Grows the map by `bytes` (read and set atomically under the gate); returns the new size in bytes.
    @discardableResult
    public func growMap(byBytes bytes: Int) throws -> Int {
        try self.gate.withExclusive(operation: "mdb_env_set_mapsize") {
            guard let env = self.handle else { throw LMDBError.closed("mdb_env_set_mapsize") }
            var info = MDB_envinfo()
            try lmdbCheck(mdb_env_info(env, &info), "mdb_env_info")
            try lmdbCheck(mdb_env_set_mapsize(env, info.me_mapsize + bytes), "mdb_env_set_mapsize")
            try lmdbCheck(mdb_env_info(env, &info), "mdb_env_info")
            return info.me_mapsize
        }
    }

    // MARK: Durability and maintenance

    /// The flags the environment currently runs with (includes MDB_NOTLS).
    public var flags: LMDBEnvironmentFlags {
        get throws {
            try self.withHandle("mdb_env_get_flags") { env in
                var raw: UInt32 = 0
                try lmdbCheck(mdb_env_get_flags(env, &raw), "mdb_env_get_flags")
                return LMDBEnvironmentFlags(rawValue: raw)
            }
        }
    }

    /// Turns durability flags on or off at runtime (`mdb_env_set_flags`); only `changeableAtRuntime` flags.
    /// Serialised here because LMDB leaves concurrent flag changes undefined.
    public func setFlags(_ flags: LMDBEnvironmentFlags, enabled: Bool) throws {
        guard LMDBEnvironmentFlags.changeableAtRuntime.isSuperset(of: flags) else {
            throw LMDBError(returnCode: EINVAL, operation: "mdb_env_set_flags")
        }
        try self.withHandle("mdb_env_set_flags") { env in
            try self.flagsLock.withLock {
                try lmdbCheck(mdb_env_set_flags(env, flags.rawValue, enabled ? 1 : 0), "mdb_env_set_flags")
            }
        }
    }

    /// Flushes to disk; `force` syncs even under MDB_NOSYNC/MDB_MAPASYNC (use after a batch in no-sync mode).
    public func sync(force: Bool = true) throws {
        try self.withHandle("mdb_env_sync") { env in
            try lmdbCheck(mdb_env_sync(env, force ? 1 : 0), "mdb_env_sync")
        }
    }

    public func info() throws -> LMDBEnvironmentInfo {
        try self.withHandle("mdb_env_info") { env in
            var info = MDB_envinfo()
            try lmdbCheck(mdb_env_info(env, &info), "mdb_env_info")
            return LMDBEnvironmentInfo(
                mapSizeBytes: info.me_mapsize, lastPageNumber: info.me_last_pgno,
                lastTransactionID: info.me_last_txnid, maxReaders: Int(info.me_maxreaders),
                readersInUse: Int(info.me_numreaders))
        }
    }

    /// Drops this process's mappings of the data file's used pages (`madvise(MADV_DONTNEED)`) and
    /// returns how many bytes of the map that covered.
    ///
    /// Why: every page LMDB touches through the map (a reader's lookups, the writer's walk down
    /// the B-tree, the kernel's fault-around of neighbouring cached pages) stays mapped and
    /// counts in the process's RSS, so a long-running process's RSS grows towards its log's size
    /// although the kernel could drop those pages at any time. Nothing is lost: the map is a
    /// shared file mapping, so the next access maps the same page-cache page again (with
    /// MDB_WRITEMAP the dirty state of a page moves to the page cache). Transactions may run
    /// meanwhile; the gate's share keeps the map from moving.
    @discardableResult
    public func releaseMappedPages() throws -> Int {
        try self.withHandle("madvise") { env in
            var info = MDB_envinfo()
            try lmdbCheck(mdb_env_info(env, &info), "mdb_env_info")
            var stat = MDB_stat()
            try lmdbCheck(mdb_env_stat(env, &stat), "mdb_env_stat")
            // LMDB does not tell where it mapped the file (`me_mapaddr` is set only with
            // MDB_FIXEDMAP), so the kernel's list of this process's mappings does, by inode.
            guard let map = try mapping(ofFile: self.path + "/data.mdb") else { return 0 }
            let usedBytes = min(map.bytes, (info.me_last_pgno + 1) * Int(stat.ms_psize))
            guard usedBytes > 0 else { return 0 }
            guard madvise(map.base, usedBytes, MADV_DONTNEED) == 0 else {
                throw LMDBError(returnCode: errno, operation: "madvise(MADV_DONTNEED)")
            }
            return usedBytes
        }
    }

    /// Statistics of the main (unnamed) database.
    public func stat() throws -> LMDBStat {
        try self.withHandle("mdb_env_stat") { env in
            var stat = MDB_stat()
            try lmdbCheck(mdb_env_stat(env, &stat), "mdb_env_stat")
            return LMDBStat(stat)
        }
    }

    /// Clears reader slots left by dead processes (`mdb_reader_check`); returns how many were cleared.
    /// Stale slots pin old pages and make the file grow, so the log calls this at startup.
    @discardableResult
    public func readerCheck() throws -> Int {
        try self.withHandle("mdb_reader_check") { env in
            var dead: Int32 = 0
            try lmdbCheck(mdb_reader_check(env, &dead), "mdb_reader_check")
            return Int(dead)
        }
    }

    /// Hot backup into directory `path` (created if missing; must be empty) via `mdb_env_copy2`.
    /// `compact` omits free pages and renumbers them (MDB_CP_COMPACT): smaller, slower. Writers keep running;
    /// the copy is a consistent snapshot.
    public func copy(to path: String, compact: Bool) throws {
        try makeDirectories(path, mode: 0o750)
        guard try directoryIsEmpty(path) else {
            throw LMDBError(code: .backupTargetNotEmpty, returnCode: ENOTEMPTY, operation: "mdb_env_copy2",
                            message: "backup target directory \(path) is not empty")
        }
        try self.withHandle("mdb_env_copy2") { env in
            let flags = compact ? UInt32(MDB_CP_COMPACT) : 0
            try lmdbCheck(mdb_env_copy2(env, path, flags), "mdb_env_copy2")
        }
    }
}

// MARK: - Process-wide registry and file system helpers

/// Where `file` is mapped in this process, from /proc/self/maps (the mapping with its inode
/// and device); nil when it is not mapped or the system has no /proc.
func mapping(ofFile file: String) throws -> (base: UnsafeMutableRawPointer, bytes: Int)? {
    #if os(Linux)
    var status = stat()
    guard stat(file, &status) == 0 else { throw LMDBError(returnCode: errno, operation: "stat(\(file))") }
    guard let maps = fopen("/proc/self/maps", "r") else { return nil }
    defer { fclose(maps) }
    // Lines: `START-END PERMS OFFSET MAJOR:MINOR INODE PATH`, numbers in hex but the inode.
    // glibc's dev_t layout (what `major()`/`minor()` decode).
    let dev = UInt64(status.st_dev)
    let wantedDevice = (major: (dev >> 8) & 0xfff | (dev >> 32) & ~0xfff, minor: dev & 0xff | (dev >> 12) & ~0xff)
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, maps) > 0 {
        guard let text = line else { break }
        let fields = String(cString: text).split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count >= 5, UInt64(fields[4]) == UInt64(status.st_ino) else { continue }
        let device = fields[3].split(separator: ":")
        guard device.count == 2, UInt64(device[0], radix: 16) == wantedDevice.major, UInt64(device[1], radix: 16) == wantedDevice.minor
        else { continue }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start,
            let base = UnsafeMutableRawPointer(bitPattern: start)
        else { continue }
        return (base, Int(end - start))
    }
    return nil
    #else
    return nil
    #endif
}


/// LMDB forbids opening one environment twice in a process (POSIX locks are per process, so the second
/// handle would silently break locking and corrupt data). We refuse it by canonical path instead.
final class OpenEnvironmentRegistry: @unchecked Sendable {
    private let lock = PThreadMutex()
    private var paths: Set<String> = []

    func register(_ path: String) throws {
        try self.lock.withLock {
            guard self.paths.insert(path).inserted else {
                throw LMDBError(code: .environmentAlreadyOpen, returnCode: EBUSY, operation: "mdb_env_open",
                                message: "\(path) is already open in this process")
            }
        }
    }

    func unregister(_ path: String) {
        _ = self.lock.withLock { self.paths.remove(path) }
    }
}

let openEnvironments = OpenEnvironmentRegistry()

/// `mkdir -p`: creates missing directories along `path`.
func makeDirectories(_ path: String, mode: mode_t) throws {
    var prefix = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        prefix += "/" + component
        if mkdir(prefix, mode) != 0, errno != EEXIST {
            throw LMDBError(returnCode: errno, operation: "mkdir(\(prefix))")
        }
    }
}

func canonicalPath(_ path: String) throws -> String {
    guard let resolved = realpath(path, nil) else {
        throw LMDBError(returnCode: errno, operation: "realpath(\(path))")
    }
    defer { free(resolved) }
    return String(cString: resolved)
}

func directoryIsEmpty(_ path: String) throws -> Bool {
    guard let dir = opendir(path) else {
        throw LMDBError(returnCode: errno, operation: "opendir(\(path))")
    }
    defer { closedir(dir) }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { return false }
    }
    return true
}
