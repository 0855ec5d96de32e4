import Foundation
import Tensor
import Testing
import TestSupport
import VAE

@Test func bernoulliStableFormMatchesNaiveFormula() {
    // Naive: −[x log σ(ℓ) + (1 − x) log(1 − σ(ℓ))], finite for moderate logits.
    let logits: [Float] = [-15, -4, -0.7, 0, 0.3, 2.5, 9, 15]
    let xs: [Float] = [0, 1, 0.25, 0.5, 1, 0, 0.9, 1]
    let likelihood = BernoulliLikelihood()
    let value = likelihood.negativeLogLikelihood(
        Tensor(shape: [1, 8], values: xs), output: Tensor(shape: [1, 8], values: logits),
        perExample: nil, gradient: nil, scale: 1)
    var naive = 0.0
    for (l, x) in zip(logits, xs) {
        let p = 1 / (1 + exp(-Double(l)))
        naive -= Double(x) * log(p) + (1 - Double(x)) * log(1 - p)
    }
    #expect(abs(value - naive) < 1e-5 * max(1, abs(naive)))
}

@Test func bernoulliStaysFiniteAtExtremeLogits() {
    let likelihood = BernoulliLikelihood()
    let logits = Tensor(shape: [1, 4], values: [-200, 200, -200, 200])
    let x = Tensor(shape: [1, 4], values: [0, 1, 1, 0])
    let grad = Tensor(shape: [1, 4])
    let value = likelihood.negativeLogLikelihood(x, output: logits, perExample: nil, gradient: grad, scale: 1)
    // Right answers cost ~0; the two wrong ones cost 200 nats each.
    #expect(abs(value - 400) < 1e-3)
    #expect(grad.toArray() == [0, 0, -1, 1])
}

@Test(arguments: ["bernoulli", "gaussian"])
func likelihoodGradients(kind: String) {
    let likelihood: Likelihood = kind == "bernoulli" ? BernoulliLikelihood() : GaussianLikelihood(sigma: 0.7)
    let x = randomTensor([3, 6], seed: 1, low: 0, high: 1)
    let output = randomTensor([3, 6], seed: 2, low: -2, high: 2)
    let grad = Tensor(shape: output.shape)
    _ = likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: grad, scale: 0.25)
    let f = { 0.25 * likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: nil, scale: 1) }
    let m = gradientMismatch(analytic: grad.toArray(), numeric: numericalGradient(of: f, wrt: output, step: 1e-2))
    #expect(m.excess <= 0, "\(kind) index \(m.index): \(m.analytic) vs \(m.numeric)")
}

@Test func gaussianMatchesTheDensityFormula() {
    let sigma: Float = 0.3
    let x = Tensor(shape: [2, 2], values: [0.1, 0.9, 0.5, 0.0])
    let m = Tensor(shape: [2, 2], values: [0.2, 0.7, 0.5, 1.0])
    var per = [0.0, 0.0]
    let total = per.withUnsafeMutableBufferPointer {
        GaussianLikelihood(sigma: sigma).negativeLogLikelihood(x, output: m, perExample: $0.baseAddress, gradient: nil, scale: 1)
    }
    func negLogN(_ x: Double, _ m: Double) -> Double {
        let s = Double(sigma)
        return 0.5 * log(2 * Double.pi * s * s) + (x - m) * (x - m) / (2 * s * s)
    }
    #expect(abs(per[0] - (negLogN(0.1, 0.2) + negLogN(0.9, 0.7))) < 1e-5)
    #expect(abs(per[1] - (negLogN(0.5, 0.5) + negLogN(0, 1))) < 1e-5)
    #expect(abs(total - per[0] - per[1]) < 1e-9)
}

@Test func likelihoodMeans() {
    let out = Tensor(shape: [1, 3], values: [0, 100, -100])
    let mean = Tensor(shape: [1, 3])
    BernoulliLikelihood().mean(output: out, into: mean)
    #expect(mean[0] == 0.5 && mean[1] == 1)
    #expect(mean[2] >= 0 && mean[2] < 1e-37)  // σ(−100) ≈ 3.7e−44, flushed to 0 by fastExp
    GaussianLikelihood(sigma: 1).mean(output: out, into: mean)
    #expect(mean.toArray() == [0, 100, -100])
}
