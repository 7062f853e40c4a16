import CartritaCodec
import CartritaEnvelope
import CartritaLog

/// What recovery reads from a log. The LMDB `EventLog` is one; the simulator's in-memory log is
/// another, so the simulator recovers with the same code as production.
public protocol ReplayableLog: AnyObject {
    var lastSeq: UInt64 { get }
    /// The newest snapshot of `actor` at or before `seq` whose format `accepting` takes.
    func latestSnapshot(of actor: String, atOrBefore seq: UInt64, accepting: (UInt32) -> Bool) throws(EventLogError) -> Snapshot?
    /// Every actor with the seq of its last record.
    func heads() throws(EventLogError) -> [(actor: String, seq: UInt64)]
    /// Where each id is in the log (nil: not logged).
    func seqs(ofMessages ids: [MessageID]) throws(EventLogError) -> [UInt64?]
    func record(_ seq: UInt64) throws(EventLogError) -> LogRecord?
    /// Every seq of one task, in order.
    func seqs(correlation: MessageID) throws(EventLogError) -> [UInt64]
    /// Hands the records from `seq` on to `body`, in order, in batches, until it returns false.
    func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError)
    /// The same, except that a record whose sender is one of `storedSenders` may come as its
    /// stored bytes (`ReplayEntry.stored`) instead of decoded: recovery compares those with what
    /// its replayed handlers made, by bytes, and decodes only what differs. A log that cannot
    /// do this hands everything decoded (the default).
    func replayEntries(from seq: UInt64, storedSenders: [Address], _ body: (ReplayBatch) -> Bool) throws(EventLogError)
    /// Whether a stored record replay must decode is held to the envelope rules: false for a
    /// log this runtime wrote (it validated every record on the way in, and an old record must
    /// stay readable after a rule is tightened), true for untrusted input (a capsule).
    var replayValidatesEnvelopes: Bool { get }
}

public typealias RecordBatch = [(seq: UInt64, record: LogRecord)]
public typealias ReplayBatch = [(seq: UInt64, entry: ReplayEntry)]

/// One record as replay receives it.
public enum ReplayEntry: Sendable {
    case decoded(LogRecord)
    /// The record's bytes as stored, with the header and the fields replay routes on. A slice:
    /// a reader copies a batch's stored records into one buffer, one allocation per batch
    /// instead of one per record (allocated on the reader's thread and freed on another, each
    /// was a trip to malloc's slow path).
    case stored(bytes: ArraySlice<UInt8>, peek: RecordPeek)
}

extension ReplayEntry {
    /// A stored record's peek; nil for a decoded one. Read in place: matching the whole entry
    /// (`case .stored(_, let peek)`) copies it, a retain and a release of the record's bytes
    /// on the replay thread for every record.
    @inlinable
    public var storedPeek: RecordPeek? {
        guard case .stored(_, let peek) = self else { return nil }
        return peek
    }
}

extension ReplayableLog {
    public var replayValidatesEnvelopes: Bool { false }

    public func replayEntries(from seq: UInt64, storedSenders: [Address], _ body: (ReplayBatch) -> Bool) throws(EventLogError) {
        try self.replay(from: seq) { batch in body(batch.map { ($0.seq, .decoded($0.record)) }) }
    }
}

extension EventLog: ReplayableLog {
    public func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        let pipeline = RecordPipeline(log: self, from: seq, storedSenders: [])
        defer { pipeline.finish() }
        while let batch = try pipeline.next() {
            // Nothing comes stored without stored senders; decoded records pass as they are.
            let records: RecordBatch = batch.compactMap { item in
                guard case .decoded(let record) = item.entry else { return nil }
                return (item.seq, record)
            }
            if !body(records) { return }
        }
    }

    public func replayEntries(from seq: UInt64, storedSenders: [Address], _ body: (ReplayBatch) -> Bool) throws(EventLogError) {
        let pipeline = RecordPipeline(log: self, from: seq, storedSenders: storedSenders)
        defer { pipeline.finish() }
        while let batch = try pipeline.next() {
            if !body(batch) { return }
        }
    }
}
