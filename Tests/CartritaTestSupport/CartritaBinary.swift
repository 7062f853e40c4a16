import Dispatch
import Foundation
import XCTest

/// The real `cartrita` executable, run by tests as a child process (the CLI's contract: one
/// JSON object on stdout, exit statuses, signals). Shared by every test target that runs it.
public enum CartritaBinary {
    /// `CARTRITA_BIN`, else the `cartrita` SwiftPM built beside the test bundle (any scratch
    /// path); nil if neither.
    public static func url() -> URL? {
        var candidates: [URL] = []
        if let explicit = ProcessInfo.processInfo.environment["CARTRITA_BIN"] { candidates.append(URL(fileURLWithPath: explicit)) }
        // Linux: the test bundle is an executable `…/debug/cartritaPackageTests.xctest`.
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("cartrita"))
        }
        // macOS: `…/debug/cartritaPackageTests.xctest/Contents/MacOS/…`; the bundle sits in debug/.
        for bundle in [Bundle.main] + Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("cartrita"))
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// The executable, or the test is skipped, saying how to point at one.
    public static func required() throws -> URL {
        guard let url = Self.url() else { throw XCTSkip("the cartrita binary is not built next to the tests (set CARTRITA_BIN)") }
        return url
    }

    /// What a finished run printed and how it exited.
    public struct Outcome: Sendable {
        public var status: Int32
        public var stdout: Data
        public var stderr: Data
        public var out: String { String(decoding: self.stdout, as: UTF8.self) }
        public var err: String { String(decoding: self.stderr, as: UTF8.self) }
    }

    /// Runs `cartrita ARGUMENTS` to the end. Both pipes are drained at once (a child that
    /// fills one while the parent waits on the other would never finish).
    public static func run(_ arguments: [String], executable: URL? = nil, environment: [String: String]? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = try executable ?? Self.required()
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let errors = Drained()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errors.data = err.fileHandleForReading.readDataToEndOfFile() }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: output, stderr: errors.data)
    }

    /// Written by one reader thread before `DispatchGroup.wait` returns, read after it.
    final class Drained: @unchecked Sendable {
        var data = Data()
    }
}
