import VAE

extension ModelConfig {
    /// One line naming the network, e.g. "MLP VAE 784-400-20".
    public var summary: String {
        let shape = inputShape.map(String.init).joined(separator: "×")
        let kind = isConditional ? "conditional " : ""
        switch architecture {
        case .conv:
            return "\(kind)conv VAE \(shape) → channels \(channels.map(String.init).joined(separator: ",")) → z \(latentDimension) (\(upsampling.rawValue) upsampling)"
        case .mlp:
            return "\(kind)MLP VAE " + ([inputSize] + hiddenSizes + [latentDimension]).map(String.init).joined(separator: "-")
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
