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

/// NCHW [B, C, P] ⇄ channel-major [C, B·P] (P positions per image): block copies of P values.
@inline(__always)
func toChannelMajor(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, channels: Int, positions: Int) {
    for b in 0..<batch {
        for c in 0..<channels {
            (dst + c * batch * positions + b * positions).update(from: src + (b * channels + c) * positions, count: positions)
        }
    }
}

@inline(__always)
func fromChannelMajor(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, batch: Int, channels: Int, positions: Int) {
    for b in 0..<batch {
        for c in 0..<channels {
            (dst + (b * channels + c) * positions).update(from: src + c * batch * positions + b * positions, count: positions)
        }
    }
}

/// What the two convolutions share: channels, geometry, weight and bias, PyTorch's default
/// initialisation (uniform in ±1/√fan-in), and replicas that share the parameter values.
public class ConvolutionLayer {
    public let inChannels: Int
    public let outChannels: Int
    public let geometry: ConvolutionGeometry
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true

    init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, weightShape: [Int], fanIn: Int, rng: inout RandomGenerator) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.geometry = geometry
        weight = Parameter(Tensor(shape: weightShape))
        bias = Parameter(Tensor(shape: [outChannels]))
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
        computesInputGradient = other.computesInputGradient
    }

    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }
}

/// 2-D convolution over NCHW input, weight [O, C, k, k] and bias [O] (PyTorch's `nn.Conv2d`):
///
///     y[b, o, i, j] = bias[o] + Σ_{c, u, v} W[o, c, u, v] · x[b, c, i·s − p + u, j·s − p + v]
///
/// Lowered to GEMMs over a few images at a time (their columns kept in cache):
/// cols = im2col(x) is [C·k·k, n·H'·W'], Y = W · cols. Backward: ∂W = Σ_chunks ∂Y · colsᵀ,
/// ∂b = Σ ∂Y, ∂x = col2im(Wᵀ · ∂Y).
public final class Conv2D: ConvolutionLayer, Layer {
    private var input: Tensor?
    private var cols: Tensor?
    private var channelMajor: Tensor?
    private var output: Tensor?
    private var outputGradientCM: Tensor?
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
        precondition(x.shape.count == 4 && x.shape[1] == inChannels, "Conv2D(\(inChannels)→\(outChannels)) got input \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (geometry.convolutionOutput(h), geometry.convolutionOutput(w))
        let (p, kk) = (ho * wo, inChannels * geometry.kernel * geometry.kernel)
        input = x
        let out = Tensor.reusing(output, shape: [b, outChannels, ho, wo])
        output = out
        // A few images at a time, so that their columns stay in cache for the GEMM.
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let c = Tensor.reusing(cols, rows: kk, columns: n * p)
        let y = Tensor.reusing(channelMajor, rows: outChannels, columns: n * p)
        cols = c
        channelMajor = y
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            vae_im2col(x.data + start * inChannels * h * w, count, inChannels, h, w, ho, wo, geometry.kernel, geometry.stride, geometry.padding, c.data)
            BLAS.sgemm(transposeA: false, transposeB: false, m: outChannels, n: m, k: kk, alpha: 1,
                       a: weight.value.data, lda: kk, b: c.data, ldb: m, beta: 0, c: y.data, ldc: m)
            fromChannelMajor(y.data, out.data + start * outChannels * p, batch: count, channels: outChannels, positions: p)
        }
        addChannelBias(out, bias.value)
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input else { preconditionFailure("Conv2D.backward before forward") }
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (dy.shape[2], dy.shape[3])
        let (p, kk) = (ho * wo, inChannels * geometry.kernel * geometry.kernel)
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let c = Tensor.reusing(cols, rows: kk, columns: n * p)
        let g = Tensor.reusing(outputGradientCM, rows: outChannels, columns: n * p)
        cols = c
        outputGradientCM = g
        let dx: Tensor? = computesInputGradient ? Tensor.reusing(inputGradient, shape: x.shape) : nil
        inputGradient = dx ?? inputGradient
        let dc: Tensor? = computesInputGradient ? Tensor.reusing(colsGradient, rows: kk, columns: n * p) : nil
        colsGradient = dc ?? colsGradient
        dx?.fill(0)
        channelSums(dy, into: bias.gradient.data)
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            // The chunk's columns again (recomputing is cheaper than keeping the whole batch's).
            vae_im2col(x.data + start * inChannels * h * w, count, inChannels, h, w, ho, wo, geometry.kernel, geometry.stride, geometry.padding, c.data)
            toChannelMajor(dy.data + start * outChannels * p, g.data, batch: count, channels: outChannels, positions: p)
            BLAS.sgemm(transposeA: false, transposeB: true, m: outChannels, n: kk, k: m, alpha: 1,
                       a: g.data, lda: m, b: c.data, ldb: m, beta: start == 0 ? 0 : 1, c: weight.gradient.data, ldc: kk)
            if let dx, let dc {
                BLAS.sgemm(transposeA: true, transposeB: false, m: kk, n: m, k: outChannels, alpha: 1,
                           a: weight.value.data, lda: kk, b: g.data, ldb: m, beta: 0, c: dc.data, ldc: m)
                vae_col2im(dc.data, count, inChannels, h, w, ho, wo, geometry.kernel, geometry.stride, geometry.padding, dx.data + start * inChannels * h * w)
            }
        }
        return dx
    }
}

/// Images per chunk so that a chunk's columns (`columnsPerImage` values each) take about 1 MB.
@inline(__always)
func imagesPerChunk(columnsPerImage: Int, batch: Int) -> Int {
    max(1, min(batch, (1 << 18) / max(columnsPerImage, 1)))
}

/// 2-D transposed convolution over NCHW input, weight [C_in, C_out, k, k] and bias [C_out]
/// (PyTorch's `nn.ConvTranspose2d`): the adjoint of a convolution, each input value spreading
/// W[c, o, ·, ·] over the output window at (i·s − p, j·s − p); output size (H − 1)s − 2p + k.
///
/// Lowered to GEMMs over a few images at a time: cols = Wᵀ · X (X channel-major
/// [C_in, n·H·W]), y = col2im(cols) + b. Backward: ∂cols = im2col(∂y), ∂W = Σ_chunks X · ∂colsᵀ,
/// ∂x = W · ∂cols.
public final class ConvTranspose2D: ConvolutionLayer, Layer {
    private var input: Tensor?
    private var inputCM: Tensor?
    private var cols: Tensor?
    private var output: Tensor?
    private var colsGradient: Tensor?
    private var inputGradientCM: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.ConvTranspose2d`: uniform in ±1/√(C_out·k·k).
    public init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, rng: inout RandomGenerator) {
        let k = geometry.kernel
        super.init(inChannels, outChannels, geometry: geometry, weightShape: [inChannels, outChannels, k, k], fanIn: outChannels * k * k, rng: &rng)
    }

    required init(sharingParametersOf other: ConvolutionLayer) { super.init(sharingParametersOf: other) }

    public func replica() -> Layer { ConvTranspose2D(sharingParametersOf: self) }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[1] == inChannels, "ConvTranspose2D(\(inChannels)→\(outChannels)) got input \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (geometry.transposedOutput(h), geometry.transposedOutput(w))
        let (p, kk) = (h * w, outChannels * geometry.kernel * geometry.kernel)
        input = x
        let out = Tensor.reusing(output, shape: [b, outChannels, ho, wo])
        output = out
        out.fill(0)
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let xc = Tensor.reusing(inputCM, rows: inChannels, columns: n * p)
        let c = Tensor.reusing(cols, rows: kk, columns: n * p)
        inputCM = xc
        cols = c
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            toChannelMajor(x.data + start * inChannels * p, xc.data, batch: count, channels: inChannels, positions: p)
            BLAS.sgemm(transposeA: true, transposeB: false, m: kk, n: m, k: inChannels, alpha: 1,
                       a: weight.value.data, lda: kk, b: xc.data, ldb: m, beta: 0, c: c.data, ldc: m)
            vae_col2im(c.data, count, outChannels, ho, wo, h, w, geometry.kernel, geometry.stride, geometry.padding, out.data + start * outChannels * ho * wo)
        }
        addChannelBias(out, bias.value)
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input else { preconditionFailure("ConvTranspose2D.backward before forward") }
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (dy.shape[2], dy.shape[3])
        let (p, kk) = (h * w, outChannels * geometry.kernel * geometry.kernel)
        let n = imagesPerChunk(columnsPerImage: kk * p, batch: b)
        let xc = Tensor.reusing(inputCM, rows: inChannels, columns: n * p)
        let dc = Tensor.reusing(colsGradient, rows: kk, columns: n * p)
        inputCM = xc
        colsGradient = dc
        let dx: Tensor? = computesInputGradient ? Tensor.reusing(inputGradient, shape: x.shape) : nil
        inputGradient = dx ?? inputGradient
        let gx: Tensor? = computesInputGradient ? Tensor.reusing(inputGradientCM, rows: inChannels, columns: n * p) : nil
        inputGradientCM = gx ?? inputGradientCM
        channelSums(dy, into: bias.gradient.data)
        for start in stride(from: 0, to: b, by: n) {
            let count = min(n, b - start), m = count * p
            vae_im2col(dy.data + start * outChannels * ho * wo, count, outChannels, ho, wo, h, w, geometry.kernel, geometry.stride, geometry.padding, dc.data)
            toChannelMajor(x.data + start * inChannels * p, xc.data, batch: count, channels: inChannels, positions: p)
            BLAS.sgemm(transposeA: false, transposeB: true, m: inChannels, n: kk, k: m, alpha: 1,
                       a: xc.data, lda: m, b: dc.data, ldb: m, beta: start == 0 ? 0 : 1, c: weight.gradient.data, ldc: kk)
            if let dx, let gx {
                BLAS.sgemm(transposeA: false, transposeB: false, m: inChannels, n: m, k: kk, alpha: 1,
                           a: weight.value.data, lda: kk, b: dc.data, ldb: m, beta: 0, c: gx.data, ldc: m)
                fromChannelMajor(gx.data, dx.data + start * inChannels * p, batch: count, channels: inChannels, positions: p)
            }
        }
        return dx
    }
}

/// y[b, c, ·] += bias[c] for NCHW `y`.
func addChannelBias(_ y: Tensor, _ bias: Tensor) {
    let (b, c) = (y.shape[0], y.shape[1])
    let p = y.count / max(b * c, 1)
    for i in 0..<b {
        for j in 0..<c {
            let row = y.data + (i * c + j) * p
            let v = bias[j]
            for k in 0..<p { row[k] += v }
        }
    }
}

/// out[c] = Σ_{b, positions} y[b, c, ·] for NCHW `y`.
func channelSums(_ y: Tensor, into out: UnsafeMutablePointer<Float>) {
    let (b, c) = (y.shape[0], y.shape[1])
    let p = y.count / max(b * c, 1)
    out.initialize(repeating: 0, count: c)
    for i in 0..<b {
        for j in 0..<c {
            let row = y.data + (i * c + j) * p
            var s: Float = 0
            for k in 0..<p { s += row[k] }
            out[j] += s
        }
    }
}
