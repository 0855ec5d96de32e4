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
            Defaults are the classic MLP VAE (784 → 400 → 20 → 400 → 784, ReLU, \
            Bernoulli likelihood on logits, Adam 1e-3, batch 128, 10 epochs) on \
            Fashion-MNIST.

            After each epoch the test-set −ELBO is computed (one ε per image from a \
            fixed seed) and a row is added to RUN/metrics.csv. At the end RUN/ holds \
            model.safetensors, config.json, metrics.csv, reconstructions.png and \
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
            Gaussian figures are densities and can be positive; do not compare them \
            with Bernoulli figures.

            Objectives: the ELBO (default), β-VAE (--beta), KL warm-up (--kl-warmup), \
            free bits (--free-bits), the IWAE bound (--iwae K), and an analytic or \
            sampled KL (--kl).
            """
    )

    @Option(help: "Data set: fashion-mnist (installed by scripts/setup.sh) or mnist (needs --data-dir).")
    var dataset: String = DatasetName.fashionMNIST.rawValue

    @Option(help: ArgumentHelp("Folder with the four standard IDX files (gzipped or not).", valueName: "dir"))
    var dataDir: String?

    @Option(help: ArgumentHelp("Your own images: a .npy file (uint8, float32 or float64; [N,H,W], [N,C,H,W] or [N,D]), a .csv file (one image per row, optional header with a 'label' column), or a folder of .png files (grey or RGB, one size; class sub-folders give labels).", valueName: "path"))
    var data: String?

    @Option(help: ArgumentHelp("Labels for --data: a .npy array of N whole numbers.", valueName: "file.npy"))
    var labels: String?

    @Option(help: ArgumentHelp("Test images for --data (same formats); without it, --test-split is held out.", valueName: "path"))
    var testData: String?

    @Option(help: ArgumentHelp("Labels for --test-data.", valueName: "file.npy"))
    var testLabels: String?

    @Option(help: ArgumentHelp("Fraction of --data held out as the test set (seeded), when there is no --test-data.", valueName: "fraction"))
    var testSplit: Double = 0.1

    @Option(help: ArgumentHelp("Shape of each example for flat rows ([N, D] arrays, CSV), e.g. 1,28,28 (default 1,1,D).", valueName: "c,h,w"))
    var imageShape: String?

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

    @Flag(help: "Write into a run folder that is not empty (its model and checkpoint are replaced).")
    var force = false

    @Option(help: ArgumentHelp("Continue the interrupted run in this folder exactly where its last checkpoint left it (its config.json decides everything else).", valueName: "run"))
    var resume: String?

    @Option(help: ArgumentHelp("Also save a training checkpoint every N steps (one is always saved after each epoch).", valueName: "N"))
    var checkpointEvery: Int = 0

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
        guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every must be 0 or more steps") }
        guard testSplit > 0 && testSplit < 1 else { throw ValidationError("--test-split must be between 0 and 1") }
        if data == nil && (labels != nil || testData != nil || testLabels != nil) {
            throw ValidationError("--labels, --test-data and --test-labels go with --data")
        }
        if testLabels != nil && testData == nil { throw ValidationError("--test-labels needs --test-data") }
        _ = try parsedImageShape()
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
        let folder = RunFolder(path: resume ?? out)
        let runConfig: RunConfig
        if resume != nil {
            runConfig = try folder.readConfig()
            guard Files.exists(folder.checkpointPath) else {
                throw CLIError("\(folder.checkpointPath): no training checkpoint to resume from")
            }
        } else {
            try refuseNonEmpty(folder)
            runConfig = try newRunConfig()
        }
        let training = runConfig.training, modelConfig = runConfig.model
        let objective = training.objective ?? TrainingObjective()
        let splits = try training.loadSplits()
        let trainSet = splits.train
        let testSet = training.binarize ? splits.test.binarized(seed: training.testBinarizationSeed) : splits.test
        guard trainSet.shape == modelConfig.inputShape else {
            throw CLIError("the training images are \(trainSet.shape), the model expects \(modelConfig.inputShape)")
        }
        if modelConfig.isConditional {
            guard let l = trainSet.labels, let t = testSet.labels else { throw CLIError("--conditional needs labels for the training and the test images") }
            guard (l + t).allSatisfy({ $0 < modelConfig.conditionClasses }) else {
                throw CLIError("the model knows labels 0…\(modelConfig.conditionClasses - 1), and the data have larger ones")
            }
        }

        // Independent streams from one seed: initialisation, data order/binarisation, ε.
        var initRNG = RandomGenerator(seed: training.seed)
        let model = VariationalAutoencoder(config: modelConfig, rng: &initRNG)
        let optimizer = Adam(parameters: model.parameters, learningRate: training.learningRate)
        let trainer = Trainer(
            model: model, optimizer: optimizer, rng: RandomGenerator(seed: training.seed &+ 0x5EED_0002), workers: workers,
            objective: objective)
        let loader = BatchLoader(
            dataset: trainSet, batchSize: training.batchSize, shuffle: true, binarize: training.binarize,
            seed: training.seed &+ 0x5EED_0001, conditionClasses: modelConfig.conditionClasses)
        let testLoader = makeLoader(testSet, batchSize: 1000, for: model)

        var start = TrainingState(
            epoch: 0, batchIndex: 0, step: 0, noiseRNG: trainer.rng.state, dataRNG: loader.rng.state,
            order: loader.currentOrder, partialLoss: LossBreakdown(), elapsed: 0, workers: workers)
        var metrics: MetricsFile
        if resume != nil {
            start = try Checkpoint.loadTraining(folder.checkpointPath, into: model, optimizer: optimizer, examples: trainSet.count)
            trainer.rng = RandomGenerator(state: start.noiseRNG)!
            loader.rng = RandomGenerator(state: start.dataRNG)!
            loader.currentOrder = start.order
            trainer.step = start.step
            metrics = try MetricsFile(resuming: folder.metricsPath, latentDimension: modelConfig.latentDimension, completedEpochs: start.epoch)
            if start.workers != workers {
                printWarning("the run used \(start.workers) batch workers and this resume uses \(workers): the result will differ from an uninterrupted run by rounding (use --threads \(start.workers) for identical numbers)")
            }
            guard start.epoch < training.epochs else {
                print("\(folder.path) has finished all \(training.epochs) epochs; nothing to resume")
                return
            }
            print("vae train: resuming \(folder.path) at epoch \(start.epoch + 1), step \(start.batchIndex) of the epoch (\(start.step) steps done)")
        } else {
            try Files.createDirectory(folder.path)
            try folder.writeConfig(runConfig)
            metrics = MetricsFile(path: folder.metricsPath, latentDimension: modelConfig.latentDimension)
        }

        print("vae train: \(threading.summary(workers: workers))")
        print("\(describe(modelConfig)), \(modelConfig.likelihood.rawValue) likelihood, \(model.parameterCount) parameters; \(training.dataset)\(training.binarize ? " (binarised)" : ""): \(trainSet.count) train / \(testSet.count) test images")
        print("batch \(training.batchSize), Adam lr \(training.learningRate), seed \(training.seed) → \(folder.path)/")
        print("objective: \(describe(objective))")
        KernelCheck.warnIfSlow()
        StopSignal.install()

        var progress = ProgressReporter(epochs: training.epochs)
        let steps = loader.batchesPerEpoch
        for epoch in start.epoch..<training.epochs {
            let resuming = epoch == start.epoch && start.batchIndex > 0
            var index = resuming ? start.batchIndex : 0
            var trainLoss = epoch == start.epoch ? start.partialLoss : LossBreakdown()
            let startTime = now() - (epoch == start.epoch ? start.elapsed : 0)
            func state() -> TrainingState {
                TrainingState(
                    epoch: epoch, batchIndex: index, step: trainer.step, noiseRNG: trainer.rng.state, dataRNG: loader.rng.state,
                    order: loader.currentOrder, partialLoss: trainLoss, elapsed: now() - startTime, workers: workers)
            }
            for batch in resuming ? loader.resumeEpoch(atBatch: index) : loader.epoch() {
                trainer.epochsDone = Double(epoch) + Double(index) / Double(steps)
                do {
                    trainLoss += try trainer.trainStep(batch, condition: loader.lastCondition)
                } catch is NonFiniteLossError {
                    progress.endEpoch()
                    let saved = Files.exists(folder.checkpointPath) ? "the last checkpoint in \(folder.path)/ is unchanged" : "nothing had been saved yet"
                    throw CLIError("epoch \(epoch + 1), step \(index + 1): the loss became non-finite; \(NonFiniteLossError.hint) (\(saved))")
                }
                index += 1
                progress.update(
                    epoch: epoch + 1, progress: StepProgress(step: index, stepsInEpoch: steps, imagesSeen: trainLoss.images, runningLoss: trainLoss.meanNegativeELBO),
                    elapsed: now() - startTime)
                if checkpointEvery > 0 && trainer.step % checkpointEvery == 0 && index < steps {
                    try Checkpoint.saveTraining(model, optimizer: optimizer, state: state(), to: folder.checkpointPath)
                }
                if let signal = StopSignal.received {
                    progress.endEpoch()
                    try Checkpoint.saveTraining(model, optimizer: optimizer, state: state(), to: folder.checkpointPath)
                    print("vae train: stopped by \(signal == SIGINT ? "SIGINT" : "SIGTERM") at epoch \(epoch + 1), step \(index) of \(steps); checkpoint saved")
                    print("continue with: vae train --resume \(folder.path)")
                    throw ExitCode(128 + signal)
                }
            }
            let seconds = now() - startTime
            progress.endEpoch()
            let testLoss = model.evaluate(testLoader.epoch(), seed: RunFolder.evaluationSeed) { testLoader.lastCondition }
            let stats = model.latentStatistics(testLoader.epoch()) { testLoader.lastCondition }
            let rate = Double(trainLoss.images) / seconds
            try metrics.append(
                epoch: epoch + 1, train: trainLoss, test: testLoss, seconds: seconds, imagesPerSecond: rate,
                klWeight: Double(objective.klWeight(afterEpochs: Double(epoch))), latent: stats)
            try Checkpoint.save(model, to: folder.modelPath, metadata: ["epoch": "\(epoch + 1)"])
            index = 0
            trainLoss = LossBreakdown()
            var next = state()
            next.epoch = epoch + 1
            next.elapsed = 0
            try Checkpoint.saveTraining(model, optimizer: optimizer, state: next, to: folder.checkpointPath)
            print("epoch \(epoch + 1)/\(training.epochs)  train −ELBO \(fixed(metrics.lastTrainLoss, 2))  test −ELBO \(fixed(testLoss.meanNegativeELBO, 2)) (reconstruction \(fixed(testLoss.meanReconstruction, 2)) + KL \(fixed(testLoss.meanKL, 2)))  \(fixed(seconds, 2)) s  \(Int(rate)) img/s")
        }
        try PNG.write(Pictures.reconstructions(model, testSet: testSet, count: 32), to: folder.reconstructionsPath)
        let samples = modelConfig.isConditional
            ? Pictures.samplesPerClass(model, perClass: 8, seed: training.seed)
            : Pictures.samples(model, count: 64, seed: training.seed)
        try PNG.write(samples, to: folder.samplesPath)
        print("wrote \(folder.modelPath), \(folder.metricsPath), \(folder.reconstructionsPath), \(folder.samplesPath)")
    }

    func parsedImageShape() throws -> [Int]? {
        guard let imageShape else { return nil }
        let parts = imageShape.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 3, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 14 }) else {
            throw ValidationError("--image-shape must be three positive sizes, channels,height,width (e.g. 1,28,28)")
        }
        return parts
    }

    /// The run's configuration from the flags.
    func newRunConfig() throws -> RunConfig {
        let name = DatasetName(rawValue: dataset)!
        var training = TrainingConfig(
            dataset: data == nil ? dataset : TrainingConfig.userData, dataDirectory: dataDir, epochs: epochs, batchSize: batchSize,
            learningRate: lr, seed: seed, binarize: binarize, testBinarizationSeed: RunFolder.testBinarizationSeed,
            objective: try objective(), dataPath: data.map(absolutePath), labelsPath: labels.map(absolutePath),
            testDataPath: testData.map(absolutePath), testLabelsPath: testLabels.map(absolutePath),
            testSplit: data == nil || testData != nil ? nil : testSplit, imageShape: try parsedImageShape())
        var shape: [Int]
        var classes = name.classNames.count
        if data == nil {
            shape = try name.load(.test, directory: dataDir).shape
        } else {
            // Your own data: the classes are the labels that occur (0 … largest).
            let splits = try training.loadSplits()
            shape = splits.train.shape
            let largest = ((splits.train.labels ?? []) + (splits.test.labels ?? [])).max() ?? -1
            classes = largest + 1
            training.userClassNames = splits.train.classNames ?? (0..<max(classes, 1)).map { "class \($0)" }
            if conditional && classes < 2 { throw CLIError("--conditional needs labels with at least two classes") }
        }
        let modelConfig = ModelConfig(
            architecture: arch, inputShape: shape, hiddenSizes: try hiddenSizes(), latentDimension: latent,
            activation: ActivationKind(rawValue: activation)!, likelihood: LikelihoodKind(rawValue: likelihood)!,
            gaussianSigma: sigma, channels: try channelWidths(), upsampling: Upsampling(rawValue: upsampling)!,
            conditionClasses: conditional ? classes : 0)
        do {
            try modelConfig.validate()
        } catch let error as ModelConfigError {
            throw CLIError(error.message)
        }
        return RunConfig(model: modelConfig, training: training)
    }

    /// A new run never writes into a folder that holds anything, unless --force.
    func refuseNonEmpty(_ folder: RunFolder) throws {
        guard let entries = Files.contents(ofDirectory: folder.path), !entries.isEmpty else {
            if Files.exists(folder.path) && !Files.isDirectory(folder.path) { throw CLIError("\(folder.path) exists and is not a folder") }
            return
        }
        guard force else {
            throw CLIError("\(folder.path) is not empty (it holds \(entries.prefix(3).joined(separator: ", "))\(entries.count > 3 ? ", …" : "")); choose another --out, continue it with --resume \(folder.path), or pass --force to replace its run")
        }
        // Replacing the run: an old training checkpoint must not be resumed into the new one.
        if Files.exists(folder.checkpointPath) { unlink(folder.checkpointPath) }
    }
}

/// `path` made absolute, so a run folder keeps working from another directory.
func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// Records SIGINT and SIGTERM so that training can finish its step, save and exit.
enum StopSignal {
    nonisolated(unsafe) static var value: sig_atomic_t = 0

    static func install() {
        for s in [SIGINT, SIGTERM] {
            signal(s) { received in StopSignal.value = received }
        }
    }

    static var received: Int32? { value == 0 ? nil : Int32(value) }
}

func printWarning(_ message: String) {
    fflush(stdout)
    FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
}

/// `metrics.csv`: one row per epoch, rewritten atomically after each epoch.
struct MetricsFile {
    let path: String
    private var lines: [String]

    /// The train −ELBO of the last row written.
    private(set) var lastTrainLoss = Double.nan

    /// Continues the file of an interrupted run, keeping the rows of its `completedEpochs` epochs.
    init(resuming path: String, latentDimension: Int, completedEpochs: Int) throws {
        self.init(path: path, latentDimension: latentDimension)
        guard Files.exists(path) else { return }
        let text = String(decoding: try Files.read(path, limit: 1 << 26), as: UTF8.self)
        let rows = text.split(separator: "\n").dropFirst().filter { row in
            guard let epoch = Int(row.prefix { $0 != "," }) else { return false }
            return epoch <= completedEpochs
        }
        lines += rows.map(String.init)
    }

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
        lastTrainLoss = train.meanNegativeELBO
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
