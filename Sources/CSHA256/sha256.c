// SHA-256 as FIPS 180-4 defines it: a portable block function, and on x86-64 one with the SHA
// extensions (sha256rnds2 / sha256msg1 / sha256msg2). Padding and output are shared.
#include "csha256.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define CARTRITA_SHA256_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

typedef void (*blocks_fn)(uint32_t state[8], const uint8_t *data, size_t blocks);

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void blocks_portable(uint32_t state[8], const uint8_t *data, size_t blocks) {
    uint32_t w[64];
    while (blocks--) {
        for (int t = 0; t < 16; t++) w[t] = load_be32(data + 4 * t);
        for (int t = 16; t < 64; t++) {
            uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (int t = 0; t < 64; t++) {
            uint32_t s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            uint32_t ch = (e & f) ^ (~e & g);
            uint32_t t1 = h + s1 + ch + K[t] + w[t];
            uint32_t s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
            uint32_t t2 = s0 + maj;
            h = g; g = f; f = e; e = d + t1;
            d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
        data += 64;
    }
}

#ifdef CARTRITA_SHA256_X86
// The SHA extensions keep the state as two vectors, ABEF and CDGH (lane 0 lowest). Each
// sha256rnds2 does two rounds with the two low lanes of its message-plus-constant operand.
__attribute__((target("sha,sse4.1,ssse3")))
static void blocks_sha_extensions(uint32_t state[8], const uint8_t *data, size_t blocks) {
    // Bytes of each 32-bit word reversed: the message is big-endian.
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&state[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&state[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);

    while (blocks--) {
        const __m128i abef_start = abef;
        const __m128i cdgh_start = cdgh;
        // w[g % 4] holds message words 4g .. 4g+3 of the current group of four rounds.
        __m128i w[4];
        for (int g = 0; g < 16; g++) {
            __m128i words;
            if (g < 4) {
                words = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), byteswap);
            } else {
                // W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], four at a time: msg1 gives
                // W[t-16] + σ0(W[t-15]); the alignr adds W[t-7]; msg2 adds σ1(W[t-2]).
                __m128i partial = _mm_sha256msg1_epu32(w[g % 4], w[(g + 1) % 4]);
                partial = _mm_add_epi32(partial, _mm_alignr_epi8(w[(g + 3) % 4], w[(g + 2) % 4], 4));
                words = _mm_sha256msg2_epu32(partial, w[(g + 3) % 4]);
            }
            w[g % 4] = words;
            __m128i input = _mm_add_epi32(words, _mm_loadu_si128((const __m128i *)&K[4 * g]));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, input);
            input = _mm_shuffle_epi32(input, 0x0E);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, input);
        }
        abef = _mm_add_epi32(abef, abef_start);
        cdgh = _mm_add_epi32(cdgh, cdgh_start);
        data += 64;
    }

    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)&state[0], dcba);
    _mm_storeu_si128((__m128i *)&state[4], hgfe);
}

// 0 unknown, 1 SHA extensions, 2 portable. A race only computes the same answer twice.
static int chosen_path = 0;

static int detect_sha_extensions(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
}
#endif

static blocks_fn choose_blocks(void) {
#ifdef CARTRITA_SHA256_X86
    int path = __atomic_load_n(&chosen_path, __ATOMIC_RELAXED);
    if (path == 0) {
        path = detect_sha_extensions() ? 1 : 2;
        __atomic_store_n(&chosen_path, path, __ATOMIC_RELAXED);
    }
    return path == 1 ? blocks_sha_extensions : blocks_portable;
#else
    return blocks_portable;
#endif
}

static void sha256_with(blocks_fn blocks, const void *data, size_t length, uint8_t digest[32]) {
    uint32_t state[8];
    memcpy(state, H0, sizeof state);
    const uint8_t *bytes = (const uint8_t *)data;
    size_t full = length / 64;
    if (full > 0) blocks(state, bytes, full);
    // The tail, the 0x80 marker, zeros, and the length in bits (big-endian): one or two blocks.
    uint8_t last[128];
    size_t rest = length - full * 64;
    memcpy(last, bytes + full * 64, rest);
    last[rest] = 0x80;
    size_t lastLength = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(last + rest + 1, 0, lastLength - rest - 1 - 8);
    uint64_t bits = (uint64_t)length * 8;
    for (int i = 0; i < 8; i++) last[lastLength - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks(state, last, lastLength / 64);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(state[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(state[i] >> 8);
        digest[4 * i + 3] = (uint8_t)state[i];
    }
}

void cartrita_sha256(const void *data, size_t length, uint8_t digest[32]) {
    sha256_with(choose_blocks(), data, length, digest);
}

void cartrita_sha256_portable(const void *data, size_t length, uint8_t digest[32]) {
    sha256_with(blocks_portable, data, length, digest);
}

int cartrita_sha256_uses_sha_extensions(void) { return choose_blocks() != blocks_portable; }
