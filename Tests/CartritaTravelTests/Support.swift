import Foundation

/// A fresh directory under /tmp (mkdtemp), removed when released.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String = "travel") {
        var template = Array("/tmp/cartrita-traveltests-\(label)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed: \(errno)")
        self.path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}
