import NN
import Tensor

/// A VAE with MLP encoder and decoder:
///
///     encoder: x → Linear → act → … → Linear → [μ | log σ²]     q(z|x) = N(μ, diag σ²)
///     z = μ + σ ⊙ ε,  ε ~ N(0, I)                                 prior p(z) = N(0, I)
///     decoder: z → Linear → act → … → Linear → logits or means    p(x|z)
///
/// Parameters are named `encoder.<i>.weight`, `decoder.<i>.bias`, … as in a PyTorch module with
/// two `nn.Sequential`s; the encoder's last layer has 2d outputs, μ first, then log σ².
public final class VariationalAutoencoder {
    public let config: ModelConfig
    public let encoder: Sequential
    public let decoder: Sequential
    public let likelihood: Likelihood

    // Reused buffers for the objective: ε, z, ∂L/∂[μ|log σ²], ∂L/∂output, per-example terms.
    var noise: Tensor?
    var latent: Tensor?
    var posteriorGradient: Tensor?
    var outputGradient: Tensor?
    var perExampleReconstruction: [Double] = []
    var perExampleKL: [Double] = []
    var sampleWeights: [Float] = []
    /// The encoder's output for the last `encode` call.
    var lastPosterior: Tensor?

    /// Builds the networks from `config`, initialised as PyTorch would from `rng`.
    public init(config: ModelConfig, rng: inout RandomGenerator) {
        self.config = config
        let d = config.latentDimension
        var encoderLayers: [Layer] = []
        var width = config.inputSize
        for h in config.hiddenSizes {
            encoderLayers += [Linear(width, h, rng: &rng), config.activation.makeLayer()]
            width = h
        }
        encoderLayers.append(Linear(width, 2 * d, rng: &rng))
        var decoderLayers: [Layer] = []
        width = d
        for h in config.hiddenSizes.reversed() {
            decoderLayers += [Linear(width, h, rng: &rng), config.activation.makeLayer()]
            width = h
        }
        likelihood = config.makeLikelihood()
        decoderLayers.append(Linear(width, config.inputSize * likelihood.outputsPerValue, rng: &rng))
        encoder = Sequential(encoderLayers)
        decoder = Sequential(decoderLayers)
        encoder.computesInputGradient = false  // its input is data
    }

    private init(config: ModelConfig, encoder: Sequential, decoder: Sequential, likelihood: Likelihood) {
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
    }

    /// A model sharing this one's weights, with its own gradients and buffers: a worker that
    /// processes another slice of the batch on another core.
    public func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(
            config: config, encoder: encoder.replica() as! Sequential, decoder: decoder.replica() as! Sequential,
            likelihood: likelihood.replica())
    }

    public var latentDimension: Int { config.latentDimension }

    /// All parameters with their checkpoint names.
    public var namedParameters: [(name: String, parameter: Parameter)] {
        encoder.namedParameters.map { ("encoder.\($0.name)", $0.parameter) }
            + decoder.namedParameters.map { ("decoder.\($0.name)", $0.parameter) }
            + likelihood.namedParameters.map { ("likelihood.\($0.name)", $0.parameter) }
    }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Multiply-adds ×2 per image of the matrix products, for speed reports:
    /// `forward` through encoder and decoder; `training` adds the weight gradients and the input
    /// gradients of every layer but the encoder's first; `decoding` is the decoder alone.
    public var flopsPerImage: (forward: Double, training: Double, decoding: Double) {
        func linears(_ s: Sequential) -> [Linear] { s.layers.compactMap { $0 as? Linear } }
        let enc = linears(encoder).map { 2.0 * Double($0.inputSize * $0.outputSize) }
        let dec = linears(decoder).map { 2.0 * Double($0.inputSize * $0.outputSize) }
        let forward = enc.reduce(0, +) + dec.reduce(0, +)
        let inputGradients = forward - (enc.first ?? 0)
        return (forward, 2 * forward + inputGradients, dec.reduce(0, +))
    }

    /// q(z|x) as a [B, 2d] tensor [μ | log σ²] (owned by the encoder; overwritten next call).
    public func encode(_ x: Tensor) -> Tensor {
        precondition(x.rowSize == config.inputSize, "model expects \(config.inputSize) values per example, got \(x.shape)")
        let h = encoder(x)
        lastPosterior = h
        return h
    }

    /// The decoder's output (logits or means) for latent codes z [B, d].
    public func decode(_ z: Tensor) -> Tensor { decoder(z) }

    /// E[x|z] for latent codes z [B, d], as a new [B, C, H, W] tensor.
    public func decodeMean(_ z: Tensor) -> Tensor {
        let mean = Tensor(shape: [z.rows] + config.inputShape)
        decodeMean(z, into: mean)
        return mean
    }

    /// Posterior means μ(x) as a new [B, d] tensor.
    public func posteriorMeans(_ x: Tensor) -> Tensor {
        let h = encode(x)
        let d = latentDimension
        let mu = Tensor(shape: [x.rows, d])
        for b in 0..<x.rows { (mu.data + b * d).update(from: h.data + b * 2 * d, count: d) }
        return mu
    }

    /// Reconstruction x → μ(x) → E[x|z = μ(x)], as a new tensor shaped like one example per row.
    public func reconstruct(_ x: Tensor) -> Tensor { decodeMean(posteriorMeans(x)) }

    /// E[x|z] for latent codes z [B, d], written into `mean` (B rows of C·H·W values).
    public func decodeMean(_ z: Tensor, into mean: Tensor) {
        likelihood.mean(output: decoder(z), into: mean)
    }

    var muBuffer: Tensor?

    /// x → μ(x) → E[x|μ(x)], written into `mean`.
    public func reconstruct(_ x: Tensor, into mean: Tensor) {
        let h = encode(x)
        let d = latentDimension
        let mu = Tensor.reusing(muBuffer, rows: x.rows, columns: d)
        muBuffer = mu
        for b in 0..<x.rows { (mu.data + b * d).update(from: h.data + b * 2 * d, count: d) }
        decodeMean(mu, into: mean)
    }

    /// `count` images decoded from z ~ N(0, I).
    public func generate(count: Int, rng: inout RandomGenerator) -> Tensor {
        let z = Tensor(shape: [count, latentDimension])
        rng.fillNormal(z)
        return decodeMean(z)
    }
}
