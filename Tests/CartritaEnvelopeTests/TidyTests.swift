import XCTest

/// The deterministic core (envelope and codec today, the runtime's handlers later) reads no wall
/// clock, no system random, no `UUID()`, spawns no task and imports no Foundation: time,
/// randomness and ids come in as values and are recorded in the log (ARCHITECTURE.md).
/// This test reads the core's sources and fails on any banned API.
final class TidyTests: XCTestCase {
    static let coreTargets = ["CartritaEnvelope", "CartritaCodec", "CartritaRuntime", "CartritaAgents", "CartritaSim"]

    static let banned: [(pattern: String, why: String)] = [
        ("import Foundation", "the core imports no Foundation"),
        ("Date(", "wall clock: take a MillisecondClock"),
        ("Date.now", "wall clock: take a MillisecondClock"),
        ("ContinuousClock", "real clock: take a MillisecondClock"),
        ("SuspendingClock", "real clock: take a MillisecondClock"),
        ("UUID(", "ids come from UUIDv7Generator with recorded entropy"),
        (".random(", "system random: take an EntropySource"),
        ("SystemRandomNumberGenerator", "system random: take an EntropySource"),
        ("arc4random", "system random: take an EntropySource"),
        ("Task.sleep", "timers are messages, never sleeps"),
        ("Task {", "handlers spawn no task"),
        ("Task.detached", "handlers spawn no task"),
        ("DispatchQueue", "no hidden concurrency in the core"),
    ]

    func testCoreUsesNoNondeterministicAPIs() throws {
        let sources = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources")
        var checked = 0
        var violations: [String] = []
        for target in Self.coreTargets {
            let folder = sources.appendingPathComponent(target)
            let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".swift") }.sorted()
            XCTAssertFalse(files.isEmpty, "no sources found in \(folder.path)")
            for file in files {
                let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
                checked += 1
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    for rule in Self.banned where code.contains(rule.pattern) {
                        violations.append("\(target)/\(file):\(number + 1): \(rule.pattern) — \(rule.why)")
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 10, "the scan must actually read the core's files")
        XCTAssertEqual(violations, [], violations.joined(separator: "\n"))
    }

    /// The scan itself must be able to fail.
    func testTheScanCatchesABannedLine() {
        let line = "    let now = Date()  // oops"
        let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        XCTAssertTrue(Self.banned.contains { code.contains($0.pattern) })
        let comment = "    // Date() is banned here"
        let commentCode = comment.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        XCTAssertFalse(Self.banned.contains { commentCode.contains($0.pattern) })
    }
}
