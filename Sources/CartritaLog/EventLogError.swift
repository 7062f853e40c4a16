import CartritaCodec
import CartritaEnvelope
import CartritaLMDB

/// Why the log refused or failed an operation. Whatever the code, nothing already in the log
/// was modified: a failed batch is an aborted LMDB transaction.
public struct EventLogError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { self.rawValue }

        /// The envelope breaks a rule of MCP-SPEC (`codecError.envelopeCode` says which).
        public static let invalidEnvelope = Code(rawValue: "invalid_envelope")
        /// Bytes handed to `append(msgpack:)` are not a valid envelope, or an envelope is too large.
        public static let codec = Code(rawValue: "codec")
        /// An envelope with this id is already in the log (the exactly_once dedupe).
        public static let duplicateID = Code(rawValue: "duplicate_id")
        /// The map reached `maxMapSizeBytes`: the log is full by configuration.
        public static let logFull = Code(rawValue: "log_full")
        /// The file system has no room left (ENOSPC).
        public static let diskFull = Code(rawValue: "disk_full")
        /// Any other LMDB or I/O failure; `lmdbError` has the detail.
        public static let storage = Code(rawValue: "storage")
        /// More records are waiting for the writer than `maxQueuedRecords`.
        public static let overloaded = Code(rawValue: "overloaded")
        public static let closed = Code(rawValue: "closed")
        /// Another process holds the writer lock of this data folder.
        public static let locked = Code(rawValue: "locked")
        /// The log was opened read-only.
        public static let readOnly = Code(rawValue: "read_only")
        /// The data folder was written by a newer format than this build reads.
        public static let unsupportedFormat = Code(rawValue: "unsupported_format")
        /// A stored record cannot be decoded or breaks an invariant.
        public static let corrupted = Code(rawValue: "corrupted")
        public static let notFound = Code(rawValue: "not_found")
        public static let invalidArgument = Code(rawValue: "invalid_argument")
    }

    public var code: Code
    public var message: String
    public var codecError: CodecError?
    public var lmdbError: LMDBError?
    /// For `duplicateID`: where the first copy is.
    public var existingSeq: UInt64?
    /// For `corrupted`: the record that is.
    public var recordSeq: UInt64?

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func codec(_ error: CodecError) -> EventLogError {
        var result = EventLogError(error.code == .invalidEnvelope ? .invalidEnvelope : .codec, error.description)
        result.codecError = error
        return result
    }

    static func lmdb(_ error: LMDBError, _ context: String) -> EventLogError {
        let code: Code
        if error.code == .diskFull {
            code = .diskFull
        } else {
            code = .storage
        }
        var result = EventLogError(code, "\(context): \(error)")
        result.lmdbError = error
        return result
    }

    /// Wraps whatever the LMDB layer threw.
    static func wrap(_ error: any Error, _ context: String) -> EventLogError {
        if let error = error as? EventLogError { return error }
        if let error = error as? LMDBError { return .lmdb(error, context) }
        return EventLogError(.storage, "\(context): \(error)")
    }

    public var description: String {
        var text = "\(self.code): \(self.message)"
        if let existingSeq { text += " (first copy at seq \(existingSeq))" }
        return text
    }
}
