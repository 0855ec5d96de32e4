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
    /// With a second stochastic layer: q(z₂|z₁) → [μ₂ | log σ₂²] and p(z₁|z₂) → [μ | log σ²] of
    /// z₁ (nil for a model with one). Checkpoint names `encoder2.<i>.…`, `decoder2.<i>.…`.
    public let encoder2: Sequential?
    public let decoder2: Sequential?

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
    /// The two-stochastic-layer objective's scratch tensors.
    let twoLayerBuffers = TwoLayerBuffers()

    private var decoderCondition: Tensor?
    private lazy var encoderConditioning = encoder.layers.compactMap { $0 as? Conditioning }
    private lazy var decoderConditioning = decoder.layers.compactMap { $0 as? Conditioning }

    /// Gives the encoder's conditioning layers the one-hot labels of `rows` images. A conditional
    /// model needs `condition` [rows, classes]; an unconditional one ignores it.
    func applyEncoderCondition(_ condition: Tensor?, rows: Int) {
        guard config.isConditional else { return }
        guard let c = condition, c.rows == rows, c.rowSize == config.conditionClasses else {
            preconditionFailure("a conditional model needs one-hot labels [\(rows), \(config.conditionClasses)] with its images")
        }
        for layer in encoderConditioning { layer.condition = c }
    }

    /// Gives the decoder's conditioning layers `rows` labels, row r taking `condition` row
    /// `source(r)` (the same image's label for all of its samples).
    func applyDecoderCondition(_ condition: Tensor?, rows: Int, source: (Int) -> Int) {
        guard config.isConditional else { return }
        guard let c = condition, c.rowSize == config.conditionClasses else {
            preconditionFailure("a conditional model needs one-hot labels [B, \(config.conditionClasses)] with its codes")
        }
        let k = config.conditionClasses
        let target: Tensor
        if rows == c.rows && (0..<rows).allSatisfy({ source($0) == $0 }) {
            target = c
        } else {
            target = Tensor.reusing(decoderCondition, rows: rows, columns: k)
            decoderCondition = target
            for r in 0..<rows { (target.data + r * k).update(from: c.data + source(r) * k, count: k) }
        }
        for layer in decoderConditioning { layer.condition = target }
    }

    /// Runs the decoder on `z`, decoder row r conditioned on label row `source(r)`.
    func runDecoder(_ z: Tensor, condition: Tensor?, source: (Int) -> Int = { $0 }) -> Tensor {
        applyDecoderCondition(condition, rows: z.rows, source: source)
        return decoder(z)
    }

    /// Builds the networks from `config` (its ``ModelConfig/networkPlan(outputsPerValue:)``),
    /// initialised as PyTorch would from `rng`.
    public init(config: ModelConfig, rng: inout RandomGenerator) {
        self.config = config
        likelihood = config.makeLikelihood()
        let plan = config.networkPlan(outputsPerValue: likelihood.outputsPerValue)
        encoder = Sequential(plan.encoder.map { $0.make(rng: &rng, initialization: config.initialization) })
        decoder = Sequential(plan.decoder.map { $0.make(rng: &rng, initialization: config.initialization) })
        let upper = config.upperNetworkPlan
        encoder2 = upper.encoder.isEmpty ? nil : Sequential(upper.encoder.map { $0.make(rng: &rng, initialization: config.initialization) })
        decoder2 = upper.decoder.isEmpty ? nil : Sequential(upper.decoder.map { $0.make(rng: &rng, initialization: config.initialization) })
        // Layers that see only data (and the label) need no input gradient: everything up to and
        // including the first layer with parameters (past the label join and layout conversion).
        for layer in encoder.layers {
            layer.computesInputGradient = false
            if !layer.namedParameters.isEmpty { break }
        }
    }

    private init(config: ModelConfig, encoder: Sequential, decoder: Sequential, encoder2: Sequential?, decoder2: Sequential?, likelihood: Likelihood) {
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        self.encoder2 = encoder2
        self.decoder2 = decoder2
        self.likelihood = likelihood
    }

    /// A model sharing this one's weights, with its own gradients and buffers: a worker that
    /// processes another slice of the batch on another core.
    public func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(
            config: config, encoder: encoder.replica() as! Sequential, decoder: decoder.replica() as! Sequential,
            encoder2: encoder2.map { $0.replica() as! Sequential }, decoder2: decoder2.map { $0.replica() as! Sequential },
            likelihood: likelihood.replica())
    }

    public var latentDimension: Int { config.latentDimension }

    /// The operand format of every network's matrix products (FP32 by default; `.bf16` needs
    /// `BF16.isSupported`: resolve it with `BF16.resolve(_:)`). The weights, the objective
    /// and every reported figure stay FP32 either way; replicas keep the choice.
    public var precision: MatrixPrecision {
        get { encoder.precision }
        set {
            precondition(newValue == .fp32 || BF16.isSupported, "bf16 products need a CPU with AVX512_BF16")
            for network in [encoder, decoder, encoder2, decoder2].compactMap({ $0 }) { network.precision = newValue }
        }
    }

    /// All parameters with their checkpoint names.
    public var namedParameters: [(name: String, parameter: Parameter)] {
        encoder.namedParameters.map { ("encoder.\($0.name)", $0.parameter) }
            + decoder.namedParameters.map { ("decoder.\($0.name)", $0.parameter) }
            + (encoder2?.namedParameters ?? []).map { ("encoder2.\($0.name)", $0.parameter) }
            + (decoder2?.namedParameters ?? []).map { ("decoder2.\($0.name)", $0.parameter) }
            + likelihood.namedParameters.map { ("likelihood.\($0.name)", $0.parameter) }
    }

    public var parameters: [Parameter] { namedParameters.map(\.parameter) }

    /// Called during a backward pass whenever a layer's parameter gradients have become final,
    /// with the index in ``parameters`` of that layer's first parameter: the backward pass goes
    /// through the parameters in reverse order, so every parameter from that index on has its
    /// final gradient then (the likelihood's own, last in the list, are final before the
    /// decoder's). For summing gradients across processes while the rest of the backward pass
    /// runs. Not called for a model with two stochastic layers (whose backward pass takes the
    /// networks in another order).
    public var onGradientsFinal: ((Int) -> Void)? {
        didSet {
            guard encoder2 == nil else { return }
            var next = 0
            for network in [encoder, decoder] {
                var first: [Int: Int] = [:]
                for (index, layer) in network.layers.enumerated() where !layer.namedParameters.isEmpty {
                    first[index] = next
                    next += layer.namedParameters.count
                }
                network.afterLayerBackward = onGradientsFinal.map { hook in { index in if let k = first[index] { hook(k) } } }
            }
        }
    }

    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Multiply-adds ×2 per image of the matrix products, for speed reports:
    /// `forward` through encoder and decoder; `training` adds the weight gradients and the input
    /// gradients of every layer but the encoder's first; `decoding` is the decoder alone.
    /// With two stochastic layers `forward` and `training` include q(z₂|z₁) and p(z₁|z₂) (every
    /// one of whose layers computes an input gradient), and `decoding` p(z₁|z₂) before p(x|z₁).
    public var flopsPerImage: (forward: Double, training: Double, decoding: Double) {
        let enc = Self.productFLOPs(encoder, inputShape: config.inputShape)
        let dec = Self.productFLOPs(decoder, inputShape: [latentDimension + config.conditionClasses])
        let upper = (encoder2.map { Self.productFLOPs($0, inputShape: [latentDimension]) } ?? [])
            + (decoder2.map { Self.productFLOPs($0, inputShape: [config.upperLatentDimension]) } ?? [])
        let decoding = dec.reduce(0, +) + (decoder2.map { Self.productFLOPs($0, inputShape: [config.upperLatentDimension]).reduce(0, +) } ?? 0)
        let forward = enc.reduce(0, +) + dec.reduce(0, +) + upper.reduce(0, +)
        let inputGradients = forward - (enc.first ?? 0)
        return (forward, 2 * forward + inputGradients, decoding)
    }

    /// 2 × multiply-adds per image of each matrix-product layer of `network`, in order.
    static func productFLOPs(_ network: Sequential, inputShape: [Int]) -> [Double] {
        var shape = inputShape
        var out: [Double] = []
        for layer in network.layers {
            switch layer {
            case let l as Linear:
                out.append(2 * Double(l.inputSize * l.outputSize))
                shape = [l.outputSize]
            case let c as Conv2D:
                let (h, w) = (c.geometry.convolutionOutput(shape[1]), c.geometry.convolutionOutput(shape[2]))
                out.append(2 * Double(h * w * c.outChannels * c.inChannels * c.geometry.kernel * c.geometry.kernel))
                shape = [c.outChannels, h, w]
            case let c as ConvTranspose2D:
                out.append(2 * Double(shape[1] * shape[2] * c.inChannels * c.outChannels * c.geometry.kernel * c.geometry.kernel))
                shape = [c.outChannels, c.geometry.transposedOutput(shape[1]), c.geometry.transposedOutput(shape[2])]
            case let r as Reshape:
                shape = r.rowShape
            case let u as Upsample:
                shape = [shape[0], shape[1] * u.factor, shape[2] * u.factor]
            case let c as Conditioning:
                shape = [shape.reduce(1, *) + c.conditionSize]
            default:
                break
            }
        }
        return out
    }

    /// q(z|x) as a [B, 2d] tensor [μ | log σ²] (owned by the encoder; overwritten next call).
    /// `condition`: the images' one-hot labels [B, classes] (conditional models only).
    public func encode(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        precondition(x.rowSize == config.inputSize, "model expects \(config.inputSize) values per example, got \(x.shape)")
        applyEncoderCondition(condition, rows: x.rows)
        let h = encoder(x)
        lastPosterior = h
        return h
    }

    /// The decoder's output (logits or means) for latent codes z [B, d].
    public func decode(_ z: Tensor, condition: Tensor? = nil) -> Tensor { runDecoder(z, condition: condition) }

    /// E[x|z] for latent codes z [B, d], as a new [B, C, H, W] tensor.
    public func decodeMean(_ z: Tensor, condition: Tensor? = nil) -> Tensor {
        let mean = Tensor(shape: [z.rows] + config.inputShape)
        decodeMean(z, condition: condition, into: mean)
        return mean
    }

    /// Posterior means μ(x) as a new [B, d] tensor.
    public func posteriorMeans(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        let h = encode(x, condition: condition)
        let d = latentDimension
        let mu = Tensor(shape: [x.rows, d])
        for b in 0..<x.rows { (mu.data + b * d).update(from: h.data + b * 2 * d, count: d) }
        return mu
    }

    /// Reconstruction x → μ(x) → E[x|z = μ(x)], as a new tensor shaped like one example per row.
    public func reconstruct(_ x: Tensor, condition: Tensor? = nil) -> Tensor {
        decodeMean(posteriorMeans(x, condition: condition), condition: condition)
    }

    /// E[x|z] for latent codes z [B, d], written into `mean` (B rows of C·H·W values).
    public func decodeMean(_ z: Tensor, condition: Tensor? = nil, into mean: Tensor) {
        likelihood.mean(output: runDecoder(z, condition: condition), into: mean)
    }

    var muBuffer: Tensor?

    /// x → μ(x) → E[x|μ(x)], written into `mean`.
    public func reconstruct(_ x: Tensor, condition: Tensor? = nil, into mean: Tensor) {
        let h = encode(x, condition: condition)
        let d = latentDimension
        let mu = Tensor.reusing(muBuffer, rows: x.rows, columns: d)
        muBuffer = mu
        for b in 0..<x.rows { (mu.data + b * d).update(from: h.data + b * 2 * d, count: d) }
        decodeMean(mu, condition: condition, into: mean)
    }

    /// `count` images decoded from z ~ N(0, I); a conditional model draws them with the one-hot
    /// labels `condition` [count, classes].
    public func generate(count: Int, condition: Tensor? = nil, rng: inout RandomGenerator) -> Tensor {
        decodeMean(samplePrior(count: count, rng: &rng), condition: condition)
    }

    /// The mean of p(z₁|z₂) for codes z₂ [B, d₂] (two stochastic layers), as a new [B, d] tensor.
    public func conditionalPriorMean(_ z2: Tensor) -> Tensor {
        guard let decoder2 else { preconditionFailure("the model has one stochastic layer") }
        let prior = decoder2(z2)
        let d = latentDimension
        let mu = Tensor(shape: [z2.rows, d])
        for r in 0..<z2.rows { (mu.data + r * d).update(from: prior.data + r * 2 * d, count: d) }
        return mu
    }

    /// `count` codes z [count, d] from the prior: N(0, I), or with two stochastic layers
    /// z₂ ~ N(0, I) and z₁ ~ p(z₁|z₂) = N(μ_p(z₂), diag σ_p²(z₂)) (z₂ drawn first, then ε of z₁).
    public func samplePrior(count: Int, rng: inout RandomGenerator) -> Tensor {
        let z = Tensor(shape: [count, latentDimension])
        guard let decoder2 else {
            rng.fillNormal(z)
            return z
        }
        let z2 = Tensor(shape: [count, config.upperLatentDimension])
        rng.fillNormal(z2)
        let prior = decoder2(z2)
        rng.fillNormal(z)
        let d = latentDimension
        for r in 0..<count {
            let mu = prior.data + r * 2 * d, logVar = mu + d
            for j in 0..<d { z[r * d + j] = mu[j] + fastExp(0.5 * logVar[j]) * z[r * d + j] }
        }
        return z
    }
}
