#ifndef CARTRITA_CSHA256_H
#define CARTRITA_CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// SHA-256 (FIPS 180-4) of `length` bytes at `data`, written to `digest` (32 bytes).
///
/// Why our own: the log's writer hashes every record on its thread, and swift-crypto's one-shot
/// hash allocates and zeroes a context object per call, which cost about as much as hashing a
/// 1 KiB record. This is one call with the state on the stack. On x86-64 with the SHA
/// extensions it uses them (checked once with cpuid); otherwise portable C. Tests compare it
/// with swift-crypto's SHA-256 at every length around the block boundaries.
void cartrita_sha256(const void *data, size_t length, uint8_t digest[32]);

/// Which implementation `cartrita_sha256` runs: 1 with the x86 SHA extensions, 0 portable.
int cartrita_sha256_uses_sha_extensions(void);

/// The portable implementation, always (for tests: both paths must agree).
void cartrita_sha256_portable(const void *data, size_t length, uint8_t digest[32]);

#endif
