#include "CKernels.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

// C = α · op(A) · op(B) + β · C with bf16 operands and FP32 accumulation (AVX512_BF16).
//
// The operands are rounded to bf16 (round to nearest even, as `vcvtne2ps2bf16`: 8 significant
// bits, so each operand carries a relative error of at most 2⁻⁸) while they are packed, and every
// product is accumulated in FP32 by `vdpbf16ps`, which adds two products of bf16 pairs into each
// FP32 lane: acc[j] += a[2j]·b[2j] + a[2j+1]·b[2j+1]. So both packed operands hold *pairs* of
// neighbouring k (a 32-bit word, the even k in its lower half):
//
//   B (vector operand) in panels of NR = 32 columns: word (p, j) = (op(B)[2p][j], op(B)[2p+1][j]),
//     stored [panel][p][32], zero-padded past n and past k;
//   A (broadcast operand): word (i, p) = (op(A)[i][2p], op(A)[i][2p+1]), stored with whatever
//     strides its source gives without a transpose ([i][p] for plain A, [p][i] for transposed A).
//
// The micro-kernel keeps an MR × 32 block of C in 2·MR registers: for each pair p it loads two
// vectors of B's panel, broadcasts A's word for each of the MR rows and issues 2·MR `vdpbf16ps`.

#define NR 32
#define MR 12

typedef uint32_t word;

// Thread-local packing buffers, grown as needed (each worker thread packs its own slice).
static __thread word *packed_a = NULL, *packed_b = NULL;
static __thread size_t packed_a_words = 0, packed_b_words = 0;

static word *buffer(word **p, size_t *have, size_t need) {
    if (need > *have) {
        free(*p);
        size_t bytes = ((need * sizeof(word) + 63) / 64) * 64;
        *p = aligned_alloc(64, bytes);
        *have = *p ? need : 0;
    }
    return *p;
}

int vae_cpu_has_avx512bf16(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static inline __mmask16 lanes(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

// 16 words from two rows of 16 floats: word j = (even[j], odd[j]).
TARGET static inline __m512i interleave_pairs(__m512 even, __m512 odd) {
    // cvtne2ps(odd, even): elements 0…15 = even, 16…31 = odd, as bf16.
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(odd, even);
    return _mm512_permutexvar_epi16(order, both);
}

// Plain A (m × k, rows of stride lda): rows of kp words, [i][p].
TARGET static void pack_rows(const float *a, long lda, long rows, long k, word *out) {
    long kp = (k + 1) / 2;
    for (long i = 0; i < rows; i++) {
        const float *row = a + i * lda;
        word *dst = out + i * kp;
        for (long c = 0; c < k; c += 32) {
            __m512 lo = _mm512_maskz_loadu_ps(lanes(k - c), row + c);
            __m512 hi = _mm512_maskz_loadu_ps(lanes(k - c - 16), row + c + 16);
            // cvtne2ps(hi, lo) is already in k order: words (lo0,lo1), (lo2,lo3), …
            __m512i w = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            long words = (k - c + 1) / 2;
            _mm512_mask_storeu_epi32(dst + c / 2, lanes(words), w);
        }
    }
}

// Stored S (k × cols, stride ld) read as pairs of rows: word (p, j) = (S[2p][j], S[2p+1][j]),
// written [p][j] with row stride `out_stride`, columns j0 … j0 + width (width ≤ out_stride),
// zeros past k and past `cols`.
TARGET static void pack_row_pairs(const float *s, long ld, long k, long cols, long j0, long width,
                                  word *out, long out_stride) {
    long kp = (k + 1) / 2;
    for (long p = 0; p < kp; p++) {
        const float *even = s + (2 * p) * ld;
        const float *odd = 2 * p + 1 < k ? even + ld : NULL;
        for (long j = 0; j < width; j += 16) {
            __mmask16 m = lanes(cols - j0 - j);
            __m512 e = _mm512_maskz_loadu_ps(m, even + j0 + j);
            __m512 o = odd ? _mm512_maskz_loadu_ps(m, odd + j0 + j) : _mm512_setzero_ps();
            _mm512_storeu_si512(out + p * out_stride + j, interleave_pairs(e, o));
        }
    }
}

// Stored S (n × k, stride ld) read transposed (op(B) = Sᵀ): word (p, j) = (S[j][2p], S[j][2p+1]),
// one panel of columns j0 … j0 + 32, [p][32]. Each row is converted to words, then 16 rows at a
// time are gathered word by word.
TARGET static void pack_transposed_panel(const float *s, long ld, long k, long n, long j0, word *panel,
                                         word *rows) {
    long kp = (k + 1) / 2;
    for (long half = 0; half < 2; half++) {
        long first = j0 + 16 * half;
        long count = n - first < 16 ? n - first : 16;
        if (count <= 0) {
            for (long p = 0; p < kp; p++) _mm512_storeu_si512(panel + p * NR + 16 * half, _mm512_setzero_si512());
            continue;
        }
        pack_rows(s + first * ld, ld, count, k, rows);
        const __m512i index = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32((int)kp));
        __mmask16 m = lanes(count);
        for (long p = 0; p < kp; p++) {
            __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, index, rows + p, 4);
            _mm512_storeu_si512(panel + p * NR + 16 * half, w);
        }
    }
}

// C[0…mr) × [0…width) (width ≤ 32) = α · A·B + β · C for one panel.
TARGET static inline __attribute__((always_inline)) void micro_kernel(
    int mr, long kp, const word *a, long a_row, long a_pair, const word *b, float *c, long ldc, long width,
    float alpha, float beta) {
    __m512 acc[MR][2];
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * NR);
        __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * NR + 16);
        for (int r = 0; r < mr; r++) {
            __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r * a_row + p * a_pair]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
        }
    }
    __mmask16 m0 = lanes(width), m1 = lanes(width - 16);
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        __m512 y0 = _mm512_mul_ps(va, acc[r][0]), y1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0) {
            y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), y0);
            y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), y1);
        }
        _mm512_mask_storeu_ps(row, m0, y0);
        _mm512_mask_storeu_ps(row + 16, m1, y1);
    }
}

#define KERNEL_CASE(R) \
    case R: micro_kernel(R, kp, a, a_row, a_pair, b, c, ldc, width, alpha, beta); break;

TARGET static void block(int mr, long kp, const word *a, long a_row, long a_pair, const word *b, float *c, long ldc,
                         long width, float alpha, float beta) {
    switch (mr) {
        KERNEL_CASE(1) KERNEL_CASE(2) KERNEL_CASE(3) KERNEL_CASE(4) KERNEL_CASE(5) KERNEL_CASE(6)
        KERNEL_CASE(7) KERNEL_CASE(8) KERNEL_CASE(9) KERNEL_CASE(10) KERNEL_CASE(11) KERNEL_CASE(12)
    }
}

TARGET void vae_gemm_bf16(int transpose_a, int transpose_b, long m, long n, long k, float alpha,
                          const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // C = β · C
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return;
    }
    long kp = (k + 1) / 2, panels = (n + NR - 1) / NR;

    // A: plain rows → [i][p] (row stride kp); stored k × m (transposed) → [p][i] (pair stride m).
    // Room past A: the 16-word groups of transposed packing spill up to 16 words; then the scratch
    // rows of a transposed B.
    word *pa = buffer(&packed_a, &packed_a_words, (size_t)(m * kp + 16 + 16 * kp));
    word *pb = buffer(&packed_b, &packed_b_words, (size_t)(panels * kp * NR));
    if (!pa || !pb) abort();
    long a_row, a_pair;
    if (transpose_a) {
        pack_row_pairs(a, lda, k, m, 0, m, pa, m);  // row p's last group spills into row p + 1, rewritten next
        a_row = 1, a_pair = m;
    } else {
        pack_rows(a, lda, m, k, pa);
        a_row = kp, a_pair = 1;
    }
    for (long q = 0; q < panels; q++) {
        word *panel = pb + q * kp * NR;
        if (transpose_b)
            pack_transposed_panel(b, ldb, k, n, q * NR, panel, pa + m * kp + 16);
        else
            pack_row_pairs(b, ldb, k, n, q * NR, NR, panel, NR);
    }
    for (long q = 0; q < panels; q++) {
        long width = n - q * NR < NR ? n - q * NR : NR;
        const word *panel = pb + q * kp * NR;
        for (long i = 0; i < m; i += MR) {
            int mr = m - i < MR ? (int)(m - i) : MR;
            block(mr, kp, pa + i * a_row, a_row, a_pair, panel, c + i * ldc + q * NR, ldc, width, alpha, beta);
        }
    }
}
