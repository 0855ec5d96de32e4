#if canImport(Glibc)
import Glibc
#endif
import CKernels
import NN
import Tensor

/// The decoder's distribution p(x|z), parameterised by the decoder's output.
///
/// All log-likelihoods are in nats, summed over the data dimensions of each example. A
/// likelihood may own parameters (a learned σ); they get gradients in the same call.
public protocol Likelihood {
    /// Decoder outputs per data value: 1 (logits or means) or 2 (means and log σ).
    var outputsPerValue: Int { get }
    /// Trainable parameters, named relative to the likelihood (`log_sigma`).
    var namedParameters: [(name: String, parameter: Parameter)] { get }
    /// A copy sharing parameter values but owning its gradients (for another core's slice).
    func replica() -> Likelihood

    /// Writes −log p(x_b|z_b) for each example into `perExample` and returns their sum.
    /// When `gradient` is given, **sets** it to `scale` · `rowScales[b]` · ∂(−log p(x|z))/∂output
    /// (`rowScales` nil meaning 1), in the same pass. When `output` has K times as many rows as
    /// `x`, each row of `x` is compared with K consecutive rows of `output` (K samples of one image).
    func negativeLogLikelihood(
        _ x: Tensor, output: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double

    /// The distribution's mean E[x|z] (what a picture of the decoder shows), written into `mean`.
    func mean(output: Tensor, into mean: Tensor)
}

extension Likelihood {
    public var outputsPerValue: Int { 1 }
    public var namedParameters: [(name: String, parameter: Parameter)] { [] }

    public func negativeLogLikelihood(
        _ x: Tensor, output: Tensor, perExample: UnsafeMutablePointer<Double>?, gradient: Tensor?, scale: Float
    ) -> Double {
        negativeLogLikelihood(x, output: output, perExample: perExample, gradient: gradient, scale: scale, rowScales: nil)
    }
}

/// The stride between the rows of `x` used for consecutive rows of `output`, in elements:
/// output row b uses x row b / (output.rows / x.rows).
@inline(__always)
func repeatFactor(_ x: Tensor, _ output: Tensor, _ n: Int) -> Int {
    precondition(x.rowSize == n && x.rows > 0 && output.rows % x.rows == 0, "data \(x.shape) vs decoder output \(output.shape)")
    return output.rows / x.rows
}

/// Σ_b value(b) over `rows` rows of `work` values each, each value also written to
/// `perExample[b]` when given. A batch worker with several GEMM threads shares the rows out among
/// them (`BLAS.splitOverGEMMThreads`), each row's value kept, and the sum is then taken in row
/// order: the same figure, bit for bit, on any number of threads. `value` must touch only row b's
/// outputs.
func sumOverRows(_ rows: Int, work: Int, perExample: UnsafeMutablePointer<Double>?, _ value: (Int) -> Double) -> Double {
    if BLAS.threadsPerCaller == 1 || rows < 2 {
        var total = 0.0
        for b in 0..<rows {
            let v = value(b)
            perExample?[b] = v
            total += v
        }
        return total
    }
    func shared(_ values: UnsafeMutablePointer<Double>) -> Double {
        BLAS.splitOverGEMMThreads(rows, work: work) { part in
            for b in part { values[b] = value(b) }
        }
        var total = 0.0
        for b in 0..<rows { total += values[b] }
        return total
    }
    // Without `perExample`, the values in scratch on the stack where it fits (every step's call).
    return perExample.map(shared) ?? withUnsafeTemporaryAllocation(of: Double.self, capacity: rows) { shared($0.baseAddress!) }
}

/// Bernoulli likelihood on logits ℓ (the "log loss"):
///
///     log p(x|z) = Σ_i [x_i ℓ_i − softplus(ℓ_i)],   ∂(−log p)/∂ℓ_i = sigmoid(ℓ_i) − x_i,
///
/// in the stable form softplus(ℓ) = max(ℓ, 0) + log1p(e^−|ℓ|). Valid for binary x and, as a
/// cross-entropy, for grey values in [0, 1] (then it is not a normalised density over [0, 1]).
public struct BernoulliLikelihood: Likelihood {
    public init() {}
    public func replica() -> Likelihood { self }

    public func negativeLogLikelihood(
        _ x: Tensor, output logits: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let n = logits.rowSize
        let k = repeatFactor(x, logits, n)
        return sumOverRows(logits.rows, work: n, perExample: perExample) { b in
            let rowScale = scale * (rowScales?[b] ?? 1)
            return Double(vae_bernoulli_nll(x.data + (b / k) * n, logits.data + b * n, gradient.map { $0.data + b * n }, rowScale, n))
        }
    }

    public func mean(output logits: Tensor, into mean: Tensor) {
        precondition(mean.count == logits.count)
        vae_sigmoid(logits.data, mean.data, logits.count)
    }
}

/// Gaussian likelihood with a fixed standard deviation σ (the "regression loss"):
///
///     log p(x|z) = −½ Σ_i [(x_i − m_i)²/σ² + log 2πσ²],   ∂(−log p)/∂m_i = (m_i − x_i)/σ².
public struct GaussianLikelihood: Likelihood {
    public let sigma: Float

    public init(sigma: Float) {
        precondition(sigma > 0, "Gaussian σ must be positive")
        self.sigma = sigma
    }

    public func replica() -> Likelihood { self }

    public func negativeLogLikelihood(
        _ x: Tensor, output means: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let n = means.rowSize
        let k = repeatFactor(x, means, n)
        let inverseVariance = 1 / (sigma * sigma)
        let logNormaliser = 0.5 * Double(n) * log(2 * Double.pi * Double(sigma) * Double(sigma))
        return sumOverRows(means.rows, work: n, perExample: perExample) { b in
            let rowScale = scale * (rowScales?[b] ?? 1) * inverseVariance
            let squares = vae_squared_error(x.data + (b / k) * n, means.data + b * n, gradient.map { $0.data + b * n }, rowScale, n)
            return 0.5 * Double(squares * inverseVariance) + logNormaliser
        }
    }

    public func mean(output means: Tensor, into mean: Tensor) {
        mean.copy(from: means)
    }
}

/// Gaussian likelihood with one learned standard deviation σ = e^s shared by all values:
///
///     −log p(x|z) = Σ_i [½ (x_i − m_i)² e^{−2s} + s + ½ log 2π],
///     ∂/∂m_i = (m_i − x_i) e^{−2s},   ∂/∂s = Σ_i [1 − (x_i − m_i)² e^{−2s}].
///
/// The model sets its own noise level; s starts at log 0.1.
public final class GaussianSharedVarianceLikelihood: Likelihood {
    public let logSigma: Parameter

    public init(initialSigma: Float = 0.1) {
        logSigma = Parameter(Tensor(shape: [1], values: [log(initialSigma)]))
    }

    private init(sharing other: GaussianSharedVarianceLikelihood) {
        logSigma = Parameter(sharingValueOf: other.logSigma)
    }

    public func replica() -> Likelihood { GaussianSharedVarianceLikelihood(sharing: self) }

    public var namedParameters: [(name: String, parameter: Parameter)] { [("log_sigma", logSigma)] }

    /// Per-example values, kept for the log σ gradient (one buffer per replica).
    private var values: [Double] = []

    /// The fixed-σ Gaussian at σ = e^s, plus ∂/∂s from its per-example values v_b:
    /// ∂/∂s = Σ_b c_b (D − 2(v_b − D(s + ½ log 2π))), D values per example, c_b the row scale.
    public func negativeLogLikelihood(
        _ x: Tensor, output means: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let s = Double(logSigma.value[0])
        if values.count < means.rows { values = [Double](repeating: 0, count: means.rows) }
        let total = values.withUnsafeMutableBufferPointer {
            GaussianLikelihood(sigma: Float(exp(s))).negativeLogLikelihood(
                x, output: means, perExample: $0.baseAddress, gradient: gradient, scale: scale, rowScales: rowScales)
        }
        let n = Double(means.rowSize)
        let constant = n * (s + 0.5 * log(2 * Double.pi))
        var sGradient = 0.0
        for b in 0..<means.rows {
            perExample?[b] = values[b]
            sGradient += Double(scale * (rowScales?[b] ?? 1)) * (n - 2 * (values[b] - constant))
        }
        if gradient != nil { logSigma.gradient[0] = Float(sGradient) }
        return total
    }

    public func mean(output means: Tensor, into mean: Tensor) {
        mean.copy(from: means)
    }
}

/// Gaussian likelihood with a standard deviation per value from the decoder, whose output
/// holds [m₁ … m_D | log σ₁ … log σ_D] per row:
///
///     −log p(x|z) = Σ_i [½ (x_i − m_i)² e^{−2t_i} + t_i + ½ log 2π],   t_i = max(log σ_i, log σ_min),
///
/// σ_min = `minimumSigma` keeps the density finite on values the data never vary (a constant
/// background pixel would otherwise drive σ → 0 and log p → ∞).
public struct GaussianPixelVarianceLikelihood: Likelihood {
    public let minimumSigma: Float

    public init(minimumSigma: Float = 0.01) {
        precondition(minimumSigma > 0, "minimum σ must be positive")
        self.minimumSigma = minimumSigma
    }

    public var outputsPerValue: Int { 2 }
    public func replica() -> Likelihood { self }

    public func negativeLogLikelihood(
        _ x: Tensor, output: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let n = output.rowSize / 2
        precondition(x.rowSize == n && x.rows > 0 && output.rows % x.rows == 0, "data \(x.shape) vs decoder output \(output.shape)")
        let k = output.rows / x.rows
        let constant = 0.5 * Double(n) * log(2 * Double.pi)
        let floor = log(minimumSigma)
        return sumOverRows(output.rows, work: 2 * n, perExample: perExample) { b in
            let row = output.data + b * 2 * n
            let g = gradient.map { $0.data + b * 2 * n }
            return Double(vae_gaussian_pixel_nll(x.data + (b / k) * n, row, row + n, g, g.map { $0 + n }, scale * (rowScales?[b] ?? 1), floor, n)) + constant
        }
    }

    public func mean(output: Tensor, into mean: Tensor) {
        let n = output.rowSize / 2
        precondition(mean.rowSize == n && mean.rows == output.rows, "mean \(mean.shape) for output \(output.shape)")
        for b in 0..<output.rows { (mean.data + b * n).update(from: output.data + b * 2 * n, count: n) }
    }
}
