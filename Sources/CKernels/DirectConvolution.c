#include "CKernels.h"
#include "Clones.h"
#include "Patches.h"

// Convolutions with few output channels (a decoder's last layer: one channel per image channel),
// computed straight from the channels-last image. A GEMM would need the patch matrix, k·k·C
// values per output pixel (900 KB per 28×28 image for 32 channels and k = 3), for a product
// that is only k·k·C multiply-adds per pixel and channel.

#define LOAD16(p) (*(const float16_unaligned *)(p))

// a0…a3 += a·b sixteen values at a time, over four accumulators so that consecutive
// multiply-adds do not wait on each other (a macro, so the accumulators stay in registers);
// adds the tail's products to `tail`.
#define DOT_INTO(a0, a1, a2, a3, tail, a, b, n)                                                   \
    do {                                                                                           \
        long t_ = 0;                                                                               \
        for (; t_ + 64 <= (n); t_ += 64) {                                                         \
            a0 += LOAD16((a) + t_) * LOAD16((b) + t_);                                             \
            a1 += LOAD16((a) + t_ + 16) * LOAD16((b) + t_ + 16);                                   \
            a2 += LOAD16((a) + t_ + 32) * LOAD16((b) + t_ + 32);                                   \
            a3 += LOAD16((a) + t_ + 48) * LOAD16((b) + t_ + 48);                                   \
        }                                                                                          \
        if (t_ + 32 <= (n)) {                                                                      \
            a0 += LOAD16((a) + t_) * LOAD16((b) + t_);                                             \
            a1 += LOAD16((a) + t_ + 16) * LOAD16((b) + t_ + 16);                                   \
            t_ += 32;                                                                              \
        }                                                                                          \
        if (t_ + 16 <= (n)) {                                                                      \
            a2 += LOAD16((a) + t_) * LOAD16((b) + t_);                                             \
            t_ += 16;                                                                              \
        }                                                                                          \
        for (; t_ < (n); t_++) tail += (a)[t_] * (b)[t_];                                          \
    } while (0)

// The sum of the sixteen lanes, pairwise.
__attribute__((always_inline)) static inline float reduce16(const float16_unaligned *lanes) {
    const float16_unaligned v = *lanes;
    typedef float float8 __attribute__((vector_size(32)));
    typedef float float4 __attribute__((vector_size(16)));
    float8 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    float4 q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    return (q[0] + q[2]) + (q[1] + q[3]);
}

// y[t] += g·x[t].
INLINE_COPIES static inline void axpy(float *restrict y, float g, const float *restrict x, long n) {
    for (long t = 0; t < n; t++) y[t] += g * x[t];
}

CLONES INLINE_COPIES
void vae_conv_direct_forward(const float *restrict x, size_t batch, size_t channels, size_t height, size_t width,
                             size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                             const float *restrict w, size_t outChannels, const float *restrict bias, int relu,
                             float *restrict y) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width, O = (long)outChannels;
    const long s = (long)stride, pad = (long)padding, Ho = (long)outHeight, Wo = (long)outWidth, KKC = K * K * C;
    for (long b = 0; b < (long)batch; b++)
    for (long i = 0; i < Ho; i++)
    for (long j = 0; j < Wo; j++) {
        float *out = y + ((b * Ho + i) * Wo + j) * O;
        const long first = j * s - pad;
        long lo, hi;
        valid_columns(first, K, W, &lo, &hi);
        // One output channel at a time, its patch's products gathered in sixteen lanes and
        // summed once.
        for (long o = 0; o < O; o++) {
            float16_unaligned a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            float tail = 0.0f;
            for (long kh = 0; kh < K; kh++) {
                const long sh = i * s - pad + kh;
                if (sh < 0 || sh >= H || hi <= lo) continue;
                const float *run = x + ((b * H + sh) * W + first + lo) * C;
                const float *weights = w + o * KKC + (kh * K + lo) * C;
                DOT_INTO(a0, a1, a2, a3, tail, run, weights, (hi - lo) * C);
            }
            const float16_unaligned all = (a0 + a1) + (a2 + a3);
            const float sum = bias[o] + reduce16(&all) + tail;
            out[o] = relu && sum < 0.0f ? 0.0f : sum;
        }
    }
}

CLONES INLINE_COPIES
void vae_conv_direct_backward(const float *restrict x, size_t batch, size_t channels, size_t height, size_t width,
                              size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                              const float *restrict w, size_t outChannels, const float *restrict dy,
                              float *restrict weightGradient, float *restrict dx) {
    const long C = (long)channels, K = (long)kernel, H = (long)height, W = (long)width, O = (long)outChannels;
    const long s = (long)stride, pad = (long)padding, Ho = (long)outHeight, Wo = (long)outWidth, KKC = K * K * C;
    for (long t = 0; t < O * KKC; t++) weightGradient[t] = 0.0f;
    if (dx)
        for (long t = 0; t < (long)batch * H * W * C; t++) dx[t] = 0.0f;
    for (long b = 0; b < (long)batch; b++)
    for (long i = 0; i < Ho; i++)
    for (long j = 0; j < Wo; j++) {
        const float *g = dy + ((b * Ho + i) * Wo + j) * O;
        const long first = j * s - pad;
        long lo, hi;
        valid_columns(first, K, W, &lo, &hi);
        for (long kh = 0; kh < K; kh++) {
            const long sh = i * s - pad + kh;
            if (sh < 0 || sh >= H || hi <= lo) continue;
            const long offset = ((b * H + sh) * W + first + lo) * C, n = (hi - lo) * C;
            for (long o = 0; o < O; o++) {
                if (g[o] == 0.0f) continue;
                const long segment = o * KKC + (kh * K + lo) * C;
                axpy(weightGradient + segment, g[o], x + offset, n);
                if (dx) axpy(dx + offset, g[o], w + segment, n);
            }
        }
    }
}
