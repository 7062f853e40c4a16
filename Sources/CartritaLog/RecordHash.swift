import CSHA256
import CartritaCodec

/// SHA-256 of one record: the hash chain's link (`RecordHeader.prevHash` of the next record),
/// computed by the writer for every record it commits and by `verify` for every record it reads.
///
/// Our own C implementation (`Sources/CSHA256`), not swift-crypto's `SHA256.hash`: that one
/// allocates a context object per call and zeroes it afterwards, which on the writer's thread
/// cost about a third of the hashing of a ~1 KiB record (the writer is the runtime's critical
/// path). Same function: `RecordHashTests` compare the two at every length around the 64-byte
/// block boundaries and on random inputs, for both the SHA-extension and the portable paths.
public enum RecordHash {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> Digest32 { Self.hash(bytes, with: cartrita_sha256) }

    /// The portable C path whatever the CPU has (tests check both paths).
    static func sha256Portable(_ bytes: UnsafeRawBufferPointer) -> Digest32 { Self.hash(bytes, with: cartrita_sha256_portable) }

    @inline(__always)
    private static func hash(
        _ bytes: UnsafeRawBufferPointer, with function: (UnsafeRawPointer?, Int, UnsafeMutablePointer<UInt8>?) -> Void
    ) -> Digest32 {
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes on the stack
        return withUnsafeMutableBytes(of: &out) { raw in
            function(bytes.baseAddress, bytes.count, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return Digest32(bytes: UnsafeRawBufferPointer(raw))
        }
    }

    /// Whether `sha256` runs on the CPU's SHA extensions (x86-64 with SHA-NI).
    static var usesSHAExtensions: Bool { cartrita_sha256_uses_sha_extensions() != 0 }
}
