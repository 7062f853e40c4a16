import CartritaEnvelope
import CartritaRuntime

/// TaskManagement's snapshot format, version 1, written by hand so that the bytes are fixed by
/// this file alone (no Codable, no Foundation, nothing whose output could change underneath).
///
/// ```
/// magic   "CTMS" (4 bytes)            Cartrita Task Management State
/// version 0x01
/// flags   1 byte: bit 0 = lastCreatedSeq present; other bits 0
/// [varint lastCreatedSeq]
/// varint  task count
/// per task:
///   varint seq
///   string title, string description      (varint byte length, then UTF-8)
///   byte   priority (0 low, 1 normal, 2 high, 3 critical)
///   byte   status   (0 open, 1 in_progress, 2 done)
///   zigzag varint created_ms, updated_ms
///   byte   due present (0/1) [zigzag varint due_ms]
///   varint tag count, then each tag as a string
/// checksum: FNV-1a 64 of all bytes before it, 8 bytes big-endian
/// ```
/// Varints are unsigned LEB128 in minimal form. Decoding checks the checksum first (any single
/// changed byte changes FNV-1a, whose every step is a bijection of its state), then reads with
/// bounds checks, never allocating more than the input could hold, and finally checks the
/// invariants `TaskManagement` relies on. Any failure is a `StateDecodingError`, never a trap.
enum TaskStateCodec {
    static let magic: [UInt8] = Array("CTMS".utf8)
    static let version: UInt8 = 1
    static let priorities: [Priority] = [.low, .normal, .high, .critical]
    static let statuses: [TaskItem.Status] = [.open, .inProgress, .done]

    static func encode(_ state: TaskListState) -> [UInt8] {
        var out = Self.magic
        out.append(Self.version)
        out.append(state.lastCreatedSeq == nil ? 0 : 1)
        if let last = state.lastCreatedSeq { Self.putVarint(last, &out) }
        Self.putVarint(UInt64(state.tasks.count), &out)
        for item in state.tasks {
            Self.putVarint(item.seq, &out)
            Self.putString(item.title, &out)
            Self.putString(item.description, &out)
            out.append(UInt8(Self.priorities.firstIndex(of: item.priority)!))
            out.append(UInt8(Self.statuses.firstIndex(of: item.status)!))
            Self.putVarint(Self.zigzag(item.createdMilliseconds), &out)
            Self.putVarint(Self.zigzag(item.updatedMilliseconds), &out)
            if let due = item.dueMilliseconds {
                out.append(1)
                Self.putVarint(Self.zigzag(due), &out)
            } else {
                out.append(0)
            }
            Self.putVarint(UInt64(item.tags.count), &out)
            for tag in item.tags { Self.putString(tag, &out) }
        }
        let checksum = Self.fnv1a(out[...])
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: checksum >> UInt64(shift))) }
        return out
    }

    static func decode(_ bytes: [UInt8]) throws(StateDecodingError) -> TaskListState {
        let headerSize = Self.magic.count + 2
        guard bytes.count >= headerSize + 1 + 8 else { throw StateDecodingError("task state: too short (\(bytes.count) bytes)") }
        guard bytes.starts(with: Self.magic) else { throw StateDecodingError("task state: bad magic") }
        guard bytes[Self.magic.count] == Self.version else {
            throw StateDecodingError("task state: format version \(bytes[Self.magic.count]), expected \(Self.version)")
        }
        let body = bytes[..<(bytes.count - 8)]
        var stored: UInt64 = 0
        for byte in bytes[(bytes.count - 8)...] { stored = stored << 8 | UInt64(byte) }
        guard stored == Self.fnv1a(body) else { throw StateDecodingError("task state: checksum mismatch (truncated or corrupt)") }

        var reader = Reader(bytes: body, position: Self.magic.count + 1)
        var state = TaskListState()
        let flags = try reader.byte()
        guard flags <= 1 else { throw StateDecodingError("task state: unknown flags \(flags)") }
        if flags == 1 { state.lastCreatedSeq = try reader.varint() }
        // Every task takes at least 9 bytes, so the count cannot promise more than the input holds.
        let count = try reader.count(minimumBytesEach: 9)
        guard count <= TaskManagement.maxTasks else { throw StateDecodingError("task state: \(count) tasks, over the limit") }
        state.tasks.reserveCapacity(count)
        for _ in 0..<count {
            let seq = try reader.varint()
            let title = try reader.string()
            let description = try reader.string()
            let priority = try reader.byte()
            let status = try reader.byte()
            guard priority < 4, status < 3 else { throw StateDecodingError("task state: bad priority or status") }
            let created = Self.unzigzag(try reader.varint())
            let updated = Self.unzigzag(try reader.varint())
            let hasDue = try reader.byte()
            guard hasDue <= 1 else { throw StateDecodingError("task state: bad due flag") }
            let due = hasDue == 1 ? Self.unzigzag(try reader.varint()) : nil
            var tags: [String] = []
            for _ in 0..<(try reader.count(minimumBytesEach: 1)) { tags.append(try reader.string()) }
            guard state.tasks.last.map({ $0.seq < seq }) ?? true, let last = state.lastCreatedSeq, seq <= last else {
                throw StateDecodingError("task state: task seqs out of order")
            }
            for index in tags.indices.dropFirst() where !tags[index - 1].utf8.lexicographicallyPrecedes(tags[index].utf8) {
                throw StateDecodingError("task state: tags not sorted and unique")
            }
            state.tasks.append(TaskItem(
                seq: seq, title: title, description: description, priority: Self.priorities[Int(priority)],
                status: Self.statuses[Int(status)], createdMilliseconds: created, updatedMilliseconds: updated,
                dueMilliseconds: due, tags: tags))
        }
        guard reader.position == body.endIndex else { throw StateDecodingError("task state: trailing bytes") }
        return state
    }

    // MARK: Primitives

    struct Reader {
        let bytes: ArraySlice<UInt8>
        var position: Int

        mutating func byte() throws(StateDecodingError) -> UInt8 {
            guard self.position < self.bytes.endIndex else { throw StateDecodingError("task state: truncated") }
            defer { self.position += 1 }
            return self.bytes[self.position]
        }

        /// Minimal unsigned LEB128, at most 10 bytes, no bits beyond 64.
        mutating func varint() throws(StateDecodingError) -> UInt64 {
            var value: UInt64 = 0
            for index in 0..<10 {
                let byte = try self.byte()
                let payload = UInt64(byte & 0x7F)
                guard index < 9 || payload <= 1 else { throw StateDecodingError("task state: varint overflows 64 bits") }
                value |= payload << UInt64(7 * index)
                if byte & 0x80 == 0 {
                    guard byte != 0 || index == 0 else { throw StateDecodingError("task state: varint not minimal") }
                    return value
                }
            }
            throw StateDecodingError("task state: varint too long")
        }

        mutating func count(minimumBytesEach: Int) throws(StateDecodingError) -> Int {
            let count = try self.varint()
            guard count <= UInt64(self.bytes.endIndex - self.position) / UInt64(minimumBytesEach) else {
                throw StateDecodingError("task state: a count of \(count) exceeds the remaining bytes")
            }
            return Int(count)
        }

        mutating func string() throws(StateDecodingError) -> String {
            let length = try self.count(minimumBytesEach: 1)
            let end = self.position + length
            guard let text = String(validating: self.bytes[self.position..<end], as: UTF8.self) else {
                throw StateDecodingError("task state: a string is not valid UTF-8")
            }
            self.position = end
            return text
        }
    }

    static func putVarint(_ value: UInt64, _ out: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        out.append(UInt8(rest))
    }

    static func putString(_ text: String, _ out: inout [UInt8]) {
        Self.putVarint(UInt64(text.utf8.count), &out)
        out.append(contentsOf: text.utf8)
    }

    static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }
    static func unzigzag(_ value: UInt64) -> Int64 { Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1) }

    static func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }
}
