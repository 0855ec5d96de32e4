// Elementwise kernels compiled once per instruction set (AVX-512, AVX2, baseline) and chosen
// when the program loads (GCC/Clang `target_clones`), so a portable binary still runs the
// widest vectors the CPU has. Swift calls them through this header.
#ifndef SWIFT_VAE_CKERNELS_H
#define SWIFT_VAE_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Adam on n elements, PyTorch's formulation, with the gradient g = g0 + g1 (g1 may be NULL):
///   m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   w ← w·decay − stepSize · m / (√v · inverseRootCorrection2 + ε)
void vae_adam_update(float *w, float *g0, const float *g1, float *m, float *v, size_t n,
                     float beta1, float beta2, float epsilon, float stepSize,
                     float inverseRootCorrection2, float decay);

/// SGD on n elements, PyTorch's formulation (dampening 0, not Nesterov):
///   g ← g + λw (written back, only when λ ≠ 0);  v ← μv + g (when velocity is not NULL);
///   w ← w − lr · (v or g)
/// Like `vae_adam_update`, it flushes subnormal values to zero (a momentum buffer decays into them).
void vae_sgd_update(float *w, float *g, float *velocity, size_t n, float lr, float momentum, float decay);

/// Bernoulli negative log-likelihood of one example with logits ℓ (stable form), returning
///   Σ_i [max(ℓ_i, 0) + log1p(e^−|ℓ_i|) − x_i ℓ_i]
/// and, when gradient is not NULL, setting gradient_i = scale · (sigmoid(ℓ_i) − x_i).
/// exp and log1p are polynomials with relative errors below 3·10⁻⁷.
float vae_bernoulli_nll(const float *x, const float *logits, float *gradient, float scale, size_t n);

/// Σ_i (m_i − x_i)², and gradient_i = scale · (m_i − x_i) when gradient is not NULL
/// (the data-dependent part of the fixed-σ Gaussian likelihood).
float vae_squared_error(const float *x, const float *means, float *gradient, float scale, size_t n);

/// Gaussian with a per-value log σ (t_i = max(logSigma_i, minLogSigma)): returns
///   Σ_i [½ (m_i − x_i)² e^{−2t_i} + t_i]
/// and, when gradMeans is not NULL, sets gradMeans_i = scale · (m_i − x_i) e^{−2t_i} and
/// gradLogSigmas_i = scale · (1 − (m_i − x_i)² e^{−2t_i}) (0 where log σ is below the floor).
float vae_gaussian_pixel_nll(const float *x, const float *means, const float *logSigmas, float *gradMeans,
                             float *gradLogSigmas, float scale, float minLogSigma, size_t n);

/// mean_i = sigmoid(logits_i) = 1/(1 + e^−ℓ), without overflow.
void vae_sigmoid(const float *logits, float *mean, size_t n);
/// y_i = tanh(x_i) (relative error below 10⁻⁶; NaN stays NaN).
void vae_tanh(const float *x, float *y, size_t n);
/// dx_i = dy_i · (1 − y_i²), the derivative of y = tanh(x) through its output.
void vae_tanh_backward(const float *y, const float *dy, float *dx, size_t n);

/// out_i = bytes_i / 255.
void vae_bytes_to_unit(const unsigned char *bytes, float *out, size_t n);

/// The instruction set the loader chose for these kernels: "avx512f", "avx2" or "default" (SSE2).
const char *vae_kernels_isa(void);

/// Cores in this process's CPU affinity mask (taskset, cpusets, mpirun's binding); the online
/// cores when the mask cannot be read.
int vae_affinity_cores(void);
/// The CPUs in this process's affinity mask, ascending, into `cpus` (at most `capacity`); returns the count.
int vae_affinity_cpus(int *cpus, int capacity);
/// The calling thread's own affinity mask, as `vae_affinity_cpus`.
int vae_thread_cpus(int *cpus, int capacity);
/// 1 if `cpu` is its core's first hardware thread (sysfs topology; 1 when unknown), 0 for an SMT sibling.
int vae_cpu_is_first_sibling(int cpu);
/// Binds the calling thread to `cpu` alone; 0 on success.
int vae_pin_thread_to(const int *cpus, int count);
/// The CPU the calling thread runs on now (−1 if unknown).
int vae_current_cpu(void);

// Runs `iterations` rounds of independent vector FMAs (the peak probe); returns the FLOPs done.
double vae_fma_flops(long iterations, float *sink);

/// The bf16 dot-product peak probe: FLOP done by independent `vdpbf16ps` chains (time it to get
/// FLOP/s); 0 on a CPU without AVX512_BF16.
double vae_bf16_dot_flops(long iterations, float *sink);

#endif

#ifndef SWIFT_VAE_CKERNELS_CONV_H
#define SWIFT_VAE_CKERNELS_CONV_H
/// Gathers the patches of a channels-last (NHWC) source into rows, one row per (image, grid
/// position) and, within a row, the values in (kh, kw, c) order, k·k·C per row:
///   cols[((b·gridHeight + ph)·gridWidth + pw)·k·k·C + (kh·k + kw)·C + c]
///     = src[b, ph·stride − padding + kh, pw·stride − padding + kw, c]   (0 outside the source)
/// For a convolution the grid is its output; for a transposed convolution's backward pass the
/// grid is its input and the source is the output gradient.
void vae_im2col_nhwc(const float *src, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding, float *cols);

/// The adjoint of vae_im2col_nhwc, plus a per-channel bias (NULL: none): every NHWC
/// destination pixel is written once with
///   dst[b, y, x, c] = bias[c] + Σ cols[((b·gridHeight + ph)·gridWidth + pw)·k·k·C + (kh·k + kw)·C + c]
/// over the patches covering it, y = ph·stride − padding + kh, x = pw·stride − padding + kw,
/// and then max(·, 0) if relu is non-zero.
void vae_col2im_nhwc(const float *cols, size_t batch, size_t channels, size_t height, size_t width,
                     size_t gridHeight, size_t gridWidth, size_t kernel, size_t stride, size_t padding,
                     const float *bias, int relu, float *dst);

/// y[r, ·] = row for each of `rows` rows of `columns` values (a bias broadcast).
void vae_fill_rows(float *y, const float *row, size_t rows, size_t columns);

/// sums[c] = Σ_r x[r, c] for a row-major [rows, columns] matrix (a bias gradient).
void vae_column_sums(const float *x, size_t rows, size_t columns, float *sums);

/// A convolution with few output channels straight from the channels-last image (no patch
/// matrix): weight w [O, (kh, kw, c)] (the layer's reordered weight),
///   y[b, i, j, o] = bias[o] + Σ_{kh, kw, c} w[o, kh, kw, c] · x[b, i·s − p + kh, j·s − p + kw, c],
/// then max(·, 0) if relu is non-zero.
void vae_conv_direct_forward(const float *x, size_t batch, size_t channels, size_t height, size_t width,
                             size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                             const float *w, size_t outChannels, const float *bias, int relu, float *y);

/// Its backward pass for ∂L/∂y = dy: sets weightGradient [O, (kh, kw, c)] = Σ dy · x and, when
/// dx is not NULL, dx = Σ dy · w (both overwritten).
void vae_conv_direct_backward(const float *x, size_t batch, size_t channels, size_t height, size_t width,
                              size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                              const float *w, size_t outChannels, const float *dy, float *weightGradient, float *dx);

/// x[i] = max(x[i], 0).
void vae_relu_inplace(float *x, size_t n);

/// The backward pass of a ReLU fused into the layer before it, and that layer's bias gradient:
/// masked[r, c] = dy[r, c] where y[r, c] > 0, else 0; and sums[c] += Σ_r masked[r, c], in row
/// order — for `columns` columns of row-major matrices whose rows are `stride` apart (a slice of
/// the columns when stride > columns: every column's sum is the same on any slicing).
void vae_relu_mask_column_sums(const float *y, const float *dy, float *masked, size_t rows, size_t columns,
                               size_t stride, float *sums);

/// sums[c] += Σ_r x[r·stride + c], in row order, for c < columns (a bias gradient, or a slice of
/// its columns when stride > columns).
void vae_add_column_sums(const float *x, size_t rows, size_t columns, size_t stride, float *sums);

/// dst[c, r] = src[r, c] for a row-major [rows, columns] source.
void vae_transpose(const float *src, size_t rows, size_t columns, float *dst);

/// Register-blocked AVX-512 convolutions on channels-last images (BlockedConvolution.c): whether
/// they take `vectorChannels` output channels (a multiple of 16), `reduced` channels summed over
/// per tap, and a k × k kernel on this CPU. When they do not, the layers use im2col and GEMM.
int vae_blocked_convolution_supported(size_t reduced, size_t vectorChannels, size_t kernel);

/// A convolution straight from the image, with weight w [k, k, R, V] (taps first, then the
/// reduced channels, then the output channels), bias NULL for none:
///   out[b, i, j, o] = bias[o] + Σ_{u, v, c} in[b, i·s − p + u, j·s − p + v, c] · w[u, v, c, o]
/// (0 outside the input), then max(·, 0) if relu is non-zero. The forward pass of Conv2D and the
/// input gradient of ConvTranspose2D.
void vae_conv_gather(const float *in, size_t batch, size_t reduced, size_t height, size_t width,
                     size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                     const float *w, size_t vectorChannels, const float *bias, int relu, float *out);

/// Its adjoint: each input position (i, j) spreads over the output window at (i·s − p, j·s − p),
///   out[b, y, x, o] = bias[o] + Σ_{u, v, c: y = i·s − p + u, x = j·s − p + v} in[b, i, j, c] · w[u, v, c, o],
/// then max(·, 0) if relu is non-zero; every output value is written once. The forward pass of
/// ConvTranspose2D and the input gradient of Conv2D.
void vae_conv_scatter(const float *in, size_t batch, size_t reduced, size_t height, size_t width,
                      size_t outHeight, size_t outWidth, size_t kernel, size_t stride, size_t padding,
                      const float *w, size_t vectorChannels, const float *bias, int relu, float *out);

/// The weight gradient of either, accumulated: over the grid positions (b, i, j) of a
/// [batch, gridHeight, gridWidth] plane and the gathered positions (i·s − p + u, j·s − p + v) of a
/// [batch, gatheredHeight, gatheredWidth] plane that fall inside it,
///   gradient[u, v, a, o] += Σ broadcast[·, a] · vector[·, o]
/// where `broadcast` (A channels) is read at the gathered positions when broadcastIsGathered is
/// non-zero (Conv2D: the input; vector = ∂L/∂y at the grid) and at the grid otherwise
/// (ConvTranspose2D: the input at the grid; vector = ∂L/∂y gathered). V must be a multiple of 16.
void vae_conv_weight_gradient(const float *broadcast, size_t broadcastChannels, const float *vector,
                              size_t vectorChannels, size_t batch, size_t gridHeight, size_t gridWidth,
                              size_t gatheredHeight, size_t gatheredWidth, size_t kernel, size_t stride,
                              size_t padding, int broadcastIsGathered, float *gradient);

/// A weight [a, b, taps] (PyTorch's layout, taps = k·k) with the taps first:
/// out[t, i, j] = w[i, j, t], or out[t, j, i] when swap is non-zero (which uses `scratch`, as
/// many floats as w).
void vae_weight_taps_first(const float *w, size_t a, size_t b, size_t taps, int swap, float *scratch, float *out);

/// The inverse: out[i, j, t] = g[t, i, j], or g[t, j, i] when swap is non-zero.
void vae_weight_taps_last(const float *g, size_t a, size_t b, size_t taps, int swap, float *scratch, float *out);

/// Non-zero when the CPU runs AVX512_BF16 (with AVX512BW and VL), which `vae_gemm_bf16` needs.
int vae_cpu_has_avx512bf16(void);

/// C[m×n] = α · op(A) · op(B) + β · C, row-major, op(X) = X or Xᵀ as in cblas_sgemm, with both
/// operands rounded to bf16 (nearest even) and every product accumulated in FP32
/// (`vdpbf16ps`). β = 0 does not read C. Only on a CPU for which vae_cpu_has_avx512bf16() is
/// non-zero.
void vae_gemm_bf16(int transposeA, int transposeB, long m, long n, long k, float alpha,
                   const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc);
/// Philox4x32-10 (Salmon et al. 2011): the 128 random bits of `counter` under `key`.
void vae_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/// Standard normals number `first` … `first + count − 1` of stream `stream` under `seed`: number i
/// comes from Philox4x32-10 at counter (i / 4 as two words, `stream` as two words), key `seed`,
/// by Box–Muller in double precision on its pair of words, rounded to float — a pure function
/// of (seed, stream, i), whatever the order or the split of the drawing.
void vae_philox_normals(uint64_t seed, uint64_t stream, uint64_t first, size_t count, float *out);

/// Dynamic binarisation by counters: out[i] = 1 if u_i < p_i else 0, with p_i = bytes[i] / 255
/// (or values[i] when bytes is NULL) and u_i = (word i of stream `stream` under `seed`) >> 8,
/// times 2⁻²⁴ — word i being word i % 4 of Philox4x32-10 at counter (i / 4, stream).
void vae_philox_binarize(uint64_t seed, uint64_t stream, const unsigned char *bytes, const float *values, size_t count, float *out);

#endif
