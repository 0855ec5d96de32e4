#include "CKernels.h"
#include "Clones.h"
#include "Patches.h"

// Channels-last (NHWC) patches: a kernel row of a patch, kw = 0…k−1 at source columns
// pw·s − p + kw, is one contiguous run of k·C values in the source row, so gathering and
// scattering are runs of copies and adds, never single strided values.

INLINE_COPIES static inline void copy_run(float *restrict d, const float *restrict s, long n) {
    if (n == 4) {
        *(float4_unaligned *)d = *(const float4_unaligned *)s;
        return;
    }
    for (long t = 0; t < n; t++) d[t] = s[t];
}

INLINE_COPIES static inline void add_run(float *restrict d, const float *restrict s, long n) {
    if (n == 4) {
        *(float4_unaligned *)d += *(const float4_unaligned *)s;
        return;
    }
    for (long t = 0; t < n; t++) d[t] += s[t];
}

// For each kernel row kh (with its grid row ph) whose patch covers output row y,
// y = ph·s − pad + kh with 0 ≤ ph < gridCount; likewise for columns.
#define FOR_COVERING(kh, ph, y, K, s, pad, gridCount)                                          \
    for (long kh = ((y) + (pad)) % (s), ph = ((y) + (pad) - kh) / (s); kh < (K); kh += (s), ph--) \
        if (ph >= 0 && ph < (gridCount))

// Narrow patches (k·C ≤ 16, e.g. a one-channel image): per-position bounds logic would cost more
// than the copies, so each source row is first laid into a zero-padded line and every grid
// position copies its k·C values from it without checks.
enum { NARROW_LINE = 4096 };

static inline int is_narrow(long C, long K, long gridWidth, long stride) {
    return K * C <= 16 && ((gridWidth - 1) * stride + K) * C <= NARROW_LINE;
}

__attribute__((always_inline)) INLINE_COPIES static inline void
im2col_narrow(const float *restrict src, long batch, long C, long H, long W, long gridHeight, long gridWidth,
              long K, long s, long pad, float *restrict cols) {
    const long rowLength = K * K * C, lineLength = ((gridWidth - 1) * s + K) * C;
    float line[NARROW_LINE];
    for (long t = 0; t < lineLength; t++) line[t] = 0.0f;
    // Source columns [first, last) land at line[(x + pad)·C]; the rest of the line stays 0.
    const long first = pad, last = (W + pad) * C < lineLength ? W + pad : lineLength / C;
    for (long b = 0; b < batch; b++)
    for (long ph = 0; ph < gridHeight; ph++)
    for (long kh = 0; kh < K; kh++) {
        float *out = cols + (b * gridHeight + ph) * gridWidth * rowLength + kh * K * C;
        const long sh = ph * s - pad + kh;
        if (sh < 0 || sh >= H) {
            for (long pw = 0; pw < gridWidth; pw++)
                for (long t = 0; t < K * C; t++) out[pw * rowLength + t] = 0.0f;
            continue;
        }
        const float *in = src + (b * H + sh) * W * C;
        for (long t = 0; t < (last - first) * C; t++) line[first * C + t] = in[t];
        for (long pw = 0; pw < gridWidth; pw++) copy_run(out + pw * rowLength, line + pw * s * C, K * C);
    }
}

__attribute__((always_inline)) INLINE_COPIES static inline void
col2im_narrow(const float *restrict cols, long batch, long C, long H, long W, long gridHeight, long gridWidth,
              long K, long s, long pad, const float *restrict base, int relu, float *restrict dst) {
    const long rowLength = K * K * C, lineLength = ((gridWidth - 1) * s + K) * C;
    // Output column x is line position x + pad; columns past the line get no patch.
    const long covered = lineLength / C - pad < W ? lineLength / C - pad : W;
    float line[NARROW_LINE];
    for (long b = 0; b < batch; b++)
    for (long y = 0; y < H; y++) {
        for (long t = 0; t < lineLength; t++) line[t] = 0.0f;
        FOR_COVERING(kh, ph, y, K, s, pad, gridHeight) {
            const float *in = cols + (b * gridHeight + ph) * gridWidth * rowLength + kh * K * C;
            // One kernel column at a time: its targets never overlap, so no add waits on another.
            for (long kw = 0; kw < K; kw++)
                for (long pw = 0; pw < gridWidth; pw++)
                    for (long c = 0; c < C; c++) line[(pw * s + kw) * C + c] += in[pw * rowLength + kw * C + c];
        }
        float *out = dst + (b * H + y) * W * C;
        for (long x = 0; x < covered; x++)
            for (long c = 0; c < C; c++) out[x * C + c] = base[c] + line[(x + pad) * C + c];
        for (long x = covered; x < W; x++)
            for (long c = 0; c < C; c++) out[x * C + c] = base[c];
        if (relu)
            for (long t = 0; t < W * C; t++) out[t] = out[t] > 0.0f ? out[t] : 0.0f;
    }
}

CLONES INLINE_COPIES
void vae_im2col_nhwc(const float *restrict src, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding,
                     float *restrict cols) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width;
    const long s = (long)stride, pad = (long)padding, rowLength = K * K * C;
    if (is_narrow(C, K, (long)gridWidth, s)) {
        im2col_narrow(src, (long)batch, C, H, W, (long)gridHeight, (long)gridWidth, K, s, pad, cols);
        return;
    }
    for (long b = 0; b < (long)batch; b++)
    for (long ph = 0; ph < (long)gridHeight; ph++)
    for (long pw = 0; pw < (long)gridWidth; pw++) {
        float *row = cols + ((b * (long)gridHeight + ph) * (long)gridWidth + pw) * rowLength;
        const long firstColumn = pw * s - pad;
        long lo, hi;
        valid_columns(firstColumn, K, W, &lo, &hi);
        for (long kh = 0; kh < K; kh++) {
            float *out = row + kh * K * C;
            const long sh = ph * s - pad + kh;
            if (sh < 0 || sh >= H) {
                for (long t = 0; t < K * C; t++) out[t] = 0.0f;
                continue;
            }
            const float *in = src + ((b * H + sh) * W + firstColumn + lo) * C;
            for (long t = 0; t < lo * C; t++) out[t] = 0.0f;
            copy_run(out + lo * C, in, (hi - lo) * C);
            for (long t = hi * C; t < K * C; t++) out[t] = 0.0f;
        }
    }
}

CLONES INLINE_COPIES
void vae_col2im_nhwc(const float *restrict cols, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding,
                     const float *restrict bias, int relu, float *restrict dst) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width;
    const long s = (long)stride, pad = (long)padding, rowLength = K * K * C;
    float zeros[C > 0 ? C : 1];
    for (long c = 0; c < C; c++) zeros[c] = 0.0f;
    const float *base = bias ? bias : zeros;
    if (is_narrow(C, K, (long)gridWidth, s)) {
        col2im_narrow(cols, (long)batch, C, H, W, (long)gridHeight, (long)gridWidth, K, s, pad, base, relu, dst);
        return;
    }
    // Each output pixel gathers the few patch values that cover it and is written once. Which
    // (kw, pw) cover column x is the same in every row: worked out once, as offsets into a grid
    // row of patches (no divisions in the loop).
    const long perColumn = (K + s - 1) / s;
    long coverCount[W > 0 ? W : 1], coverOffset[W > 0 ? W * perColumn : 1];
    for (long x = 0; x < W; x++) {
        coverCount[x] = 0;
        FOR_COVERING(kw, pw, x, K, s, pad, (long)gridWidth) {
            coverOffset[x * perColumn + coverCount[x]++] = pw * rowLength + kw * C;
        }
    }
    for (long b = 0; b < (long)batch; b++)
    for (long y = 0; y < H; y++) {
        const float *rows[K];
        long n = 0;
        FOR_COVERING(kh, ph, y, K, s, pad, (long)gridHeight) {
            rows[n++] = cols + (b * (long)gridHeight + ph) * (long)gridWidth * rowLength + kh * K * C;
        }
        for (long x = 0; x < W; x++) {
            float *out = dst + ((b * H + y) * W + x) * C;
            const long *offsets = coverOffset + x * perColumn, m = coverCount[x];
            long c = 0;
            // 16 channels at a time in a register, stored once.
            for (; c + 16 <= C; c += 16) {
                float16_unaligned sum = *(const float16_unaligned *)(base + c);
                for (long r = 0; r < n; r++)
                    for (long i = 0; i < m; i++) sum += *(const float16_unaligned *)(rows[r] + offsets[i] + c);
                if (relu) sum = __builtin_elementwise_max(sum, (float16_unaligned){0});
                *(float16_unaligned *)(out + c) = sum;
            }
            for (; c < C; c++) {
                float sum = base[c];
                for (long r = 0; r < n; r++)
                    for (long i = 0; i < m; i++) sum += rows[r][offsets[i] + c];
                out[c] = relu && sum < 0.0f ? 0.0f : sum;
            }
        }
    }
}

CLONES INLINE_COPIES
void vae_fill_rows(float *restrict y, const float *restrict row, size_t rows, size_t columns) {
    for (size_t r = 0; r < rows; r++) {
        float *out = y + r * columns;
        for (size_t c = 0; c < columns; c++) out[c] = row[c];
    }
}

CLONES INLINE_COPIES
void vae_column_sums(const float *restrict x, size_t rows, size_t columns, float *restrict sums) {
    for (size_t c = 0; c < columns; c++) sums[c] = 0.0f;
    if (columns < 16 && 16 % columns == 0) {
        // Few columns (a one-channel image): 16 lanes of partial sums over the flat array,
        // lane t summing column t mod columns, instead of one serial chain per column.
        float lanes[16] = {0};
        const size_t total = rows * columns, whole = total / 16 * 16;
        for (size_t i = 0; i < whole; i += 16)
            for (size_t t = 0; t < 16; t++) lanes[t] += x[i + t];
        for (size_t t = 0; t < 16; t++) sums[t % columns] += lanes[t];
        for (size_t i = whole; i < total; i++) sums[i % columns] += x[i];
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * columns;
        for (size_t c = 0; c < columns; c++) sums[c] += in[c];
    }
}

CLONES
void vae_add_column_sums(const float *restrict x, size_t rows, size_t columns, size_t stride, float *restrict sums) {
    for (size_t r = 0; r < rows; r++) {
        const float *in = x + r * stride;
        for (size_t c = 0; c < columns; c++) sums[c] += in[c];
    }
}

CLONES
void vae_transpose(const float *restrict src, size_t rows, size_t columns, float *restrict dst) {
    // Contiguous writes, strided (gathered) reads: measured 2× faster than 8×8 tiles at the
    // sizes here (one image's activations, a few thousand values).
    for (size_t c = 0; c < columns; c++)
        for (size_t r = 0; r < rows; r++) dst[c * rows + r] = src[r * columns + c];
}

CLONES
void vae_relu_inplace(float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v > 0.0f ? v : 0.0f;
    }
}

CLONES
void vae_relu_mask_column_sums(const float *restrict y, const float *restrict dy, float *restrict masked,
                               size_t rows, size_t columns, size_t stride, float *restrict sums) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * stride, *gr = dy + r * stride;
        float *mr = masked + r * stride;
        for (size_t c = 0; c < columns; c++) {
            float g = yr[c] > 0.0f ? gr[c] : 0.0f;
            mr[c] = g;
            sums[c] += g;
        }
    }
}
