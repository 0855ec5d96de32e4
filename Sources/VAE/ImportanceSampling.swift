import Foundation
import Tensor

/// Importance-sampled estimates for one image, in nats.
public struct ImportanceSampledEstimate: Sendable, Equatable {
    /// log p̂(x) = log (1/K) Σ_k w_k with w_k = p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).
    public var logLikelihood: Double
    /// (1/K) Σ_k log w_k: the ELBO estimated from the same samples (Monte-Carlo KL).
    public var elbo: Double
}

extension VariationalAutoencoder {
    /// For each row of `images`, the importance-sampled log-likelihood with `samples` draws
    /// from q(z|x) (the IWAE bound with K = `samples`; K = 1 is the ELBO), with a stable
    /// log-sum-exp over the weights. The decoder sees `chunk` samples at a time. Image i draws
    /// its ε from a generator seeded by (`seed`, `firstIndex` + i), so the estimate of an image
    /// does not depend on how the images are batched or split across cores. A conditional model
    /// takes the images' one-hot labels as `condition`. A model with two stochastic layers draws
    /// ε₂ from a second stream keyed to (`seed`, `firstIndex` + i), with w = p(x|z₁) p(z₁|z₂) p(z₂) / (q(z₁|x) q(z₂|z₁)).
    public func importanceSampledLogLikelihood(
        _ images: Tensor, condition: Tensor? = nil, samples: Int, seed: UInt64, firstIndex: Int = 0, chunk: Int = 1000
    ) -> [ImportanceSampledEstimate] {
        precondition(samples >= 1 && chunk >= 1, "need at least one sample")
        let d = latentDimension
        let n = images.rowSize
        let rows = min(chunk, samples)
        let eps = Tensor(shape: [rows, d])
        let z = Tensor(shape: [rows, d])
        let x = Tensor(shape: [1] + config.inputShape)
        var nll = [Double](repeating: 0, count: rows)
        var logWeights = [Double](repeating: 0, count: rows)
        let upperNoise = hasTwoStochasticLayers ? Tensor(shape: [rows, config.upperLatentDimension]) : nil
        var results: [ImportanceSampledEstimate] = []
        results.reserveCapacity(images.rows)
        var imageCondition: Tensor?
        let mu = UnsafeMutablePointer<Float>.allocate(capacity: 2 * d)
        defer { mu.deallocate() }
        let logVar = mu + d

        for i in 0..<images.rows {
            var rng = RandomGenerator(seed: Self.imageSeed(seed, firstIndex + i))
            var upperRNG = RandomGenerator(seed: Self.upperImageSeed(seed, firstIndex + i))
            x.data.update(from: images.data + i * n, count: n)
            // q(z|x) of this image alone: a matrix product's rounding can depend on how many rows
            // it has (OpenBLAS's AVX2 kernels do), and an image's figures must not depend on its
            // batch or on how the batch is split across cores. Its label (for a conditional
            // model) conditions all of its samples.
            let c = condition.map { Tensor.view($0, rows: i..<(i + 1), reusing: &imageCondition) }
            if upperNoise == nil { mu.update(from: encode(x, condition: c).data, count: 2 * d) }
            // Streaming log-sum-exp: Σ exp(log w − shift), with shift the largest log w so far.
            var shift = -Double.infinity, scaled = 0.0, sumLogW = 0.0
            var done = 0
            while done < samples {
                let k = min(rows, samples - done)
                eps.setBatch(k)
                rng.fillNormal(eps)
                if let upperNoise {
                    // Two stochastic layers: ε₂ from the image's second stream; every term of log w sampled.
                    upperNoise.setBatch(k)
                    upperRNG.fillNormal(upperNoise)
                    twoLayerObjective(x, noise: eps, upperNoise: upperNoise, samples: k, computeGradients: false)
                    let weights = lastLogWeights
                    for r in 0..<k { logWeights[r] = weights[weights.startIndex + r] }
                } else {
                    z.setBatch(k)
                    for r in 0..<k {
                        for j in 0..<d { z[r * d + j] = mu[j] + fastExp(0.5 * logVar[j]) * eps[r * d + j] }
                    }
                    let output = runDecoder(z, condition: condition) { _ in i }
                    nll.withUnsafeMutableBufferPointer {
                        _ = likelihood.negativeLogLikelihood(x, output: output, perExample: $0.baseAddress, gradient: nil, scale: 1)
                    }
                    for r in 0..<k {
                        let logPrior = standardNormalLogDensity(z.data + r * d, count: d)
                        let logQ = gaussianLogDensity(z.data + r * d, mean: mu, logVariance: logVar, count: d)
                        logWeights[r] = -nll[r] + logPrior - logQ
                    }
                }
                for r in 0..<k {
                    let logW = logWeights[r]
                    sumLogW += logW
                    if logW > shift {
                        scaled = scaled * exp(shift - logW) + 1
                        shift = logW
                    } else {
                        scaled += exp(logW - shift)
                    }
                }
                done += k
            }
            let logK = log(Double(samples))
            results.append(ImportanceSampledEstimate(logLikelihood: shift + log(scaled) - logK, elbo: sumLogW / Double(samples)))
        }
        return results
    }

    /// The seed of image `index`'s ε stream.
    static func imageSeed(_ seed: UInt64, _ index: Int) -> UInt64 {
        var g = RandomGenerator(seed: seed ^ (UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15))
        return g.next()
    }

    /// The seed of image `index`'s ε₂ stream (a second stochastic layer): a stream of its own, so
    /// that ε₁ and ε₂ do not depend on how the samples are chunked.
    static func upperImageSeed(_ seed: UInt64, _ index: Int) -> UInt64 {
        imageSeed(seed ^ 0xD1B5_4A32_D192_ED03, index)
    }
}

extension DataParallel {
    /// ``VariationalAutoencoder/importanceSampledLogLikelihood(_:condition:samples:seed:firstIndex:chunk:)``
    /// with the rows of `images` split across the workers.
    public func importanceSampledLogLikelihood(
        _ images: Tensor, condition: Tensor? = nil, samples: Int, seed: UInt64, firstIndex: Int = 0
    ) -> [ImportanceSampledEstimate] {
        let parts = UnsafeMutableBufferPointer<[ImportanceSampledEstimate]>.allocate(capacity: count)
        parts.initialize(repeating: [])
        defer { parts.deinitialize(); parts.deallocate() }
        run { w, worker in
            let range = rows(w, of: images.rows)
            guard !range.isEmpty else { return }
            parts[w] = worker.importanceSampledLogLikelihood(
                Tensor(viewing: images, rows: range), condition: conditionRows(w, of: condition, range: range), samples: samples, seed: seed, firstIndex: firstIndex + range.lowerBound)
        }
        return Array(parts.joined())
    }
}
