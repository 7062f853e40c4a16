import CartritaDebugger
import Foundation
import HTTPTypes
import Hummingbird

// MARK: - /debug: the web debugger on the live log, for admins

extension FrontDoor {
    /// The debugger's API on this server's own log (read in its own transactions beside the
    /// writer), mounted at `/debug`.
    func debuggerAPI() -> DebuggerAPI {
        DebuggerAPI(source: LogSource(log: self.log, hierarchy: Self.hierarchy(self.configuration)), basePath: "/debug")
    }

    /// Admits admins only. A browser cannot put a header on a page it navigates to, so the key
    /// may also come as `?key=KEY`; the page sends it back as `Authorization` on its API calls.
    func admitDebugger(_ request: Request) async throws {
        var headers = request.headers
        if Authenticator.presentedKey(headers) == nil, let key = request.uri.queryParameters.get("key"), !key.isEmpty {
            headers[.authorization] = "Bearer \(key)"
        }
        let caller = try await self.admit(headers: headers, authority: request.head.authority)
        guard caller.isAdmin else {
            throw APIError(.forbidden, .forbidden, "the debugger is for the admin role; role \(caller.role) may not use it")
        }
    }
}
