import NN
import Tensor

/// The decoder likelihoods a model can be built with.
public enum LikelihoodKind: String, Codable, CaseIterable, Sendable {
    /// Bernoulli on logits: binary pixels, or grey values in [0, 1] as cross-entropy targets.
    case bernoulli
    /// Gaussian with a fixed σ (`gaussianSigma`): continuous values.
    case gaussian
    /// Gaussian with one learned σ shared by all values.
    case gaussianShared = "gaussian-shared"
    /// Gaussian with a σ per value from the decoder (floored at 0.01).
    case gaussianPixel = "gaussian-pixel"
}

/// How a convolutional decoder doubles its resolution.
public enum Upsampling: String, Codable, CaseIterable, Sendable {
    /// Transposed convolution, kernel 4, stride 2, padding 1.
    case transposed
    /// Nearest-neighbour ×2, then a convolution with kernel 3, stride 1, padding 1.
    case nearest
}

/// The network families a model can be built with (stored by name in `config.json`).
public enum Architecture: String, Codable, CaseIterable, Sendable {
    /// Fully connected encoder and decoder (`hiddenSizes`).
    case mlp
    /// Convolutional encoder and decoder (`channels`, `upsampling`).
    case conv
}

/// Everything needed to rebuild a model: stored in `config.json` and in the checkpoint header.
public struct ModelConfig: Codable, Equatable, Sendable {
    /// Network family: fully connected or convolutional.
    public var architecture: Architecture
    /// One example's shape, [channels, height, width].
    public var inputShape: [Int]
    /// Hidden layer widths of the encoder; the decoder mirrors them.
    public var hiddenSizes: [Int]
    /// Dimension d of z.
    public var latentDimension: Int
    public var activation: ActivationKind
    public var likelihood: LikelihoodKind
    /// σ of the fixed-variance Gaussian likelihood; the starting σ of `gaussian-shared`.
    public var gaussianSigma: Float
    /// Convolutional channels, encoder order (each convolution halves the image size).
    public var channels: [Int]
    public var upsampling: Upsampling
    /// Number of classes a conditional model takes as a one-hot label (0: unconditional).
    public var conditionClasses: Int
    /// How the fully connected layers' weights start.
    public var initialization: WeightInitialization
    /// Whether a new model's last decoder bias starts at the logit of the training images' mean
    /// pixel values (clipped to [0.001, 0.999]), as in Burda et al.'s code (Bernoulli MLPs).
    public var outputBiasFromData: Bool
    /// Dimension of the second stochastic layer z₂ (0: one stochastic layer). With z₂ the model
    /// is Burda et al.'s two-layer one: q(z₁|x) q(z₂|z₁) and p(z₂) p(z₁|z₂) p(x|z₁).
    public var upperLatentDimension: Int
    /// Hidden widths of q(z₂|z₁); p(z₁|z₂) mirrors them.
    public var upperHiddenSizes: [Int]

    public init(
        architecture: Architecture = .mlp, inputShape: [Int] = [1, 28, 28], hiddenSizes: [Int] = [400],
        latentDimension: Int = 20, activation: ActivationKind = .relu,
        likelihood: LikelihoodKind = .bernoulli, gaussianSigma: Float = 0.1,
        channels: [Int] = [32, 64], upsampling: Upsampling = .transposed, conditionClasses: Int = 0,
        initialization: WeightInitialization = .pytorch, outputBiasFromData: Bool = false,
        upperLatentDimension: Int = 0, upperHiddenSizes: [Int] = []
    ) {
        self.upperLatentDimension = upperLatentDimension
        self.upperHiddenSizes = upperHiddenSizes
        self.initialization = initialization
        self.outputBiasFromData = outputBiasFromData
        self.architecture = architecture
        self.inputShape = inputShape
        self.hiddenSizes = hiddenSizes
        self.latentDimension = latentDimension
        self.activation = activation
        self.likelihood = likelihood
        self.gaussianSigma = gaussianSigma
        self.channels = channels
        self.upsampling = upsampling
        self.conditionClasses = conditionClasses
    }

    /// Reads configurations written before `channels`, `upsampling` and `conditionClasses` existed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let name = try c.decode(String.self, forKey: .architecture)
        guard let kind = Architecture(rawValue: name) else {
            throw ModelConfigError(message: "unknown architecture '\(name)' (expected \(Architecture.allCases.map(\.rawValue).joined(separator: " or ")))")
        }
        architecture = kind
        inputShape = try c.decode([Int].self, forKey: .inputShape)
        hiddenSizes = try c.decode([Int].self, forKey: .hiddenSizes)
        latentDimension = try c.decode(Int.self, forKey: .latentDimension)
        activation = try c.decode(ActivationKind.self, forKey: .activation)
        likelihood = try c.decode(LikelihoodKind.self, forKey: .likelihood)
        gaussianSigma = try c.decode(Float.self, forKey: .gaussianSigma)
        channels = try c.decodeIfPresent([Int].self, forKey: .channels) ?? [32, 64]
        upsampling = try c.decodeIfPresent(Upsampling.self, forKey: .upsampling) ?? .transposed
        conditionClasses = try c.decodeIfPresent(Int.self, forKey: .conditionClasses) ?? 0
        initialization = try c.decodeIfPresent(WeightInitialization.self, forKey: .initialization) ?? .pytorch
        outputBiasFromData = try c.decodeIfPresent(Bool.self, forKey: .outputBiasFromData) ?? false
        upperLatentDimension = try c.decodeIfPresent(Int.self, forKey: .upperLatentDimension) ?? 0
        upperHiddenSizes = try c.decodeIfPresent([Int].self, forKey: .upperHiddenSizes) ?? []
    }

    /// 1, or 2 with a second stochastic layer z₂.
    public var stochasticLayers: Int { upperLatentDimension > 0 ? 2 : 1 }

    /// Latent dimensions the per-dimension statistics cover: z's, or z₁'s then z₂'s.
    public var allLatentDimensions: Int { latentDimension + upperLatentDimension }

    /// The number of trainable values the model has: the sum over ``networkPlan(outputsPerValue:)``,
    /// the layers the model is built from, plus the likelihood's own (a learned σ). Computed
    /// without building anything, so that an absurd configuration is refused before allocation.
    public var parameterCount: Double {
        let l = makeLikelihood()
        let plan = networkPlan(outputsPerValue: l.outputsPerValue)
        let own = l.namedParameters.reduce(0) { $0 + $1.parameter.value.count }
        let upper = upperNetworkPlan
        return (plan.encoder + plan.decoder + upper.encoder + upper.decoder).reduce(Double(own)) { $0 + $1.parameterCount }
    }

    /// The largest model a configuration may describe (4 GB of Float32 weights).
    public static let maximumParameters = 1e9

    /// Whether the model takes a label.
    public var isConditional: Bool { conditionClasses > 0 }

    /// The spatial size after the convolutional encoder (each layer halves it).
    public var convolutionOutputSize: (height: Int, width: Int) {
        let f = 1 << channels.count
        return (inputShape[1] / f, inputShape[2] / f)
    }

    /// Values per example (C·H·W).
    public var inputSize: Int { inputShape.reduce(1, *) }

    /// The sizes a model may have, whichever way its configuration arrives (flags, `config.json`,
    /// a checkpoint's header, Swift code); messages name the flag that sets each.
    public static let latentRange = 1...4096
    public static let widthRange = 1...65536
    public static let hiddenLayerRange = 0...16
    public static let channelRange = 1...4096
    public static let channelLayerRange = 1...6

    /// Checks the values a file or a user supplied; throws a message naming the bad field.
    public func validate() throws {
        func fail(_ message: String) -> ModelConfigError { ModelConfigError(message: message) }
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), inputSize <= 1 << 26 else {
            throw fail("inputShape \(inputShape) must be three positive sizes [channels, height, width]")
        }
        guard Self.latentRange.contains(latentDimension) else { throw fail("--latent must be between 1 and \(Self.latentRange.upperBound)") }
        if outputBiasFromData && (architecture != .mlp || likelihood != .bernoulli) {
            throw fail("--output-bias data needs --arch mlp and the bernoulli likelihood")
        }
        guard Self.hiddenLayerRange.contains(hiddenSizes.count), hiddenSizes.allSatisfy(Self.widthRange.contains) else {
            throw fail("--hidden must be at most \(Self.hiddenLayerRange.upperBound) sizes between 1 and \(Self.widthRange.upperBound)")
        }
        guard gaussianSigma.isFinite && gaussianSigma > 0 else { throw fail("--sigma must be a positive number") }
        if upperLatentDimension != 0 {
            guard Self.latentRange.contains(upperLatentDimension) else { throw fail("--latent2 must be between 1 and \(Self.latentRange.upperBound)") }
            guard Self.hiddenLayerRange.contains(upperHiddenSizes.count), upperHiddenSizes.allSatisfy(Self.widthRange.contains) else {
                throw fail("--hidden2 must be at most \(Self.hiddenLayerRange.upperBound) sizes between 1 and \(Self.widthRange.upperBound)")
            }
            guard conditionClasses == 0 else { throw fail("--stochastic-layers 2 does not take a label yet (drop --conditional)") }
        }
        guard conditionClasses >= 0 && conditionClasses <= 1000 else { throw fail("conditionClasses must be between 0 and 1000") }
        if architecture == .conv {
            guard Self.channelLayerRange.contains(channels.count), channels.allSatisfy(Self.channelRange.contains) else {
                throw fail("--channels must be \(Self.channelLayerRange.lowerBound) to \(Self.channelLayerRange.upperBound) widths between 1 and \(Self.channelRange.upperBound), e.g. 32,64")
            }
            let f = 1 << channels.count
            guard inputShape[1] % f == 0 && inputShape[2] % f == 0 else {
                throw fail("a convolutional model with \(channels.count) layers halves the image \(channels.count) times: \(inputShape[1])×\(inputShape[2]) must be divisible by \(f)")
            }
        }
        guard parameterCount <= Self.maximumParameters else {
            throw fail("the model would have \(Int(parameterCount)) parameters, more than the \(Int(Self.maximumParameters)) supported")
        }
    }

    /// One-hot rows [n, classes] for `labels` (nil for an unconditional model). A label outside
    /// 0 ..< classes gives an all-zero row.
    public func oneHot(_ labels: [Int]) -> Tensor? {
        let k = conditionClasses
        guard k > 0 else { return nil }
        let t = Tensor(shape: [labels.count, k])
        for (r, l) in labels.enumerated() where l >= 0 && l < k { t[r * k + l] = 1 }
        return t
    }

    public func makeLikelihood() -> Likelihood {
        switch likelihood {
        case .bernoulli: BernoulliLikelihood()
        case .gaussian: GaussianLikelihood(sigma: gaussianSigma)
        case .gaussianShared: GaussianSharedVarianceLikelihood(initialSigma: gaussianSigma)
        case .gaussianPixel: GaussianPixelVarianceLikelihood()
        }
    }
}

public struct ModelConfigError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
