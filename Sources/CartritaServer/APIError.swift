import CartritaEnvelope
import Hummingbird

// MARK: - Errors as the API shows them

/// Every failure the API answers: an HTTP status, a stable machine code, a message for a person,
/// and the field at fault when there is one. Rendered as
/// `{"error": {"code": "...", "message": "...", "field": "..."}}`; codes never change meaning,
/// new ones may be added (clients switch on `code`, never on `message`).
struct APIError: Error, CustomStringConvertible {
    struct Code: RawRepresentable, Hashable, Sendable {
        var rawValue: String
        init(rawValue: String) { self.rawValue = rawValue }

        static let malformedJSON = Code(rawValue: "malformed_json")
        static let invalidField = Code(rawValue: "invalid_field")
        static let unknownField = Code(rawValue: "unknown_field")
        static let missingField = Code(rawValue: "missing_field")
        static let invalidParameter = Code(rawValue: "invalid_parameter")
        static let unauthenticated = Code(rawValue: "unauthenticated")
        static let forbidden = Code(rawValue: "forbidden")
        /// The credentials are good but their role is not configured on this server.
        static let roleNotAllowed = Code(rawValue: "role_not_allowed")
        // JWT bearer tokens (401): what exactly is wrong with the token.
        static let tokenMalformed = Code(rawValue: "token_malformed")
        static let tokenAlgorithmNotAllowed = Code(rawValue: "token_algorithm_not_allowed")
        static let tokenKeyUnknown = Code(rawValue: "token_key_unknown")
        static let tokenSignatureInvalid = Code(rawValue: "token_signature_invalid")
        static let tokenExpired = Code(rawValue: "token_expired")
        static let tokenNotYetValid = Code(rawValue: "token_not_yet_valid")
        static let tokenIssuerInvalid = Code(rawValue: "token_issuer_invalid")
        static let tokenAudienceInvalid = Code(rawValue: "token_audience_invalid")
        static let tokenClaimsInvalid = Code(rawValue: "token_claims_invalid")
        /// The emergency override names a supervisor this server does not run.
        static let unknownSupervisor = Code(rawValue: "unknown_supervisor")
        /// The task's domain supervisor is paused by an admin (503, Retry-After).
        static let paused = Code(rawValue: "paused")
        static let originNotAllowed = Code(rawValue: "origin_not_allowed")
        static let notFound = Code(rawValue: "not_found")
        static let methodNotAllowed = Code(rawValue: "method_not_allowed")
        static let idempotencyConflict = Code(rawValue: "idempotency_conflict")
        static let alreadyFinished = Code(rawValue: "already_finished")
        static let bodyTooLarge = Code(rawValue: "body_too_large")
        static let rateLimited = Code(rawValue: "rate_limited")
        static let tooManyWaiting = Code(rawValue: "too_many_waiting")
        static let overloaded = Code(rawValue: "overloaded")
        static let draining = Code(rawValue: "draining")
        static let notReady = Code(rawValue: "not_ready")
        static let storageFailed = Code(rawValue: "storage_failed")
        static let internalError = Code(rawValue: "internal_error")
    }

    var status: HTTPResponse.Status
    var code: Code
    var message: String
    var field: String?
    /// Seconds, for 429 and 503.
    var retryAfterSeconds: Int?

    init(_ status: HTTPResponse.Status, _ code: Code, _ message: String, field: String? = nil, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retryAfterSeconds = retryAfterSeconds
    }

    var description: String { "\(self.status.code) \(self.code.rawValue): \(self.message)" }

    var json: JSON {
        var members: [(String, JSON)] = [("code", .string(self.code.rawValue)), ("message", .string(self.message))]
        if let field = self.field { members.append(("field", .string(field))) }
        return .object([("error", .object(members))])
    }

    var response: Response {
        var response = Response.json(self.json, status: self.status)
        if let seconds = self.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
        return response
    }

    static func badField(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, .invalidField, message, field: field)
    }
}

extension Response {
    /// A JSON body rendered by the envelope layer's deterministic writer.
    static func json(_ value: JSON, status: HTTPResponse.Status = .ok) -> Response {
        var text = value.rendered()
        text += "\n"
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
