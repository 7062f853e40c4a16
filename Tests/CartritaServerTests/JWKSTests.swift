import CartritaEnvelope
import Crypto
import CryptoExtras
import Foundation
import JWTKit
import XCTest

@testable import CartritaServer

// MARK: - JSON Web Key Sets over real sockets: keys by kid, rotation through the file

/// An identity provider that publishes its public keys as a JWKS and signs with a `kid`.
struct KeySetIssuer {
    enum Kind { case ec, rsa, ed }

    let kid: String
    let kind: Kind
    let signer: JWTKeyCollection
    /// The public key as a JWK object.
    let jwk: [String: Any]

    static func make(_ kind: Kind, kid: String) async throws -> KeySetIssuer {
        func base64URL(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let id = JWKIdentifier(string: kid)
        switch kind {
        case .ec:
            let key = P256.Signing.PrivateKey()
            let raw = key.publicKey.rawRepresentation
            return KeySetIssuer(
                kid: kid, kind: kind, signer: await JWTKeyCollection().add(ecdsa: try ES256PrivateKey(backing: key), kid: id),
                jwk: ["kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": base64URL(raw.prefix(32)), "y": base64URL(raw.suffix(32))])
        case .rsa:
            let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            let primitives = try key.publicKey.getKeyPrimitives()
            return KeySetIssuer(
                kid: kid, kind: kind,
                signer: await JWTKeyCollection().add(rsa: try Insecure.RSA.PrivateKey(backing: key), digestAlgorithm: .sha256, kid: id),
                jwk: ["kty": "RSA", "kid": kid, "alg": "RS256", "n": base64URL(primitives.modulus), "e": base64URL(primitives.publicExponent)])
        case .ed:
            let key = Curve25519.Signing.PrivateKey()
            return KeySetIssuer(
                kid: kid, kind: kind, signer: await JWTKeyCollection().add(eddsa: EdDSA.PrivateKey(backing: key), kid: id),
                jwk: ["kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64URL(key.publicKey.rawRepresentation)])
        }
    }

    func token(user: String = "jane", kid: String? = nil) async throws -> String {
        try await self.signer.sign(TokenIssuer.claims(user: user), kid: JWKIdentifier(string: kid ?? self.kid))
    }

    static func jwks(_ keys: [[String: Any]]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: ["keys": keys], options: [.sortedKeys]), as: UTF8.self)
    }
}

final class JWKSTests: XCTestCase {
    func bearer(_ token: String) -> [String: String] { ["Authorization": "Bearer \(token)"] }

    /// Replaces the file in one step (a reader never sees half a set), as key-publishing tools do.
    func publish(_ text: String, to path: String) throws {
        try text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
        XCTAssertEqual(rename(path + ".new", path), 0)
    }

    func testTokensChooseTheirKeyByKidAndTheFileRotatesKeysWithoutARestart() async throws {
        let folder = TemporaryFolder()
        let ec = try await KeySetIssuer.make(.ec, kid: "ec-2026-11")
        let rsa = try await KeySetIssuer.make(.rsa, kid: "rsa-2026-11")
        let ed = try await KeySetIssuer.make(.ed, kid: "ed-2026-11")
        let next = try await KeySetIssuer.make(.ec, kid: "ec-2026-12")
        let impostor = try await KeySetIssuer.make(.ec, kid: "ec-2026-11")  // same kid, other key
        let path = folder.path + "/jwks.json"
        try self.publish(try KeySetIssuer.jwks([ec.jwk, rsa.jwk, ed.jwk]), to: path)

        var configuration = testConfiguration(folder)
        configuration.auth.required = true
        configuration.auth.jwt.jwksFile = path
        configuration.auth.jwt.jwksReloadSeconds = 0  // check the file on every token with a kid
        configuration.auth.jwt.issuer = TokenIssuer.issuer
        configuration.auth.jwt.audience = TokenIssuer.audience
        let server = try await Server.start(configuration: configuration)
        let client = Client(port: server.port)
        func post(_ token: String) async throws -> Answer {
            try await client.send(.post, "/v3/tasks", body: textStatsBody, headers: self.bearer(token))
        }

        // Each key of the set verifies its own tokens, whatever its algorithm.
        for issuer in [ec, rsa, ed] {
            let answer = try await post(try await issuer.token(user: issuer.kid))
            XCTAssertEqual(answer.status, 200, "\(issuer.kid): \(answer.text)")
            XCTAssertEqual(answer.string("user_id"), issuer.kid)
        }
        // What must be refused, each with its own code.
        let cases: [(String, String, String)] = [
            ("a kid the set does not have", try await next.token(), "token_key_unknown"),
            ("another key under a known kid", try await impostor.token(), "token_signature_invalid"),
            ("an ES256 token naming the RSA key", try await ec.token(kid: rsa.kid), "token_algorithm_not_allowed"),
            ("no kid, and every ES256 key is in the set", try await JWTKeyCollection().add(ecdsa: ES256PrivateKey()).sign(TokenIssuer.claims()), "token_key_unknown"),
        ]
        for (name, token, code) in cases {
            let answer = try await post(token)
            XCTAssertEqual(answer.status, 401, "\(name): \(answer.text)")
            XCTAssertEqual(answer.errorCode, code, "\(name): \(answer.text)")
        }

        // Rotation: the provider adds next month's key and retires the RSA one. A new kid reads
        // the changed file (at most once a second), a retired key stops verifying.
        try self.publish(try KeySetIssuer.jwks([ec.jwk, ed.jwk, next.jwk]), to: path)
        try await Task.sleep(for: .milliseconds(1_100))
        let rotated = try await post(try await next.token(user: "next"))
        XCTAssertEqual(rotated.status, 200, rotated.text)
        let retired = try await post(try await rsa.token())
        XCTAssertEqual(retired.errorCode, "token_key_unknown", retired.text)
        XCTAssertEqual(server.frontDoor.authenticator.jwt?.jwks?.reloads.done, 1)

        // A broken file does not take the working keys away.
        try self.publish(#"{"keys": [{"kty": "EC", "kid": "half"#, to: path)
        try await Task.sleep(for: .milliseconds(1_100))
        let kept = try await post(try await next.token())
        XCTAssertEqual(kept.status, 200, kept.text)
        XCTAssertEqual(server.frontDoor.authenticator.jwt?.jwks?.reloads.failed, 1)

        await client.close()
        try await server.shutdown()
    }

    func testKeySetErrorsAreNamedAtStart() async throws {
        let ec = try await KeySetIssuer.make(.ec, kid: "ec")
        let rsa = try await KeySetIssuer.make(.rsa, kid: "rsa")
        func assertRefused(_ keys: [[String: Any]], _ reason: String, line: UInt = #line) async throws {
            var jwt = ServerConfiguration.JWT()
            jwt.issuer = "i"
            jwt.audience = "a"
            jwt.jwksJSON = try KeySetIssuer.jwks(keys)
            do {
                _ = try await JWTVerifier.make(jwt)
                XCTFail("accepted a JWKS with \(reason)", line: line)
            } catch {
                XCTAssertTrue(error.message.contains(reason), error.message, line: line)
            }
        }
        func with(_ key: [String: Any], _ changes: [String: Any?]) -> [String: Any] {
            var key = key
            for (name, value) in changes { key[name] = value }
            return key
        }
        let small = try _RSA.Signing.PrivateKey(unsafeKeySize: .init(bitCount: 1024)).publicKey.getKeyPrimitives()
        try await assertRefused([], "no keys")
        try await assertRefused([ec.jwk, with(rsa.jwk, ["kid": "ec"])], "the kid is used twice")
        try await assertRefused([with(ec.jwk, ["kid": nil])], "needs a kid")
        try await assertRefused([with(ec.jwk, ["d": "AAAA"])], "private key")
        try await assertRefused([with(ec.jwk, ["use": "enc"])], "use is enc")
        try await assertRefused([with(ec.jwk, ["alg": "RS256"])], "alg RS256 does not fit")
        try await assertRefused([with(ec.jwk, ["crv": "P-384"])], "is not taken")
        try await assertRefused([with(ec.jwk, ["x": "AAAA"])], "kid ec")
        try await assertRefused([with(rsa.jwk, ["n": small.modulus.base64EncodedString()])], "1024 bits")
        try await assertRefused([["kty": "oct", "kid": "hmac", "k": "c2VjcmV0"]], "is not taken")

        // The config file takes the set inline or as a file; the environment too.
        let folder = TemporaryFolder()
        var configuration = ServerConfiguration()
        let set = try KeySetIssuer.jwks([ec.jwk, rsa.jwk])
        try configuration.apply(try JSONParser().parse(#"{"auth": {"jwt": {"jwks": \#(set), "issuer": "i", "audience": "a", "jwks_reload_s": 7}}}"#))
        XCTAssertEqual(configuration.auth.jwt.jwksReloadSeconds, 7)
        let inline = try await JWTVerifier.make(configuration.auth.jwt)
        XCTAssertEqual(inline?.algorithms, ["ES256", "RS256"])
        XCTAssertEqual(inline?.jwks?.kids, ["ec", "rsa"])
        XCTAssertThrowsError(try configuration.apply(try JSONParser().parse(#"{"auth": {"jwt": {"jwks": "text"}}}"#)))
        try configuration.apply(environment: ["CARTRITA_JWT_JWKS_FILE": folder.path + "/missing.json"])
        configuration.auth.jwt.jwksJSON = nil
        do {
            _ = try await JWTVerifier.make(configuration.auth.jwt)
            XCTFail("a missing JWKS file was accepted")
        } catch {
            XCTAssertTrue(error.message.contains("missing.json"), error.message)
        }
    }
}
