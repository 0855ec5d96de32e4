/// How the KL term of the ELBO is computed during training.
public enum KLEstimator: String, Codable, CaseIterable, Sendable {
    /// Closed form: ½ Σ (μ² + σ² − log σ² − 1).
    case analytic
    /// One-sample Monte Carlo: log q(z|x) − log p(z) at the sampled z.
    case mc
}

/// What training minimises, per image:
///
/// - ELBO family (`importanceSamples` = 1): −log p(x|z) + w(t) · KL, with w(t) = β · min(1, t / warm-up)
///   at t epochs into training; with free bits λ, the KL is replaced by Σ_j max(λ, KL_j), KL_j the
///   batch-mean KL of dimension j (Kingma et al., 2016).
/// - IWAE (`importanceSamples` = K > 1): −log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x) (Burda et al., 2015).
public struct TrainingObjective: Codable, Equatable, Sendable {
    public var beta: Float
    public var klWarmupEpochs: Double
    public var freeBits: Float
    public var importanceSamples: Int
    public var kl: KLEstimator

    public init(beta: Float = 1, klWarmupEpochs: Double = 0, freeBits: Float = 0, importanceSamples: Int = 1, kl: KLEstimator = .analytic) {
        self.beta = beta
        self.klWarmupEpochs = klWarmupEpochs
        self.freeBits = freeBits
        self.importanceSamples = importanceSamples
        self.kl = kl
    }

    /// True when the objective is estimated by sampling log q(z|x) − log p(z) (MC KL or IWAE).
    public var usesMonteCarlo: Bool { importanceSamples > 1 || kl == .mc }

    /// The KL weight after `epochs` (fractional) of training.
    public func klWeight(afterEpochs epochs: Double) -> Float {
        guard klWarmupEpochs > 0 else { return beta }
        return beta * Float(min(1, max(0, epochs / klWarmupEpochs)))
    }

    /// Refuses values and combinations that have no meaning.
    public func validate() throws {
        func fail(_ m: String) -> ModelConfigError { ModelConfigError(message: m) }
        guard beta.isFinite && beta >= 0 else { throw fail("beta must be a non-negative number") }
        guard klWarmupEpochs.isFinite && klWarmupEpochs >= 0 else { throw fail("KL warm-up must be a non-negative number of epochs") }
        guard freeBits.isFinite && freeBits >= 0 else { throw fail("free bits must be a non-negative number of nats") }
        guard importanceSamples >= 1 && importanceSamples <= 4096 else { throw fail("IWAE samples must be between 1 and 4096") }
        if importanceSamples > 1 {
            guard beta == 1 && klWarmupEpochs == 0 && freeBits == 0 else {
                throw fail("the IWAE objective has no KL term to weight: it cannot be combined with beta, KL warm-up or free bits")
            }
        }
        if freeBits > 0 && kl == .mc { throw fail("free bits need the analytic KL per dimension (use --kl analytic)") }
    }
}
