import CartritaCodec
import CartritaEnvelope
import CartritaLMDB

/// The outcome of `EventLog.verify()`.
public struct VerifyReport: Sendable {
    public struct Problem: Sendable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            /// The stored bytes do not decode as a valid record (the codec's error is in the message).
            case undecodable = "undecodable"
            /// A key that is not an 8-byte sequence number.
            case badKey = "bad_key"
            /// A seq is missing between two records.
            case gap = "gap"
            /// The record's own `seq` differs from its key.
            case seqMismatch = "seq_mismatch"
            /// The record's bytes do not hash to what the next record (or the head hash) holds:
            /// this record was modified, or the next one's `prev_hash` was.
            case hashMismatch = "hash_mismatch"
            /// `actor_prev_seq` does not point at the previous record of the same recipient.
            case backPointer = "back_pointer"
            /// The id index disagrees with the log.
            case idIndex = "id_index"
            /// The actor heads disagree with the log.
            case heads = "heads"
            /// A secondary index holds entries the log does not explain.
            case secondaryIndex = "secondary_index"
        }

        public var seq: UInt64
        public var kind: Kind
        public var message: String

        public var description: String { "record \(self.seq): \(self.kind.rawValue): \(self.message)" }
    }

    public var records: Int
    public var firstSeq: UInt64
    public var lastSeq: UInt64
    public var actors: Int
    public var headHash: Digest32
    /// The first problem found, in log order; nil when the log verifies.
    public var firstProblem: Problem?

    public var passed: Bool { self.firstProblem == nil }
}

extension EventLog {
    /// Walks every record in one read snapshot and checks: keys are 8-byte seqs without gaps,
    /// each record decodes under the hardened decoder and its envelope is valid, `seq` equals
    /// the key, `prev_hash` equals SHA-256 of the previous record's stored bytes, the last
    /// record's hash equals the stored head hash, `actor_prev_seq` points at the previous record
    /// of the same recipient, the id index maps each id to its record and holds nothing else,
    /// the actor heads equal the last record of each actor, and the secondary indexes hold each
    /// record's own entry up to their watermark and nothing else. Stops at the first problem;
    /// never crashes on a damaged file.
    public func verify(progress: ((UInt64) -> Void)? = nil) throws(EventLogError) -> VerifyReport {
        do {
            return try self.environment.read { txn in try self.verify(txn, progress: progress) }
        } catch let error as EventLogError {
            throw error
        } catch {
            throw EventLogError.wrap(error, "verifying")
        }
    }

    func verify(_ txn: LMDBReadTransaction, progress: ((UInt64) -> Void)?) throws -> VerifyReport {
        let decoder = EnvelopeDecoder(limits: self.configuration.codecLimits)
        var report = VerifyReport(records: 0, firstSeq: 0, lastSeq: 0, actors: 0, headHash: .zero, firstProblem: nil)
        var expectedPrevHash = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.anchorHash)).map {
            $0.count == 32 ? Digest32(bytes: $0) : .zero
        } ?? .zero
        var previousSeq: UInt64?
        var lastOfActor: [String: UInt64] = [:]
        // Records up to the watermark must each have their own secondary-index entries (the
        // entry counts are compared after the walk, so together nothing is missing or extra).
        let indexApplied = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.indexAppliedSeq))?.bigEndianUInt64() ?? 0
        var problem: VerifyReport.Problem?

        func fail(_ seq: UInt64, _ kind: VerifyReport.Problem.Kind, _ message: String) -> Bool {
            problem = .init(seq: seq, kind: kind, message: message)
            return false
        }

        _ = try txn.withCursor(self.databases.log) { cursor in
            try cursor.forEach { key, value in
                guard key.count == 8, let seq = key.bigEndianUInt64() else {
                    return fail(previousSeq.map { $0 + 1 } ?? 0, .badKey, "key of \(key.count) bytes")
                }
                if let previousSeq, seq != previousSeq + 1 {
                    return fail(previousSeq + 1, .gap, "the next record after \(previousSeq) is \(seq)")
                }
                if previousSeq == nil { report.firstSeq = seq }
                let record: LogRecord
                do throws(CodecError) {
                    record = try decoder.decodeRecord(value)
                } catch {
                    return fail(seq, .undecodable, error.description)
                }
                guard record.header.seq == seq else {
                    return fail(seq, .seqMismatch, "stored under \(seq) but says \(record.header.seq)")
                }
                guard record.header.prevHash == expectedPrevHash else {
                    // The stored bytes of the previous record no longer hash to what this one holds.
                    let blamed = previousSeq ?? seq
                    return fail(blamed, .hashMismatch, "record \(seq) holds prev_hash \(record.header.prevHash), but the bytes before it hash to \(expectedPrevHash)")
                }
                let recipient = record.envelope.recipient.rawValue
                let expectedBack = lastOfActor[recipient] ?? 0
                // After retention the first records may point before the file's first seq.
                let backOK = record.header.actorPrevSeq == expectedBack
                    || (expectedBack == 0 && record.header.actorPrevSeq < report.firstSeq)
                guard backOK else {
                    return fail(seq, .backPointer, "actor_prev_seq is \(record.header.actorPrevSeq), the previous record to \(recipient) is \(expectedBack)")
                }
                let indexed = try record.envelope.id.withBytes { try txn.get(self.databases.ids, key: $0)?.bigEndianUInt64() }
                guard indexed == seq else {
                    return fail(seq, .idIndex, "the id index maps \(record.envelope.id) to \(indexed.map(String.init) ?? "nothing")")
                }
                if seq <= indexApplied {
                    guard try txn.get(self.databases.byCorrelation, key: EventLog.correlationKey(record.envelope.correlationID, seq)) != nil else {
                        return fail(seq, .secondaryIndex, "the correlation index has no entry for this record (applied up to \(indexApplied))")
                    }
                    guard try txn.get(self.databases.byActor, key: EventLog.actorKey(recipient, seq)) != nil else {
                        return fail(seq, .secondaryIndex, "the actor index has no entry for this record (applied up to \(indexApplied))")
                    }
                }
                lastOfActor[recipient] = seq
                expectedPrevHash = RecordHash.sha256(value)
                previousSeq = seq
                report.records += 1
                if seq % 100_000 == 0 { progress?(seq) }
                return true
            }
        }
        report.lastSeq = previousSeq ?? 0
        report.actors = lastOfActor.count
        report.headHash = expectedPrevHash
        if let problem {
            report.firstProblem = problem
            return report
        }
        let last = report.lastSeq
        // The head hash protects the last record, which no later record chains to.
        if report.records > 0 {
            let stored = try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.headHash)).map {
                $0.count == 32 ? Digest32(bytes: $0) : .zero
            }
            if stored != expectedPrevHash {
                report.firstProblem = .init(seq: last, kind: .hashMismatch, message: "the last record hashes to \(expectedPrevHash), the stored head hash is \(stored?.description ?? "missing")")
                return report
            }
        }
        let idEntries = try txn.stat(self.databases.ids).entries
        if idEntries != report.records {
            report.firstProblem = .init(seq: last, kind: .idIndex, message: "the id index has \(idEntries) entries for \(report.records) records")
            return report
        }
        var storedHeads: [String: UInt64] = [:]
        _ = try txn.withCursor(self.databases.heads) { cursor in
            try cursor.forEach { key, value in
                storedHeads[String(decoding: key, as: UTF8.self)] = value.bigEndianUInt64() ?? 0
                return true
            }
        }
        if storedHeads != lastOfActor {
            let differing = (Set(storedHeads.keys).union(lastOfActor.keys)).sorted().first { storedHeads[$0] != lastOfActor[$0] } ?? "?"
            report.firstProblem = .init(
                seq: lastOfActor[differing] ?? storedHeads[differing] ?? last, kind: .heads,
                message: "head of \(differing) is \(storedHeads[differing].map(String.init) ?? "missing"), the log says \(lastOfActor[differing].map(String.init) ?? "none")")
            return report
        }
        let applied = min(try txn.get(self.databases.meta, key: EventLog.metaKey(MetaKey.indexAppliedSeq))?.bigEndianUInt64() ?? 0, last)
        let coveredRecords = applied >= report.firstSeq && report.records > 0 ? Int(applied - report.firstSeq + 1) : 0
        for (name, database) in [("correlation", self.databases.byCorrelation), ("actor", self.databases.byActor)] {
            let entries = try txn.stat(database).entries
            if entries != coveredRecords {
                report.firstProblem = .init(seq: applied, kind: .secondaryIndex, message: "the \(name) index has \(entries) entries but covers \(coveredRecords) records (up to \(applied))")
                return report
            }
        }
        return report
    }
}
