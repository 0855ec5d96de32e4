import Datasets
import Foundation
import NN
import Tensor
import VAE

/// A configuration value that is out of range or does not fit the others. The message names
/// the command-line flag that sets the value (the same rule applies to `config.json`).
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Which optimiser trains the model, and its settings.
public struct OptimizerConfig: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        /// Adam (Kingma & Ba), as `torch.optim.Adam`.
        case adam
        /// Adam with decoupled weight decay θ ← θ(1 − ηλ) (Loshchilov & Hutter), as `torch.optim.AdamW`.
        case adamw
        /// Stochastic gradient descent with momentum and L2 weight decay, as `torch.optim.SGD`.
        case sgd
    }

    public var kind: Kind
    /// λ: decoupled for AdamW, added to the gradient (λθ) for SGD; Adam takes none.
    public var weightDecay: Float
    /// SGD's momentum μ.
    public var momentum: Float
    /// Adam's β₁, β₂ and ε.
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float

    public init(kind: Kind = .adam, weightDecay: Float? = nil, momentum: Float = 0, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.kind = kind
        self.weightDecay = weightDecay ?? (kind == .adamw ? 0.01 : 0)
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(Kind.self, forKey: .kind)
        self.init(
            kind: kind, weightDecay: try c.decodeIfPresent(Float.self, forKey: .weightDecay),
            momentum: try c.decodeIfPresent(Float.self, forKey: .momentum) ?? 0,
            beta1: try c.decodeIfPresent(Float.self, forKey: .beta1) ?? 0.9, beta2: try c.decodeIfPresent(Float.self, forKey: .beta2) ?? 0.999,
            epsilon: try c.decodeIfPresent(Float.self, forKey: .epsilon) ?? 1e-8)
    }

    public func validate() throws {
        guard weightDecay.isFinite && weightDecay >= 0 && weightDecay < 1 else { throw ConfigurationError("--weight-decay must be in [0, 1)") }
        guard momentum.isFinite && momentum >= 0 && momentum < 1 else { throw ConfigurationError("--momentum must be in [0, 1)") }
        if momentum != 0 && kind != .sgd { throw ConfigurationError("--momentum is for --optimizer sgd (Adam's moments are beta1 and beta2)") }
        if weightDecay != 0 && kind == .adam { throw ConfigurationError("--weight-decay needs --optimizer adamw (decoupled) or sgd (L2)") }
        guard beta1.isFinite && beta1 >= 0 && beta1 < 1, beta2.isFinite && beta2 >= 0 && beta2 < 1 else {
            throw ConfigurationError("Adam's beta1 and beta2 must be in [0, 1)")
        }
        guard epsilon.isFinite && epsilon > 0 else { throw ConfigurationError("Adam's epsilon must be positive") }
    }

    /// The optimiser for `parameters`.
    public func make(parameters: [Parameter], learningRate: Float) -> Optimizer {
        switch kind {
        case .adam, .adamw:
            Adam(parameters: parameters, learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon,
                 decoupledWeightDecay: kind == .adamw ? weightDecay : 0)
        case .sgd:
            SGD(parameters: parameters, learningRate: learningRate, momentum: momentum, weightDecay: weightDecay)
        }
    }

    /// One line naming the optimiser.
    public var summary: String {
        switch kind {
        case .adam: "Adam"
        case .adamw: "AdamW (weight decay \(weightDecay))"
        case .sgd: "SGD" + (momentum > 0 ? " (momentum \(momentum))" : "") + (weightDecay > 0 ? " (L2 \(weightDecay))" : "")
        }
    }
}

/// How `--batch-per-rank` changes the learning rate.
public enum LearningRateScaling: String, CaseIterable, Sendable {
    /// The rate as given.
    case none
    /// The rate times the factor the batch grew by (Goyal et al. 2017, "Accurate, Large
    /// Minibatch SGD": η → kη for a k times larger batch, best with a warm-up).
    case linear
}

extension TrainingConfig {
    /// Weak scaling (`--batch-per-rank`): the global batch becomes `perRank × ranks`, so each of
    /// the `ranks` processes trains on `perRank` images per step; with `.linear` the learning
    /// rate grows by `ranks` too. config.json records the resulting batch and rate, so a resume
    /// (with any number of ranks) continues the same run.
    public mutating func growBatch(perRank: Int, ranks: Int, learningRate scaling: LearningRateScaling) throws {
        guard perRank >= 1, perRank * max(ranks, 1) <= Limits.batchSize.upperBound else {
            throw ConfigurationError("--batch-per-rank must be between 1 and \(Limits.batchSize.upperBound / max(ranks, 1)) with \(ranks) rank\(ranks == 1 ? "" : "s")")
        }
        batchSize = perRank * max(ranks, 1)
        if scaling == .linear { learningRate *= Float(max(ranks, 1)) }
    }

    /// The data's paths with their names in `config.json`.
    static let dataPathFields: [(key: String, field: WritableKeyPath<TrainingConfig, String?>)] = [
        ("dataDirectory", \.dataDirectory), ("dataPath", \.dataPath), ("labelsPath", \.labelsPath),
        ("testDataPath", \.testDataPath), ("testLabelsPath", \.testLabelsPath),
    ]

    /// Relative data paths made absolute against the current directory, as a new run records
    /// them, so that the run can be resumed and evaluated from anywhere.
    public mutating func makePathsAbsolute() {
        let base = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
        for (_, field) in Self.dataPathFields {
            guard let path = self[keyPath: field], !path.isEmpty, !path.hasPrefix("/") else { continue }
            self[keyPath: field] = URL(fileURLWithPath: path, relativeTo: base).standardizedFileURL.path
        }
    }

    /// Throws one line naming the first data path that no longer exists (the data moved since
    /// the run was created), and the field of `configPath` that holds it.
    public func checkPathsExist(configPath: String) throws {
        for (key, field) in Self.dataPathFields {
            guard let path = self[keyPath: field], !FileManager.default.fileExists(atPath: path) else { continue }
            let hint = path.hasPrefix("/") ? "" : " (a relative path, from the directory the run was started in: run from there)"
            throw TrainingRunError("\(path): the run's data is not there any more\(hint); put it back, or set training.\(key) in \(configPath) to where it is now")
        }
    }
}

/// Where training's ε comes from.
public enum NoiseGenerator: String, Codable, Sendable {
    /// ε of optimiser step t is numbers 0, 1, … of Philox stream t (`CounterNoise`, keyed by
    /// the run's noise seed): a pure function of (seed, step), so any device, rank or thread
    /// draws the same ε for the same step, and a resume needs no generator state. New runs.
    case counter
    /// One sequential generator whose state a checkpoint saves (runs made before `counter`).
    case sequential
}

/// How a model was trained: saved as `config.json` beside the weights. Fields added after the
/// first version are optional, so that older run folders still load; read them through the
/// accessors, which give the defaults.
public struct TrainingConfig: Codable, Equatable, Sendable {
    /// A built-in data set's name (`fashion-mnist`, `mnist`), or ``userData`` for `dataPath`.
    public var dataset: String
    public var dataDirectory: String?
    public var epochs: Int
    public var batchSize: Int
    /// The base learning rate η (the schedule scales it).
    public var learningRate: Float
    public var seed: UInt64
    public var binarize: Bool
    /// Seed of the fixed binarisation of the test (and validation) set, when `binarize` is on.
    public var testBinarizationSeed: UInt64
    /// What was minimised (absent in runs that predate objectives: the plain ELBO).
    public var objective: TrainingObjective?
    /// Your own data (`dataset` = "files"): images, labels, test images and labels, or the
    /// fraction split off as the test set, and the shape given to flat rows.
    public var dataPath: String?
    public var labelsPath: String?
    public var testDataPath: String?
    public var testLabelsPath: String?
    public var testSplit: Double?
    public var imageShape: [Int]?
    /// Names of your own data's classes, by label.
    public var userClassNames: [String]?
    /// Fraction of the training set held out (seeded) for validation and model selection.
    public var validationSplit: Double?
    public var optimizer: OptimizerConfig?
    public var schedule: LearningRateSchedule?
    /// End the run after this many epochs without a better validation −ELBO.
    public var earlyStopping: Int?
    /// Clip the gradient to this global L2 norm.
    public var clipNorm: Float?
    /// Save a training checkpoint every this many steps (besides the one after each epoch).
    public var checkpointEvery: Int?
    /// Train (and validate) only on the images of these classes; the test set stays whole (the
    /// classic "train on nine classes, detect the tenth" study).
    public var classes: [Int]?
    /// Epochs after which the weights are also kept in `RUN/snapshots/epoch-NNNN.safetensors`
    /// (e.g. the ends of the `iwae` schedule's stages), for `vae eval RUN --epoch N`.
    public var snapshotEpochs: [Int]?
    /// Evaluate the test set after every this many epochs (and after the first and the last);
    /// nil: every epoch. A long protocol (3,280 epochs) need not pay an evaluation per epoch.
    public var testEvery: Int?
    /// The operands' format in the matrix products (nil: FP32); see `MatrixPrecision`. Weights,
    /// optimiser state, checkpoints and every reported figure stay FP32.
    public var precision: MatrixPrecision?
    /// How training draws ε (nil, in runs made before counter-based noise: ``NoiseGenerator/sequential``).
    public var noise: NoiseGenerator?
    /// How dynamic binarisation (`binarize`) draws its uniforms: by counters, pixel i of example
    /// e in epoch k from Philox stream 2⁶² + k·2³² + e under the data seed (`CounterNoise`), which
    /// the GPU draws too; or the data loader's sequential generator (nil: runs made before).
    public var binarization: NoiseGenerator?

    public static let userData = "files"

    /// The generator of training's ε this run uses.
    public var noiseGenerator: NoiseGenerator { noise ?? .sequential }
    /// The generator of the training set's dynamic binarisation this run uses.
    public var binarizationGenerator: NoiseGenerator { binarization ?? .sequential }

    /// Whether the test set is evaluated after epoch `epoch` (from 1): the first, the last and
    /// every ``testEvery``-th.
    public func evaluatesTest(afterEpoch epoch: Int) -> Bool {
        epoch == 1 || epoch >= epochs || epoch % max(testEvery ?? 1, 1) == 0
    }

    /// A configuration with the classic defaults (Adam 1e-3, batch 128, 10 epochs, seed 1).
    public init(
        dataset: DatasetName = .fashionMNIST, dataDirectory: String? = nil, epochs: Int = 10, batchSize: Int = 128,
        learningRate: Float = 1e-3, seed: UInt64 = 1, binarize: Bool = false, objective: TrainingObjective = TrainingObjective(),
        validationSplit: Double = 0, optimizer: OptimizerConfig = OptimizerConfig(), schedule: LearningRateSchedule = LearningRateSchedule(),
        earlyStopping: Int? = nil, clipNorm: Float? = nil, checkpointEvery: Int = 0
    ) {
        self.dataset = dataset.rawValue
        self.dataDirectory = dataDirectory
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.seed = seed
        self.binarize = binarize
        testBinarizationSeed = RunSeeds.testBinarization
        self.objective = objective
        self.validationSplit = validationSplit
        self.optimizer = optimizer
        self.schedule = schedule
        self.earlyStopping = earlyStopping
        self.clipNorm = clipNorm
        self.checkpointEvery = checkpointEvery
        noise = .counter
        binarization = .counter
    }

    /// Trains on your own files instead of a built-in set: `path` (with `labels`), tested on
    /// `testPath` or, without it, on a seeded `testSplit` of `path`.
    public mutating func useFiles(
        _ path: String, labels: String? = nil, testPath: String? = nil, testLabels: String? = nil, testSplit: Double = 0.1,
        imageShape: [Int]? = nil
    ) {
        dataset = Self.userData
        dataPath = path
        labelsPath = labels
        testDataPath = testPath
        testLabelsPath = testLabels
        self.testSplit = testPath == nil ? testSplit : nil
        self.imageShape = imageShape
    }

    public var trainingObjective: TrainingObjective { objective ?? TrainingObjective() }
    public var optimizerConfig: OptimizerConfig { optimizer ?? OptimizerConfig() }
    public var learningRateSchedule: LearningRateSchedule { schedule ?? LearningRateSchedule() }
    public var validationFraction: Double { validationSplit ?? 0 }
    public var checkpointInterval: Int { checkpointEvery ?? 0 }
    public var matrixPrecision: MatrixPrecision { precision ?? .fp32 }

    /// Checks every value and combination, with the same limits and messages whether the
    /// configuration came from flags, from `config.json` or from Swift code.
    public func validate() throws {
        func fail(_ m: String) -> ConfigurationError { ConfigurationError(m) }
        if dataset != Self.userData && DatasetName(rawValue: dataset) == nil {
            throw fail("unknown dataset '\(dataset)'; choose \(DatasetName.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        if dataset == Self.userData && dataPath == nil { throw fail("your own data needs --data") }
        guard Limits.epochs.contains(epochs) else { throw fail("--epochs must be at least 1") }
        guard Limits.batchSize.contains(batchSize) else { throw fail("--batch-size must be between 1 and \(Limits.batchSize.upperBound)") }
        guard learningRate.isFinite && learningRate > 0 else { throw fail("--lr must be a positive number") }
        if let testSplit, !(testSplit > 0 && testSplit < 1) { throw fail("--test-split must be between 0 and 1") }
        guard validationFraction >= 0 && validationFraction < 1 else { throw fail("--validation-split must be in [0, 1)") }
        if let imageShape, imageShape.count != 3 || !imageShape.allSatisfy({ $0 > 0 && $0 <= 1 << 14 }) {
            throw fail("--image-shape must be three positive sizes, channels,height,width (e.g. 1,28,28)")
        }
        if let earlyStopping {
            guard earlyStopping >= 1 else { throw fail("--early-stopping must be at least 1 epoch") }
            guard validationFraction > 0 else { throw fail("--early-stopping watches the validation −ELBO: it needs --validation-split") }
        }
        if let clipNorm, !(clipNorm.isFinite && clipNorm > 0) { throw fail("--clip-norm must be a positive number") }
        guard checkpointInterval >= 0 else { throw fail("--checkpoint-every must be 0 or more steps") }
        if let classes, classes.isEmpty || classes.contains(where: { $0 < 0 }) { throw fail("--classes must be labels from 0, e.g. 0,1,2") }
        if let testEvery, testEvery < 1 { throw fail("--test-every must be at least 1 epoch") }
        guard (snapshotEpochs ?? []).allSatisfy({ $0 >= 1 }) else { throw fail("--snapshot-epochs must be epoch numbers from 1, e.g. 1,4,13") }
        do {
            try trainingObjective.validate()
        } catch let error as ModelConfigError {
            throw fail(error.message)
        }
        try optimizerConfig.validate()
        try learningRateSchedule.validate(hasValidation: validationFraction > 0)
    }
}

/// The contents of `RUN/config.json`: the model and how it is trained.
public struct RunConfig: Codable, Equatable, Sendable {
    public var model: ModelConfig
    public var training: TrainingConfig
    /// The run's identity, also written into every training checkpoint (given when the run is
    /// created; absent in runs made before run ids existed).
    public var runID: String?

    public init(model: ModelConfig, training: TrainingConfig, runID: String? = nil) {
        self.model = model
        self.training = training
        self.runID = runID
    }

    /// Checks the model and the training settings (see ``TrainingConfig/validate()``), and that
    /// a batch fits in memory.
    public func validate() throws {
        try training.validate()
        try Limits.validate(model)
        if model.stochasticLayers == 2 && training.trainingObjective.freeBits > 0 {
            throw ConfigurationError("free bits act on the KL of each dimension of one Gaussian prior: --free-bits cannot be used with --stochastic-layers 2")
        }
        try Limits.validate(batchSize: training.batchSize, samples: training.trainingObjective.importanceSamples, model: model)
    }
}

/// The limits of the training settings, in one place (the model's sizes are `ModelConfig`'s).
public enum Limits {
    public static let epochs = 1...10_000_000
    public static let batchSize = 1...65536
    public static let threads = 1...256

    /// Values one layer's output buffer may hold (2²⁸ Float32 values: 1 GiB).
    public static let valuesPerBuffer = Double(1 << 28)

    /// A batch of `batchSize` images with `samples` samples each (and evaluation's batches of
    /// 1000) must fit the largest layer's buffer.
    public static func validate(batchSize: Int, samples: Int, model: ModelConfig) throws {
        let rows = Double(max(batchSize * samples, 1000))
        let values = rows * model.largestActivation
        guard values <= valuesPerBuffer else {
            throw ConfigurationError("a batch of \(Int(rows)) rows (--batch-size × --iwae, at least evaluation's 1000) through this model needs \(Int(values)) values in one layer's buffer, more than the \(Int(valuesPerBuffer)) allowed; use a smaller batch, fewer samples or a smaller model")
        }
    }

    /// The model's own checks (`ModelConfig.validate()`: its size limits and consistency), as a
    /// configuration error.
    public static func validate(_ model: ModelConfig) throws {
        do {
            try model.validate()
        } catch let error as ModelConfigError {
            throw ConfigurationError(error.message)
        }
    }
}

/// Every seed of a run, derived from its one `--seed` so that the streams are independent.
public struct RunSeeds: Sendable {
    public let seed: UInt64
    public init(_ seed: UInt64) { self.seed = seed }

    /// Initial weights.
    public var initialization: UInt64 { seed }
    /// Data order and dynamic binarisation.
    public var data: UInt64 { seed &+ 0x5EED_0001 }
    /// ε of the reparameterisation (and IWAE samples) during training.
    public var noise: UInt64 { seed &+ 0x5EED_0002 }
    /// The test split of your own data.
    public var testSplit: UInt64 { seed &+ 0x5EED_0003 }
    /// The validation split of the training set.
    public var validationSplit: UInt64 { seed &+ 0x5EED_0004 }

    /// ε of every evaluation, so that a run's figures are reproducible.
    public static let evaluation: UInt64 = 0
    /// The test (and validation) set's fixed binarisation.
    public static let testBinarization: UInt64 = 0
}
