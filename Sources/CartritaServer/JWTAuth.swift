import CartritaEnvelope
import Foundation
import JWTKit
import Logging

// MARK: - JWT bearer tokens (jwt-kit)

/// Verifies `Authorization: Bearer JWT` tokens: HS256 (a shared secret), ES256 and RS256 (PEM
/// public keys), and the keys of a JSON Web Key Set chosen by the token's `kid` (RS256, ES256,
/// EdDSA; see `JWKSKeys`), with issuer, audience and expiry always checked and `nbf` when present.
///
/// The algorithm is chosen by the server, never by the token: each algorithm has its own key
/// collection, and a token is checked only against the collection of the algorithm its header
/// names, when that algorithm is configured. jwt-kit alone would try its default key whatever
/// the header says; dispatching here is what makes `alg: none`, an unknown algorithm, and the
/// classic confusion (an RS256 public key used as an HS256 secret) impossible.
///
/// A token with a `kid` is checked with that key of the JWKS when one is configured (its `alg`
/// must be the key's); a token without one, or without a JWKS, with the key of its algorithm.
///
/// Errors are 401 with stable codes (`token_malformed`, `token_algorithm_not_allowed`,
/// `token_key_unknown`,
/// `token_signature_invalid`, `token_expired`, `token_not_yet_valid`, `token_issuer_invalid`,
/// `token_audience_invalid`, `token_claims_invalid`); a valid token whose role the server does
/// not configure is 403 `role_not_allowed` (decided by the `Authenticator`).
struct JWTVerifier: Sendable {
    /// Longest token read; anything longer is refused before it is decoded.
    static let maxTokenBytes = 16 << 10
    /// Shortest HS256 secret: RFC 7518 §3.2 asks for a key at least as long as the hash.
    static let minSecretBytes = 32

    let keys: [String: JWTKeyCollection]
    let jwks: JWKSKeys?
    let issuer: String
    let audience: String
    let leewaySeconds: Int

    /// The algorithms this server takes, sorted (for messages).
    var algorithms: [String] { Set(self.keys.keys).union(self.jwks?.algorithms ?? []).sorted() }

    /// Builds the key collections from the configuration; a key that does not parse is a
    /// configuration error naming the key, at start, not a 401 on every request later.
    static func make(
        _ configuration: ServerConfiguration.JWT, logger: Logger = Logger(label: "cartrita.jwt")
    ) async throws(ServerConfiguration.ConfigError) -> JWTVerifier? {
        guard configuration.isEnabled else { return nil }
        guard let issuer = configuration.issuer, !issuer.isEmpty else {
            throw .init("auth.jwt.issuer is required when a JWT key is set (tokens of any issuer would pass)")
        }
        guard let audience = configuration.audience, !audience.isEmpty else {
            throw .init("auth.jwt.audience is required when a JWT key is set (tokens meant for other services would pass)")
        }
        var keys: [String: JWTKeyCollection] = [:]
        if let secret = configuration.hs256Secret {
            guard secret.utf8.count >= Self.minSecretBytes else {
                throw .init("auth.jwt.hs256_secret must be at least \(Self.minSecretBytes) bytes")
            }
            keys["HS256"] = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        if let pem = configuration.es256PublicKeyPEM {
            let key: ES256PublicKey
            do {
                key = try ES256PublicKey(pem: pem)
            } catch {
                throw .init("auth.jwt.es256_public_key is not a P-256 public key in PEM: \(error)")
            }
            keys["ES256"] = await JWTKeyCollection().add(ecdsa: key)
        }
        if let pem = configuration.rs256PublicKeyPEM {
            let key: Insecure.RSA.PublicKey
            do {
                key = try Insecure.RSA.PublicKey(pem: pem)
            } catch {
                throw .init("auth.jwt.rs256_public_key is not an RSA public key of 2048 bits or more in PEM: \(error)")
            }
            keys["RS256"] = await JWTKeyCollection().add(rsa: key, digestAlgorithm: .sha256)
        }
        var jwks: JWKSKeys?
        if let json = configuration.jwksJSON {
            jwks = try await JWKSKeys.load(.inline(json), reloadInterval: .zero, logger: logger)
        } else if let path = configuration.jwksFile {
            jwks = try await JWKSKeys.load(.file(path), reloadInterval: .seconds(configuration.jwksReloadSeconds), logger: logger)
        }
        return JWTVerifier(keys: keys, jwks: jwks, issuer: issuer, audience: audience, leewaySeconds: configuration.leewaySeconds)
    }

    /// A JWT in compact form is three base64url segments; API keys never contain a dot.
    static func looksLikeJWT(_ token: String) -> Bool {
        token.utf8.count(where: { $0 == UInt8(ascii: ".") }) == 2
    }

    /// The claims this server reads. Checks are made by `verify(_:now:)`, which knows the
    /// configured issuer and audience and names each failure; jwt-kit's hook does nothing.
    struct Claims: JWTPayload {
        var sub: SubjectClaim?
        var iss: IssuerClaim?
        var aud: AudienceClaim?
        var exp: ExpirationClaim?
        var nbf: NotBeforeClaim?
        var role: String?

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// The token's user id (`sub`) and role, once signature and claims are checked.
    func verify(_ token: String, now: Date) async throws(APIError) -> (user: String, role: String) {
        func refuse(_ code: APIError.Code, _ message: String) -> APIError { APIError(.unauthorized, code, message) }
        guard token.utf8.count <= Self.maxTokenBytes else {
            throw refuse(.tokenMalformed, "the token is over \(Self.maxTokenBytes) bytes")
        }
        let (algorithm, kid) = try Self.header(ofToken: token)
        let collection: JWTKeyCollection
        let keyName: String
        if let kid, let jwks = self.jwks {
            guard let key = await jwks.key(kid) else {
                throw refuse(.tokenKeyUnknown, "the token's key \(kid) is not in the JWKS (it has \(jwks.kids.joined(separator: ", ")))")
            }
            guard key.algorithm == algorithm else {
                throw refuse(.tokenAlgorithmNotAllowed, "the token says \(algorithm) but its key \(kid) is \(key.algorithm)")
            }
            collection = key.collection
            keyName = "JWKS key \(kid)"
        } else if let byAlgorithm = self.keys[algorithm] {
            collection = byAlgorithm
            keyName = "configured \(algorithm) key"
        } else if kid == nil, let jwks = self.jwks, jwks.algorithms.contains(algorithm) {
            throw refuse(.tokenKeyUnknown, "the token names no key (kid); this server's \(algorithm) keys are in a JWKS")
        } else {
            throw refuse(
                .tokenAlgorithmNotAllowed,
                "the token is signed with \(algorithm); this server takes \(self.algorithms.joined(separator: ", "))")
        }
        let claims: Claims
        do {
            claims = try await collection.verify(token, as: Claims.self)
        } catch let error as JWTError where error.errorType == .signatureVerificationFailed {
            throw refuse(.tokenSignatureInvalid, "the token's signature does not verify with the \(keyName)")
        } catch {
            throw refuse(.tokenMalformed, "the token cannot be read: \(Self.reason(error))")
        }
        // Issuer and audience first: a token meant for another service says nothing about time.
        guard let issuer = claims.iss?.value else { throw refuse(.tokenClaimsInvalid, "the token has no iss claim") }
        guard issuer == self.issuer else { throw refuse(.tokenIssuerInvalid, "the token's issuer \(issuer) is not \(self.issuer)") }
        guard let audience = claims.aud?.value else { throw refuse(.tokenClaimsInvalid, "the token has no aud claim") }
        guard audience.contains(self.audience) else {
            throw refuse(.tokenAudienceInvalid, "the token's audience \(audience.joined(separator: ", ")) does not include \(self.audience)")
        }
        // A token without an expiry would be a password that never changes: refused.
        guard let expiry = claims.exp?.value else { throw refuse(.tokenClaimsInvalid, "the token has no exp claim") }
        let leeway = TimeInterval(self.leewaySeconds)
        guard now.timeIntervalSince(expiry) < leeway else {
            throw refuse(.tokenExpired, "the token expired at \(ISO8601Milliseconds.format(Int64(expiry.timeIntervalSince1970 * 1000)))")
        }
        if let notBefore = claims.nbf?.value, notBefore.timeIntervalSince(now) > leeway {
            throw refuse(
                .tokenNotYetValid, "the token is valid from \(ISO8601Milliseconds.format(Int64(notBefore.timeIntervalSince1970 * 1000)))")
        }
        guard let user = claims.sub?.value, !user.isEmpty, user.utf8.count <= 256 else {
            throw refuse(.tokenClaimsInvalid, "the token's sub claim (the user id) is missing, empty or over 256 bytes")
        }
        guard let role = claims.role, !role.isEmpty else { throw refuse(.tokenClaimsInvalid, "the token has no role claim") }
        return (user, role)
    }

    /// The `alg` and `kid` of the token's header, read without trusting anything else in it.
    static func header(ofToken token: String) throws(APIError) -> (algorithm: String, kid: String?) {
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3, let header = Self.base64URLDecoded(segments[0]) else {
            throw APIError(.unauthorized, .tokenMalformed, "the token is not three base64url segments")
        }
        let json: JSON
        do {
            json = try JSONParser(limits: .init(maxDepth: 4, maxInputBytes: Self.maxTokenBytes)).parse(header)
        } catch {
            throw APIError(.unauthorized, .tokenMalformed, "the token's header is not JSON: \(error)")
        }
        guard case .string(let algorithm)? = json["alg"] else {
            throw APIError(.unauthorized, .tokenMalformed, "the token's header has no alg")
        }
        switch json["kid"] {
        case nil: return (algorithm, nil)
        case .string(let kid)?: return (algorithm, kid)
        default: throw APIError(.unauthorized, .tokenMalformed, "the token's kid is not a string")
        }
    }

    static func base64URLDecoded(_ text: Substring) -> [UInt8]? {
        var base64 = String(text).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64).map { [UInt8]($0) }
    }

    /// jwt-kit's reason without its type dump, for the error message.
    static func reason(_ error: any Error) -> String {
        if let error = error as? JWTError, let reason = error.reason { return reason }
        return "\(error)"
    }
}
