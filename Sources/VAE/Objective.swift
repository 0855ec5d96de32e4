import Foundation
import NN
import Tensor

/// Summed loss terms over a number of images, in nats. Means are per image.
public struct LossBreakdown: Equatable, Sendable {
    /// Σ −log p(x|z) over images (the reconstruction term).
    public var reconstruction: Double = 0
    /// Σ KL(q(z|x) ‖ p(z)) over images.
    public var kl: Double = 0
    /// Σ over images of the value training minimises (−ELBO with β, warm-up or free bits;
    /// −IWAE bound); equal to reconstruction + KL for the plain ELBO.
    public var objective: Double = 0
    public var images: Int = 0

    public init(reconstruction: Double = 0, kl: Double = 0, objective: Double? = nil, images: Int = 0) {
        self.reconstruction = reconstruction
        self.kl = kl
        self.objective = objective ?? reconstruction + kl
        self.images = images
    }

    /// The minimised objective per image.
    public var meanObjective: Double { images > 0 ? objective / Double(images) : .nan }

    public var meanReconstruction: Double { images > 0 ? reconstruction / Double(images) : .nan }
    public var meanKL: Double { images > 0 ? kl / Double(images) : .nan }
    /// −ELBO per image: the figure training lowers.
    public var meanNegativeELBO: Double { meanReconstruction + meanKL }

    public static func += (lhs: inout LossBreakdown, rhs: LossBreakdown) {
        lhs.reconstruction += rhs.reconstruction
        lhs.kl += rhs.kl
        lhs.objective += rhs.objective
        lhs.images += rhs.images
    }
}

extension VariationalAutoencoder {
    /// The negative ELBO of a batch with one reparameterised sample per image, ε drawn from `rng`.
    /// See ``negativeELBO(_:condition:noise:computeGradients:klWeight:gradientScale:klDimensionWeights:reuseEncoding:)``.
    @discardableResult
    public func negativeELBO(
        _ x: Tensor, condition: Tensor? = nil, rng: inout RandomGenerator, computeGradients: Bool, klWeight: Float = 1
    ) -> LossBreakdown {
        let eps = Tensor.reusing(noise, rows: x.rows, columns: latentDimension)
        noise = eps
        rng.fillNormal(eps)
        return negativeELBO(x, condition: condition, noise: eps, computeGradients: computeGradients, klWeight: klWeight)
    }

    /// The negative ELBO of a batch without gradients, image i's ε drawn from a generator seeded
    /// by (`seed`, `firstIndex` + i) as in importance sampling: an image's figure does not depend
    /// on how the images are batched or split across cores and ranks.
    /// A model with two stochastic layers draws image i's ε₂ from its second stream, and
    /// reports the ELBO with the analytic KL of z₂ (see ``twoLayerObjective(_:noise:upperNoise:samples:computeGradients:klWeight:analyticUpperKL:gradientScale:)``).
    @discardableResult
    public func negativeELBO(_ x: Tensor, condition: Tensor? = nil, seed: UInt64, firstIndex: Int) -> LossBreakdown {
        let d = latentDimension, d2 = config.upperLatentDimension
        let eps = Tensor.reusing(noise, rows: x.rows, columns: d)
        noise = eps
        let eps2 = d2 > 0 ? Tensor.reusing(twoLayerBuffers.evaluationNoise, rows: x.rows, columns: d2) : nil
        twoLayerBuffers.evaluationNoise = eps2 ?? twoLayerBuffers.evaluationNoise
        for i in 0..<x.rows {
            var rng = RandomGenerator(seed: Self.imageSeed(seed, firstIndex + i))
            rng.fillNormal(eps.data + i * d, count: d)
            if let eps2 {
                var upper = RandomGenerator(seed: Self.upperImageSeed(seed, firstIndex + i))
                upper.fillNormal(eps2.data + i * d2, count: d2)
            }
        }
        if let eps2 {
            return twoLayerObjective(x, noise: eps, upperNoise: eps2, samples: 1, computeGradients: false, analyticUpperKL: true)
        }
        return negativeELBO(x, condition: condition, noise: eps, computeGradients: false)
    }

    /// The negative ELBO of a batch with one reparameterised sample per image:
    ///
    ///     −ELBO(x) = −log p(x | z) + β · KL(q(z|x) ‖ p(z)),   z = μ(x) + σ(x) ⊙ ε,
    ///
    /// for the given ε [B, d] (and, for a conditional model, the one-hot labels `condition`). Returns the summed terms (KL unweighted). With `computeGradients`,
    /// sets every parameter's gradient to `gradientScale` · ∂/∂θ Σ_batch (−log p(x|z) + β KL);
    /// the default scale 1/B gives the gradient of the batch mean. `klDimensionWeights` (d values)
    /// multiply each dimension's KL gradient (free bits set them to 0 or 1). With
    /// `reuseEncoding`, the encoder's output from the last `encode(x)` of this batch is used.
    @discardableResult
    public func negativeELBO(
        _ x: Tensor, condition: Tensor? = nil, noise eps: Tensor, computeGradients: Bool, klWeight: Float = 1, gradientScale: Float? = nil,
        klDimensionWeights: UnsafePointer<Float>? = nil, reuseEncoding: Bool = false
    ) -> LossBreakdown {
        let batch = x.rows
        let d = latentDimension
        precondition(eps.rows == batch && eps.rowSize == d, "noise \(eps.shape) for a batch of \(batch) with d = \(d)")
        let posterior = reuseEncoding ? lastPosterior! : encode(x, condition: condition)
        precondition(posterior.rows == batch, "reused encoding is for another batch")
        let z = Tensor.reusing(latent, rows: batch, columns: d)
        latent = z
        reparameterize(posterior, noise: eps, into: z)
        let output = runDecoder(z, condition: condition)

        ensurePerExampleCapacity(batch)
        let scale = gradientScale ?? 1 / Float(batch)
        let outGrad: Tensor? = computeGradients ? Tensor.reusing(outputGradient, shape: output.shape) : nil
        let postGrad: Tensor? = computeGradients ? Tensor.reusing(posteriorGradient, shape: posterior.shape) : nil
        outputGradient = outGrad ?? outputGradient
        posteriorGradient = postGrad ?? posteriorGradient

        let reconstruction = perExampleReconstruction.withUnsafeMutableBufferPointer {
            likelihood.negativeLogLikelihood(x, output: output, perExample: $0.baseAddress, gradient: outGrad, scale: scale)
        }
        let kl = perExampleKL.withUnsafeMutableBufferPointer {
            klDivergence(posterior, perExample: $0.baseAddress, gradient: postGrad, scale: scale * klWeight, dimensionWeights: klDimensionWeights)
        }
        if let outGrad, let postGrad {
            guard let zGrad = decoder.backward(outGrad) else { preconditionFailure("decoder must return ∂L/∂z") }
            reparameterizeBackward(posterior, noise: eps, zGradient: zGrad, into: postGrad)
            _ = encoder.backward(postGrad)
        }
        return LossBreakdown(reconstruction: reconstruction, kl: kl, objective: reconstruction + Double(klWeight) * kl, images: batch)
    }

    func ensurePerExampleCapacity(_ rows: Int) {
        if perExampleKL.count < rows {
            perExampleKL = [Double](repeating: 0, count: rows)
            perExampleReconstruction = [Double](repeating: 0, count: rows)
        }
    }

    /// The Monte-Carlo objective of a batch with K = `samples` reparameterised samples per image,
    /// ε given as [B·K, d] (image b's samples in rows b·K ..< (b+1)·K). With
    /// log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x):
    ///
    /// - K = 1: −log p(x|z) + β (log q(z|x) − log p(z)), the ELBO with a sampled KL;
    /// - K > 1: −log (1/K) Σ_k w_k, the IWAE bound (β must be 1).
    ///
    /// With ε fixed, log q(z|x) = −½ Σ_j (log 2π + log σ²_j + ε_j²), so per sample
    /// ∂(−log w)/∂μ = D + βz and ∂(−log w)/∂log σ² = (D + βz) ⊙ ½σε − ½β, D = ∂(−log p(x|z))/∂z;
    /// the IWAE gradient weighs sample k by its normalised weight w_k / Σ w. The returned
    /// reconstruction and KL are the per-image means over the samples; `objective` is the bound.
    @discardableResult
    public func monteCarloObjective(
        _ x: Tensor, condition: Tensor? = nil, noise eps: Tensor, samples k: Int, computeGradients: Bool, klWeight beta: Float = 1,
        gradientScale: Float? = nil
    ) -> LossBreakdown {
        let batch = x.rows
        let d = latentDimension
        let rows = batch * k
        precondition(eps.rows == rows && eps.rowSize == d, "noise \(eps.shape) for \(batch) images × \(k) samples, d = \(d)")
        precondition(k == 1 || beta == 1, "the IWAE bound has no KL weight")
        let posterior = encode(x, condition: condition)
        let z = Tensor.reusing(latent, rows: rows, columns: d)
        latent = z
        for b in 0..<batch {
            let mu = posterior.data + b * 2 * d, logVar = mu + d
            for s in 0..<k {
                let r = b * k + s
                for j in 0..<d { z[r * d + j] = mu[j] + fastExp(0.5 * logVar[j]) * eps[r * d + j] }
            }
        }
        let output = runDecoder(z, condition: condition) { $0 / k }
        ensurePerExampleCapacity(rows)
        if sampleWeights.count < rows { sampleWeights = [Float](repeating: 0, count: rows) }
        let scale = gradientScale ?? 1 / Float(batch)
        let outGrad: Tensor? = computeGradients ? Tensor.reusing(outputGradient, shape: output.shape) : nil
        outputGradient = outGrad ?? outputGradient

        // −log p(x|z) per sample (with its gradient at once when every sample weighs the same).
        let singlePass = k == 1 ? outGrad : nil
        perExampleReconstruction.withUnsafeMutableBufferPointer {
            _ = likelihood.negativeLogLikelihood(x, output: output, perExample: $0.baseAddress, gradient: singlePass, scale: scale)
        }
        // log q − log p per sample, then log w and the normalised weights per image.
        for b in 0..<batch {
            let logVar = posterior.data + b * 2 * d + d
            var logVarSum: Float = 0
            for j in 0..<d { logVarSum += logVar[j] }
            for s in 0..<k {
                let r = b * k + s
                var e2: Float = 0, z2: Float = 0
                for j in 0..<d {
                    e2 += eps[r * d + j] * eps[r * d + j]
                    z2 += z[r * d + j] * z[r * d + j]
                }
                // log q − log p = −½ Σ (log σ² + ε²) + ½ Σ z² (the log 2π terms cancel).
                perExampleKL[r] = 0.5 * Double(z2 - logVarSum - e2)
            }
        }
        let loss = importanceWeightedBound(images: batch, samples: k, beta: beta)
        guard let outGrad else { return loss }
        if k > 1 { weightedLikelihoodGradient(x, output: output, into: outGrad, scale: scale) }
        guard let dz = decoder.backward(outGrad) else { preconditionFailure("decoder must return ∂L/∂z") }
        // ∂/∂z of each sample: the decoder's D plus β z from −log p(z) (in the decoder's buffer).
        for r in 0..<rows {
            let c = scale * sampleWeights[r] * beta
            for j in 0..<d { dz[r * d + j] += c * z[r * d + j] }
        }
        let postGrad = posteriorGradient(posterior, noise: eps, zGradient: dz, samples: k, beta: beta, scale: scale)
        _ = encoder.backward(postGrad)
        return loss
    }

    /// ∂/∂[μ | log σ²] of q(z|x) [B, 2d] (into the model's buffer) from ∂/∂z of each of its K
    /// samples (rows b·K + s of `zGradient`): through z = μ + σ ⊙ ε, ∂/∂μ = Σ_k ∂/∂z_k and
    /// ∂/∂log σ² = Σ_k ∂/∂z_k ⊙ ½σε_k, plus each sample's −½β c_k from β log q(z|x) =
    /// −½β Σ (log 2π + log σ² + ε²), c_k = `scale` × its normalised weight (``sampleWeights``).
    func posteriorGradient(_ posterior: Tensor, noise eps: Tensor, zGradient dz: Tensor, samples k: Int, beta: Float, scale: Float) -> Tensor {
        let d = posterior.rowSize / 2
        let postGrad = Tensor.reusing(posteriorGradient, shape: posterior.shape)
        posteriorGradient = postGrad
        postGrad.fill(0)
        for b in 0..<posterior.rows {
            let logVar = posterior.data + b * 2 * d + d
            let gMu = postGrad.data + b * 2 * d, gLogVar = gMu + d
            for s in 0..<k {
                let r = b * k + s
                let c = scale * sampleWeights[r] * beta
                for j in 0..<d {
                    let g = dz[r * d + j]
                    gMu[j] += g
                    gLogVar[j] += g * 0.5 * fastExp(0.5 * logVar[j]) * eps[r * d + j] - 0.5 * c
                }
            }
        }
        return postGrad
    }

    /// From the per-sample −log p(x|·) and KL terms of `images` × `samples` rows (image b's in rows
    /// b·K ..< (b+1)·K of `perExampleReconstruction` and `perExampleKL`), with
    /// log w = −NLL − β KL: the bound −log (1/K) Σ_k w_k per image (a stable log-sum-exp), the
    /// per-image means of the two terms, and each sample's normalised weight w_k / Σ w into
    /// `sampleWeights` (the IWAE gradient's weights; 1 for K = 1).
    func importanceWeightedBound(images batch: Int, samples k: Int, beta: Float) -> LossBreakdown {
        var loss = LossBreakdown(images: batch)
        for b in 0..<batch {
            var maxLogW = -Double.infinity
            for s in 0..<k {
                let r = b * k + s
                maxLogW = max(maxLogW, -perExampleReconstruction[r] - Double(beta) * perExampleKL[r])
                loss.reconstruction += perExampleReconstruction[r] / Double(k)
                loss.kl += perExampleKL[r] / Double(k)
            }
            var total = 0.0
            for s in 0..<k {
                let r = b * k + s
                let w = exp(-perExampleReconstruction[r] - Double(beta) * perExampleKL[r] - maxLogW)
                sampleWeights[r] = Float(w)
                total += w
            }
            for s in 0..<k { sampleWeights[b * k + s] /= Float(total) }
            loss.objective -= maxLogW + log(total) - log(Double(k))
        }
        return loss
    }

    /// ∂/∂output of Σ_r (normalised weight of r) · −log p(x|z_r), scaled by `scale`: the
    /// likelihood's part of the IWAE gradient (K > 1).
    func weightedLikelihoodGradient(_ x: Tensor, output: Tensor, into outGrad: Tensor, scale: Float) {
        sampleWeights.withUnsafeBufferPointer {
            _ = likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: outGrad, scale: scale, rowScales: $0.baseAddress)
        }
    }

    /// Each image's −ELBO terms, −log p(x|z) and the KL term, as
    /// ``negativeELBO(_:condition:seed:firstIndex:)`` sums them over the batch (image i's ε keyed
    /// to (`seed`, `firstIndex` + i); with two stochastic layers, the KL term with z₂'s part in
    /// closed form): one batched pass, the same figures as that call on each image alone up to
    /// the products' rounding.
    public func negativeELBOPerImage(
        _ x: Tensor, condition: Tensor? = nil, seed: UInt64, firstIndex: Int
    ) -> (reconstruction: [Double], kl: [Double]) {
        negativeELBO(x, condition: condition, seed: seed, firstIndex: firstIndex)
        return (Array(perExampleReconstruction.prefix(x.rows)), Array(perExampleKL.prefix(x.rows)))
    }
}
