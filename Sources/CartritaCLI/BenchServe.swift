import ArgumentParser
import CartritaEnvelope
import CartritaLoad
import CartritaServer
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// MARK: - cartrita bench serve

/// The front door's figures in one command: a real `cartrita serve` child process on a fresh
/// data folder and a free port, loaded by `cartrita load`'s tester from this process, with the
/// child's RSS sampled from /proc every 100 ms. Prints the load report's keys (requests/s,
/// latency, errors, tier-0 latency, the message-flow check) and the child's RSS peaks.
struct BenchServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Benchmark the HTTP front door: a child `cartrita serve` under `cartrita load`.",
        discussion: """
            Issue 5's aims on this machine: 100 clients, durable log: 5,000 requests/s or more, 0 errors, \
            tier-0 routing p95 under 1 ms, server RSS under 200 MB.
            """)

    @Option(help: "Concurrent clients.") var clients: Int = 100
    @Option(help: "Seconds of load.") var seconds: Double = 20
    @Option(help: "The server's log durability: durable, relaxed or fast.") var durability: String = "durable"
    @Option(name: .customLong("check-flow"), help: "Check the message flow of this many answered tasks.") var checkFlow: Int = 300
    @Option(help: "Keep the server's data folder here (it must not exist yet); default a temporary one, removed.") var data: String?
    @Flag(help: "Print one JSON object.") var json = false

    static let samplingInterval = Duration.milliseconds(100)

    func run() async throws {
        guard ["durable", "relaxed", "fast"].contains(self.durability) else { throw ValidationError("--durability is durable, relaxed or fast") }
        guard self.clients > 0, self.seconds > 0 else { throw ValidationError("--clients and --seconds must be positive") }
        let folder = self.data ?? NSTemporaryDirectory() + "cartrita-bench-serve-\(getpid())"
        if self.data != nil, FileManager.default.fileExists(atPath: folder) { throw ValidationError("\(folder) exists already") }
        defer { if self.data == nil { try? FileManager.default.removeItem(atPath: folder) } }

        let server = try ServerChild.start(data: folder, durability: self.durability)
        defer { server.stop() }
        let sampler = RSSSampler(pid: server.process.processIdentifier)
        let sampling = Task.detached {
            while !Task.isCancelled {
                sampler.sample()
                try? await Task.sleep(for: Self.samplingInterval)
            }
        }
        var configuration = LoadConfiguration()
        configuration.port = server.port
        configuration.clients = self.clients
        configuration.durationSeconds = self.seconds
        configuration.flowSample = self.checkFlow
        let report: LoadReport
        do {
            report = try await LoadTester.run(configuration)
        } catch {
            sampling.cancel()
            fail("\(error)")
        }
        sampling.cancel()
        sampler.sample()
        let stopped = ContinuousClock.now
        server.stop()
        let stopSeconds = Self.seconds(ContinuousClock.now - stopped)
        let peaks = sampler.peaks

        guard case .object(var members) = report.json else { preconditionFailure("a load report is an object") }
        func megabytes(_ bytes: Double) -> JSON { .double((bytes / 1_048_576 * 10).rounded() / 10) }
        members.insert(("durability", .string(self.durability)), at: 0)
        members.append(("server_rate_limit_per_s", .string(server.rateLimitPerSecond)))
        members += [
            ("rss_mb_peak", megabytes(peaks.total)),
            ("rss_anon_mb_peak", megabytes(peaks.anonymous)),
            ("rss_file_mb_peak", megabytes(peaks.file)),
            ("rss_samples", .int(Int64(peaks.samples))),
            ("shutdown_s", .double((stopSeconds * 1000).rounded() / 1000)),
        ]
        if self.json {
            printJSON(.object(members))
        } else {
            print("\(self.durability), \(self.clients) clients, \(self.seconds) s: \(String(format: "%.0f", report.requestsPerSecond)) requests/s, p95 \(report.p95Milliseconds) ms, errors \(report.errorCount)")
            print("server RSS peak \(Int(peaks.total) >> 20) MB (anonymous \(Int(peaks.anonymous) >> 20) MB, mapped files \(Int(peaks.file) >> 20) MB); stopped in \(String(format: "%.2f", stopSeconds)) s")
        }
        if let flow = report.flow, flow.failures > 0 { throw ExitCode(2) }
        if report.ok == 0 { throw ExitCode(1) }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// `cartrita serve` as a child of this process, on a free port.
final class ServerChild: @unchecked Sendable {
    let process: Process
    let port: Int
    /// `CARTRITA_RATE_LIMIT_PER_S` as the child got it.
    let rateLimitPerSecond: String
    private let lock = NSLock()
    private var stopped = false

    init(process: Process, port: Int, rateLimitPerSecond: String) {
        self.process = process
        self.port = port
        self.rateLimitPerSecond = rateLimitPerSecond
    }

    /// The child's per-user rate limit unless `CARTRITA_RATE_LIMIT_PER_S` says otherwise.
    static let unreachedRateLimitPerSecond = 10_000_000

    static func start(data: String, durability: String) throws -> ServerChild {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        process.arguments = ["serve", "--data", data, "--port", "0", "--durability", durability]
        // The benchmark measures the front door's capacity, not the per-user rate limit: every
        // client here is the one anonymous user, whose default bucket (5,000/s, burst 10,000)
        // the server now outruns, and the surplus came back as 429s. Unless the caller set a
        // limit, the child gets one no load here reaches. The limiter has tests of its own.
        var environment = ProcessInfo.processInfo.environment
        let rateLimit = environment["CARTRITA_RATE_LIMIT_PER_S"] ?? String(Self.unreachedRateLimitPerSecond)
        environment["CARTRITA_RATE_LIMIT_PER_S"] = rateLimit
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line names the bound port: "listening on http://HOST:PORT (data …)".
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: #"http://[^:]+:(\d+)"#, options: .regularExpression),
            let port = Int(text[range].split(separator: ":").last ?? "")
        else {
            process.terminate()
            throw ValidationError("cartrita serve did not start: \(text)")
        }
        return ServerChild(process: process, port: port, rateLimitPerSecond: rateLimit)
    }

    /// SIGTERM (graceful: drain, flush the log), then wait. Once.
    func stop() {
        let first = self.lock.withLock { () -> Bool in
            defer { self.stopped = true }
            return !self.stopped
        }
        guard first, self.process.isRunning else { return }
        kill(self.process.processIdentifier, SIGTERM)
        self.process.waitUntilExit()
    }
}

/// Peaks of a process's RSS, in bytes (`ProcessSample`, the figures the server's /metrics shows).
final class RSSSampler: @unchecked Sendable {
    struct Peaks {
        var total = 0.0
        var anonymous = 0.0
        var file = 0.0
        var samples = 0
    }

    let process: String
    private let lock = NSLock()
    private var current = Peaks()

    init(pid: Int32) {
        self.process = String(pid)
    }

    var peaks: Peaks { self.lock.withLock { self.current } }

    func sample() {
        guard let sample = ProcessSample.read(process: self.process) else { return }
        self.lock.withLock {
            self.current.samples += 1
            self.current.total = max(self.current.total, sample.residentBytes)
            self.current.anonymous = max(self.current.anonymous, sample.residentAnonymousBytes)
            self.current.file = max(self.current.file, sample.residentFileBytes)
        }
    }
}
