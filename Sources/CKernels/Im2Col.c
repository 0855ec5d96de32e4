#include "CKernels.h"
#include "Clones.h"
#include <string.h>

// The grid positions p in [0, n) whose source index p·stride − padding + offset lies in
// [0, size): returns [*lo, *hi).
static inline void valid_range(long n, long size, long stride, long padding, long offset, long *lo, long *hi) {
    // p·s − pad + off ≥ 0  ⇔  p ≥ ceil((pad − off)/s);  p·s − pad + off < size  ⇔  p < ceil((size + pad − off)/s)
    long a = padding - offset, b = size + padding - offset;
    long l = a <= 0 ? 0 : (a + stride - 1) / stride;
    long h = b <= 0 ? 0 : (b + stride - 1) / stride;
    *lo = l > n ? n : l;
    *hi = h > n ? n : h;
    if (*hi < *lo) *hi = *lo;
}

// Kernel 4, stride 2, padding 1 (the reference model's layers): for a source row L, the four
// kernel columns kw = 0…3 read L[2·pw − 1 + kw], that is: the odd elements shifted right by one,
// the even elements, the odd elements, the even elements shifted left by one. One pass over each
// source row writes all four column segments.
__attribute__((always_inline)) static inline void im2col_k4s2p1(const float *restrict src, long batch, long channels, long height, long width,
                                 long gridHeight, long gridWidth, float *restrict cols) {
    const long M = batch * gridHeight * gridWidth;
    for (long c = 0; c < channels; c++)
    for (long kh = 0; kh < 4; kh++) {
        float *r0 = cols + ((c * 4 + kh) * 4) * M;
        float *r1 = r0 + M, *r2 = r1 + M, *r3 = r2 + M;
        for (long b = 0; b < batch; b++)
        for (long ph = 0; ph < gridHeight; ph++) {
            long o = (b * gridHeight + ph) * gridWidth;
            long sh = 2 * ph - 1 + kh;
            if (sh < 0 || sh >= height) {
                for (long pw = 0; pw < gridWidth; pw++) r0[o + pw] = r1[o + pw] = r2[o + pw] = r3[o + pw] = 0.0f;
                continue;
            }
            const float *line = src + ((b * channels + c) * height + sh) * width;
            for (long pw = 0; pw < gridWidth; pw++) {
                long e = 2 * pw;  // source columns e − 1, e, e + 1, e + 2
                r0[o + pw] = e - 1 >= 0 && e - 1 < width ? line[e - 1] : 0.0f;
                r1[o + pw] = e < width ? line[e] : 0.0f;
                r2[o + pw] = e + 1 < width ? line[e + 1] : 0.0f;
                r3[o + pw] = e + 2 < width ? line[e + 2] : 0.0f;
            }
        }
    }
}

__attribute__((always_inline)) static inline void col2im_k4s2p1(const float *restrict cols, long batch, long channels, long height, long width,
                                 long gridHeight, long gridWidth, float *restrict dst) {
    const long M = batch * gridHeight * gridWidth;
    for (long c = 0; c < channels; c++)
    for (long kh = 0; kh < 4; kh++) {
        const float *r0 = cols + ((c * 4 + kh) * 4) * M;
        const float *r1 = r0 + M, *r2 = r1 + M, *r3 = r2 + M;
        for (long b = 0; b < batch; b++)
        for (long ph = 0; ph < gridHeight; ph++) {
            long sh = 2 * ph - 1 + kh;
            if (sh < 0 || sh >= height) continue;
            long o = (b * gridHeight + ph) * gridWidth;
            float *line = dst + ((b * channels + c) * height + sh) * width;
            for (long pw = 0; pw < gridWidth; pw++) {
                long e = 2 * pw;
                if (e - 1 >= 0 && e - 1 < width) line[e - 1] += r0[o + pw];
                if (e < width) line[e] += r1[o + pw];
                if (e + 1 < width) line[e + 1] += r2[o + pw];
                if (e + 2 < width) line[e + 2] += r3[o + pw];
            }
        }
    }
}

CLONES
void vae_im2col(const float *restrict src, size_t batch, size_t channels, size_t height, size_t width,
                size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding, float *restrict cols) {
    if (kernel == 4 && stride == 2 && padding == 1) {
        im2col_k4s2p1(src, (long)batch, (long)channels, (long)height, (long)width, (long)gridHeight, (long)gridWidth, cols);
        return;
    }
    const long M = (long)(batch * gridHeight * gridWidth);
    const long s = (long)stride, pad = (long)padding;
    for (size_t c = 0; c < channels; c++)
    for (size_t kh = 0; kh < kernel; kh++)
    for (size_t kw = 0; kw < kernel; kw++) {
        float *row = cols + ((c * kernel + kh) * kernel + kw) * M;
        long wlo, whi;
        valid_range((long)gridWidth, (long)width, s, pad, (long)kw, &wlo, &whi);
        for (size_t b = 0; b < batch; b++) {
            const float *plane = src + (b * channels + c) * height * width;
            for (size_t ph = 0; ph < gridHeight; ph++) {
                float *out = row + (b * gridHeight + ph) * gridWidth;
                long sh = (long)ph * s - pad + (long)kh;
                if (sh < 0 || sh >= (long)height) {
                    memset(out, 0, gridWidth * sizeof(float));
                    continue;
                }
                const float *line = plane + sh * (long)width;
                const long shift = (long)kw - pad;  // source column = pw·s + shift
                for (long pw = 0; pw < wlo; pw++) out[pw] = 0.0f;
                for (long pw = wlo; pw < whi; pw++) out[pw] = line[pw * s + shift];
                for (long pw = whi; pw < (long)gridWidth; pw++) out[pw] = 0.0f;
            }
        }
    }
}

CLONES
void vae_col2im(const float *restrict cols, size_t batch, size_t channels, size_t height, size_t width,
                size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding, float *restrict dst) {
    if (kernel == 4 && stride == 2 && padding == 1) {
        col2im_k4s2p1(cols, (long)batch, (long)channels, (long)height, (long)width, (long)gridHeight, (long)gridWidth, dst);
        return;
    }
    const long M = (long)(batch * gridHeight * gridWidth);
    const long s = (long)stride, pad = (long)padding;
    for (size_t c = 0; c < channels; c++)
    for (size_t kh = 0; kh < kernel; kh++)
    for (size_t kw = 0; kw < kernel; kw++) {
        const float *row = cols + ((c * kernel + kh) * kernel + kw) * M;
        long wlo, whi;
        valid_range((long)gridWidth, (long)width, s, pad, (long)kw, &wlo, &whi);
        for (size_t b = 0; b < batch; b++) {
            float *plane = dst + (b * channels + c) * height * width;
            for (size_t ph = 0; ph < gridHeight; ph++) {
                long sh = (long)ph * s - pad + (long)kh;
                if (sh < 0 || sh >= (long)height) continue;
                const float *in = row + (b * gridHeight + ph) * gridWidth;
                float *line = plane + sh * (long)width;
                const long shift = (long)kw - pad;
                for (long pw = wlo; pw < whi; pw++) line[pw * s + shift] += in[pw];
            }
        }
    }
}
