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

/// 2-D convolution over NCHW input, weight [O, C, k, k] and bias [O] (PyTorch's `nn.Conv2d`):
///
///     y[b, o, i, j] = bias[o] + Σ_{c, u, v} W[o, c, u, v] · x[b, c, i·s − p + u, j·s − p + v]
///
/// Lowered to one GEMM per batch: cols = im2col(x) is [C·k·k, B·H'·W'], Y = W · cols.
/// Backward: ∂W = ∂Y · colsᵀ, ∂b = Σ ∂Y, ∂x = col2im(Wᵀ · ∂Y).
public final class Conv2D: Layer {
    public let inChannels: Int
    public let outChannels: Int
    public let geometry: ConvolutionGeometry
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true

    private var input: Tensor?
    private var cols: Tensor?
    private var channelMajor: Tensor?
    private var output: Tensor?
    private var outputGradientCM: Tensor?
    private var colsGradient: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.Conv2d`: W and b uniform in ±1/√(C·k·k).
    public init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, rng: inout RandomGenerator) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.geometry = geometry
        let k = geometry.kernel
        weight = Parameter(Tensor(shape: [outChannels, inChannels, k, k]))
        bias = Parameter(Tensor(shape: [outChannels]))
        let bound = 1 / Float(inChannels * k * k).squareRoot()
        rng.fillUniform(weight.value, low: -bound, high: bound)
        rng.fillUniform(bias.value, low: -bound, high: bound)
    }

    private init(sharingParametersOf other: Conv2D) {
        inChannels = other.inChannels
        outChannels = other.outChannels
        geometry = other.geometry
        weight = Parameter(sharingValueOf: other.weight)
        bias = Parameter(sharingValueOf: other.bias)
        computesInputGradient = other.computesInputGradient
    }

    public func replica() -> Layer { Conv2D(sharingParametersOf: self) }

    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[1] == inChannels, "Conv2D(\(inChannels)→\(outChannels)) got input \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (geometry.convolutionOutput(h), geometry.convolutionOutput(w))
        let (m, kk) = (b * ho * wo, inChannels * geometry.kernel * geometry.kernel)
        input = x
        let c = Tensor.reusing(cols, rows: kk, columns: m)
        cols = c
        vae_im2col(x.data, b, inChannels, h, w, ho, wo, geometry.kernel, geometry.stride, geometry.padding, c.data)
        let y = Tensor.reusing(channelMajor, rows: outChannels, columns: m)
        channelMajor = y
        BLAS.sgemm(transposeA: false, transposeB: false, m: outChannels, n: m, k: kk, alpha: 1,
                   a: weight.value.data, lda: kk, b: c.data, ldb: m, beta: 0, c: y.data, ldc: m)
        let out = Tensor.reusing(output, shape: [b, outChannels, ho, wo])
        output = out
        fromChannelMajor(y.data, out.data, batch: b, channels: outChannels, positions: ho * wo)
        addChannelBias(out, bias.value)
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let x = input, let c = cols else { preconditionFailure("Conv2D.backward before forward") }
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (dy.shape[2], dy.shape[3])
        let (m, kk) = (b * ho * wo, inChannels * geometry.kernel * geometry.kernel)
        let g = Tensor.reusing(outputGradientCM, rows: outChannels, columns: m)
        outputGradientCM = g
        toChannelMajor(dy.data, g.data, batch: b, channels: outChannels, positions: ho * wo)
        BLAS.sgemm(transposeA: false, transposeB: true, m: outChannels, n: kk, k: m, alpha: 1,
                   a: g.data, lda: m, b: c.data, ldb: m, beta: 0, c: weight.gradient.data, ldc: kk)
        g.sumColumnsPerRow(into: bias.gradient.data)
        guard computesInputGradient else { return nil }
        let dc = Tensor.reusing(colsGradient, rows: kk, columns: m)
        colsGradient = dc
        BLAS.sgemm(transposeA: true, transposeB: false, m: kk, n: m, k: outChannels, alpha: 1,
                   a: weight.value.data, lda: kk, b: g.data, ldb: m, beta: 0, c: dc.data, ldc: m)
        let dx = Tensor.reusing(inputGradient, shape: x.shape)
        inputGradient = dx
        dx.fill(0)
        vae_col2im(dc.data, b, inChannels, h, w, ho, wo, geometry.kernel, geometry.stride, geometry.padding, dx.data)
        return dx
    }
}

/// 2-D transposed convolution over NCHW input, weight [C_in, C_out, k, k] and bias [C_out]
/// (PyTorch's `nn.ConvTranspose2d`): the adjoint of a convolution, each input value spreading
/// W[c, o, ·, ·] over the output window at (i·s − p, j·s − p); output size (H − 1)s − 2p + k.
///
/// Lowered to one GEMM: cols = Wᵀ · X (X channel-major [C_in, B·H·W]), y = col2im(cols) + b.
/// Backward: ∂cols = im2col(∂y), ∂W = X · ∂colsᵀ, ∂x = W · ∂cols.
public final class ConvTranspose2D: Layer {
    public let inChannels: Int
    public let outChannels: Int
    public let geometry: ConvolutionGeometry
    public let weight: Parameter
    public let bias: Parameter
    public var computesInputGradient = true

    private var inputCM: Tensor?
    private var inputShape: [Int] = []
    private var cols: Tensor?
    private var output: Tensor?
    private var colsGradient: Tensor?
    private var inputGradientCM: Tensor?
    private var inputGradient: Tensor?

    /// Initialised as PyTorch's `nn.ConvTranspose2d`: uniform in ±1/√(C_out·k·k).
    public init(_ inChannels: Int, _ outChannels: Int, geometry: ConvolutionGeometry, rng: inout RandomGenerator) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.geometry = geometry
        let k = geometry.kernel
        weight = Parameter(Tensor(shape: [inChannels, outChannels, k, k]))
        bias = Parameter(Tensor(shape: [outChannels]))
        let bound = 1 / Float(outChannels * k * k).squareRoot()
        rng.fillUniform(weight.value, low: -bound, high: bound)
        rng.fillUniform(bias.value, low: -bound, high: bound)
    }

    private init(sharingParametersOf other: ConvTranspose2D) {
        inChannels = other.inChannels
        outChannels = other.outChannels
        geometry = other.geometry
        weight = Parameter(sharingValueOf: other.weight)
        bias = Parameter(sharingValueOf: other.bias)
        computesInputGradient = other.computesInputGradient
    }

    public func replica() -> Layer { ConvTranspose2D(sharingParametersOf: self) }

    public var namedParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }

    public func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && x.shape[1] == inChannels, "ConvTranspose2D(\(inChannels)→\(outChannels)) got input \(x.shape)")
        let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let (ho, wo) = (geometry.transposedOutput(h), geometry.transposedOutput(w))
        let (m, kk) = (b * h * w, outChannels * geometry.kernel * geometry.kernel)
        inputShape = x.shape
        let xc = Tensor.reusing(inputCM, rows: inChannels, columns: m)
        inputCM = xc
        toChannelMajor(x.data, xc.data, batch: b, channels: inChannels, positions: h * w)
        let c = Tensor.reusing(cols, rows: kk, columns: m)
        cols = c
        BLAS.sgemm(transposeA: true, transposeB: false, m: kk, n: m, k: inChannels, alpha: 1,
                   a: weight.value.data, lda: kk, b: xc.data, ldb: m, beta: 0, c: c.data, ldc: m)
        let out = Tensor.reusing(output, shape: [b, outChannels, ho, wo])
        output = out
        out.fill(0)
        vae_col2im(c.data, b, outChannels, ho, wo, h, w, geometry.kernel, geometry.stride, geometry.padding, out.data)
        addChannelBias(out, bias.value)
        return out
    }

    public func backward(_ dy: Tensor) -> Tensor? {
        guard let xc = inputCM else { preconditionFailure("ConvTranspose2D.backward before forward") }
        let (b, h, w) = (inputShape[0], inputShape[2], inputShape[3])
        let (ho, wo) = (dy.shape[2], dy.shape[3])
        let (m, kk) = (b * h * w, outChannels * geometry.kernel * geometry.kernel)
        let dc = Tensor.reusing(colsGradient, rows: kk, columns: m)
        colsGradient = dc
        vae_im2col(dy.data, b, outChannels, ho, wo, h, w, geometry.kernel, geometry.stride, geometry.padding, dc.data)
        BLAS.sgemm(transposeA: false, transposeB: true, m: inChannels, n: kk, k: m, alpha: 1,
                   a: xc.data, lda: m, b: dc.data, ldb: m, beta: 0, c: weight.gradient.data, ldc: kk)
        channelSums(dy, into: bias.gradient.data)
        guard computesInputGradient else { return nil }
        let gx = Tensor.reusing(inputGradientCM, rows: inChannels, columns: m)
        inputGradientCM = gx
        BLAS.sgemm(transposeA: false, transposeB: false, m: inChannels, n: m, k: kk, alpha: 1,
                   a: weight.value.data, lda: kk, b: dc.data, ldb: m, beta: 0, c: gx.data, ldc: m)
        let dx = Tensor.reusing(inputGradient, shape: inputShape)
        inputGradient = dx
        fromChannelMajor(gx.data, dx.data, batch: b, channels: inChannels, positions: h * w)
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
