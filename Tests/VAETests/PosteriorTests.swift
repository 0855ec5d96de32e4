import Foundation
import Tensor
import Testing
import TestSupport
import VAE

/// A [B, 2d] posterior [μ | log σ²] with log σ² in [−1.5, 1].
func randomPosterior(batch: Int, latent d: Int, seed: UInt64) -> Tensor {
    let h = randomTensor([batch, 2 * d], seed: seed, low: -1.5, high: 1)
    return h
}

@Test func reparameterizationIsMeanPlusSigmaTimesNoise() {
    let h = Tensor(shape: [1, 4], values: [0.5, -1, log(4), 0])  // μ = (0.5, −1), σ = (2, 1)
    let eps = Tensor(shape: [1, 2], values: [1.5, -2])
    let z = Tensor(shape: [1, 2])
    reparameterize(h, noise: eps, into: z)
    #expect(abs(z[0] - 3.5) < 1e-6 && abs(z[1] - (-3)) < 1e-6)
}

@Test func reparameterizationGradients() {
    let (b, d) = (3, 4)
    let h = randomPosterior(batch: b, latent: d, seed: 1)
    let eps = randomTensor([b, d], seed: 2)
    let r = randomTensor([b, d], seed: 3)  // ∂L/∂z for L = Σ r ⊙ z
    let z = Tensor(shape: [b, d])
    let loss = { () -> Double in reparameterize(h, noise: eps, into: z); return weightedSum(z, r) }
    let grad = Tensor(shape: [b, 2 * d])
    reparameterizeBackward(h, noise: eps, zGradient: r, into: grad)
    let m = gradientMismatch(analytic: grad.toArray(), numeric: numericalGradient(of: loss, wrt: h, step: 1e-3))
    #expect(m.excess <= 0, "index \(m.index): \(m.analytic) vs \(m.numeric)")
}

@Test func klClosedFormMatchesDefinitionAndGradient() {
    let (b, d) = (3, 5)
    let h = randomPosterior(batch: b, latent: d, seed: 4)
    var perExample = [Double](repeating: 0, count: b)
    let total = perExample.withUnsafeMutableBufferPointer { klDivergence(h, perExample: $0.baseAddress) }
    for i in 0..<b {
        var expected = 0.0
        for j in 0..<d {
            let mu = Double(h[i * 2 * d + j]), logVar = Double(h[i * 2 * d + d + j])
            expected += 0.5 * (mu * mu + exp(logVar) - logVar - 1)
        }
        #expect(abs(perExample[i] - expected) < 1e-5)
    }
    #expect(abs(total - perExample.reduce(0, +)) < 1e-9)
    let grad = Tensor(shape: h.shape)
    klDivergence(h, gradient: grad, scale: 0.5)
    let m = gradientMismatch(analytic: grad.toArray(), numeric: numericalGradient(of: { 0.5 * klDivergence(h) }, wrt: h, step: 1e-3))
    #expect(m.excess <= 0, "index \(m.index): \(m.analytic) vs \(m.numeric)")
}

@Test func klClosedFormMatchesMonteCarlo() {
    // KL(q‖p) = E_q[log q(z) − log p(z)], estimated with many samples; agree within 4 standard errors.
    let d = 3
    let h = Tensor(shape: [1, 2 * d], values: [0.8, -0.3, 1.5, log(0.5), log(2.0), log(0.2)])
    let closed = klDivergence(h)
    var rng = RandomGenerator(seed: 99)
    let n = 200_000
    let eps = Tensor(shape: [n, d])
    rng.fillNormal(eps)
    let posterior = Tensor(shape: [n, 2 * d])
    for i in 0..<n { for j in 0..<(2 * d) { posterior[i * 2 * d + j] = h[j] } }
    let z = Tensor(shape: [n, d])
    reparameterize(posterior, noise: eps, into: z)
    var sum = 0.0, squares = 0.0
    for i in 0..<n {
        let zi = z.data + i * d
        let logQ = gaussianLogDensity(zi, mean: h.data, logVariance: h.data + d, count: d)
        let value = logQ - standardNormalLogDensity(zi, count: d)
        sum += value
        squares += value * value
    }
    let mean = sum / Double(n)
    let standardError = ((squares / Double(n) - mean * mean) / Double(n)).squareRoot()
    #expect(abs(mean - closed) < 4 * standardError, "MC \(mean) ± \(standardError) vs closed form \(closed)")
    #expect(standardError < 0.01)
}

@Test func gaussianLogDensityMatchesTheFormula() {
    let z: [Float] = [0.3, -1.2], mu: [Float] = [0.1, 0.4], logVar: [Float] = [log(0.25), 0]
    let value = gaussianLogDensity(z, mean: mu, logVariance: logVar, count: 2)
    // N(0.3; 0.1, 0.5²) · N(−1.2; 0.4, 1)
    let expected = -0.5 * log(2 * Double.pi * 0.25) - 0.5 * 0.04 / 0.25 - 0.5 * log(2 * Double.pi) - 0.5 * 1.6 * 1.6
    #expect(abs(value - expected) < 1e-5)
    #expect(abs(standardNormalLogDensity([0, 0], count: 2) + log(2 * Double.pi)) < 1e-12)
}
