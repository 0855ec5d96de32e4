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

extension VariationalAutoencoder {
    /// Per-dimension KL and the variance of posterior means over all `batches`.
    public func latentStatistics<S: Sequence>(_ batches: S) -> LatentStatistics where S.Element == Batch {
        let d = latentDimension
        var kl = [Double](repeating: 0, count: d)
        var sum = [Double](repeating: 0, count: d), squares = [Double](repeating: 0, count: d)
        var images = 0
        for batch in batches {
            let h = encode(batch.images, condition: batch.condition)
            for b in 0..<batch.count {
                let mu = h.data + b * 2 * d, logVar = mu + d
                for j in 0..<d {
                    let m = Double(mu[j]), lv = Double(logVar[j])
                    kl[j] += 0.5 * (m * m + exp(lv) - lv - 1)
                    sum[j] += m
                    squares[j] += m * m
                }
            }
            images += batch.count
        }
        let n = Double(max(images, 1))
        return LatentStatistics(
            klPerDimension: kl.map { $0 / n },
            meanVariance: (0..<d).map { max(0, squares[$0] / n - (sum[$0] / n) * (sum[$0] / n)) },
            images: images)
    }
}
