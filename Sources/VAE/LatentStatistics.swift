import Foundation
import Datasets
import Tensor

/// How the model uses its latent dimensions over a data set.
public struct LatentStatistics: Sendable {
    /// Mean KL(q(z_u|x) ‖ N(0, 1)) per dimension u, nats per image.
    public var klPerDimension: [Double]
    /// Cov_x(E_q[z_u]): the variance over the data of each posterior mean.
    public var meanVariance: [Double]
    public var images: Int

    /// Dimensions whose posterior mean varies with x: Cov_x(E_q[z_u]) > `threshold`
    /// (Burda et al., 2015, use 0.01).
    public func activeUnits(threshold: Double = 0.01) -> Int { meanVariance.filter { $0 > threshold }.count }
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

    /// Adds the images of one encoded batch (`posterior` rows [μ, log σ²]).
    public mutating func add(_ posterior: Tensor) {
        let d = kl.count
        for b in 0..<posterior.rows {
            let mu = posterior.data + b * 2 * d, logVar = mu + d
            for j in 0..<d {
                let m = Double(mu[j]), lv = Double(logVar[j])
                kl[j] += 0.5 * (m * m + exp(lv) - lv - 1)
                means[j] += m
                squares[j] += m * m
            }
        }
        images += posterior.rows
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
    public func latentSums<S: Sequence>(_ batches: S) -> LatentSums where S.Element == Batch {
        var sums = LatentSums(dimension: latentDimension)
        for batch in batches { sums.add(encode(batch.images, condition: batch.condition)) }
        return sums
    }

    /// Per-dimension KL and the variance of posterior means over all `batches`.
    public func latentStatistics<S: Sequence>(_ batches: S) -> LatentStatistics where S.Element == Batch {
        latentSums(batches).statistics
    }
}
