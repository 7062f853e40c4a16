/// Something that can lend its bytes as a key or value for the duration of a call.
///
/// The transaction and cursor methods take `UnsafeRawBufferPointer`; these overloads exist so that callers
/// can pass `[UInt8]` or a big-endian `UInt64` key without nesting `withUnsafeBytes` closures.
public protocol LMDBBytes {
    func withLMDBBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension UnsafeRawBufferPointer: LMDBBytes {
    @inlinable
    public func withLMDBBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

extension Array: LMDBBytes where Element == UInt8 {
    @inlinable
    public func withLMDBBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.withUnsafeBytes(body)
    }
}

extension ArraySlice: LMDBBytes where Element == UInt8 {
    @inlinable
    public func withLMDBBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try self.withUnsafeBytes(body)
    }
}

/// A `UInt64` key stored big-endian, so that LMDB's default memcmp order equals numeric order (sequence
/// numbers iterate in order) and the file reads the same on any host.
public struct LMDBBigEndianKey: LMDBBytes, Sendable, Hashable {
    public var value: UInt64
    public init(_ value: UInt64) { self.value = value }

    @inlinable
    public func withLMDBBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withBigEndianKey(self.value, body)
    }
}

/// Lends the 8 big-endian bytes of `value` to `body` (a key for `get`/`put`/`setRange`).
@inlinable
public func withBigEndianKey<R>(_ value: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try withUnsafeBytes(of: value.bigEndian, body)
}

extension UnsafeRawBufferPointer {
    /// Decodes a big-endian `UInt64` at `offset`; nil if fewer than 8 bytes remain (never traps on short data
    /// read from disk). Uses an unaligned load: LMDB values have no alignment guarantee.
    @inlinable
    public func bigEndianUInt64(atByteOffset offset: Int = 0) -> UInt64? {
        guard offset >= 0, self.count - offset >= 8 else { return nil }
        return UInt64(bigEndian: self.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

// MARK: - Convenience overloads

extension LMDBReadTransaction {
    @inlinable
    public func get(_ db: LMDBDatabase, key: some LMDBBytes) throws -> UnsafeRawBufferPointer? {
        try key.withLMDBBytes { try self.get(db, key: $0) }
    }

    /// Copies the value out (`[UInt8]`), so it outlives the transaction.
    @inlinable
    public func getBytes(_ db: LMDBDatabase, key: some LMDBBytes) throws -> [UInt8]? {
        try self.get(db, key: key).map { [UInt8]($0) }
    }
}

extension LMDBWriteTransaction {
    @inlinable
    @discardableResult
    public func put(_ db: LMDBDatabase, key: some LMDBBytes, value: some LMDBBytes,
                    flags: LMDBPutFlags = []) throws -> LMDBPutResult {
        try key.withLMDBBytes { k in
            try value.withLMDBBytes { v in try self.put(db, key: k, value: v, flags: flags) }
        }
    }

    @inlinable
    @discardableResult
    public func put(_ db: LMDBDatabase, key: some LMDBBytes, reservingBytes bytes: Int, flags: LMDBPutFlags = [],
                    fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws -> LMDBPutResult {
        try key.withLMDBBytes { k in try self.put(db, key: k, reservingBytes: bytes, flags: flags, fill: fill) }
    }

    @inlinable
    @discardableResult
    public func delete(_ db: LMDBDatabase, key: some LMDBBytes) throws -> Bool {
        try key.withLMDBBytes { try self.delete(db, key: $0) }
    }
}

extension LMDBCursor {
    @inlinable
    public func set(key: some LMDBBytes) throws -> Entry? {
        try key.withLMDBBytes { try self.set(key: $0) }
    }

    @inlinable
    public func setRange(key: some LMDBBytes) throws -> Entry? {
        try key.withLMDBBytes { try self.setRange(key: $0) }
    }

    @inlinable
    @discardableResult
    public func forEach(from startKey: some LMDBBytes,
                        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws -> Int {
        // `Optional(...)` selects the non-generic overload (the raw buffer also conforms to LMDBBytes).
        try startKey.withLMDBBytes { try self.forEach(from: Optional($0), body) }
    }
}
