import NN
import Tensor

/// Summed loss terms over a number of images, in nats. Means are per image.
public struct LossBreakdown: Equatable, Sendable {
    /// Σ −log p(x|z) over images (the reconstruction term).
    public var reconstruction: Double = 0
    /// Σ KL(q(z|x) ‖ p(z)) over images.
    public var kl: Double = 0
    public var images: Int = 0

    public init(reconstruction: Double = 0, kl: Double = 0, images: Int = 0) {
        self.reconstruction = reconstruction
        self.kl = kl
        self.images = images
    }

    public var meanReconstruction: Double { images > 0 ? reconstruction / Double(images) : .nan }
    public var meanKL: Double { images > 0 ? kl / Double(images) : .nan }
    /// −ELBO per image: the figure training lowers.
    public var meanNegativeELBO: Double { meanReconstruction + meanKL }

    public static func += (lhs: inout LossBreakdown, rhs: LossBreakdown) {
        lhs.reconstruction += rhs.reconstruction
        lhs.kl += rhs.kl
        lhs.images += rhs.images
    }
}

extension VariationalAutoencoder {
    /// The negative ELBO of a batch with one reparameterised sample per image, ε drawn from `rng`.
    /// See ``negativeELBO(_:noise:computeGradients:klWeight:gradientScale:)``.
    @discardableResult
    public func negativeELBO(
        _ x: Tensor, rng: inout RandomGenerator, computeGradients: Bool, klWeight: Float = 1
    ) -> LossBreakdown {
        let eps = Tensor.reusing(noise, rows: x.rows, columns: latentDimension)
        noise = eps
        rng.fillNormal(eps)
        return negativeELBO(x, noise: eps, computeGradients: computeGradients, klWeight: klWeight)
    }

    /// The negative ELBO of a batch with one reparameterised sample per image:
    ///
    ///     −ELBO(x) = −log p(x | z) + β · KL(q(z|x) ‖ p(z)),   z = μ(x) + σ(x) ⊙ ε,
    ///
    /// for the given ε [B, d]. Returns the summed terms (KL unweighted). With `computeGradients`,
    /// sets every parameter's gradient to `gradientScale` · ∂/∂θ Σ_batch (−log p(x|z) + β KL);
    /// the default scale 1/B gives the gradient of the batch mean.
    @discardableResult
    public func negativeELBO(
        _ x: Tensor, noise eps: Tensor, computeGradients: Bool, klWeight: Float = 1, gradientScale: Float? = nil
    ) -> LossBreakdown {
        let batch = x.rows
        let d = latentDimension
        precondition(eps.rows == batch && eps.rowSize == d, "noise \(eps.shape) for a batch of \(batch) with d = \(d)")
        let posterior = encode(x)
        let z = Tensor.reusing(latent, rows: batch, columns: d)
        latent = z
        reparameterize(posterior, noise: eps, into: z)
        let output = decoder(z)

        if perExampleKL.count < batch {
            perExampleKL = [Double](repeating: 0, count: batch)
            perExampleReconstruction = [Double](repeating: 0, count: batch)
        }
        let scale = gradientScale ?? 1 / Float(batch)
        let outGrad: Tensor? = computeGradients ? Tensor.reusing(outputGradient, shape: output.shape) : nil
        let postGrad: Tensor? = computeGradients ? Tensor.reusing(posteriorGradient, shape: posterior.shape) : nil
        outputGradient = outGrad ?? outputGradient
        posteriorGradient = postGrad ?? posteriorGradient

        let reconstruction = perExampleReconstruction.withUnsafeMutableBufferPointer {
            likelihood.negativeLogLikelihood(x, output: output, perExample: $0.baseAddress, gradient: outGrad, scale: scale)
        }
        let kl = perExampleKL.withUnsafeMutableBufferPointer {
            klDivergence(posterior, perExample: $0.baseAddress, gradient: postGrad, scale: scale * klWeight)
        }
        if let outGrad, let postGrad {
            guard let zGrad = decoder.backward(outGrad) else { preconditionFailure("decoder must return ∂L/∂z") }
            reparameterizeBackward(posterior, noise: eps, zGradient: zGrad, into: postGrad)
            _ = encoder.backward(postGrad)
        }
        return LossBreakdown(reconstruction: reconstruction, kl: kl, images: batch)
    }

    /// Per-image −ELBO terms of the last `negativeELBO` call.
    public var lastPerImageTerms: (reconstruction: ArraySlice<Double>, kl: ArraySlice<Double>) {
        let n = latent?.rows ?? 0
        return (perExampleReconstruction.prefix(n), perExampleKL.prefix(n))
    }
}
