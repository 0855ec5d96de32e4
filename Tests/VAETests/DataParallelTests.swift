import NN
import Tensor
import Testing
import TestSupport
import VAE

/// Trains `steps` steps on `batch` with `workers` workers and returns the losses and weights.
func trainWith(workers: Int, batch: Tensor, steps: Int, optimizer makeOptimizer: ([Parameter]) -> Optimizer) -> ([Double], [[Float]]) {
    var rng = RandomGenerator(seed: 1)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 3, 4], hiddenSizes: [10, 6], latentDimension: 3), rng: &rng)
    let trainer = Trainer(model: model, optimizer: makeOptimizer(model.parameters), rng: RandomGenerator(seed: 2), workers: workers)
    let losses = (0..<steps).map { _ in try! trainer.trainStep(batch).meanNegativeELBO }
    return (losses, model.parameters.map { $0.value.toArray() })
}

@Test(arguments: [2, 3])
func splittingTheBatchAcrossWorkersGivesTheSameStep(workers: Int) {
    let batch = randomTensor([7, 1, 3, 4], seed: 3, low: 0, high: 1)
    let sgd = { (p: [Parameter]) -> Optimizer in SGD(parameters: p, learningRate: 0.05) }
    let (serialLoss, serialWeights) = trainWith(workers: 1, batch: batch, steps: 3, optimizer: sgd)
    let (parallelLoss, parallelWeights) = trainWith(workers: workers, batch: batch, steps: 3, optimizer: sgd)
    for (a, b) in zip(serialLoss, parallelLoss) { #expect(abs(a - b) <= 1e-5 * abs(a)) }
    for (a, b) in zip(serialWeights, parallelWeights) {
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5 * max(1, abs(x))) }
    }
}

@Test func moreWorkersThanRowsLeavesTheIdleOnesOut() {
    let batch = randomTensor([2, 1, 3, 4], seed: 4, low: 0, high: 1)
    let adam = { (p: [Parameter]) -> Optimizer in Adam(parameters: p, learningRate: 0.01) }
    // First a long batch so every worker has stale gradients, then the short one.
    let long = randomTensor([9, 1, 3, 4], seed: 5, low: 0, high: 1)
    func run(_ workers: Int) -> [[Float]] {
        var rng = RandomGenerator(seed: 1)
        let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 3, 4], hiddenSizes: [10], latentDimension: 3), rng: &rng)
        let trainer = Trainer(model: model, optimizer: adam(model.parameters), rng: RandomGenerator(seed: 2), workers: workers)
        _ = try! trainer.trainStep(long)
        _ = try! trainer.trainStep(batch)
        return model.parameters.map { $0.value.toArray() }
    }
    for (a, b) in zip(run(1), run(4)) {
        for (x, y) in zip(a, b) { #expect(abs(x - y) <= 1e-5 * max(1, abs(x))) }
    }
}

@Test func replicasShareWeightsButNotGradients() {
    var rng = RandomGenerator(seed: 1)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 2, 2], hiddenSizes: [3], latentDimension: 2), rng: &rng)
    let copy = model.replica()
    #expect(copy.namedParameters.map(\.name) == model.namedParameters.map(\.name))
    for (p, q) in zip(model.parameters, copy.parameters) {
        #expect(p.value === q.value)
        #expect(p.gradient !== q.gradient)
    }
}

@Test func parallelInferenceMatchesSerial() {
    var rng = RandomGenerator(seed: 1)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [8], latentDimension: 2), rng: &rng)
    let x = randomTensor([11, 1, 2, 3], seed: 2, low: 0, high: 1)
    let serial = model.reconstruct(x).toArray()
    let parallel = Tensor(shape: [11, 1, 2, 3])
    DataParallel(model: model, workers: 3).map(x, into: parallel) { w, xs, _, out in w.reconstruct(xs, into: out) }
    // The same values, up to float rounding: OpenBLAS's kernels may round a product's rows
    // differently by the row count (its generic SSE3 kernel and its AVX2 ones do: 1 ulp here).
    let worst = zip(parallel.toArray(), serial).map { abs($0 - $1) / max(abs($1), 1e-6) }.max() ?? 0
    #expect(worst <= 1e-6, "largest relative difference \(worst)")
}

/// With counter-based noise, step t's ε is Philox stream t of the noise seed: the loss a step
/// reports equals the −ELBO computed from the same weights with that stream's numbers, and the
/// sequential generator's state plays no part (so a resume needs none).
@Test(arguments: [1, 2])
func counterNoiseDrawsStepTsEpsilonFromStreamT(workers: Int) {
    let batch = randomTensor([6, 1, 3, 4], seed: 6, low: 0, high: 1)
    func makeTrainer() -> (VariationalAutoencoder, Trainer) {
        var rng = RandomGenerator(seed: 1)
        let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 3, 4], hiddenSizes: [10], latentDimension: 3), rng: &rng)
        let trainer = Trainer(model: model, optimizer: Adam(parameters: model.parameters, learningRate: 0.01), rng: RandomGenerator(seed: 2), workers: workers)
        trainer.counterNoise = CounterNoise(seed: 77)
        return (model, trainer)
    }
    let (model, trainer) = makeTrainer()
    for t in 0..<3 {
        // The reference: a copy of the weights before step t, with stream t's numbers as ε.
        var copyRNG = RandomGenerator(seed: 1)
        let reference = VariationalAutoencoder(config: model.config, rng: &copyRNG)
        for (p, q) in zip(reference.parameters, model.parameters) { p.value.copy(from: q.value) }
        let eps = Tensor(shape: [6, 3], values: CounterNoise(seed: 77).normals(stream: UInt64(t), count: 18))
        let expected = reference.negativeELBO(batch, noise: eps, computeGradients: false)
        let reported = try! trainer.trainStep(batch)
        #expect(abs(reported.meanNegativeELBO - expected.meanNegativeELBO) <= 1e-5 * abs(expected.meanNegativeELBO),
                "step \(t): \(reported.meanNegativeELBO) against \(expected.meanNegativeELBO)")
    }
    // Another trainer whose sequential generator is disturbed midway ends with the same weights.
    let (other, disturbed) = makeTrainer()
    _ = try! disturbed.trainStep(batch)
    disturbed.rng = RandomGenerator(seed: 999)
    _ = try! disturbed.trainStep(batch)
    _ = try! disturbed.trainStep(batch)
    #expect(other.parameters.map { $0.value.toArray() } == model.parameters.map { $0.value.toArray() })
}
