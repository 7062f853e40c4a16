import XCTest

/// CartritaAgents is part of the deterministic core: handlers read no clock, no system random,
/// no `UUID()`, spawn no task and import no Foundation (ARCHITECTURE.md). Same rules as the
/// envelope tests' scan, applied to this target until that scan covers it.
final class TidyAgentsTests: XCTestCase {
    static let banned = [
        "import Foundation", "Date(", "Date.now", "ContinuousClock", "SuspendingClock", "UUID(", ".random(",
        "SystemRandomNumberGenerator", "arc4random", "Task.sleep", "Task {", "Task.detached", "DispatchQueue",
    ]

    func testAgentsUseNoNondeterministicAPIs() throws {
        let folder = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/CartritaAgents")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".swift") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 5)
        var violations: [String] = []
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let code = line.split(separator: "//", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                for pattern in Self.banned where code.contains(pattern) {
                    violations.append("\(file):\(number + 1): \(pattern)")
                }
            }
        }
        XCTAssertEqual(violations, [], violations.joined(separator: "\n"))
    }
}
