import CKernels
import Tensor

/// Geometry shared by the convolutions: square kernel k, stride s, padding p.
public struct ConvolutionGeometry: Codable, Equatable, Sendable {
    public var kernel: Int
    public var stride: Int
    public var padding: Int

    public init(kernel: Int, stride: Int = 1, padding: Int = 0) {
        precondition(kernel >= 1 && stride >= 1 && padding >= 0, "invalid convolution geometry")
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// Output size of a convolution over `size` input positions: ⌊(size + 2p − k)/s⌋ + 1.
    public func convolutionOutput(_ size: Int) -> Int { (size + 2 * padding - kernel) / stride + 1 }
    /// Output size of a transposed convolution: (size − 1)s − 2p + k.
    public func transposedOutput(_ size: Int) -> Int { (size - 1) * stride - 2 * padding + kernel }
}

/// What the two convolutions share: channels, geometry, weight and bias, PyTorch's default
/// initialisation (uniform in ±1/√fan-in), and replicas that share the parameter values.
public class ConvolutionLayer: ReLUFusing, PrecisionSetting {
    public let inChannels: Int
    public let outChannels: Int
    public let geometry: ConvolutionGeometry
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true
    /// Whether this layer applies the ReLU after it (set by `Sequential`; see `ReLUFusing`).
    public internal(set) var fusesReLU = false
    /// ∂L/∂y masked by the fused ReLU, one chunk at a time.
    var maskedGradient: Tensor?
    /// The weight [A, B, k, k] arranged for the product at hand, and the weight gradient in
    /// the order a backward pass sums it: [A, (u, v, b)] for the patch products and the direct
    /// path, or taps first, [k, k, ·, ·], for the blocked kernels. Each path arranges the weight
    /// just before it uses it; each replica has its own.
    let arrangedWeight: Tensor
    let arrangedGradient: Tensor
    let reorderScratch: Tensor
    /// Whether the layer may use the register-blocked kernels (`vae_conv_gather`, `_scatter`,
    /// `_weight_gradient`) where they apply: AVX-512 and a multiple of 16 channels on the
    /// vectorised side. Tests turn it off to check them against the im2col + GEMM path.
    public var allowsBlockedKernels = true
    /// The operands' format in the products. In bf16 every product goes through the patch
    /// matrix and the bf16 GEMM (the blocked kernels are FP32); the direct path for a few
    /// channels stays FP32.
    public var precision: MatrixPrecision = .fp32
    /// Below this many reduced channels a scatter (or a grid-broadcast weight gradient) would do
    /// too few products per tap: those products keep the patch matrix.
    static let minimumScatteredChannels = 4

    init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, weightShape: [Int], fanIn: Int, rng: inout RandomGenerator) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.geometry = geometry
        weight = Parameter(Tensor(shape: weightShape))
        bias = Parameter(Tensor(shape: [outChannels]))
        arrangedWeight = Tensor(shape: weightShape)
        arrangedGradient = Tensor(shape: weightShape)
        reorderScratch = Tensor(shape: weightShape)
        let bound = 1 / Float(fanIn).squareRoot()
        rng.fillUniform(weight.value, low: -bound, high: bound)
        rng.fillUniform(bias.value, low: -bound, high: bound)
    }

    required init(sharingParametersOf other: ConvolutionLayer) {
        inChannels = other.inChannels
        outChannels = other.outChannels
        geometry = other.geometry
        weight = Parameter(sharingValueOf: other.weight)
        bias = Parameter(sharingValueOf: other.bias)
        arrangedWeight = Tensor(shape: other.weight.value.shape)
        arrangedGradient = Tensor(shape: other.weight.value.shape)
        reorderScratch = Tensor(shape: other.weight.value.shape)
        computesInputGradient = other.computesInputGradient
        allowsBlockedKernels = other.allowsBlockedKernels
        precision = other.precision
    }

    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }

    /// Without a fused ReLU the bias gradient is Σ_rows ∂L/∂y at once; with one it is summed
    /// chunk by chunk as the gradient is masked, into the buffer returned (`chunkRows` rows).
    func beginBiasGradient(_ dy: Tensor, rows chunkRows: Int) -> Tensor? {
        guard fusesReLU else {
            vae_column_sums(dy.data, dy.count / outChannels, outChannels, bias.gradient.data)
            return nil
        }
        bias.gradient.fill(0)
        let masked = Tensor.reusing(maskedGradient, rows: chunkRows, columns: outChannels)
        maskedGradient = masked
        return masked
    }

    /// ∂L/∂(pre-activation) for output rows [firstRow, firstRow + rows): ∂L/∂y itself, or
    /// masked where the fused ReLU's output y is 0 (adding to the bias gradient as it goes).
    func chunkGradient(_ dy: Tensor, output y: Tensor, masked: Tensor?, firstRow: Int, rows: Int) -> UnsafeMutablePointer<Float> {
        let offset = firstRow * outChannels
        guard let masked else { return dy.data + offset }
        vae_relu_mask_column_sums(y.data + offset, dy.data + offset, masked.data, rows, outChannels, outChannels, bias.gradient.data)
        return masked.data
    }

    /// arrangedWeight ← weight: [A, B, k, k] → [A, (u, v, b)], a transpose of each B × k² block.
    func reorderWeight() {
        let (a, k2) = (weight.value.shape[0], geometry.kernel * geometry.kernel)
        let block = weight.value.count / a
        for i in 0..<a {
            vae_transpose(weight.value.data + i * block, block / k2, k2, arrangedWeight.data + i * block)
        }
    }

    /// Whether the blocked kernels take this product: `reduced` channels summed per tap,
    /// `vectorChannels` computed side by side. The scatter kernel and a weight gradient that
    /// broadcasts the grid side need `minimumScatteredChannels` reduced or broadcast channels;
    /// gathers take any number (fewer go through a zero-padded copy of the image).
    func blocked(reduced: Int, vectorChannels: Int, scattered: Bool = false) -> Bool {
        allowsBlockedKernels && precision == .fp32 && (!scattered || reduced >= Self.minimumScatteredChannels)
            && vae_blocked_convolution_supported(reduced, vectorChannels, geometry.kernel) != 0
    }

    /// arrangedWeight ← weight [A, B, k, k] as [k, k, A, B], or [k, k, B, A] when `swap`.
    func reorderWeightTapsFirst(swap: Bool) {
        let (a, b) = (weight.value.shape[0], weight.value.shape[1])
        vae_weight_taps_first(weight.value.data, a, b, geometry.kernel * geometry.kernel, swap ? 1 : 0, reorderScratch.data, arrangedWeight.data)
    }

    /// weight.gradient ← arrangedGradient, summed taps first by the blocked kernels ([k, k, A, B],
    /// or [k, k, B, A] when `swap`), else as [A, (u, v, b)] by the patch products (which leave it
    /// untouched when the batch is empty: then it is 0).
    func storeWeightGradient(tapsFirst: Bool, swap: Bool = false, batch: Int) {
        let (a, b, k2) = (weight.value.shape[0], weight.value.shape[1], geometry.kernel * geometry.kernel)
        if tapsFirst {
            vae_weight_taps_last(arrangedGradient.data, a, b, k2, swap ? 1 : 0, reorderScratch.data, weight.gradient.data)
            return
        }
        if batch == 0 { arrangedGradient.fill(0) }
        for i in 0..<a {
            vae_transpose(arrangedGradient.data + i * b * k2, k2, b, weight.gradient.data + i * b * k2)
        }
    }
}

/// 2-D convolution over channels-last input [B, H, W, C] with weight [O, C, k, k] and bias [O]
/// (the weight in PyTorch's `nn.Conv2d` layout, so checkpoints carry over):
///
///     y[b, i, j, o] = bias[o] + Σ_{c, u, v} W[o, c, u, v] · x[b, i·s − p + u, j·s − p + v, c]
///
/// Each product goes through the register-blocked AVX-512 kernels where the channels allow
/// (`vae_conv_gather` forward, `vae_conv_weight_gradient`, `vae_conv_scatter` for ∂x: see
/// `blocked(reduced:vectorChannels:scattered:)`), else it is lowered to GEMMs over a few images
/// at a time (their patches kept in cache): each output position's patch is a row of
/// cols = im2col(x) [n·H'·W', k·k·C] in (u, v, c) order, and with W' the weight reordered to
/// [O, (u, v, c)], the output rows are Y = cols · W'ᵀ + b, already channels-last. Backward:
/// ∂W' = Σ_chunks ∂Yᵀ · cols, ∂b = Σ_rows ∂Y, ∂x = col2im(∂Y · W').
///
/// With at most `directOutputChannels` output channels (a decoder's last layer) there is too
/// little product per patch value to pay for the patch matrix: the sums run straight over the
/// image instead (`vae_conv_direct_forward`/`_backward`).
public final class Conv2D: ConvolutionLayer, Layer {
    /// Up to this many output channels the layer skips im2col and GEMM (measured with the
    /// nearest-upsampling decoder, whose last layer is 32→1, 3×3 over 28×28: 10.1–10.7 →
    /// 9.3–9.8 s per epoch).
    public static let directOutputChannels = 4
    var computesDirectly: Bool { outChannels <= Self.directOutputChannels }

    private var input: Tensor?
    private var output: Tensor?
    private var cols: Tensor?
    private var colsGradient: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.Conv2d`: W and b uniform in ±1/√(C·k·k).
    public init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, rng: inout RandomGenerator) {
        let k = geometry.kernel
        super.init(inChannels, outChannels, geometry: geometry, weightShape: [outChannels, inChannels, k, k], fanIn: inChannels * k * k, rng: &rng)
    }

    required init(sharingParametersOf other: ConvolutionLayer) { super.init(sharingParametersOf: other) }

    public func replica() -> Layer { Conv2D(sharingParametersOf: self) }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[3] == inChannels, "Conv2D(\(inChannels)→\(outChannels)) takes [B, H, W, \(inChannels)] input, got \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (ho, wo) = (geometry.convolutionOutput(h), geometry.convolutionOutput(w))
        let (p, kk, k) = (ho * wo, inChannels * geometry.kernel * geometry.kernel, geometry.kernel)
        input = x
        let out = Tensor.reusing(output, shape: [b, ho, wo, outChannels])
        output = out
        if computesDirectly {
            reorderWeight()
            vae_conv_direct_forward(x.data, b, inChannels, h, w, ho, wo, k, geometry.stride, geometry.padding,
                                    arrangedWeight.data, outChannels, bias.value.data, fusesReLU ? 1 : 0, out.data)
            return out
        }
        if blocked(reduced: inChannels, vectorChannels: outChannels) {
            reorderWeightTapsFirst(swap: true)  // [k, k, C, O]
            vae_conv_gather(x.data, b, inChannels, h, w, ho, wo, k, geometry.stride, geometry.padding,
                            arrangedWeight.data, outChannels, bias.value.data, fusesReLU ? 1 : 0, out.data)
            return out
        }
        reorderWeight()
        vae_fill_rows(out.data, bias.value.data, b * p, outChannels)
        // A few images at a time, so that their patches stay in cache for the GEMM.
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let c = Tensor.reusing(cols, rows: n * p, columns: kk)
        cols = c
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            vae_im2col_nhwc(x.data + start * h * w * inChannels, count, inChannels, h, w, ho, wo, k, geometry.stride, geometry.padding, c.data)
            BLAS.sgemm(transposeA: false, transposeB: true, m: m, n: outChannels, k: kk, alpha: 1,
                       a: c.data, lda: kk, b: arrangedWeight.data, ldb: kk, beta: 1, c: out.data + start * p * outChannels, ldc: outChannels, precision: precision)
            if fusesReLU { vae_relu_inplace(out.data + start * p * outChannels, m * outChannels) }
        }
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input, let y = output else { preconditionFailure("Conv2D.backward before forward") }
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (ho, wo) = (dy.shape[1], dy.shape[2])
        let (p, kk, k) = (ho * wo, inChannels * geometry.kernel * geometry.kernel, geometry.kernel)
        let (s, pad) = (geometry.stride, geometry.padding)
        let dx: Tensor? = computesInputGradient ? Tensor.reusing(inputGradient, shape: x.shape) : nil
        inputGradient = dx ?? inputGradient
        if computesDirectly {  // arrangedWeight is as the forward pass left it
            let masked = beginBiasGradient(dy, rows: b * p)
            let g = chunkGradient(dy, output: y, masked: masked, firstRow: 0, rows: b * p)
            vae_conv_direct_backward(x.data, b, inChannels, h, w, ho, wo, k, s, pad,
                                     arrangedWeight.data, outChannels, g, arrangedGradient.data, dx?.data)
            storeWeightGradient(tapsFirst: false, batch: b)
            return dx
        }
        // Each product by the blocked kernels where they apply, else through the patch matrix.
        let blockedWeights = blocked(reduced: inChannels, vectorChannels: outChannels)
        let blockedInput = dx != nil && blocked(reduced: outChannels, vectorChannels: inChannels, scattered: true)
        let needsPatches = !blockedWeights, needsPatchGradient = dx != nil && !blockedInput
        if blockedInput { reorderWeightTapsFirst(swap: false) }  // [k, k, O, C]
        if needsPatchGradient { reorderWeight() }
        if blockedWeights { arrangedGradient.fill(0) }
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let c: Tensor? = needsPatches ? Tensor.reusing(cols, rows: n * p, columns: kk) : nil
        cols = c ?? cols
        let dc: Tensor? = needsPatchGradient ? Tensor.reusing(colsGradient, rows: n * p, columns: kk) : nil
        colsGradient = dc ?? colsGradient
        let masked = beginBiasGradient(dy, rows: n * p)
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            let xs = x.data + start * h * w * inChannels
            let g = chunkGradient(dy, output: y, masked: masked, firstRow: start * p, rows: m)
            if blockedWeights {
                vae_conv_weight_gradient(xs, inChannels, g, outChannels, count, ho, wo, h, w, k, s, pad, 1, arrangedGradient.data)
            } else if let c {
                // The chunk's patches again (recomputing is cheaper than keeping the whole batch's).
                vae_im2col_nhwc(xs, count, inChannels, h, w, ho, wo, k, s, pad, c.data)
                BLAS.sgemm(transposeA: true, transposeB: false, m: outChannels, n: kk, k: m, alpha: 1,
                           a: g, lda: outChannels, b: c.data, ldb: kk, beta: start == 0 ? 0 : 1, c: arrangedGradient.data, ldc: kk, precision: precision)
            }
            guard let dx else { continue }
            let dxs = dx.data + start * h * w * inChannels
            if blockedInput {
                vae_conv_scatter(g, count, outChannels, ho, wo, h, w, k, s, pad, arrangedWeight.data, inChannels, nil, 0, dxs)
            } else if let dc {
                BLAS.sgemm(transposeA: false, transposeB: false, m: m, n: kk, k: outChannels, alpha: 1,
                           a: g, lda: outChannels, b: arrangedWeight.data, ldb: kk, beta: 0, c: dc.data, ldc: kk, precision: precision)
                vae_col2im_nhwc(dc.data, count, inChannels, h, w, ho, wo, k, s, pad, nil, 0, dxs)
            }
        }
        storeWeightGradient(tapsFirst: blockedWeights, swap: true, batch: b)
        return dx
    }
}

/// Images per chunk so that a chunk's patches (`columnsPerImage` values each) take about 512 KB,
/// half of a core's L2 (measured: 4.9 s per epoch of the conv reference model against 5.1 s
/// with 1 MB and 256 KB chunks).
@inline(__always)
func imagesPerChunk(columnsPerImage: Int, batch: Int) -> Int {
    max(1, min(batch, (1 << 17) / max(columnsPerImage, 1)))
}

/// 2-D transposed convolution over channels-last input [B, H, W, C] with weight [C, O, k, k]
/// and bias [O] (PyTorch's `nn.ConvTranspose2d` layout): the adjoint of a convolution, each
/// input value spreading W[c, o, ·, ·] over the output window at (i·s − p, j·s − p); output
/// size (H − 1)s − 2p + k.
///
/// Each product goes through the register-blocked AVX-512 kernels where the channels allow
/// (`vae_conv_scatter` forward, `vae_conv_weight_gradient` vectorising ∂y's channels or x's,
/// `vae_conv_gather` for ∂x), else it is lowered to GEMMs over a few images at a time: with W'
/// the weight reordered to [C, (u, v, o)], each input position's contributions are a row of
/// cols = X · W' [n·H·W, k·k·O], and y = b + col2im(cols). Backward: ∂cols = im2col(∂y),
/// ∂W' = Σ_chunks Xᵀ · ∂cols, ∂x = ∂cols · W'ᵀ.
public final class ConvTranspose2D: ConvolutionLayer, Layer {
    private var input: Tensor?
    private var output: Tensor?
    private var cols: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.ConvTranspose2d`: uniform in ±1/√(O·k·k).
    public init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, rng: inout RandomGenerator) {
        let k = geometry.kernel
        super.init(inChannels, outChannels, geometry: geometry, weightShape: [inChannels, outChannels, k, k], fanIn: outChannels * k * k, rng: &rng)
    }

    required init(sharingParametersOf other: ConvolutionLayer) { super.init(sharingParametersOf: other) }

    public func replica() -> Layer { ConvTranspose2D(sharingParametersOf: self) }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[3] == inChannels, "ConvTranspose2D(\(inChannels)→\(outChannels)) takes [B, H, W, \(inChannels)] input, got \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (ho, wo) = (geometry.transposedOutput(h), geometry.transposedOutput(w))
        let (p, kk, k) = (h * w, outChannels * geometry.kernel * geometry.kernel, geometry.kernel)
        input = x
        let out = Tensor.reusing(output, shape: [b, ho, wo, outChannels])
        output = out
        if blocked(reduced: inChannels, vectorChannels: outChannels, scattered: true) {
            reorderWeightTapsFirst(swap: false)  // [k, k, C, O]
            vae_conv_scatter(x.data, b, inChannels, h, w, ho, wo, k, geometry.stride, geometry.padding,
                             arrangedWeight.data, outChannels, bias.value.data, fusesReLU ? 1 : 0, out.data)
            return out
        }
        reorderWeight()
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let c = Tensor.reusing(cols, rows: n * p, columns: kk)
        cols = c
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            BLAS.sgemm(transposeA: false, transposeB: false, m: m, n: kk, k: inChannels, alpha: 1,
                       a: x.data + start * p * inChannels, lda: inChannels, b: arrangedWeight.data, ldb: kk, beta: 0, c: c.data, ldc: kk, precision: precision)
            vae_col2im_nhwc(c.data, count, outChannels, ho, wo, h, w, k, geometry.stride, geometry.padding, bias.value.data, fusesReLU ? 1 : 0, out.data + start * ho * wo * outChannels)
        }
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input, let y = output else { preconditionFailure("ConvTranspose2D.backward before forward") }
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (ho, wo) = (dy.shape[1], dy.shape[2])
        let (p, kk, k) = (h * w, outChannels * geometry.kernel * geometry.kernel, geometry.kernel)
        let (s, pad) = (geometry.stride, geometry.padding)
        let dx: Tensor? = computesInputGradient ? Tensor.reusing(inputGradient, shape: x.shape) : nil
        inputGradient = dx ?? inputGradient
        // Each product by the blocked kernels where they apply, else through the patch matrix
        // of ∂L/∂y. The weight gradient vectorises ∂L/∂y's channels (broadcasting x's), or
        // x's (broadcasting ∂L/∂y's, gathered: a one-channel decoder output).
        let weightsByOutput = blocked(reduced: inChannels, vectorChannels: outChannels, scattered: true)
        let weightsByInput = !weightsByOutput && blocked(reduced: outChannels, vectorChannels: inChannels)
        let blockedWeights = weightsByOutput || weightsByInput
        let blockedInput = dx != nil && blocked(reduced: outChannels, vectorChannels: inChannels)
        let needsPatches = !blockedWeights || (dx != nil && !blockedInput)
        if blockedInput { reorderWeightTapsFirst(swap: true) }  // [k, k, O, C]
        if dx != nil && !blockedInput { reorderWeight() }
        if blockedWeights { arrangedGradient.fill(0) }
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let dc: Tensor? = needsPatches ? Tensor.reusing(cols, rows: n * p, columns: kk) : nil
        cols = dc ?? cols
        let masked = beginBiasGradient(dy, rows: n * ho * wo)
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            let xs = x.data + start * p * inChannels
            let g = chunkGradient(dy, output: y, masked: masked, firstRow: start * ho * wo, rows: count * ho * wo)
            if let dc { vae_im2col_nhwc(g, count, outChannels, ho, wo, h, w, k, s, pad, dc.data) }
            if weightsByOutput {
                vae_conv_weight_gradient(xs, inChannels, g, outChannels, count, h, w, ho, wo, k, s, pad, 0, arrangedGradient.data)
            } else if weightsByInput {
                vae_conv_weight_gradient(g, outChannels, xs, inChannels, count, h, w, ho, wo, k, s, pad, 1, arrangedGradient.data)
            } else if let dc {
                BLAS.sgemm(transposeA: true, transposeB: false, m: inChannels, n: kk, k: m, alpha: 1,
                           a: xs, lda: inChannels, b: dc.data, ldb: kk, beta: start == 0 ? 0 : 1, c: arrangedGradient.data, ldc: kk, precision: precision)
            }
            guard let dx else { continue }
            if blockedInput {
                vae_conv_gather(g, count, outChannels, ho, wo, h, w, k, s, pad, arrangedWeight.data, inChannels, nil, 0, dx.data + start * p * inChannels)
            } else if let dc {
                BLAS.sgemm(transposeA: false, transposeB: true, m: m, n: inChannels, k: kk, alpha: 1,
                           a: dc.data, lda: kk, b: arrangedWeight.data, ldb: kk, beta: 0, c: dx.data + start * p * inChannels, ldc: inChannels, precision: precision)
            }
        }
        storeWeightGradient(tapsFirst: blockedWeights, swap: weightsByInput, batch: b)  // [k, k, C, O] or [k, k, O, C]
        return dx
    }
}
