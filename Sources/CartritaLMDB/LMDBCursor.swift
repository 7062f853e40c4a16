import CLMDB

/// A cursor over one database inside one transaction (`MDB_cursor`).
///
/// Positioning methods return the entry under the cursor, or nil when there is none (MDB_NOTFOUND). Keys and
/// values are BORROWED: valid until the transaction ends (in a write transaction, until the next write).
/// The owning transaction closes the cursor when it ends; any use after that throws `.transactionFinished`.
public final class LMDBCursor {
    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    private var handle: OpaquePointer?

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    /// Closes the cursor now; idempotent. Called by the transaction before it ends.
    public func close() {
        if let cursor = self.handle {
            mdb_cursor_close(cursor)
            self.handle = nil
        }
    }

    private func get(_ op: MDB_cursor_op, key: UnsafeRawBufferPointer? = nil) throws -> Entry? {
        guard let cursor = self.handle else { throw LMDBError.finished("mdb_cursor_get") }
        var k = key.map(mdbVal) ?? MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try lmdbCheck(rc, "mdb_cursor_get")
        return (borrowed(k), borrowed(v))
    }

    public func first() throws -> Entry? { try self.get(MDB_FIRST) }
    public func last() throws -> Entry? { try self.get(MDB_LAST) }
    public func next() throws -> Entry? { try self.get(MDB_NEXT) }
    public func prev() throws -> Entry? { try self.get(MDB_PREV) }
    public func current() throws -> Entry? { try self.get(MDB_GET_CURRENT) }

    /// Positions at exactly `key` (MDB_SET_KEY); nil if absent.
    public func set(key: UnsafeRawBufferPointer) throws -> Entry? { try self.get(MDB_SET_KEY, key: key) }

    /// Positions at the first key >= `key` (MDB_SET_RANGE); nil if every key is smaller.
    public func setRange(key: UnsafeRawBufferPointer) throws -> Entry? { try self.get(MDB_SET_RANGE, key: key) }

    /// Number of values under the current key (dupSort databases only; EINVAL otherwise).
    public func count() throws -> Int {
        guard let cursor = self.handle else { throw LMDBError.finished("mdb_cursor_count") }
        var count = 0
        try lmdbCheck(mdb_cursor_count(cursor, &count), "mdb_cursor_count")
        return count
    }

    /// Forward iteration from the first key >= `startKey` (or from the first key), calling `body` per entry
    /// until it returns false or the data ends. Returns how many entries were visited. A closure rather than a
    /// `Sequence` so that LMDB errors propagate as thrown errors instead of silently ending the iteration.
    @discardableResult
    public func forEach(from startKey: UnsafeRawBufferPointer? = nil,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws -> Int {
        var entry = try startKey.map { try self.setRange(key: $0) } ?? self.first()
        var visited = 0
        while let (key, value) = entry {
            visited += 1
            guard try body(key, value) else { break }
            entry = try self.next()
        }
        return visited
    }
}
