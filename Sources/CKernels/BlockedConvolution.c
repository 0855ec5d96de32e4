#include "CKernels.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

// Register-blocked convolutions on channels-last images, for AVX-512: no patch matrix, no packing,
// no zero-filled product buffer. A block of output positions × up to 64 channels lives in 16
// vector registers while the sum runs over the kernel taps and the reduced channels; each step
// loads the tap's weight vectors once and multiplies them by one broadcast input value per
// position. Taps that fall wholly outside the image (a padded border row) are skipped; a position
// whose tap falls in the padding reads zeros instead of branching.
//
// Measured on the conv reference model's 32→64 k4 s2 p1 layer (one core, 64 images), against the
// channels-last im2col + OpenBLAS GEMM: forward 265 against 190 effective GFLOP/s, weight
// gradient 285 against 185 (effective: counting the padding's products, as the GEMM does).
// Sixteen accumulators: with 28 the compiler ran out of the 32 registers and spilled.

#define TARGET __attribute__((target("avx512f")))

// MAX_ROWS: grid rows per product call (their pointers on the stack); STACK_PADDED: the largest
// padded image (floats) copied on the stack rather than the heap (a 28×28 one-channel image
// padded for k4 s2 p1 is 900).
// IMAGES_PER_PASS: images that share one working-out of a block's taps and offsets (their
// inputs, 25 KB each for the 32-channel 14 × 14 layer, stay in L2).
enum { MAX_TAPS = 64, MAX_BLOCK = 16, ZERO_RUN = 4096, MAX_ROWS = 256, NARROW = 4, STACK_PADDED = 8192, IMAGES_PER_PASS = 4 };

// What a padded position reads: as many zeros as a position has reduced channels.
static const float zeros[ZERO_RUN] __attribute__((aligned(64)));

int vae_blocked_convolution_supported(size_t reduced, size_t vectorChannels, size_t kernel) {
    return __builtin_cpu_supports("avx512f") && vectorChannels > 0 && vectorChannels % 16 == 0 &&
           reduced >= 1 && reduced <= ZERO_RUN && kernel >= 1 && kernel * kernel <= MAX_TAPS;
}

// Output positions per block for a block of `vectors` 16-channel vectors (16 accumulators).
static inline long positions_per_block(long vectors) { return vectors == 4 ? 4 : vectors == 3 ? 5 : vectors == 2 ? 8 : 16; }

// For each of `images` images (source in + b·inStride, destination out + b·outStride), the RW
// positions r and NV vectors q of a block:
//   out[r·ldo + 16q + l] = max?(bias[16q + l] + Σ_t Σ_c src(t, r)[c] · w[taps[t] + c·ldw + 16q + l], 0)
// where src(t, r) = in + offsets[t·RW + r], or zeros where that offset is negative (padding).
// The offsets and taps are the same for every image, so the caller works them out once.
#define SUM_BLOCK(RW, NV)                                                                                      \
    TARGET static void sum_block_##RW##_##NV(const long *offsets, const long *taps, long ntaps,                \
                                             const float *in, long inStride, long images, const float *w,      \
                                             long reduced, long ldw, const float *bias, int relu, float *out,  \
                                             long outStride, long ldo) {                                       \
        for (long b = 0; b < images; b++) {                                                                    \
            const float *base = in + b * inStride;                                                             \
            __m512 acc[RW][NV];                                                                                \
            for (int q = 0; q < NV; q++) {                                                                     \
                const __m512 start = bias ? _mm512_loadu_ps(bias + 16 * q) : _mm512_setzero_ps();             \
                for (int r = 0; r < RW; r++) acc[r][q] = start;                                                \
            }                                                                                                  \
            for (long t = 0; t < ntaps; t++) {                                                                 \
                const float *src[RW];                                                                          \
                for (int r = 0; r < RW; r++) {                                                                 \
                    const long offset = offsets[t * RW + r];                                                   \
                    src[r] = offset < 0 ? zeros : base + offset;                                               \
                }                                                                                              \
                const float *wt = w + taps[t];                                                                 \
                for (long c = 0; c < reduced; c++) {                                                           \
                    __m512 wv[NV];                                                                             \
                    for (int q = 0; q < NV; q++) wv[q] = _mm512_loadu_ps(wt + c * ldw + 16 * q);               \
                    for (int r = 0; r < RW; r++) {                                                             \
                        const __m512 xv = _mm512_set1_ps(src[r][c]);                                           \
                        for (int q = 0; q < NV; q++) acc[r][q] = _mm512_fmadd_ps(xv, wv[q], acc[r][q]);        \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
            float *dst = out + b * outStride;                                                                  \
            const __m512 zero = _mm512_setzero_ps();                                                           \
            for (int r = 0; r < RW; r++)                                                                       \
                for (int q = 0; q < NV; q++)                                                                   \
                    _mm512_storeu_ps(dst + r * ldo + 16 * q, relu ? _mm512_max_ps(acc[r][q], zero) : acc[r][q]); \
        }                                                                                                      \
    }

// acc[a][q] = out[a·ldo + 16q + ·] + Σ_rows Σ_{m < count} b[row][m·sb + a] · v[row][m·sv + 16q + ·]
// for the RA broadcast channels a and NV vectors q of a block (b and v already offset to the block).
#define PRODUCT_BLOCK(RA, NV)                                                                                  \
    TARGET static void product_block_##RA##_##NV(const float *const *b, const float *const *v, long rows,      \
                                                 long count, long sb, long sv, long boff, long voff,           \
                                                 float *out, long ldo) {                                       \
        __m512 acc[RA][NV];                                                                                    \
        for (int a = 0; a < RA; a++)                                                                           \
            for (int q = 0; q < NV; q++) acc[a][q] = _mm512_loadu_ps(out + a * ldo + 16 * q);                  \
        for (long row = 0; row < rows; row++) {                                                                \
            const float *br = b[row] + boff, *vr = v[row] + voff;                                              \
            for (long m = 0; m < count; m++) {                                                                 \
                __m512 vv[NV];                                                                                 \
                for (int q = 0; q < NV; q++) vv[q] = _mm512_loadu_ps(vr + m * sv + 16 * q);                    \
                for (int a = 0; a < RA; a++) {                                                                 \
                    const __m512 bv = _mm512_set1_ps(br[m * sb + a]);                                          \
                    for (int q = 0; q < NV; q++) acc[a][q] = _mm512_fmadd_ps(bv, vv[q], acc[a][q]);            \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int a = 0; a < RA; a++)                                                                           \
            for (int q = 0; q < NV; q++) _mm512_storeu_ps(out + a * ldo + 16 * q, acc[a][q]);                  \
    }

#define BLOCKS_4(M) M(1, 4) M(2, 4) M(3, 4) M(4, 4)
#define BLOCKS_3(M) M(1, 3) M(2, 3) M(3, 3) M(4, 3) M(5, 3)
#define BLOCKS_2(M) M(1, 2) M(2, 2) M(3, 2) M(4, 2) M(5, 2) M(6, 2) M(7, 2) M(8, 2)
#define BLOCKS_1(M) M(1, 1) M(2, 1) M(3, 1) M(4, 1) M(5, 1) M(6, 1) M(7, 1) M(8, 1) \
                    M(9, 1) M(10, 1) M(11, 1) M(12, 1) M(13, 1) M(14, 1) M(15, 1) M(16, 1)
#define ALL_BLOCKS(M) BLOCKS_4(M) BLOCKS_3(M) BLOCKS_2(M) BLOCKS_1(M)

ALL_BLOCKS(SUM_BLOCK)
ALL_BLOCKS(PRODUCT_BLOCK)

typedef void (*sum_block_fn)(const long *, const long *, long, const float *, long, long, const float *, long, long,
                             const float *, int, float *, long, long);
typedef void (*product_block_fn)(const float *const *, const float *const *, long, long, long, long, long, long, float *, long);

#define SUM_ENTRY(RW, NV) [NV][RW] = sum_block_##RW##_##NV,
#define PRODUCT_ENTRY(RA, NV) [NV][RA] = product_block_##RA##_##NV,
static const sum_block_fn sum_blocks[5][MAX_BLOCK + 1] = {ALL_BLOCKS(SUM_ENTRY)};
static const product_block_fn product_blocks[5][MAX_BLOCK + 1] = {ALL_BLOCKS(PRODUCT_ENTRY)};

static inline long vectors_in_block(long vectorChannels, long first) {
    const long left = (vectorChannels - first) / 16;
    return left < 4 ? left : 4;
}

static inline long max_long(long a, long b) { return a > b ? a : b; }

// A copy of n images [H, W, C] inside zeros: pad rows/columns before, enough after for
// `paddedHeight` × `paddedWidth`.
static void pad_images(const float *restrict in, long n, long H, long W, long C, long pad, long paddedHeight,
                       long paddedWidth, float *restrict out) {
    for (long t = 0; t < n * paddedHeight * paddedWidth * C; t++) out[t] = 0.0f;
    for (long b = 0; b < n; b++)
        for (long y = 0; y < H; y++) {
            const float *src = in + (b * H + y) * W * C;
            float *dst = out + ((b * paddedHeight + y + pad) * paddedWidth + pad) * C;
            for (long t = 0; t < W * C; t++) dst[t] = src[t];
        }
}

// Few channels (a one-channel image): a handful of products per tap would not pay for the tap's
// pointers. On a zero-padded copy a kernel row's k·R values (v, c) are one contiguous run, so a
// tap is a whole kernel row u and the sum runs over k·R values (the weight's [u, v, c, o] order
// makes that run contiguous too).
TARGET static int gather_narrow(const float *restrict in, long batch, long R, long H, long W, long Ho, long Wo, long K,
                                long s, long p, const float *restrict w, long V, const float *restrict bias, int relu,
                                float *restrict out) {
    const long Hp = max_long((Ho - 1) * s + K, H + p), Wp = max_long((Wo - 1) * s + K, W + p);
    float stack[STACK_PADDED];
    float *padded = Hp * Wp * R <= STACK_PADDED ? stack : malloc(sizeof(float) * (size_t)(Hp * Wp * R));
    if (!padded) return 0;
    long offsets[MAX_TAPS * MAX_BLOCK], taps[MAX_TAPS];
    for (long b = 0; b < batch; b++) {
        pad_images(in + b * H * W * R, 1, H, W, R, p, Hp, Wp, padded);
        for (long i = 0; i < Ho; i++)
        for (long o = 0; o < V; o += 16 * vectors_in_block(V, o)) {
            const long nv = vectors_in_block(V, o), most = positions_per_block(nv);
            for (long j0 = 0; j0 < Wo; j0 += most) {
                const long rw = Wo - j0 < most ? Wo - j0 : most;
                long n = 0;
                for (long u = 0; u < K; u++) {
                    const long ih = i * s - p + u;
                    if (ih < 0 || ih >= H) continue;  // a row of padding
                    for (long r = 0; r < rw; r++) offsets[n * rw + r] = ((i * s + u) * Wp + (j0 + r) * s) * R;
                    taps[n++] = u * K * R * V + o;
                }
                sum_blocks[nv][rw](offsets, taps, n, padded, 0, 1, w, K * R, V, bias ? bias + o : 0, relu,
                                   out + ((b * Ho + i) * Wo + j0) * V + o, 0, V);
            }
        }
    }
    if (padded != stack) free(padded);
    return 1;
}

TARGET void vae_conv_gather(const float *restrict in, size_t batch, size_t reduced, size_t height, size_t width,
                            size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                            const float *restrict w, size_t vectorChannels, const float *restrict bias, int relu,
                            float *restrict out) {
    const long R = (long)reduced, H = (long)height, W = (long)width, Ho = (long)outHeight, Wo = (long)outWidth;
    const long K = (long)kernel, s = (long)stride, p = (long)padding, V = (long)vectorChannels;
    if (R < NARROW && K * R <= ZERO_RUN && gather_narrow(in, (long)batch, R, H, W, Ho, Wo, K, s, p, w, V, bias, relu, out)) return;
    long offsets[MAX_TAPS * MAX_BLOCK], taps[MAX_TAPS];
    for (long b0 = 0; b0 < (long)batch; b0 += IMAGES_PER_PASS) {
        const long images = (long)batch - b0 < IMAGES_PER_PASS ? (long)batch - b0 : IMAGES_PER_PASS;
        for (long i = 0; i < Ho; i++)
        for (long o = 0; o < V; o += 16 * vectors_in_block(V, o)) {
            const long nv = vectors_in_block(V, o), most = positions_per_block(nv);
            for (long j0 = 0; j0 < Wo; j0 += most) {
                const long rw = Wo - j0 < most ? Wo - j0 : most;
                long n = 0;
                for (long u = 0; u < K; u++) {
                    const long ih = i * s - p + u;
                    if (ih < 0 || ih >= H) continue;
                    for (long v = 0; v < K; v++) {
                        int any = 0;
                        for (long r = 0; r < rw; r++) {
                            const long jw = (j0 + r) * s - p + v;
                            const int inside = jw >= 0 && jw < W;
                            offsets[n * rw + r] = inside ? (ih * W + jw) * R : -1;
                            any |= inside;
                        }
                        if (!any) continue;
                        taps[n++] = (u * K + v) * R * V + o;
                    }
                }
                sum_blocks[nv][rw](offsets, taps, n, in + b0 * H * W * R, H * W * R, images, w, R, V, bias ? bias + o : 0,
                                   relu, out + ((b0 * Ho + i) * Wo + j0) * V + o, Ho * Wo * V, V);
            }
        }
    }
}

TARGET void vae_conv_scatter(const float *restrict in, size_t batch, size_t reduced, size_t height, size_t width,
                             size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                             const float *restrict w, size_t vectorChannels, const float *restrict bias, int relu,
                             float *restrict out) {
    const long R = (long)reduced, H = (long)height, W = (long)width, Ho = (long)outHeight, Wo = (long)outWidth;
    const long K = (long)kernel, s = (long)stride, p = (long)padding, V = (long)vectorChannels;
    long offsets[MAX_TAPS * MAX_BLOCK], taps[MAX_TAPS];
    for (long b0 = 0; b0 < (long)batch; b0 += IMAGES_PER_PASS) {
        const long images = (long)batch - b0 < IMAGES_PER_PASS ? (long)batch - b0 : IMAGES_PER_PASS;
        for (long y = 0; y < Ho; y++)
        // The output columns x with (x + p) mod s = phase take kernel columns v ≡ phase (mod s)
        // from consecutive input columns j = (x + p − v)/s: one block shares its taps.
        for (long phase = 0; phase < s; phase++) {
            const long x0 = ((phase - p) % s + s) % s;
            if (x0 >= Wo) continue;
            const long columns = (Wo - x0 + s - 1) / s;
            for (long o = 0; o < V; o += 16 * vectors_in_block(V, o)) {
                const long nv = vectors_in_block(V, o), most = positions_per_block(nv);
                for (long t0 = 0; t0 < columns; t0 += most) {
                    const long rw = columns - t0 < most ? columns - t0 : most;
                    long n = 0;
                    for (long u = (y + p) % s; u < K; u += s) {
                        const long i = (y + p - u) / s;
                        if (i < 0 || i >= H) continue;
                        for (long v = phase; v < K; v += s) {
                            const long j0 = (x0 + s * t0 + p - v) / s;  // exact: x0 + p − v ≡ 0 (mod s)
                            int any = 0;
                            for (long r = 0; r < rw; r++) {
                                const long j = j0 + r;
                                const int inside = j >= 0 && j < W;
                                offsets[n * rw + r] = inside ? (i * W + j) * R : -1;
                                any |= inside;
                            }
                            if (!any) continue;
                            taps[n++] = (u * K + v) * R * V + o;
                        }
                    }
                    sum_blocks[nv][rw](offsets, taps, n, in + b0 * H * W * R, H * W * R, images, w, R, V,
                                       bias ? bias + o : 0, relu, out + ((b0 * Ho + y) * Wo + x0 + s * t0) * V + o,
                                       Ho * Wo * V, s * V);
                }
            }
        }
    }
}

// One tap's weight gradient [A, V] (row stride V) += the products over `n` rows of `count`
// positions each, block by block over the vector and broadcast channels.
TARGET static void product_rows(const float *const *brows, const float *const *vrows, long n, long count, long sb,
                                long sv, long A, long V, float *tap) {
    for (long o = 0; o < V; o += 16 * vectors_in_block(V, o)) {
        const long nv = vectors_in_block(V, o), most = positions_per_block(nv);
        for (long a = 0; a < A; a += most) {
            const long ra = A - a < most ? A - a : most;
            product_blocks[nv][ra](brows, vrows, n, count, sb, sv, a, o, tap + a * V + o, V);
        }
    }
}

// The weight gradient over a zero-padded copy of a narrow gathered side, one image at a time: a
// kernel row u's k·A values (v, a) at a grid position are one contiguous run, as in gather_narrow.
TARGET static int weight_gradient_narrow(const float *restrict broadcast, long A, const float *restrict vector, long V,
                                         long batch, long Hg, long Wg, long Ht, long Wt, long K, long s, long p,
                                         float *restrict gradient) {
    const long Hp = max_long((Hg - 1) * s + K, Ht + p), Wp = max_long((Wg - 1) * s + K, Wt + p);
    float stack[STACK_PADDED];
    float *padded = Hp * Wp * A <= STACK_PADDED ? stack : malloc(sizeof(float) * (size_t)(Hp * Wp * A));
    if (!padded) return 0;
    const float *brows[MAX_ROWS], *vrows[MAX_ROWS];
    for (long b = 0; b < batch; b++) {
        pad_images(broadcast + b * Ht * Wt * A, 1, Ht, Wt, A, p, Hp, Wp, padded);
        for (long u = 0; u < K; u++)
        for (long i0 = 0; i0 < Hg; i0 += MAX_ROWS) {
            long n = 0;
            for (long i = i0; i < Hg && i < i0 + MAX_ROWS; i++) {
                const long it = i * s - p + u;
                if (it < 0 || it >= Ht) continue;  // a row of padding
                brows[n] = padded + (i * s + u) * Wp * A;
                vrows[n] = vector + (b * Hg + i) * Wg * V;
                n++;
            }
            if (n > 0) product_rows(brows, vrows, n, Wg, s * A, V, K * A, V, gradient + u * K * A * V);
        }
    }
    if (padded != stack) free(padded);
    return 1;
}

TARGET void vae_conv_weight_gradient(const float *restrict broadcast, size_t broadcastChannels,
                                     const float *restrict vector, size_t vectorChannels, size_t batch,
                                     size_t gridHeight, size_t gridWidth, size_t gatheredHeight, size_t gatheredWidth,
                                     size_t kernel, size_t stride, size_t padding, int broadcastIsGathered,
                                     float *restrict gradient) {
    const long A = (long)broadcastChannels, V = (long)vectorChannels, Hg = (long)gridHeight, Wg = (long)gridWidth;
    const long Ht = (long)gatheredHeight, Wt = (long)gatheredWidth, K = (long)kernel, s = (long)stride, p = (long)padding;
    if (broadcastIsGathered && A < NARROW &&
        weight_gradient_narrow(broadcast, A, vector, V, (long)batch, Hg, Wg, Ht, Wt, K, s, p, gradient))
        return;
    const long sb = broadcastIsGathered ? s * A : A, sv = broadcastIsGathered ? V : s * V;
    const float *brows[MAX_ROWS], *vrows[MAX_ROWS];
    for (long u = 0; u < K; u++)
    for (long v = 0; v < K; v++) {
        // Grid columns [jlo, jhi) whose gathered column j·s − p + v lies in [0, Wt).
        long jlo = 0, jhi = Wg;
        while (jlo < Wg && jlo * s - p + v < 0) jlo++;
        while (jhi > jlo && (jhi - 1) * s - p + v >= Wt) jhi--;
        if (jhi == jlo) continue;
        float *tap = gradient + (u * K + v) * A * V;
        long n = 0;
        for (long row = 0; row < (long)batch * Hg; row++) {
            const long b = row / Hg, i = row % Hg, it = i * s - p + u;
            if (it >= 0 && it < Ht) {
                const long grid = (row * Wg + jlo), gathered = (b * Ht + it) * Wt + jlo * s - p + v;
                brows[n] = broadcast + (broadcastIsGathered ? gathered : grid) * A;
                vrows[n] = vector + (broadcastIsGathered ? grid : gathered) * V;
                n++;
            }
            if (n == MAX_ROWS || (row == (long)batch * Hg - 1 && n > 0)) {
                product_rows(brows, vrows, n, jhi - jlo, sb, sv, A, V, tap);
                n = 0;
            }
        }
    }
}

void vae_weight_taps_first(const float *restrict w, size_t a, size_t b, size_t taps, int swap, float *restrict scratch,
                           float *restrict out) {
    if (!swap) {
        vae_transpose(w, a * b, taps, out);  // [(i, j), t] → [t, (i, j)]
        return;
    }
    vae_transpose(w, a, b * taps, scratch);  // [i, (j, t)] → [(j, t), i]
    for (size_t t = 0; t < taps; t++)
        for (size_t j = 0; j < b; j++) memcpy(out + (t * b + j) * a, scratch + (j * taps + t) * a, sizeof(float) * a);
}

void vae_weight_taps_last(const float *restrict g, size_t a, size_t b, size_t taps, int swap, float *restrict scratch,
                          float *restrict out) {
    if (!swap) {
        vae_transpose(g, taps, a * b, out);  // [t, (i, j)] → [(i, j), t]
        return;
    }
    for (size_t t = 0; t < taps; t++)
        for (size_t j = 0; j < b; j++) memcpy(scratch + (j * taps + t) * a, g + (t * b + j) * a, sizeof(float) * a);
    vae_transpose(scratch, b * taps, a, out);  // [(j, t), i] → [i, (j, t)]
}
