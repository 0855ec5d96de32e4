import NN
import Tensor

/// One training step of an MLP VAE on an NVIDIA GPU: the same −ELBO, the same named ops and the
/// same Adam update as ``Trainer`` on the CPU, each op the GPU twin of the CPU function it is
/// checked against (`Kernels.cu`), the products through cuBLAS. The weights, their gradients and
/// Adam's moments live on the device; ``download(into:)`` copies the weights back (for an
/// evaluation or a checkpoint), ``upload(from:)`` sends a model's weights there.
///
/// A step, for a batch x [B, D] and ε drawn on the device from Philox stream t (the CPU's ε):
///
///     posterior = encoder(x);  z = μ + σ ⊙ ε;  logits = decoder(z)
///     loss = Σ_b (−log p(x_b|z_b) + β KL_b),  gradients scaled by 1/B
///     backward through the decoder, the reparameterisation and KL, the encoder; Adam.
///
/// Supported for now: Linear layers with ReLU or tanh between them, the Bernoulli likelihood,
/// the analytic KL, one stochastic layer, no labels; ``init(model:context:cublas:)`` names what
/// it cannot do.
public final class CUDAStep {
    /// One layer of a network as the GPU runs it.
    enum Op {
        /// Parameter indices (weight, bias) in the model's order; sizes; whether a ReLU follows.
        case linear(weight: Int, bias: Int, inputs: Int, outputs: Int, relu: Bool)
        case tanh
    }

    public let context: CUDAContext
    public let cublas: CUBLAS
    let encoderOps: [Op]
    let decoderOps: [Op]
    let latent: Int
    let pixels: Int
    /// The model's parameters on the device, in its order, with gradients and Adam's moments.
    let weights: [DeviceBuffer]
    let gradients: [DeviceBuffer]
    let firstMoments: [DeviceBuffer]
    let secondMoments: [DeviceBuffer]
    /// Adam's steps taken (t).
    public private(set) var stepCount = 0
    /// Buffers of the last batch size, made once.
    private var rows = 0
    private var x: DeviceBuffer?
    private var eps: DeviceBuffer?
    private var z: DeviceBuffer?
    private var encoderOutputs: [DeviceBuffer] = []
    private var decoderOutputs: [DeviceBuffer] = []
    private var encoderGradients: [DeviceBuffer] = []
    private var decoderGradients: [DeviceBuffer] = []
    private var rowLosses: DeviceBuffer?
    private var rowKL: DeviceBuffer?
    private var zGradient: DeviceBuffer?

    /// Plans `model`'s step on `context`'s GPU and uploads its weights (Adam's moments start at 0).
    public init(model: VariationalAutoencoder, context: CUDAContext, cublas: CUBLAS) throws {
        let config = model.config
        guard config.architecture == .mlp else { throw CUDAError("the GPU trains MLP models for now, not \(config.architecture.rawValue)") }
        guard model.likelihood is BernoulliLikelihood else { throw CUDAError("the GPU trains the Bernoulli likelihood for now") }
        guard config.conditionClasses == 0 else { throw CUDAError("the GPU does not train conditional models yet") }
        guard config.upperLatentDimension == 0 else { throw CUDAError("the GPU does not train two stochastic layers yet") }
        self.context = context
        self.cublas = cublas
        let parameters = model.parameters
        func index(_ p: Parameter) -> Int { parameters.firstIndex { $0 === p }! }
        func plan(_ network: Sequential) throws -> [Op] {
            var ops: [Op] = []
            for layer in network.layers {
                switch layer {
                case let linear as Linear:
                    ops.append(.linear(weight: index(linear.weight), bias: index(linear.bias), inputs: linear.inputSize, outputs: linear.outputSize, relu: false))
                case is ReLU:
                    guard case let .linear(w, b, i, o, _)? = ops.last else { throw CUDAError("the GPU runs a ReLU only after a Linear layer") }
                    ops[ops.count - 1] = .linear(weight: w, bias: b, inputs: i, outputs: o, relu: true)
                case is Tanh:
                    ops.append(.tanh)
                default:
                    throw CUDAError("the GPU does not run \(type(of: layer)) layers yet")
                }
            }
            return ops
        }
        encoderOps = try plan(model.encoder)
        decoderOps = try plan(model.decoder)
        latent = model.latentDimension
        pixels = config.inputShape.reduce(1, *)
        weights = try parameters.map { try DeviceBuffer($0.value.toArray()) }
        gradients = try parameters.map { try DeviceBuffer(count: $0.value.count) }
        firstMoments = try parameters.map { try DeviceBuffer([Float](repeating: 0, count: $0.value.count)) }
        secondMoments = try parameters.map { try DeviceBuffer([Float](repeating: 0, count: $0.value.count)) }
    }

    /// Sends `optimizer`'s moments and step count to the device (after a checkpoint was loaded).
    public func upload(state optimizer: Adam) throws {
        for (k, buffer) in firstMoments.enumerated() { try buffer.upload(optimizer.firstMoments[k].toArray()) }
        for (k, buffer) in secondMoments.enumerated() { try buffer.upload(optimizer.secondMoments[k].toArray()) }
        stepCount = optimizer.stepCount
    }

    /// Copies the device's moments and step count into `optimizer` (before a checkpoint).
    public func download(state optimizer: Adam) throws {
        for (buffers, tensors) in [(firstMoments, optimizer.firstMoments), (secondMoments, optimizer.secondMoments)] {
            for (buffer, tensor) in zip(buffers, tensors) {
                let values = try buffer.download()
                values.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: values.count) }
            }
        }
        optimizer.stepCount = stepCount
    }

    /// Whether the GPU step computes `objective` with `optimizer` as the CPU does: the plain
    /// −ELBO (analytic KL, one sample, β and warm-up allowed, no free bits) with Adam or AdamW,
    /// no clipping; otherwise the first thing it cannot do, in words.
    public static func unsupported(objective: TrainingObjective, optimizer: Optimizer, clipNorm: Float?) -> String? {
        if objective.usesMonteCarlo { return "the sampled KL and the IWAE objective" }
        if objective.freeBits > 0 { return "free bits" }
        if clipNorm != nil { return "gradient clipping" }
        if !(optimizer is Adam) { return "optimisers other than Adam and AdamW" }
        return nil
    }

    /// Sends `model`'s weights to the device (a model with this step's parameter shapes).
    public func upload(from model: VariationalAutoencoder) throws {
        for (buffer, p) in zip(weights, model.parameters) { try buffer.upload(p.value.toArray()) }
    }

    /// Copies the device's weights into `model`'s parameters.
    public func download(into model: VariationalAutoencoder) throws {
        for (buffer, p) in zip(weights, model.parameters) {
            let values = try buffer.download()
            values.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: values.count) }
        }
    }

    /// Widths of each op's output, for a network whose input has `width` columns.
    private func widths(_ ops: [Op], input width: Int) -> [Int] {
        var current = width
        return ops.map { op in
            if case let .linear(_, _, _, outputs, _) = op { current = outputs }
            return current
        }
    }

    private func prepare(rows: Int) throws {
        guard rows != self.rows else { return }
        self.rows = rows
        x = try DeviceBuffer(count: rows * pixels)
        eps = try DeviceBuffer(count: rows * latent)
        z = try DeviceBuffer(count: rows * latent)
        encoderOutputs = try widths(encoderOps, input: pixels).map { try DeviceBuffer(count: rows * $0) }
        decoderOutputs = try widths(decoderOps, input: latent).map { try DeviceBuffer(count: rows * $0) }
        encoderGradients = try widths(encoderOps, input: pixels).map { try DeviceBuffer(count: rows * $0) }
        decoderGradients = try widths(decoderOps, input: latent).map { try DeviceBuffer(count: rows * $0) }
        rowLosses = try DeviceBuffer(count: rows)
        rowKL = try DeviceBuffer(count: rows)
        zGradient = try DeviceBuffer(count: rows * latent)
    }

    /// Runs `ops` forward from `input` (width `width`), each op's output into `outputs`.
    private func forward(_ ops: [Op], input: DeviceBuffer, outputs: [DeviceBuffer]) throws {
        var h = input
        for (op, y) in zip(ops, outputs) {
            switch op {
            case let .linear(w, b, inputs, outputsCount, relu):
                // y = h Wᵀ (W is [out, in], PyTorch's layout), then + b and the ReLU in one pass.
                try cublas.sgemm(
                    transposeA: false, transposeB: true, m: rows, n: outputsCount, k: inputs, alpha: 1, a: h.address, lda: inputs,
                    b: weights[w].address, ldb: inputs, beta: 0, c: y.address, ldc: outputsCount)
                try context.launch("vae_add_bias", grid: CUDAContext.grid(for: rows * outputsCount), [
                    .buffer(y), .buffer(weights[b]), .int32(Int32(rows)), .int32(Int32(outputsCount)), .int32(relu ? 1 : 0),
                ])
            case .tanh:
                try context.launch("vae_tanh_forward", grid: CUDAContext.grid(for: y.count), [.buffer(h), .buffer(y), .int64(y.count)])
            }
            h = y
        }
    }

    /// Runs `ops` backward from ∂L/∂(last output) in `gradientsOut.last`, given the network's
    /// `input` and each op's output; sets the parameters' gradients, and writes ∂L/∂input into
    /// `inputGradient` when it is given.
    private func backward(_ ops: [Op], input: DeviceBuffer, outputs: [DeviceBuffer], gradientsOut: [DeviceBuffer], inputGradient: DeviceBuffer?) throws {
        for k in stride(from: ops.count - 1, through: 0, by: -1) {
            let g = gradientsOut[k]
            let h = k == 0 ? input : outputs[k - 1]
            let dh: DeviceBuffer? = k == 0 ? inputGradient : gradientsOut[k - 1]
            switch ops[k] {
            case let .linear(w, b, inputs, outputsCount, relu):
                if relu {
                    try context.launch("vae_relu_backward", grid: CUDAContext.grid(for: g.count), [.buffer(g), .buffer(outputs[k]), .int64(rows * outputsCount)])
                }
                try context.launch("vae_column_sums", grid: CUDAContext.grid(for: outputsCount), [
                    .buffer(g), .buffer(gradients[b]), .int32(Int32(rows)), .int32(Int32(outputsCount)),
                ])
                // ∂W = gᵀ h [out, in];  ∂h = g W [rows, in].
                try cublas.sgemm(
                    transposeA: true, transposeB: false, m: outputsCount, n: inputs, k: rows, alpha: 1, a: g.address, lda: outputsCount,
                    b: h.address, ldb: inputs, beta: 0, c: gradients[w].address, ldc: inputs)
                if let dh {
                    try cublas.sgemm(
                        transposeA: false, transposeB: false, m: rows, n: inputs, k: outputsCount, alpha: 1, a: g.address, lda: outputsCount,
                        b: weights[w].address, ldb: inputs, beta: 0, c: dh.address, ldc: inputs)
                }
            case .tanh:
                guard let dh else { continue }
                try context.launch("vae_tanh_backward", grid: CUDAContext.grid(for: g.count), [.buffer(outputs[k]), .buffer(g), .buffer(dh), .int64(g.count)])
            }
        }
    }

    /// One step on `batch` [B, D] (values in [0, 1]) with ε from Philox stream `stream` under
    /// `noiseSeed`, KL weight `klWeight` and Adam `optimizer`'s settings (its learning rate and
    /// betas; its moments are this step's own, on the device). Returns the batch's loss terms
    /// before the update (read back: the one synchronisation of the step).
    public func step(_ batch: Tensor, noiseSeed: UInt64, stream: UInt64, klWeight: Float, optimizer: Adam) throws -> LossBreakdown {
        try prepare(rows: batch.rows)
        guard let x, let eps, let z, let rowLosses, let rowKL, let zGradient else { preconditionFailure("buffers") }
        try x.upload(batch)
        try context.launch("vae_philox_normals", grid: CUDAContext.grid(for: (rows * latent + 3) / 4 + 1), [
            .uint64(noiseSeed), .uint64(stream), .uint64(0), .int64(rows * latent), .buffer(eps),
        ])
        try forward(encoderOps, input: x, outputs: encoderOutputs)
        let posterior = encoderOutputs.last!
        try context.launch("vae_reparameterize", grid: CUDAContext.grid(for: rows * latent), [
            .buffer(posterior), .buffer(eps), .buffer(z), .int32(Int32(rows)), .int32(Int32(latent)),
        ])
        try forward(decoderOps, input: z, outputs: decoderOutputs)
        let scale = 1 / Float(rows)
        try context.launch("vae_bernoulli_nll", grid: rows, block: 256, shared: 256 * 4, [
            .buffer(x), .buffer(decoderOutputs.last!), .buffer(decoderGradients.last!), .buffer(rowLosses), .int32(Int32(pixels)), .float(scale),
        ])
        try context.launch("vae_kl_rows", grid: CUDAContext.grid(for: rows), [.buffer(posterior), .buffer(rowKL), .int32(Int32(rows)), .int32(Int32(latent))])
        // ∂L/∂z from the decoder, then the posterior's gradient (KL's and the reparameterisation's).
        try backward(decoderOps, input: z, outputs: decoderOutputs, gradientsOut: decoderGradients, inputGradient: zGradient)
        try context.launch("vae_posterior_backward", grid: CUDAContext.grid(for: rows * latent), [
            .buffer(posterior), .buffer(eps), .buffer(zGradient), .buffer(nil), .buffer(encoderGradients.last!), .int32(Int32(rows)),
            .int32(Int32(latent)), .float(scale * klWeight),
        ])
        try backward(encoderOps, input: x, outputs: encoderOutputs, gradientsOut: encoderGradients, inputGradient: nil)
        // Adam, as Adam.beginStep and vae_adam_update compute it.
        stepCount += 1
        let (stepSize, inverseRootCorrection2) = optimizer.stepConstants(step: stepCount)
        for k in weights.indices {
            try context.launch("vae_adam", grid: CUDAContext.grid(for: weights[k].count), [
                .buffer(weights[k]), .buffer(gradients[k]), .buffer(firstMoments[k]), .buffer(secondMoments[k]), .int64(weights[k].count),
                .float(optimizer.beta1), .float(optimizer.beta2), .float(optimizer.epsilon), .float(stepSize), .float(inverseRootCorrection2),
                .float(1 - optimizer.learningRate * optimizer.decoupledWeightDecay),
            ])
        }
        // The rows' terms read back and added in double, as the CPU adds its per-example figures.
        let reconstruction = try rowLosses.download().reduce(0.0) { $0 + Double($1) }
        let kl = try rowKL.download().reduce(0.0) { $0 + Double($1) }
        return LossBreakdown(reconstruction: reconstruction, kl: kl, objective: reconstruction + Double(klWeight) * kl, images: rows)
    }
}
