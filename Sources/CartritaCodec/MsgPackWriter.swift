#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CartritaEnvelope

/// Writes msgpack into a growable buffer that is reused between messages (reset keeps the
/// memory), so a steady stream of encodes allocates nothing.
///
/// Why not msgpack-c's packer (the tests' reference): the packer writes every token
/// through a callback function pointer (`msgpack_sbuffer_write`), so nothing inlines and an
/// envelope of ~40 tokens pays ~40 indirect calls, each re-checking the buffer. That was the
/// largest single cost of encoding, and encoding runs for every message the runtime appends and
/// every delivery the simulator hashes. Here a token is one capacity check and one store.
///
/// The bytes are exactly what msgpack-c's packer writes (Tests/CartritaCodecTests/
/// NativeWriterTests compares the two over every size boundary): integers in their smallest
/// form (positive values as unsigned), str8 for 32–255-byte strings, big-endian throughout.
/// The canonical form matters: the hash chain and the determinism tests compare bytes.
///
/// Not thread-safe: one writer per thread or task.
public final class MsgPackWriter {
    // Unchecked: a class's stored properties otherwise pay a dynamic exclusivity check
    // (swift_beginAccess) on every access, several per token, which made this writer slower
    // than msgpack-c's. The writer is single-threaded by contract and no method hands out an
    // inout reference to these, so no overlapping access can happen.
    @exclusivity(unchecked) private var storage: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) public private(set) var count: Int = 0

    public init(initialCapacityBytes: Int = 4096) {
        self.capacity = max(64, initialCapacityBytes)
        guard let memory = malloc(self.capacity) else { fatalError("out of memory: \(self.capacity) bytes for a msgpack buffer") }
        self.storage = memory
    }

    deinit { free(self.storage) }

    public func reset() { self.count = 0 }

    /// The bytes written so far; valid until the next write or reset.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: self.storage, count: self.count))
    }

    public var bytes: [UInt8] { self.withBytes { [UInt8]($0) } }

    // MARK: The buffer

    /// Room for `extra` more bytes. Out of memory is fatal, as it was with msgpack-c's sbuffer.
    @inline(__always)
    private func reserve(_ extra: Int) {
        if self.count &+ extra > self.capacity { self.grow(to: self.count + extra) }
    }

    @inline(never)
    private func grow(to needed: Int) {
        var newCapacity = self.capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        guard let memory = realloc(self.storage, newCapacity) else {
            fatalError("out of memory: \(newCapacity) bytes for a msgpack buffer")
        }
        self.storage = memory
        self.capacity = newCapacity
    }

    @inline(__always)
    private func put(_ byte: UInt8) {
        self.reserve(1)
        self.storage.storeBytes(of: byte, toByteOffset: self.count, as: UInt8.self)
        self.count &+= 1
    }

    /// A marker byte and a big-endian integer of `T`'s width.
    @inline(__always)
    private func put<T: FixedWidthInteger>(_ marker: UInt8, _ value: T) {
        let width = MemoryLayout<T>.size
        self.reserve(1 + width)
        self.storage.storeBytes(of: marker, toByteOffset: self.count, as: UInt8.self)
        self.storage.storeBytes(of: value.bigEndian, toByteOffset: self.count &+ 1, as: T.self)
        self.count &+= 1 &+ width
    }

    /// Copies `length` bytes. Up to 32 bytes (keys, addresses, enum names, ids: most of an
    /// envelope's pieces) with overlapping loads and stores that stay within both ranges,
    /// instead of a call to memmove, whose fixed cost outweighs copying so few bytes.
    @inline(__always)
    private func putBody(_ start: UnsafeRawPointer?, _ length: Int) {
        guard length > 0, let start else { return }
        self.reserve(length)
        let target = self.storage + self.count
        if length <= 32 {
            Self.copyShort(from: start, to: target, length)
        } else {
            target.copyMemory(from: start, byteCount: length)
        }
        self.count &+= length
    }

    /// 1 to 32 bytes: the first and last 8 (or 16) bytes, which overlap for lengths in between;
    /// the same for 4 bytes; below 4, the first, middle and last byte.
    @inline(__always)
    static func copyShort(from source: UnsafeRawPointer, to target: UnsafeMutableRawPointer, _ length: Int) {
        if length >= 16 {
            let a = source.loadUnaligned(as: UInt64.self)
            let b = source.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            let c = source.loadUnaligned(fromByteOffset: length &- 16, as: UInt64.self)
            let d = source.loadUnaligned(fromByteOffset: length &- 8, as: UInt64.self)
            target.storeBytes(of: a, as: UInt64.self)
            target.storeBytes(of: b, toByteOffset: 8, as: UInt64.self)
            target.storeBytes(of: c, toByteOffset: length &- 16, as: UInt64.self)
            target.storeBytes(of: d, toByteOffset: length &- 8, as: UInt64.self)
        } else if length >= 8 {
            let a = source.loadUnaligned(as: UInt64.self)
            let b = source.loadUnaligned(fromByteOffset: length &- 8, as: UInt64.self)
            target.storeBytes(of: a, as: UInt64.self)
            target.storeBytes(of: b, toByteOffset: length &- 8, as: UInt64.self)
        } else if length >= 4 {
            let a = source.loadUnaligned(as: UInt32.self)
            let b = source.loadUnaligned(fromByteOffset: length &- 4, as: UInt32.self)
            target.storeBytes(of: a, as: UInt32.self)
            target.storeBytes(of: b, toByteOffset: length &- 4, as: UInt32.self)
        } else {
            let a = source.load(as: UInt8.self)
            let b = source.load(fromByteOffset: length >> 1, as: UInt8.self)
            let c = source.load(fromByteOffset: length &- 1, as: UInt8.self)
            target.storeBytes(of: a, as: UInt8.self)
            target.storeBytes(of: b, toByteOffset: length >> 1, as: UInt8.self)
            target.storeBytes(of: c, toByteOffset: length &- 1, as: UInt8.self)
        }
    }

    // MARK: Primitive writes

    public func writeNil() { self.put(0xc0) }
    public func write(_ value: Bool) { self.put(value ? 0xc3 : 0xc2) }

    public func write(_ value: Int64) {
        if value >= 0 {
            self.write(UInt64(value))
        } else if value >= -32 {
            self.put(UInt8(bitPattern: Int8(value)))  // negative fixint
        } else if value >= Int64(Int8.min) {
            self.put(0xd0, Int8(value))
        } else if value >= Int64(Int16.min) {
            self.put(0xd1, Int16(value))
        } else if value >= Int64(Int32.min) {
            self.put(0xd2, Int32(value))
        } else {
            self.put(0xd3, value)
        }
    }

    public func write(_ value: UInt64) {
        if value < 128 {
            self.put(UInt8(value))  // positive fixint
        } else if value <= UInt64(UInt8.max) {
            self.put(0xcc, UInt8(value))
        } else if value <= UInt64(UInt16.max) {
            self.put(0xcd, UInt16(value))
        } else if value <= UInt64(UInt32.max) {
            self.put(0xce, UInt32(value))
        } else {
            self.put(0xcf, value)
        }
    }

    public func write(_ value: Double) { self.put(0xcb, value.bitPattern) }
    public func write(_ value: Float) { self.put(0xca, value.bitPattern) }

    public func writeMapHeader(_ count: Int) {
        if count < 16 {
            self.put(0x80 | UInt8(count))
        } else if count <= Int(UInt16.max) {
            self.put(0xde, UInt16(count))
        } else {
            self.put(0xdf, UInt32(count))
        }
    }

    public func writeArrayHeader(_ count: Int) {
        if count < 16 {
            self.put(0x90 | UInt8(count))
        } else if count <= Int(UInt16.max) {
            self.put(0xdc, UInt16(count))
        } else {
            self.put(0xdd, UInt32(count))
        }
    }

    @inline(__always)
    private func writeStringHeader(_ length: Int) {
        if length < 32 {
            self.put(0xa0 | UInt8(length))
        } else if length <= Int(UInt8.max) {
            self.put(0xd9, UInt8(length))
        } else if length <= Int(UInt16.max) {
            self.put(0xda, UInt16(length))
        } else {
            self.put(0xdb, UInt32(length))
        }
    }

    /// A string's UTF-8 bytes: msgpack strings are UTF-8 by definition.
    public func writeString(_ utf8: UnsafeRawBufferPointer) {
        self.writeStringHeader(utf8.count)
        self.putBody(utf8.baseAddress, utf8.count)
    }

    public func write(_ text: String) {
        // Native Swift strings are contiguous UTF-8: no copy. Anything else (a bridged string)
        // goes through a contiguous copy.
        let done: Void? = text.utf8.withContiguousStorageIfAvailable { utf8 in
            self.writeString(UnsafeRawBufferPointer(utf8))
        }
        if done == nil {
            var copy = text
            copy.withUTF8 { self.writeString(UnsafeRawBufferPointer($0)) }
        }
    }

    /// A key known at compile time (field names). Inlined into the encoder, so the length is a
    /// constant and the copy is a few moves, not a call to memmove per key.
    @inline(__always)
    public func writeKey(_ key: StaticString) {
        let length = key.utf8CodeUnitCount
        self.writeStringHeader(length)
        self.putBody(key.utf8Start, length)
    }

    public func writeBinary(_ bytes: UnsafeRawBufferPointer) {
        let length = bytes.count
        if length <= Int(UInt8.max) {
            self.put(0xc4, UInt8(length))
        } else if length <= Int(UInt16.max) {
            self.put(0xc5, UInt16(length))
        } else {
            self.put(0xc6, UInt32(length))
        }
        self.putBody(bytes.baseAddress, length)
    }

    public func writeBinary(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.writeBinary($0) }
    }

    /// An id as 16-byte bin (`0xc4 0x10`, then the bytes most significant first), written with
    /// three stores instead of a call to memmove: every envelope has two or three ids.
    public func write(_ id: MessageID) {
        self.reserve(18)
        self.storage.storeBytes(of: UInt16(0xc410).bigEndian, toByteOffset: self.count, as: UInt16.self)
        self.storage.storeBytes(of: id.high.bigEndian, toByteOffset: self.count &+ 2, as: UInt64.self)
        self.storage.storeBytes(of: id.low.bigEndian, toByteOffset: self.count &+ 10, as: UInt64.self)
        self.count &+= 18
    }

    /// Eight bytes, most significant first, with no msgpack marker: not msgpack, for framing
    /// that is not (the simulator's trace digest puts seqs and clock readings between envelopes).
    public func writeRawBigEndian(_ value: UInt64) {
        self.reserve(8)
        self.storage.storeBytes(of: value.bigEndian, toByteOffset: self.count, as: UInt64.self)
        self.count &+= 8
    }

    /// An id's 16 bytes, most significant first, with no msgpack marker (see `writeRawBigEndian`).
    public func writeRaw(_ id: MessageID) {
        self.reserve(16)
        self.storage.storeBytes(of: id.high.bigEndian, toByteOffset: self.count, as: UInt64.self)
        self.storage.storeBytes(of: id.low.bigEndian, toByteOffset: self.count &+ 8, as: UInt64.self)
        self.count &+= 16
    }

    /// Bytes that are already msgpack (a pre-encoded envelope body), copied as they are.
    public func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        self.putBody(bytes.baseAddress, bytes.count)
    }

    public func write(_ value: MCPValue) {
        withUnsafePointer(to: value) { self.write(valueAt: $0) }
    }

    /// Where a map entry's value lies within the entry, for `write(valueAt:)`.
    static let mapEntryValueOffset = MemoryLayout<MCPValue.MapEntry>.offset(of: \MCPValue.MapEntry.value)!

    /// Writes the value in place, reached through a pointer into its container's buffer. Passing
    /// each element by value made the compiler copy it for the call (an outlined copy and
    /// destroy of the enum per element, with a retain and a release of its storage), which was
    /// most of the cost of writing a task's parameters and an agent's result: the container's
    /// buffer is kept alive by the one copy the `switch` makes of the container itself.
    func write(valueAt value: UnsafePointer<MCPValue>) {
        switch value.pointee {
        case .null: self.writeNil()
        case .bool(let flag): self.write(flag)
        case .int(let number): self.write(number)
        case .uint(let number): self.write(number)
        case .float(let number): self.write(number)
        case .double(let number): self.write(number)
        case .string(let text): self.write(text)
        case .binary(let bytes): self.writeBinary(bytes)
        case .array(let items):
            self.writeArrayHeader(items.count)
            items.withUnsafeBufferPointer { items in
                guard let base = items.baseAddress else { return }
                for index in 0..<items.count { self.write(valueAt: base + index) }
            }
        case .map(let entries):
            self.writeMapHeader(entries.count)
            entries.withUnsafeBufferPointer { entries in
                guard let base = entries.baseAddress else { return }
                let valueOffset = Self.mapEntryValueOffset
                for index in 0..<entries.count {
                    let entry = base + index
                    self.write(entry.pointee.key)
                    self.write(valueAt: (UnsafeRawPointer(entry) + valueOffset).assumingMemoryBound(to: MCPValue.self))
                }
            }
        }
    }
}
