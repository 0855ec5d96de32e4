import ArgumentParser
import Foundation
import Datasets
import Files
import Imaging
import NN
import Tensor
import VAE

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE and write its run folder (weights, config, metrics, pictures).",
        discussion: """
            Defaults are the classic MLP VAE (784 → 400 → 20 → 400 → 784, ReLU,
            Bernoulli likelihood on logits, Adam 1e-3, batch 128, 10 epochs) on
            Fashion-MNIST.

            After each epoch the test-set −ELBO is computed (one ε per image from a
            fixed seed) and a row is added to RUN/metrics.csv. At the end RUN/ holds
            model.safetensors, config.json, metrics.csv, reconstructions.png and
            samples.png.

            Likelihoods, and which fits which data:
              bernoulli        pixel = coin with probability sigmoid(output): binary
                               data (--binarize), or grey values in [0, 1] as the
                               classic cross-entropy (not a normalised density).
              gaussian         regression loss with a fixed σ (--sigma): continuous
                               values; a smaller σ weighs reconstruction more.
              gaussian-shared  one σ learned with the model (starts at --sigma).
              gaussian-pixel   a σ per pixel from the decoder (floored at 0.01): the
                               most flexible; rewards tiny σ on constant pixels.
            Gaussian figures are densities and can be positive; do not compare them
            with Bernoulli figures.

            Objectives: the ELBO (default), β-VAE (--beta), KL warm-up (--kl-warmup),
            free bits (--free-bits), the IWAE bound (--iwae K), and an analytic or
            sampled KL (--kl).
            """
    )

    @Option(help: "Data set: fashion-mnist (installed by scripts/setup.sh) or mnist (needs --data-dir).")
    var dataset: String = DatasetName.fashionMNIST.rawValue

    @Option(help: ArgumentHelp("Folder with the four standard IDX files (gzipped or not).", valueName: "dir"))
    var dataDir: String?

    @Option(help: "Passes over the training set.")
    var epochs: Int = 10

    @Option(help: "Images per optimiser step.")
    var batchSize: Int = 128

    @Option(help: "Network: mlp (fully connected, --hidden) or conv (convolutional, --channels).")
    var arch: String = "mlp"

    @Option(help: ArgumentHelp("Convolution channels for --arch conv, comma separated; each layer (kernel 4, stride 2, padding 1) halves the image.", valueName: "widths"))
    var channels: String = "32,64"

    @Option(help: "How the conv decoder doubles the resolution: transposed (transposed convolution) or nearest (nearest upsampling, then a 3×3 convolution).")
    var upsampling: String = Upsampling.transposed.rawValue

    @Flag(help: "Conditional VAE: the one-hot label joins the encoder's and the decoder's input (sample a class with `vae sample --label`).")
    var conditional = false

    @Option(help: "Dimension of the latent code z.")
    var latent: Int = 20

    @Option(help: ArgumentHelp("Hidden layer widths, comma separated (e.g. 512,256); the decoder mirrors them.", valueName: "sizes"))
    var hidden: String = "400"

    @Option(help: "Hidden activation: \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var activation: String = ActivationKind.relu.rawValue

    @Option(help: "Adam learning rate.")
    var lr: Float = 1e-3

    @Option(help: "Seed for initialisation, data order, ε and binarisation: same seed, same numbers.")
    var seed: UInt64 = 1

    @Option(help: "Decoder likelihood: bernoulli, gaussian (fixed σ), gaussian-shared (learned σ) or gaussian-pixel (σ per pixel); see below.")
    var likelihood: String = LikelihoodKind.bernoulli.rawValue

    @Option(help: "σ of the gaussian likelihood (the starting σ of gaussian-shared), in pixel units of [0, 1].")
    var sigma: Float = 0.1

    @Option(help: "β: weight of the KL term (β-VAE; 1 is the ELBO).")
    var beta: Float = 1

    @Option(help: ArgumentHelp("Raise the KL weight linearly from 0 to β over this many epochs (0: no warm-up).", valueName: "epochs"))
    var klWarmup: Double = 0

    @Option(help: ArgumentHelp("Free bits λ: each latent dimension's batch-mean KL counts as at least λ nats, so dimensions below it feel no KL pressure (Kingma et al., 2016).", valueName: "λ"))
    var freeBits: Float = 0

    @Option(help: ArgumentHelp("Train on the IWAE bound with K importance samples per image (1: the ELBO).", valueName: "K"))
    var iwae: Int = 1

    @Option(help: "KL term: analytic (closed form) or mc (one-sample Monte Carlo, log q(z|x) − log p(z)).")
    var kl: String = KLEstimator.analytic.rawValue

    @Flag(help: "Dynamic binarisation: each training pixel is resampled as Bernoulli(grey value) every time it is drawn; the test set is binarised once with seed 0.")
    var binarize = false

    @OptionGroup var threading: ThreadingOptions

    @Option(help: ArgumentHelp("Run folder to write.", valueName: "run"))
    var out: String = "runs/default"

    @Flag(help: "Overwrite a run folder that already holds a model.")
    var force = false

    func validate() throws {
        guard DatasetName(rawValue: dataset) != nil else {
            throw ValidationError("unknown dataset '\(dataset)'; choose \(DatasetName.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard batchSize >= 1 && batchSize <= 65536 else { throw ValidationError("--batch-size must be between 1 and 65536") }
        guard latent >= 1 && latent <= 4096 else { throw ValidationError("--latent must be between 1 and 4096") }
        guard lr.isFinite && lr > 0 else { throw ValidationError("--lr must be a positive number") }
        guard sigma.isFinite && sigma > 0 else { throw ValidationError("--sigma must be a positive number") }
        guard LikelihoodKind(rawValue: likelihood) != nil else {
            throw ValidationError("unknown likelihood '\(likelihood)'; choose \(LikelihoodKind.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        guard ActivationKind(rawValue: activation) != nil else {
            throw ValidationError("unknown activation '\(activation)'; choose \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        _ = try hiddenSizes()
        _ = try channelWidths()
        guard arch == "mlp" || arch == "conv" else { throw ValidationError("--arch must be mlp or conv") }
        guard Upsampling(rawValue: upsampling) != nil else { throw ValidationError("--upsampling must be transposed or nearest") }
        try threading.validate()
        do {
            try objective().validate()
        } catch let error as ModelConfigError {
            throw ValidationError(error.message)
        }
    }

    func objective() throws -> TrainingObjective {
        guard let estimator = KLEstimator(rawValue: kl) else { throw ValidationError("--kl must be analytic or mc") }
        return TrainingObjective(beta: beta, klWarmupEpochs: klWarmup, freeBits: freeBits, importanceSamples: iwae, kl: estimator)
    }

    func channelWidths() throws -> [Int] {
        let parts = channels.split(separator: ",", omittingEmptySubsequences: false)
        let widths = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard widths.count == parts.count, !widths.isEmpty, widths.count <= 6, widths.allSatisfy({ $0 >= 1 && $0 <= 4096 }) else {
            throw ValidationError("--channels must be 1 to 6 positive integers separated by commas, e.g. 32,64")
        }
        return widths
    }

    func hiddenSizes() throws -> [Int] {
        let parts = hidden.split(separator: ",", omittingEmptySubsequences: false)
        let sizes = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.count == parts.count, sizes.allSatisfy({ $0 >= 1 && $0 <= 65536 }) else {
            throw ValidationError("--hidden must be positive integers separated by commas, e.g. 400 or 512,256")
        }
        return sizes
    }

    func run() throws {
        let workers = threading.configure()
        let folder = RunFolder(path: out)
        if Files.exists(folder.modelPath) && !force {
            throw CLIError("\(out) already holds a trained model; choose another --out or pass --force to overwrite it")
        }
        let name = DatasetName(rawValue: dataset)!
        var trainSet = try name.load(.train, directory: dataDir)
        let training = TrainingConfig(
            dataset: dataset, dataDirectory: dataDir, epochs: epochs, batchSize: batchSize,
            learningRate: lr, seed: seed, binarize: binarize, testBinarizationSeed: RunFolder.testBinarizationSeed,
            objective: try objective())
        let testSet = try training.loadTestSet()
        if let limit = ProcessEnvironment.trainLimit { trainSet = trainSet.prefix(limit) }
        let modelConfig = ModelConfig(
            architecture: arch, inputShape: trainSet.shape, hiddenSizes: try hiddenSizes(), latentDimension: latent,
            activation: ActivationKind(rawValue: activation)!, likelihood: LikelihoodKind(rawValue: likelihood)!,
            gaussianSigma: sigma, channels: try channelWidths(), upsampling: Upsampling(rawValue: upsampling)!,
            conditionClasses: conditional ? name.classNames.count : 0)
        do {
            try modelConfig.validate()
        } catch let error as ModelConfigError {
            throw CLIError(error.message)
        }
        if conditional && trainSet.labels == nil { throw CLIError("--conditional needs labels, and the training data has none") }
        let runConfig = RunConfig(model: modelConfig, training: training)

        // Independent streams from one seed: initialisation, data order/binarisation, ε.
        var initRNG = RandomGenerator(seed: seed)
        let model = VariationalAutoencoder(config: modelConfig, rng: &initRNG)
        let optimizer = Adam(parameters: model.parameters, learningRate: lr)
        let trainer = Trainer(
            model: model, optimizer: optimizer, rng: RandomGenerator(seed: seed &+ 0x5EED_0002), workers: workers,
            objective: try objective())
        let loader = BatchLoader(
            dataset: trainSet, batchSize: batchSize, shuffle: true, binarize: binarize, seed: seed &+ 0x5EED_0001,
            conditionClasses: modelConfig.conditionClasses)
        let testLoader = makeLoader(testSet, batchSize: 1000, for: model)

        try Files.createDirectory(out)
        try folder.writeConfig(runConfig)
        var metrics = MetricsFile(path: folder.metricsPath, latentDimension: latent)

        print("vae train: \(describe(modelConfig)), \(likelihood) likelihood, \(model.parameterCount) parameters; \(dataset)\(binarize ? " (binarised)" : ""): \(trainSet.count) train / \(testSet.count) test images")
        print("\(threading.summary(workers: workers)); batch \(batchSize), Adam lr \(lr), seed \(seed) → \(out)/")
        print("objective: \(describe(try objective()))")
        KernelCheck.warnIfSlow()

        var progress = ProgressReporter(epochs: epochs)
        for epoch in 1...epochs {
            let start = now()
            let trainLoss: LossBreakdown
            do {
                trainLoss = try trainer.trainEpoch(loader.epoch(), stepsInEpoch: loader.batchesPerEpoch, condition: { loader.lastCondition }) { p in
                    progress.update(epoch: epoch, progress: p, elapsed: now() - start)
                }
            } catch let error as NonFiniteLossError {
                progress.endEpoch()
                throw CLIError("epoch \(epoch): \(error.description). The last saved model in \(out)/ is unchanged.")
            }
            let seconds = now() - start
            progress.endEpoch()
            let testLoss = model.evaluate(testLoader.epoch(), seed: RunFolder.evaluationSeed) { testLoader.lastCondition }
            let stats = model.latentStatistics(testLoader.epoch()) { testLoader.lastCondition }
            let rate = Double(trainLoss.images) / seconds
            try metrics.append(
                epoch: epoch, train: trainLoss, test: testLoss, seconds: seconds, imagesPerSecond: rate,
                klWeight: Double(trainer.objective.klWeight(afterEpochs: Double(epoch - 1))), latent: stats)
            try Checkpoint.save(model, to: folder.modelPath, metadata: ["epoch": "\(epoch)"])
            print("epoch \(epoch)/\(epochs)  train −ELBO \(fixed(trainLoss.meanNegativeELBO, 2))  test −ELBO \(fixed(testLoss.meanNegativeELBO, 2)) (reconstruction \(fixed(testLoss.meanReconstruction, 2)) + KL \(fixed(testLoss.meanKL, 2)))  \(fixed(seconds, 2)) s  \(Int(rate)) img/s")
        }
        try PNG.write(Pictures.reconstructions(model, testSet: testSet, count: 32), to: folder.reconstructionsPath)
        let samples = modelConfig.isConditional
            ? Pictures.samplesPerClass(model, perClass: 8, seed: seed)
            : Pictures.samples(model, count: 64, seed: seed)
        try PNG.write(samples, to: folder.samplesPath)
        print("wrote \(folder.modelPath), \(folder.metricsPath), \(folder.reconstructionsPath), \(folder.samplesPath)")
    }
}

/// Settings read from the environment, for tests and quick experiments.
enum ProcessEnvironment {
    /// `VAE_TRAIN_LIMIT=N` trains on the first N training images only.
    static var trainLimit: Int? {
        guard let value = getenv("VAE_TRAIN_LIMIT") else { return nil }
        return Int(String(cString: value)).flatMap { $0 > 0 ? $0 : nil }
    }
}

/// `metrics.csv`: one row per epoch, rewritten atomically after each epoch.
struct MetricsFile {
    let path: String
    private var lines: [String]

    init(path: String, latentDimension: Int) {
        self.path = path
        let columns = ["epoch", "train_neg_elbo", "train_reconstruction", "train_kl", "train_objective",
                       "test_neg_elbo", "test_reconstruction", "test_kl", "seconds", "images_per_second",
                       "kl_weight", "active_units"] + (1...latentDimension).map { "kl_dim_\($0)" }
        lines = [columns.joined(separator: ",")]
    }

    mutating func append(
        epoch: Int, train: LossBreakdown, test: LossBreakdown, seconds: Double, imagesPerSecond: Double,
        klWeight: Double, latent: LatentStatistics
    ) throws {
        let values = [
            train.meanNegativeELBO, train.meanReconstruction, train.meanKL, train.meanObjective,
            test.meanNegativeELBO, test.meanReconstruction, test.meanKL,
        ].map { fixed($0, 4) }
        let tail = [fixed(seconds, 3), fixed(imagesPerSecond, 0), fixed(klWeight, 4), "\(latent.activeUnits())"]
            + latent.klPerDimension.map { fixed($0, 4) }
        lines.append((["\(epoch)"] + values + tail).joined(separator: ","))
        try Files.writeAtomically(lines.joined(separator: "\n") + "\n", to: path)
    }
}

/// One line naming the network.
func describe(_ c: ModelConfig) -> String {
    let shape = c.inputShape.map(String.init).joined(separator: "×")
    let kind = c.isConditional ? "conditional " : ""
    if c.architecture == "conv" {
        return "\(kind)conv VAE \(shape) → channels \(c.channels.map(String.init).joined(separator: ",")) → z \(c.latentDimension) (\(c.upsampling.rawValue) upsampling)"
    }
    return "\(kind)MLP VAE " + ([c.inputSize] + c.hiddenSizes + [c.latentDimension]).map(String.init).joined(separator: "-")
}

/// One line naming what training minimises.
func describe(_ o: TrainingObjective) -> String {
    if o.importanceSamples > 1 { return "IWAE bound with K = \(o.importanceSamples) importance samples" }
    var parts = ["−ELBO (\(o.kl == .analytic ? "analytic" : "one-sample Monte-Carlo") KL)"]
    if o.beta != 1 { parts.append("β = \(o.beta)") }
    if o.klWarmupEpochs > 0 { parts.append("KL warm-up over \(fixed(o.klWarmupEpochs, 1)) epochs") }
    if o.freeBits > 0 { parts.append("free bits λ = \(o.freeBits) nats per dimension") }
    return parts.joined(separator: ", ")
}
