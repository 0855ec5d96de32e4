import Datasets
import Foundation
import NN
import Tensor

/// One training step of a VAE on an NVIDIA GPU: the same −ELBO, the same named ops and the
/// same Adam update as ``Trainer`` on the CPU, each op the GPU twin of the CPU function it is
/// checked against (`Kernels.cu`), the products through cuBLAS. The weights, their gradients and
/// Adam's moments live on the device (each kind in one flat buffer, so one launch updates them
/// all); ``download(into:)`` copies the weights back (for an evaluation or a checkpoint),
/// ``upload(from:)`` sends a model's weights there.
///
/// Nothing in a step waits for the GPU: with the training set resident (``useData(_:)``) the
/// batch is made there from its `BatchSource` (the epoch's order is sent once per epoch), and
/// each step's two loss sums go to a slot of a record on the device that ``collectLosses()``
/// reads back — once per progress update, not once per step.
///
/// A step, for a batch x [B, D] and ε drawn on the device from Philox stream t (the CPU's ε):
///
///     posterior = encoder(x);  z = μ + σ ⊙ ε;  logits = decoder(z)
///     loss = Σ_b (−log p(x_b|z_b) + β KL_b),  gradients scaled by 1/B
///     backward through the decoder, the reparameterisation and KL, the encoder; Adam.
///
/// Supported: the MLP and convolutional models (Linear, Conv2D and ConvTranspose2D layers, every
/// activation, nearest upsampling; `CUDANetwork.swift`), every likelihood (Bernoulli; Gaussian
/// with a fixed, learned or per-pixel σ), the analytic or sampled KL and the IWAE bound, Adam,
/// AdamW and SGD with clipping, one stochastic layer, with or without labels (conditional);
/// ``init(model:context:cublas:)`` and ``unsupported(objective:optimizer:)`` name what it cannot do.
public final class CUDAStep {
    /// The likelihoods the GPU computes: Bernoulli on logits, or a Gaussian of fixed σ on means.
    enum Likelihood {
        case bernoulli
        case gaussian(sigma: Float)
        /// A σ per value from the decoder (its rows twice the data's width), floored at σ_min.
        case gaussianPixel(minimumSigma: Float)
        /// One σ = e^s, s the model's parameter of this index (learned with the rest).
        case gaussianShared(parameter: Int)
    }

    public let context: CUDAContext
    public let cublas: CUBLAS
    /// The matrix products' format: FP32, or bf16 operands with FP32 sums (cuBLAS's
    /// CUBLAS_COMPUTE_32F_FAST_16BF on the tensor cores); everything else stays FP32.
    public var precision: MatrixPrecision = .fp32
    /// The steps as CUDA graphs (one launch per step; `CUDAGraphs`), unless `VAE_CUDA_GRAPHS=0`
    /// says plain launches (or a check sets it to nil); a profiled step (``profile``) is always
    /// launched plainly.
    public var graphs: CUDAGraphs? { didSet { graphs?.cudnn = cudnn } }
    /// cuDNN for the convolutions of FP32 steps (`CUDNN`: implicit GEMM on the images, no patch
    /// matrix), where it was found and loads — unless `VAE_CUDA_CUDNN=0`; nil, a shape cuDNN
    /// offers no deterministic FP32 algorithm for, or bf16 products: each convolution is a
    /// product with its patch matrix (`vae_im2col`, `vae_col2im`).
    public var cudnn: CUDNN? { didSet { graphs?.cudnn = cudnn } }
    /// Each cuDNN-run convolution's weight in cuDNN's channels-last filter order (KRSC), made
    /// from the stored one before each forward pass, and its gradient in that order, which the
    /// backward pass puts back in the stored order; by the weight's parameter index.
    var filterCopies: [Int: (weight: DeviceBuffer, gradient: DeviceBuffer)] = [:]
    /// `vae_transpose_filters`' tables, by the weights of the convolutions they cover, and what
    /// each direction of the launch reads and writes through its table.
    var filterTables: [[Int]: (table: DeviceBuffer, elements: Int, forward: MemoryAccess, backward: MemoryAccess)] = [:]
    /// Convolution products cuDNN ran (counted as they are recorded or run).
    public internal(set) var cudnnConvolutions = 0
    /// Whether any network of the model has a convolution (cuDNN's work).
    public var hasConvolutions: Bool {
        (encoderOps + decoderOps + encoder2Ops + decoder2Ops).contains { if case .convolution = $0 { true } else { false } }
    }
    /// Whether small products with a long k are split along k (`SplitK`; `VAE_CUDA_SPLIT_K`).
    public var splitK = SplitK(environment: ProcessInfo.processInfo.environment)
    /// Whether a layer's bias work (its bias and ReLU forward, its bias gradient and ReLU's
    /// derivative backward) is done by cuBLASLt's epilogue in its products (`ProductEpilogue`),
    /// where cuBLASLt is loaded and has an algorithm for the shape — unless `VAE_CUDA_LT=0`.
    public var fusesBias = ProcessInfo.processInfo.environment["VAE_CUDA_LT"] != "0"
    /// Whether a ReLU layer's forward epilogue also keeps its bit mask for the next layer's ∂h
    /// product (RELU_AUX_BIAS, DRELU_BGRAD) — unless `VAE_CUDA_LT=bias` (the bias epilogues only).
    public var usesReLUMasks = ProcessInfo.processInfo.environment["VAE_CUDA_LT"] != "bias"
    /// Products issued with their bias work fused (counted as they are recorded or run).
    public internal(set) var fusedProducts = 0
    /// The ReLU bit masks (their addresses) the latest forward pass wrote in its products'
    /// epilogues, which the backward pass may multiply by in its own (`ProductEpilogue.reluGradient`).
    var writtenMasks: Set<UInt64> = []
    /// The split products' slices, and buffers replaced during a step (freed after it).
    var splitBuffer: DeviceBuffer?
    var retiredBuffers: [DeviceBuffer] = []
    /// Pieces of work the last recorded step had.
    private var recordedLength = 64
    /// The last recorded step's pieces: its kernels, and its library calls (products and
    /// convolutions, each one child graph of a few kernels), for `vae bench`.
    public private(set) var recordedPieces = (kernels: 0, libraryCalls: 0)
    /// The split scratch's least size (the checks set 0, so that it grows within a step).
    public var splitScratchFloor = 1 << 20
    let likelihood: Likelihood
    let encoderOps: [Op]
    let decoderOps: [Op]
    let latent: Int
    /// A second stochastic layer's dimension d₂ (0: none) and its networks, q(z₂|z₁) and p(z₁|z₂).
    let upperLatent: Int
    let encoder2Ops: [Op]
    let decoder2Ops: [Op]
    let pixels: Int
    /// The model's parameters on the device, in its order, with gradients and Adam's moments:
    /// views of one flat buffer each (`flatWeights` …), parameter k at the same offset in all.
    let weights: [DeviceBuffer]
    let gradients: [DeviceBuffer]
    let firstMoments: [DeviceBuffer]
    let secondMoments: [DeviceBuffer]
    /// Floats between parameter starts in the flat buffers: 64 (256 bytes).
    static let parameterAlignment = 64
    private let flatWeights: DeviceBuffer
    private let flatGradients: DeviceBuffer
    private let flatFirstMoments: DeviceBuffer
    private let flatSecondMoments: DeviceBuffer
    /// Adam's steps taken (t).
    public private(set) var stepCount = 0
    /// Host time spent queuing steps (recording a step and launching its graph, not the waits
    /// for earlier losses), seconds, and the steps it covers: on a GPU the host runs ahead of the
    /// device, so a step is bound by the host only when this per step nears the wall-clock step.
    public private(set) var hostTime = (seconds: 0.0, steps: 0)
    /// The training set on the device (bytes, or FP32 values), its shape, and the epoch order
    /// last sent (as Int32) with its version.
    private var data: (bytes: DeviceBuffer?, values: DeviceBuffer?, examples: Int)?
    /// A conditional model's classes, the training set's labels on the device (Int32), and the
    /// batch's one-hot labels.
    let conditionClasses: Int
    private var labels: DeviceBuffer?
    private var oneHot: DeviceBuffer?
    private var order: (buffer: DeviceBuffer, version: Int)?
    /// Per-step loss sums in double, three per slot (reconstruction, KL, objective), and what the
    /// host knows of each queued step: its images and number (from 1).
    private let recordCapacity = 1024
    private let record: DeviceBuffer
    /// Σ g² of the last gradient, for clipping.
    private let squaredNorm: DeviceBuffer
    /// Free bits: the batch's KL per dimension (double), the 0/1 mask of the dimensions whose KL
    /// is trained, and the floored KL per image (double).
    private let dimensionSums: DeviceBuffer
    private let dimensionMask: DeviceBuffer
    private let flooredKL: DeviceBuffer
    private var queued: [(images: Int, step: Int)] = []
    /// Rows of the current step; buffers are made for the largest batch seen and reused.
    private var rows = 0
    private var capacity = 0
    private var x: DeviceBuffer?
    private var eps: DeviceBuffer?
    private var z: DeviceBuffer?
    /// The encoder's buffers (for `imageCapacity` rows) and the decoder's (for `capacity`).
    private var encoderWork: Workspace?
    private var decoderWork: Workspace?
    /// A second stochastic layer's buffers (for `capacity` rows).
    private var upperWork: UpperWork?
    private var rowLosses: DeviceBuffer?
    private var rowKL: DeviceBuffer?
    private var zGradient: DeviceBuffer?
    /// The sampled objective's normalised weight of each sample.
    private var sampleWeights: DeviceBuffer?
    /// Images of the current step and samples per image (rows = images × samples); the encoder's
    /// buffers are made for `imageCapacity` images, the rest for `capacity` rows.
    private var images = 0
    private var imageCapacity = 0

    /// Plans `model`'s step on `context`'s GPU and uploads its weights (Adam's moments start at 0).
    public init(model: VariationalAutoencoder, context: CUDAContext, cublas: CUBLAS) throws {
        let config = model.config
        switch model.likelihood {
        case is BernoulliLikelihood: likelihood = .bernoulli
        case let gaussian as GaussianLikelihood: likelihood = .gaussian(sigma: gaussian.sigma)
        case let pixel as GaussianPixelVarianceLikelihood: likelihood = .gaussianPixel(minimumSigma: pixel.minimumSigma)
        case let shared as GaussianSharedVarianceLikelihood:
            likelihood = .gaussianShared(parameter: model.parameters.firstIndex { $0 === shared.logSigma }!)
        default: throw CUDAError("the GPU does not train the \(config.likelihood.rawValue) likelihood yet")
        }
        self.context = context
        self.cublas = cublas
        let mode = ProcessInfo.processInfo.environment["VAE_CUDA_GRAPHS"]
        graphs = mode == "0" ? nil : CUDAGraphs(context: context, cublas: cublas, chained: mode == "chain")
        conditionClasses = config.conditionClasses
        let parameters = model.parameters
        encoderOps = try Self.plan(model.encoder, input: config.inputShape, parameters: parameters)
        decoderOps = try Self.plan(model.decoder, input: [model.latentDimension], parameters: parameters)
        upperLatent = config.upperLatentDimension
        encoder2Ops = try model.encoder2.map { try Self.plan($0, input: [model.latentDimension], parameters: parameters) } ?? []
        decoder2Ops = try model.decoder2.map { try Self.plan($0, input: [config.upperLatentDimension], parameters: parameters) } ?? []
        latent = model.latentDimension
        pixels = config.inputShape.reduce(1, *)
        // Each parameter starts on a 256-byte boundary (cuBLAS's aligned kernels for the weight
        // operands, cuBLASLt's bias epilogue); the gaps stay zero in all four buffers (zero
        // gradients: Adam and the clipping norm leave them zero).
        var offsets: [Int] = [], offset = 0
        for p in parameters {
            offsets.append(offset)
            offset += (p.value.count + Self.parameterAlignment - 1) / Self.parameterAlignment * Self.parameterAlignment
        }
        let total = offset
        flatWeights = try DeviceBuffer([Float](repeating: 0, count: total))
        flatGradients = try DeviceBuffer([Float](repeating: 0, count: total))
        flatFirstMoments = try DeviceBuffer([Float](repeating: 0, count: total))
        flatSecondMoments = try DeviceBuffer([Float](repeating: 0, count: total))
        func views(_ flat: DeviceBuffer) -> [DeviceBuffer] {
            zip(parameters, offsets).map { DeviceBuffer(viewOf: flat, offset: $1, count: $0.value.count) }
        }
        weights = views(flatWeights)
        gradients = views(flatGradients)
        firstMoments = views(flatFirstMoments)
        secondMoments = views(flatSecondMoments)
        record = try DeviceBuffer(bytes: 24 * recordCapacity)
        squaredNorm = try DeviceBuffer(bytes: 8)
        dimensionSums = try DeviceBuffer(bytes: 8 * model.latentDimension)
        dimensionMask = try DeviceBuffer(count: model.latentDimension)
        flooredKL = try DeviceBuffer(bytes: 8)
        try upload(from: model)
    }

    /// Keeps `dataset` on the device (its bytes, or its FP32 values) so that batches with a
    /// `BatchSource` from a loader of this data set are made there: no copy per step.
    public func useData(_ dataset: ImageDataset) throws {
        guard dataset.exampleSize == pixels else { throw CUDAError("the data set's examples have \(dataset.exampleSize) values; the model takes \(pixels)") }
        if let values = dataset.values {
            let buffer = try DeviceBuffer(count: values.count)
            try values.withUnsafeBytes { try buffer.upload(raw: $0) }
            data = (nil, buffer, dataset.count)
        } else {
            let buffer = try DeviceBuffer(bytes: dataset.pixels.count)
            try dataset.pixels.withUnsafeBytes { try buffer.upload(raw: $0) }
            data = (buffer, nil, dataset.count)
        }
        if conditionClasses > 0, let labels = dataset.labels {
            let buffer = try DeviceBuffer(bytes: 4 * labels.count)
            try labels.map { Int32(truncatingIfNeeded: $0) }.withUnsafeBytes { try buffer.upload(raw: $0) }
            self.labels = buffer
        }
    }

    /// The optimiser's state slots on the device, in its order (Adam: m, v; SGD with momentum:
    /// its velocity), each a view per parameter of one flat buffer.
    private func slots(of optimizer: Optimizer) -> [[DeviceBuffer]] {
        Array([firstMoments, secondMoments].prefix(optimizer.stateSlots.count))
    }

    /// Sends `optimizer`'s state and step count to the device (after a checkpoint was loaded).
    public func upload(state optimizer: Optimizer) throws {
        precondition(optimizer.stateSlots.count <= 2, "at most two state slots on the GPU")
        for (buffers, slot) in zip(slots(of: optimizer), optimizer.stateSlots) {
            for (buffer, tensor) in zip(buffers, slot.tensors) { try buffer.upload(tensor) }
        }
        stepCount = optimizer.stepCount
    }

    /// Copies the device's optimiser state and step count into `optimizer` (before a checkpoint).
    public func download(state optimizer: Optimizer) throws {
        for (buffers, slot) in zip(slots(of: optimizer), optimizer.stateSlots) {
            for (buffer, tensor) in zip(buffers, slot.tensors) {
                let values = try buffer.download()
                values.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: values.count) }
            }
        }
        optimizer.stepCount = stepCount
    }

    /// Whether the GPU step computes `objective` with `optimizer` as the CPU does (the −ELBO with
    /// β, warm-up and free bits, the sampled KL or the IWAE bound; Adam, AdamW or SGD; clipping);
    /// otherwise the first thing it cannot do, in words.
    public static func unsupported(objective: TrainingObjective, optimizer: Optimizer) -> String? {
        if !(optimizer is Adam || optimizer is SGD) { return "the optimiser \(type(of: optimizer))" }
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

    /// Sizes the step for `images` images of `samples` samples each: buffers are made anew only
    /// for more rows than any step before (an allocation waits for the GPU), and a smaller step
    /// uses their first rows.
    private func prepare(images: Int, samples: Int) throws {
        self.images = images
        rows = images * samples
        if images > imageCapacity {
            imageCapacity = images
            x = try DeviceBuffer(count: images * pixels)
            encoderWork = try makeWorkspace(encoderOps, input: pixels, rows: images, training: true)
            oneHot = conditionClasses > 0 ? try DeviceBuffer(count: images * conditionClasses) : nil
        }
        guard rows > capacity else { return }
        capacity = rows
        eps = try DeviceBuffer(count: rows * latent)
        z = try DeviceBuffer(count: rows * latent)
        decoderWork = try makeWorkspace(decoderOps, input: latent, rows: rows, training: true)
        upperWork = upperLatent > 0 ? try makeUpperWork(rows: rows, training: true) : nil
        rowLosses = try DeviceBuffer(count: rows)
        rowKL = try DeviceBuffer(count: rows)
        zGradient = try DeviceBuffer(count: rows * latent)
        sampleWeights = try DeviceBuffer(count: rows)
    }


    /// −log p(x|output) of `rows` rows into `losses` (row b against row b / `xRepeat` of x), and
    /// with `gradient` its gradient with respect to the output times `scale` (and × rowScales[b]):
    /// `vae_bernoulli_nll`, or for the Gaussian `vae_squared_error` with `vae_affine_rows`
    /// (½ Σ r²/σ² + ½ D log 2πσ², as `GaussianLikelihood` computes it).
    func likelihoodRows(
        x: DeviceBuffer, output: DeviceBuffer, gradient: DeviceBuffer?, into losses: DeviceBuffer, rows: Int, scale: Float, xRepeat: Int,
        rowScales: DeviceBuffer? = nil
    ) throws {
        switch likelihood {
        case .bernoulli:
            try context.launch("vae_bernoulli_nll", grid: rows, block: 256, shared: 256 * 4, [
                .buffer(x), .buffer(output), .buffer(gradient), .buffer(losses), .int32(Int32(pixels)), .float(scale), .int32(Int32(xRepeat)),
                .buffer(rowScales),
            ])
        case .gaussian(let sigma):
            let inverseVariance = 1 / (sigma * sigma)
            try context.launch("vae_squared_error", grid: rows, block: 256, shared: 256 * 4, [
                .buffer(x), .buffer(output), .buffer(gradient), .buffer(losses), .int32(Int32(pixels)), .float(scale * inverseVariance),
                .int32(Int32(xRepeat)), .buffer(rowScales),
            ])
            let logNormaliser = Float(0.5 * Double(pixels) * log(2 * Double.pi * Double(sigma) * Double(sigma)))
            try context.launch("vae_affine_rows", grid: CUDAContext.grid(for: rows), [
                .buffer(losses), .int64(rows), .float(0.5 * inverseVariance), .float(logNormaliser),
            ])
        case .gaussianPixel(let minimumSigma):
            try context.launch("vae_gaussian_pixel_nll", grid: rows, block: 256, shared: 256 * 4, [
                .buffer(x), .buffer(output), .buffer(gradient), .buffer(losses), .int32(Int32(pixels)), .float(scale), .int32(Int32(xRepeat)),
                .buffer(rowScales), .float(log(minimumSigma)),
            ])
            try context.launch("vae_affine_rows", grid: CUDAContext.grid(for: rows), [
                .buffer(losses), .int64(rows), .float(1), .float(Float(0.5 * Double(pixels) * log(2 * Double.pi))),
            ])
        case .gaussianShared(let parameter):
            try context.launch("vae_gaussian_shared_nll", grid: rows, block: 256, shared: 256 * 4, [
                .buffer(x), .buffer(output), .buffer(gradient), .buffer(losses), .int32(Int32(pixels)), .float(scale), .int32(Int32(xRepeat)),
                .buffer(rowScales), .buffer(weights[parameter]),
            ])
            if gradient != nil {
                try context.launch("vae_gaussian_shared_gradient", grid: 1, block: 1, [
                    .buffer(losses), .int32(Int32(rows)), .int32(Int32(pixels)), .float(scale), .buffer(rowScales), .buffer(weights[parameter]),
                    .buffer(gradients[parameter]),
                ])
            }
        }
    }

    /// Queues one step on `batch` with ε from Philox stream `stream` under `noiseSeed`, the
    /// training `objective` (its K samples and KL estimator; `klWeight` is this step's β) and
    /// `optimizer`'s settings (Adam's or SGD's rate and constants; its state is this step's own,
    /// on the device), the gradient clipped to `clipNorm` first when set; the step's loss terms (before the update) wait on the device for
    /// ``collectLosses()``. The batch is made on the device from its `BatchSource` when the
    /// data set is resident (``useData(_:)``), else copied from `batch.images`. Nothing here
    /// waits for the GPU, except when the record of queued losses is full (every 1,024 steps
    /// without a collection) and it is read back first.
    public func enqueueStep(
        _ batch: Batch, noiseSeed: UInt64, stream: UInt64, objective: TrainingObjective = TrainingObjective(), klWeight: Float,
        optimizer: Optimizer, clipNorm: Float? = nil
    ) throws -> [LossBreakdown] {
        let earlier = queued.count == recordCapacity ? try collectLosses() : []
        let started = monotonicSeconds()
        // The step's launches and products recorded, then run as one graph (or, profiled, one by
        // one between events).
        let recorded = graphs != nil || profile != nil
        if recorded {
            context.recording = []
            context.recording!.reserveCapacity(recordedLength)  // the last step's length: no regrowth per step
        }
        defer { if recorded { context.recording = nil } }
        let samples = objective.usesMonteCarlo ? objective.importanceSamples : 1
        try prepare(images: batch.count, samples: samples)
        guard let x, let eps, let z, let rowLosses, let rowKL, let zGradient, let sampleWeights, let encoderWork, let decoderWork else { preconditionFailure("buffers") }
        if let source = batch.source, let data {
            guard source.order.count == data.examples else { throw CUDAError("a batch of a data set of \(source.order.count) examples; the GPU holds \(data.examples)") }
            if order?.version != source.orderVersion {
                let buffer = try order.map(\.buffer).flatMap { $0.byteCount == 4 * source.order.count ? $0 : nil } ?? DeviceBuffer(bytes: 4 * source.order.count)
                try source.order.map { Int32($0) }.withUnsafeBytes { try buffer.upload(raw: $0) }
                order = (buffer, source.orderVersion)
            }
            try context.launch("vae_gather", grid: CUDAContext.grid(for: images * ((pixels + 3) / 4)), [
                .buffer(data.bytes), .buffer(data.values), .buffer(order!.buffer), .int64(source.positions.lowerBound), .int32(Int32(images)),
                .int32(Int32(pixels)), .int32(source.binarization == nil ? 0 : 1), .uint64(source.binarization?.seed ?? 0),
                .uint64(UInt64(source.epoch)), .buffer(x),
            ])
        } else {
            try x.upload(batch.images)
        }
        // A conditional model's one-hot labels: made on the device with the batch, or sent.
        var condition: DeviceBuffer?
        if conditionClasses > 0, let oneHot {
            if let source = batch.source, let labels, data != nil {
                try context.launch("vae_one_hot", grid: CUDAContext.grid(for: images * conditionClasses), [
                    .buffer(labels), .buffer(order!.buffer), .int64(source.positions.lowerBound), .int32(Int32(images)), .int32(Int32(conditionClasses)),
                    .buffer(oneHot),
                ])
            } else if let hostCondition = batch.condition {
                try oneHot.upload(hostCondition)
            } else {
                throw CUDAError("a conditional model's batch without labels")
            }
            condition = oneHot
        }
        try forward(encoderOps, input: x, width: pixels, work: encoderWork, rows: images, condition: condition.map { ($0, 1) })
        let posterior = encoderWork.lastOutput(input: x), posteriorGradient = encoderWork.lastGradient(input: nil)!
        let logits = decoderWork.lastOutput(input: z), logitsGradient = decoderWork.lastGradient(input: zGradient)!
        // ε for every sample of every image (numbers 0 ..< rows·d of the step's stream, as the
        // CPU), z, and with one stochastic layer and a sampled objective each row's sampled KL
        // (log q − log p at z): one launch.
        let sampledKL = upperWork == nil && objective.usesMonteCarlo
        try context.launch("vae_sample_rows", grid: CUDAContext.grid(for: rows), [
            .uint64(noiseSeed), .uint64(stream), .buffer(posterior), .int32(Int32(images)), .int32(Int32(samples)), .int32(Int32(latent)),
            .buffer(eps), .buffer(z), .buffer(sampledKL ? rowKL : nil),
        ])
        try forward(decoderOps, input: z, width: latent, work: decoderWork, rows: rows, condition: condition.map { ($0, samples) })
        let scale = 1 / Float(images)
        // −log p(x|z) of every sample, with its gradient at once when every sample weighs the same.
        try likelihoodRows(
            x: x, output: logits, gradient: samples > 1 ? nil : logitsGradient, into: rowLosses, rows: rows, scale: scale,
            xRepeat: samples)
        // Two stochastic layers: ε₂ from the step's second stream (numbers 0 ..< rows·d₂ of
        // stream t | 2⁶³, as the CPU), z₂ and p(z₁|z₂), and each row's KL term.
        let analyticUpper = samples == 1 && objective.kl == .analytic
        if let upperWork {
            try context.launch("vae_philox_normals", grid: CUDAContext.grid(for: (rows * upperLatent + 3) / 4 + 1), [
                .uint64(noiseSeed), .uint64(stream | 1 << 63), .uint64(0), .int64(rows * upperLatent), .buffer(upperWork.eps2),
            ])
            try upperForward(z1: z, rows: rows, work: upperWork)
            try twoLayerKL(posterior1: posterior, eps1: eps, z1: z, images: images, samples: samples, analytic: analyticUpper, work: upperWork, rowKL: rowKL)
        }
        if upperWork != nil || objective.usesMonteCarlo {
            // The bound and each sample's normalised weight.
            try context.launch("vae_iwae_bound", grid: 1, block: 128, shared: 128 * 24, [
                .buffer(rowLosses), .buffer(rowKL), .int32(Int32(images)), .int32(Int32(samples)), .float(klWeight), .buffer(sampleWeights),
                .buffer(record), .int32(Int32(queued.count)),
            ])
            if samples > 1 {
                // The likelihood's gradient weighted by each sample's normalised weight.
                try likelihoodRows(
                    x: x, output: logits, gradient: logitsGradient, into: rowLosses, rows: rows, scale: scale, xRepeat: samples,
                    rowScales: sampleWeights)
            }
            try backward(decoderOps, input: z, width: latent, work: decoderWork, inputGradient: zGradient, rows: rows)
            let weights: DeviceBuffer? = samples > 1 || upperWork != nil ? sampleWeights : nil
            // With one stochastic layer, the prior's gradient β z is added to each sample's ∂z as
            // the posterior's gradient sums them; with two, p(z₁|z₂)'s backward adds it first.
            if let upperWork {
                try upperBackward(z1: z, rows: rows, c: scale * klWeight, analytic: analyticUpper, weights: sampleWeights, work: upperWork, dz1: zGradient)
            }
            try context.launch("vae_posterior_gradient_samples", grid: CUDAContext.grid(for: images * latent), [
                .buffer(posterior), .buffer(eps), .buffer(zGradient), .buffer(weights), .buffer(upperWork == nil ? z : nil), .int32(Int32(images)),
                .int32(Int32(samples)), .int32(Int32(latent)), .float(scale * klWeight), .buffer(posteriorGradient),
            ])
        } else {
            // The analytic KL and its gradient with the reparameterisation's; with free bits, the
            // KL's gradient only in the dimensions whose batch mean exceeds λ, and the objective
            // with the floored KL (each row's KL summed where the losses are recorded).
            let freeBits = objective.freeBits > 0
            if freeBits {
                try context.launch("vae_kl_dimension_sums", grid: CUDAContext.grid(for: latent), [
                    .buffer(posterior), .int32(Int32(rows)), .int32(Int32(latent)), .buffer(dimensionSums),
                ])
                try context.launch("vae_free_bits_mask", grid: 1, block: 1, [
                    .buffer(dimensionSums), .int32(Int32(rows)), .int32(Int32(latent)), .float(objective.freeBits), .buffer(dimensionMask),
                    .buffer(flooredKL),
                ])
            }
            try context.launch("vae_record_terms", grid: 1, block: 128, shared: 128 * 16, [
                .buffer(rowLosses), .buffer(nil), .buffer(posterior), .int32(Int32(latent)), .int32(Int32(rows)), .float(klWeight),
                .buffer(freeBits ? flooredKL : nil), .buffer(record), .int32(Int32(queued.count)),
            ])
            try backward(decoderOps, input: z, width: latent, work: decoderWork, inputGradient: zGradient, rows: rows)
            try context.launch("vae_posterior_backward", grid: CUDAContext.grid(for: rows * latent), [
                .buffer(posterior), .buffer(eps), .buffer(zGradient), .buffer(freeBits ? dimensionMask : nil), .buffer(posteriorGradient),
                .int32(Int32(rows)), .int32(Int32(latent)), .float(scale * klWeight),
            ])
        }
        try backward(encoderOps, input: x, width: pixels, work: encoderWork, inputGradient: nil, rows: images)
        let n = flatGradients.count
        if let clipNorm {
            // The global norm of the gradient, and the gradient scaled down to `clipNorm` if longer.
            try context.launch("vae_squared_norm", grid: 1, block: 256, shared: 256 * 8, [.buffer(flatGradients), .int64(n), .buffer(squaredNorm)])
            try context.launch("vae_clip", grid: CUDAContext.grid(for: n), [.buffer(flatGradients), .int64(n), .buffer(squaredNorm), .float(clipNorm)])
        }
        // The update of every parameter at once (the flat buffers), as the CPU's optimiser does it.
        stepCount += 1
        switch optimizer {
        case let adam as Adam:
            let (stepSize, inverseRootCorrection2) = adam.stepConstants(step: stepCount)
            try context.launch("vae_adam", grid: CUDAContext.grid(for: n), [
                .buffer(flatWeights), .buffer(flatGradients), .buffer(flatFirstMoments), .buffer(flatSecondMoments), .int64(n),
                .float(adam.beta1), .float(adam.beta2), .float(adam.epsilon), .float(stepSize), .float(inverseRootCorrection2),
                .float(1 - adam.learningRate * adam.decoupledWeightDecay),
            ])
        case let sgd as SGD:
            try context.launch("vae_sgd", grid: CUDAContext.grid(for: n), [
                .buffer(flatWeights), .buffer(flatGradients), .buffer(sgd.momentum == 0 ? nil : flatFirstMoments), .int64(n),
                .float(sgd.learningRate), .float(sgd.momentum), .float(sgd.weightDecay),
            ])
        default:
            throw CUDAError("the GPU runs Adam, AdamW and SGD, not \(type(of: optimizer))")
        }
        if recorded, let work = context.recording {
            context.recording = nil
            recordedLength = work.count
            let kernels = work.reduce(0) { if case .kernel = $1 { $0 + 1 } else { $0 } }
            recordedPieces = (kernels, work.count - kernels)
            if let profile {
                try profile.run(work, context: context, cublas: cublas, cudnn: cudnn)
            } else if let graphs {
                try graphs.run(work)
            }
        }
        if profile == nil { hostTime = (hostTime.seconds + monotonicSeconds() - started, hostTime.steps + 1) }
        retiredBuffers.removeAll()  // freeing device memory waits for the work that used it
        queued.append((images, stepCount))
        return earlier
    }

    /// When set, each step is launched piece by piece with an event after each, to measure where
    /// its device time goes (for `vae bench --device cuda`; the events cost a little, so only then).
    public var profile: StepProfile?

    /// Steps queued and not yet collected.
    public var queuedSteps: Int { queued.count }

    /// The loss terms of the steps queued since the last call, in order (one read-back, which
    /// waits for them). Throws ``NonFiniteLossError`` naming the first step whose loss was not
    /// finite (its update has run on the device, whose weights the host then must not take).
    public func collectLosses() throws -> [LossBreakdown] {
        guard !queued.isEmpty else { return [] }
        var terms = [Double](repeating: 0, count: 3 * queued.count)
        try terms.withUnsafeMutableBytes { try record.download(raw: $0) }
        defer { queued.removeAll(keepingCapacity: true) }
        return try queued.enumerated().map { k, step in
            let (reconstruction, kl, objective) = (terms[3 * k], terms[3 * k + 1], terms[3 * k + 2])
            guard reconstruction.isFinite, kl.isFinite else { throw NonFiniteLossError(step: step.step) }
            return LossBreakdown(reconstruction: reconstruction, kl: kl, objective: objective, images: step.images)
        }
    }
}

/// Device time of GPU steps, kernel by kernel: a profiled step's recorded work launched piece
/// by piece with an event after each (`CUDAStep.profile`), the time between consecutive events
/// the piece's; read with ``totals()`` (which waits for the device).
public final class StepProfile {
    /// Milliseconds of device time per step, in all and by piece (a kernel by name, every cuBLAS
    /// product together as "cuBLAS products").
    public struct Totals {
        public var steps = 0
        public var total = 0.0
        public var byPiece: [String: Double] = [:]

        /// Per step: the whole step, its products (cuBLAS's, cuBLASLt's and cuDNN's convolutions),
        /// its update (clipping and the optimiser), and the pieces, largest first.
        public var perStep: (step: Double, products: Double, update: Double, pieces: [(name: String, milliseconds: Double)]) {
            let n = Double(max(steps, 1))
            let update = ["vae_adam", "vae_sgd", "vae_squared_norm", "vae_clip"].reduce(0.0) { $0 + (byPiece[$1] ?? 0) }
            return (total / n, ((byPiece[StepProfile.products] ?? 0) + (byPiece[StepProfile.convolutions] ?? 0)) / n, update / n,
                    byPiece.map { ($0.key, $0.value / n) }.sorted { $0.1 > $1.1 })
        }
    }

    static let products = "cuBLAS products"
    static let convolutions = "cuDNN convolutions"
    private var pending: [(pieces: [String], events: [CUDAEvent])] = []
    private var pool: [CUDAEvent] = []
    private var used = 0

    public init() {}

    /// An event from the pool (made once, reused after ``totals()``).
    private func event() throws -> CUDAEvent {
        if used == pool.count { pool.append(try CUDAEvent()) }
        used += 1
        return pool[used - 1]
    }

    /// Launches `work` piece by piece, an event before the first and after each.
    func run(_ work: [RecordedWork], context: CUDAContext, cublas: CUBLAS, cudnn: CUDNN?) throws {
        var events = [try event()]
        try events[0].record()
        var pieces: [String] = []
        for item in work {
            try item.run(context: context, cublas: cublas, cudnn: cudnn)
            switch item {
            case .kernel(let kernel): pieces.append(kernel.name)
            case .product: pieces.append(Self.products)
            case .convolution: pieces.append(Self.convolutions)
            }
            let end = try event()
            try end.record()
            events.append(end)
        }
        pending.append((pieces, events))
    }

    /// The device time of the steps run since the last call; the events go back to the pool.
    public func totals() throws -> Totals {
        var totals = Totals()
        for (pieces, events) in pending {
            for (i, piece) in pieces.enumerated() {
                totals.byPiece[piece, default: 0] += try events[i + 1].milliseconds(since: events[i])
            }
            totals.total += try events[pieces.count].milliseconds(since: events[0])
            totals.steps += 1
        }
        pending.removeAll(keepingCapacity: true)
        used = 0
        return totals
    }
}
