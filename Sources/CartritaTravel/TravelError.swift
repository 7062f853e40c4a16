import CartritaLog

/// Why a travel, diff, trace, filter or capsule operation was refused. Bad input (a seq past the
/// log, an unknown actor, a damaged capsule) gets a code of its own; nothing is ever written to
/// the log it reads.
package struct TravelError: Error, Hashable, Sendable, CustomStringConvertible {
    package struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        package var rawValue: String
        package init(rawValue: String) { self.rawValue = rawValue }
        package var description: String { self.rawValue }

        /// The sequence number is 0 or past the log's last record.
        package static let seqOutOfRange = Code(rawValue: "seq_out_of_range")
        /// No actor of the hierarchy has this address.
        package static let unknownActor = Code(rawValue: "unknown_actor")
        /// The log has no record of this correlation id.
        package static let unknownCorrelation = Code(rawValue: "unknown_correlation")
        /// An argument that cannot be read (a time, an id, an empty range).
        package static let invalidArgument = Code(rawValue: "invalid_argument")
        /// Reading the log failed (`logError` has the detail).
        package static let log = Code(rawValue: "log")
        /// Writing or reading a capsule file failed.
        package static let io = Code(rawValue: "io")

        // Forks (`cartrita fork`).
        /// The replacement file is not a valid replacement (`Schemas/fork-replacement.md`), or
        /// does not fit the record it replaces.
        package static let invalidReplacement = Code(rawValue: "invalid_replacement")
        /// A replacement file of a format version this build does not read.
        package static let unsupportedReplacementVersion = Code(rawValue: "unsupported_replacement_version")
        /// The fork's output folder already holds a log.
        package static let forkTargetNotEmpty = Code(rawValue: "fork_target_not_empty")
        /// The fork made more new messages than `Fork.maxNewDeliveries` (a loop it would not leave).
        package static let forkTooLong = Code(rawValue: "fork_too_long")

        // Capsules (Schemas/capsule.md): each way a file can be bad has its own code.
        /// Not a capsule: the magic bytes are missing.
        package static let notACapsule = Code(rawValue: "not_a_capsule")
        /// A format version this build does not read.
        package static let unsupportedVersion = Code(rawValue: "unsupported_capsule_version")
        /// The file ends before its header, a section or its trailer does.
        package static let truncated = Code(rawValue: "truncated_capsule")
        /// A section's or the file's SHA-256 does not match its bytes.
        package static let checksumMismatch = Code(rawValue: "capsule_checksum_mismatch")
        /// The checksums hold but the content breaks the format (a missing section, a record
        /// that does not decode, a broken hash chain between consecutive records).
        package static let malformed = Code(rawValue: "malformed_capsule")
    }

    package var code: Code
    package var message: String
    package var logError: EventLogError?

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package static func log(_ error: EventLogError) -> TravelError {
        var result = TravelError(.log, error.description)
        result.logError = error
        return result
    }

    /// Any error of a read or a run, as a travel error: travel errors pass, log errors keep
    /// their detail, anything else (a closure's untyped throw) becomes a `log` error.
    package static func wrapping(_ error: any Error) -> TravelError {
        switch error {
        case let error as TravelError: error
        case let error as EventLogError: .log(error)
        default: TravelError(.log, "\(error)")
        }
    }

    package var description: String { "\(self.code): \(self.message)" }
}
