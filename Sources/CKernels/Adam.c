#include "CKernels.h"
#include "Clones.h"

CLONES
void vae_adam_update(float *restrict w, float *restrict g0, const float *restrict g1, float *restrict m,
                     float *restrict v, size_t n, float beta1, float beta2, float epsilon, float stepSize,
                     float inverseRootCorrection2, float decay) {
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
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
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float gi = g0[i];
        float mi = beta1 * m[i] + c1 * gi;
        float vi = beta2 * v[i] + c2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - stepSize * mi / (__builtin_elementwise_sqrt(vi) * inverseRootCorrection2 + epsilon);
    }
}

const char *vae_kernels_isa(void) {
    // The same order target_clones uses to pick a version.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
    return "default";
}
