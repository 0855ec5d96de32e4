#include "CKernels.h"
#include "Clones.h"

// Runs are often short (one channel: k values), where a call to memcpy/memset costs more than
// the copy, so the loops stay loops.
#define INLINE_COPIES __attribute__((no_builtin("memcpy", "memmove", "memset")))

// Channels-last (NHWC) patches: a kernel row of a patch, kw = 0…k−1 at source columns
// pw·s − p + kw, is one contiguous run of k·C values in the source row, so gathering and
// scattering are runs of copies and adds, never single strided values.

// The kernel columns kw in [*lo, *hi) whose source column first + kw lies in [0, width).
static inline void valid_columns(long first, long kernel, long width, long *lo, long *hi) {
    long l = first < 0 ? -first : 0;
    long h = width - first < kernel ? width - first : kernel;
    if (l > kernel) l = kernel;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

CLONES INLINE_COPIES
void vae_im2col_nhwc(const float *restrict src, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding,
                     float *restrict cols) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width;
    const long s = (long)stride, pad = (long)padding, rowLength = K * K * C;
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
            float *middle = out + lo * C;
            for (long t = 0; t < (hi - lo) * C; t++) middle[t] = in[t];
            for (long t = hi * C; t < K * C; t++) out[t] = 0.0f;
        }
    }
}

CLONES INLINE_COPIES
void vae_col2im_nhwc(const float *restrict cols, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding,
                     float *restrict dst) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width;
    const long s = (long)stride, pad = (long)padding, rowLength = K * K * C;
    for (long b = 0; b < (long)batch; b++)
    for (long ph = 0; ph < (long)gridHeight; ph++)
    for (long pw = 0; pw < (long)gridWidth; pw++) {
        const float *row = cols + ((b * (long)gridHeight + ph) * (long)gridWidth + pw) * rowLength;
        const long firstColumn = pw * s - pad;
        long lo, hi;
        valid_columns(firstColumn, K, W, &lo, &hi);
        for (long kh = 0; kh < K; kh++) {
            const long sh = ph * s - pad + kh;
            if (sh < 0 || sh >= H) continue;
            const float *in = row + (kh * K + lo) * C;
            float *out = dst + ((b * H + sh) * W + firstColumn + lo) * C;
            for (long t = 0; t < (hi - lo) * C; t++) out[t] += in[t];
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
void vae_transpose(const float *restrict src, size_t rows, size_t columns, float *restrict dst) {
    // Tiles of 8×8 keep both sides' lines in cache.
    for (size_t r0 = 0; r0 < rows; r0 += 8)
    for (size_t c0 = 0; c0 < columns; c0 += 8) {
        size_t r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < columns ? c0 + 8 : columns;
        for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) dst[c * rows + r] = src[r * columns + c];
    }
}
