import CartritaLog
import Foundation
import XCTest

final class WriterLockTests: XCTestCase {
    /// close() then deinit must release the lock's descriptor once: a second close would hit
    /// whatever file reused the number in between.
    func testCloseThenDeinitDoesNotCloseAnUnrelatedDescriptor() throws {
        let folder = NSTemporaryDirectory() + "cartrita-lock-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for _ in 0..<20 {
            var log: EventLog? = try EventLog(path: folder)
            log?.close()
            // The lowest free descriptor is the one the lock just gave back.
            let unrelated = open("/dev/null", O_RDONLY)
            XCTAssertGreaterThanOrEqual(unrelated, 0)
            log = nil  // deinit
            XCTAssertNotEqual(fcntl(unrelated, F_GETFD), -1, "deinit closed an unrelated descriptor")
            close(unrelated)
        }
        // The lock is free again: another writer may open.
        let again = try EventLog(path: folder)
        again.close()
    }
}
