import CartritaEnvelope
import NIOCore
import NIOPosix

// MARK: - Tier 0's latency, as the server measured it during the run

/// One Prometheus histogram from a `/metrics` text: cumulative counts by upper bound.
struct ScrapedHistogram {
    var buckets: [(upperBound: Double, count: Double)]
    /// `NAME_sum`: the observations added up (0 when the text has no such line).
    var sum = 0.0

    /// The `NAME_bucket{le="…"} COUNT` lines of `name` (a histogram without other labels).
    static func parse(_ text: String, name: String) -> ScrapedHistogram? {
        let prefix = name + "_bucket{le=\""
        var buckets: [(Double, Double)] = []
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
            let rest = line.dropFirst(prefix.count)
            guard let quote = rest.firstIndex(of: "\""), let space = rest.lastIndex(of: " ") else { continue }
            let bound = rest[..<quote] == "+Inf" ? Double.infinity : Double(rest[..<quote])
            guard let bound, let count = Double(rest[rest.index(after: space)...]) else { continue }
            buckets.append((bound, count))
        }
        guard !buckets.isEmpty else { return nil }
        let sum = ServerScrape.sample(text, name + "_sum") ?? 0
        return ScrapedHistogram(buckets: buckets.sorted { $0.0 < $1.0 }, sum: sum)
    }

    var total: Double { self.buckets.last?.count ?? 0 }

    /// What was observed between `earlier` and this scrape (same buckets; else all of this one).
    func since(_ earlier: ScrapedHistogram?) -> ScrapedHistogram {
        guard let earlier, earlier.buckets.map(\.upperBound) == self.buckets.map(\.upperBound) else { return self }
        return ScrapedHistogram(
            buckets: zip(self.buckets, earlier.buckets).map { ($0.upperBound, max(0, $0.count - $1.count)) }, sum: self.sum - earlier.sum)
    }

    /// The q-quantile estimated as Prometheus's `histogram_quantile` does: linear within the
    /// bucket the rank falls in; the highest finite bound when it falls past them; nil if empty.
    func quantile(_ q: Double) -> Double? {
        let total = self.total
        guard total > 0 else { return nil }
        let rank = q * total
        var lower = 0.0
        var below = 0.0
        for (upper, count) in self.buckets {
            if count >= rank {
                guard upper.isFinite else { return lower }
                guard count > below else { return upper }
                return lower + (upper - lower) * (rank - below) / (count - below)
            }
            lower = upper.isFinite ? upper : lower
            below = count
        }
        return lower
    }
}

/// The server's tier-0 histograms (`cartrita_tier0_ingress_ms`, `cartrita_tier0_routing_ms`,
/// `cartrita_tier0_routing_overhead_ms`, monotonic clock) over the run: a scrape before and one
/// after, subtracted.
public struct Tier0Latency: Sendable {
    /// Scrapes before and after, subtracted; nil members when a scrape failed (`missing` says why).
    static func between(_ before: Result<ServerScrape, Tier0ScrapeError>, _ after: Result<ServerScrape, Tier0ScrapeError>) -> Tier0Latency {
        switch (before, after) {
        case (.success(let first), .success(let last)):
            guard last.routing != nil else { return Tier0Latency(missing: "GET /metrics: no_tier0_series") }
            return Tier0Latency(
                ingress: last.ingress?.since(first.ingress), routing: last.routing?.since(first.routing),
                routingOverhead: last.routingOverhead?.since(first.routingOverhead))
        case (.failure(let error), _), (_, .failure(let error)):
            return Tier0Latency(missing: "GET /metrics: \(error.reason)")
        }
    }

    var ingress: ScrapedHistogram?
    var routing: ScrapedHistogram?
    var routingOverhead: ScrapedHistogram?
    /// Why there are no figures (the server did not answer /metrics, or has no such series).
    var missing: String?

    static func scrape(target: SocketAddress, group: MultiThreadedEventLoopGroup, configuration: LoadConfiguration)
        async -> Result<ServerScrape, Tier0ScrapeError>
    {
        guard let connection = try? await SimpleHTTPConnection.connect(to: target, group: group) else {
            return .failure(Tier0ScrapeError(reason: "connection_refused"))
        }
        let answer = try? await connection.get("/metrics", headers: LoadTester.headers(configuration))
        try? await connection.close()
        guard let answer else { return .failure(Tier0ScrapeError(reason: "http_error")) }
        guard answer.status == 200 else { return .failure(Tier0ScrapeError(reason: "http_\(answer.status)")) }
        return .success(ServerScrape(String(decoding: answer.body, as: UTF8.self)))
    }

    var jsonMembers: [(String, JSON)] {
        func figure(_ histogram: ScrapedHistogram?, _ q: Double) -> JSON {
            histogram?.quantile(q).map { .double(($0 * 1000).rounded() / 1000) } ?? .null
        }
        var members: [(String, JSON)] = [
            ("tier0_ingress_ms_p50", figure(self.ingress, 0.5)),
            ("tier0_ingress_ms_p95", figure(self.ingress, 0.95)),
            ("tier0_routing_ms_p50", figure(self.routing, 0.5)),
            ("tier0_routing_ms_p95", figure(self.routing, 0.95)),
            ("tier0_routing_overhead_ms_p50", figure(self.routingOverhead, 0.5)),
            ("tier0_routing_overhead_ms_p95", figure(self.routingOverhead, 0.95)),
            ("tier0_routing_overhead_ms_p99", figure(self.routingOverhead, 0.99)),
            ("tier0_timed_tasks", self.routing.map { .int(Int64($0.total)) } ?? .null),
        ]
        if let missing = self.missing { members.append(("tier0_missing", .string(missing))) }
        return members
    }
}

struct Tier0ScrapeError: Error {
    var reason: String
}

/// What one scrape of the server's /metrics says that a load run reports.
struct ServerScrape: Sendable {
    var ingress: ScrapedHistogram?
    var routing: ScrapedHistogram?
    var routingOverhead: ScrapedHistogram?
    /// `process_resident_memory_bytes`, `cartrita_process_resident_anonymous_bytes`,
    /// `process_cpu_seconds_total` (nil when the server does not export them).
    var residentBytes: Double?
    var anonymousBytes: Double?
    var cpuSeconds: Double?

    init(_ text: String) {
        self.ingress = ScrapedHistogram.parse(text, name: "cartrita_tier0_ingress_ms")
        self.routing = ScrapedHistogram.parse(text, name: "cartrita_tier0_routing_ms")
        self.routingOverhead = ScrapedHistogram.parse(text, name: "cartrita_tier0_routing_overhead_ms")
        self.residentBytes = Self.sample(text, "process_resident_memory_bytes")
        self.anonymousBytes = Self.sample(text, "cartrita_process_resident_anonymous_bytes")
        self.cpuSeconds = Self.sample(text, "process_cpu_seconds_total")
    }

    /// The value of an unlabelled series `name`.
    static func sample(_ text: String, _ name: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}

/// The server's process over the run: RSS sampled from /metrics every `interval` (and at the
/// start and end), its peak, and the CPU time the run cost it.
public struct ServerProcessReport: Sendable {
    static let intervalSeconds = 2.0

    var residentPeakBytes: Double?
    var anonymousPeakBytes: Double?
    var residentEndBytes: Double?
    var cpuSeconds: Double?
    var samples = 0

    mutating func add(_ scrape: ServerScrape) {
        guard let resident = scrape.residentBytes else { return }
        self.samples += 1
        self.residentPeakBytes = max(self.residentPeakBytes ?? 0, resident)
        self.residentEndBytes = resident
        if let anonymous = scrape.anonymousBytes { self.anonymousPeakBytes = max(self.anonymousPeakBytes ?? 0, anonymous) }
    }

    func jsonMembers(requests: Int) -> [(String, JSON)] {
        func megabytes(_ bytes: Double?) -> JSON { bytes.map { .double(($0 / 1_048_576 * 10).rounded() / 10) } ?? .null }
        return [
            ("server_rss_mb_peak", megabytes(self.residentPeakBytes)),
            ("server_rss_anon_mb_peak", megabytes(self.anonymousPeakBytes)),
            ("server_rss_mb_end", megabytes(self.residentEndBytes)),
            ("server_rss_samples", .int(Int64(self.samples))),
            ("server_cpu_s", self.cpuSeconds.map { .double(($0 * 1000).rounded() / 1000) } ?? .null),
            ("server_cpu_us_per_request", self.cpuSeconds.flatMap { requests > 0 ? .double(($0 * 1e6 / Double(requests)).rounded()) : nil } ?? .null),
        ]
    }
}
