#include "CKernels.h"

#include <immintrin.h>

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

// The bf16 dot-product peak: independent chains of `vdpbf16ps` (each 32 products and 32 sums
// per 512-bit register, 64 FLOP), the instruction of vae_gemm_bf16. 0 without AVX512_BF16.
__attribute__((target("avx512f,avx512bf16"))) static double peak_bf16(long iterations, float *sink) {
    __m512 acc[12];
    for (int k = 0; k < 12; k++) acc[k] = _mm512_set1_ps(1.0f + 1e-3f * (float)k);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F7F3F7F), b = (__m512bh)_mm512_set1_epi32(0x33D633D6);
    for (long i = 0; i < iterations; i++) {
        for (int k = 0; k < 12; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
        __asm__ volatile("" : "+v"(a));  // keeps the loop from being folded
    }
    float sum = 0;
    for (int k = 0; k < 12; k++) sum += _mm512_reduce_add_ps(acc[k]);
    *sink = sum;
    return 64.0 * 12 * (double)iterations;
}

double vae_bf16_dot_flops(long iterations, float *sink) {
    return vae_cpu_has_avx512bf16() ? peak_bf16(iterations, sink) : 0;
}
