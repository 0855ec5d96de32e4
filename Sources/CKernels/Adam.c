#include "CKernels.h"
#include "Clones.h"
#include <xmmintrin.h>

// Adam's moments of a weight whose gradient stays zero (a dead ReLU unit, a pixel that is
// always 0) decay geometrically: m by 0.9 per step reaches the subnormal range (< 2^-126) after
// about 800 steps and then sticks at the smallest subnormal, since 0.9 * 2^-149 rounds back to
// 2^-149. x86 cores handle a subnormal operand or result with a microcode assist costing ~100
// cycles, so a trained model's update ran 4-9x slower than its memory traffic allows (measured:
// 0.45 ms for 652,000 weights, 4.1 ms with a third of m subnormal). The update therefore runs
// with MXCSR's flush-to-zero (FTZ, bit 15) and denormals-are-zero (DAZ, bit 6) set, and
// restores the caller's MXCSR after: a subnormal moment or gradient counts as 0, which moves a
// weight by at most lr * 2^-126 / epsilon ~ 1e-33.
static const unsigned flushSubnormals = 0x8040;

CLONES
void vae_adam_update(float *restrict w, float *restrict g0, const float *restrict g1, float *restrict m,
                     float *restrict v, size_t n, float beta1, float beta2, float epsilon, float stepSize,
                     float inverseRootCorrection2, float decay) {
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | flushSubnormals);
    if (g1) {
        // The summed gradient is not written back: one fewer pass over memory.
        for (size_t i = 0; i < n; i++) {
            float gi = g0[i] + g1[i];
            float mi = beta1 * m[i] + c1 * gi;
            float vi = beta2 * v[i] + c2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            w[i] = w[i] * decay - stepSize * mi / (__builtin_elementwise_sqrt(vi) * inverseRootCorrection2 + epsilon);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float gi = g0[i];
            float mi = beta1 * m[i] + c1 * gi;
            float vi = beta2 * v[i] + c2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            w[i] = w[i] * decay - stepSize * mi / (__builtin_elementwise_sqrt(vi) * inverseRootCorrection2 + epsilon);
        }
    }
    _mm_setcsr(csr);
}

CLONES
void vae_sgd_update(float *restrict w, float *restrict g, float *restrict velocity, size_t n, float lr, float momentum,
                    float decay) {
    // The momentum buffer of a weight whose gradient stays zero decays like Adam's m.
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | flushSubnormals);
    if (decay != 0.0f)
        for (size_t i = 0; i < n; i++) g[i] += decay * w[i];
    if (velocity) {
        for (size_t i = 0; i < n; i++) {
            float vi = momentum * velocity[i] + g[i];  // v starts at 0, so the first step's v is g
            velocity[i] = vi;
            w[i] -= lr * vi;
        }
    } else {
        for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
    }
    _mm_setcsr(csr);
}

const char *vae_kernels_isa(void) {
    // The same order target_clones uses to pick a version.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
    return "default";
}
