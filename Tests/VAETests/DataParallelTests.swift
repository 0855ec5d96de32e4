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
