import CartritaEnvelope

extension EnvelopeDecoder {
    /// Any msgpack value (snapshots, free-form files), with the same hardening as envelopes:
    /// size limit, structural scan, then the parse; maps need string keys without duplicates.
    public func decodeValue(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> MCPValue {
        try Preflight.check(bytes, limits: self.limits, maxBytes: self.limits.maxEnvelopeBytes)
        return try ObjectReader.value(try self.tape.parse(bytes), "$")
    }

    public func decodeValue(_ bytes: [UInt8]) throws(CodecError) -> MCPValue {
        try withBytes(bytes) { (raw) throws(CodecError) in try self.decodeValue(raw) }
    }
}
