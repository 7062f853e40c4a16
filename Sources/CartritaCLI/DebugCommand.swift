import ArgumentParser
import CartritaDebugger
import CartritaLog
import CartritaTravel
import Foundation

// MARK: - cartrita debug

struct DebugCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug",
        abstract: "The web debugger on a log (--data) or an incident capsule (--capsule): timeline, steps, actor state, causal trees.",
        discussion: """
            Serves the page and its JSON API on HOST:PORT (loopback by default; no API keys: it only reads) and prints \
            `debugger on http://HOST:PORT/` once it listens. The page's state is in its URL: ?at=SEQ&actor=A&correlation=C&type=T. \
            `cartrita serve` serves the same debugger on its live log at /debug, for the admin role.
            """)

    @Option(help: "The data folder of the log to debug (read only; it may be in use by a running node).") var data: String?
    @Option(help: "An incident capsule to debug instead of a log.") var capsule: String?
    @Option(help: "The port (0: any free one).") var port = 8002
    @Option(help: "The address to bind.") var host = "127.0.0.1"

    func validate() throws {
        guard (self.data == nil) != (self.capsule == nil) else { throw ValidationError("give exactly one of --data DIR or --capsule FILE") }
        guard (0...65535).contains(self.port) else { throw ValidationError("--port is 0...65535") }
    }

    func run() async throws {
        let api: DebuggerAPI
        var log: EventLog?
        if let data = self.data {
            let opened = openLog(data, readOnly: true)
            log = opened
            let origin = simulationOrigin(data)
            api = DebuggerAPI(source: LogSource(log: opened, hierarchy: origin.hierarchy, buggify: origin.buggify))
        } else {
            let path = self.capsule!
            guard let bytes = FileManager.default.contents(atPath: path) else { fail("io: cannot read \(path)") }
            let source = travelling { () throws(TravelError) in try CapsuleSource(try Capsule.decode([UInt8](bytes))) }
            api = DebuggerAPI(source: source)
        }
        defer { log?.close() }
        // A read-only log has no writer to drop the pages the debugger reads through LMDB's map
        // (`EventLogConfiguration.releaseMappedPagesEveryBytes`): without this, RSS grows
        // towards the log's size as a person pages through it. After close it only throws.
        let releaser = log.map { log in
            Task.detached {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(5))
                    _ = try? log.releaseMappedPages()
                }
            }
        }
        defer { releaser?.cancel() }
        let host = self.host
        try await DebugServer.run(api: api, host: host, port: self.port) { port in
            printFlushed("debugger on http://\(host):\(port)/")
        }
    }
}
