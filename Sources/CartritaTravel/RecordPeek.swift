import CartritaCodec
import Foundation

/// The recipient of a stored record, read from its bytes without decoding it: the codec's
/// `RecordPeek` (the layout the log's writer produces). Recovery asks a log for every actor's
/// last record (`heads()`) before it replays anything, and a capsule's records are decoded on
/// another thread while the replay runs, so `CapsuleLog` answers from the bytes.
///
/// A reader of what a well-formed record says, never a judge: anything else gives nil (the
/// caller then decodes the record fully), and whatever it reads is checked against the full
/// decode of the same record before the replay uses that record.
enum RecipientPeek {
    /// The bytes of the record's recipient; nil when the bytes are not a record as the writer
    /// lays them out.
    static func recipient(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let peek = RecordPeek(bytes) else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[peek.recipient])
    }

    /// Byte-for-byte equality. Eight bytes at a time rather than a call to memcmp, whose fixed
    /// cost outweighs comparing an address's few dozen bytes (a capsule's heads compare one
    /// per record).
    @inline(__always)
    static func same(_ lhs: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
        let count = lhs.count
        guard count == rhs.count else { return false }
        guard count > 0 else { return true }
        var index = 0
        while index + 8 <= count {
            guard lhs.loadUnaligned(fromByteOffset: index, as: UInt64.self) == rhs.loadUnaligned(fromByteOffset: index, as: UInt64.self) else {
                return false
            }
            index += 8
        }
        while index < count {
            guard lhs[index] == rhs[index] else { return false }
            index += 1
        }
        return true
    }
}
