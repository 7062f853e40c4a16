/// What a msgpack value is, named as msgpack-c names its object types, because the decoder's
/// rules were written against those: a signed integer that is not negative is a
/// `positiveInteger` (msgpack-c reads `int8 5` as positive), a float 32 keeps a type of its own
/// and carries its value widened to a double.
enum MsgPackKind: UInt8 {
    case nil_
    case boolean
    case positiveInteger
    case negativeInteger
    case float32
    case float64
    case string
    case binary
    case array
    case map
    case ext
}

/// Input that the structural scan (`Preflight`) accepted, parsed into a flat list of values in
/// input order: a container is followed by its contents (a map by key, value, key, value, …),
/// and each value knows the index of the value after it and everything inside it, so a reader
/// steps from one map pair to the next without walking the values it does not read.
///
/// Why not msgpack-c's object tree: building the tree cost more than everything the decoder
/// does with it, and the list lives in one buffer reused for every input (no allocation once
/// it has grown to the largest input's size). It reads exactly what msgpack-c reads: every
/// input the scan accepts is one well-formed value within the limits (nesting under msgpack-c's
/// own 32), which msgpack-c always parses, and the types and values are msgpack-c's (see
/// `MsgPackKind`); the tests compare the two on generated and hand-made inputs.
///
/// Not thread-safe: one per decoder. Objects read from it are valid until the next `parse` and
/// only while the input bytes live (strings and binaries point into them, as msgpack-c's do).
final class MsgPackTape {
    struct Node {
        var kind: MsgPackKind
        /// An extension's type byte.
        var extType: Int8
        /// String, binary, extension: where the data starts in the input.
        var start: Int
        /// String, binary, extension: data bytes; array: elements; map: pairs.
        var count: Int
        /// Boolean (0 or 1), integers (two's complement), floats (the double's bit pattern).
        var bits: UInt64
        /// The index of the node after this value and everything inside it.
        var next: Int
    }

    private(set) var nodes: UnsafeMutablePointer<Node>
    private var capacity: Int
    private var count = 0

    init(initialCapacity: Int = 256) {
        self.capacity = max(16, initialCapacity)
        self.nodes = .allocate(capacity: self.capacity)
    }

    deinit { self.nodes.deallocate() }

    /// msgpack-c's limit on open containers (`MSGPACK_EMBED_STACK_SIZE`). `CodecLimits` keeps
    /// its depth under it, but a limit set field by field can pass it; the input is then
    /// refused with the error msgpack-c's refusal gave.
    static let maxOpenContainers = 32

    /// Parses `bytes`, which `Preflight` must have accepted. The result is the top-level value.
    func parse(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> MsgPackObject {
        precondition(!bytes.isEmpty, "the structural scan refuses empty input")
        let base = bytes.baseAddress!
        let end = bytes.count
        self.count = 0
        // Open containers: the node index of each, and how many values it still expects; slot
        // 0 is the top level.
        let tooDeep = withUnsafeTemporaryAllocation(of: (node: Int, remaining: Int).self, capacity: Self.maxOpenContainers + 1) { stack -> Bool in
            var depth = 0
            stack[0] = (-1, 1)
            var offset = 0

            @inline(__always) func load<T: FixedWidthInteger>(_ type: T.Type) -> T {
                precondition(offset + MemoryLayout<T>.size <= end, "input shorter than the scan found it")
                let value = T(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
                offset += MemoryLayout<T>.size
                return value
            }

            while true {
                while stack[depth].remaining == 0 {
                    if depth == 0 { return false }
                    self.nodes[stack[depth].node].next = self.count
                    depth -= 1
                }
                stack[depth].remaining -= 1
                precondition(offset < end, "input shorter than the scan found it")
                let byte = base.load(fromByteOffset: offset, as: UInt8.self)
                offset += 1
                var kind = MsgPackKind.nil_
                var bits: UInt64 = 0
                var data = 0  // bytes of string, binary or extension data that follow
                var entries = -1  // a container's count
                var extType: Int8 = 0
                switch byte {
                case 0x00...0x7f:
                    kind = .positiveInteger
                    bits = UInt64(byte)
                case 0xe0...0xff:
                    kind = .negativeInteger
                    bits = UInt64(bitPattern: Int64(Int8(bitPattern: byte)))
                case 0x80...0x8f:
                    kind = .map
                    entries = Int(byte & 0x0f)
                case 0x90...0x9f:
                    kind = .array
                    entries = Int(byte & 0x0f)
                case 0xa0...0xbf:
                    kind = .string
                    data = Int(byte & 0x1f)
                case 0xc0:
                    kind = .nil_
                case 0xc2, 0xc3:
                    kind = .boolean
                    bits = byte == 0xc3 ? 1 : 0
                case 0xc4:
                    kind = .binary
                    data = Int(load(UInt8.self))
                case 0xc5:
                    kind = .binary
                    data = Int(load(UInt16.self))
                case 0xc6:
                    kind = .binary
                    data = Int(load(UInt32.self))
                case 0xc7, 0xc8, 0xc9:
                    kind = .ext
                    data = byte == 0xc7 ? Int(load(UInt8.self)) : (byte == 0xc8 ? Int(load(UInt16.self)) : Int(load(UInt32.self)))
                    extType = Int8(bitPattern: load(UInt8.self))
                case 0xca:
                    kind = .float32
                    bits = Double(Float(bitPattern: load(UInt32.self))).bitPattern
                case 0xcb:
                    kind = .float64
                    bits = load(UInt64.self)
                case 0xcc:
                    kind = .positiveInteger
                    bits = UInt64(load(UInt8.self))
                case 0xcd:
                    kind = .positiveInteger
                    bits = UInt64(load(UInt16.self))
                case 0xce:
                    kind = .positiveInteger
                    bits = UInt64(load(UInt32.self))
                case 0xcf:
                    kind = .positiveInteger
                    bits = load(UInt64.self)
                case 0xd0, 0xd1, 0xd2, 0xd3:
                    let value: Int64 =
                        switch byte {
                        case 0xd0: Int64(Int8(bitPattern: load(UInt8.self)))
                        case 0xd1: Int64(Int16(bitPattern: load(UInt16.self)))
                        case 0xd2: Int64(Int32(bitPattern: load(UInt32.self)))
                        default: Int64(bitPattern: load(UInt64.self))
                        }
                    kind = value < 0 ? .negativeInteger : .positiveInteger
                    bits = UInt64(bitPattern: value)
                case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
                    kind = .ext
                    extType = Int8(bitPattern: load(UInt8.self))
                    data = 1 << Int(byte - 0xd4)
                case 0xd9:
                    kind = .string
                    data = Int(load(UInt8.self))
                case 0xda:
                    kind = .string
                    data = Int(load(UInt16.self))
                case 0xdb:
                    kind = .string
                    data = Int(load(UInt32.self))
                case 0xdc:
                    kind = .array
                    entries = Int(load(UInt16.self))
                case 0xdd:
                    kind = .array
                    entries = Int(load(UInt32.self))
                case 0xde:
                    kind = .map
                    entries = Int(load(UInt16.self))
                case 0xdf:
                    kind = .map
                    entries = Int(load(UInt32.self))
                default:
                    preconditionFailure("byte 0x\(String(byte, radix: 16)), which the structural scan refuses")
                }
                if self.count == self.capacity { self.grow() }
                let index = self.count
                self.count += 1
                if entries >= 0 {
                    self.nodes[index] = Node(kind: kind, extType: 0, start: offset, count: entries, bits: 0, next: index + 1)
                    let values = kind == .map ? entries * 2 : entries
                    if values > 0 {
                        guard depth < Self.maxOpenContainers else { return true }
                        depth += 1
                        stack[depth] = (index, values)
                    }
                } else {
                    precondition(data <= end - offset, "input shorter than the scan found it")
                    self.nodes[index] = Node(kind: kind, extType: extType, start: offset, count: data, bits: bits, next: index + 1)
                    offset += data
                }
            }
        }
        guard !tooDeep else {
            throw CodecError(.outOfMemory, path: "$", "nested deeper than \(Self.maxOpenContainers) containers, msgpack-c's limit")
        }
        return MsgPackObject(tape: UnsafePointer(self.nodes), base: base, index: 0)
    }

    private func grow() {
        let capacity = self.capacity * 2
        let nodes = UnsafeMutablePointer<Node>.allocate(capacity: capacity)
        nodes.moveInitialize(from: self.nodes, count: self.count)
        self.nodes.deallocate()
        self.nodes = nodes
        self.capacity = capacity
    }
}

/// One value of a `MsgPackTape`: what `ObjectReader` reads. Valid while the tape and the input
/// are (see `MsgPackTape`).
struct MsgPackObject {
    let tape: UnsafePointer<MsgPackTape.Node>
    let base: UnsafeRawPointer
    let index: Int

    @inline(__always) var kind: MsgPackKind { self.tape[self.index].kind }
    @inline(__always) var boolean: Bool { self.tape[self.index].bits != 0 }
    @inline(__always) var u64: UInt64 { self.tape[self.index].bits }
    @inline(__always) var i64: Int64 { Int64(bitPattern: self.tape[self.index].bits) }
    @inline(__always) var f64: Double { Double(bitPattern: self.tape[self.index].bits) }
    @inline(__always) var extType: Int8 { self.tape[self.index].extType }
    /// Elements of an array, pairs of a map.
    @inline(__always) var count: Int { self.tape[self.index].count }

    /// A string's or a binary's bytes (in the input).
    @inline(__always) var bytes: UnsafeRawBufferPointer {
        let node = self.tape[self.index]
        return UnsafeRawBufferPointer(start: self.base + node.start, count: node.count)
    }

    /// A map's pairs, in input order.
    @inline(__always) var pairs: Pairs {
        Pairs(tape: self.tape, base: self.base, at: self.index + 1, remaining: self.tape[self.index].count)
    }

    /// An array's elements, in order.
    @inline(__always) var items: Items {
        Items(tape: self.tape, base: self.base, at: self.index + 1, remaining: self.tape[self.index].count)
    }

    struct Pairs: Sequence, IteratorProtocol {
        let tape: UnsafePointer<MsgPackTape.Node>
        let base: UnsafeRawPointer
        var at: Int
        var remaining: Int

        @inline(__always)
        mutating func next() -> (key: MsgPackObject, val: MsgPackObject)? {
            guard self.remaining > 0 else { return nil }
            self.remaining -= 1
            let key = self.at
            let value = self.tape[key].next
            self.at = self.tape[value].next
            return (MsgPackObject(tape: self.tape, base: self.base, index: key), MsgPackObject(tape: self.tape, base: self.base, index: value))
        }
    }

    struct Items: Sequence, IteratorProtocol {
        let tape: UnsafePointer<MsgPackTape.Node>
        let base: UnsafeRawPointer
        var at: Int
        var remaining: Int

        @inline(__always)
        mutating func next() -> MsgPackObject? {
            guard self.remaining > 0 else { return nil }
            self.remaining -= 1
            let item = self.at
            self.at = self.tape[item].next
            return MsgPackObject(tape: self.tape, base: self.base, index: item)
        }
    }
}
