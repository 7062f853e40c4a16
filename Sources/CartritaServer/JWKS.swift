import CartritaEnvelope
import Foundation
import JWTKit
import Logging
import Synchronization

// MARK: - JSON Web Key Sets: keys chosen by `kid`, rotated without a restart

/// The public keys of a JSON Web Key Set (RFC 7517), each under its `kid`, for identity
/// providers that sign with several keys and rotate them (Auth0, Keycloak, Okta, Dex publish
/// one). A token names its key in the header's `kid`; the key decides the algorithm, and the
/// token's `alg` must be that one (a key is never used with another algorithm).
///
/// Accepted keys: RSA (RS256, 2048 bits or more), EC P-256 (ES256) and OKP Ed25519 (EdDSA), each
/// with a unique `kid`, `use` absent or `sig`, `alg` absent or matching the key. A private key
/// (`d`) is refused: the set is published, and a server must never hold the issuer's secret.
///
/// From a file, the set is read again when the file changed (size, time or inode): at most
/// every `reloadInterval` (so a removed key stops verifying within it) and, for a `kid` the
/// set does not have, at most once a second (so a new key works at once without letting a
/// flood of unknown ids read the file on every request). A file that no longer parses keeps
/// the keys it had, and the error is logged.
final class JWKSKeys: Sendable {
    struct Key: Sendable {
        let algorithm: String
        let collection: JWTKeyCollection
    }

    enum Source: Sendable {
        case inline(String)
        case file(String)
    }

    static let maxKeys = 100
    static let maxBytes = 1 << 20
    static let maxKidBytes = 256
    /// An unknown `kid` reads a changed file at most this often.
    static let unknownKidRecheckInterval = Duration.seconds(1)

    struct FileStamp: Equatable {
        var size: Int64
        var seconds: Int
        var nanoseconds: Int
        var inode: UInt64
    }

    struct State {
        var keys: [String: Key]
        var stamp: FileStamp?
        var lastCheck: ContinuousClock.Instant
        var reloads = 0
        var reloadFailures = 0
    }

    let source: Source
    let reloadInterval: Duration
    let logger: Logger
    let state: Mutex<State>

    /// Reads and checks the set; an error names the key (by position and `kid`) and the rule.
    static func load(_ source: Source, reloadInterval: Duration, logger: Logger) async throws(ServerConfiguration.ConfigError) -> JWKSKeys {
        let text: String
        var stamp: FileStamp?
        switch source {
        case .inline(let json): text = json
        case .file(let path):
            stamp = Self.stamp(path)
            guard let read = Self.read(path) else { throw .init("jwks_file: cannot read \(path) (or it is over \(Self.maxBytes) bytes)") }
            text = read
        }
        let keys = try await Self.parse(text)
        return JWKSKeys(
            source: source, reloadInterval: reloadInterval, logger: logger,
            state: State(keys: keys, stamp: stamp, lastCheck: .now))
    }

    private init(source: Source, reloadInterval: Duration, logger: Logger, state: State) {
        self.source = source
        self.reloadInterval = reloadInterval
        self.logger = logger
        self.state = Mutex(state)
    }

    /// The algorithms of the keys now in the set, sorted.
    var algorithms: [String] { self.state.withLock { Set($0.keys.values.map(\.algorithm)).sorted() } }
    var kids: [String] { self.state.withLock { $0.keys.keys.sorted() } }
    var reloads: (done: Int, failed: Int) { self.state.withLock { ($0.reloads, $0.reloadFailures) } }

    /// The key named `kid`, after reading the file again if that is due and it changed.
    func key(_ kid: String) async -> Key? {
        let (found, due) = self.state.withLock { state -> (Key?, Bool) in
            let now = ContinuousClock.now
            let since = now - state.lastCheck
            let due = since >= self.reloadInterval || (state.keys[kid] == nil && since >= Self.unknownKidRecheckInterval)
            if due { state.lastCheck = now }  // claimed: concurrent requests do not all read
            return (state.keys[kid], due)
        }
        guard due, case .file(let path) = self.source else { return found }
        await self.reloadIfChanged(path)
        return self.state.withLock { $0.keys[kid] }
    }

    func reloadIfChanged(_ path: String) async {
        let stamp = Self.stamp(path)
        guard stamp != self.state.withLock({ $0.stamp }) else { return }
        do throws(ServerConfiguration.ConfigError) {
            guard let text = Self.read(path) else { throw .init("cannot read \(path) (or it is over \(Self.maxBytes) bytes)") }
            let keys = try await Self.parse(text)
            self.state.withLock {
                $0.keys = keys
                $0.stamp = stamp
                $0.reloads += 1
            }
            self.logger.info("reloaded the JWKS", metadata: ["path": "\(path)", "kids": "\(keys.keys.sorted().joined(separator: ","))"])
        } catch {
            // Keep the keys that worked; do not parse the same broken file again.
            self.state.withLock {
                $0.stamp = stamp
                $0.reloadFailures += 1
            }
            self.logger.error("the JWKS file changed but cannot be used; keeping the previous keys", metadata: ["path": "\(path)", "error": "\(error.message)"])
        }
    }

    static func stamp(_ path: String) -> FileStamp? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return FileStamp(
            size: Int64(status.st_size), seconds: Int(status.st_mtim.tv_sec), nanoseconds: Int(status.st_mtim.tv_nsec),
            inode: UInt64(status.st_ino))
    }

    static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), data.count <= Self.maxBytes else { return nil }
        return String(data: data, encoding: .utf8)
    }

    /// Checks every key of the set and builds one collection per `kid`.
    static func parse(_ text: String) async throws(ServerConfiguration.ConfigError) -> [String: Key] {
        guard text.utf8.count <= Self.maxBytes else { throw .init("the JWKS is over \(Self.maxBytes) bytes") }
        let raw: [[String: Any]]
        do {
            guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                let keys = object["keys"] as? [[String: Any]]
            else { throw ServerConfiguration.ConfigError("the JWKS is not an object with a keys array") }
            raw = keys
        } catch let error as ServerConfiguration.ConfigError {
            throw error
        } catch {
            throw .init("the JWKS is not JSON: \(error.localizedDescription)")
        }
        guard !raw.isEmpty else { throw .init("the JWKS has no keys") }
        guard raw.count <= Self.maxKeys else { throw .init("the JWKS has \(raw.count) keys; at most \(Self.maxKeys)") }
        var keys: [String: Key] = [:]
        for (index, fields) in raw.enumerated() {
            let kid = fields["kid"] as? String
            let name = "keys[\(index)]" + (kid.map { " (kid \($0))" } ?? "")
            func refuse(_ reason: String) -> ServerConfiguration.ConfigError { .init("JWKS \(name): \(reason)") }
            guard let kid, !kid.isEmpty, kid.utf8.count <= Self.maxKidBytes else {
                throw refuse("needs a kid of 1 to \(Self.maxKidBytes) bytes (tokens name their key by it)")
            }
            guard keys[kid] == nil else { throw refuse("the kid is used twice") }
            guard fields["d"] == nil else { throw refuse("is a private key (it has d); publish public keys only") }
            if let use = fields["use"] { guard use as? String == "sig" else { throw refuse("use is \(use), not sig") } }
            // The key type decides the algorithm, checked on the raw fields first (jwt-kit's
            // decoder would only say that it cannot read an unknown type).
            let kty = fields["kty"] as? String
            let crv = fields["crv"] as? String
            let algorithm: String
            switch (kty, crv) {
            case ("RSA", _): algorithm = "RS256"
            case ("EC", "P-256"): algorithm = "ES256"
            case ("OKP", "Ed25519"): algorithm = "EdDSA"
            default: throw refuse("kty \(kty ?? "none") with crv \(crv ?? "none") is not taken (RSA, EC P-256, OKP Ed25519)")
            }
            if let stated = fields["alg"] {
                guard stated as? String == algorithm else { throw refuse("alg \(stated) does not fit the key (\(algorithm))") }
            }
            var jwk: JWK
            do {
                jwk = try JSONDecoder().decode(JWK.self, from: try JSONSerialization.data(withJSONObject: fields))
            } catch {
                throw refuse("is not a JSON Web Key: \(error)")
            }
            if algorithm == "RS256" {
                guard let modulus = jwk.modulus.flatMap({ JWTVerifier.base64URLDecoded(Substring($0)) }), jwk.exponent != nil else {
                    throw refuse("an RSA key needs n and e")
                }
                let bits = modulus.drop { $0 == 0 }.count * 8
                guard bits >= 2048 else { throw refuse("the RSA key has \(bits) bits; at least 2048") }
            }
            jwk.algorithm = JWK.Algorithm(rawValue: algorithm)
            let collection = JWTKeyCollection()
            do {
                try await collection.add(jwk: jwk)
                _ = try await collection.getKey(for: JWKIdentifier(string: kid), alg: algorithm)
            } catch {
                throw refuse("is not a usable \(algorithm) key: \(JWTVerifier.reason(error))")
            }
            keys[kid] = Key(algorithm: algorithm, collection: collection)
        }
        return keys
    }
}
