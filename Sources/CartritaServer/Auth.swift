import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

// MARK: - Who is calling

/// The caller of one request, from its API key (or the anonymous local user when auth is off).
struct Caller: Sendable, Equatable {
    /// Goes into `context.user_id` of every envelope of the caller's tasks.
    var userID: String
    var role: String
    /// Task-type prefixes the role may submit; `""` allows every type.
    var allowedPrefixes: [String]

    var isAdmin: Bool { self.role == "admin" }

    func mayRun(taskType: String) -> Bool {
        self.allowedPrefixes.contains { $0.isEmpty || taskType.hasPrefix($0) }
    }

    /// Admins see every task; a user sees the tasks whose envelopes carry their user id.
    func maySee(user: String?) -> Bool {
        self.isAdmin || user == self.userID
    }

    static let anonymousUserID = "anonymous"
}

struct Authenticator: Sendable {
    let configuration: ServerConfiguration.Auth
    let store: ServerStore
    /// Nil when no JWT key is configured: then every bearer token is taken as an API key.
    let jwt: JWTVerifier?

    /// The key a request presents: `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    static func presentedKey(_ headers: HTTPFields) -> String? {
        if let value = headers[.authorization] {
            let parts = value.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]).trimmingCharacters(in: .whitespaces) }
            return ""  // some other scheme: present, and not one we take
        }
        if let name = HTTPField.Name("X-API-Key"), let value = headers[name] { return value }
        return nil
    }

    /// `authority` is the request's Host (for the same-origin check). A bearer credential with
    /// the shape of a JWT goes to the JWT verifier when one is configured, anything else is an
    /// API key; both end in the same `Caller` (user id, role, the role's prefixes).
    func caller(headers: HTTPFields, authority: String?, now: Date = Date()) async throws(APIError) -> Caller {
        try self.checkOrigin(headers: headers, authority: authority)
        guard let key = Self.presentedKey(headers) else {
            guard !self.configuration.required else {
                throw APIError(
                    .unauthorized, .unauthenticated, "credentials are required: Authorization: Bearer KEY_OR_JWT or X-API-Key: KEY")
            }
            return Caller(userID: Caller.anonymousUserID, role: "admin", allowedPrefixes: [""])
        }
        // A key that is presented is checked even when auth is optional: a wrong key is a
        // mistake the client should hear about, not a silent downgrade to anonymous.
        let user: String
        let role: String
        if let jwt = self.jwt, JWTVerifier.looksLikeJWT(key) {
            (user, role) = try await jwt.verify(key, now: now)
        } else {
            guard let record = self.store.authenticate(key) else {
                throw APIError(.unauthorized, .unauthenticated, "the API key is not valid (unknown or revoked)")
            }
            (user, role) = (record.user, record.role)
        }
        guard let prefixes = self.configuration.roles[role] else {
            throw APIError(.forbidden, .roleNotAllowed, "role \(role) is not configured on this server")
        }
        return Caller(userID: user, role: role, allowedPrefixes: prefixes)
    }

    /// A browser sends `Origin`; a page of another site must not drive this server with the
    /// user's network position. Same-origin requests (Origin matches Host) and the configured
    /// origins pass; requests without Origin (curl, programs) are not browsers' and pass.
    func checkOrigin(headers: HTTPFields, authority: String?) throws(APIError) {
        guard let origin = headers[.origin] else { return }
        if self.configuration.allowedOrigins.contains(origin) { return }
        if let host = authority, origin == "http://\(host)" || origin == "https://\(host)" {
            return
        }
        throw APIError(.forbidden, .originNotAllowed, "origin \(origin) is not allowed")
    }
}

// MARK: - Rate limit

/// A token bucket per user: `ratePerSecond` tokens a second, at most `burst` saved up. Refill is
/// computed from the monotonic clock at each take, so idle users cost nothing. Buckets of users
/// idle long enough to be full again are dropped when the table passes `maxUsers`.
final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var atNanoseconds: UInt64
    }

    let ratePerSecond: Double
    let burst: Double
    let maxUsers = 100_000
    let buckets = Mutex<[String: Bucket]>([:])

    init(ratePerSecond: Double, burst: Double) {
        self.ratePerSecond = ratePerSecond
        self.burst = max(1, burst)
    }

    /// Takes one token for `user`; nil when allowed, else the seconds until one is there.
    func take(_ user: String, nowNanoseconds: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Int? {
        self.buckets.withLock { buckets in
            var bucket = buckets[user] ?? Bucket(tokens: self.burst, atNanoseconds: nowNanoseconds)
            let elapsed = Double(nowNanoseconds &- bucket.atNanoseconds) / 1e9
            bucket.tokens = min(self.burst, bucket.tokens + max(0, elapsed) * self.ratePerSecond)
            bucket.atNanoseconds = nowNanoseconds
            if buckets.count >= self.maxUsers && buckets[user] == nil {
                let fullAfter = self.burst / self.ratePerSecond
                buckets = buckets.filter { Double(nowNanoseconds &- $0.value.atNanoseconds) / 1e9 < fullAfter }
            }
            guard bucket.tokens >= 1 else {
                buckets[user] = bucket
                return max(1, Int(((1 - bucket.tokens) / self.ratePerSecond).rounded(.up)))
            }
            bucket.tokens -= 1
            buckets[user] = bucket
            return nil
        }
    }
}
