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
}

public typealias RecordBatch = [(seq: UInt64, record: LogRecord)]

extension EventLog: ReplayableLog {
    public func replay(from seq: UInt64, _ body: (RecordBatch) -> Bool) throws(EventLogError) {
        let pipeline = RecordPipeline(log: self, from: seq)
        defer { pipeline.finish() }
        while let batch = try pipeline.next() {
            if !body(batch) { return }
        }
    }
}
