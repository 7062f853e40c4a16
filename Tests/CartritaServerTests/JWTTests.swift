import CartritaEnvelope
import Crypto
import CryptoExtras
import Foundation
import JWTKit
import XCTest

@testable import CartritaServer

// MARK: - JWT bearer tokens over real sockets

/// Claims as an identity provider would issue them; every field optional so a test can leave
/// one out. Keys are generated inside the tests: nothing secret is committed.
struct IssuedClaims: JWTPayload {
    var sub: SubjectClaim?
    var iss: IssuerClaim?
    var aud: AudienceClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var role: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// An identity provider with one key of each algorithm the server takes (and one it does not).
struct TokenIssuer {
    static let issuer = "https://id.cartrita.test"
    static let audience = "cartrita-api"

    let hs256: JWTKeyCollection
    let es256: JWTKeyCollection
    let rs256: JWTKeyCollection
    let hs384: JWTKeyCollection
    let secret: String
    let es256PublicPEM: String
    let rs256PublicPEM: String

    static func make() async throws -> TokenIssuer {
        let secret = (0..<48).map { _ in String(UInt8.random(in: 0...15), radix: 16) }.joined()
        let ecKey = try ES256PrivateKey(backing: P256.Signing.PrivateKey())
        let rsaKey = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        return TokenIssuer(
            hs256: await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256),
            es256: await JWTKeyCollection().add(ecdsa: ecKey),
            rs256: await JWTKeyCollection().add(rsa: rsaKey, digestAlgorithm: .sha256),
            hs384: await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha384),
            secret: secret, es256PublicPEM: ecKey.publicKey.pemRepresentation, rs256PublicPEM: rsaKey.publicKey.pemRepresentation)
    }

    static func claims(
        user: String? = "jane", role: String? = "user", issuer: String? = Self.issuer, audience: String? = Self.audience,
        expiresIn seconds: TimeInterval? = 300, notBefore: TimeInterval? = nil
    ) -> IssuedClaims {
        IssuedClaims(
            sub: user.map { SubjectClaim(value: $0) }, iss: issuer.map { IssuerClaim(value: $0) },
            aud: audience.map { AudienceClaim(value: [$0]) }, exp: seconds.map { ExpirationClaim(value: Date().addingTimeInterval($0)) },
            nbf: notBefore.map { NotBeforeClaim(value: Date().addingTimeInterval($0)) }, role: role)
    }

    func configure(_ configuration: inout ServerConfiguration) {
        configuration.auth.jwt.hs256Secret = self.secret
        configuration.auth.jwt.es256PublicKeyPEM = self.es256PublicPEM
        configuration.auth.jwt.rs256PublicKeyPEM = self.rs256PublicPEM
        configuration.auth.jwt.issuer = Self.issuer
        configuration.auth.jwt.audience = Self.audience
    }

    static func unsigned(_ header: String, _ payload: String) -> String {
        func encode(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        return "\(encode(header)).\(encode(payload))."
    }
}

final class JWTTests: XCTestCase {
    func bearer(_ token: String) -> [String: String] { ["Authorization": "Bearer \(token)"] }

    func testTokensOfEachAlgorithmAreAcceptedAndTheirUserIsInEveryEnvelope() async throws {
        let folder = TemporaryFolder()
        let issuer = try await TokenIssuer.make()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        issuer.configure(&configuration)
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        for (name, keys) in [("hs", issuer.hs256), ("es", issuer.es256), ("rs", issuer.rs256)] {
            let token = try await keys.sign(TokenIssuer.claims(user: "\(name)-user"))
            let posted = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.bearer(token))
            XCTAssertEqual(posted.status, 200, "\(name): \(posted.text)")
            XCTAssertEqual(posted.string("status"), "completed", posted.text)
            XCTAssertEqual(posted.string("user_id"), "\(name)-user")
            let id = try XCTUnwrap(MessageID(string: try XCTUnwrap(posted.string("task_id"))))
            let records = try server.frontDoor.log.seqs(correlation: id).compactMap { try server.frontDoor.log.record($0) }
            XCTAssertGreaterThan(records.count, 4)
            XCTAssertTrue(records.allSatisfy { $0.envelope.context.userID == "\(name)-user" }, name)
            // The token's user sees their own task.
            let seen = try await client.send(.get, "/v3/tasks/\(id)", headers: self.bearer(token))
            XCTAssertEqual(seen.status, 200, seen.text)
        }
        // API keys still work beside tokens.
        let key = try server.frontDoor.store.createKey(role: "user", user: "keyed", nowMilliseconds: 1).1
        let keyed = try await client.send(.get, "/v3/tasks", headers: self.bearer(key))
        XCTAssertEqual(keyed.status, 200, keyed.text)

        await client.close()
        try await server.shutdown()
    }

    func testEachBadTokenIsRefusedWithItsOwnCode() async throws {
        let folder = TemporaryFolder()
        let issuer = try await TokenIssuer.make()
        let stranger = try await TokenIssuer.make()  // same algorithms, other keys
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.roles = ["admin": [""], "user": [""], "analyst": ["data."]]
        issuer.configure(&configuration)
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)

        let rsaPublicAsSecret = await JWTKeyCollection().add(hmac: HMACKey(from: issuer.rs256PublicPEM), digestAlgorithm: .sha256)
        let now = Int(Date().timeIntervalSince1970)
        let cases: [(String, String, Int, String)] = [
            ("expired", try await issuer.hs256.sign(TokenIssuer.claims(expiresIn: -60)), 401, "token_expired"),
            ("expired ES256", try await issuer.es256.sign(TokenIssuer.claims(expiresIn: -5)), 401, "token_expired"),
            ("not yet valid", try await issuer.rs256.sign(TokenIssuer.claims(notBefore: 120)), 401, "token_not_yet_valid"),
            ("wrong issuer", try await issuer.hs256.sign(TokenIssuer.claims(issuer: "https://evil.test")), 401, "token_issuer_invalid"),
            ("wrong audience", try await issuer.es256.sign(TokenIssuer.claims(audience: "another-api")), 401, "token_audience_invalid"),
            ("HS256, other secret", try await stranger.hs256.sign(TokenIssuer.claims()), 401, "token_signature_invalid"),
            ("ES256, other key", try await stranger.es256.sign(TokenIssuer.claims()), 401, "token_signature_invalid"),
            ("RS256, other key", try await stranger.rs256.sign(TokenIssuer.claims()), 401, "token_signature_invalid"),
            ("alg none", TokenIssuer.unsigned(#"{"alg":"none","typ":"JWT"}"#, #"{"sub":"jane","role":"admin","iss":"\#(TokenIssuer.issuer)","aud":"\#(TokenIssuer.audience)","exp":\#(now + 300)}"#), 401, "token_algorithm_not_allowed"),
            ("alg HS384", try await issuer.hs384.sign(TokenIssuer.claims()), 401, "token_algorithm_not_allowed"),
            ("no alg", TokenIssuer.unsigned(#"{"typ":"JWT"}"#, "{}"), 401, "token_malformed"),
            ("not JSON", "bm90IGpzb24.e30.c2ln", 401, "token_malformed"),
            ("no exp", try await issuer.hs256.sign(TokenIssuer.claims(expiresIn: nil)), 401, "token_claims_invalid"),
            ("no sub", try await issuer.hs256.sign(TokenIssuer.claims(user: nil)), 401, "token_claims_invalid"),
            ("no role", try await issuer.hs256.sign(TokenIssuer.claims(role: nil)), 401, "token_claims_invalid"),
            ("role not configured", try await issuer.rs256.sign(TokenIssuer.claims(role: "ghost")), 403, "role_not_allowed"),
            ("role may not run text.*", try await issuer.hs256.sign(TokenIssuer.claims(role: "analyst")), 403, "forbidden"),
        ]
        for (name, token, status, code) in cases {
            let answer = try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.bearer(token))
            XCTAssertEqual(answer.status, status, "\(name): \(answer.text)")
            XCTAssertEqual(answer.errorCode, code, "\(name): \(answer.text)")
        }
        // Algorithm confusion: HS256 signed with the RS256 public key as the secret. The server
        // checks an HS256 token with its HS256 secret only, so the signature fails.
        let confused = try await rsaPublicAsSecret.sign(TokenIssuer.claims(role: "admin"))
        let answer = try await client.send(.get, "/v3/tasks", headers: self.bearer(confused))
        XCTAssertEqual(answer.errorCode, "token_signature_invalid", answer.text)
        XCTAssertEqual(server.frontDoor.log.lastSeq, 0, "no refused request reached the log")

        await client.close()
        try await server.shutdown()
    }

    /// Without that algorithm's key, a token of it is refused even if its signature is good.
    func testAnAlgorithmWithoutAKeyIsRefused() async throws {
        let folder = TemporaryFolder()
        let issuer = try await TokenIssuer.make()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.jwt.rs256PublicKeyPEM = issuer.rs256PublicPEM
        configuration.auth.jwt.issuer = TokenIssuer.issuer
        configuration.auth.jwt.audience = TokenIssuer.audience
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)
        let hs = try await client.send(.get, "/v3/tasks", headers: self.bearer(try await issuer.hs256.sign(TokenIssuer.claims())))
        XCTAssertEqual(hs.status, 401)
        XCTAssertEqual(hs.errorCode, "token_algorithm_not_allowed")
        XCTAssertTrue(hs.text.contains("RS256"), hs.text)
        let rs = try await client.send(.get, "/v3/tasks", headers: self.bearer(try await issuer.rs256.sign(TokenIssuer.claims())))
        XCTAssertEqual(rs.status, 200, rs.text)
        await client.close()
        try await server.shutdown()
    }

    func testJWTConfigurationErrorsAreNamedAtStart() async throws {
        var jwt = ServerConfiguration.JWT()
        let none = try await JWTVerifier.make(jwt)
        XCTAssertNil(none, "no key: JWT is off")
        jwt.hs256Secret = "short"
        jwt.issuer = "i"
        jwt.audience = "a"
        await self.assertRefused(jwt, "hs256_secret")
        jwt.hs256Secret = String(repeating: "s", count: 32)
        jwt.issuer = nil
        await self.assertRefused(jwt, "issuer")
        jwt.issuer = "i"
        jwt.audience = ""
        await self.assertRefused(jwt, "audience")
        jwt.audience = "a"
        jwt.es256PublicKeyPEM = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"
        await self.assertRefused(jwt, "es256_public_key")
        jwt.es256PublicKeyPEM = nil
        // A 1024-bit RSA key is too small.
        let small = try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024))
        jwt.rs256PublicKeyPEM = small.publicKey.pemRepresentation
        await self.assertRefused(jwt, "rs256_public_key")
        jwt.rs256PublicKeyPEM = nil
        let made = try await JWTVerifier.make(jwt)
        XCTAssertEqual(made?.algorithms, ["HS256"])

        // The config file and the environment set the same fields; unknown keys are named.
        let folder = TemporaryFolder()
        let pemPath = folder.path + "/es256.pem"
        let issuer = try await TokenIssuer.make()
        try issuer.es256PublicPEM.write(toFile: pemPath, atomically: true, encoding: .utf8)
        var configuration = ServerConfiguration()
        try configuration.apply(
            try JSONParser().parse(
                #"{"auth": {"protect_metrics": true, "jwt": {"hs256_secret": "\#(issuer.secret)", "es256_public_key_file": "\#(pemPath)", "issuer": "iss", "audience": "aud", "leeway_s": 5}}}"#
            ))
        XCTAssertEqual(configuration.auth.jwt.hs256Secret, issuer.secret)
        XCTAssertEqual(configuration.auth.jwt.es256PublicKeyPEM, issuer.es256PublicPEM)
        XCTAssertEqual(configuration.auth.jwt.leewaySeconds, 5)
        XCTAssertTrue(configuration.auth.protectMetrics)
        XCTAssertThrowsError(try configuration.apply(try JSONParser().parse(#"{"auth": {"jwt": {"hs256": "x"}}}"#))) { error in
            XCTAssertTrue("\(error)".contains("auth.jwt.hs256"), "\(error)")
        }
        XCTAssertThrowsError(try configuration.apply(try JSONParser().parse(#"{"auth": {"jwt": {"rs256_public_key_file": "/nonexistent.pem"}}}"#)))
        try configuration.apply(environment: [
            "CARTRITA_JWT_RS256_PUBLIC_KEY": issuer.rs256PublicPEM, "CARTRITA_JWT_ISSUER": "env-iss", "CARTRITA_JWT_AUDIENCE": "env-aud",
            "CARTRITA_JWT_LEEWAY_S": "0", "CARTRITA_PROTECT_METRICS": "false",
        ])
        XCTAssertEqual(configuration.auth.jwt.rs256PublicKeyPEM, issuer.rs256PublicPEM)
        XCTAssertEqual(configuration.auth.jwt.issuer, "env-iss")
        XCTAssertFalse(configuration.auth.protectMetrics)
        XCTAssertThrowsError(try configuration.apply(environment: ["CARTRITA_PROTECT_METRICS": "maybe"]))
        let verifier = try await JWTVerifier.make(configuration.auth.jwt)
        XCTAssertEqual(verifier?.algorithms, ["ES256", "HS256", "RS256"])

        // A server with a bad key does not start, and says why.
        let badFolder = TemporaryFolder()
        var bad = testConfiguration(badFolder)
        bad.auth.jwt.hs256Secret = "short"
        do {
            _ = try await Server.start(configuration: bad)
            XCTFail("a server with a bad JWT key started")
        } catch {
            XCTAssertTrue("\(error)".contains("auth.jwt"), "\(error)")
        }
    }

    /// Clock skew: `leeway_s` widens `exp` and `nbf` by that much, and no more. An audience
    /// list passes when it includes the configured audience.
    func testLeewayAndAudienceLists() async throws {
        let issuer = try await TokenIssuer.make()
        var jwt = ServerConfiguration.JWT()
        jwt.hs256Secret = issuer.secret
        jwt.issuer = TokenIssuer.issuer
        jwt.audience = TokenIssuer.audience
        jwt.leewaySeconds = 30
        let made = try await JWTVerifier.make(jwt)
        let verifier = try XCTUnwrap(made)
        let now = Date()
        let recentlyExpired = try await issuer.hs256.sign(TokenIssuer.claims(expiresIn: -10))
        let verified = try await verifier.verify(recentlyExpired, now: now)
        XCTAssertEqual(verified.user, "jane")
        XCTAssertEqual(verified.role, "user")
        do {
            _ = try await verifier.verify(recentlyExpired, now: now.addingTimeInterval(25))
            XCTFail("35 s past exp with 30 s of leeway")
        } catch {
            XCTAssertEqual(error.code, .tokenExpired)
        }
        let soon = try await issuer.hs256.sign(TokenIssuer.claims(notBefore: 20))
        _ = try await verifier.verify(soon, now: now)
        do {
            _ = try await verifier.verify(soon, now: now.addingTimeInterval(-15))
            XCTFail("35 s before nbf with 30 s of leeway")
        } catch {
            XCTAssertEqual(error.code, .tokenNotYetValid)
        }
        var several = TokenIssuer.claims()
        several.aud = AudienceClaim(value: ["billing", TokenIssuer.audience])
        _ = try await verifier.verify(try await issuer.hs256.sign(several), now: now)
        several.aud = AudienceClaim(value: ["billing", "search"])
        let notOurs = try await issuer.hs256.sign(several)
        do {
            _ = try await verifier.verify(notOurs, now: now)
            XCTFail("an audience list without ours")
        } catch {
            XCTAssertEqual(error.code, .tokenAudienceInvalid)
        }
        // Over the size limit: refused before anything is decoded.
        do {
            _ = try await verifier.verify(String(repeating: "a", count: JWTVerifier.maxTokenBytes + 1), now: now)
            XCTFail("an oversized token")
        } catch {
            XCTAssertEqual(error.code, .tokenMalformed)
        }
    }

    func assertRefused(_ jwt: ServerConfiguration.JWT, _ setting: String, file: StaticString = #filePath, line: UInt = #line) async {
        do {
            _ = try await JWTVerifier.make(jwt)
            XCTFail("accepted a bad \(setting)", file: file, line: line)
        } catch {
            XCTAssertTrue(error.message.contains(setting), error.message, file: file, line: line)
        }
    }

    func testMetricsAndReadyCanRequireCredentials() async throws {
        let folder = TemporaryFolder()
        let issuer = try await TokenIssuer.make()
        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.protectMetrics = true
        issuer.configure(&configuration)
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)
        for path in ["/metrics", "/ready"] {
            let open = try await client.send(.get, path)
            XCTAssertEqual(open.status, 401, path)
            XCTAssertEqual(open.errorCode, "unauthenticated")
            let expired = try await client.send(.get, path, headers: self.bearer(try await issuer.hs256.sign(TokenIssuer.claims(expiresIn: -60))))
            XCTAssertEqual(expired.errorCode, "token_expired")
            let token = try await issuer.es256.sign(TokenIssuer.claims(user: "prometheus", role: "user"))
            let scraped = try await client.send(.get, path, headers: self.bearer(token))
            XCTAssertEqual(scraped.status, 200, "\(path): \(scraped.text)")
        }
        let health = try await client.send(.get, "/health")
        XCTAssertEqual(health.status, 200, "liveness stays open")
        await client.close()
        try await server.shutdown()
    }
}
