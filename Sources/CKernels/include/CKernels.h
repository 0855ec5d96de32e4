// Elementwise kernels compiled once per instruction set (AVX-512, AVX2, baseline) and chosen
// when the program loads (GCC/Clang `target_clones`), so a portable binary still runs the
// widest vectors the CPU has. Swift calls them through this header.
#ifndef SWIFT_VAE_CKERNELS_H
#define SWIFT_VAE_CKERNELS_H

#include <stddef.h>

/// Adam on n elements, PyTorch's formulation:
///   m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   w ← w·decay − stepSize · m / (√v · inverseRootCorrection2 + ε)
void vae_adam_update(float *w, const float *g, float *m, float *v, size_t n,
                     float beta1, float beta2, float epsilon, float stepSize,
                     float inverseRootCorrection2, float decay);

/// The instruction set the loader chose for these kernels: "avx512f", "avx2" or "default" (SSE2).
const char *vae_kernels_isa(void);

#endif
