import ArgumentParser
import CartritaLog
import CartritaServer
import Foundation

// MARK: - cartrita serve

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the HTTP API (v3) in front of the hierarchy, on the event log in --data.",
        discussion: """
            Recovers the log first (tasks that were in flight finish), then listens. Settings come from the \
            defaults, then --config FILE (JSON), then CARTRITA_* environment variables, then these flags. \
            SIGTERM or SIGINT: new requests get 503, waiting requests get up to the drain timeout, then the \
            log is flushed and closed.
            """)

    @Option(help: "The data folder that holds the event log (default ./data).") var data: String?
    @Option(help: "Port to listen on (default 8001; 0 picks a free one).") var port: Int?
    @Option(help: "Address to bind (default 127.0.0.1).") var host: String?
    @Option(help: "A JSON config file: limits, durability, auth.") var config: String?
    @Option(help: "durable, relaxed or fast (default durable).") var durability: Durability?

    func run() async throws {
        var configuration = ServerConfiguration()
        do {
            if let path = self.config { try configuration.apply(configFile: path) }
            try configuration.apply(environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError("\(error)")
        }
        if let data = self.data { configuration.dataPath = data }
        if let port = self.port {
            guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0...65535") }
            configuration.port = port
        }
        if let host = self.host { configuration.host = host }
        if let durability = self.durability { configuration.durability = durability }

        let server: Server
        do {
            server = try await Server.start(configuration: configuration, asProcess: true)
        } catch {
            fail("\(error)")
        }
        printFlushed("listening on http://\(configuration.host):\(server.port) (data \(configuration.dataPath))")
        try await server.waitUntilStopped()
    }
}
