import Foundation
import NN
import Tensor

/// Scratch tensors of the two-stochastic-layer objective (one set per model or replica).
final class TwoLayerBuffers {
    var z1: Tensor?
    var z2: Tensor?
    var z1Gradient: Tensor?
    var upperGradient: Tensor?
    var priorGradient: Tensor?
    /// ε₂ of seed-keyed evaluation.
    var evaluationNoise: Tensor?
    /// log w of each row of the last call.
    var logWeights: [Double] = []
}

extension VariationalAutoencoder {
    /// Whether the model has a second stochastic layer z₂ (``ModelConfig/upperLatentDimension``).
    public var hasTwoStochasticLayers: Bool { encoder2 != nil }

    /// The objective of the two-stochastic-layer model (Burda et al. 2015, §5) for a batch with K =
    /// `samples` samples per image; image b's samples are rows b·K ..< (b+1)·K of `eps1` [B·K, d₁]
    /// and `eps2` [B·K, d₂]. Per sample
    ///
    ///     z₁ = μ₁(x) + σ₁(x) ⊙ ε₁,   z₂ = μ₂(z₁) + σ₂(z₁) ⊙ ε₂,
    ///     log w = log p(x|z₁) + log p(z₁|z₂) + log p(z₂) − log q(z₁|x) − log q(z₂|z₁),
    ///
    /// with p(z₁|z₂) = N(μ_p(z₂), diag σ_p²(z₂)) from `decoder2`. The KL term reported (and weighed
    /// by β) is log q(z₁|x) + log q(z₂|z₁) − log p(z₁|z₂) − log p(z₂), so log w = −NLL − KL.
    ///
    /// Which terms are exact and which sampled: with K = 1 and `analyticUpperKL`, the z₂ part
    /// log q(z₂|z₁) − log p(z₂) is replaced by its expectation over z₂, the closed form
    /// KL(q(z₂|z₁) ‖ N(0, I)) = ½ Σ (μ₂² + σ₂² − log σ₂² − 1) (z₂ is still sampled, for
    /// p(z₁|z₂)); every other term has no closed form here (q(z₂|z₁) depends on the sampled z₁, and
    /// p(z₁|z₂) on the sampled z₂) and is evaluated at the samples. With K > 1 (the IWAE bound,
    /// β = 1) every term is sampled, as an importance weight must be.
    ///
    /// Gradients (with ε fixed, so log q(z|·) = −½ Σ (log 2π + log σ² + ε²)), for −log w scaled by
    /// c = `gradientScale` × the sample's normalised weight (1 for K = 1):
    /// - ∂/∂z₁ collects D (from the decoder, through −log p(x|z₁)), β (z₁ − μ_p)/σ_p² (through
    ///   −log p(z₁|z₂)) and the input gradient of `encoder2`;
    /// - ∂/∂μ_p = −β (z₁ − μ_p)/σ_p², ∂/∂log σ_p² = ½β (1 − (z₁ − μ_p)²/σ_p²), back through `decoder2`
    ///   to G₂ = ∂/∂z₂; sampled: ∂/∂μ₂ = G₂ + βz₂, ∂/∂log σ₂² = (G₂ + βz₂) ⊙ ½σ₂ε₂ − ½β; analytic:
    ///   ∂/∂μ₂ = G₂ + βμ₂, ∂/∂log σ₂² = G₂ ⊙ ½σ₂ε₂ + ½β (σ₂² − 1); back through `encoder2`;
    /// - ∂/∂μ₁ = Σ_k ∂/∂z₁, ∂/∂log σ₁² = Σ_k ∂/∂z₁ ⊙ ½σ₁ε₁ − ½β, back through `encoder`.
    ///
    /// Returns the per-image means over samples of the reconstruction and KL terms, and as
    /// `objective` the bound (−log (1/K) Σ w, or NLL + β KL for K = 1). log w of every row is left
    /// in ``lastLogWeights``.
    @discardableResult
    public func twoLayerObjective(
        _ x: Tensor, noise eps1: Tensor, upperNoise eps2: Tensor, samples k: Int, computeGradients: Bool, klWeight beta: Float = 1,
        analyticUpperKL: Bool = false, gradientScale: Float? = nil
    ) -> LossBreakdown {
        guard let encoder2, let decoder2 else { preconditionFailure("the model has one stochastic layer") }
        let batch = x.rows, rows = batch * k
        let d1 = latentDimension, d2 = config.upperLatentDimension
        precondition(eps1.rows == rows && eps1.rowSize == d1 && eps2.rows == rows && eps2.rowSize == d2, "noise \(eps1.shape), \(eps2.shape) for \(batch) images × \(k) samples")
        precondition(k == 1 || beta == 1, "the IWAE bound has no KL weight")
        precondition(k == 1 || !analyticUpperKL, "importance weights need every term sampled")
        let buffers = twoLayerBuffers
        let post1 = encode(x)
        let z1 = Tensor.reusing(buffers.z1, rows: rows, columns: d1)
        buffers.z1 = z1
        for r in 0..<rows {
            let mu = post1.data + (r / k) * 2 * d1, logVar = mu + d1
            for j in 0..<d1 { z1[r * d1 + j] = mu[j] + fastExp(0.5 * logVar[j]) * eps1[r * d1 + j] }
        }
        let post2 = encoder2(z1)
        let z2 = Tensor.reusing(buffers.z2, rows: rows, columns: d2)
        buffers.z2 = z2
        reparameterize(post2, noise: eps2, into: z2)
        let prior = decoder2(z2)
        let output = runDecoder(z1, condition: nil) { $0 / k }

        ensurePerExampleCapacity(rows)
        if sampleWeights.count < rows { sampleWeights = [Float](repeating: 0, count: rows) }
        if buffers.logWeights.count < rows { buffers.logWeights = [Double](repeating: 0, count: rows) }
        let scale = gradientScale ?? 1 / Float(batch)
        let outGrad: Tensor? = computeGradients ? Tensor.reusing(outputGradient, shape: output.shape) : nil
        outputGradient = outGrad ?? outputGradient
        perExampleReconstruction.withUnsafeMutableBufferPointer {
            _ = likelihood.negativeLogLikelihood(x, output: output, perExample: $0.baseAddress, gradient: k == 1 ? outGrad : nil, scale: scale)
        }

        // KL term of each row, in Double.
        for r in 0..<rows {
            let logVar1 = post1.data + (r / k) * 2 * d1 + d1
            let mu2 = post2.data + r * 2 * d2, logVar2 = mu2 + d2
            let muP = prior.data + r * 2 * d1, logVarP = muP + d1
            var logQ1 = 0.0, logP1 = 0.0, upper = 0.0
            for j in 0..<d1 {
                let e = Double(eps1[r * d1 + j])
                logQ1 -= 0.5 * (Double(logVar1[j]) + e * e)
                let diff = Double(z1[r * d1 + j] - muP[j])
                logP1 -= 0.5 * (Double(logVarP[j]) + diff * diff * exp(-Double(logVarP[j])))
            }
            for j in 0..<d2 {
                if analyticUpperKL {
                    let m = Double(mu2[j]), lv = Double(logVar2[j])
                    upper += 0.5 * (m * m + exp(lv) - lv - 1)
                } else {
                    let e = Double(eps2[r * d2 + j]), z = Double(z2[r * d2 + j])
                    upper += 0.5 * (z * z - Double(logVar2[j]) - e * e)
                }
            }
            perExampleKL[r] = logQ1 - logP1 + upper
            buffers.logWeights[r] = -perExampleReconstruction[r] - perExampleKL[r]
        }
        let loss = importanceWeightedBound(images: batch, samples: k, beta: beta)
        guard let outGrad else { return loss }
        if k > 1 { weightedLikelihoodGradient(x, output: output, into: outGrad, scale: scale) }
        // ∂/∂z₁ from the decoder; then the direct part of −log p(z₁|z₂) and ∂/∂[μ_p | log σ_p²].
        guard let dz1Decoder = decoder.backward(outGrad) else { preconditionFailure("decoder must return ∂L/∂z") }
        let g1 = Tensor.reusing(buffers.z1Gradient, rows: rows, columns: d1)
        buffers.z1Gradient = g1
        g1.copy(from: dz1Decoder)
        let gp = Tensor.reusing(buffers.priorGradient, shape: prior.shape)
        buffers.priorGradient = gp
        for r in 0..<rows {
            let c = scale * sampleWeights[r] * beta
            let muP = prior.data + r * 2 * d1, logVarP = muP + d1
            for j in 0..<d1 {
                let inverse = fastExp(-logVarP[j])
                let diff = z1[r * d1 + j] - muP[j]
                g1[r * d1 + j] += c * diff * inverse
                gp[r * 2 * d1 + j] = -c * diff * inverse
                gp[r * 2 * d1 + d1 + j] = 0.5 * c * (1 - diff * diff * inverse)
            }
        }
        guard let dz2 = decoder2.backward(gp) else { preconditionFailure("decoder2 must return ∂L/∂z₂") }
        let g2 = Tensor.reusing(buffers.upperGradient, shape: post2.shape)
        buffers.upperGradient = g2
        for r in 0..<rows {
            let c = scale * sampleWeights[r] * beta
            let mu2 = post2.data + r * 2 * d2, logVar2 = mu2 + d2
            for j in 0..<d2 {
                let sigma = fastExp(0.5 * logVar2[j]), e = eps2[r * d2 + j]
                if analyticUpperKL {
                    let g = dz2[r * d2 + j]
                    g2[r * 2 * d2 + j] = g + c * mu2[j]
                    g2[r * 2 * d2 + d2 + j] = g * 0.5 * sigma * e + 0.5 * c * (sigma * sigma - 1)
                } else {
                    let g = dz2[r * d2 + j] + c * z2[r * d2 + j]
                    g2[r * 2 * d2 + j] = g
                    g2[r * 2 * d2 + d2 + j] = g * 0.5 * sigma * e - 0.5 * c
                }
            }
        }
        guard let dz1Upper = encoder2.backward(g2) else { preconditionFailure("encoder2 must return ∂L/∂z₁") }
        for i in 0..<(rows * d1) { g1[i] += dz1Upper[i] }
        let postGrad = posteriorGradient(post1, noise: eps1, zGradient: g1, samples: k, beta: beta, scale: scale)
        _ = encoder.backward(postGrad)
        return loss
    }

    /// log w of every row (image b's sample s at row b·K + s) of the last ``twoLayerObjective(_:noise:upperNoise:samples:computeGradients:klWeight:analyticUpperKL:gradientScale:)``.
    public var lastLogWeights: ArraySlice<Double> {
        twoLayerBuffers.logWeights.prefix(twoLayerBuffers.z1?.rows ?? 0)
    }
}
