import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Flags for `mdb_dbi_open`.
public struct LMDBDatabaseFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let create = LMDBDatabaseFlags(rawValue: UInt32(MDB_CREATE))
    public static let reverseKey = LMDBDatabaseFlags(rawValue: UInt32(MDB_REVERSEKEY))
    public static let dupSort = LMDBDatabaseFlags(rawValue: UInt32(MDB_DUPSORT))
    /// Keys are native-endian unsigned ints of one size. Big-endian keys (`LMDBBigEndianKey`) sort correctly
    /// without it and keep the file portable, which is why the log uses those instead.
    public static let integerKey = LMDBDatabaseFlags(rawValue: UInt32(MDB_INTEGERKEY))
    public static let dupFixed = LMDBDatabaseFlags(rawValue: UInt32(MDB_DUPFIXED))
    public static let integerDup = LMDBDatabaseFlags(rawValue: UInt32(MDB_INTEGERDUP))
    public static let reverseDup = LMDBDatabaseFlags(rawValue: UInt32(MDB_REVERSEDUP))
}

/// A database handle (`MDB_dbi`). Valid for the environment that opened it, until it closes; a handle opened
/// in a write transaction that is aborted is invalid.
public struct LMDBDatabase: Sendable, Hashable {
    public let dbi: MDB_dbi
    public let name: String?
}

/// Flags for `mdb_put`.
public struct LMDBPutFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Report `.keyExists` instead of overwriting (dedup without a prior `get`).
    public static let noOverwrite = LMDBPutFlags(rawValue: UInt32(MDB_NOOVERWRITE))
    /// For dupSort databases: report `.keyExists` if this exact key/value pair is present.
    public static let noDupData = LMDBPutFlags(rawValue: UInt32(MDB_NODUPDATA))
    /// The key must sort after every existing key (fast path for sequence numbers). A key out of order fails
    /// with MDB_KEYEXIST, which is always thrown (also for `.appendDup`), even together with `.noOverwrite`.
    public static let append = LMDBPutFlags(rawValue: UInt32(MDB_APPEND))
    public static let appendDup = LMDBPutFlags(rawValue: UInt32(MDB_APPENDDUP))
}

/// Outcome of `put`: whether the value was stored, or the key was present under `.noOverwrite`/`.noDupData`.
public enum LMDBPutResult {
    case stored
    /// The existing value, borrowed until the transaction ends.
    case keyExists(existingValue: UnsafeRawBufferPointer)

    public var wasStored: Bool {
        if case .stored = self { return true }
        return false
    }
}

@inline(__always)
func mdbVal(_ buffer: UnsafeRawBufferPointer) -> MDB_val {
    // LMDB takes non-const pointers but does not write through keys or values passed in.
    MDB_val(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
}

@inline(__always)
func borrowed(_ value: MDB_val) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
}

/// A read-only transaction: a consistent snapshot of the environment.
///
/// Not `Sendable`: use it from one task at a time. Thanks to MDB_NOTLS it may end on another thread than it
/// began. Every buffer it returns is BORROWED from the memory map and valid only until the transaction ends
/// (and, in a write transaction, until the next write to the same database): copy out with `[UInt8](buffer)`.
/// Not committed or aborted by the time it is released, it is aborted in `deinit`.
/// `LMDBWriteTransaction` inherits every read operation.
public class LMDBReadTransaction {
    let environment: LMDBEnvironment
    /// `MDB_txn*`; nil once committed or aborted.
    var handle: OpaquePointer?
    private let gateOwner: UInt
    /// Cursors are closed before the transaction ends: LMDB requires it for read-only transactions, and it
    /// makes a cursor that outlives its transaction fail cleanly instead of touching freed memory.
    private var cursors: [LMDBCursor] = []

    init(environment: LMDBEnvironment, handle: OpaquePointer, gateOwner: UInt) {
        self.environment = environment
        self.handle = handle
        self.gateOwner = gateOwner
    }

    deinit {
        self.abort()
    }

    public var isActive: Bool { self.handle != nil }

    @inline(__always)
    func activeHandle(_ operation: String) throws -> OpaquePointer {
        guard let txn = self.handle else { throw LMDBError.finished(operation) }
        return txn
    }

    /// Ends the transaction bookkeeping after `mdb_txn_commit`/`mdb_txn_abort` freed the `MDB_txn`.
    private func finish(_ end: (OpaquePointer) -> Int32) -> Int32 {
        guard let txn = self.handle else { return 0 }
        for cursor in self.cursors { cursor.close() }
        self.cursors = []
        let rc = end(txn)
        self.handle = nil
        self.environment.gate.releaseShared(self.gateOwner)
        return rc
    }

    /// Commits. LMDB frees the transaction even when commit fails, so it is finished either way.
    public func commit() throws {
        guard self.isActive else { throw LMDBError.finished("mdb_txn_commit") }
        try lmdbCheck(self.finish(mdb_txn_commit), "mdb_txn_commit")
    }

    /// Aborts; a no-op if already finished.
    public func abort() {
        _ = self.finish { mdb_txn_abort($0); return 0 }
    }

    /// The value for `key`, borrowed until the transaction ends, or nil if absent.
    public func get(_ db: LMDBDatabase, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        let txn = try self.activeHandle("mdb_get")
        var k = mdbVal(key)
        var v = MDB_val()
        let rc = mdb_get(txn, db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_get")
        return borrowed(v)
    }

    /// Statistics for `db`; `entries` is its number of key/value pairs.
    public func stat(_ db: LMDBDatabase) throws -> LMDBStat {
        let txn = try self.activeHandle("mdb_stat")
        var stat = MDB_stat()
        try lmdbCheck(mdb_stat(txn, db.dbi, &stat), "mdb_stat")
        return LMDBStat(stat)
    }

    /// Opens a cursor on `db`; it is closed automatically when the transaction ends.
    public func cursor(_ db: LMDBDatabase) throws -> LMDBCursor {
        let txn = try self.activeHandle("mdb_cursor_open")
        var cursor: OpaquePointer?
        try lmdbCheck(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open")
        let wrapper = LMDBCursor(handle: cursor!)
        self.cursors.append(wrapper)
        return wrapper
    }

    /// Runs `body` with a cursor and closes it afterwards (cursors otherwise live until the txn ends).
    public func withCursor<R>(_ db: LMDBDatabase, _ body: (LMDBCursor) throws -> R) throws -> R {
        let cursor = try self.cursor(db)
        defer {
            cursor.close()
            self.cursors.removeAll { $0 === cursor }  // keep long write transactions from accumulating them
        }
        return try body(cursor)
    }
}

/// A read-write transaction. Only one exists at a time per environment (across processes); it must commit or
/// abort on the OS thread that began it. Use it through `LMDBEnvironment.write(_:)` on the writer thread.
public final class LMDBWriteTransaction: LMDBReadTransaction {
    /// Opens a database by name (nil: the main database). Must happen in a write transaction because LMDB
    /// forbids concurrent `mdb_dbi_open` in one process and the writer lock serialises it for free.
    public func openDatabase(name: String?, flags: LMDBDatabaseFlags = [.create]) throws -> LMDBDatabase {
        let txn = try self.activeHandle("mdb_dbi_open")
        var dbi: MDB_dbi = 0
        try lmdbCheck(mdb_dbi_open(txn, name, flags.rawValue, &dbi), "mdb_dbi_open")
        return LMDBDatabase(dbi: dbi, name: name)
    }

    /// Stores `value` under `key`. MDB_KEYEXIST under `.noOverwrite`/`.noDupData` (without `.append`) is a
    /// normal outcome for deduplication and is returned as `.keyExists`; every other failure throws. After
    /// MDB_MAP_FULL (or any error) the transaction is unusable: let it abort, grow the map, retry.
    @discardableResult
    public func put(_ db: LMDBDatabase, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                    flags: LMDBPutFlags = []) throws -> LMDBPutResult {
        try self.rawPut(db, key: key, value: mdbVal(value), flags: flags.rawValue).0
    }

    /// MDB_RESERVE: reserves `bytes` in LMDB's own page and lets `fill` write the value in place (no copy).
    /// `fill` must initialise every byte. If it throws, the transaction is aborted (the slot holds garbage).
    @discardableResult
    public func put(_ db: LMDBDatabase, key: UnsafeRawBufferPointer, reservingBytes bytes: Int,
                    flags: LMDBPutFlags = [], fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> LMDBPutResult {
        let (result, slot) = try self.rawPut(db, key: key, value: MDB_val(mv_size: bytes, mv_data: nil),
                                             flags: flags.rawValue | UInt32(MDB_RESERVE))
        guard case .stored = result else { return result }
        do {
            try fill(UnsafeMutableRawBufferPointer(start: slot.mv_data, count: slot.mv_size))
        } catch {
            self.abort()
            throw error
        }
        return result
    }

    /// Returns the outcome and the `MDB_val` LMDB filled in (the reserved slot, or the existing value).
    private func rawPut(_ db: LMDBDatabase, key: UnsafeRawBufferPointer, value: MDB_val,
                        flags: UInt32) throws -> (LMDBPutResult, MDB_val) {
        let txn = try self.activeHandle("mdb_put")
        var k = mdbVal(key)
        var v = value
        let rc = mdb_put(txn, db.dbi, &k, &v, flags)
        let dedup = UInt32(MDB_NOOVERWRITE | MDB_NODUPDATA)
        if rc == MDB_KEYEXIST, flags & dedup != 0, flags & UInt32(MDB_APPEND | MDB_APPENDDUP) == 0 {
            return (.keyExists(existingValue: borrowed(v)), v)  // LMDB points `v` at the existing value
        }
        try lmdbCheck(rc, "mdb_put")
        return (.stored, v)
    }

    /// Deletes `key` (for dupSort databases: only the pair with `value`, if given). Returns false if absent.
    @discardableResult
    public func delete(_ db: LMDBDatabase, key: UnsafeRawBufferPointer,
                       value: UnsafeRawBufferPointer? = nil) throws -> Bool {
        let txn = try self.activeHandle("mdb_del")
        var k = mdbVal(key)
        let rc: Int32
        if let value {
            var v = mdbVal(value)
            rc = mdb_del(txn, db.dbi, &k, &v)
        } else {
            rc = mdb_del(txn, db.dbi, &k, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try lmdbCheck(rc, "mdb_del")
        return true
    }

    /// Empties `db`; with `delete: true` also removes it from the environment and closes the handle.
    public func drop(_ db: LMDBDatabase, delete: Bool) throws {
        let txn = try self.activeHandle("mdb_drop")
        try lmdbCheck(mdb_drop(txn, db.dbi, delete ? 1 : 0), "mdb_drop")
    }
}
