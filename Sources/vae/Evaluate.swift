import ArgumentParser
import Datasets
import Foundation
import VAE

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Report a trained model's test-set −ELBO, reconstruction term and KL (nats per image).",
        discussion: """
            One ε sample per image is drawn from a fixed seed, so the same run always gives the
            same figures. `elbo` in the JSON output is the negative ELBO, the figure training lowers.
            """
    )

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run"))
    var runFolder: String

    @Flag(help: "Print one JSON object with the keys elbo, reconstruction, kl, images.")
    var json = false

    func run() throws {
        let (model, config) = try RunFolder(path: runFolder).loadModel()
        let testSet = try config.training.loadTestSet()
        let loader = BatchLoader(dataset: testSet, batchSize: 1000, shuffle: false)
        let loss = model.evaluate(loader.epoch(), seed: RunFolder.evaluationSeed)
        if json {
            let object: [String: Any] = [
                "elbo": loss.meanNegativeELBO, "reconstruction": loss.meanReconstruction,
                "kl": loss.meanKL, "images": loss.images, "dataset": config.training.dataset,
                "binarized": config.training.binarize,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(runFolder): test set of \(loss.images) images (\(config.training.dataset)\(config.training.binarize ? ", binarised" : ""))")
            print("  −ELBO           \(fixed(loss.meanNegativeELBO, 3)) nats/image")
            print("  reconstruction  \(fixed(loss.meanReconstruction, 3)) nats/image")
            print("  KL              \(fixed(loss.meanKL, 3)) nats/image")
        }
    }
}
