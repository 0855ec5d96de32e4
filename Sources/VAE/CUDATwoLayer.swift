import Tensor

/// The second stochastic layer on the GPU (Burda et al. 2015, §5), the twin of
/// ``VariationalAutoencoder/twoLayerObjective(_:noise:upperNoise:samples:computeGradients:klWeight:analyticUpperKL:gradientScale:)``
/// on rows r = b·K + s:
///
///     z₁ = μ₁(x) + σ₁(x) ⊙ ε₁,   [μ₂ | log σ₂²] = encoder2(z₁),   z₂ = μ₂ + σ₂ ⊙ ε₂,
///     [μ_p | log σ_p²] = decoder2(z₂),   logits = decoder(z₁),
///     KL = log q(z₁|x) + log q(z₂|z₁) − log p(z₁|z₂) − log p(z₂),   log w = −NLL − KL,
///
/// and backward: the decoder's ∂/∂z₁ plus −β log p(z₁|z₂)'s (`vae_conditional_prior_gradient`),
/// back through decoder2 to ∂/∂z₂, then encoder2's output gradient
/// (`vae_upper_posterior_gradient`) back through encoder2, whose input gradient is added to
/// ∂/∂z₁ (`vae_accumulate`) before the first layer's posterior gradient.
extension CUDAStep {
    /// The second layer's buffers for a number of rows: its two networks', ε₂ and z₂, and for
    /// training ∂/∂z₂ (decoder2's input gradient) and encoder2's input gradient.
    struct UpperWork {
        let encoder2: Workspace
        let decoder2: Workspace
        /// ε₂ of the rows (an evaluation points it at its pass's rows of every image's ε₂).
        var eps2: DeviceBuffer
        let z2: DeviceBuffer
        let dz2: DeviceBuffer?
        let dz1: DeviceBuffer?

        func posterior2(z1: DeviceBuffer) -> DeviceBuffer { encoder2.lastOutput(input: z1) }
        var prior: DeviceBuffer { decoder2.lastOutput(input: z2) }
    }

    func makeUpperWork(rows: Int, training: Bool) throws -> UpperWork {
        UpperWork(
            encoder2: try makeWorkspace(encoder2Ops, input: latent, rows: rows, training: training),
            decoder2: try makeWorkspace(decoder2Ops, input: upperLatent, rows: rows, training: training),
            eps2: try DeviceBuffer(count: rows * upperLatent), z2: try DeviceBuffer(count: rows * upperLatent),
            dz2: training ? try DeviceBuffer(count: rows * upperLatent) : nil, dz1: training ? try DeviceBuffer(count: rows * latent) : nil)
    }

    /// Device floats per row of an evaluation's second layer (its networks, ε₂ and z₂).
    func upperValuesPerRow() -> Int {
        workspaceValuesPerRow(encoder2Ops, input: latent, training: false) + workspaceValuesPerRow(decoder2Ops, input: upperLatent, training: false)
            + 2 * upperLatent
    }

    /// z₂ and the prior p(z₁|z₂) of `rows` rows of z₁ (ε₂ already in `work.eps2`).
    func upperForward(z1: DeviceBuffer, rows: Int, work: UpperWork) throws {
        try forward(encoder2Ops, input: z1, width: latent, work: work.encoder2, rows: rows)
        try context.launch("vae_sample_latents", grid: CUDAContext.grid(for: rows * upperLatent), [
            .buffer(work.posterior2(z1: z1)), .buffer(work.eps2), .buffer(work.z2), .int32(Int32(rows)), .int32(1), .int32(Int32(upperLatent)),
        ])
        try forward(decoder2Ops, input: work.z2, width: upperLatent, work: work.decoder2, rows: rows)
    }

    /// Each row's KL term into `rowKL` (with the closed-form z₂ part when `analytic`), and with
    /// `logWeights` log w = −NLL − KL there in double (`rowNLL` the rows' −log p(x|z₁)).
    func twoLayerKL(
        posterior1: DeviceBuffer, eps1: DeviceBuffer, z1: DeviceBuffer, images: Int, samples: Int, analytic: Bool, work: UpperWork,
        rowKL: DeviceBuffer, rowNLL: DeviceBuffer? = nil, logWeights: DeviceBuffer? = nil
    ) throws {
        try context.launch("vae_two_layer_kl", grid: CUDAContext.grid(for: images * samples), [
            .buffer(posterior1), .buffer(eps1), .buffer(z1), .buffer(work.posterior2(z1: z1)), .buffer(work.eps2), .buffer(work.z2), .buffer(work.prior),
            .int32(Int32(images)), .int32(Int32(samples)), .int32(Int32(latent)), .int32(Int32(upperLatent)), .int32(analytic ? 1 : 0), .buffer(rowKL),
            .buffer(rowNLL), .buffer(logWeights),
        ])
    }

    /// Adds to `dz1` (the decoder's ∂/∂z₁) the gradient through p(z₁|z₂) and the second layer,
    /// setting decoder2's and encoder2's parameter gradients; c = scale · β, `weights` each row's
    /// normalised importance weight.
    func upperBackward(z1: DeviceBuffer, rows: Int, c: Float, analytic: Bool, weights: DeviceBuffer, work: UpperWork, dz1: DeviceBuffer) throws {
        guard let dz2 = work.dz2, let dz1Upper = work.dz1, let dPrior = work.decoder2.lastGradient(input: nil),
              let dPosterior2 = work.encoder2.lastGradient(input: nil) else { preconditionFailure("a second layer's training buffers") }
        try context.launch("vae_conditional_prior_gradient", grid: CUDAContext.grid(for: rows * latent), [
            .buffer(z1), .buffer(work.prior), .buffer(weights), .int32(Int32(rows)), .int32(Int32(latent)), .float(c), .buffer(dz1), .buffer(dPrior),
        ])
        try backward(decoder2Ops, input: work.z2, width: upperLatent, work: work.decoder2, inputGradient: dz2, rows: rows)
        try context.launch("vae_upper_posterior_gradient", grid: CUDAContext.grid(for: rows * upperLatent), [
            .buffer(work.posterior2(z1: z1)), .buffer(work.eps2), .buffer(work.z2), .buffer(dz2), .buffer(weights), .int32(Int32(rows)),
            .int32(Int32(upperLatent)), .float(c), .int32(analytic ? 1 : 0), .buffer(dPosterior2),
        ])
        try backward(encoder2Ops, input: z1, width: latent, work: work.encoder2, inputGradient: dz1Upper, rows: rows)
        try context.launch("vae_accumulate", grid: CUDAContext.grid(for: rows * latent), [.buffer(dz1), .buffer(dz1Upper), .int64(rows * latent)])
    }
}
