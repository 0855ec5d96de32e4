import Foundation
import NN
import Tensor
import Testing
import TestSupport
import VAE

/// Checks `parameters`' gradients (set by `computeGradients`) against central differences of
/// `loss`. The loss is summed in Float32, so a larger loss (more pixels) needs a larger `step`.
func checkModelGradients(_ model: VariationalAutoencoder, label: String, step: Float = 1e-2, loss: () -> Double, computeGradients: () -> Void) {
    computeGradients()
    let analytic = model.namedParameters.map { ($0.name, $0.parameter.gradient.toArray()) }
    for ((name, p), (_, grad)) in zip(model.namedParameters, analytic) {
        let m = gradientMismatch(analytic: grad, numeric: numericalGradient(of: loss, wrt: p.value, step: step), atol: 2e-3, rtol: 2e-2)
        #expect(m.excess <= 0, "\(label) \(name)[\(m.index)]: analytic \(m.analytic) vs numeric \(m.numeric)")
    }
}

@Test(arguments: [(1, Float(0.7)), (1, Float(1)), (4, Float(1))])
func monteCarloObjectiveGradients(samples k: Int, beta: Float) {
    let model = smallModel(activation: .tanh, likelihood: .bernoulli, seed: 3)
    let x = randomTensor([3, 1, 2, 3], seed: 7, low: 0, high: 1)
    let eps = randomTensor([3 * k, 3], seed: 8, low: -2, high: 2)
    checkModelGradients(model, label: "K=\(k) β=\(beta)", loss: {
        model.monteCarloObjective(x, noise: eps, samples: k, computeGradients: false, klWeight: beta).meanObjective
    }, computeGradients: {
        model.monteCarloObjective(x, noise: eps, samples: k, computeGradients: true, klWeight: beta)
    })
}

@Test func iwaeBoundIsTighterThanTheELBOAndOneSampleIsTheELBO() {
    let model = smallModel(activation: .tanh, likelihood: .gaussian, seed: 5)
    let x = randomTensor([4, 1, 2, 3], seed: 1, low: 0, high: 1)
    let eps = randomTensor([4 * 8, 3], seed: 2, low: -2, high: 2)
    let iwae = model.monteCarloObjective(x, noise: eps, samples: 8, computeGradients: false)
    // The −IWAE bound ≤ mean over the same samples of −log w (Jensen), which is what
    // reconstruction + KL report.
    #expect(iwae.meanObjective <= iwae.meanNegativeELBO + 1e-9)
    // K = 1: the objective is reconstruction + sampled KL; and −log w matches the densities.
    let one = Tensor(shape: [4, 3])
    one.copy(from: Tensor(shape: [4, 3], values: Array(eps.toArray().prefix(12))))
    let single = model.monteCarloObjective(x, noise: one, samples: 1, computeGradients: false)
    #expect(abs(single.objective - (single.reconstruction + single.kl)) < 1e-9)
    let analytic = model.negativeELBO(x, noise: one, computeGradients: false)
    #expect(abs(single.reconstruction - analytic.reconstruction) < 1e-6)  // same z, same −log p(x|z)
}

@Test func sampledKLIsUnbiased() {
    let model = smallModel(seed: 4)
    let x = randomTensor([5, 1, 2, 3], seed: 3, low: 0, high: 1)
    var rng = RandomGenerator(seed: 1)
    let analytic = model.negativeELBO(x, rng: &rng, computeGradients: false).kl
    var total = 0.0
    let draws = 4000
    let eps = Tensor(shape: [5, 3])
    for _ in 0..<draws {
        rng.fillNormal(eps)
        total += model.monteCarloObjective(x, noise: eps, samples: 1, computeGradients: false).kl
    }
    #expect(abs(total / Double(draws) - analytic) < 0.02 * max(1, analytic), "MC \(total / Double(draws)) vs analytic \(analytic)")
}

@Test func warmUpRampsTheKLWeightLinearly() throws {
    let objective = TrainingObjective(beta: 2, klWarmupEpochs: 4)
    #expect(objective.klWeight(afterEpochs: 0) == 0)
    #expect(objective.klWeight(afterEpochs: 1) == 0.5)
    #expect(objective.klWeight(afterEpochs: 3) == 1.5)
    #expect(objective.klWeight(afterEpochs: 4) == 2 && objective.klWeight(afterEpochs: 9) == 2)
    #expect(TrainingObjective(beta: 0.5).klWeight(afterEpochs: 0) == 0.5)

    // A trainer 1 epoch into a 4-epoch warm-up to β = 2 takes the gradient of recon + 0.5 KL.
    let x = randomTensor([6, 1, 2, 3], seed: 2, low: 0, high: 1)
    func gradients(_ body: (VariationalAutoencoder) -> Void) -> [[Float]] {
        let model = smallModel(seed: 6)
        body(model)
        return model.parameters.map { $0.gradient.toArray() }
    }
    let viaTrainer = gradients { model in
        let trainer = Trainer(model: model, optimizer: SGD(parameters: model.parameters, learningRate: 0), rng: RandomGenerator(seed: 9), objective: objective)
        trainer.epochsDone = 1
        _ = try! trainer.trainStep(x)
    }
    let direct = gradients { model in
        var rng = RandomGenerator(seed: 9)
        model.negativeELBO(x, rng: &rng, computeGradients: true, klWeight: 0.5)
    }
    for (a, b) in zip(viaTrainer, direct) { #expect(a == b) }
}

@Test(arguments: [1, 2])
func freeBitsGradientFloorsOnlyTheDimensionsBelowLambda(workers: Int) {
    let model = smallModel(activation: .tanh, seed: 8)
    let x = randomTensor([6, 1, 2, 3], seed: 4, low: 0, high: 1)
    // λ between the dimensions' batch-mean KLs, so some are floored and some are not.
    let sums = UnsafeMutablePointer<Double>.allocate(capacity: 3)
    sums.initialize(repeating: 0, count: 3)
    klSumsPerDimension(model.encode(x), into: sums)
    let means = (0..<3).map { sums[$0] / 6 }.sorted()
    sums.deallocate()
    let lambda = Float((means[0] + means[1]) / 2)
    let beta: Float = 1.5
    #expect(means[0] < Double(lambda) && means[2] > Double(lambda))

    // The objective by definition: mean reconstruction + β Σ_j max(λ, mean_b KL_bj), same ε.
    let loss = { () -> Double in
        var rng = RandomGenerator(seed: 3)
        let eps = Tensor(shape: [6, 3])
        rng.fillNormal(eps)
        let l = model.negativeELBO(x, noise: eps, computeGradients: false)
        let s = UnsafeMutablePointer<Double>.allocate(capacity: 3)
        s.initialize(repeating: 0, count: 3)
        defer { s.deallocate() }
        klSumsPerDimension(model.encode(x), into: s)
        return l.meanReconstruction + Double(beta) * (0..<3).reduce(0) { $0 + max(Double(lambda), s[$1] / 6) }
    }
    checkModelGradients(model, label: "free bits, \(workers) workers", loss: loss, computeGradients: {
        let trainer = Trainer(
            model: model, optimizer: SGD(parameters: model.parameters, learningRate: 0), rng: RandomGenerator(seed: 3),
            workers: workers, objective: TrainingObjective(beta: beta, freeBits: lambda))
        let reported = try! trainer.trainStep(x)
        #expect(abs(reported.meanObjective - loss()) < 1e-4)
    })
}

@Test func objectiveCombinationsAreValidated() {
    #expect(throws: ModelConfigError.self) { try TrainingObjective(beta: 2, importanceSamples: 5).validate() }
    #expect(throws: ModelConfigError.self) { try TrainingObjective(freeBits: 0.5, kl: .mc).validate() }
    #expect(throws: ModelConfigError.self) { try TrainingObjective(beta: -1).validate() }
    #expect(throws: ModelConfigError.self) { try TrainingObjective(importanceSamples: 0).validate() }
    #expect(throws: Never.self) { try TrainingObjective(beta: 4, klWarmupEpochs: 2, freeBits: 0.25).validate() }
}

@Test(arguments: [(1, KLEstimator.mc), (5, KLEstimator.analytic)])
func iwaeAndSampledKLTrainingLowersTheLossOnEveryWorkerCount(samples: Int, kl: KLEstimator) throws {
    let train = patternData(count: 256, size: 64, seed: 1)
    func run(workers: Int) throws -> [Double] {
        var rng = RandomGenerator(seed: 2)
        let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [32], latentDimension: 4), rng: &rng)
        let trainer = Trainer(
            model: model, optimizer: Adam(parameters: model.parameters, learningRate: 3e-3), rng: RandomGenerator(seed: 3),
            workers: workers, objective: TrainingObjective(importanceSamples: samples, kl: kl))
        return try (0..<6).map { _ in try trainer.trainEpoch(train, stepsInEpoch: train.count).meanObjective }
    }
    let one = try run(workers: 1), two = try run(workers: 2)
    #expect(one.last! < 0.9 * one.first!, "\(one)")
    for (a, b) in zip(one, two) { #expect(abs(a - b) <= 1e-3 * abs(a)) }
}
