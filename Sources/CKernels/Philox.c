// Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator, so that the i-th number of a stream is a pure function
// of (key, counter) — the same on every thread, rank and device, whatever the order of drawing.
// Normals by Box–Muller in double precision, rounded to float.
#include <math.h>
#include <stdint.h>
#include "CKernels.h"
#include "Clones.h"

enum { PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u, PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u };

void vae_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0, hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void vae_philox_normals(uint64_t seed, uint64_t stream, uint64_t first, size_t count, float *out) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const double two_pi = 6.283185307179586476925286766559;
    size_t done = 0;
    while (done < count) {
        uint64_t index = first + done, block = index / 4;
        uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)}, bits[4];
        vae_philox4x32_10(counter, key, bits);
        double normals[4];
        for (int pair = 0; pair < 2; pair++) {
            double u1 = ((double)bits[2 * pair] + 0.5) * 0x1p-32;   // in (0, 1): log is finite
            double u2 = ((double)bits[2 * pair + 1] + 0.5) * 0x1p-32;
            double radius = sqrt(-2.0 * log(u1));
            normals[2 * pair] = radius * cos(two_pi * u2);
            normals[2 * pair + 1] = radius * sin(two_pi * u2);
        }
        for (uint64_t j = index % 4; j < 4 && done < count; j++) out[done++] = (float)normals[j];
    }
}

enum { LANES = 16 };

// Sixteen Philox blocks at a time, lane by lane (vectorised: each lane's words in its own
// array), then the comparisons over the 64 words in one loop.
CLONES void vae_philox_binarize(uint64_t seed, uint64_t stream, const unsigned char *bytes, const float *values, size_t count, float *out) {
    size_t blocks = (count + 3) / 4;
    for (size_t base = 0; base < blocks; base += LANES) {
        uint32_t c0[LANES], c1[LANES], c2[LANES], c3[LANES];
        for (int j = 0; j < LANES; j++) {
            uint64_t block = base + (uint64_t)j;
            c0[j] = (uint32_t)block;
            c1[j] = (uint32_t)(block >> 32);
            c2[j] = (uint32_t)stream;
            c3[j] = (uint32_t)(stream >> 32);
        }
        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
        for (int round = 0; round < 10; round++) {
            for (int j = 0; j < LANES; j++) {
                uint64_t p0 = (uint64_t)PHILOX_M0 * c0[j], p1 = (uint64_t)PHILOX_M1 * c2[j];
                uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
                c1[j] = (uint32_t)p1;
                c3[j] = (uint32_t)p0;
                c0[j] = n0;
                c2[j] = n2;
            }
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint32_t words[4 * LANES];
        for (int j = 0; j < LANES; j++) {
            words[4 * j] = c0[j];
            words[4 * j + 1] = c1[j];
            words[4 * j + 2] = c2[j];
            words[4 * j + 3] = c3[j];
        }
        // u = (word >> 8) · 2⁻²⁴ is exact: 24 bits in [0, 1).
        size_t first = base * 4, n = count - first < 4 * LANES ? count - first : 4 * LANES;
        if (bytes) {
            for (size_t i = 0; i < n; i++) out[first + i] = (float)(words[i] >> 8) * 0x1p-24f < (float)bytes[first + i] / 255.0f ? 1.0f : 0.0f;
        } else {
            for (size_t i = 0; i < n; i++) out[first + i] = (float)(words[i] >> 8) * 0x1p-24f < values[first + i] ? 1.0f : 0.0f;
        }
    }
}
