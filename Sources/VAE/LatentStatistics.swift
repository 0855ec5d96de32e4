import Foundation
import Datasets
import Tensor

/// How the model uses its latent dimensions over a data set. With two stochastic layers the
/// dimensions are z₁'s, then z₂'s: z₁'s KL is taken against p(z₁|z₂) at z₂ = μ₂(μ₁(x)) (its
/// prior given z₂'s mean: a diagnostic, not a term of the ELBO), z₂'s is KL(q(z₂|μ₁(x)) ‖ N(0, 1)),
/// and z₂'s posterior mean is μ₂(μ₁(x)).
public struct LatentStatistics: Sendable {
    /// Mean KL(q(z_u|x) ‖ N(0, 1)) per dimension u, nats per image.
    public var klPerDimension: [Double]
    /// Cov_x(E_q[z_u]): the variance over the data of each posterior mean.
    public var meanVariance: [Double]
    public var images: Int

    /// Dimensions whose posterior mean varies with x: Cov_x(E_q[z_u]) > `threshold`
    /// (Burda et al., 2015, use 0.01).
    public func activeUnits(threshold: Double = 0.01) -> Int { meanVariance.filter { $0 > threshold }.count }

    /// The statistics of the dimensions `range` alone (one stochastic layer's).
    public func dimensions(_ range: Range<Int>) -> LatentStatistics {
        LatentStatistics(klPerDimension: Array(klPerDimension[range]), meanVariance: Array(meanVariance[range]), images: images)
    }
}

/// The sums behind ``LatentStatistics`` (per-dimension KL, Σ μ and Σ μ² over images): sums
/// add up across batches, cores and ranks, the statistics are taken once at the end.
public struct LatentSums: Sendable {
    public private(set) var kl: [Double]
    public private(set) var means: [Double]
    public private(set) var squares: [Double]
    public private(set) var images = 0

    public init(dimension d: Int) {
        kl = [Double](repeating: 0, count: d)
        means = kl
        squares = kl
    }

    /// Adds the images of one encoded batch (`posterior` rows [μ, log σ²]) to dimensions
    /// `first` ..< `first` + its width: the KL against N(0, 1), or against `prior` (rows
    /// [μ_p, log σ_p²] of the same width):
    /// KL = ½ (log σ_p² − log σ² + (σ² + (μ − μ_p)²)/σ_p² − 1). `countImages` is false for the
    /// second layer of the same images.
    public mutating func add(_ posterior: Tensor, prior: Tensor? = nil, first: Int = 0, countImages: Bool = true) {
        let d = posterior.rowSize / 2
        for b in 0..<posterior.rows {
            let mu = posterior.data + b * 2 * d, logVar = mu + d
            for j in 0..<d {
                let m = Double(mu[j]), lv = Double(logVar[j])
                var pm = 0.0, plv = 0.0
                if let prior { (pm, plv) = (Double(prior[b * 2 * d + j]), Double(prior[b * 2 * d + d + j])) }
                kl[first + j] += 0.5 * (plv - lv + (exp(lv) + (m - pm) * (m - pm)) * exp(-plv) - 1)
                means[first + j] += m
                squares[first + j] += m * m
            }
        }
        if countImages { images += posterior.rows }
    }

    /// Every sum in one array (KL, Σ μ, Σ μ², images), for a sum across ranks.
    public var packed: [Double] { kl + means + squares + [Double(images)] }

    /// Sums from ``packed`` (after a sum across ranks).
    public init(packed: [Double]) {
        let d = (packed.count - 1) / 3
        kl = Array(packed[0..<d])
        means = Array(packed[d..<(2 * d)])
        squares = Array(packed[(2 * d)..<(3 * d)])
        images = Int(packed[3 * d])
    }

    /// Per-image means: KL per dimension and Cov_x(E_q[z_u]) = E[μ²] − E[μ]².
    public var statistics: LatentStatistics {
        let n = Double(max(images, 1))
        return LatentStatistics(
            klPerDimension: kl.map { $0 / n },
            meanVariance: zip(means, squares).map { max(0, $1 / n - ($0 / n) * ($0 / n)) },
            images: images)
    }
}

extension VariationalAutoencoder {
    /// Per-dimension KL and the variance of posterior means over all `batches`.
    /// With two stochastic layers, z₁'s dimensions and then z₂'s (see ``LatentStatistics``).
    public func latentSums<S: Sequence>(_ batches: S) -> LatentSums where S.Element == Batch {
        let d = latentDimension, d2 = config.upperLatentDimension
        var sums = LatentSums(dimension: d + d2)
        for batch in batches {
            let posterior = encode(batch.images, condition: batch.condition)
            guard let encoder2, let decoder2 else {
                sums.add(posterior)
                continue
            }
            let mu1 = Tensor(shape: [batch.count, d])
            for r in 0..<batch.count { (mu1.data + r * d).update(from: posterior.data + r * 2 * d, count: d) }
            let upper = encoder2(mu1)
            let mu2 = Tensor(shape: [batch.count, d2])
            for r in 0..<batch.count { (mu2.data + r * d2).update(from: upper.data + r * 2 * d2, count: d2) }
            sums.add(posterior, prior: decoder2(mu2))
            sums.add(upper, first: d, countImages: false)
        }
        return sums
    }

    /// Per-dimension KL and the variance of posterior means over all `batches`.
    public func latentStatistics<S: Sequence>(_ batches: S) -> LatentStatistics where S.Element == Batch {
        latentSums(batches).statistics
    }
}
