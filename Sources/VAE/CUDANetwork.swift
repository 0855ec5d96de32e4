import NN
import Tensor

/// The encoder and decoder as the GPU runs them: each layer of the model's `Sequential` as an
/// `CUDAStep.Op`, forward and backward through the kernels of `Kernels.cu` and cuBLAS, on the
/// buffers of a `CUDAStep.Workspace`.
///
/// A convolution is a product with its patch matrix, as on the CPU: `vae_im2col` lays the
/// channels-last patches out as rows with PyTorch's weight order in each row, so the stored
/// weight is cuBLAS's operand as it is, and `vae_col2im` sums them back (no atomics):
///
///     Conv2D:           y = im2col(x) Wᵀ + b            ∂W = ∂yᵀ im2col(x)    ∂x = col2im(∂y W)
///     ConvTranspose2D:  y = col2im(x W) + b             ∂W = xᵀ im2col(∂y)    ∂x = im2col(∂y) Wᵀ
///
/// with W [O, C·k·k] for a convolution and [C, O·k·k] for a transposed one (PyTorch's layouts).
extension CUDAStep {
    /// A convolution (or a transposed one) with its sizes on one example.
    struct Convolution {
        let weight: Int
        let bias: Int
        let transposed: Bool
        let inChannels: Int
        let outChannels: Int
        let geometry: ConvolutionGeometry
        let inHeight: Int
        let inWidth: Int
        var activation: Activation?

        var outHeight: Int { transposed ? geometry.transposedOutput(inHeight) : geometry.convolutionOutput(inHeight) }
        var outWidth: Int { transposed ? geometry.transposedOutput(inWidth) : geometry.convolutionOutput(inWidth) }
        /// The patch grid: the output's positions for a convolution, the input's for a transposed one.
        var grid: (height: Int, width: Int) { transposed ? (inHeight, inWidth) : (outHeight, outWidth) }
        /// Values of one patch: the channels summed over (or spread to) times k².
        var patchLength: Int { (transposed ? outChannels : inChannels) * geometry.kernel * geometry.kernel }
        /// The patch matrix's values per example.
        var patchValues: Int { grid.height * grid.width * patchLength }
        var outputSize: Int { outChannels * outHeight * outWidth }
    }

    /// The elementwise activations, each applied by the layer before it (its bias pass) and
    /// differentiated from that layer's output in its bias-gradient pass.
    enum Activation: Equatable {
        case relu
        case tanh
        case leakyReLU(slope: Float)
        case sigmoid
        case softplus

        /// The kernels' code for it (`vae_activate` in Kernels.cu) and its parameter.
        var code: (Int32, Float) {
            switch self {
            case .relu: (1, 0)
            case .tanh: (2, 0)
            case .leakyReLU(let slope): (3, slope)
            case .sigmoid: (4, 0)
            case .softplus: (5, 0)
            }
        }
    }

    /// One layer of a network as the GPU runs it.
    enum Op {
        /// Parameter indices (weight, bias) in the model's order; sizes; the activation after it.
        case linear(weight: Int, bias: Int, inputs: Int, outputs: Int, activation: Activation?)
        /// The one-hot label appended to each row (a conditional model).
        case conditioning(classes: Int)
        case convolution(Convolution)
        /// Each example's [rows, columns] transposed: channels-first images to channels-last
        /// (rows = C, columns = H·W) or back.
        case transpose(rows: Int, columns: Int)
        /// Nearest upsampling of channels-last [H, W, C] examples.
        case upsample(factor: Int, height: Int, width: Int, channels: Int)
        /// A new shape for the same values (Reshape, or a layout change of one channel or one
        /// pixel): the output is the input, nothing runs.
        case view

        var isView: Bool { if case .view = self { true } else { false } }
    }

    /// `network`'s layers as ops, for examples of `shape` ([C, H, W], or [n] for vectors);
    /// throws for a layer the GPU does not run.
    static func plan(_ network: Sequential, input shape: [Int], parameters: [Parameter]) throws -> [Op] {
        func index(_ p: Parameter) -> Int { parameters.firstIndex { $0 === p }! }
        var ops: [Op] = []
        var shape = shape
        for layer in network.layers {
            switch layer {
            case let linear as Linear:
                ops.append(.linear(weight: index(linear.weight), bias: index(linear.bias), inputs: linear.inputSize, outputs: linear.outputSize, activation: nil))
                shape = [linear.outputSize]
            case let layer as ElementwiseActivation:
                let activation: Activation
                switch layer {
                case is ReLU: activation = .relu
                case is Tanh: activation = .tanh
                case let leaky as LeakyReLU: activation = .leakyReLU(slope: leaky.slope)
                case is Sigmoid: activation = .sigmoid
                case is Softplus: activation = .softplus
                default: throw CUDAError("the GPU does not run \(type(of: layer)) activations yet")
                }
                switch ops.last {
                case let .linear(w, b, i, o, nil)?: ops[ops.count - 1] = .linear(weight: w, bias: b, inputs: i, outputs: o, activation: activation)
                case var .convolution(c)? where c.activation == nil:
                    c.activation = activation
                    ops[ops.count - 1] = .convolution(c)
                default: throw CUDAError("the GPU runs an activation only after a Linear or convolution layer")
                }
            case let conditioning as Conditioning:
                ops.append(.conditioning(classes: conditioning.conditionSize))
                shape = [shape.reduce(1, *) + conditioning.conditionSize]
            case let reshape as Reshape:
                ops.append(.view)
                shape = reshape.rowShape
            case is ChannelsLast, is ChannelsFirst:
                guard shape.count == 3 else { throw CUDAError("a layout change of \(shape)-shaped examples") }
                let (c, pixels) = (shape[0], shape[1] * shape[2])
                if c == 1 || pixels == 1 {
                    ops.append(.view)
                } else {
                    ops.append(layer is ChannelsLast ? .transpose(rows: c, columns: pixels) : .transpose(rows: pixels, columns: c))
                }
            case let upsample as Upsample:
                guard shape.count == 3 else { throw CUDAError("upsampling of \(shape)-shaped examples") }
                ops.append(.upsample(factor: upsample.factor, height: shape[1], width: shape[2], channels: shape[0]))
                shape = [shape[0], shape[1] * upsample.factor, shape[2] * upsample.factor]
            case let convolution as ConvolutionLayer:
                guard shape.count == 3, shape[0] == convolution.inChannels else { throw CUDAError("a convolution of \(shape)-shaped examples") }
                let c = Convolution(
                    weight: index(convolution.weight), bias: index(convolution.bias), transposed: convolution is ConvTranspose2D,
                    inChannels: convolution.inChannels, outChannels: convolution.outChannels, geometry: convolution.geometry,
                    inHeight: shape[1], inWidth: shape[2])
                ops.append(.convolution(c))
                shape = [c.outChannels, c.outHeight, c.outWidth]
            default:
                throw CUDAError("the GPU does not run \(type(of: layer)) layers yet")
            }
        }
        return ops
    }

    /// Values per example of each op's output, for a network whose input has `width` values.
    func widths(_ ops: [Op], input width: Int) -> [Int] {
        var current = width
        return ops.map { op in
            switch op {
            case let .linear(_, _, _, outputs, _): current = outputs
            case let .conditioning(classes): current += classes
            case let .convolution(c): current = c.outputSize
            case .transpose, .upsample, .view: break
            }
            if case let .upsample(f, _, _, _) = op { current *= f * f }
            return current
        }
    }

    /// A network's buffers for a number of rows (examples): each op's output and, for training,
    /// its gradient (none for a view, which passes its input through) and, for a linear layer
    /// with ReLU that the next linear layer reads, its ReLU's bit mask (`ProductEpilogue`); and
    /// one scratch buffer for the patch matrices and the partial sums of tall bias gradients.
    struct Workspace {
        let outputs: [DeviceBuffer?]
        let gradients: [DeviceBuffer?]
        let masks: [DeviceBuffer?]
        let scratch: DeviceBuffer?
        /// For op k, the last op at or before k that is not a view (−1: the network's input).
        let source: [Int]
        let rows: Int

        /// The buffer holding op k's output (k = −1: the input).
        func output(_ k: Int, input: DeviceBuffer) -> DeviceBuffer {
            let j = k < 0 ? -1 : source[k]
            return j < 0 ? input : outputs[j]!
        }

        /// The buffer for ∂L/∂(op k's output) (k = −1: ∂L/∂input, nil when not wanted).
        func gradient(_ k: Int, input: DeviceBuffer?) -> DeviceBuffer? {
            let j = k < 0 ? -1 : source[k]
            return j < 0 ? input : gradients[j]
        }

        func lastOutput(input: DeviceBuffer) -> DeviceBuffer { output(source.count - 1, input: input) }
        func lastGradient(input: DeviceBuffer?) -> DeviceBuffer? { gradient(source.count - 1, input: input) }

        /// The same buffers, with the network's last output written to `buffer` instead (the
        /// last op must not be a view).
        func writingLastOutput(to buffer: DeviceBuffer) -> Workspace {
            precondition(outputs.last! != nil, "the last output of a network that ends in a view")
            return Workspace(outputs: outputs.dropLast() + [buffer], gradients: gradients, masks: masks, scratch: scratch, source: source, rows: rows)
        }
    }

    /// Rows above which a bias gradient is summed in two passes (`vae_bias_gradient_partials`), and
    /// the rows of each partial sum.
    static let tallRows = 1024
    static let partialRows = 64

    /// Device floats per row of a workspace for `ops` (input `width` values per row): outputs,
    /// gradients and masks when `training`, and the scratch.
    func workspaceValuesPerRow(_ ops: [Op], input width: Int, training: Bool) -> Int {
        let outputs = zip(ops, widths(ops, input: width)).reduce(0) { $0 + ($1.0.isView ? 0 : $1.1) }
        let scratch = ops.reduce(0) { largest, op in
            guard case let .convolution(c) = op else { return largest }
            return max(largest, c.patchValues)
        }
        let masks = training ? ops.indices.reduce(0) { $0 + (Self.maskColumns(ops, at: $1).map { ProductEpilogue.maskStride(columns: $0) / 32 } ?? 0) } : 0
        return outputs * (training ? 2 : 1) + masks + scratch
    }

    /// The columns of op k's ReLU bit mask, if it has one: a linear layer with ReLU whose output
    /// the next op, a linear layer, reads (its input gradient's product can then apply the
    /// ReLU's derivative and sum the bias gradient in its epilogue).
    static func maskColumns(_ ops: [Op], at k: Int) -> Int? {
        guard k + 1 < ops.count, case let .linear(_, _, _, outputs, .relu?) = ops[k], case .linear = ops[k + 1] else { return nil }
        return outputs
    }

    /// Device floats an evaluation's workspace may take (512 MB): its rows are cut into passes of
    /// at most this much.
    static let evaluationValues = 1 << 27

    /// Rows per pass of an evaluation through `ops` (input `width` values per row), at most `rows`.
    func rowsPerPass(_ ops: [Op], input width: Int, rows: Int) -> Int {
        max(1, min(rows, Self.evaluationValues / max(1, workspaceValuesPerRow(ops, input: width, training: false))))
    }

    /// Rows per pass of an evaluation's decoding (the decoder and a second stochastic layer's
    /// networks), at most `rows`.
    func rowsPerPass(rows: Int) -> Int {
        let perRow = workspaceValuesPerRow(decoderOps, input: latent, training: false) + (upperLatent > 0 ? upperValuesPerRow() : 0)
        return max(1, min(rows, Self.evaluationValues / max(1, perRow)))
    }

    /// A workspace for `rows` rows of `ops` (input `width` values per row).
    func makeWorkspace(_ ops: [Op], input width: Int, rows: Int, training: Bool) throws -> Workspace {
        var source: [Int] = []
        for (k, op) in ops.enumerated() { source.append(op.isView ? (k == 0 ? -1 : source[k - 1]) : k) }
        let widths = widths(ops, input: width)
        let outputs: [DeviceBuffer?] = try ops.indices.map { k in ops[k].isView ? nil : try DeviceBuffer(count: rows * widths[k]) }
        let gradients: [DeviceBuffer?] = try ops.indices.map { k in training && !ops[k].isView ? try DeviceBuffer(count: rows * widths[k]) : nil }
        // A mask's rows of bits, 32 to a float.
        let masks: [DeviceBuffer?] = try ops.indices.map { k in
            guard training, let columns = Self.maskColumns(ops, at: k) else { return nil }
            return try DeviceBuffer(count: rows * ProductEpilogue.maskStride(columns: columns) / 32)
        }
        var scratch = 0
        for case let .convolution(c) in ops {
            let positions = rows * c.outHeight * c.outWidth
            let partials = positions > Self.tallRows ? (positions + Self.partialRows - 1) / Self.partialRows * c.outChannels : 0
            scratch = max(scratch, rows * c.patchValues, training ? partials : 0)
        }
        return Workspace(
            outputs: outputs, gradients: gradients, masks: masks, scratch: scratch > 0 ? try DeviceBuffer(count: scratch) : nil, source: source, rows: rows)
    }

    /// A layer's bias gradient through its `activation`: g ← g ⊙ act'(y) in place (y the layer's
    /// output), db[j] = Σ_r g[r, j] over `rows` rows of `columns`; one pass, or two through
    /// `scratch` for a tall g (a convolution's).
    func biasGradient(_ g: DeviceBuffer, output y: DeviceBuffer, activation: Activation?, into db: DeviceBuffer, rows: Int, columns: Int, scratch: DeviceBuffer?) throws {
        let (code, slope) = activation?.code ?? (0, 0)
        if rows > Self.tallRows, let scratch {
            let parts = (rows + Self.partialRows - 1) / Self.partialRows
            try context.launch("vae_bias_gradient_partials", grid: CUDAContext.grid(for: parts * columns), [
                .buffer(g), .buffer(y), .int32(code), .float(slope), .int32(Int32(rows)), .int32(Int32(columns)), .int32(Int32(Self.partialRows)),
                .buffer(scratch),
            ])
            try context.launch("vae_bias_gradient", grid: (columns + 31) / 32, block: 256, shared: 256 * 4, [
                .buffer(scratch), .buffer(nil), .int32(0), .float(0), .int32(Int32(parts)), .int32(Int32(columns)), .buffer(db),
            ])
        } else {
            try context.launch("vae_bias_gradient", grid: (columns + 31) / 32, block: 256, shared: 256 * 4, [
                .buffer(g), .buffer(y), .int32(code), .float(slope), .int32(Int32(rows)), .int32(Int32(columns)), .buffer(db),
            ])
        }
    }

    /// cuDNN's plan for convolution `c` over `rows` examples, when cuDNN runs it (an FP32 step
    /// with cuDNN loaded, and a shape it has deterministic FP32 algorithms for). The plan is the
    /// forward convolution's: for a transposed layer, the one from its output to its input.
    func cudnnPlan(_ c: Convolution, rows: Int) -> CUDNN.Plan? {
        guard let cudnn, precision == .fp32 else { return nil }
        let g = c.geometry
        return cudnn.plan(c.transposed
            ? CUDNN.Shape(batch: rows, channels: c.outChannels, height: c.outHeight, width: c.outWidth, outChannels: c.inChannels,
                          kernel: g.kernel, stride: g.stride, padding: g.padding)
            : CUDNN.Shape(batch: rows, channels: c.inChannels, height: c.inHeight, width: c.inWidth, outChannels: c.outChannels,
                          kernel: g.kernel, stride: g.stride, padding: g.padding))
    }

    /// The KRSC copies of `c`'s weight and of its gradient (made on first use).
    func filterCopy(_ c: Convolution) throws -> (weight: DeviceBuffer, gradient: DeviceBuffer) {
        if let copy = filterCopies[c.weight] { return copy }
        let count = weights[c.weight].count
        let copy = (weight: try DeviceBuffer(count: count), gradient: try DeviceBuffer(count: count))
        filterCopies[c.weight] = copy
        return copy
    }

    /// The stored weights ([k, c, r, s], PyTorch's: for a transposed layer k is its input
    /// channels) of `ops`' convolutions that cuDNN runs at `rows` into their cuDNN copies
    /// ([k, r, s, c]), or (`backward`) their gradients in that order back into the stored one:
    /// one launch for all of a network's convolutions.
    func transposeFilters(_ ops: [Op], rows: Int, backward: Bool) throws {
        let layers = ops.compactMap { op -> Convolution? in
            guard case let .convolution(c) = op, cudnnPlan(c, rows: rows) != nil else { return nil }
            return c
        }
        guard !layers.isEmpty else { return }
        let key = layers.map(\.weight)
        if filterTables[key] == nil {
            var rows: [Int64] = [], first = 0
            // What the launch reaches through its table: each way, one buffer read and one written per layer.
            var (forward, backward) = (MemoryAccess(), MemoryAccess())
            for c in layers {
                let copy = try filterCopy(c)
                let (stored, gradient) = (weights[c.weight], gradients[c.weight])
                forward.reads.append(MemoryAccess.span(stored.address, bytes: stored.byteCount))
                forward.writes.append(MemoryAccess.span(copy.weight.address, bytes: copy.weight.byteCount))
                backward.reads.append(MemoryAccess.span(copy.gradient.address, bytes: copy.gradient.byteCount))
                backward.writes.append(MemoryAccess.span(gradient.address, bytes: gradient.byteCount))
                let (k, channels) = c.transposed ? (c.inChannels, c.outChannels) : (c.outChannels, c.inChannels)
                let taps = c.geometry.kernel * c.geometry.kernel
                rows += [weights[c.weight].address, copy.weight.address, copy.gradient.address, gradients[c.weight].address].map { Int64(bitPattern: $0) }
                rows += [k, channels, taps, first].map(Int64.init)
                first += k * channels * taps
            }
            let table = try DeviceBuffer(bytes: 8 * rows.count)
            try rows.withUnsafeBytes { try table.upload(raw: $0) }
            forward.reads.append(MemoryAccess.span(table.address, bytes: table.byteCount))
            backward.reads.append(MemoryAccess.span(table.address, bytes: table.byteCount))
            filterTables[key] = (table, first, forward, backward)
        }
        let (table, elements, forward, backwardAccess) = filterTables[key]!
        try context.launch("vae_transpose_filters", grid: CUDAContext.grid(for: elements), [
            .buffer(table), .int32(Int32(layers.count)), .int64(elements), .int32(backward ? 1 : 0),
        ], reaching: backward ? backwardAccess : forward)
    }

    /// One of cuDNN's three convolution products (`CUDNN.run`), or recorded for a graph.
    func convolve(_ product: CUDNN.Product, plan: CUDNN.Plan, a: UInt64, b: UInt64, c: UInt64) throws {
        let work = RecordedConvolution(product, plan: plan, a: a, b: b, c: c)
        if context.recording != nil {
            context.recording!.append(.convolution(work))
        } else {
            try work.run(on: cudnn)
        }
        cudnnConvolutions += 1
    }

    /// Patches of `rows` channels-last images [height, width, channels] on a gh × gw grid into `cols`.
    private func im2col(_ src: DeviceBuffer, rows: Int, channels: Int, height: Int, width: Int, grid: (height: Int, width: Int), _ g: ConvolutionGeometry, into cols: DeviceBuffer) throws {
        let n = rows * grid.height * grid.width * channels * g.kernel * g.kernel
        try context.launch("vae_im2col", grid: CUDAContext.grid(for: n), [
            .buffer(src), .int32(Int32(rows)), .int32(Int32(channels)), .int32(Int32(height)), .int32(Int32(width)), .int32(Int32(grid.height)),
            .int32(Int32(grid.width)), .int32(Int32(g.kernel)), .int32(Int32(g.stride)), .int32(Int32(g.padding)), .buffer(cols),
        ])
    }

    /// The adjoint: patches summed into `rows` channels-last images, plus `bias`, then the activation.
    private func col2im(
        _ cols: DeviceBuffer, rows: Int, channels: Int, height: Int, width: Int, grid: (height: Int, width: Int), _ g: ConvolutionGeometry,
        bias: DeviceBuffer?, activation: Activation?, into dst: DeviceBuffer
    ) throws {
        let (code, slope) = activation?.code ?? (0, 0)
        try context.launch("vae_col2im", grid: CUDAContext.grid(for: rows * height * width * channels), [
            .buffer(cols), .int32(Int32(rows)), .int32(Int32(channels)), .int32(Int32(height)), .int32(Int32(width)), .int32(Int32(grid.height)),
            .int32(Int32(grid.width)), .int32(Int32(g.kernel)), .int32(Int32(g.stride)), .int32(Int32(g.padding)), .buffer(bias), .int32(code),
            .float(slope), .buffer(dst),
        ])
    }

    /// y[r, j] = act(y[r, j] + bias[j]) for `rows` rows of `columns`.
    func addBias(_ y: DeviceBuffer, _ bias: DeviceBuffer, rows: Int, columns: Int, activation: Activation?) throws {
        let (code, slope) = activation?.code ?? (0, 0)
        try context.launch("vae_add_bias", grid: CUDAContext.grid(for: rows * columns), [
            .buffer(y), .buffer(bias), .int32(Int32(rows)), .int32(Int32(columns)), .int32(code), .float(slope),
        ])
    }

    /// Whether a product of a small output and a long k is split along k: into parts computed as
    /// one strided-batched product and added in a fixed order (`vae_sum_slices`), so that a
    /// [128 × 400] output gives the GPU's multiprocessors more than the dozen or so blocks of 64 ×
    /// 64 it has as one product. Off unless `VAE_CUDA_SPLIT_K` says otherwise, until measured.
    public enum SplitK: Equatable, Sendable {
        case off
        /// Where the output's 64 × 64 tiles fill at most half the multiprocessors and k ≥ 256:
        /// into the largest divisor of k up to 8 that keeps tiles × parts within the multiprocessors.
        case auto
        /// Every product of at most 2²⁰ outputs whose k this divides into parts of at least 8.
        case parts(Int)

        /// From `VAE_CUDA_SPLIT_K`: unset or 0 off, "auto", or a number of parts.
        public init(environment: [String: String]) {
            switch environment["VAE_CUDA_SPLIT_K"] {
            case "auto": self = .auto
            case let text?: self = Int(text).map { $0 > 1 ? .parts($0) : .off } ?? .off
            case nil: self = .off
            }
        }

        /// The parts an [m × n] product over `k` is split into (1: not split).
        func parts(m: Int, n: Int, k: Int, multiprocessors: Int) -> Int {
            switch self {
            case .off: return 1
            case .parts(let p): return m * n <= 1 << 20 && k % p == 0 && k / p >= 8 ? p : 1
            case .auto:
                let tiles = ((m + 63) / 64) * ((n + 63) / 64)
                guard k >= 256, 2 * tiles <= multiprocessors else { return 1 }
                return (2...8).reversed().first { k % $0 == 0 && tiles * $0 <= multiprocessors } ?? 1
            }
        }
    }

    /// The scratch of split products' slices, grown as needed (at least `splitScratchFloor`
    /// floats). A buffer it outgrows is kept until the step's recorded work has been launched:
    /// that work may still name it.
    func splitScratch(count: Int) throws -> DeviceBuffer {
        if let buffer = splitBuffer, buffer.count >= count { return buffer }
        if let old = splitBuffer { retiredBuffers.append(old) }
        let buffer = try DeviceBuffer(count: max(count, splitScratchFloor))
        splitBuffer = buffer
        return buffer
    }

    /// C = op(A) op(B) (`CUBLAS.sgemm`'s row-major arguments, α = 1, β = 0) in the step's
    /// ``precision``, or recorded for a graph (or a profile). With `epilogues`, cuBLASLt's epilogue
    /// does that bias work in the product where it can (``fusesBias``, a product not split along
    /// k): the first of them cuBLASLt has an algorithm for. Returns the one it used — if none, the
    /// caller does that work.
    @discardableResult
    func product(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64, ldc: Int,
        epilogues: [ProductEpilogue] = []
    ) throws -> ProductEpilogue? {
        let splits = ldc == n ? splitK.parts(m: m, n: n, k: k, multiprocessors: context.device.multiprocessors) : 1
        let fused = splits == 1 && fusesBias ? epilogues.first { epilogue in
            cublas.fuses(epilogue, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                         precision: precision)
        } : nil
        let product: RecordedProduct
        if splits > 1 {
            // Split along k: one strided-batched product of the k-slices into the scratch
            // [splits, m, n], then the slices added in order (`vae_sum_slices`).
            let part = k / splits, scratch = try splitScratch(count: splits * m * n)
            product = RecordedProduct(
                transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: part, a: a, lda: lda, b: b, ldb: ldb, c: scratch.address, ldc: n,
                precision: precision, batches: splits, strideA: transposeA ? part * lda : part, strideB: transposeB ? part : part * ldb, strideC: m * n)
        } else {
            product = RecordedProduct(
                transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, precision: precision,
                epilogue: fused)
        }
        if context.recording != nil {
            context.recording!.append(.product(product))
        } else {
            try product.run(on: cublas)
        }
        if splits > 1 {
            try context.launch("vae_sum_slices", grid: CUDAContext.grid(for: m * n), [
                .address(product.c, bytes: 4 * splits * m * n), .int64(m * n), .int32(Int32(splits)), .address(c, bytes: 4 * m * n),
            ])
        }
        if fused != nil { fusedProducts += 1 }
        return fused
    }

    /// Runs `ops` forward on `work.rows` rows (or the first `rows`) from `input` (`width` values
    /// per row), each op's output into the workspace. A conditional model's `condition`
    /// ([rows / `repeat`, classes] one-hot) is appended to the rows at its conditioning op.
    func forward(_ ops: [Op], input: DeviceBuffer, width: Int, work: Workspace, rows: Int? = nil, condition: (DeviceBuffer, repeat: Int)? = nil) throws {
        let rows = rows ?? work.rows
        let widths = widths(ops, input: width)
        try transposeFilters(ops, rows: rows, backward: false)  // cuDNN's copies of the convolutions' weights
        for (k, op) in ops.enumerated() {
            let h = work.output(k - 1, input: input)
            let hWidth = k == 0 ? width : widths[k - 1]
            guard let y = work.outputs[k] else { continue }
            switch op {
            case let .linear(w, b, inputs, outputsCount, activation):
                // y = h Wᵀ (W is [out, in], PyTorch's layout), then + b and the activation in one pass.
                // (Without an activation or with ReLU, cuBLASLt's epilogue adds b and applies it,
                // and keeps the ReLU's bit mask where the backward pass can use it.)
                var epilogues: [ProductEpilogue] = []
                if usesReLUMasks, let mask = work.masks[k] {
                    epilogues.append(.biasReLUMask(address: weights[b].address, mask: mask.address, maskStride: ProductEpilogue.maskStride(columns: outputsCount)))
                }
                if activation == nil || activation == .relu { epilogues.append(.bias(address: weights[b].address, relu: activation == .relu)) }
                let fused = try product(transposeA: false, transposeB: true, m: rows, n: outputsCount, k: inputs,
                    a: h.address, lda: inputs, b: weights[w].address, ldb: inputs, c: y.address, ldc: outputsCount, epilogues: epilogues)
                if let mask = work.masks[k] {
                    if fused?.mask != nil { writtenMasks.insert(mask.address) } else { writtenMasks.remove(mask.address) }
                }
                if fused == nil { try addBias(y, weights[b], rows: rows, columns: outputsCount, activation: activation) }
            case let .conditioning(classes):
                guard let (labels, repeats) = condition else { throw CUDAError("a conditional model needs its labels on the GPU") }
                try context.launch("vae_concat_condition", grid: CUDAContext.grid(for: rows * (hWidth + classes)), [
                    .buffer(h), .buffer(labels), .int32(Int32(rows)), .int32(Int32(hWidth)), .int32(Int32(classes)), .int32(Int32(repeats)), .buffer(y),
                ])
            case let .convolution(c):
                let cols = work.scratch!, g = c.geometry
                if let plan = cudnnPlan(c, rows: rows) {
                    // cuDNN on the images themselves: a convolution forward, a transposed one as
                    // the backward data of the convolution it transposes; then + b and the activation.
                    let filter = try filterCopy(c)  // made at the start of the pass (transposeFilters)
                    try convolve(c.transposed ? .backwardData : .forward, plan: plan, a: h.address, b: filter.weight.address, c: y.address)
                    try addBias(y, weights[c.bias], rows: rows * c.outHeight * c.outWidth, columns: c.outChannels, activation: c.activation)
                } else if c.transposed {
                    // cols [rows·H·W, O·k²] = x [rows·H·W, C] W [C, O·k²]; summed into y with b and the ReLU.
                    let m = rows * c.inHeight * c.inWidth
                    try product(transposeA: false, transposeB: false, m: m, n: c.patchLength, k: c.inChannels,
                        a: h.address, lda: c.inChannels, b: weights[c.weight].address, ldb: c.patchLength, c: cols.address, ldc: c.patchLength)
                    try col2im(cols, rows: rows, channels: c.outChannels, height: c.outHeight, width: c.outWidth, grid: c.grid, g, bias: weights[c.bias],
                               activation: c.activation, into: y)
                } else {
                    // y [rows·Ho·Wo, O] = im2col(x) Wᵀ, + b and the ReLU.
                    let m = rows * c.outHeight * c.outWidth
                    try im2col(h, rows: rows, channels: c.inChannels, height: c.inHeight, width: c.inWidth, grid: c.grid, g, into: cols)
                    try product(transposeA: false, transposeB: true, m: m, n: c.outChannels, k: c.patchLength,
                        a: cols.address, lda: c.patchLength, b: weights[c.weight].address, ldb: c.patchLength, c: y.address, ldc: c.outChannels)
                    try addBias(y, weights[c.bias], rows: m, columns: c.outChannels, activation: c.activation)
                }
            case let .transpose(r, columns):
                try context.launch("vae_transpose_examples", grid: CUDAContext.grid(for: rows * r * columns), [
                    .buffer(h), .int32(Int32(rows)), .int32(Int32(r)), .int32(Int32(columns)), .buffer(y),
                ])
            case let .upsample(f, height, width, channels):
                try context.launch("vae_upsample", grid: CUDAContext.grid(for: rows * height * width * channels * f * f), [
                    .buffer(h), .int32(Int32(rows)), .int32(Int32(height)), .int32(Int32(width)), .int32(Int32(channels)), .int32(Int32(f)), .buffer(y),
                ])
            case .view: break
            }
        }
    }

    /// Runs `ops` backward from ∂L/∂(last output) (in `work.lastGradient`), given the network's
    /// `input` and each op's output (the forward pass's); sets the parameters' gradients, and
    /// writes ∂L/∂input into `inputGradient` when it is given.
    func backward(_ ops: [Op], input: DeviceBuffer, width: Int, work: Workspace, inputGradient: DeviceBuffer?, rows: Int) throws {
        let outputWidths = widths(ops, input: width)
        // Layers whose ∂(pre-activation) and bias gradient the next layer's ∂h product made.
        var gradientsDone: Set<Int> = []
        for k in stride(from: ops.count - 1, through: 0, by: -1) {
            guard let g = work.gradients[k], let y = work.outputs[k] else { continue }
            let h = work.output(k - 1, input: input)
            let dh = work.gradient(k - 1, input: inputGradient)
            switch ops[k] {
            case let .linear(w, b, inputs, outputsCount, activation):
                // ∂W = gᵀ h [out, in] (without an activation, with ∂b = Σ_r g[r] in cuBLASLt's
                // epilogue where it can; else ∂b, through the activation, in a pass first —
                // unless the next layer's ∂h product did both); ∂h = g W [rows, in] (and, where
                // the layer before is ReLU's with its mask, ∂h ⊙ its ReLU' and its ∂b).
                @discardableResult
                func weightGradient(_ epilogues: [ProductEpilogue] = []) throws -> ProductEpilogue? {
                    try product(transposeA: true, transposeB: false, m: outputsCount, n: inputs, k: rows,
                        a: g.address, lda: outputsCount, b: h.address, ldb: inputs, c: gradients[w].address, ldc: inputs, epilogues: epilogues)
                }
                if gradientsDone.contains(k) {
                    try weightGradient()  // ∂pre and ∂b came with the next layer's ∂h
                } else if activation == nil, try weightGradient([.rowSumsOfA(address: gradients[b].address)]) != nil {
                    // ∂W and ∂b in one product
                } else {
                    try biasGradient(g, output: y, activation: activation, into: gradients[b], rows: rows, columns: outputsCount, scratch: nil)
                    try weightGradient()
                }
                if let dh {
                    var epilogues: [ProductEpilogue] = []
                    if k > 0, let mask = work.masks[k - 1], writtenMasks.contains(mask.address), case let .linear(_, before, _, _, _) = ops[k - 1] {
                        epilogues.append(.reluGradient(address: gradients[before].address, mask: mask.address, maskStride: ProductEpilogue.maskStride(columns: inputs)))
                    }
                    if try product(transposeA: false, transposeB: false, m: rows, n: inputs, k: outputsCount,
                        a: g.address, lda: outputsCount, b: weights[w].address, ldb: inputs, c: dh.address, ldc: inputs, epilogues: epilogues) != nil {
                        gradientsDone.insert(k - 1)
                    }
                }
            case let .conditioning(classes):
                guard let dh else { continue }
                let width = outputWidths[k]
                try context.launch("vae_first_columns", grid: CUDAContext.grid(for: rows * (width - classes)), [
                    .buffer(g), .int32(Int32(rows)), .int32(Int32(width - classes)), .int32(Int32(width)), .buffer(dh),
                ])
            case let .convolution(c):
                let cols = work.scratch!, geometry = c.geometry
                let positions = rows * c.outHeight * c.outWidth
                try biasGradient(g, output: y, activation: c.activation, into: gradients[c.bias], rows: positions, columns: c.outChannels, scratch: cols)
                if let plan = cudnnPlan(c, rows: rows) {
                    // The weight copy the forward pass made; ∂W in cuDNN's order, put back at the end of the pass.
                    // A transposed convolution is the convolution from its output to its input,
                    // run backwards: its ∂W is that convolution's filter gradient with ∂y as the
                    // input, and its ∂x that convolution's forward of ∂y.
                    let filter = try filterCopy(c)
                    if c.transposed {
                        try convolve(.backwardFilter, plan: plan, a: g.address, b: h.address, c: filter.gradient.address)
                        if let dh { try convolve(.forward, plan: plan, a: g.address, b: filter.weight.address, c: dh.address) }
                    } else {
                        try convolve(.backwardFilter, plan: plan, a: h.address, b: g.address, c: filter.gradient.address)
                        if let dh { try convolve(.backwardData, plan: plan, a: g.address, b: filter.weight.address, c: dh.address) }
                    }
                } else if c.transposed {
                    // cols = im2col(∂y) [rows·H·W, O·k²];  ∂W = xᵀ cols [C, O·k²];  ∂x = cols Wᵀ [rows·H·W, C].
                    let m = rows * c.inHeight * c.inWidth
                    try im2col(g, rows: rows, channels: c.outChannels, height: c.outHeight, width: c.outWidth, grid: c.grid, geometry, into: cols)
                    try product(transposeA: true, transposeB: false, m: c.inChannels, n: c.patchLength, k: m,
                        a: h.address, lda: c.inChannels, b: cols.address, ldb: c.patchLength, c: gradients[c.weight].address, ldc: c.patchLength)
                    if let dh {
                        try product(transposeA: false, transposeB: true, m: m, n: c.inChannels, k: c.patchLength,
                            a: cols.address, lda: c.patchLength, b: weights[c.weight].address, ldb: c.patchLength, c: dh.address, ldc: c.inChannels)
                    }
                } else {
                    // cols = im2col(x);  ∂W = ∂yᵀ cols [O, C·k²];  then cols ← ∂y W and ∂x = col2im(cols).
                    try im2col(h, rows: rows, channels: c.inChannels, height: c.inHeight, width: c.inWidth, grid: c.grid, geometry, into: cols)
                    try product(transposeA: true, transposeB: false, m: c.outChannels, n: c.patchLength, k: positions,
                        a: g.address, lda: c.outChannels, b: cols.address, ldb: c.patchLength, c: gradients[c.weight].address, ldc: c.patchLength)
                    if let dh {
                        try product(transposeA: false, transposeB: false, m: positions, n: c.patchLength, k: c.outChannels,
                            a: g.address, lda: c.outChannels, b: weights[c.weight].address, ldb: c.patchLength, c: cols.address, ldc: c.patchLength)
                        try col2im(cols, rows: rows, channels: c.inChannels, height: c.inHeight, width: c.inWidth, grid: c.grid, geometry, bias: nil,
                                   activation: nil, into: dh)
                    }
                }
            case let .transpose(r, columns):
                guard let dh else { continue }
                try context.launch("vae_transpose_examples", grid: CUDAContext.grid(for: rows * r * columns), [
                    .buffer(g), .int32(Int32(rows)), .int32(Int32(columns)), .int32(Int32(r)), .buffer(dh),
                ])
            case let .upsample(f, height, width, channels):
                guard let dh else { continue }
                try context.launch("vae_upsample_backward", grid: CUDAContext.grid(for: rows * height * width * channels), [
                    .buffer(g), .int32(Int32(rows)), .int32(Int32(height)), .int32(Int32(width)), .int32(Int32(channels)), .int32(Int32(f)), .buffer(dh),
                ])
            case .view: break
            }
        }
        try transposeFilters(ops, rows: rows, backward: true)  // cuDNN's weight gradients into the stored order
    }
}
