import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure from liblmdb (or from this layer's own safety checks), with enough context to act on it.
///
/// Callers branch on `code` (never on the message text): the event log grows the map on `.mapFull`,
/// treats `.diskFull` as an operator problem, and so on. `returnCode` keeps the raw value for logs.
public struct LMDBError: Error, Hashable, CustomStringConvertible {
    /// Every return code LMDB 0.9.x defines, the errno values worth naming, and this layer's own errors.
    public enum Code: Hashable, Sendable {
        // LMDB's own codes (lmdb.h, MDB_KEYEXIST ... MDB_BAD_DBI).
        case keyExist
        case notFound
        case pageNotFound
        case corrupted
        case panic
        case versionMismatch
        case invalid
        case mapFull
        case dbsFull
        case readersFull
        case tlsFull
        case txnFull
        case cursorFull
        case pageFull
        case mapResized
        case incompatible
        case badReaderSlot
        case badTxn
        case badValueSize
        case badDBI
        // errno values LMDB passes through from the OS.
        case diskFull
        case accessDenied
        case noSuchFileOrDirectory
        case ioError
        case outOfMemory
        case invalidArgument
        case system(Int32)
        // Raised by this layer, not by liblmdb; they prevent misuse that LMDB would turn into corruption.
        /// The directory is already open in this process (LMDB forbids two environments on one path).
        case environmentAlreadyOpen
        /// The environment was closed; its handles are gone.
        case environmentClosed
        /// `copy(to:compact:)` refuses to write into a directory that already holds files.
        case backupTargetNotEmpty
        /// The transaction was already committed or aborted.
        case transactionFinished
        /// The calling thread holds a transaction, so waiting for all transactions to end would deadlock.
        case transactionActiveOnThisThread

        /// One table for both directions (raw value -> code, code -> C name), so they cannot drift apart.
        static let known: [(returnCode: Int32, code: Code, name: String)] = [
            (MDB_KEYEXIST, .keyExist, "MDB_KEYEXIST"), (MDB_NOTFOUND, .notFound, "MDB_NOTFOUND"),
            (MDB_PAGE_NOTFOUND, .pageNotFound, "MDB_PAGE_NOTFOUND"), (MDB_CORRUPTED, .corrupted, "MDB_CORRUPTED"),
            (MDB_PANIC, .panic, "MDB_PANIC"), (MDB_VERSION_MISMATCH, .versionMismatch, "MDB_VERSION_MISMATCH"),
            (MDB_INVALID, .invalid, "MDB_INVALID"), (MDB_MAP_FULL, .mapFull, "MDB_MAP_FULL"),
            (MDB_DBS_FULL, .dbsFull, "MDB_DBS_FULL"), (MDB_READERS_FULL, .readersFull, "MDB_READERS_FULL"),
            (MDB_TLS_FULL, .tlsFull, "MDB_TLS_FULL"), (MDB_TXN_FULL, .txnFull, "MDB_TXN_FULL"),
            (MDB_CURSOR_FULL, .cursorFull, "MDB_CURSOR_FULL"), (MDB_PAGE_FULL, .pageFull, "MDB_PAGE_FULL"),
            (MDB_MAP_RESIZED, .mapResized, "MDB_MAP_RESIZED"), (MDB_INCOMPATIBLE, .incompatible, "MDB_INCOMPATIBLE"),
            (MDB_BAD_RSLOT, .badReaderSlot, "MDB_BAD_RSLOT"), (MDB_BAD_TXN, .badTxn, "MDB_BAD_TXN"),
            (MDB_BAD_VALSIZE, .badValueSize, "MDB_BAD_VALSIZE"), (MDB_BAD_DBI, .badDBI, "MDB_BAD_DBI"),
            (ENOSPC, .diskFull, "ENOSPC"), (EACCES, .accessDenied, "EACCES"),
            (ENOENT, .noSuchFileOrDirectory, "ENOENT"), (EIO, .ioError, "EIO"),
            (ENOMEM, .outOfMemory, "ENOMEM"), (EINVAL, .invalidArgument, "EINVAL"),
            // This layer's codes have no raw value of their own; the names only serve logs.
            (0, .environmentAlreadyOpen, "CARTRITA_ENV_ALREADY_OPEN"), (0, .environmentClosed, "CARTRITA_ENV_CLOSED"),
            (0, .backupTargetNotEmpty, "CARTRITA_BACKUP_TARGET_NOT_EMPTY"),
            (0, .transactionFinished, "CARTRITA_TXN_FINISHED"),
            (0, .transactionActiveOnThisThread, "CARTRITA_TXN_ACTIVE_ON_THIS_THREAD"),
        ]

        public init(returnCode: Int32) {
            let entry = returnCode == 0 ? nil : Code.known.first { $0.returnCode == returnCode }
            self = entry?.code ?? .system(returnCode)
        }

        /// The C name of the code, as in lmdb.h or errno.h (stable, for logs and metrics).
        public var name: String {
            if case .system(let errno) = self { return "errno(\(errno))" }
            return Code.known.first { $0.code == self }!.name
        }
    }

    public let code: Code
    /// The raw value: an LMDB code, an errno, or (for this layer's own codes) the closest errno.
    public let returnCode: Int32
    /// Text from `mdb_strerror` (which also covers errno values), or this layer's explanation.
    public let message: String
    /// The C function (or layer operation) that failed, e.g. "mdb_put".
    public let operation: String

    /// Wraps a non-zero return value of an `mdb_*` call.
    public init(returnCode: Int32, operation: String) {
        self.code = Code(returnCode: returnCode)
        self.returnCode = returnCode
        self.message = String(cString: mdb_strerror(returnCode))
        self.operation = operation
    }

    init(code: Code, returnCode: Int32, operation: String, message: String) {
        self.code = code
        self.returnCode = returnCode
        self.operation = operation
        self.message = message
    }

    public var description: String {
        "\(self.operation) failed: \(self.code.name) (\(self.returnCode)): \(self.message)"
    }

    /// The map is full: grow it (`LMDBEnvironment.setMapSize`) and retry the whole transaction.
    public var isMapFull: Bool { self.code == .mapFull }
    /// Another process grew the map; `LMDBEnvironment` adopts the new size on its own once, at txn begin.
    public var isMapResized: Bool { self.code == .mapResized }
    public var isNotFound: Bool { self.code == .notFound }
    public var isKeyExist: Bool { self.code == .keyExist }

    static func closed(_ operation: String) -> LMDBError {
        LMDBError(code: .environmentClosed, returnCode: EBADF, operation: operation,
                  message: "the LMDB environment is closed")
    }

    static func finished(_ operation: String) -> LMDBError {
        LMDBError(code: .transactionFinished, returnCode: EINVAL, operation: operation,
                  message: "the transaction was already committed or aborted")
    }
}

/// Turns an `mdb_*` return value into a thrown `LMDBError`; keeps call sites to one line.
@inline(__always)
func lmdbCheck(_ returnCode: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if returnCode != 0 {
        throw LMDBError(returnCode: returnCode, operation: operation())
    }
}
