import Foundation
import Testing
import TestSupport
@testable import Training
import VAE

/// A run of the two-stochastic-layer model (the ELBO, and the IWAE bound with K = 3), killed at
/// a few steps and resumed, ends with the files of the uninterrupted run; its checkpoint holds the
/// four networks under their names, and evaluation, log p(x) and the posterior's parameters work.
@Test(arguments: [1, 3])
func twoLayerRunsResumeIdenticallyAndEvaluate(samples: Int) throws {
    let dir = temporaryDirectory("two-layer-\(samples)")
    try writeTinyDataset(dir)
    var config = tinyConfig(dir, epochs: 3) { $0.objective = TrainingObjective(importanceSamples: samples) }
    config.model = ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 4, activation: .tanh, upperLatentDimension: 2, upperHiddenSizes: [8])
    let whole = RunFolder(path: dir + "/whole")
    let recorder = Recorder()
    recorder.onStep = { _, p in if [4, 11].contains(p.globalStep) { try? copyFolder(whole.path, to: "\(dir)/killed-\(p.globalStep)") } }
    #expect(try TrainingRun(creating: whole, config: config, parallelism: .batch(workers: 2)).train(observer: recorder) == .finished(epochs: 3))
    let expected = try finalFiles(whole.path)
    for step in [4, 11] {
        let folder = RunFolder(path: "\(dir)/killed-\(step)")
        _ = try TrainingRun(resuming: folder, parallelism: .batch(workers: 2)).train()
        #expect(try finalFiles(folder.path) == expected, "K = \(samples): killed after step \(step)")
    }
    // The trained model, loaded back: all four networks, the test figures reproducible.
    let run = try TrainedRun(whole)
    #expect(run.model.hasTwoStochasticLayers)
    let names = Set(run.model.namedParameters.map(\.name))
    #expect(names.isSuperset(of: ["encoder2.0.weight", "encoder2.2.bias", "decoder2.0.weight", "decoder2.2.bias"]))
    let figures = run.model.evaluate(run.testSet)
    #expect(figures == run.model.evaluate(run.testSet) && figures.meanNegativeELBO.isFinite)
    let estimate = run.model.logLikelihood(run.testSet, samples: 20, workers: 2)
    #expect(estimate.mean.isFinite && estimate.mean > -figures.meanNegativeELBO - 5, "log p(x) \(estimate.mean) against −ELBO \(figures.meanNegativeELBO)")
    let p = run.posteriorParameters()
    #expect(p.mu.count == 4 * run.testSet.count && p.upperMu.count == 2 * run.testSet.count && p.upperLogVariance.count == p.upperMu.count)
}

/// `--stochastic-layers 2` turns the IWAE preset into the paper's two-layer model.
@Test func theIWAEPresetHasATwoLayerForm() throws {
    let two = try Preset.expand(["train", "--preset", "iwae-paper", "--stochastic-layers", "2"])
    func value(_ flag: String, _ args: [String]) -> String? { args.lastIndex(of: flag).map { args[$0 + 1] } }
    #expect(value("--latent", two) == "100" && value("--latent2", two) == "50" && value("--hidden2", two) == "100,100" && value("--hidden", two) == "200,200")
    let one = try Preset.expand(["train", "--preset", "iwae-paper"])
    #expect(value("--latent", one) == "50" && value("--latent2", one) == nil)
    #expect(RunConfig(model: ModelConfig(upperLatentDimension: 2, upperHiddenSizes: [8]), training: TrainingConfig(dataset: .mnist, epochs: 1, batchSize: 4, objective: TrainingObjective(freeBits: 0.5)))
        .validationError?.contains("--free-bits cannot be used with --stochastic-layers 2") == true)
}

extension RunConfig {
    var validationError: String? {
        do { try validate(); return nil } catch { return "\(error)" }
    }
}
