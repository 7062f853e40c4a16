/// A structural scan of msgpack bytes, run before msgpack-c parses them.
///
/// msgpack-c allocates `count × 24` bytes for an array the moment it reads the array's header,
/// so five bytes claiming four billion elements would make it ask for 96 GB. This scan proves
/// first that every length and count fits in the bytes that are actually there, that nesting
/// stays under the limit and that there is exactly one top-level value. Only then does msgpack-c
/// run, and its allocations are bounded by a small multiple of the input size.
///
/// On error it names the place: the byte offset and the path of map keys and array indexes.
struct Preflight {
    let bytes: UnsafeRawBufferPointer
    let limits: CodecLimits
    var offset = 0

    /// One open container: how many values it still expects and where we are in it.
    struct Frame {
        var isMap: Bool
        var remainingValues: Int
        var index: Int
        /// The byte range of the current map key, when it is a string (materialized on error).
        var keyStart: Int
        var keyCount: Int
    }

    var stack: [Frame] = []

    init(bytes: UnsafeRawBufferPointer, limits: CodecLimits) {
        self.bytes = bytes
        self.limits = limits
        self.stack.reserveCapacity(8)
    }

    static func check(_ bytes: UnsafeRawBufferPointer, limits: CodecLimits, maxBytes: Int) throws(CodecError) {
        guard bytes.count <= maxBytes else {
            throw CodecError(.tooLarge, path: "$", "input is \(bytes.count) bytes, over the limit of \(maxBytes)")
        }
        guard bytes.count > 0 else { throw CodecError(.truncated, path: "$", offset: 0, "empty input") }
        // The fast scan accepts exactly what the path-tracking scan accepts; it only cannot say
        // where a problem is. Errors are rare, so they pay for the second, slower pass.
        if Self.fastScan(bytes, limits: limits) { return }
        var scan = Preflight(bytes: bytes, limits: limits)
        try scan.run()
        // The slow scan must fail where the fast one did; if not, refuse rather than trust it.
        throw CodecError(.malformed, path: "$", "structural scans disagree")
    }

    /// The same rules as `run()`, as a tight loop over raw bytes with a fixed stack of counts.
    /// Returns false at the first problem.
    static func fastScan(_ bytes: UnsafeRawBufferPointer, limits: CodecLimits) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let end = bytes.count
        let maxDepth = limits.maxDepth
        let maxEntries = limits.maxContainerEntries
        let maxString = limits.maxStringBytes
        let maxBinary = limits.maxBinaryBytes
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: maxDepth + 1) { stack -> Bool in
            var offset = 0
            var depth = 0  // open containers; stack[0] is the top level, expecting one value
            stack[0] = 1

            @inline(__always) func be(_ at: Int, _ width: Int) -> Int {
                var value = 0
                for index in 0..<width { value = value << 8 | Int(base.load(fromByteOffset: at + index, as: UInt8.self)) }
                return value
            }

            while true {
                while stack[depth] == 0 {
                    if depth == 0 { return offset == end }
                    depth -= 1
                }
                stack[depth] -= 1
                guard offset < end else { return false }
                let byte = base.load(fromByteOffset: offset, as: UInt8.self)
                offset += 1
                var containerCount = -1
                var isMap = false
                var skip = 0
                switch byte {
                case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3:
                    continue
                case 0x80...0x8f:
                    containerCount = Int(byte & 0x0f)
                    isMap = true
                case 0x90...0x9f:
                    containerCount = Int(byte & 0x0f)
                case 0xa0...0xbf:
                    skip = Int(byte & 0x1f)
                    guard skip <= maxString else { return false }
                case 0xc1:
                    return false
                case 0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb:
                    let width = byte == 0xc4 || byte == 0xd9 ? 1 : (byte == 0xc5 || byte == 0xda ? 2 : 4)
                    guard end - offset >= width else { return false }
                    skip = be(offset, width)
                    offset += width
                    guard skip <= (byte <= 0xc6 ? maxBinary : maxString) else { return false }
                case 0xc7, 0xc8, 0xc9:
                    let width = byte == 0xc7 ? 1 : (byte == 0xc8 ? 2 : 4)
                    guard end - offset >= width else { return false }
                    skip = be(offset, width) + 1
                    offset += width
                case 0xca, 0xce, 0xd2: skip = 4
                case 0xcb, 0xcf, 0xd3: skip = 8
                case 0xcc, 0xd0: skip = 1
                case 0xcd, 0xd1: skip = 2
                case 0xd4: skip = 2
                case 0xd5: skip = 3
                case 0xd6: skip = 5
                case 0xd7: skip = 9
                case 0xd8: skip = 17
                case 0xdc, 0xde:
                    guard end - offset >= 2 else { return false }
                    containerCount = be(offset, 2)
                    offset += 2
                    isMap = byte == 0xde
                case 0xdd, 0xdf:
                    guard end - offset >= 4 else { return false }
                    containerCount = be(offset, 4)
                    offset += 4
                    isMap = byte == 0xdf
                default:
                    return false
                }
                if containerCount >= 0 {
                    guard depth < maxDepth, containerCount <= maxEntries else { return false }
                    let values = isMap ? containerCount * 2 : containerCount
                    guard values <= end - offset else { return false }
                    if values > 0 {
                        depth += 1
                        stack[depth] = values
                    }
                } else {
                    guard skip <= end - offset else { return false }
                    offset += skip
                }
            }
        }
    }

    mutating func run() throws(CodecError) {
        repeat {
            try self.value()
            // Close every container whose values are all read.
            while let last = self.stack.last, last.remainingValues == 0 {
                self.stack.removeLast()
            }
        } while !self.stack.isEmpty
        guard self.offset == self.bytes.count else {
            throw CodecError(.trailingBytes, path: "$", offset: self.offset, "\(self.bytes.count - self.offset) bytes after the value")
        }
    }

    /// Reads one value's header and payload bytes; opens a frame for containers.
    mutating func value() throws(CodecError) {
        let start = self.offset
        let isKey = self.markValueStart()
        let byte = try self.u8()
        switch byte {
        case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3:
            return
        case 0x80...0x8f:
            try self.open(isMap: true, count: Int(byte & 0x0f), at: start)
        case 0x90...0x9f:
            try self.open(isMap: false, count: Int(byte & 0x0f), at: start)
        case 0xa0...0xbf:
            try self.string(Int(byte & 0x1f), at: start, isKey: isKey)
        case 0xc1:
            throw CodecError(.malformed, path: self.path(), offset: start, "byte 0xc1 is never used by msgpack")
        case 0xc4: try self.binary(Int(try self.u8()), at: start)
        case 0xc5: try self.binary(Int(try self.u16()), at: start)
        case 0xc6: try self.binary(Int(try self.u32()), at: start)
        case 0xc7: try self.skip(Int(try self.u8()) + 1, at: start)  // ext 8: type byte + data
        case 0xc8: try self.skip(Int(try self.u16()) + 1, at: start)
        case 0xc9: try self.skip(Int(try self.u32()) + 1, at: start)
        case 0xca: try self.skip(4, at: start)
        case 0xcb: try self.skip(8, at: start)
        case 0xcc, 0xd0: try self.skip(1, at: start)
        case 0xcd, 0xd1: try self.skip(2, at: start)
        case 0xce, 0xd2: try self.skip(4, at: start)
        case 0xcf, 0xd3: try self.skip(8, at: start)
        case 0xd4: try self.skip(2, at: start)  // fixext 1
        case 0xd5: try self.skip(3, at: start)
        case 0xd6: try self.skip(5, at: start)
        case 0xd7: try self.skip(9, at: start)
        case 0xd8: try self.skip(17, at: start)
        case 0xd9: try self.string(Int(try self.u8()), at: start, isKey: isKey)
        case 0xda: try self.string(Int(try self.u16()), at: start, isKey: isKey)
        case 0xdb: try self.string(Int(try self.u32()), at: start, isKey: isKey)
        case 0xdc: try self.open(isMap: false, count: Int(try self.u16()), at: start)
        case 0xdd: try self.open(isMap: false, count: Int(try self.u32()), at: start)
        case 0xde: try self.open(isMap: true, count: Int(try self.u16()), at: start)
        case 0xdf: try self.open(isMap: true, count: Int(try self.u32()), at: start)
        default:
            preconditionFailure("unreachable msgpack byte \(byte)")
        }
    }

    /// Counts the value against its container; returns whether it is a map key.
    mutating func markValueStart() -> Bool {
        guard !self.stack.isEmpty else { return false }
        let top = self.stack.count - 1
        let isKey = self.stack[top].isMap && self.stack[top].remainingValues % 2 == 0
        if isKey {
            self.stack[top].keyStart = -1
            self.stack[top].keyCount = 0
        }
        if !self.stack[top].isMap { self.stack[top].index += 1 }
        self.stack[top].remainingValues -= 1
        return isKey
    }

    mutating func open(isMap: Bool, count: Int, at start: Int) throws(CodecError) {
        guard self.stack.count < self.limits.maxDepth else {
            throw CodecError(.nestingTooDeep, path: self.path(), offset: start, "nested deeper than \(self.limits.maxDepth)")
        }
        let values = isMap ? count * 2 : count
        // Every value takes at least one byte: a count larger than what is left is a lie, and
        // is reported as truncation before any limit is judged (the input ends too early
        // whatever the limits are).
        guard values <= self.bytes.count - self.offset else {
            throw CodecError(.truncated, path: self.path(), offset: start, "container claims \(count) entries but only \(self.bytes.count - self.offset) bytes remain")
        }
        guard count <= self.limits.maxContainerEntries else {
            throw CodecError(.tooManyEntries, path: self.path(), offset: start, "\(count) entries, over the limit of \(self.limits.maxContainerEntries)")
        }
        if values > 0 {
            self.stack.append(Frame(isMap: isMap, remainingValues: values, index: -1, keyStart: -1, keyCount: 0))
        }
    }

    mutating func string(_ count: Int, at start: Int, isKey: Bool) throws(CodecError) {
        try self.requireRemaining(count, at: start)
        guard count <= self.limits.maxStringBytes else {
            throw CodecError(.stringTooLong, path: self.path(), offset: start, "string of \(count) bytes, over the limit of \(self.limits.maxStringBytes)")
        }
        let body = self.offset
        try self.skip(count, at: start)
        if isKey, let top = self.stack.indices.last {
            self.stack[top].keyStart = body
            self.stack[top].keyCount = count
        }
    }

    mutating func binary(_ count: Int, at start: Int) throws(CodecError) {
        try self.requireRemaining(count, at: start)
        guard count <= self.limits.maxBinaryBytes else {
            throw CodecError(.binaryTooLong, path: self.path(), offset: start, "binary of \(count) bytes, over the limit of \(self.limits.maxBinaryBytes)")
        }
        try self.skip(count, at: start)
    }

    mutating func skip(_ count: Int, at start: Int) throws(CodecError) {
        try self.requireRemaining(count, at: start)
        self.offset += count
    }

    func requireRemaining(_ count: Int, at start: Int) throws(CodecError) {
        guard count <= self.bytes.count - self.offset else {
            throw CodecError(.truncated, path: self.path(), offset: start, "value needs \(count) bytes, \(self.bytes.count - self.offset) remain")
        }
    }

    mutating func u8() throws(CodecError) -> UInt8 {
        guard self.offset < self.bytes.count else {
            throw CodecError(.truncated, path: self.path(), offset: self.offset, "input ends inside a value")
        }
        defer { self.offset += 1 }
        return self.bytes[self.offset]
    }

    mutating func u16() throws(CodecError) -> UInt16 {
        let high = UInt16(try self.u8())
        return high << 8 | UInt16(try self.u8())
    }

    mutating func u32() throws(CodecError) -> UInt32 {
        let high = UInt32(try self.u16())
        return high << 16 | UInt32(try self.u16())
    }

    /// `payload.task.parameters.x[3]`-style path of the value being read.
    func path() -> String {
        var path = "$"
        for frame in self.stack {
            if frame.isMap {
                if frame.keyStart >= 0 {
                    let key = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[frame.keyStart..<(frame.keyStart + frame.keyCount)]), as: UTF8.self)
                    path = path == "$" ? key : path + "." + key
                } else {
                    path += "{key}"
                }
            } else {
                path += "[\(max(frame.index, 0))]"
            }
        }
        return path
    }
}
