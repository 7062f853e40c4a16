import CartritaEnvelope
import Foundation
import Hummingbird

/// The debugger behind Hummingbird: its page, assets and JSON API under one prefix.
package enum DebuggerRoutes {
    /// Adds the debugger under `prefix` (`""` or `/debug`). `authorize` runs first on every
    /// request and throws to refuse it (the server lets admins only through).
    package static func add<Context: RequestContext>(
        to router: Router<Context>, prefix: String, api: DebuggerAPI, authorize: @escaping @Sendable (Request) async throws -> Void
    ) {
        let handler: @Sendable (Request, Context) async throws -> Response = { request, _ in
            try await authorize(request)
            var path = request.uri.path
            if path.hasPrefix(prefix) { path = String(path.dropFirst(prefix.count)) }
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters {
                query[String(key)] = String(value).removingPercentEncoding ?? String(value)
            }
            // The API reads the log (LMDB, travel) synchronously, in this request's task: pages and
            // travels are bounded (maxPageRecords, maxScanRecords, checkpoints), so a request
            // holds a thread for milliseconds, not for the whole log.
            let answer = api.handle(path: path, query: query)
            var headers = HTTPFields()
            headers[.contentType] = answer.contentType
            headers[.cacheControl] = "no-store"
            return Response(
                status: HTTPResponse.Status(code: answer.status), headers: headers,
                body: ResponseBody(byteBuffer: ByteBuffer(string: answer.body)))
        }
        let root = prefix.isEmpty ? "/" : prefix
        router.get(RouterPath(root), use: handler)
        router.get(RouterPath(prefix + "/index.html"), use: handler)
        router.get(RouterPath(prefix + "/app.js"), use: handler)
        router.get(RouterPath(prefix + "/app.css"), use: handler)
        router.get(RouterPath(prefix + "/api/:name"), use: handler)
    }
}

/// `cartrita debug`: the debugger alone on a loopback port, for an offline log or a capsule. No
/// API keys: it binds to loopback by default and only reads.
package enum DebugServer {
    /// Serves until the task is cancelled or SIGTERM/SIGINT arrives; `onListening` gets the
    /// bound port (useful with port 0).
    package static func run(api: DebuggerAPI, host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void) async throws {
        let router = Router()
        DebuggerRoutes.add(to: router, prefix: "", api: api, authorize: { _ in })
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "cartrita-debug"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) })
        try await app.runService()
    }
}
