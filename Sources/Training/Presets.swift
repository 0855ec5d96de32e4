/// Named settings that reproduce a published protocol. `vae train --preset NAME` puts its flags
/// where `--preset NAME` stands, so flags given after it override them (the last value of an
/// option wins).
public enum Preset: String, CaseIterable, Sendable {
    /// Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", one stochastic
    /// layer on dynamically binarised MNIST, trained as a VAE (k = 1): encoder 784-200-200 (tanh)
    /// → μ, log σ² of z ∈ R⁵⁰; decoder 50-200-200-784 (tanh) → Bernoulli logits; batch 20; Adam
    /// (β₁ 0.9, β₂ 0.999, ε 1e-4, the paper's figures); the 8-stage `iwae` schedule over 3,280
    /// epochs; Glorot-uniform weights, zero biases, the output bias at the logit of the mean
    /// training image; the sampled KL (log q(z|x) − log p(z)), as the published code trains
    /// its VAE; the weights kept after each stage; the test set evaluated after every 10th epoch
    /// (and the first and last) rather than all 3,280. Evaluate with `vae eval RUN --iw-samples 5000`.
    case iwaePaper = "iwae-paper"

    /// The flags the preset stands for.
    public var arguments: [String] {
        switch self {
        case .iwaePaper:
            ["--dataset", "mnist", "--arch", "mlp", "--hidden", "200,200", "--activation", "tanh", "--latent", "50", "--likelihood", "bernoulli",
             "--binarize", "--batch-size", "20", "--optimizer", "adam", "--adam-beta1", "0.9", "--adam-beta2", "0.999", "--adam-epsilon", "1e-4",
             "--lr", "1e-3", "--lr-schedule", "iwae", "--epochs", "3280", "--init", "glorot", "--output-bias", "data", "--kl", "mc",
             "--snapshot-epochs", "1,4,13,40,121,364,1093,3280", "--test-every", "10"]
        }
    }

    /// The flags of the preset for a model with `stochasticLayers` layers of latent variables:
    /// for two, Burda et al.'s two-layer model (z₁ of 100 and z₂ of 50 dimensions, q(z₂|z₁) and
    /// p(z₁|z₂) through two hidden layers of 100).
    public func arguments(stochasticLayers: Int) -> [String] {
        guard stochasticLayers == 2 else { return arguments }
        switch self {
        case .iwaePaper:
            var flags = arguments
            if let i = flags.firstIndex(of: "--latent") { flags[i + 1] = "100" }
            return flags + ["--stochastic-layers", "2", "--latent2", "50", "--hidden2", "100,100"]
        }
    }

    /// The value of the last `--stochastic-layers N` (or `=N`) among `arguments` (1 if none).
    static func stochasticLayers(in arguments: [String]) -> Int {
        var layers = 1
        for (i, a) in arguments.enumerated() {
            if a == "--stochastic-layers", i + 1 < arguments.count { layers = Int(arguments[i + 1]) ?? layers }
            if a.hasPrefix("--stochastic-layers=") { layers = Int(a.dropFirst("--stochastic-layers=".count)) ?? layers }
        }
        return layers
    }

    /// `arguments` with every `--preset NAME` (or `--preset=NAME`) replaced by its flags, but for
    /// those in `dropping` (with their values: for a command that lacks them); throws for an
    /// unknown name.
    public static func expand(_ arguments: [String], dropping: Set<String> = []) throws -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            var name: String?
            if a == "--preset" {
                guard i + 1 < arguments.count else { throw ConfigurationError("--preset needs a name: \(allCases.map(\.rawValue).joined(separator: ", "))") }
                name = arguments[i + 1]
                i += 1
            } else if a.hasPrefix("--preset=") {
                name = String(a.dropFirst("--preset=".count))
            }
            if let name {
                guard let preset = Preset(rawValue: name) else {
                    throw ConfigurationError("unknown --preset '\(name)' (known: \(allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                var flags = preset.arguments(stochasticLayers: Self.stochasticLayers(in: arguments))[...]
                while let flag = flags.first {
                    let value = flags.dropFirst().first.map { !$0.hasPrefix("--") } ?? false
                    if !dropping.contains(flag) { out += flags.prefix(value ? 2 : 1) }
                    flags = flags.dropFirst(value ? 2 : 1)
                }
            } else {
                out.append(a)
            }
            i += 1
        }
        return out
    }
}
