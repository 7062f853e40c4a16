#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CMsgPack
import CartritaEnvelope

/// Writes msgpack through msgpack-c's packer into a growable buffer that is reused between
/// messages (clear, not free), so a steady stream of encodes allocates nothing.
///
/// Not thread-safe: one writer per thread or task.
public final class MsgPackWriter {
    let buffer: UnsafeMutablePointer<msgpack_sbuffer>
    let packer: UnsafeMutablePointer<msgpack_packer>

    public init(initialCapacityBytes: Int = 4096) {
        self.buffer = .allocate(capacity: 1)
        self.packer = .allocate(capacity: 1)
        msgpack_sbuffer_init(self.buffer)
        // Pre-size the buffer so the first messages do not realloc step by step.
        if let memory = malloc(initialCapacityBytes) {
            self.buffer.pointee.data = memory.assumingMemoryBound(to: CChar.self)
            self.buffer.pointee.alloc = initialCapacityBytes
        }
        msgpack_packer_init(self.packer, self.buffer, msgpack_sbuffer_write)
    }

    deinit {
        msgpack_sbuffer_destroy(self.buffer)
        self.buffer.deallocate()
        self.packer.deallocate()
    }

    public var count: Int { self.buffer.pointee.size }

    public func reset() { msgpack_sbuffer_clear(self.buffer) }

    /// The bytes written so far; valid until the next write or reset.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: self.buffer.pointee.data, count: self.buffer.pointee.size))
    }

    public var bytes: [UInt8] { self.withBytes { [UInt8]($0) } }

    // MARK: Primitive writes. msgpack-c's sbuffer only fails when malloc fails; that is fatal.

    @inline(__always) func check(_ result: Int32) {
        precondition(result == 0, "msgpack-c could not grow its buffer (out of memory)")
    }

    public func writeNil() { self.check(msgpack_pack_nil(self.packer)) }
    public func write(_ value: Bool) { self.check(value ? msgpack_pack_true(self.packer) : msgpack_pack_false(self.packer)) }
    public func write(_ value: Int64) { self.check(msgpack_pack_int64(self.packer, value)) }
    public func write(_ value: UInt64) { self.check(msgpack_pack_uint64(self.packer, value)) }
    public func write(_ value: Double) { self.check(msgpack_pack_double(self.packer, value)) }
    public func write(_ value: Float) { self.check(msgpack_pack_float(self.packer, value)) }
    public func writeMapHeader(_ count: Int) { self.check(msgpack_pack_map(self.packer, count)) }
    public func writeArrayHeader(_ count: Int) { self.check(msgpack_pack_array(self.packer, count)) }

    public func write(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            self.check(msgpack_pack_str_with_body(self.packer, utf8.baseAddress, utf8.count))
        }
    }

    /// A key known at compile time (field names).
    public func writeKey(_ key: StaticString) {
        self.check(msgpack_pack_str_with_body(self.packer, key.utf8Start, key.utf8CodeUnitCount))
    }

    public func writeBinary(_ bytes: UnsafeRawBufferPointer) {
        self.check(msgpack_pack_bin_with_body(self.packer, bytes.baseAddress, bytes.count))
    }

    public func writeBinary(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { self.writeBinary($0) }
    }

    public func write(_ id: MessageID) {
        id.withBytes { self.writeBinary($0) }
    }

    /// Bytes that are already msgpack (a pre-encoded envelope body), copied as they are.
    public func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        self.check(msgpack_sbuffer_write(self.buffer, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count))
    }

    public func write(_ value: MCPValue) {
        switch value {
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
            for item in items { self.write(item) }
        case .map(let entries):
            self.writeMapHeader(entries.count)
            for entry in entries {
                self.write(entry.key)
                self.write(entry.value)
            }
        }
    }
}
