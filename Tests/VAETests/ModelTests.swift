import Foundation
import Datasets
import NN
import Tensor
import Testing
import TestSupport
import VAE

func smallModel(activation: ActivationKind = .tanh, likelihood: LikelihoodKind = .bernoulli, seed: UInt64 = 1) -> VariationalAutoencoder {
    var rng = RandomGenerator(seed: seed)
    let config = ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [5, 4], latentDimension: 3, activation: activation, likelihood: likelihood, gaussianSigma: 0.5)
    return VariationalAutoencoder(config: config, rng: &rng)
}

@Test(arguments: [(ActivationKind.tanh, LikelihoodKind.bernoulli), (.softplus, .gaussian), (.leakyRelu, .bernoulli)])
func negativeELBOGradientForEveryParameter(activation: ActivationKind, likelihood: LikelihoodKind) {
    let model = smallModel(activation: activation, likelihood: likelihood)
    let x = randomTensor([4, 1, 2, 3], seed: 7, low: 0, high: 1)
    let beta: Float = 0.7
    // The same ε on every evaluation: a fresh generator with the same seed.
    let loss = { () -> Double in
        var rng = RandomGenerator(seed: 5)
        let l = model.negativeELBO(x, rng: &rng, computeGradients: false, klWeight: beta)
        return (l.reconstruction + Double(beta) * l.kl) / Double(l.images)
    }
    var rng = RandomGenerator(seed: 5)
    model.negativeELBO(x, rng: &rng, computeGradients: true, klWeight: beta)
    let analytic = model.namedParameters.map { ($0.name, $0.parameter.gradient.toArray()) }
    for ((name, p), (_, grad)) in zip(model.namedParameters, analytic) {
        let m = gradientMismatch(analytic: grad, numeric: numericalGradient(of: loss, wrt: p.value, step: 1e-2), atol: 2e-3, rtol: 2e-2)
        #expect(m.excess <= 0, "\(activation) \(likelihood) \(name)[\(m.index)]: analytic \(m.analytic) vs numeric \(m.numeric)")
    }
}

@Test func parameterNamesFollowThePyTorchLayout() {
    let model = smallModel()
    #expect(model.namedParameters.map(\.name) == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias", "encoder.4.weight", "encoder.4.bias",
        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias", "decoder.4.weight", "decoder.4.bias",
    ])
    #expect(model.namedParameters[4].parameter.shape == [6, 4])  // [μ | log σ²] head
    #expect(model.namedParameters.last!.parameter.shape == [6])
}

@Test func classicModelHasThePublishedParameterCount() {
    var rng = RandomGenerator(seed: 1)
    let model = VariationalAutoencoder(config: ModelConfig(), rng: &rng)
    // 784·400+400 + 400·40+40 + 20·400+400 + 400·784+784
    #expect(model.parameterCount == 652_824)
}

@Test func sameSeedGivesTheSameLossesBitForBit() {
    func run() -> [Double] {
        var rng = RandomGenerator(seed: 3)
        let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 4, 4], hiddenSizes: [8], latentDimension: 2), rng: &rng)
        let trainer = Trainer(model: model, optimizer: Adam(parameters: model.parameters), rng: RandomGenerator(seed: 4))
        let x = randomTensor([6, 1, 4, 4], seed: 8, low: 0, high: 1)
        return (0..<5).map { _ in try! trainer.trainStep(x).meanNegativeELBO }
    }
    let a = run(), b = run()
    #expect(a == b)
    #expect(Set(a).count == 5)
}

/// Binary images made of a few prototype patterns with pixel noise: learnable structure.
func patternData(count: Int, size: Int, seed: UInt64) -> [Batch] {
    var rng = RandomGenerator(seed: seed)
    let prototypes = (0..<4).map { _ in (0..<size).map { _ in rng.nextFloat() < 0.5 ? Float(1) : 0 } }
    return stride(from: 0, to: count, by: 32).map { start in
        let n = min(32, count - start)
        let t = Tensor(shape: [n, size])
        for b in 0..<n {
            let p = prototypes[rng.nextInt(below: 4)]
            for i in 0..<size { t[b * size + i] = rng.nextFloat() < 0.05 ? 1 - p[i] : p[i] }
        }
        return Batch(images: t)
    }
}

@Test func shortTrainingRunLowersTheNegativeELBO() throws {
    var rng = RandomGenerator(seed: 2)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [32], latentDimension: 4), rng: &rng)
    let train = patternData(count: 512, size: 64, seed: 1)
    let test = patternData(count: 256, size: 64, seed: 1)
    let before = model.evaluate(test, seed: 0).meanNegativeELBO
    let trainer = Trainer(model: model, optimizer: Adam(parameters: model.parameters, learningRate: 3e-3), rng: RandomGenerator(seed: 3))
    var epochLosses: [Double] = []
    for _ in 0..<15 { epochLosses.append(try trainer.trainEpoch(train, stepsInEpoch: train.count).meanNegativeELBO) }
    let after = model.evaluate(test, seed: 0).meanNegativeELBO
    #expect(after < 0.5 * before, "test −ELBO \(before) → \(after)")
    #expect(epochLosses.last! < epochLosses.first!)
    // 64 pixels with 5% flips cost at least 64 · H(0.05) ≈ 12.7 nats: the bound stays above it.
    #expect(after > 12)
}

@Test func evaluationIsReproducible() {
    let model = smallModel()
    let data = [Batch(images: randomTensor([5, 6], seed: 1, low: 0, high: 1))]
    #expect(model.evaluate(data, seed: 0) == model.evaluate(data, seed: 0))
    #expect(model.evaluate(data, seed: 0) != model.evaluate(data, seed: 1))
}

@Test func nonFiniteLossStopsBeforeTheUpdate() {
    let model = smallModel()
    let trainer = Trainer(model: model, optimizer: Adam(parameters: model.parameters), rng: RandomGenerator(seed: 1))
    let before = model.parameters.map { $0.value.toArray() }
    let x = Tensor(shape: [2, 6], repeating: .nan)
    #expect(throws: NonFiniteLossError.self) { try trainer.trainStep(x) }
    #expect(model.parameters.map { $0.value.toArray() } == before)
}

@Test func generationAndReconstructionShapes() {
    let model = smallModel()
    var rng = RandomGenerator(seed: 1)
    let samples = model.generate(count: 7, rng: &rng)
    #expect(samples.shape == [7, 1, 2, 3])
    #expect(samples.toArray().allSatisfy { $0 > 0 && $0 < 1 })  // Bernoulli means
    let x = randomTensor([3, 1, 2, 3], seed: 2, low: 0, high: 1)
    let mu = model.posteriorMeans(x)
    let h = model.encode(x)
    for b in 0..<3 { for j in 0..<3 { #expect(mu[b * 3 + j] == h[b * 6 + j]) } }
    #expect(model.reconstruct(x).shape == [3, 1, 2, 3])
}
