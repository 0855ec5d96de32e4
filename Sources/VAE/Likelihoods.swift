#if canImport(Glibc)
import Glibc
#endif
import CKernels
import NN
import Tensor

/// The decoder's distribution p(x|z), parameterised by the decoder's output.
///
/// All log-likelihoods are in nats, summed over the data dimensions of each example.
public protocol Likelihood: Sendable {
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

/// Bernoulli likelihood on logits ℓ (the "log loss"):
///
///     log p(x|z) = Σ_i [x_i ℓ_i − softplus(ℓ_i)],   ∂(−log p)/∂ℓ_i = sigmoid(ℓ_i) − x_i,
///
/// in the stable form softplus(ℓ) = max(ℓ, 0) + log1p(e^−|ℓ|). Valid for binary x and, as a
/// cross-entropy, for grey values in [0, 1] (then it is not a normalised density over [0, 1]).
public struct BernoulliLikelihood: Likelihood {
    public init() {}

    public func negativeLogLikelihood(
        _ x: Tensor, output logits: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let n = logits.rowSize
        let k = repeatFactor(x, logits, n)
        var total = 0.0
        for b in 0..<logits.rows {
            let rowScale = scale * (rowScales?[b] ?? 1)
            let s = Double(vae_bernoulli_nll(x.data + (b / k) * n, logits.data + b * n, gradient.map { $0.data + b * n }, rowScale, n))
            perExample?[b] = s
            total += s
        }
        return total
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

    public func negativeLogLikelihood(
        _ x: Tensor, output means: Tensor, perExample: UnsafeMutablePointer<Double>?,
        gradient: Tensor?, scale: Float, rowScales: UnsafePointer<Float>?
    ) -> Double {
        let n = means.rowSize
        let k = repeatFactor(x, means, n)
        let inverseVariance = 1 / (sigma * sigma)
        let logNormaliser = 0.5 * Double(n) * log(2 * Double.pi * Double(sigma) * Double(sigma))
        var total = 0.0
        for b in 0..<means.rows {
            let rowScale = scale * (rowScales?[b] ?? 1) * inverseVariance
            let squares = vae_squared_error(x.data + (b / k) * n, means.data + b * n, gradient.map { $0.data + b * n }, rowScale, n)
            let value = 0.5 * Double(squares * inverseVariance) + logNormaliser
            perExample?[b] = value
            total += value
        }
        return total
    }

    public func mean(output means: Tensor, into mean: Tensor) {
        mean.copy(from: means)
    }
}
