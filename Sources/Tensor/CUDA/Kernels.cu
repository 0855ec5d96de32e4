// swift-vae's CUDA kernels, compiled at run time by NVRTC (there is no CUDA at build time; see
// NVRTC.swift). Each kernel is the GPU half of a CPU function named in its comment, computing the
// same formula on the same row-major FP32 layout, so that the GPU check can hold the pairs
// against each other. No atomics and no order that depends on scheduling: a sum is always taken
// in the same order, so a run repeats bit for bit and a resume is exact.
//
// Layouts as on the CPU: a batch of activations is [rows, cols]; the encoder's output row b is
// [μ₁ … μ_d | log σ²₁ … log σ²_d]; ε and z are [rows, d].

typedef unsigned int u32;
typedef unsigned long long u64;

// Grid-stride loop over n elements: any launch size covers them all.
#define FOR_EACH(i, n) for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (long)(n); i += (long)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------------------------
// Layers. An activation is applied by the layer before it (a Linear or a convolution): `activation`
// 0 none, 1 ReLU, 2 tanh, 3 leaky ReLU (of `slope`), 4 sigmoid, 5 softplus; its derivative is
// taken from the output, so the pre-activations need not be kept.

// The logistic function without overflow: 1/(1 + e⁻ˣ) for x ≥ 0, eˣ/(1 + eˣ) below. CPU: sigmoid.
__device__ static inline float vae_logistic(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

// act(x). CPU: ReLU (fused, as ReLUFusing does), Tanh (vae_tanh), LeakyReLU, Sigmoid, Softplus
// (max(x, 0) + log1p(e^−|x|)).
__device__ static inline float vae_activate(int activation, float x, float slope) {
    switch (activation) {
    case 1: return x < 0.0f ? 0.0f : x;
    case 2: return tanhf(x);
    case 3: return x > 0.0f ? x : slope * x;
    case 4: return vae_logistic(x);
    case 5: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
    default: return x;
    }
}

// act'(x) from y = act(x): ReLU [y > 0]; tanh 1 − y²; leaky ReLU 1 or slope by the sign of y;
// sigmoid y(1 − y); softplus σ(x) = 1 − e^−y, as −expm1(−y) (exact for small y). CPU: each
// layer's backward.
__device__ static inline float vae_activation_derivative(int activation, float y, float slope) {
    switch (activation) {
    case 1: return y > 0.0f ? 1.0f : 0.0f;
    case 2: return 1.0f - y * y;
    case 3: return y > 0.0f ? 1.0f : slope;
    case 4: return y * (1.0f - y);
    case 5: return -expm1f(-y);
    default: return 1.0f;
    }
}

// y[b, j] = act(y[b, j] + bias[j]). CPU: Linear.forward's bias term and the activation after it.
extern "C" __global__ void vae_add_bias(float *y, const float *bias, int rows, int cols, int activation, float slope) {
    FOR_EACH(i, (long)rows * cols) y[i] = vae_activate(activation, y[i] + bias[i % cols], slope);
}

// Conditioning: y[r] = [x[r] | condition[r / repeat]] ([rows, cols] beside [rows / repeat, classes];
// the decoder's samples of one image share its label). CPU: Conditioning.forward.
extern "C" __global__ void vae_concat_condition(const float *x, const float *condition, int rows, int cols, int classes, int repeat, float *y) {
    long width = (long)cols + classes;
    FOR_EACH(i, (long)rows * width) {
        long r = i / width, j = i % width;
        y[i] = j < cols ? x[r * cols + j] : condition[(r / repeat) * classes + (j - cols)];
    }
}

// dx[r] = the first `cols` columns of dy[r] (rows of `width`): Conditioning.backward.
extern "C" __global__ void vae_first_columns(const float *dy, int rows, int cols, int width, float *dx) {
    FOR_EACH(i, (long)rows * cols) dx[i] = dy[(i / cols) * width + i % cols];
}

// A layer's bias gradient through its activation: g[b, j] ← g[b, j] · act'(y[b, j]) in place
// (y the layer's output; nothing written without an activation), and db[j] = Σ_b g[b, j].
// A block takes 32 columns; its threads split their rows: thread t sums column t mod 32 over
// rows t / 32, t / 32 + P, … (P = blockDim / 32 parts, neighbouring threads reading neighbouring
// columns; at most 8 parts), then one thread per column adds the P partial sums in order — a
// fixed order, the same in every run. Launched with 256 threads and 256 floats of shared memory; a
// block of fewer than 32 threads (the emulated GPU's one) walks the columns itself.
// CPU: the activation's backward, then Linear.backward's bias gradient (Tensor.sumRows).
extern "C" __global__ void vae_bias_gradient(float *g, const float *y, int activation, float slope, int rows, int cols, float *db) {
    extern __shared__ float shared[];
    int lanes = blockDim.x >= 32 ? 32 : blockDim.x, parts = blockDim.x >= 256 ? 8 : blockDim.x >= 32 ? blockDim.x / 32 : 1;
    int lane = threadIdx.x % lanes, part = threadIdx.x / lanes;
    for (long first = (long)blockIdx.x * 32; first < cols; first += (long)gridDim.x * 32) {
        if (part < parts)
            for (int c = lane; c < 32; c += lanes) {
                long j = first + c;
                float s = 0.0f;
                if (j < cols)
                    for (long b = part; b < rows; b += parts) {
                        long i = b * cols + j;
                        float v = g[i];
                        if (activation) {
                            v *= vae_activation_derivative(activation, y[i], slope);
                            g[i] = v;
                        }
                        s += v;
                    }
                shared[part * 32 + c] = s;
            }
        __syncthreads();
        if (part == 0)
            for (int c = lane; c < 32; c += lanes) {
                float total = 0.0f;
                for (int q = 0; q < parts; q++) total += shared[q * 32 + c];
                if (first + c < cols) db[first + c] = total;
            }
        __syncthreads();
    }
}

// The same for a tall g (a convolution's, whose rows are every (image, position): one thread per
// column alone would walk 25,000 rows), in two passes, each in a fixed order: this one the
// partial sums partials[p, j] = Σ g[r, j] over rows r = p·chunk … min((p + 1)·chunk, rows) − 1
// (one thread per (p, j), g transformed as above), then vae_bias_gradient over the [parts, cols]
// partials without an activation.
extern "C" __global__ void vae_bias_gradient_partials(float *g, const float *y, int activation, float slope, int rows, int cols, int chunk,
                                                      float *partials) {
    long parts = ((long)rows + chunk - 1) / chunk;
    FOR_EACH(i, parts * cols) {
        long p = i / cols, j = i % cols, end = (p + 1) * chunk < rows ? (p + 1) * chunk : rows;
        float s = 0.0f;
        for (long r = p * chunk; r < end; r++) {
            float v = g[r * cols + j];
            if (activation) {
                v *= vae_activation_derivative(activation, y[r * cols + j], slope);
                g[r * cols + j] = v;
            }
            s += v;
        }
        partials[i] = s;
    }
}

// A product split along k into `count` products (slices [count, n], slice s the product of the
// s-th part of k): out[i] = Σ_s slices[s·n + i], s in order. CPU: the unsplit product
// (BLAS.sgemm).
extern "C" __global__ void vae_sum_slices(const float *slices, long n, int count, float *out) {
    FOR_EACH(i, n) {
        float s = 0.0f;
        for (int q = 0; q < count; q++) s += slices[q * n + i];
        out[i] = s;
    }
}

// ---------------------------------------------------------------------------------------------
// Convolutions as products: the patches of channels-last (NHWC) images as the rows of a matrix
// whose columns follow PyTorch's weight order (c, kh, kw), so the weight [O, C, k, k] (Conv2D) or
// [C, O, k, k] (ConvTranspose2D) is the product's operand as it is stored; cuBLAS does the
// products. The CPU orders a patch (kh, kw, c) (vae_im2col_nhwc); the check permutes its columns.

// cols[(b·gh + ph)·gw + pw, (c·k + kh)·k + kw] = src[b, ph·s − p + kh, pw·s − p + kw, c], 0
// outside the image. For a convolution the grid (gh × gw) is its output; for a transposed
// convolution's backward pass the grid is its input and src the output gradient.
// CPU: vae_im2col_nhwc.
extern "C" __global__ void vae_im2col(
    const float *src, int batch, int channels, int height, int width, int gridHeight, int gridWidth, int kernel, int stride, int padding,
    float *cols) {
    long taps = (long)kernel * kernel, rowLength = channels * taps;
    FOR_EACH(i, (long)batch * gridHeight * gridWidth * rowLength) {
        long row = i / rowLength, col = i % rowLength;
        long c = col / taps, t = col % taps, kh = t / kernel, kw = t % kernel;
        long pw = row % gridWidth, ph = (row / gridWidth) % gridHeight, b = row / ((long)gridWidth * gridHeight);
        long y = ph * stride - padding + kh, x = pw * stride - padding + kw;
        cols[i] = (y >= 0 && y < height && x >= 0 && x < width) ? src[((b * height + y) * width + x) * channels + c] : 0.0f;
    }
}

// Its adjoint, plus a per-channel bias (NULL: none), then the activation: each NHWC
// destination value written once (no atomics), dst[b, y, x, c] = bias[c] + Σ cols[(b·gh + ph)·gw
// + pw, (c·k + kh)·k + kw] over the patches covering it (y = ph·s − p + kh, x = pw·s − p + kw),
// kh then kw ascending. A transposed convolution's output, a convolution's input gradient.
// CPU: vae_col2im_nhwc.
extern "C" __global__ void vae_col2im(
    const float *cols, int batch, int channels, int height, int width, int gridHeight, int gridWidth, int kernel, int stride, int padding,
    const float *bias, int activation, float slope, float *dst) {
    long rowLength = (long)channels * kernel * kernel;
    FOR_EACH(i, (long)batch * height * width * channels) {
        long c = i % channels, x = (i / channels) % width, y = (i / ((long)channels * width)) % height;
        long b = i / ((long)channels * width * height);
        float s = bias ? bias[c] : 0.0f;
        for (long kh = (y + padding) % stride; kh < kernel; kh += stride) {
            long ph = (y + padding - kh) / stride;
            if (ph < 0 || ph >= gridHeight) continue;
            for (long kw = (x + padding) % stride; kw < kernel; kw += stride) {
                long pw = (x + padding - kw) / stride;
                if (pw < 0 || pw >= gridWidth) continue;
                s += cols[((b * gridHeight + ph) * gridWidth + pw) * rowLength + (c * kernel + kh) * kernel + kw];
            }
        }
        dst[i] = vae_activate(activation, s, slope);
    }
}

// Each example's [rows, cols] matrix transposed: dst[b, c, r] = src[b, r, c]. Channels-first
// images to channels-last (rows = C, cols = H·W) and back. CPU: ChannelsLast, ChannelsFirst.
extern "C" __global__ void vae_transpose_examples(const float *src, int batch, int rows, int cols, float *dst) {
    long size = (long)rows * cols;
    FOR_EACH(i, (long)batch * size) {
        long b = i / size, k = i % size, c = k / rows, r = k % rows;
        dst[i] = src[b * size + r * cols + c];
    }
}

// Convolution weights between PyTorch's order [k, c, taps] and cuDNN's [k, taps, c], for several
// layers in one launch. Row l of `table` (8 integers) = {w, w_krsc, g_krsc, g, k, c, taps, first}:
// the layer's stored weight and its cuDNN copy, the cuDNN-order gradient and the stored
// gradient (device addresses), its sizes, and the index of its first element in the launch.
// Forward: w → w_krsc; backward: g_krsc → g. CPU: the per-layer transpose (vae_transpose_examples).
extern "C" __global__ void vae_transpose_filters(const long long *table, int layers, long total, int backward) {
    FOR_EACH(i, total) {
        int l = 0;
        while (l + 1 < layers && i >= table[(l + 1) * 8 + 7]) l++;
        const long long *t = table + l * 8;
        long j = i - t[7], c = t[5], taps = t[6];
        if (!backward) {
            long kk = j / (taps * c), r = j % (taps * c), tap = r / c, cc = r % c;
            ((float *)t[1])[j] = ((const float *)t[0])[(kk * c + cc) * taps + tap];
        } else {
            long kk = j / (c * taps), r = j % (c * taps), cc = r / taps, tap = r % taps;
            ((float *)t[3])[j] = ((const float *)t[2])[(kk * taps + tap) * c + cc];
        }
    }
}

// Nearest upsampling of channels-last [B, H, W, C] by f: y[b, Y, X, c] = x[b, ⌊Y/f⌋, ⌊X/f⌋, c].
// CPU: Upsample.
extern "C" __global__ void vae_upsample(const float *x, int batch, int height, int width, int channels, int factor, float *y) {
    long W = (long)width * factor, H = (long)height * factor;
    FOR_EACH(i, (long)batch * H * W * channels) {
        long c = i % channels, X = (i / channels) % W, Y = (i / (channels * W)) % H, b = i / (channels * W * H);
        y[i] = x[((b * height + Y / factor) * width + X / factor) * channels + c];
    }
}

// Its backward pass: dx[b, y, x, c] = Σ dy over the f × f block, rows then columns in order.
// CPU: Upsample.backward.
extern "C" __global__ void vae_upsample_backward(const float *dy, int batch, int height, int width, int channels, int factor, float *dx) {
    long W = (long)width * factor;
    FOR_EACH(i, (long)batch * height * width * channels) {
        long c = i % channels, x = (i / channels) % width, y = (i / ((long)channels * width)) % height;
        long b = i / ((long)channels * width * height);
        float s = 0.0f;
        for (long u = 0; u < factor; u++)
            for (long v = 0; v < factor; v++) s += dy[(((b * height + y) * factor + u) * W + x * factor + v) * channels + c];
        dx[i] = s;
    }
}

// ---------------------------------------------------------------------------------------------
// The Gaussian posterior

// KL(N(μ, σ²) ‖ N(0, I)) of one row of the posterior, ½ Σ_j (μ² + σ² − log σ² − 1), j in order.
// CPU: klDivergence's per-example values.
__device__ float kl_row(const float *posterior, long b, int d) {
    const float *mu = posterior + b * 2 * d, *logVar = mu + d;
    float s = 0.0f;
    for (int j = 0; j < d; j++) s += mu[j] * mu[j] + expf(logVar[j]) - logVar[j] - 1.0f;
    return 0.5f * s;
}

// The gradient with respect to the posterior [μ | log σ²] of klScale · KL + L(z):
//   ∂/∂μ = klScale · w_j · μ + ∂L/∂z,   ∂/∂log σ² = klScale · w_j · ½(σ² − 1) + ∂L/∂z · ½ σ ε,
// with w the free-bits mask (nil: all 1). CPU: klDivergence(gradient:scale:dimensionWeights:)
// followed by reparameterizeBackward (which adds).
extern "C" __global__ void vae_posterior_backward(const float *posterior, const float *eps, const float *dz, const float *weights,
                                                  float *gradient, int rows, int d, float klScale) {
    FOR_EACH(i, (long)rows * d) {
        long b = i / d, j = i % d;
        const float *mu = posterior + b * 2 * d, *logVar = mu + d;
        float *gMu = gradient + b * 2 * d, *gLogVar = gMu + d;
        float c = klScale * (weights ? weights[j] : 1.0f);
        float sigma = expf(0.5f * logVar[j]);
        gMu[j] = c * mu[j] + dz[i];
        gLogVar[j] = c * 0.5f * (sigma * sigma - 1.0f) + dz[i] * 0.5f * sigma * eps[i];
    }
}

// ---------------------------------------------------------------------------------------------
// Likelihoods: one block per row; each thread sums a strided share of the row, then the block
// adds the shares in a fixed tree. Launch with blockDim.x = 256 (a power of two ≤ 1024).

// Adds the block's values `v` (one per thread) in a fixed order; thread 0 gets the total.
__device__ float block_sum(float v, float *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
        __syncthreads();
    }
    return shared[0];
}

// Bernoulli on logits ℓ: −log p(x|ℓ) = softplus(ℓ) − xℓ per element, summed per row into
// rowSums[b]; with gradient ≠ nil also gradient = scale · s_b · (σ(ℓ) − x), s_b = rowScales[b]
// (the IWAE gradient's normalised weights; 1 when rowScales is nil). Row b of the logits is
// scored against row b / xRepeat of x (1 in training; the samples per image when scoring many
// samples of each image). CPU: vae_bernoulli_nll.
extern "C" __global__ void vae_bernoulli_nll(const float *x, const float *logits, float *gradient, float *rowSums, int cols, float scale,
                                             int xRepeat, const float *rowScales) {
    extern __shared__ float shared[];
    long base = (long)blockIdx.x * cols, xBase = (long)(blockIdx.x / xRepeat) * cols;
    float rowScale = rowScales ? scale * rowScales[blockIdx.x] : scale;
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float l = logits[base + j], xi = x[xBase + j];
        float e = expf(-fabsf(l));
        s += fmaxf(l, 0.0f) + log1pf(e) - xi * l;
        if (gradient) {
            float inverse = 1.0f / (1.0f + e);
            gradient[base + j] = rowScale * ((l >= 0.0f ? inverse : e * inverse) - xi);
        }
    }
    float total = block_sum(s, shared);
    if (threadIdx.x == 0) rowSums[blockIdx.x] = total;
}

// Σ (m − x)² per row (a Gaussian's −log p is that over 2σ² plus ½ D log 2πσ², which
// vae_affine_rows adds); gradient = scale · s_b · (m − x) with s_b as in vae_bernoulli_nll; x's
// rows repeat as in vae_bernoulli_nll. CPU: vae_squared_error.
// The block's row (blockIdx.x): Σ (m − x)² (thread 0 gets it), gradient = rowScale · (m − x).
__device__ float squared_error_row(const float *x, const float *means, float *gradient, int cols, float rowScale, int xRepeat, float *shared) {
    long base = (long)blockIdx.x * cols, xBase = (long)(blockIdx.x / xRepeat) * cols;
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float r = means[base + j] - x[xBase + j];
        s += r * r;
        if (gradient) gradient[base + j] = rowScale * r;
    }
    return block_sum(s, shared);
}

extern "C" __global__ void vae_squared_error(const float *x, const float *means, float *gradient, float *rowSums, int cols, float scale,
                                             int xRepeat, const float *rowScales) {
    extern __shared__ float shared[];
    float total = squared_error_row(x, means, gradient, cols, rowScales ? scale * rowScales[blockIdx.x] : scale, xRepeat, shared);
    if (threadIdx.x == 0) rowSums[blockIdx.x] = total;
}

// A Gaussian with a σ per value from the decoder, whose rows hold [m₁ … m_D | log σ₁ … log σ_D]:
// per row Σ_i [½ (x_i − m_i)² e^{−2t_i} + t_i], t_i = max(log σ_i, minLogSigma) (the caller adds
// ½ D log 2π); with gradient ≠ nil, ∂/∂m_i = c (m_i − x_i) e^{−2t_i} and ∂/∂log σ_i =
// c (1 − (x_i − m_i)² e^{−2t_i}) (0 below the floor), c = scale · s_b as in vae_bernoulli_nll.
// One block per row. CPU: vae_gaussian_pixel_nll.
extern "C" __global__ void vae_gaussian_pixel_nll(const float *x, const float *output, float *gradient, float *rowSums, int cols, float scale,
                                                  int xRepeat, const float *rowScales, float minLogSigma) {
    extern __shared__ float shared[];
    long base = (long)blockIdx.x * 2 * cols, xBase = (long)(blockIdx.x / xRepeat) * cols;
    float rowScale = rowScales ? scale * rowScales[blockIdx.x] : scale;
    float s = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
        float raw = output[base + cols + j];
        float t = raw < minLogSigma ? minLogSigma : raw;
        float r = output[base + j] - x[xBase + j];
        float inverseVariance = expf(-2.0f * t);
        float scaled = r * r * inverseVariance;
        s += 0.5f * scaled + t;
        if (gradient) {
            gradient[base + j] = rowScale * r * inverseVariance;
            gradient[base + cols + j] = raw < minLogSigma ? 0.0f : rowScale * (1.0f - scaled);
        }
    }
    float total = block_sum(s, shared);
    if (threadIdx.x == 0) rowSums[blockIdx.x] = total;
}

// A Gaussian whose one σ = e^s is a parameter of the model (s = *logSigma, on the device): per
// row ½ Σ (m − x)²/σ² + ½ D log 2πσ², gradient = scale · s_b · (m − x)/σ². One block per row.
// CPU: GaussianSharedVarianceLikelihood (the fixed-σ Gaussian at σ = e^s).
extern "C" __global__ void vae_gaussian_shared_nll(const float *x, const float *means, float *gradient, float *rowValues, int cols, float scale,
                                                   int xRepeat, const float *rowScales, const float *logSigma) {
    extern __shared__ float shared[];
    float sigma = (float)exp((double)logSigma[0]);
    float inverseVariance = 1.0f / (sigma * sigma);
    float rowScale = (rowScales ? scale * rowScales[blockIdx.x] : scale) * inverseVariance;
    float total = squared_error_row(x, means, gradient, cols, rowScale, xRepeat, shared);
    if (threadIdx.x == 0) {
        double logNormaliser = 0.5 * cols * log(6.283185307179586476925286766559 * (double)sigma * (double)sigma);
        rowValues[blockIdx.x] = (float)(0.5 * (double)(total * inverseVariance) + logNormaliser);
    }
}

// ∂/∂s of those rows: Σ_b c_b (D − 2(v_b − D(s + ½ log 2π))), c_b = scale · s_b, in double, rows
// in order (one thread), into *gradient. CPU: GaussianSharedVarianceLikelihood's log σ gradient.
extern "C" __global__ void vae_gaussian_shared_gradient(const float *rowValues, int rows, int cols, float scale, const float *rowScales,
                                                        const float *logSigma, float *gradient) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double n = cols, constant = n * ((double)logSigma[0] + 0.5 * log(6.283185307179586476925286766559)), g = 0.0;
    for (int b = 0; b < rows; b++) g += (double)(scale * (rowScales ? rowScales[b] : 1.0f)) * (n - 2.0 * ((double)rowValues[b] - constant));
    *gradient = (float)g;
}

// v ← a · v + c for each of n values: a row's −log p from its sum of squares (a = 1/2σ²,
// c = ½ D log 2πσ²). CPU: GaussianLikelihood.negativeLogLikelihood's per-row value.
extern "C" __global__ void vae_affine_rows(float *values, long n, float a, float c) {
    FOR_EACH(i, n) values[i] = a * values[i] + c;
}

// The step's loss terms in double, rows in order (one thread: a batch is a few hundred rows),
// into slot `slot` of the per-step record that the host reads back once per progress update:
// terms[3·slot …] = (Σ_b rowLosses[b], Σ_b KL_b, the first + klWeight × the second — or, with
// free bits, × rows × *flooredKL, the floored KL per image), KL_b = rowKL[b] or, with
// `posterior` (rowKL nil), the analytic KL of its row b (kl_row). CPU: the per-example figures
// added in double by the objective, and Trainer.freeBitsStep's objective.
extern "C" __global__ void vae_record_terms(const float *rowLosses, const float *rowKL, const float *posterior, int d, int rows, float klWeight,
                                            const double *flooredKL, double *terms, int slot) {
    // One block: thread t adds rows t, t + T, … in order, then thread 0 adds the threads' sums
    // in order (a fixed order; 2·T doubles of shared memory).
    extern __shared__ float shared[];
    double *partial = (double *)shared;
    if (blockIdx.x != 0) return;
    double reconstruction = 0.0, kl = 0.0;
    for (int b = threadIdx.x; b < rows; b += blockDim.x) {
        reconstruction += (double)rowLosses[b];
        kl += (double)(posterior ? kl_row(posterior, b, d) : rowKL[b]);
    }
    partial[2 * threadIdx.x] = reconstruction;
    partial[2 * threadIdx.x + 1] = kl;
    __syncthreads();
    if (threadIdx.x != 0) return;
    reconstruction = 0.0;
    kl = 0.0;
    for (unsigned t = 0; t < blockDim.x; t++) {
        reconstruction += partial[2 * t];
        kl += partial[2 * t + 1];
    }
    terms[3 * slot] = reconstruction;
    terms[3 * slot + 1] = kl;
    terms[3 * slot + 2] = reconstruction + (double)klWeight * (flooredKL ? *flooredKL * rows : kl);
}

// Free bits (Kingma et al. 2016), per dimension j of the batch: sums[j] = Σ_b ½(μ² + σ² − log σ²
// − 1), rows in order, in double. CPU: klSumsPerDimension.
extern "C" __global__ void vae_kl_dimension_sums(const float *posterior, int rows, int d, double *sums) {
    FOR_EACH(j, d) {
        double s = 0.0;
        for (int b = 0; b < rows; b++) {
            const float *mu = posterior + (long)b * 2 * d, *logVar = mu + d;
            s += 0.5 * (double)(mu[j] * mu[j] + expf(logVar[j]) - logVar[j] - 1.0f);
        }
        sums[j] = s;
    }
}

// From those sums: mask[j] = 1 where the batch's mean KL of dimension j exceeds λ (its KL is
// trained), else 0; *floored = Σ_j max(λ, mean_j), dimensions in order (one thread).
// CPU: Trainer.freeBitsStep.
extern "C" __global__ void vae_free_bits_mask(const double *sums, int rows, int d, float lambdaFloat, float *mask, double *floored) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double lambda = (double)lambdaFloat, total = 0.0;
    for (int j = 0; j < d; j++) {
        double mean = sums[j] / rows;
        mask[j] = mean > lambda ? 1.0f : 0.0f;
        total += mean > lambda ? mean : lambda;
    }
    *floored = total;
}

// ---------------------------------------------------------------------------------------------
// The sampled objective: K samples of each of B images, rows b·K + s (K = 1 with the sampled KL)

// The importance-weighted bound of each image from its samples' log w = −NLL − β KL, in double
// (each image's samples in the CPU's order): each sample's normalised weight w_r / Σ w into
// weights[r], and into slot `slot` of the record (Σ_r NLL_r / K, Σ_r KL_r / K,
// −Σ_b log (1/K) Σ_s w). CPU: importanceWeightedBound.
extern "C" __global__ void vae_iwae_bound(const float *rowNLL, const float *rowKL, int images, int samples, float beta, float *weights,
                                         double *terms, int slot) {
    // One block: thread t takes images t, t + T, … (each image's samples in order), then thread 0
    // adds the threads' sums in order (a fixed order; 3·T doubles of shared memory).
    extern __shared__ float shared[];
    double *partial = (double *)shared;
    if (blockIdx.x != 0) return;
    double reconstruction = 0.0, kl = 0.0, objective = 0.0;
    for (int b = threadIdx.x; b < images; b += blockDim.x) {
        double maxLogW = -1.0 / 0.0;
        for (int s = 0; s < samples; s++) {
            long r = (long)b * samples + s;
            double logW = -(double)rowNLL[r] - (double)beta * (double)rowKL[r];
            maxLogW = logW > maxLogW ? logW : maxLogW;
            reconstruction += (double)rowNLL[r] / samples;
            kl += (double)rowKL[r] / samples;
        }
        double total = 0.0;
        for (int s = 0; s < samples; s++) {
            long r = (long)b * samples + s;
            double w = exp(-(double)rowNLL[r] - (double)beta * (double)rowKL[r] - maxLogW);
            weights[r] = (float)w;
            total += w;
        }
        for (int s = 0; s < samples; s++) weights[(long)b * samples + s] /= (float)total;
        objective -= maxLogW + log(total) - log((double)samples);
    }
    partial[3 * threadIdx.x] = reconstruction;
    partial[3 * threadIdx.x + 1] = kl;
    partial[3 * threadIdx.x + 2] = objective;
    __syncthreads();
    if (threadIdx.x != 0) return;
    reconstruction = kl = objective = 0.0;
    for (unsigned t = 0; t < blockDim.x; t++) {
        reconstruction += partial[3 * t];
        kl += partial[3 * t + 1];
        objective += partial[3 * t + 2];
    }
    terms[3 * slot] = reconstruction;
    terms[3 * slot + 1] = kl;
    terms[3 * slot + 2] = objective;
}

// ∂/∂[μ | log σ²] of each image from its K samples' ∂/∂z (samples in order): ∂μ = Σ_s dz,
// ∂log σ² = Σ_s (dz · ½σε − ½ c w_s) with c = scale · β; with `prior` (the samples z), each
// sample's dz first has the gradient of −β log p(z) = β ½ |z|² added, dz + c w_s z (w = 1 when
// weights is nil). CPU: monteCarloObjective's prior term and posteriorGradient.
extern "C" __global__ void vae_posterior_gradient_samples(const float *posterior, const float *eps, const float *dz, const float *weights,
                                                          const float *prior, int images, int samples, int d, float c, float *gradient) {
    FOR_EACH(i, (long)images * d) {
        long b = i / d, j = i % d;
        float sigma = expf(0.5f * posterior[b * 2 * d + d + j]);
        float gMu = 0.0f, gLogVar = 0.0f;
        for (int s = 0; s < samples; s++) {
            long r = b * samples + s;
            float g = dz[r * d + j];
            if (prior) g += c * (weights ? weights[r] : 1.0f) * prior[r * d + j];
            gMu += g;
            gLogVar += g * 0.5f * sigma * eps[r * d + j] - 0.5f * c * (weights ? weights[r] : 1.0f);
        }
        gradient[b * 2 * d + j] = gMu;
        gradient[b * 2 * d + d + j] = gLogVar;
    }
}

// ---------------------------------------------------------------------------------------------
// Two stochastic layers (Burda et al. 2015): z₁ ~ q(z₁|x), z₂ ~ q(z₂|z₁) from encoder2, and the
// prior p(z₁|z₂) = N(μ_p, σ_p²) from decoder2, on rows r = b·K + s. CPU: twoLayerObjective.

// The KL term of each row, in double, dimensions in order: log q(z₁|x) + log q(z₂|z₁) −
// log p(z₁|z₂) − log p(z₂) at the samples (the 2π terms cancel), with ε fixed so log q(z|·) =
// −½ Σ (log σ² + ε²); with `analytic` the z₂ part is KL(q(z₂|z₁) ‖ N(0, I)) in closed form.
// When logWeights is given, also log w = −NLL − KL there (double, rowNLL the rows' −log p(x|z₁)).
extern "C" __global__ void vae_two_layer_kl(const float *posterior1, const float *eps1, const float *z1, const float *posterior2,
                                           const float *eps2, const float *z2, const float *prior, int images, int samples, int d1, int d2,
                                           int analytic, float *rowKL, const float *rowNLL, double *logWeights) {
    FOR_EACH(r, (long)images * samples) {
        const float *logVar1 = posterior1 + (r / samples) * 2 * d1 + d1, *mu2 = posterior2 + r * 2 * d2, *logVar2 = mu2 + d2;
        const float *muP = prior + r * 2 * d1, *logVarP = muP + d1;
        double logQ1 = 0.0, logP1 = 0.0, upper = 0.0;
        for (int j = 0; j < d1; j++) {
            double e = (double)eps1[r * d1 + j];
            logQ1 -= 0.5 * ((double)logVar1[j] + e * e);
            double diff = (double)(z1[r * d1 + j] - muP[j]);
            logP1 -= 0.5 * ((double)logVarP[j] + diff * diff * exp(-(double)logVarP[j]));
        }
        for (int j = 0; j < d2; j++) {
            if (analytic) {
                double m = (double)mu2[j], lv = (double)logVar2[j];
                upper += 0.5 * (m * m + exp(lv) - lv - 1.0);
            } else {
                double e = (double)eps2[r * d2 + j], z = (double)z2[r * d2 + j];
                upper += 0.5 * (z * z - (double)logVar2[j] - e * e);
            }
        }
        double kl = logQ1 - logP1 + upper;
        rowKL[r] = (float)kl;
        if (logWeights) logWeights[r] = -(double)rowNLL[r] - kl;
    }
}

// −β log p(z₁|z₂) scaled by c_r = c · w_r (c = scale · β, w the sample's normalised weight):
// dz1 += c_r (z₁ − μ_p)/σ_p², and its gradient with respect to decoder2's output,
// dPrior = [−c_r (z₁ − μ_p)/σ_p² | ½ c_r (1 − (z₁ − μ_p)²/σ_p²)]. CPU: twoLayerObjective.
extern "C" __global__ void vae_conditional_prior_gradient(const float *z1, const float *prior, const float *weights, int rows, int d1, float c,
                                                         float *dz1, float *dPrior) {
    FOR_EACH(i, (long)rows * d1) {
        long r = i / d1, j = i % d1;
        float cr = c * weights[r];
        float inverse = expf(-prior[r * 2 * d1 + d1 + j]), diff = z1[i] - prior[r * 2 * d1 + j];
        dz1[i] += cr * diff * inverse;
        dPrior[r * 2 * d1 + j] = -cr * diff * inverse;
        dPrior[r * 2 * d1 + d1 + j] = 0.5f * cr * (1.0f - diff * diff * inverse);
    }
}

// The gradient with respect to encoder2's output [μ₂ | log σ₂²] from G₂ = ∂/∂z₂ (through
// decoder2) and β's part of log q(z₂|z₁) − log p(z₂), c_r = c · w_r: sampled,
// ∂μ₂ = G₂ + c_r z₂ and ∂log σ₂² = (G₂ + c_r z₂) ½σ₂ε₂ − ½c_r; analytic, ∂μ₂ = G₂ + c_r μ₂ and
// ∂log σ₂² = G₂ ½σ₂ε₂ + ½c_r (σ₂² − 1). CPU: twoLayerObjective.
extern "C" __global__ void vae_upper_posterior_gradient(const float *posterior2, const float *eps2, const float *z2, const float *dz2,
                                                       const float *weights, int rows, int d2, float c, int analytic, float *gradient) {
    FOR_EACH(i, (long)rows * d2) {
        long r = i / d2, j = i % d2;
        float cr = c * weights[r];
        float mu = posterior2[r * 2 * d2 + j], logVar = posterior2[r * 2 * d2 + d2 + j];
        float sigma = expf(0.5f * logVar), e = eps2[i];
        if (analytic) {
            float g = dz2[i];
            gradient[r * 2 * d2 + j] = g + cr * mu;
            gradient[r * 2 * d2 + d2 + j] = g * 0.5f * sigma * e + 0.5f * cr * (sigma * sigma - 1.0f);
        } else {
            float g = dz2[i] + cr * z2[i];
            gradient[r * 2 * d2 + j] = g;
            gradient[r * 2 * d2 + d2 + j] = g * 0.5f * sigma * e - 0.5f * cr;
        }
    }
}

// y += x (a second path's gradient added to the first's).
extern "C" __global__ void vae_accumulate(float *y, const float *x, long n) {
    FOR_EACH(i, n) y[i] += x[i];
}

// ---------------------------------------------------------------------------------------------
// Optimisers

// Adam as PyTorch writes it (see Optimizers.swift): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
// w ← w·decay − stepSize · m / (√v · inverseRootCorrection2 + ε). CPU: vae_adam_update.
extern "C" __global__ void vae_adam(float *w, const float *g, float *m, float *v, long n, float beta1, float beta2, float epsilon,
                                    float stepSize, float inverseRootCorrection2, float decay) {
    FOR_EACH(i, n) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * decay - stepSize * mi / (sqrtf(vi) * inverseRootCorrection2 + epsilon);
    }
}

// Σ g² in double over the whole gradient, in a fixed order: thread t of the one block sums
// elements t, t + blockDim, … and the block adds the threads' sums in a fixed tree. Launch one
// block of 256 threads with 256 doubles of shared memory. CPU: clipGradientNorm's sum.
extern "C" __global__ void vae_squared_norm(const float *g, long n, double *out) {
    extern __shared__ float shared[];
    double *partial = (double *)shared;  // dynamic shared memory is aligned for doubles
    double s = 0.0;
    for (long i = threadIdx.x; i < n; i += blockDim.x) s += (double)g[i] * (double)g[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (unsigned width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = partial[0];
}

// g ← g · maxNorm / ‖g‖ when ‖g‖ = √(*squares) (rounded to float) exceeds maxNorm. CPU:
// clipGradientNorm.
extern "C" __global__ void vae_clip(float *g, long n, const double *squares, float maxNorm) {
    float norm = (float)sqrt(*squares);
    if (!(norm > maxNorm && norm > 0.0f)) return;
    float factor = maxNorm / norm;
    FOR_EACH(i, n) g[i] *= factor;
}

// SGD with momentum μ and L2 weight decay λ: g ← g + λw, u ← μu + g, w ← w − η u (no momentum
// buffer: w ← w − η g). CPU: vae_sgd_update.
extern "C" __global__ void vae_sgd(float *w, float *g, float *velocity, long n, float lr, float momentum, float decay) {
    FOR_EACH(i, n) {
        float gi = g[i] + decay * w[i];
        if (velocity) {
            float vi = momentum * velocity[i] + gi;
            velocity[i] = vi;
            w[i] -= lr * vi;
        } else {
            w[i] -= lr * gi;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Noise: Philox4x32-10 and Box–Muller in double, number for number what the CPU draws.
// CPU: vae_philox_normals (CounterNoise).

__device__ void philox4x32_10(u32 c[4], u32 k0, u32 k1) {
    for (int round = 0; round < 10; round++) {
        u32 hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        u32 hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        u32 n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

// The four normals of Philox block `block` of `stream` under `seed`: two Box–Muller pairs in double.
__device__ void philox_normal_block(u64 seed, u64 stream, u64 block, double normals[4]) {
    const double twoPi = 6.283185307179586476925286766559;
    u32 c[4] = {(u32)block, (u32)(block >> 32), (u32)stream, (u32)(stream >> 32)};
    philox4x32_10(c, (u32)seed, (u32)(seed >> 32));
    for (int pair = 0; pair < 2; pair++) {
        double u1 = ((double)c[2 * pair] + 0.5) * 0x1p-32;
        double u2 = ((double)c[2 * pair + 1] + 0.5) * 0x1p-32;
        double radius = sqrt(-2.0 * log(u1));
        normals[2 * pair] = radius * cos(twoPi * u2);
        normals[2 * pair + 1] = radius * sin(twoPi * u2);
    }
}

// out[i] = normal number first + i of `stream` under `seed` (one thread per block of four).
extern "C" __global__ void vae_philox_normals(u64 seed, u64 stream, u64 first, long count, float *out) {
    u64 firstBlock = first / 4, lastBlock = (first + count + 3) / 4;
    FOR_EACH(k, lastBlock - firstBlock) {
        u64 block = firstBlock + k;
        double normals[4];
        philox_normal_block(seed, stream, block, normals);
        for (int j = 0; j < 4; j++) {
            u64 index = block * 4 + j;
            if (index >= first && index < first + count) out[index - first] = (float)normals[j];
        }
    }
}

// A training step's latent samples, one thread per row r = b·K + s: ε_r = normals r·d … r·d + d − 1
// of `stream` under `seed` (as vae_philox_normals), z_r = μ_b + σ_b ⊙ ε_r (as vae_sample_latents)
// and, when rowKL is given, the sampled KL ½(Σ z² − Σ log σ² − Σ ε²) (log q − log p at z_r, the
// dimensions in order). Three launches' work in one. CPU: CounterNoise.normals, reparameterize and
// monteCarloObjective's log q − log p.
extern "C" __global__ void vae_sample_rows(u64 seed, u64 stream, const float *posterior, int images, int samples, int d, float *eps, float *z,
                                          float *rowKL) {
    FOR_EACH(r, (long)images * samples) {
        const float *mu = posterior + (r / samples) * 2 * d, *logVar = mu + d;
        u64 first = (u64)r * d;
        double normals[4];
        for (int j = 0; j < d; j++) {
            u64 index = first + j;
            if (j == 0 || index % 4 == 0) philox_normal_block(seed, stream, index / 4, normals);
            float e = (float)normals[index % 4];
            eps[index] = e;
            z[index] = mu[j] + expf(0.5f * logVar[j]) * e;
        }
        if (rowKL) {
            const float *e = eps + first, *zr = z + first;
            float logVarSum = 0.0f, e2 = 0.0f, z2 = 0.0f;
            for (int j = 0; j < d; j++) logVarSum += logVar[j];
            for (int j = 0; j < d; j++) {
                e2 += e[j] * e[j];
                z2 += zr[j] * zr[j];
            }
            rowKL[r] = 0.5f * (z2 - logVarSum - e2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The data set on the device

// A batch made on the device from the data set: row r is example e = order[first + r] of the
// data set's `cols`-value rows (bytes / 255, or `values` when bytes is nil); with binarize ≠ 0,
// value i of the row is 1 if u < p else 0, u = (word i of Philox stream 2⁶² + epoch·2³² + e
// under `seed`) >> 8 times 2⁻²⁴. One thread per four values. CPU: BatchLoader.fill
// (vae_bytes_to_unit, vae_philox_binarize).
extern "C" __global__ void vae_gather(const unsigned char *bytes, const float *values, const int *order, long first, int rows, int cols,
                                      int binarize, u64 seed, u64 epoch, float *x) {
    long quads = (cols + 3) / 4;
    FOR_EACH(k, (long)rows * quads) {
        long r = k / quads, block = k % quads;
        long example = order[first + r];
        u32 c[4] = {0, 0, 0, 0};
        if (binarize) {
            u64 stream = (1ull << 62) | (epoch << 32) | (u64)(u32)example;
            c[0] = (u32)block;
            c[1] = (u32)((u64)block >> 32);
            c[2] = (u32)stream;
            c[3] = (u32)(stream >> 32);
            philox4x32_10(c, (u32)seed, (u32)(seed >> 32));
        }
        for (int j = 0; j < 4; j++) {
            long i = block * 4 + j;
            if (i >= cols) break;
            long at = example * cols + i;
            float p = bytes ? (float)bytes[at] / 255.0f : values[at];
            x[r * cols + i] = binarize ? ((float)(c[j] >> 8) * 0x1p-24f < p ? 1.0f : 0.0f) : p;
        }
    }
}

// One-hot labels of a batch made on the device: out[r, c] = 1 if labels[order[first + r]] = c
// (a label outside 0 ..< classes gives a row of zeros). CPU: BatchLoader.fill's one-hot rows.
extern "C" __global__ void vae_one_hot(const int *labels, const int *order, long first, int rows, int classes, float *out) {
    FOR_EACH(i, (long)rows * classes) out[i] = labels[order[first + i / classes]] == (int)(i % classes) ? 1.0f : 0.0f;
}

// Latent statistics of a batch's posteriors, added per dimension j, images in order, in double,
// into dimensions first … first + d − 1 of `total`: sums[first + j] += KL_j, sums[total + first + j]
// += μ, sums[2·total + first + j] += μ², KL_j = ½(log σ_p² − log σ² + (σ² + (μ − μ_p)²)/σ_p² − 1)
// against the prior rows [μ_p | log σ_p²] (NULL: N(0, 1)). CPU: LatentSums.add.
extern "C" __global__ void vae_latent_sums(const float *posterior, const float *prior, int rows, int d, int total, int first, double *sums) {
    FOR_EACH(j, d) {
        double kl = sums[first + j], means = sums[total + first + j], squares = sums[2 * total + first + j];
        for (int b = 0; b < rows; b++) {
            double m = posterior[(long)b * 2 * d + j], lv = posterior[(long)b * 2 * d + d + j];
            double pm = prior ? (double)prior[(long)b * 2 * d + j] : 0.0, plv = prior ? (double)prior[(long)b * 2 * d + d + j] : 0.0;
            kl += 0.5 * (plv - lv + (exp(lv) + (m - pm) * (m - pm)) * exp(-plv) - 1.0);
            means += m;
            squares += m * m;
        }
        sums[first + j] = kl;
        sums[total + first + j] = means;
        sums[2 * total + first + j] = squares;
    }
}

// ---------------------------------------------------------------------------------------------
// Importance sampling: S samples of each of a batch of images, rows image-major (row i·S + s).

// xoshiro256** (Blackman & Vigna), the CPU's RandomGenerator, one state of four words per image.
__device__ u64 xoshiro_next(u64 *s) {
    u64 x = s[1] * 5;
    u64 result = ((x << 7) | (x >> 57)) * 9;
    u64 t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

// The next 2·pairs words of each image's generator (states [images, 4], advanced), into
// words[i, 2·pairs]: the sequential half of the CPU's RandomGenerator.fillNormal, one thread
// per image; vae_box_muller turns them into normals, in parallel.
extern "C" __global__ void vae_image_words(u64 *states, int images, int pairs, u64 *words) {
    FOR_EACH(i, images) {
        u64 s[4] = {states[4 * i], states[4 * i + 1], states[4 * i + 2], states[4 * i + 3]};
        u64 *row = words + i * 2 * (long)pairs;
        for (long k = 0; k < 2 * (long)pairs; k++) row[k] = xoshiro_next(s);
        for (int w = 0; w < 4; w++) states[4 * i + w] = s[w];
    }
}

// Normals from each image's words as RandomGenerator.fillNormal makes them: word pair q gives
// uniforms u = ((w >> 11) + 1)·2⁻⁵³ in (0, 1] and, by Box–Muller in double, normals 2q and
// 2q + 1 of the image's `count` (the second of the last pair dropped when `count` is odd).
// One thread per pair. CPU: the per-image ε of importanceSampledLogLikelihood.
extern "C" __global__ void vae_box_muller(const u64 *words, int images, int count, float *out) {
    const double twoPi = 6.283185307179586476925286766559;
    long pairs = (count + 1) / 2;
    FOR_EACH(p, (long)images * pairs) {
        long i = p / pairs, q = p % pairs;
        double u1 = (double)((words[2 * p] >> 11) + 1) * 0x1p-53;
        double u2 = (double)((words[2 * p + 1] >> 11) + 1) * 0x1p-53;
        double r = sqrt(-2.0 * log(u1)), theta = twoPi * u2;
        float *row = out + i * (long)count;
        row[2 * q] = (float)(r * cos(theta));
        if (2 * q + 1 < count) row[2 * q + 1] = (float)(r * sin(theta));
    }
}

// z[i·S + s] = μ_i + exp(½ log σ²_i) ⊙ ε[i·S + s], each image's posterior for its S samples.
// CPU: the loop over samples in importanceSampledLogLikelihood.
extern "C" __global__ void vae_sample_latents(const float *posterior, const float *eps, float *z, int images, int samples, int d) {
    FOR_EACH(k, (long)images * samples * d) {
        long row = k / d, j = k % d;
        const float *p = posterior + (row / samples) * 2 * d;
        z[k] = p[j] + expf(0.5f * p[d + j]) * eps[k];
    }
}

// log w = −(−log p(x|z)) + log N(z; 0, I) − log N(z; μ, σ²) per row, in double, the dimensions
// in order. CPU: standardNormalLogDensity and gaussianLogDensity.
extern "C" __global__ void vae_log_weights(const float *z, const float *posterior, const float *rowNLL, int images, int samples, int d,
                                           double *logWeights) {
    FOR_EACH(row, (long)images * samples) {
        const float *zr = z + row * d, *mu = posterior + (row / samples) * 2 * d, *logVar = mu + d;
        double prior = 0.0, q = 0.0;
        for (int j = 0; j < d; j++) {
            prior += 1.8378770664093453 + (double)zr[j] * (double)zr[j];
            double diff = (double)(zr[j] - mu[j]);
            q += 1.8378770664093453 + (double)logVar[j] + diff * diff * exp(-(double)logVar[j]);
        }
        logWeights[row] = -(double)rowNLL[row] - 0.5 * prior + 0.5 * q;
    }
}

// Each image's streaming log-sum-exp over its S new log-weights, in order: with m the largest
// log w so far (shift) and a = Σ exp(log w − m) (scaled); and Σ log w. One thread per image.
// CPU: the same loop in importanceSampledLogLikelihood.
extern "C" __global__ void vae_logsumexp_update(const double *logWeights, int images, int samples, double *shift, double *scaled,
                                                double *sumLogWeights) {
    FOR_EACH(i, images) {
        double m = shift[i], a = scaled[i], total = sumLogWeights[i];
        for (int s = 0; s < samples; s++) {
            double w = logWeights[i * (long)samples + s];
            total += w;
            if (w > m) {
                a = a * exp(m - w) + 1.0;
                m = w;
            } else {
                a += exp(w - m);
            }
        }
        shift[i] = m;
        scaled[i] = a;
        sumLogWeights[i] = total;
    }
}
