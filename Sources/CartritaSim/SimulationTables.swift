import CartritaCodec
import CartritaEnvelope
import CartritaNode
import CartritaRuntime
import Crypto

// MARK: - Tables of the simulator's hot path
//
// The simulator delivers one message at a time, hundreds of thousands a second, and each
// delivery used to pass through several `Dictionary` lookups: every one pays Swift's per-process
// SipHash seed and finalisation, and a `String` key hashes its bytes too. These tables do the
// same jobs with integer positions and a fixed mixing function. None is ever iterated in hash
// order, so behaviour cannot depend on the hashing (and a fixed hash makes that easy to see).

/// Message id → seq: the LMDB simulation log's id index (the exactly_once dedupe, known before
/// the batch commits), and a per-task counter (`increment`: the client's answers), with open
/// addressing and linear probing. (The in-memory log, which holds the ids in its records,
/// uses the denser `RecordIDTable`.) The ids of a run are UUIDv7 with random low bits, but the hash
/// mixes both halves, so derived or hand-made ids only make it slower, never wrong.
/// Slots for an open-addressing table of at least `minimumCapacity` entries kept at most half
/// full: a power of two (the bucket is a mask of the hash), at least 16.
func openAddressingCapacity(_ minimumCapacity: Int) -> Int {
    var capacity = 16
    while capacity < minimumCapacity * 2 { capacity <<= 1 }
    return capacity
}

struct MessageSeqTable {
    struct Slot {
        var high: UInt64
        var low: UInt64
        /// 0: empty (seqs start at 1).
        var seq: UInt64
    }

    private(set) var count = 0
    private var slots: [Slot]
    private var mask: Int

    /// At most half full, so a probe ends within a few slots.
    init(minimumCapacity: Int = 1_024) {
        let capacity = openAddressingCapacity(minimumCapacity)
        self.slots = Array(repeating: Slot(high: 0, low: 0, seq: 0), count: capacity)
        self.mask = capacity - 1
    }

    /// A fixed 64-bit mix (the SplitMix64 / murmur3 finaliser) of both halves: the same in every
    /// process, and the table is never iterated, so its layout decides nothing.
    @inline(__always)
    static func bucket(_ high: UInt64, _ low: UInt64, mask: Int) -> Int {
        var x = high &* 0x9E37_79B9_7F4A_7C15 ^ low
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        return Int(truncatingIfNeeded: x) & mask
    }

    func seq(of id: MessageID) -> UInt64? {
        var index = Self.bucket(id.high, id.low, mask: self.mask)
        while true {
            let slot = self.slots[index]
            if slot.seq == 0 { return nil }
            if slot.high == id.high && slot.low == id.low { return slot.seq }
            index = (index + 1) & self.mask
        }
    }

    /// Inserts `id` → `seq` unless `id` is present; false (and nothing changes) when it is.
    mutating func insert(_ id: MessageID, seq: UInt64) -> Bool {
        precondition(seq != 0, "seq 0 marks an empty slot")
        if (self.count + 1) * 2 > self.slots.count { self.grow() }
        var index = Self.bucket(id.high, id.low, mask: self.mask)
        while true {
            let slot = self.slots[index]
            if slot.seq == 0 {
                self.slots[index] = Slot(high: id.high, low: id.low, seq: seq)
                self.count += 1
                return true
            }
            if slot.high == id.high && slot.low == id.low { return false }
            index = (index + 1) & self.mask
        }
    }

    /// Removes `id` (a power loss takes the tail of the log). Backward-shift deletion: entries
    /// after the hole that would no longer be found move into it, so no tombstones pile up.
    mutating func remove(_ id: MessageID) {
        var hole = Self.bucket(id.high, id.low, mask: self.mask)
        while true {
            let slot = self.slots[hole]
            if slot.seq == 0 { return }
            if slot.high == id.high && slot.low == id.low { break }
            hole = (hole + 1) & self.mask
        }
        var next = hole
        while true {
            next = (next + 1) & self.mask
            let slot = self.slots[next]
            if slot.seq == 0 { break }
            let home = Self.bucket(slot.high, slot.low, mask: self.mask)
            // The entry at `next` may fill the hole when its home is not within (hole, next]
            // (cyclically): from its home, a probe passes the hole before reaching `next`.
            let homeWithin = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeWithin {
                self.slots[hole] = slot
                hole = next
            }
        }
        self.slots[hole] = Slot(high: 0, low: 0, seq: 0)
        self.count -= 1
    }

    /// Adds one to the value kept for `id` (absent: 0) and returns it: the table as a counter
    /// (the client's answers per task), with the same fixed hash.
    mutating func increment(_ id: MessageID) -> UInt64 {
        if (self.count + 1) * 2 > self.slots.count { self.grow() }
        var index = Self.bucket(id.high, id.low, mask: self.mask)
        while true {
            let slot = self.slots[index]
            if slot.seq == 0 {
                self.slots[index] = Slot(high: id.high, low: id.low, seq: 1)
                self.count += 1
                return 1
            }
            if slot.high == id.high && slot.low == id.low {
                self.slots[index].seq += 1
                return slot.seq + 1
            }
            index = (index + 1) & self.mask
        }
    }

    private mutating func grow() {
        let old = self.slots
        let capacity = old.count * 2
        self.slots = Array(repeating: Slot(high: 0, low: 0, seq: 0), count: capacity)
        self.mask = capacity - 1
        self.count = 0
        for slot in old where slot.seq != 0 {
            _ = self.insert(MessageID(high: slot.high, low: slot.low), seq: slot.seq)
        }
    }
}

// MARK: - A cell's mailbox, as the simulator keeps it

/// The runtime's `Mailbox` order (critical, high, normal, low; FIFO within one priority) for
/// envelopes only: a concrete type in this module, so the per-delivery push and pop compile to
/// plain array operations instead of the generic, cross-module `Mailbox<Item>` path with its
/// metadata lookups. The simulator never refuses mail (a full mailbox is production's
/// back-pressure, which the simulation does not model), so the bound is a broken-run trap.
struct SimMailbox {
    /// Far above what any run queues (a run is at most `maxDeliveries` deliveries); reaching it
    /// means the run is broken (a message loop), and stopping beats eating the machine's memory.
    static let maxQueued = 1 << 24

    private(set) var count = 0
    /// By `Priority.rank`: 0 low … 3 critical; `heads[rank]` is the first unread element. Read
    /// elements are nil: `pop` moves each envelope out of its slot (`take`) instead of copying
    /// it, which cost a retain per delivery and a release when the queue was emptied.
    private var queues: [[Envelope?]] = [[], [], [], []]
    private var heads: [Int] = [0, 0, 0, 0]

    var isEmpty: Bool { self.count == 0 }

    /// Consuming, as `ArrivalQueue.push`: the arriving message moves into the queue.
    mutating func push(_ envelope: consuming Envelope) {
        precondition(self.count < Self.maxQueued, "a simulated mailbox holds \(Self.maxQueued) messages: the run is looping")
        self.queues[envelope.priority.rank].append(envelope)
        self.count += 1
    }

    /// The oldest message of the highest priority present.
    mutating func pop() -> Envelope? {
        guard self.count > 0 else { return nil }
        var rank = 3
        while rank >= 0 {
            let head = self.heads[rank]
            if head < self.queues[rank].count {
                let envelope = self.queues[rank][head].take()
                self.count -= 1
                if head + 1 == self.queues[rank].count {
                    self.queues[rank].removeAll(keepingCapacity: true)
                    self.heads[rank] = 0
                } else if head + 1 > 64 && (head + 1) * 2 > self.queues[rank].count {
                    // Compact once the read prefix outweighs the rest: each message moves O(1) times.
                    self.queues[rank].removeFirst(head + 1)
                    self.heads[rank] = 0
                } else {
                    self.heads[rank] = head + 1
                }
                return envelope
            }
            rank -= 1
        }
        return nil
    }
}

// MARK: - Fault sets

extension Simulation.Fault {
    /// The fault's position in `allCases`: its bit in a `FaultSet` and its counter.
    var ordinal: Int {
        switch self {
        case .crash: 0
        case .delay: 1
        case .duplicate: 2
        case .drop: 3
        case .agentCrash: 4
        case .clock: 5
        case .storage: 6
        case .restartStorm: 7
        case .tailLoss: 8
        case .buggify: 9
        case .io: 10
        }
    }
}

/// The faults in force, as bits: the run loop asks several times per delivery, and a
/// `Set<Fault>` lookup hashes each time.
struct FaultSet {
    private var bits: UInt32 = 0

    init() {}

    init(_ faults: Set<Simulation.Fault>) {
        for fault in faults { self.bits |= 1 << fault.ordinal }
    }

    func contains(_ fault: Simulation.Fault) -> Bool { self.bits & (1 << fault.ordinal) != 0 }
}

// MARK: - The trace digest's input

/// SHA-256 over the run's trace, fed in large chunks: each delivery adds a few small pieces
/// (seq, clock, the envelope's bytes, the ids it sent), and each `update` call has a fixed cost
/// of its own. SHA-256 is a stream, so the digest of the concatenation is the same whatever the
/// chunking: buffering changes no digest.
///
/// The buffer is the envelope encoder's own: envelopes are encoded straight into it, after the
/// framing before them, instead of being encoded into a scratch buffer and copied here. A class
/// (one per simulation, never copied): the encoder is shared state, and a struct holding it
/// would only look like a value.
final class TraceDigest {
    /// Hashed and emptied once it holds this much: small enough to stay in cache, large enough
    /// to amortise each call. It holds at most this plus one piece (one envelope).
    static let bufferBytes = 16 * 1_024

    // Unchecked: a class's stored property otherwise pays a dynamic exclusivity check on every
    // access, several per delivery. The simulation runs on one thread, and nothing hands out an
    // inout reference to it.
    @exclusivity(unchecked) private var hash = SHA256()
    /// Reuses the bytes of results it wrote before: an answer is traced at each tier it passes.
    private let encoder = EnvelopeEncoder(initialCapacityBytes: TraceDigest.bufferBytes + 4_096, reusesResultBytes: true)
    private var writer: MsgPackWriter { self.encoder.writer }

    init() {}

    func add(_ value: UInt64) {
        self.writer.writeRawBigEndian(value)
        self.flushIfFull()
    }

    func add(_ id: MessageID) {
        self.writer.writeRaw(id)
        self.flushIfFull()
    }

    /// The envelope's canonical bytes (`EnvelopeEncoder.encode`), encoded in place.
    func add(_ envelope: Envelope) {
        self.encoder.append(envelope)
        self.flushIfFull()
    }

    func add(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > Self.bufferBytes {
            self.flush()
            self.hash.update(bufferPointer: bytes)  // a large piece: no copy
        } else {
            self.writer.writeRaw(bytes)
            self.flushIfFull()
        }
    }

    @inline(__always)
    private func flushIfFull() {
        if self.writer.count >= Self.bufferBytes { self.flush() }
    }

    private func flush() {
        guard self.writer.count > 0 else { return }
        self.writer.withBytes { self.hash.update(bufferPointer: $0) }
        self.writer.reset()
    }

    /// The digest of everything added so far, in hex.
    func finalize() -> String {
        self.flush()
        return Hex.encode(Array(self.hash.finalize()))
    }
}

// MARK: - Snapshots, written into reused buffers

/// `NodeSnapshot(state: cell.snapshotBytes(), owed: owed).encode()`, byte for byte (a test
/// compares them), written into buffers the simulation keeps. The node's wrapper makes a new
/// encoder, a new array per owed message, a value tree, and a new buffer the size of the
/// state, and copies the state twice on the way; with snapshots every thousand deliveries and
/// an orchestrator holding thousands of pending requests, those fresh pages (faulted in each
/// time) and copies were most of what a snapshot cost.
///
/// The format is `NodeSnapshot`'s: a map of `format` ("cartrita.node-snapshot"), `v` (1),
/// `state` (bin: the cell's state bytes) and `owed` (an array of bin: each message's canonical
/// bytes; one the codec would refuse as too large is left out, as `encode`'s `try?` leaves it).
final class SnapshotEncoder {

    /// The cell's state bytes, before they are framed as `bin`.
    private let state = MsgPackWriter(initialCapacityBytes: 64 * 1_024)
    /// The owed messages, each already framed as `bin`: their count comes first in the output,
    /// and it is known only once each has been encoded (and found within the size limit).
    private let owed = MsgPackWriter(initialCapacityBytes: 16 * 1_024)
    private let output = MsgPackWriter(initialCapacityBytes: 64 * 1_024)
    private let envelopes = EnvelopeEncoder()
    /// Per actor (by cell position), the owed messages of its last snapshot with their bytes
    /// (nil: too large, left out), by envelope storage. A message stays owed over many
    /// snapshots (a supervisor's timeout timers, an at_most_once task's deadline: tens of
    /// seconds of virtual time), and was encoded again at each. An envelope's storage is never
    /// written while shared (copy-on-write), and the cache holds the envelope, so its storage
    /// cannot be freed and reused: the same identity is the same message, the same bytes.
    /// Only looked up, never iterated.
    private var owedCache: [[ObjectIdentifier: (envelope: Envelope, bytes: [UInt8]?)]] = []

    /// `position`: the cell's, which keys its cache of owed messages' bytes.
    func encode(_ cell: any ActorCell, position: Int, owed messages: [Envelope]) -> [UInt8] {
        self.state.reset()
        cell.writeSnapshot(into: self.state)
        self.owed.reset()
        var owedCount = 0
        while self.owedCache.count <= position { self.owedCache.append([:]) }
        let previous = self.owedCache[position]
        var cache: [ObjectIdentifier: (envelope: Envelope, bytes: [UInt8]?)] = [:]
        cache.reserveCapacity(messages.count)
        for message in messages {
            let identity = message.storageIdentity
            let bytes: [UInt8]?
            if let known = previous[identity] ?? cache[identity] {
                bytes = known.bytes
            } else {
                bytes = self.envelopes.withEncoded(message) { encoded in
                    // `EnvelopeEncoder.encode`'s size check: the node's wrapper drops what it refuses.
                    encoded.count <= self.envelopes.limits.maxEnvelopeBytes ? [UInt8](encoded) : nil
                }
            }
            cache[identity] = (message, bytes)
            guard let bytes else { continue }
            self.owed.writeBinary(bytes)
            owedCount += 1
        }
        self.owedCache[position] = cache
        let output = self.output
        output.reset()
        output.writeMapHeader(4)
        output.write("format")
        output.write(NodeSnapshot.magic)
        output.write("v")
        output.write(NodeSnapshot.version)
        output.write("state")
        self.state.withBytes { output.writeBinary($0) }
        output.write("owed")
        output.writeArrayHeader(owedCount)
        self.owed.withBytes { output.writeRaw($0) }
        return output.bytes
    }
}

// MARK: - The in-memory log's id index

/// Message id → seq for the in-memory log, which holds every record: a slot keeps 32 bits of
/// the id's hash and the seq (8 bytes, a third of `MessageSeqTable`'s 24), and the id itself is
/// read from the record (`idAt`) only when those bits match. Appends probe this table on every
/// delivery at random places; at 24 bytes a slot its misses were most of an append's cost,
/// and a table three times denser stays in the core's cache far more often.
///
/// Open addressing, linear probing, at most half full, the same fixed mix as `MessageSeqTable`
/// (the table is never iterated: its layout decides nothing). A slot's bucket is its stored
/// hash bits masked, so growing and deleting never read the records.
struct RecordIDTable {
    struct Slot {
        /// The low 32 bits of `hash(id)`.
        var hash: UInt32
        /// 0: empty (seqs start at 1).
        var seq: UInt32
    }

    private(set) var count = 0
    private var slots: [Slot]
    private var mask: Int

    init(minimumCapacity: Int = 1_024) {
        let capacity = openAddressingCapacity(minimumCapacity)
        self.slots = Array(repeating: Slot(hash: 0, seq: 0), count: capacity)
        self.mask = capacity - 1
    }

    @inline(__always)
    static func hash(_ id: MessageID) -> UInt32 {
        var x = id.high &* 0x9E37_79B9_7F4A_7C15 ^ id.low
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        x ^= x >> 31
        return UInt32(truncatingIfNeeded: x)
    }

    /// Where `id` is, or the empty slot where its probe ends.
    @inline(__always)
    private func find(_ id: MessageID, _ hash: UInt32, idAt: (UInt32) -> MessageID) -> (index: Int, found: Bool) {
        var index = Int(hash) & self.mask
        while true {
            let slot = self.slots[index]
            if slot.seq == 0 { return (index, false) }
            if slot.hash == hash && idAt(slot.seq) == id { return (index, true) }
            index = (index + 1) & self.mask
        }
    }

    /// `idAt(seq)`: the id of the record at `seq` (one the table holds).
    func seq(of id: MessageID, idAt: (UInt32) -> MessageID) -> UInt64? {
        let hit = self.find(id, Self.hash(id), idAt: idAt)
        return hit.found ? UInt64(self.slots[hit.index].seq) : nil
    }

    /// Inserts `id` → `seq` unless `id` is present; false (and nothing changes) when it is.
    mutating func insert(_ id: MessageID, seq: UInt64, idAt: (UInt32) -> MessageID) -> Bool {
        precondition(seq != 0 && seq <= UInt64(UInt32.max), "seq \(seq) does not fit the in-memory log's id index")
        if (self.count + 1) * 2 > self.slots.count { self.grow() }
        let hash = Self.hash(id)
        let hit = self.find(id, hash, idAt: idAt)
        guard !hit.found else { return false }
        self.slots[hit.index] = Slot(hash: hash, seq: UInt32(seq))
        self.count += 1
        return true
    }

    /// Removes `id` (a power loss takes the tail of the log). Backward-shift deletion, as in
    /// `MessageSeqTable.remove`.
    mutating func remove(_ id: MessageID, idAt: (UInt32) -> MessageID) {
        let hit = self.find(id, Self.hash(id), idAt: idAt)
        guard hit.found else { return }
        var hole = hit.index
        var next = hole
        while true {
            next = (next + 1) & self.mask
            let slot = self.slots[next]
            if slot.seq == 0 { break }
            let home = Int(slot.hash) & self.mask
            let homeWithin = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeWithin {
                self.slots[hole] = slot
                hole = next
            }
        }
        self.slots[hole] = Slot(hash: 0, seq: 0)
        self.count -= 1
    }

    private mutating func grow() {
        let old = self.slots
        let capacity = old.count * 2
        self.slots = Array(repeating: Slot(hash: 0, seq: 0), count: capacity)
        self.mask = capacity - 1
        for slot in old where slot.seq != 0 {
            var index = Int(slot.hash) & self.mask
            while self.slots[index].seq != 0 { index = (index + 1) & self.mask }
            self.slots[index] = slot
        }
    }
}

// MARK: - Cells by address

/// Address → cell position, asked for every message that arrives (and by every restart, stop
/// and spawn): open addressing over a fixed hash of the address's bytes (FNV-1a), instead of a
/// `Dictionary`, whose per-process SipHash with its set-up and finalisation cost more than
/// the lookup. Never iterated: its layout decides nothing.
struct AddressIndex {
    /// Position + 1 per bucket (0: empty); at most half full.
    private var buckets: [Int32]
    private var addresses: [Address] = []
    private var positions: [Int] = []
    private var mask: Int

    init() {
        self.buckets = [Int32](repeating: 0, count: 16)
        self.mask = 15
    }

    /// The positions of `addresses`, in order; a repeated address keeps its last position (as
    /// assigning into a dictionary would).
    init(_ addresses: [Address]) {
        var capacity = 16
        while capacity < addresses.count * 2 { capacity <<= 1 }
        self.buckets = [Int32](repeating: 0, count: capacity)
        self.mask = capacity - 1
        for (position, address) in addresses.enumerated() {
            let (bucket, entry) = self.find(address)
            if let entry {
                self.positions[entry] = position
            } else {
                self.addresses.append(address)
                self.positions.append(position)
                self.buckets[bucket] = Int32(self.addresses.count)
            }
        }
    }

    @inline(__always)
    static func hash(_ address: Address) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        let hashed: Void? = address.rawValue.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        if hashed == nil {
            for byte in address.rawValue.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        return hash ^ (hash >> 29)
    }

    /// The bucket where `address` is or its probe ends, and its entry if present.
    private func find(_ address: Address) -> (bucket: Int, entry: Int?) {
        var bucket = Int(truncatingIfNeeded: Self.hash(address)) & self.mask
        while true {
            let slot = self.buckets[bucket]
            if slot == 0 { return (bucket, nil) }
            if self.addresses[Int(slot) - 1] == address { return (bucket, Int(slot) - 1) }
            bucket = (bucket + 1) & self.mask
        }
    }

    subscript(address: Address) -> Int? {
        guard let entry = self.find(address).entry else { return nil }
        return self.positions[entry]
    }
}
