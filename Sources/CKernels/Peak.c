#include "CKernels.h"

// The CPU's floating-point peak, probed: independent chains of fused multiply-adds on whole
// vector registers (12 of them, more than latency × issue width on the CPUs seen), so that only
// the FMA units limit the rate. Each clone uses the widest vectors of its instruction set:
// 16 floats (AVX-512), 8 (AVX2 + FMA), 4 (SSE, separate multiply and add).

#define PEAK_BODY(WIDTH)                                                                      \
    typedef float vec __attribute__((vector_size(WIDTH * 4)));                               \
    vec acc[12];                                                                              \
    for (int k = 0; k < 12; k++)                                                              \
        for (int j = 0; j < WIDTH; j++) acc[k][j] = 1.0f + 1e-3f * (float)(k + j);            \
    vec a, b;                                                                                 \
    for (int j = 0; j < WIDTH; j++) { a[j] = 0.999999f; b[j] = 1e-7f; }                       \
    for (long i = 0; i < iterations; i++) {                                                   \
        for (int k = 0; k < 12; k++) acc[k] = acc[k] * a + b;                                 \
    }                                                                                         \
    float sum = 0;                                                                            \
    for (int k = 0; k < 12; k++)                                                              \
        for (int j = 0; j < WIDTH; j++) sum += acc[k][j];                                     \
    *sink = sum;                                                                              \
    return 2.0 * 12 * WIDTH * (double)iterations;

__attribute__((target("avx512f,fma"))) static double peak512(long iterations, float *sink) { PEAK_BODY(16) }
__attribute__((target("avx2,fma"))) static double peak256(long iterations, float *sink) { PEAK_BODY(8) }
static double peak128(long iterations, float *sink) { PEAK_BODY(4) }

double vae_fma_flops(long iterations, float *sink) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return peak512(iterations, sink);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return peak256(iterations, sink);
    return peak128(iterations, sink);
}
