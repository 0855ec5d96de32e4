import NN

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

/// Everything needed to rebuild a model: stored in `config.json` and in the checkpoint header.
public struct ModelConfig: Codable, Equatable, Sendable {
    /// Network family; "mlp" is the fully connected VAE.
    public var architecture: String
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

    public init(
        architecture: String = "mlp", inputShape: [Int] = [1, 28, 28], hiddenSizes: [Int] = [400],
        latentDimension: Int = 20, activation: ActivationKind = .relu,
        likelihood: LikelihoodKind = .bernoulli, gaussianSigma: Float = 0.1
    ) {
        self.architecture = architecture
        self.inputShape = inputShape
        self.hiddenSizes = hiddenSizes
        self.latentDimension = latentDimension
        self.activation = activation
        self.likelihood = likelihood
        self.gaussianSigma = gaussianSigma
    }

    /// Values per example (C·H·W).
    public var inputSize: Int { inputShape.reduce(1, *) }

    /// Checks the values a file or a user supplied; throws a message naming the bad field.
    public func validate() throws {
        func fail(_ message: String) -> ModelConfigError { ModelConfigError(message: message) }
        guard architecture == "mlp" else { throw fail("unknown architecture '\(architecture)' (expected mlp)") }
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), inputSize <= 1 << 26 else {
            throw fail("inputShape \(inputShape) must be three positive sizes [channels, height, width]")
        }
        guard hiddenSizes.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else { throw fail("hidden sizes \(hiddenSizes) must be positive and at most 65536") }
        guard latentDimension > 0 && latentDimension <= 1 << 16 else { throw fail("latent dimension \(latentDimension) must be between 1 and 65536") }
        guard gaussianSigma.isFinite && gaussianSigma > 0 else { throw fail("gaussianSigma \(gaussianSigma) must be positive") }
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
