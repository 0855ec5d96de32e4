#ifndef CMATMUL_H
#define CMATMUL_H

/// Whether this CPU has AMX with bf16 tiles (AMX-TILE and AMX-BF16 in CPUID, and the OS saving
/// the tile state: XCR0 bits 17 and 18).
int vae_cpu_has_amx_bf16(void);

/// C[m×n] = op(A) · op(B) (+ C when accumulate ≠ 0), row-major FP32 operands with row strides
/// lda, ldb, ldc, op(X) = X or Xᵀ, through oneDNN's matmul with the bf16 floating-point math mode:
/// oneDNN may round the operands to bf16 and accumulate in FP32 (on a CPU with AMX or
/// AVX512_BF16; elsewhere it computes in FP32). The primitive of each shape is made once per
/// thread and kept. Returns 0, or -1 when oneDNN cannot make or run it (the caller falls back).
int vae_matmul_bf16(int transposeA, int transposeB, long m, long n, long k, const float *a, long lda, const float *b, long ldb,
                    int accumulate, float *c, long ldc);

/// The oneDNN implementation chosen for the last shape vae_matmul_bf16 made on this thread (e.g.
/// "brg:avx512_core_amx"), or "" before any.
const char *vae_matmul_bf16_implementation(void);

#endif
