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

@Test func sharedVarianceGaussianValueAndGradients() {
    let likelihood = GaussianSharedVarianceLikelihood(initialSigma: 0.4)
    let x = randomTensor([3, 5], seed: 1, low: 0, high: 1)
    let means = randomTensor([3, 5], seed: 2, low: -0.5, high: 1.5)
    // Value against the density formula.
    var per = [0.0, 0.0, 0.0]
    _ = per.withUnsafeMutableBufferPointer {
        likelihood.negativeLogLikelihood(x, output: means, perExample: $0.baseAddress, gradient: nil, scale: 1, rowScales: nil)
    }
    for b in 0..<3 {
        var expected = 0.0
        for i in 0..<5 {
            let r = Double(x[b * 5 + i] - means[b * 5 + i])
            expected += 0.5 * r * r / 0.16 + log(0.4) + 0.5 * log(2 * Double.pi)
        }
        #expect(abs(per[b] - expected) < 1e-4)
    }
    // Gradients for the means and for log σ, with per-row scales.
    let rowScales: [Float] = [0.5, 1, 2]
    let grad = Tensor(shape: [3, 5])
    _ = rowScales.withUnsafeBufferPointer {
        likelihood.negativeLogLikelihood(x, output: means, perExample: nil, gradient: grad, scale: 0.3, rowScales: $0.baseAddress)
    }
    let analyticSigma = likelihood.logSigma.gradient[0]
    let f = { () -> Double in
        var per = [0.0, 0.0, 0.0]
        _ = per.withUnsafeMutableBufferPointer {
            likelihood.negativeLogLikelihood(x, output: means, perExample: $0.baseAddress, gradient: nil, scale: 1, rowScales: nil)
        }
        return 0.3 * zip(per, rowScales).reduce(0) { $0 + $1.0 * Double($1.1) }
    }
    let m = gradientMismatch(analytic: grad.toArray(), numeric: numericalGradient(of: f, wrt: means, step: 1e-3))
    #expect(m.excess <= 0, "means[\(m.index)]: \(m.analytic) vs \(m.numeric)")
    let s = gradientMismatch(analytic: [analyticSigma], numeric: numericalGradient(of: f, wrt: likelihood.logSigma.value, step: 1e-3))
    #expect(s.excess <= 0, "log σ: \(s.analytic) vs \(s.numeric)")
}

@Test func pixelVarianceGaussianValueGradientsAndFloor() {
    let likelihood = GaussianPixelVarianceLikelihood(minimumSigma: 0.05)
    let x = randomTensor([2, 4], seed: 3, low: 0, high: 1)
    // Output rows: 4 means, then 4 log σ in [−2, 0.5] (above the floor log 0.05 ≈ −3).
    let output = Tensor(shape: [2, 8])
    let means = randomTensor([2, 4], seed: 4, low: 0, high: 1), logSigmas = randomTensor([2, 4], seed: 5, low: -2, high: 0.5)
    for b in 0..<2 { for i in 0..<4 { output[b * 8 + i] = means[b * 4 + i]; output[b * 8 + 4 + i] = logSigmas[b * 4 + i] } }
    let value = likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: nil, scale: 1)
    var expected = 0.0
    for b in 0..<2 {
        for i in 0..<4 {
            let r = Double(x[b * 4 + i] - means[b * 4 + i]), t = Double(logSigmas[b * 4 + i])
            expected += 0.5 * r * r * exp(-2 * t) + t + 0.5 * log(2 * Double.pi)
        }
    }
    #expect(abs(value - expected) < 1e-4 * abs(expected))
    let grad = Tensor(shape: [2, 8])
    _ = likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: grad, scale: 0.5)
    let f = { 0.5 * likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: nil, scale: 1) }
    let m = gradientMismatch(analytic: grad.toArray(), numeric: numericalGradient(of: f, wrt: output, step: 1e-3))
    #expect(m.excess <= 0, "output[\(m.index)]: \(m.analytic) vs \(m.numeric)")
    // Below the floor, log σ has no gradient and the density uses the floor.
    output[4] = -10
    _ = likelihood.negativeLogLikelihood(x, output: output, perExample: nil, gradient: grad, scale: 1)
    #expect(grad[4] == 0)
    let mean = Tensor(shape: [2, 4])
    likelihood.mean(output: output, into: mean)
    #expect(mean.toArray() == means.toArray())
}

@Test(arguments: [LikelihoodKind.gaussianShared, .gaussianPixel])
func learnedVarianceModelsHaveCheckedGradientsAndRoundTrip(kind: LikelihoodKind) throws {
    let model = smallModel(activation: .tanh, likelihood: kind, seed: 2)
    let x = randomTensor([4, 1, 2, 3], seed: 7, low: 0, high: 1)
    checkModelGradients(model, label: "\(kind)", loss: {
        var rng = RandomGenerator(seed: 5)
        return model.negativeELBO(x, rng: &rng, computeGradients: false).meanNegativeELBO
    }, computeGradients: {
        var rng = RandomGenerator(seed: 5)
        model.negativeELBO(x, rng: &rng, computeGradients: true)
    })
    let path = temporaryDirectory() + "/m.safetensors"
    try Checkpoint.save(model, to: path)
    let loaded = try Checkpoint.load(path)
    #expect(loaded.namedParameters.map(\.name) == model.namedParameters.map(\.name))
    if kind == .gaussianShared { #expect(model.namedParameters.last!.name == "likelihood.log_sigma") }
    if kind == .gaussianPixel { #expect(model.namedParameters.last!.parameter.shape == [12]) }  // 6 means + 6 log σ
}
