import CartritaEnvelope

/// Why bytes could not become an envelope or a record, or an envelope could not become bytes.
/// `path` names the field (`payload.task.type`, `context.custom_attributes.k`, `$` for the whole
/// input); `offset` is the byte offset where the structural scan stopped, when known.
public struct CodecError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { self.rawValue }

        /// The input ends inside a value.
        public static let truncated = Code(rawValue: "truncated")
        /// Bytes follow the top-level value.
        public static let trailingBytes = Code(rawValue: "trailing_bytes")
        /// The whole input, or an encoded envelope, is over the size limit.
        public static let tooLarge = Code(rawValue: "too_large")
        /// A byte that msgpack never uses (0xc1), or msgpack-c refused the input.
        public static let malformed = Code(rawValue: "malformed")
        public static let wrongType = Code(rawValue: "wrong_type")
        public static let invalidUTF8 = Code(rawValue: "invalid_utf8")
        public static let duplicateKey = Code(rawValue: "duplicate_key")
        public static let unknownKey = Code(rawValue: "unknown_key")
        public static let missingKey = Code(rawValue: "missing_key")
        public static let invalidEnumValue = Code(rawValue: "invalid_enum_value")
        /// A fixed-size binary (ids, hashes) of the wrong length.
        public static let invalidLength = Code(rawValue: "invalid_length")
        public static let integerOutOfRange = Code(rawValue: "integer_out_of_range")
        public static let nestingTooDeep = Code(rawValue: "nesting_too_deep")
        public static let stringTooLong = Code(rawValue: "string_too_long")
        public static let binaryTooLong = Code(rawValue: "binary_too_long")
        public static let tooManyEntries = Code(rawValue: "too_many_entries")
        /// msgpack extension types carry nothing the spec defines.
        public static let unsupportedType = Code(rawValue: "unsupported_type")
        /// A record written by a newer format than this build reads.
        public static let unsupportedVersion = Code(rawValue: "unsupported_version")
        /// The bytes decode, but the envelope breaks a rule of MCP-SPEC; the envelope rule's code
        /// is in `envelopeCode`.
        public static let invalidEnvelope = Code(rawValue: "invalid_envelope")
        public static let outOfMemory = Code(rawValue: "out_of_memory")
    }

    public var code: Code
    public var path: String
    public var offset: Int?
    public var message: String
    /// Set when `code` is `invalidEnvelope`.
    public var envelopeCode: EnvelopeError.Code?

    public init(_ code: Code, path: String, offset: Int? = nil, _ message: String) {
        self.code = code
        self.path = path
        self.offset = offset
        self.message = message
        self.envelopeCode = nil
    }

    public init(invalid error: EnvelopeError) {
        self.init(.invalidEnvelope, path: error.path, "\(error.code): \(error.message)")
        self.envelopeCode = error.code
    }

    public var description: String {
        var text = "\(self.code) at \(self.path)"
        if let offset { text += " (byte \(offset))" }
        if let envelopeCode { text += " [\(envelopeCode)]" }
        return text + ": " + self.message
    }
}

/// Size and shape limits of the codec. Every one is checked while reading, before anything
/// is allocated for it.
public struct CodecLimits: Hashable, Sendable {
    /// Largest encoded envelope, in bytes. Oversized payloads are refused here, at the door.
    public var maxEnvelopeBytes: Int
    /// Longest msgpack str, in bytes.
    public var maxStringBytes: Int
    /// Longest msgpack bin, in bytes.
    public var maxBinaryBytes: Int
    /// Deepest container nesting, counting the envelope's own map as 1. msgpack-c's own parser
    /// stops at 32; this limit is checked first so the error can name the place.
    public var maxDepth: Int
    /// Most entries in one array or map.
    public var maxContainerEntries: Int
    /// The envelope rules applied after decoding.
    public var envelope: EnvelopeLimits

    public init(
        maxEnvelopeBytes: Int = 1 << 20,
        maxStringBytes: Int = 1 << 20,
        maxBinaryBytes: Int = 1 << 20,
        maxDepth: Int = 30,
        maxContainerEntries: Int = 65_536,
        envelope: EnvelopeLimits = .default
    ) {
        self.maxEnvelopeBytes = maxEnvelopeBytes
        self.maxStringBytes = maxStringBytes
        self.maxBinaryBytes = maxBinaryBytes
        self.maxDepth = max(0, min(maxDepth, 31))  // the fast scan sizes its stack from this
        self.maxContainerEntries = maxContainerEntries
        self.envelope = envelope
    }

    public static let `default` = CodecLimits()

    /// A record is an envelope plus a header of fixed, small size.
    var maxRecordBytes: Int { self.maxEnvelopeBytes + RecordHeader.maxEncodedBytes }
}
