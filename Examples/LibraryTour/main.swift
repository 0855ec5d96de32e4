import SwiftVAE

// The classic VAE on Fashion-MNIST for one epoch, through the library's training run.
let training = TrainingConfig(dataset: .fashionMNIST, epochs: 1)
let data = try training.loadData()
let model = ModelConfig(inputShape: data.inputShape, hiddenSizes: [400], latentDimension: 20)
let folder = RunFolder(path: CommandLine.arguments.dropFirst().first ?? "runs/library-tour")
let run = try TrainingRun(
    creating: folder, config: RunConfig(model: model, training: training), data: data, replacing: true)

final class EpochPrinter: TrainingObserver {
    func epochDone(_ run: TrainingRun, _ e: EpochSummary) {
        let test = e.test.map { fixed($0.meanNegativeELBO, 2) } ?? "not evaluated"  // see testEvery
        print("epoch \(e.epoch): train −ELBO \(fixed(e.train.meanNegativeELBO, 2)), test −ELBO \(test)")
    }
}
print(try run.train(observer: EpochPrinter()))

// The test −ELBO and an importance-sampled log p(x) (K = 100) on 1,000 test images.
let test = data.test.prefix(1000)
let elbo = run.model.evaluate(test).meanNegativeELBO
let logPx = run.model.logLikelihood(test, samples: 100)
print("test −ELBO \(fixed(elbo, 2)), log p(x) \(fixed(logPx.mean, 2)) ± \(fixed(logPx.standardError, 2)) nats")

// 64 samples as a PNG grid; then the saved run, loaded back.
try PNG.write(Pictures.samples(run.model, count: 64, seed: 7), to: folder.path + "/tour-samples.png")
let (loaded, config) = try folder.loadModel()
print("reloaded \(config.model.summary): test −ELBO \(fixed(loaded.evaluate(test).meanNegativeELBO, 2))")
