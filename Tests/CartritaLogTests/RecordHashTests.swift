import Crypto
import XCTest

@testable import CartritaLog

/// `RecordHash` is SHA-256: the same digests as swift-crypto's, on both of its paths.
final class RecordHashTests: XCTestCase {
    func reference(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }

    func testTheKnownVectors() {
        let abc = Array("abc".utf8).withUnsafeBytes { RecordHash.sha256($0) }
        XCTAssertEqual(abc.description.lowercased(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let empty = [UInt8]().withUnsafeBytes { RecordHash.sha256($0) }
        XCTAssertEqual(empty.description.lowercased(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    func testEveryLengthAroundTheBlockBoundariesAndRandomInputsAgreeWithSwiftCrypto() {
        var generator = SystemRandomNumberGenerator()
        var lengths = Array(0...300) + Array(1000...1100)
        for _ in 0..<200 { lengths.append(Int.random(in: 0...70_000, using: &generator)) }
        for length in lengths {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let expected = self.reference(bytes)
            let fast = bytes.withUnsafeBytes { RecordHash.sha256($0) }.bytes
            let portable = bytes.withUnsafeBytes { RecordHash.sha256Portable($0) }.bytes
            XCTAssertEqual(fast, expected, "length \(length)")
            XCTAssertEqual(portable, expected, "portable, length \(length)")
        }
    }

    func testTheHashReadsOnlyItsBuffer() {
        // A slice in the middle of a larger buffer: bytes around it must not leak in.
        let whole = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for (start, count) in [(1, 55), (7, 64), (100, 119), (3000, 1000)] {
            let slice = Array(whole[start..<(start + count)])
            let inPlace = whole.withUnsafeBytes { RecordHash.sha256(UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)])) }
            XCTAssertEqual(inPlace.bytes, self.reference(slice))
        }
    }

    func testThisMachineUsesTheSHAExtensionsWhenItHasThem() throws {
        #if arch(x86_64)
            let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            guard cpuinfo.contains(" sha_ni") else { throw XCTSkip("this CPU has no SHA extensions") }
            XCTAssertTrue(RecordHash.usesSHAExtensions)
        #endif
    }
}
