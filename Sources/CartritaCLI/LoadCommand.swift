import ArgumentParser
import CartritaLoad
import CartritaNode
import Foundation

// MARK: - cartrita load

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a running server: N keep-alive HTTP/1.1 clients POST /v3/tasks for S seconds (seed §8.1.2).",
        discussion: """
            Each client sends the next task of the mix as soon as the previous one is answered (synchronous \
            POST /v3/tasks). Bodies come from the mix (`cartrita run --mix` format: TASK_TYPE DELIVERY_MODE \
            WEIGHT per line; default the standard mix). Errors are counted by type: http_STATUS, sync_timeout, \
            task_failed:CODE, timeout, connection_refused, connection_reset, connection_closed, ... \
            --check-flow N then reads N of the answered tasks back (GET /v3/tasks/{id}) and checks each passed \
            through the supervisor and agent its type routes to, with every hop answered (seed §8.1.1); exit 2 \
            when any fails, exit 1 when no request was answered ok.
            """)

    @Option(help: "The server, http://HOST:PORT.") var url: String
    @Option(help: "Concurrent clients (connections).") var clients: Int = 10
    @Option(help: "Seconds to run.") var duration: Double = 10
    @Option(help: "API key, sent as Authorization: Bearer KEY.") var key: String?
    @Option(help: "A mix file (cartrita run --mix format).") var mix: String?
    @Option(help: "Seed of the mix's inputs.") var seed: UInt64 = 1
    @Option(name: .customLong("check-flow"), help: "Check the message flow of this many answered tasks.") var checkFlow: Int = 0
    @Option(help: "Event-loop threads of the load generator.") var threads: Int = 1
    @Option(name: .customLong("timeout-ms"), help: "A request unanswered after this many ms counts as timeout.") var timeoutMilliseconds: Int64 = 60_000
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        var configuration = LoadConfiguration()
        do {
            try configuration.setURL(self.url)
            if let path = self.mix {
                guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                    throw LoadError(.invalidMix, "cannot read the mix file \(path)")
                }
                do {
                    configuration.workload = try Workload.parse(text)
                } catch {
                    throw LoadError(.invalidMix, "\(path): \(error)")
                }
            }
            configuration.clients = self.clients
            configuration.durationSeconds = self.duration
            configuration.apiKey = self.key
            configuration.seed = self.seed
            configuration.flowSample = self.checkFlow
            configuration.threads = self.threads
            configuration.requestTimeoutMilliseconds = self.timeoutMilliseconds
            try configuration.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        let report: LoadReport
        do {
            report = try await LoadTester.run(configuration)
        } catch {
            fail("\(error)")
        }
        if self.json {
            printJSON(report.json)
        } else {
            print("requests: \(report.requests) in \(String(format: "%.2f", report.durationSeconds)) s, \(String(format: "%.0f", report.requestsPerSecond))/s, ok \(report.ok)")
            print("latency: p50 \(report.p50Milliseconds) ms, p95 \(report.p95Milliseconds) ms, p99 \(report.p99Milliseconds) ms")
            print("errors: \(report.errors.isEmpty ? "none" : report.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
            if let flow = report.flow {
                print("flow: \(flow.checked) checked, \(flow.failures) failed")
                for example in flow.examples { print("  \(example)") }
            }
        }
        if let flow = report.flow, flow.failures > 0 { throw ExitCode(2) }
        // Nothing was answered: no figure above means anything (the report says why).
        if report.ok == 0 { throw ExitCode(1) }
    }
}
