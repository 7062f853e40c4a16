// MARK: - Actor addresses

/// An actor's address, `kind.name@vMAJOR.MINOR`: `orchestrator@v1.0`,
/// `supervisor.intelligence@v1.0`, `agent.visionmaster@v1.3`.
///
/// The grammar: one or more dot-separated segments of `[a-z0-9][a-z0-9_-]*`, then `@v`, then
/// two decimal numbers of at most 5 digits. The first segment is the kind. At most
/// `Address.maxBytes` bytes. The text is kept as given, so encoding is a copy.
public struct Address: Hashable, Comparable, Sendable {
    public let rawValue: String

    public static let maxBytes = 128

    public init(validating text: String) throws(EnvelopeError) {
        try Self.check(text, path: "address")
        self.rawValue = text
    }

    /// For tests and literals known to be valid: traps on an invalid address.
    public init(_ text: String) {
        do {
            try Self.check(text, path: "address")
        } catch {
            preconditionFailure("invalid address literal \(text): \(error)")
        }
        self.rawValue = text
    }

    /// Wraps text that will be validated later (by `Envelope.validate`), for the decoder.
    public init(unchecked text: String) {
        self.rawValue = text
    }

    public var kind: Substring {
        let beforeAt = self.rawValue.prefix { $0 != "@" }
        return beforeAt.prefix { $0 != "." }
    }

    /// Everything before `@`, e.g. `supervisor.intelligence`.
    public var name: Substring { self.rawValue.prefix { $0 != "@" } }

    public var isSupervisor: Bool { self.hasKind("supervisor") }
    public var isAgent: Bool { self.hasKind("agent") }
    /// A client: outside the hierarchy; what is addressed to it are the answers it gets.
    public var isClient: Bool { self.hasKind("client") }

    /// True when the first segment is `kind`. Compares bytes: this runs on every delivery.
    public func hasKind(_ kind: String) -> Bool {
        var bytes = self.rawValue.utf8.makeIterator()
        for expected in kind.utf8 {
            guard bytes.next() == expected else { return false }
        }
        let next = bytes.next()
        return next == UInt8(ascii: ".") || next == UInt8(ascii: "@")
    }

    public static func < (lhs: Address, rhs: Address) -> Bool { lhs.rawValue < rhs.rawValue }

    static func check(_ text: String, path: String) throws(EnvelopeError) {
        let utf8 = text.utf8
        guard !utf8.isEmpty else { throw EnvelopeError(.invalidAddress, path: path, "empty address") }
        guard utf8.count <= Self.maxBytes else {
            throw EnvelopeError(.invalidAddress, path: path, "address longer than \(Self.maxBytes) bytes")
        }
        var segmentLength = 0
        var iterator = utf8.makeIterator()
        var sawAt = false
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                segmentLength += 1
            case UInt8(ascii: "_"), UInt8(ascii: "-"):
                guard segmentLength > 0 else {
                    throw EnvelopeError(.invalidAddress, path: path, "segment must start with [a-z0-9] in \(text)")
                }
                segmentLength += 1
            case UInt8(ascii: "."):
                guard segmentLength > 0 else {
                    throw EnvelopeError(.invalidAddress, path: path, "empty segment in \(text)")
                }
                segmentLength = 0
            case UInt8(ascii: "@"):
                guard segmentLength > 0 else {
                    throw EnvelopeError(.invalidAddress, path: path, "empty segment before @ in \(text)")
                }
                sawAt = true
            default:
                throw EnvelopeError(.invalidAddress, path: path, "character not allowed in \(text)")
            }
            if sawAt { break }
        }
        guard sawAt else { throw EnvelopeError(.invalidAddress, path: path, "missing @vMAJOR.MINOR in \(text)") }
        // The version: v, digits, '.', digits.
        guard iterator.next() == UInt8(ascii: "v") else {
            throw EnvelopeError(.invalidAddress, path: path, "version must start with v in \(text)")
        }
        var major = 0
        var minor = 0
        var inMinor = false
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if inMinor { minor += 1 } else { major += 1 }
            case UInt8(ascii: ".") where !inMinor:
                inMinor = true
            default:
                throw EnvelopeError(.invalidAddress, path: path, "malformed version in \(text)")
            }
        }
        guard inMinor, (1...5).contains(major), (1...5).contains(minor) else {
            throw EnvelopeError(.invalidAddress, path: path, "version must be vMAJOR.MINOR in \(text)")
        }
    }
}

extension Address: CustomStringConvertible {
    public var description: String { self.rawValue }
}

extension Address {
    public static let orchestrator = Address("orchestrator@v1.0")

    /// Instance `number` (2, 3, …) of a pool: `agent.datasage@v1.0` → `agent.datasage.2@v1.0`.
    /// Instance 1 is the address itself.
    public func instance(_ number: Int) -> Address {
        precondition(number >= 1, "instances count from 1")
        guard number > 1 else { return self }
        let at = self.rawValue.firstIndex(of: "@")!
        return Address(String(self.rawValue[..<at]) + ".\(number)" + String(self.rawValue[at...]))
    }
}
