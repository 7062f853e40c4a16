import CartritaDebugger
import CartritaEnvelope
import CartritaTelemetry
import Foundation
import HTTPTypes
import Hummingbird

// MARK: - The routes

enum Routes {
    static func router(_ door: FrontDoor) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndMetricsMiddleware(door: door))

        router.get("/health") { _, _ in
            // Liveness only: the process answers. Readiness (log, supervisors) is /ready.
            Response.json(.object([("status", .string("ok"))]))
        }
        router.get("/ready") { request, _ in
            try await door.admitMetrics(request)
            return await door.ready()
        }
        router.get("/metrics") { request, _ in
            try await door.admitMetrics(request)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            let text = door.metrics.scrape(log: door.log, node: door.node, frontDoorWaiting: door.tracker.waitingCount)
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }

        router.post("/v3/tasks") { request, context in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.submit(request, body: bytes, caller: caller)
        }
        router.post("/v3/admin/cancel") { request, _ in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.cancelAll(body: bytes, caller: caller)
        }
        router.post("/v3/admin/supervisors/:name/pause") { request, context in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.setPaused(true, supervisor: context.parameters.get("name") ?? "", body: bytes, caller: caller)
        }
        router.post("/v3/admin/supervisors/:name/resume") { request, context in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.setPaused(false, supervisor: context.parameters.get("name") ?? "", body: bytes, caller: caller)
        }
        router.post("/v3/admin/drain") { request, _ in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.drain(body: bytes, caller: caller)
        }
        router.get("/v3/admin/drain") { request, _ in
            let caller = try await door.admit(request)
            try FrontDoor.requireAdmin(caller)
            return await door.drainProgress(caller: caller)
        }
        router.delete("/v3/admin/drain") { request, _ in
            let caller = try await door.admit(request)
            return try await door.endDrain(caller: caller)
        }
        // v2 compatibility (seed §4.2.1, §5.1.7), deprecated: the bridge to v3 tasks.
        router.post("/api/:domain/:action") { request, context in
            let caller = try await door.admit(request)
            let bytes = try await Self.body(request, limit: door.configuration.maxBodyBytes)
            return try await door.submitV2(
                request, domain: context.parameters.get("domain") ?? "", action: context.parameters.get("action") ?? "", body: bytes,
                caller: caller)
        }
        router.get("/v3/routes") { request, _ in
            _ = try await door.admit(request)
            return door.routes()
        }
        router.get("/v3/tasks") { request, _ in
            let caller = try await door.admit(request)
            return try door.list(request, caller: caller)
        }
        router.get("/v3/tasks/:id") { request, context in
            let caller = try await door.admit(request)
            return try door.task(context.parameters.get("id") ?? "", caller: caller)
        }
        router.get("/v3/stream") { (request, _) -> Response in
            // Reached when the WebSocket upgrade was not made: say why.
            _ = try await door.admit(request)
            throw APIError(.upgradeRequired, APIError.Code(rawValue: "upgrade_required"), "/v3/stream is a WebSocket: send Upgrade: websocket")
        }
        router.get("/v3/tasks/:id/events") { request, context in
            let caller = try await door.admit(request)
            return try door.events(context.parameters.get("id") ?? "", request: request, caller: caller)
        }
        router.delete("/v3/tasks/:id") { request, context in
            let caller = try await door.admit(request)
            return try await door.cancel(context.parameters.get("id") ?? "", caller: caller)
        }
        // The web debugger on the live log, admins only (DebugAccess.swift, CartritaDebugger).
        DebuggerRoutes.add(to: router, prefix: "/debug", api: door.debuggerAPI(), authorize: door.admitDebugger)
        return router
    }

    /// The request body, at most `limit` bytes: a Content-Length over it is refused before a
    /// byte is read, a chunked body as soon as it passes it.
    static func body(_ request: Request, limit: Int) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.contentTooLarge, .bodyTooLarge, "the body is \(length) bytes; the limit is \(limit)")
        }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw APIError(.contentTooLarge, .bodyTooLarge, "the body is over the limit of \(limit) bytes")
        }
    }
}

/// Every response of the API goes through here: errors of any kind become the JSON error shape
/// (a client never has to parse an HTML page or an empty 500), and each request is counted in
/// the HTTP metrics by its route pattern (never the raw path: task ids would explode the series).
struct ErrorAndMetricsMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let door: FrontDoor

    /// The caller's trace id, so a failed request's log line can be found from its trace.
    static func traceID(_ request: Request) -> String {
        request.headers[HTTPField.Name("traceparent")!].flatMap(TraceParent.init)?.traceID.description ?? "none"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response
        } catch let error as any HTTPResponseError {
            response = Self.translate(error.status).response
        } catch {
            context.logger.error(
                "unexpected error", metadata: ["error": "\(error)", "route": "\(context.endpointPath ?? "unmatched")", "trace_id": "\(Self.traceID(request))"])
            response = APIError(.internalServerError, .internalError, "internal error").response
        }
        if response.status == .internalServerError {
            context.logger.warning(
                "request failed",
                metadata: ["route": "\(context.endpointPath ?? "unmatched")", "status": "\(response.status.code)", "trace_id": "\(Self.traceID(request))"])
        }
        let elapsed = ContinuousClock.now - started
        let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        self.door.metrics.httpRequest(
            method: request.method.rawValue, route: context.endpointPath ?? "unmatched", status: response.status.code, milliseconds: milliseconds)
        return response
    }

    static func translate(_ status: HTTPResponse.Status) -> APIError {
        switch status {
        case .notFound: APIError(.notFound, .notFound, "no such route")
        case .methodNotAllowed: APIError(.methodNotAllowed, .methodNotAllowed, "method not allowed on this route")
        case .contentTooLarge: APIError(.contentTooLarge, .bodyTooLarge, "the body is over the limit")
        case .badRequest: APIError(.badRequest, .malformedJSON, "bad request")
        default: APIError(status, APIError.Code(rawValue: "http_\(status.code)"), status.reasonPhrase)
        }
    }
}
