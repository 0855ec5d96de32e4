import ArgumentParser
import Datasets
import Foundation
import NN
import Training
import VAE

// Flags → configuration, in one place: `train` and `bench` share these groups, and both hand
// the result to the library's validation (the same limits and messages as `config.json`).

extension Architecture: ExpressibleByArgument {}
extension LikelihoodKind: ExpressibleByArgument {}
extension Upsampling: ExpressibleByArgument {}
extension ActivationKind: ExpressibleByArgument {}
extension KLEstimator: ExpressibleByArgument {}
extension WeightInitialization: ExpressibleByArgument {}
extension DatasetName: ExpressibleByArgument {}
extension OptimizerConfig.Kind: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}
extension RunFolder.Weights: ExpressibleByArgument {}

/// Comma-separated whole numbers ("400" or "512,256"); nil if any entry is not one.
func integerList(_ text: String) -> [Int]? {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    return values.count == parts.count ? values : nil
}

/// The network: `--arch`, sizes, likelihood.
struct ModelOptions: ParsableArguments {
    @Option(help: "Network: mlp (fully connected, --hidden) or conv (convolutional, --channels).")
    var arch: Architecture = .mlp

    @Option(help: ArgumentHelp("Hidden layer widths, comma separated (e.g. 512,256); the decoder mirrors them.", valueName: "sizes"))
    var hidden: String = "400"

    @Option(help: ArgumentHelp("Convolution channels for --arch conv, comma separated; each layer (kernel 4, stride 2, padding 1) halves the image.", valueName: "widths"))
    var channels: String = "32,64"

    @Option(help: "How the conv decoder doubles the resolution: transposed (transposed convolution) or nearest (nearest upsampling, then a 3×3 convolution).")
    var upsampling: Upsampling = .transposed

    @Flag(help: "Conditional VAE: the one-hot label joins the encoder's and the decoder's input (sample a class with `vae sample --label`).")
    var conditional = false

    @Option(help: "Dimension of the latent code z.")
    var latent: Int = 20

    @Option(help: "Layers of latent variables: 1 (z) or 2 (z₁ and z₂ as in Burda et al. 2015: q(z₁|x) q(z₂|z₁), p(z₂) p(z₁|z₂) p(x|z₁); --latent is z₁'s dimension).")
    var stochasticLayers: Int = 1

    @Option(help: "Dimension of z₂ with --stochastic-layers 2 (default: half of --latent).")
    var latent2: Int?

    @Option(help: ArgumentHelp("Hidden layer widths of q(z₂|z₁) with --stochastic-layers 2; p(z₁|z₂) mirrors them.", valueName: "sizes"))
    var hidden2: String?

    @Option(help: "Hidden activation: \(ActivationKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var activation: ActivationKind = .relu

    @Option(help: "Decoder likelihood: bernoulli, gaussian (fixed σ), gaussian-shared (learned σ) or gaussian-pixel (σ per pixel).")
    var likelihood: LikelihoodKind = .bernoulli

    @Option(help: "σ of the gaussian likelihood (the starting σ of gaussian-shared), in pixel units of [0, 1].")
    var sigma: Float = 0.1

    @Option(help: "How fully connected weights start: pytorch (W, b uniform in ±1/√in) or glorot (W uniform in ±√(6/(in+out)), b = 0; Burda et al.'s code).")
    var `init`: WeightInitialization = .pytorch

    @Option(help: "Start of the last decoder bias: random (as --init) or data (the logit of the training images' mean pixel values; bernoulli MLPs).")
    var outputBias: OutputBiasStart = .random

    func validate() throws {
        guard integerList(hidden) != nil else { throw ValidationError("--hidden must be positive integers separated by commas, e.g. 400 or 512,256") }
        guard integerList(channels)?.isEmpty == false else { throw ValidationError("--channels must be positive integers separated by commas, e.g. 32,64") }
        guard stochasticLayers == 1 || stochasticLayers == 2 else { throw ValidationError("--stochastic-layers must be 1 or 2") }
        if stochasticLayers == 1 && (latent2 != nil || hidden2 != nil) { throw ValidationError("--latent2 and --hidden2 need --stochastic-layers 2") }
        if let hidden2, integerList(hidden2) == nil { throw ValidationError("--hidden2 must be positive integers separated by commas, e.g. 100,100") }
    }

    /// The model for examples of `inputShape` and, if conditional, `classes` labels; validated.
    func config(inputShape: [Int], classes: Int) throws -> ModelConfig {
        if conditional && classes < 2 { throw ConfigurationError("--conditional needs labels with at least two classes") }
        let config = ModelConfig(
            architecture: arch, inputShape: inputShape, hiddenSizes: integerList(hidden) ?? [], latentDimension: latent,
            activation: activation, likelihood: likelihood, gaussianSigma: sigma, channels: integerList(channels) ?? [],
            upsampling: upsampling, conditionClasses: conditional ? classes : 0, initialization: self.`init`, outputBiasFromData: outputBias == .data,
            upperLatentDimension: stochasticLayers == 2 ? latent2 ?? max(1, latent / 2) : 0,
            upperHiddenSizes: stochasticLayers == 2 ? integerList(hidden2 ?? "100,100") ?? [] : [])
        try Limits.validate(config)
        return config
    }
}

enum OutputBiasStart: String, ExpressibleByArgument, CaseIterable { case random, data }

/// Which data: a built-in set or your own files.
struct DataOptions: ParsableArguments {
    @Option(help: "Data set: fashion-mnist (installed by scripts/setup.sh) or mnist (needs --data-dir).")
    var dataset: DatasetName = .fashionMNIST

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

    func validate() throws {
        if data == nil && (labels != nil || testData != nil || testLabels != nil) {
            throw ValidationError("--labels, --test-data and --test-labels go with --data")
        }
        if testLabels != nil && testData == nil { throw ValidationError("--test-labels needs --test-data") }
        if let imageShape, integerList(imageShape)?.count != 3 {
            throw ValidationError("--image-shape must be three positive sizes, channels,height,width (e.g. 1,28,28)")
        }
    }

    /// Writes the data source into `training` (paths made absolute, so the run folder works from anywhere).
    func apply(to training: inout TrainingConfig) {
        training.dataset = dataset.rawValue
        training.dataDirectory = dataDir
        if let data {
            training.useFiles(
                absolutePath(data), labels: labels.map(absolutePath), testPath: testData.map(absolutePath),
                testLabels: testLabels.map(absolutePath), testSplit: testSplit, imageShape: imageShape.flatMap(integerList))
        }
    }
}

/// What training minimises.
struct ObjectiveOptions: ParsableArguments {
    @Option(help: "β: weight of the KL term (β-VAE; 1 is the ELBO).")
    var beta: Float = 1

    @Option(help: ArgumentHelp("Raise the KL weight linearly from 0 to β over this many epochs (0: no warm-up).", valueName: "epochs"))
    var klWarmup: Double = 0

    @Option(help: ArgumentHelp("Free bits λ: each latent dimension's batch-mean KL counts as at least λ nats, so dimensions below it feel no KL pressure (Kingma et al., 2016).", valueName: "λ"))
    var freeBits: Float = 0

    @Option(help: ArgumentHelp("Train on the IWAE bound with K importance samples per image (1: the ELBO).", valueName: "K"))
    var iwae: Int = 1

    @Option(help: "KL term: analytic (closed form) or mc (one-sample Monte Carlo, log q(z|x) − log p(z)).")
    var kl: KLEstimator = .analytic

    var objective: TrainingObjective {
        TrainingObjective(beta: beta, klWarmupEpochs: klWarmup, freeBits: freeBits, importanceSamples: iwae, kl: kl)
    }
}

/// How training runs: length, batch, optimiser, schedule, selection.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Passes over the training set.")
    var epochs: Int = 10

    @Option(help: "Images per optimiser step (the global batch: under mpirun the ranks share it).")
    var batchSize: Int = 128

    @Option(help: ArgumentHelp("Images per rank and step instead of --batch-size (weak scaling): under mpirun -np N the global batch is N × B; alone, B.", valueName: "B"))
    var batchPerRank: Int?

    @Option(help: "With --batch-per-rank: none (default) keeps --lr; linear multiplies it by the number of ranks, the factor the batch grew by (Goyal et al. 2017; pair it with --lr-warmup, e.g. five epochs of steps).")
    var lrScaling: LearningRateScaling = .none

    @Option(help: "Learning rate (the schedule's base rate).")
    var lr: Float = 1e-3

    @Option(help: "Seed for initialisation, data order, ε, binarisation and splits: same seed, same numbers.")
    var seed: UInt64 = 1

    @Flag(help: "Dynamic binarisation: each training pixel is resampled as Bernoulli(grey value) every time it is drawn; the test and validation sets are binarised once with seed 0.")
    var binarize = false

    @Option(help: "Optimiser: adam, adamw (decoupled weight decay) or sgd.")
    var optimizer: OptimizerConfig.Kind = .adam

    @Option(help: ArgumentHelp("Weight decay λ: decoupled for adamw (default 0.01), L2 for sgd (default 0).", valueName: "λ"))
    var weightDecay: Float?

    @Option(help: ArgumentHelp("Momentum μ of --optimizer sgd.", valueName: "μ"))
    var momentum: Float = 0

    @Option(help: ArgumentHelp("Adam's (and AdamW's) β₁, the decay of its mean of gradients.", valueName: "β₁"))
    var adamBeta1: Float = 0.9

    @Option(help: ArgumentHelp("Adam's β₂, the decay of its mean of squared gradients.", valueName: "β₂"))
    var adamBeta2: Float = 0.999

    @Option(help: ArgumentHelp("Adam's ε, added to √v̂ (1e-8 as PyTorch; Burda et al. use 1e-4).", valueName: "ε"))
    var adamEpsilon: Float = 1e-8

    @Option(help: ArgumentHelp("Scale the gradient down to this global L2 norm when it is larger (default: no clipping).", valueName: "norm"))
    var clipNorm: Float?

    @Option(help: "Learning-rate schedule: constant, step (--lr-milestones, --lr-gamma), cosine (to --lr-min over the run), plateau (needs --validation-split) or iwae (Burda et al.'s 8 stages over 3,280 epochs).")
    var lrSchedule: LearningRateSchedule.Kind = .constant

    @Option(help: ArgumentHelp("Epochs after which the step schedule multiplies the rate by --lr-gamma, e.g. 30,60.", valueName: "epochs"))
    var lrMilestones: String?

    @Option(help: "Factor of the step schedule at each milestone.")
    var lrGamma: Double = 0.1

    @Option(help: ArgumentHelp("Raise the rate linearly from 0 over this many steps (with any schedule).", valueName: "steps"))
    var lrWarmup: Int = 0

    @Option(help: "Lowest rate of the cosine and plateau schedules.")
    var lrMin: Double = 0

    @Option(help: ArgumentHelp("The plateau schedule lowers the rate when more than this many epochs in a row fail to beat the best validation −ELBO (PyTorch's ReduceLROnPlateau patience).", valueName: "epochs"))
    var plateauPatience: Int = 2

    @Option(help: "Factor by which the plateau schedule lowers the rate.")
    var plateauFactor: Double = 0.5

    @Option(help: ArgumentHelp("Fraction of the training set held out (seeded) for validation: each epoch reports its −ELBO and RUN/best.safetensors keeps the best epoch's weights (0: none, the classic protocol).", valueName: "fraction"))
    var validationSplit: Double = 0

    @Option(help: ArgumentHelp("End the run after N epochs without a better validation −ELBO (needs --validation-split).", valueName: "N"))
    var earlyStopping: Int?

    @Option(help: ArgumentHelp("Also save a training checkpoint every N steps (one is always saved after each epoch).", valueName: "N"))
    var checkpointEvery: Int = 0

    @Option(help: ArgumentHelp("Train only on the images of these classes (labels), e.g. 0,1,2,3,4,5,6,7,8; the test set stays whole, for `vae score --anomaly-classes`.", valueName: "labels"))
    var classes: String?

    @Option(help: ArgumentHelp("Evaluate the test set (−ELBO, its terms, the latent statistics) after every N-th epoch, the first and the last (default 1: every epoch; the iwae-paper preset: 10).", valueName: "N"))
    var testEvery: Int = 1

    @Option(help: ArgumentHelp("Keep the weights after these epochs in RUN/snapshots/ (evaluate one with `vae eval RUN --epoch N`), e.g. 1,4,13,40.", valueName: "epochs"))
    var snapshotEpochs: String?

    func validate() throws {
        if let lrMilestones, integerList(lrMilestones) == nil { throw ValidationError("--lr-milestones must be epoch numbers separated by commas, e.g. 30,60") }
        if let classes, integerList(classes) == nil { throw ValidationError("--classes must be labels from 0 separated by commas, e.g. 0,1,2") }
        if let snapshotEpochs, integerList(snapshotEpochs) == nil { throw ValidationError("--snapshot-epochs must be epoch numbers separated by commas, e.g. 1,4,13,40") }
    }

    /// The training configuration (data source and objective from their groups) for a job of
    /// `ranks` processes; validated.
    func config(data: DataOptions, objective: TrainingObjective, ranks: Int) throws -> TrainingConfig {
        var training = TrainingConfig(
            epochs: epochs, batchSize: batchSize, learningRate: lr, seed: seed, binarize: binarize, objective: objective,
            validationSplit: validationSplit,
            optimizer: OptimizerConfig(kind: optimizer, weightDecay: weightDecay, momentum: momentum, beta1: adamBeta1, beta2: adamBeta2, epsilon: adamEpsilon),
            schedule: LearningRateSchedule(
                lrSchedule, milestones: lrMilestones.flatMap(integerList) ?? [], gamma: lrGamma, warmupSteps: lrWarmup, minimum: lrMin,
                patience: plateauPatience, factor: plateauFactor),
            earlyStopping: earlyStopping, clipNorm: clipNorm, checkpointEvery: checkpointEvery)
        training.snapshotEpochs = snapshotEpochs.flatMap(integerList)
        training.testEvery = testEvery == 1 ? nil : testEvery  // every epoch stays unwritten in config.json
        training.classes = classes.flatMap(integerList)
        if let batchPerRank {
            try training.growBatch(perRank: batchPerRank, ranks: ranks, learningRate: lrScaling)
        } else if lrScaling != .none {
            throw ValidationError("--lr-scaling \(lrScaling.rawValue) scales the rate with the batch that --batch-per-rank grows: give --batch-per-rank")
        }
        data.apply(to: &training)
        try training.validate()
        return training
    }
}

/// `path` made absolute, so a run folder keeps working from another directory.
func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

extension LearningRateScaling: ExpressibleByArgument {}

/// Where the command computes: `--device cpu|cuda[:N]`.
struct DeviceOptions: ParsableArguments {
    @Option(help: ArgumentHelp("""
        Where the work runs: cpu, or cuda[:N] for NVIDIA GPU N (the CUDA driver, NVRTC and cuBLAS \
        loaded at run time; nothing to install at build time). The GPU runs every model the \
        CPU does (MLP and conv, one or two stochastic layers, every likelihood, objective and \
        optimiser, FP32 or --precision bf16); several MPI ranks on GPUs are refused before work \
        starts. A run trained on either device resumes and evaluates on the other.
        """, valueName: "device"))
    var device: String = "cpu"

    /// `--device` parsed (validated first).
    var computeDevice: ComputeDevice { ComputeDevice(device) ?? .cpu }

    func validate() throws {
        guard ComputeDevice(device) != nil else { throw ValidationError("--device takes cpu, cuda or cuda:N, not \(device)") }
    }
}
