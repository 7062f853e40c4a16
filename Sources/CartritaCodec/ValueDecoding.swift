import CMsgPack
import CartritaEnvelope

extension EnvelopeDecoder {
    /// Any msgpack value (snapshots, free-form files), with the same hardening as envelopes:
    /// size limit, structural scan, then msgpack-c; maps need string keys without duplicates.
    public func decodeValue(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> MCPValue {
        try Preflight.check(bytes, limits: self.limits, maxBytes: self.limits.maxEnvelopeBytes)
        var offset = 0
        var root = msgpack_object()
        defer { msgpack_zone_clear(self.zone) }
        let result = msgpack_unpack(bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count, &offset, self.zone, &root)
        guard result == MSGPACK_UNPACK_SUCCESS else {
            throw CodecError(result == MSGPACK_UNPACK_NOMEM_ERROR ? .outOfMemory : .malformed, path: "$", offset: offset, "msgpack-c refused the input (\(result.rawValue))")
        }
        return try ObjectReader.value(root, "$")
    }

    public func decodeValue(_ bytes: [UInt8]) throws(CodecError) -> MCPValue {
        try withBytes(bytes) { (raw) throws(CodecError) in try self.decodeValue(raw) }
    }
}
