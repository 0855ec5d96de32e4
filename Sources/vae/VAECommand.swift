import ArgumentParser

@main
struct VAECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Train Variational Autoencoders on images on the CPU, evaluate them, and draw what they learned.",
        discussion: """
            A run folder (written by `vae train --out RUN`) holds everything about one model:
            model.safetensors (weights + configuration), config.json, metrics.csv and pictures. \
            The other commands take that folder.

            Losses are in nats per image: −ELBO = reconstruction (−log p(x|z)) + KL(q(z|x) ‖ p(z)), \
            summed over pixels and latent dimensions, averaged over images.
            """,
        subcommands: [Train.self, Evaluate.self, Sample.self, Reconstruct.self, Interpolate.self, Manifold.self, Traverse.self, Scatter.self, Encode.self, Bench.self]
    )
}
