import VAE

extension ModelConfig {
    /// One line naming the network, e.g. "MLP VAE 784-400-20", or with a second stochastic
    /// layer "MLP VAE 784-200-200-100, z₂ 100-100-50".
    public var summary: String {
        let shape = inputShape.map(String.init).joined(separator: "×")
        let kind = isConditional ? "conditional " : ""
        let upper = upperLatentDimension > 0 ? ", z₂ " + ([latentDimension] + upperHiddenSizes + [upperLatentDimension]).map(String.init).joined(separator: "-") : ""
        switch architecture {
        case .conv:
            return "\(kind)conv VAE \(shape) → channels \(channels.map(String.init).joined(separator: ",")) → z \(latentDimension) (\(upsampling.rawValue) upsampling)" + upper
        case .mlp:
            return "\(kind)MLP VAE " + ([inputSize] + hiddenSizes + [latentDimension]).map(String.init).joined(separator: "-") + upper
        }
    }
}

extension TrainingObjective {
    /// One line naming what training minimises.
    public var summary: String {
        if importanceSamples > 1 { return "IWAE bound with K = \(importanceSamples) importance samples" }
        var parts = ["−ELBO (\(kl == .analytic ? "analytic" : "one-sample Monte-Carlo") KL)"]
        if beta != 1 { parts.append("β = \(beta)") }
        if klWarmupEpochs > 0 { parts.append("KL warm-up over \(fixed(klWarmupEpochs, 1)) epochs") }
        if freeBits > 0 { parts.append("free bits λ = \(freeBits) nats per dimension") }
        return parts.joined(separator: ", ")
    }
}
