import CartritaEnvelope

/// The msgpack bytes of recently written task results, found again by the identity of the
/// result's storage. An agent's answer travels up the hierarchy unchanged (agent → supervisor →
/// orchestrator → client: each forwards the payload it got), so a caller that encodes every
/// delivery, as the simulator's trace digest does, wrote the same result tree three times; now
/// it writes it once and copies its bytes twice.
///
/// A result is found by the address of its top-level array buffer, and the cache holds that
/// array, so the buffer stays alive and its address cannot be reused by another array while the
/// entry exists. A buffer shared with the cache is never written in place (copy-on-write sees
/// the second reference and copies first), so equal addresses mean equal contents, and the
/// bytes are exactly what writing the value would give. The slot is chosen from the address:
/// that decides only whether the copy is found, never what is written.
///
/// Not thread-safe: it belongs to one `EnvelopeEncoder`.
final class ResultBytes {
    /// Direct-mapped, and large enough that an answer is still there when the next tier
    /// forwards it: a simulation with thousands of tasks in flight writes hundreds of other
    /// results in between (with 256 slots most were evicted first). The arrays it keeps alive
    /// are also held by the simulation's log, so the cost is the bytes: at most
    /// `slotCount` × `maximumBytes`.
    static let slotCount = 4_096
    /// Smaller results are written as they are: looking them up would cost about as much.
    static let minimumBytes = 48
    /// Larger ones too (an I/O answer carrying a file): copying their bytes is all writing them
    /// costs, and they are written once.
    static let maximumBytes = 4_096

    /// Per slot: the address of the kept array's buffer (0: empty), the array itself (which
    /// keeps that buffer alive, so the address stands for it alone), and its bytes. Separate
    /// arrays so a lookup compares an integer instead of copying a slot out (two retains).
    private var addresses = [UInt](repeating: 0, count: ResultBytes.slotCount)
    private var entries = [[MCPValue.MapEntry]](repeating: [], count: ResultBytes.slotCount)
    private var bytes = [[UInt8]](repeating: [], count: ResultBytes.slotCount)

    func write(_ value: MCPValue, to writer: MsgPackWriter) {
        // Only maps with entries: an empty array's storage is shared by every empty array.
        guard case .map(let entries) = value, !entries.isEmpty else {
            writer.write(value)
            return
        }
        let address = entries.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let index = Int((address >> 4) ^ (address >> 16)) & (Self.slotCount - 1)
        if self.addresses[index] == address {
            self.bytes[index].withUnsafeBytes { writer.writeRaw($0) }
            return
        }
        let start = writer.count
        writer.write(value)
        let length = writer.count - start
        guard length >= Self.minimumBytes && length <= Self.maximumBytes else { return }
        self.bytes[index] = writer.withBytes { [UInt8](UnsafeRawBufferPointer(rebasing: $0[start..<(start + length)])) }
        self.entries[index] = entries
        self.addresses[index] = address
    }
}
