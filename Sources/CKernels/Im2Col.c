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

CLONES
void vae_im2col(const float *restrict src, size_t batch, size_t channels, size_t height, size_t width,
                size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding, float *restrict cols) {
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
