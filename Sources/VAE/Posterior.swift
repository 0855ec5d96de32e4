#if canImport(Glibc)
import Glibc
#endif
import Tensor

// The encoder's output holds the diagonal Gaussian q(z|x) = N(μ, diag σ²) as one [B, 2d] tensor:
// row b is [μ₁ … μ_d | log σ²₁ … log σ²_d]. Gradients with respect to it use the same layout.

/// Reparameterisation z = μ + σ ⊙ ε with σ = exp(½ log σ²), for `posterior` [B, 2d] and
/// `noise` ε [B, d]; writes z [B, d]. The sample is a deterministic function of (μ, log σ², ε),
/// so gradients flow to μ and log σ² while ε stays outside the differentiated graph.
public func reparameterize(_ posterior: Tensor, noise: Tensor, into z: Tensor) {
    let d = noise.rowSize
    precondition(posterior.rowSize == 2 * d && posterior.rows == noise.rows, "posterior \(posterior.shape) vs noise \(noise.shape)")
    precondition(z.count == noise.count, "z \(z.shape) vs noise \(noise.shape)")
    let (h, e, out) = (posterior.data, noise.data, z.data)
    for b in 0..<noise.rows {
        let mu = h + b * 2 * d, logVar = mu + d
        let eps = e + b * d, zb = out + b * d
        for j in 0..<d { zb[j] = mu[j] + fastExp(0.5 * logVar[j]) * eps[j] }
    }
}

/// Backward of ``reparameterize(_:noise:into:)``: given ∂L/∂z, **adds** to `posteriorGradient`
///
///     ∂L/∂μ += ∂L/∂z,    ∂L/∂log σ² += ∂L/∂z ⊙ ½ σ ⊙ ε.
public func reparameterizeBackward(_ posterior: Tensor, noise: Tensor, zGradient: Tensor, into posteriorGradient: Tensor) {
    let d = noise.rowSize
    precondition(posteriorGradient.count == posterior.count && zGradient.count == noise.count, "reparameterizeBackward shapes")
    let (h, e, dz, g) = (posterior.data, noise.data, zGradient.data, posteriorGradient.data)
    for b in 0..<noise.rows {
        let logVar = h + b * 2 * d + d
        let eps = e + b * d, dzb = dz + b * d
        let gMu = g + b * 2 * d, gLogVar = gMu + d
        for j in 0..<d {
            gMu[j] += dzb[j]
            gLogVar[j] += dzb[j] * 0.5 * fastExp(0.5 * logVar[j]) * eps[j]
        }
    }
}

/// KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1), per example, in nats.
///
/// Writes each example's KL into `perExample` (B values) and returns their sum. When `gradient`
/// is given, **sets** it to `scale` · ∂KL/∂[μ | log σ²] = `scale` · [μ | ½(σ² − 1)], with dimension
/// j's entries multiplied by `dimensionWeights[j]` when given (free bits zero some of them).
@discardableResult
public func klDivergence(
    _ posterior: Tensor, perExample: UnsafeMutablePointer<Double>? = nil,
    gradient: Tensor? = nil, scale: Float = 1, dimensionWeights: UnsafePointer<Float>? = nil
) -> Double {
    let d = posterior.rowSize / 2
    let h = posterior.data
    var total = 0.0
    for b in 0..<posterior.rows {
        let mu = h + b * 2 * d, logVar = mu + d
        var kl: Float = 0
        for j in 0..<d {
            kl += mu[j] * mu[j] + fastExp(logVar[j]) - logVar[j] - 1
        }
        let value = 0.5 * Double(kl)
        perExample?[b] = value
        total += value
    }
    if let gradient {
        precondition(gradient.count == posterior.count, "KL gradient shape \(gradient.shape)")
        let g = gradient.data
        for b in 0..<posterior.rows {
            let mu = h + b * 2 * d, logVar = mu + d
            let gMu = g + b * 2 * d, gLogVar = gMu + d
            for j in 0..<d {
                let c = scale * (dimensionWeights?[j] ?? 1)
                gMu[j] = c * mu[j]
                gLogVar[j] = c * 0.5 * (fastExp(logVar[j]) - 1)
            }
        }
    }
    return total
}

/// Adds each dimension's KL, summed over the batch's rows, to `sums` (d values).
public func klSumsPerDimension(_ posterior: Tensor, into sums: UnsafeMutablePointer<Double>) {
    let d = posterior.rowSize / 2
    for b in 0..<posterior.rows {
        let mu = posterior.data + b * 2 * d, logVar = mu + d
        for j in 0..<d { sums[j] += 0.5 * Double(mu[j] * mu[j] + fastExp(logVar[j]) - logVar[j] - 1) }
    }
}

/// log N(z; μ, diag σ²) summed over dimensions, for one example's pointers (used by Monte-Carlo
/// estimates): −½ Σ_j [log 2π + log σ²_j + (z_j − μ_j)²/σ²_j].
@inlinable
public func gaussianLogDensity(_ z: UnsafePointer<Float>, mean: UnsafePointer<Float>, logVariance: UnsafePointer<Float>, count d: Int) -> Double {
    var s = 0.0
    for j in 0..<d {
        let diff = Double(z[j] - mean[j])
        s += 1.8378770664093453 + Double(logVariance[j]) + diff * diff * exp(-Double(logVariance[j]))
    }
    return -0.5 * s
}

/// log N(z; 0, I) summed over dimensions: −½ Σ_j (log 2π + z_j²).
@inlinable
public func standardNormalLogDensity(_ z: UnsafePointer<Float>, count d: Int) -> Double {
    var s = 0.0
    for j in 0..<d { s += 1.8378770664093453 + Double(z[j]) * Double(z[j]) }
    return -0.5 * s
}
