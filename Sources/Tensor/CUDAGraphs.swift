import CCUDA

/// A kernel launch as recorded for a graph: the kernel, its 1-D grid and block, its shared
/// memory, each argument's 8-byte slot value, and the bytes of each buffer argument.
public struct RecordedKernel: Equatable {
    public let name: String
    public let grid: Int
    public let block: Int
    public let shared: Int
    public let values: [UInt64]
    /// For each argument, the bytes of the buffer (the view) it passes; 0 for a value or a null
    /// pointer.
    public let bytes: [Int]
    /// What it reaches through a table of addresses, as its launch declared it (nil: only its
    /// arguments' buffers).
    public let declared: MemoryAccess?

    init(name: String, grid: Int, block: Int, shared: Int, values: [UInt64], bytes: [Int], declared: MemoryAccess? = nil) {
        (self.name, self.grid, self.block, self.shared, self.values, self.bytes, self.declared) = (name, grid, block, shared, values, bytes, declared)
    }

    /// Whether `other` launches the same kernel the same way on the same buffers (its other
    /// arguments may differ): a graph node can then take `other`'s arguments, its memory
    /// accesses — its dependencies — unchanged.
    func hasShape(of other: RecordedKernel) -> Bool {
        guard name == other.name, grid == other.grid, block == other.block, shared == other.shared, values.count == other.values.count else {
            return false
        }
        for i in bytes.indices where bytes[i] != other.bytes[i] || (bytes[i] > 0 && values[i] != other.values[i]) { return false }
        return declared == other.declared
    }

    /// The memory it reads and writes, from how the kernel's source declares each pointer
    /// (``CUDAKernels/parameterUses``) and the bytes of each buffer passed; a table of addresses
    /// reaches anything unless the launch declared what it reaches.
    var access: MemoryAccess {
        if let declared { return declared }
        guard let uses = CUDAKernels.parameterUses[name], uses.count == values.count else { return MemoryAccess(everything: true) }
        var (reads, writes): ([Range<UInt64>], [Range<UInt64>]) = ([], [])
        for (i, use) in uses.enumerated() {
            // A pointer passed without its size (a bare address) may reach anywhere.
            if use != nil && bytes[i] == 0 && values[i] != 0 { return MemoryAccess(everything: true) }
            let span = MemoryAccess.span(values[i], bytes: bytes[i])
            switch use {
            case .reads: reads.append(span)
            case .writes: writes.append(span)
            case .anything: return MemoryAccess(everything: true)
            case nil: continue
            }
        }
        return MemoryAccess(reads: reads, writes: writes)
    }
}

/// A cuBLAS product as recorded for a graph (``CUBLAS/sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:precision:batches:strideA:strideB:strideC:)``'s
/// arguments, α = 1 and β = 0).
public struct RecordedProduct: Equatable {
    public let transposeA: Bool, transposeB: Bool
    public let m: Int, n: Int, k: Int
    public let a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64, ldc: Int
    public let precision: MatrixPrecision
    /// Strided-batched: this many products, each operand advanced by its stride (elements).
    public let batches: Int, strideA: Int, strideB: Int, strideC: Int
    /// cuBLASLt's epilogue for it (nil: a cuBLAS product).
    public let epilogue: ProductEpilogue?

    public init(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64, ldc: Int, precision: MatrixPrecision,
        batches: Int = 1, strideA: Int = 0, strideB: Int = 0, strideC: Int = 0, epilogue: ProductEpilogue? = nil
    ) {
        (self.transposeA, self.transposeB, self.m, self.n, self.k) = (transposeA, transposeB, m, n, k)
        (self.a, self.lda, self.b, self.ldb, self.c, self.ldc, self.precision) = (a, lda, b, ldb, c, ldc, precision)
        (self.batches, self.strideA, self.strideB, self.strideC) = (batches, strideA, strideB, strideC)
        self.epilogue = epilogue
    }

    /// The memory it reads (op(A), op(B), an epilogue's bias or bit mask) and writes (C, a bias
    /// gradient or bit mask); not its workspace.
    var access: MemoryAccess {
        let operandA = transposeA ? (rows: k, columns: m) : (rows: m, columns: k)
        let operandB = transposeB ? (rows: n, columns: k) : (rows: k, columns: n)
        var reads = [
            MemoryAccess.matrix(a, rows: operandA.rows, columns: operandA.columns, ld: lda, batches: batches, stride: strideA),
            MemoryAccess.matrix(b, rows: operandB.rows, columns: operandB.columns, ld: ldb, batches: batches, stride: strideB),
        ]
        var writes = [MemoryAccess.matrix(c, rows: m, columns: n, ld: ldc, batches: batches, stride: strideC)]
        switch epilogue {
        case nil: break
        case .bias(let address, _): reads.append(MemoryAccess.span(address, bytes: 4 * n))
        case .rowSumsOfA(let address): writes.append(MemoryAccess.span(address, bytes: 4 * m))
        case .biasReLUMask(let address, let mask, let stride):
            reads.append(MemoryAccess.span(address, bytes: 4 * n))
            writes.append(MemoryAccess.span(mask, bytes: m * stride / 8))
        case .reluGradient(let address, let mask, let stride):
            reads.append(MemoryAccess.span(mask, bytes: m * stride / 8))
            writes.append(MemoryAccess.span(address, bytes: 4 * n))
        }
        return MemoryAccess(reads: reads, writes: writes)
    }

    /// Runs it now on `cublas` (on its current stream).
    public func run(on cublas: CUBLAS) throws {
        if let epilogue {
            try cublas.product(
                epilogue, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, precision: precision)
            return
        }
        try cublas.sgemm(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: ldc,
            precision: precision, batches: batches, strideA: strideA, strideB: strideB, strideC: strideC)
    }
}

/// A cuDNN convolution as recorded for a graph (``CUDNN/run(_:plan:a:b:c:)``'s arguments).
public struct RecordedConvolution: Equatable {
    public let product: CUDNN.Product
    public let plan: CUDNN.Plan
    public let a: UInt64, b: UInt64, c: UInt64

    public init(_ product: CUDNN.Product, plan: CUDNN.Plan, a: UInt64, b: UInt64, c: UInt64) {
        (self.product, self.plan, self.a, self.b, self.c) = (product, plan, a, b, c)
    }

    public static func == (x: Self, y: Self) -> Bool {
        x.product == y.product && x.plan === y.plan && x.a == y.a && x.b == y.b && x.c == y.c
    }

    /// The memory it reads and writes: its operands as ``CUDNN/Product`` names them; not its
    /// workspace.
    var access: MemoryAccess {
        let s = plan.shape
        let image = 4 * s.batch * s.height * s.width * s.channels
        let filter = 4 * s.outChannels * s.kernel * s.kernel * s.channels
        let output = 4 * s.batch * s.outHeight * s.outWidth * s.outChannels
        let (aBytes, bBytes, cBytes) = switch product {
        case .forward: (image, filter, output)
        case .backwardData: (output, filter, image)
        case .backwardFilter: (image, output, filter)
        }
        return MemoryAccess(reads: [MemoryAccess.span(a, bytes: aBytes), MemoryAccess.span(b, bytes: bBytes)], writes: [MemoryAccess.span(c, bytes: cBytes)])
    }

    /// Runs it now on `cudnn` (on its current stream).
    public func run(on cudnn: CUDNN?) throws {
        guard let cudnn else { throw CUDAError("a recorded cuDNN convolution without cuDNN") }
        try cudnn.run(product, plan: plan, a: a, b: b, c: c)
    }
}

/// One piece of a recorded step, in order.
public enum RecordedWork {
    case kernel(RecordedKernel)
    case product(RecordedProduct)
    case convolution(RecordedConvolution)

    /// Launches it now (not as a graph).
    public func run(context: CUDAContext, cublas: CUBLAS, cudnn: CUDNN?) throws {
        switch self {
        case .kernel(let kernel): try context.launch(kernel)
        case .product(let product): try product.run(on: cublas)
        case .convolution(let convolution): try convolution.run(on: cudnn)
        }
    }
}

/// A training step's work as CUDA graphs: the step records its launches and products
/// (`CUDAContext.recording`) instead of issuing them, and ``run(_:)`` launches them as one graph.
/// A graph is built the first time a step of its shape comes (the same kernels with the same
/// grids, the same products on the same buffers — a full batch, the last short batch of an
/// epoch); a later step of that shape only updates the kernel nodes whose arguments changed (the
/// step's noise stream, the batch's position, the loss slot, Adam's step constants, β) and
/// launches it: two or three driver calls instead of one per kernel and product.
///
/// A graph is not a chain: each piece waits only for the earlier pieces whose memory it reads or
/// overwrites (``StepDependencies``, from each piece's ``MemoryAccess``), so the GPU may run
/// independent pieces at once — each layer's weight-gradient product beside the chain of input
/// gradients. Any two pieces that touch the same memory keep their recorded order, so the numbers
/// are those of plain launches. With `chained` (`VAE_CUDA_GRAPHS=chain`) every piece waits for the
/// one before, as launched one by one.
///
/// Should the driver or cuBLAS refuse any part of it, graphs are turned off (``disabledReason``
/// says why) and the work is launched as recorded, so a step always runs.
public final class CUDAGraphs {
    let context: CUDAContext
    let cublas: CUBLAS
    /// cuDNN, for the recorded convolutions (nil: none were recorded).
    public var cudnn: CUDNN?
    private struct Graph {
        let work: [RecordedWork]
        var kernels: [(index: Int, node: UnsafeMutableRawPointer, kernel: RecordedKernel)]
        let graph: UnsafeMutableRawPointer
        let executable: UnsafeMutableRawPointer
    }
    private var graphs: [Graph] = []
    private var captureStream: UnsafeMutableRawPointer?
    /// Graphs kept at once (the oldest goes first).
    static let capacity = 8
    /// Why graphs were turned off, if they were.
    public private(set) var disabledReason: String?
    /// Graphs built, and steps launched as a graph (for tests and `vae bench`).
    public private(set) var built = 0
    public private(set) var launched = 0
    /// Whether each piece waits for the one before it (a chain), rather than only for those
    /// whose memory it shares.
    public let chained: Bool
    /// The last graph built: its pieces and the longest chain of dependencies among them (the
    /// pieces, for a chain), for `vae bench`.
    public private(set) var lastShape: (pieces: Int, longestPath: Int)?
    /// ``lastShape`` in words, as `vae bench` and the kernel check print it: "17 pieces, 13 on the
    /// longest chain of dependencies", or "a chain of 17 pieces (VAE_CUDA_GRAPHS=chain)".
    public var shapeSummary: String? {
        lastShape.map { chained ? "a chain of \($0.pieces) pieces (VAE_CUDA_GRAPHS=chain)" : "\($0.pieces) pieces, \($0.longestPath) on the longest chain of dependencies" }
    }

    public init(context: CUDAContext, cublas: CUBLAS, chained: Bool = false) {
        self.context = context
        self.cublas = cublas
        self.chained = chained
    }

    /// The memory each piece of `work` touches, the workspaces the library calls need (cuBLAS's
    /// pool 0, cuDNN's pool 1: two calls that run at once need one each), and the graph's
    /// dependencies from them.
    func dependencies(of work: [RecordedWork]) -> StepDependencies {
        let pool = work.map { item -> Int? in
            switch item {
            case .kernel: nil
            case .product: 0
            case .convolution: 1
            }
        }
        if chained { return .chain(count: work.count, workspaceUser: pool) }
        let accesses = work.map { item in
            switch item {
            case .kernel(let kernel): kernel.access
            case .product(let product): product.access
            case .convolution(let convolution): convolution.access
            }
        }
        return StepDependencies(accesses, workspaceUser: pool, workspaces: [cublas.workspaceCount, cudnn?.workspaceCount ?? 1])
    }

    deinit { for g in graphs { vae_cuda_graph_destroy(g.graph, g.executable) } }

    /// Runs `work` (a recorded step): as a graph, or launched piece by piece when graphs are off.
    public func run(_ work: [RecordedWork]) throws {
        if disabledReason == nil {
            do {
                try launchAsGraph(work)
                launched += 1
                return
            } catch {
                disabledReason = "\(error)"
            }
        }
        for item in work { try item.run(context: context, cublas: cublas, cudnn: cudnn) }
    }

    private func launchAsGraph(_ work: [RecordedWork]) throws {
        let index = try graphs.firstIndex { Self.sameShape($0.work, work) } ?? build(work)
        var graph = graphs[index]
        for (k, entry) in graph.kernels.enumerated() {
            guard case .kernel(let kernel) = work[entry.index] else { continue }
            if kernel.values != entry.kernel.values {
                let (function, arguments) = try context.node(kernel)
                try cudaCall {
                    vae_cuda_graph_set_kernel(graph.executable, entry.node, function, UInt32(kernel.grid), UInt32(kernel.block), UInt32(kernel.shared), arguments, $0, $1)
                }
                graph.kernels[k].kernel = kernel
            }
        }
        graphs[index] = graph
        try cudaCall { vae_cuda_graph_launch(graph.executable, $0, $1) }
    }

    /// Whether two recorded steps are the same graph: the same kernels launched the same way and
    /// the same products on the same buffers, in the same order.
    private static func sameShape(_ a: [RecordedWork], _ b: [RecordedWork]) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) {
            switch (x, y) {
            case let (.kernel(p), .kernel(q)): if !p.hasShape(of: q) { return false }
            case let (.product(p), .product(q)): if p != q { return false }
            case let (.convolution(p), .convolution(q)): if p != q { return false }
            default: return false
            }
        }
        return true
    }

    /// Builds, instantiates and keeps the graph of `work`; returns its index.
    private func build(_ work: [RecordedWork]) throws -> Int {
        var graph: UnsafeMutableRawPointer?
        try cudaCall { vae_cuda_graph_create(&graph, $0, $1) }
        guard let graph else { throw CUDAError("cuGraphCreate gave no graph") }
        var executable: UnsafeMutableRawPointer?
        var finished = false
        defer { if !finished { vae_cuda_graph_destroy(graph, executable) } }
        if captureStream == nil { try cudaCall { vae_cuda_capture_stream(&captureStream, $0, $1) } }
        let plan = dependencies(of: work)
        var nodes: [UnsafeMutableRawPointer?] = []
        nodes.reserveCapacity(work.count)
        var kernels: [(index: Int, node: UnsafeMutableRawPointer, kernel: RecordedKernel)] = []
        defer {
            try? cublas.useWorkspace(0)
            try? cudnn?.useWorkspace(0)
        }
        for (i, item) in work.enumerated() {
            var node: UnsafeMutableRawPointer?
            let after = plan.dependencies[i].map { nodes[$0] }
            switch item {
            case .kernel(let kernel):
                let (function, arguments) = try context.node(kernel)
                try after.withUnsafeBufferPointer { after in
                    try cudaCall {
                        vae_cuda_graph_add_kernel(
                            graph, &node, UnsafeMutablePointer(mutating: after.baseAddress), after.count, function, UInt32(kernel.grid),
                            UInt32(kernel.block), UInt32(kernel.shared), arguments, $0, $1)
                    }
                }
                guard let node else { throw CUDAError("cuGraphAddKernelNode gave no node") }
                kernels.append((i, node, kernel))
            case .product(let product):
                // cuBLAS's kernels for the product, captured from a stream into a child graph, in
                // the workspace the plan gave it.
                try cublas.useWorkspace(plan.workspace[i] ?? 0)
                node = try captured(into: graph, after: after, setStream: cublas.setStream) { try product.run(on: cublas) }
            case .convolution(let convolution):
                // cuDNN's likewise.
                guard let cudnn else { throw CUDAError("a recorded cuDNN convolution without cuDNN") }
                try cudnn.useWorkspace(plan.workspace[i] ?? 0)
                node = try captured(into: graph, after: after, setStream: cudnn.setStream) { try convolution.run(on: cudnn) }
            }
            nodes.append(node)
        }
        try cudaCall { vae_cuda_graph_instantiate(graph, &executable, $0, $1) }
        guard let executable else { throw CUDAError("cuGraphInstantiate gave no executable graph") }
        finished = true
        if graphs.count == Self.capacity {
            vae_cuda_graph_destroy(graphs[0].graph, graphs[0].executable)
            graphs.removeFirst()
        }
        graphs.append(Graph(work: work, kernels: kernels, graph: graph, executable: executable))
        built += 1
        lastShape = (work.count, plan.longestPath)
        return graphs.count - 1
    }
    /// A library's work (`body`, issued on the stream `setStream` points it at) captured from the
    /// capture stream into a child graph, added to `graph` after the nodes `after`; the library
    /// is put back on the default stream after.
    private func captured(
        into graph: UnsafeMutableRawPointer, after: [UnsafeMutableRawPointer?], setStream: (UnsafeMutableRawPointer?) throws -> Void,
        _ body: () throws -> Void
    ) throws -> UnsafeMutableRawPointer? {
        try setStream(captureStream)
        var child: UnsafeMutableRawPointer?
        do {
            try cudaCall { vae_cuda_capture_begin(captureStream, $0, $1) }
            let ran = Result { try body() }
            try cudaCall { vae_cuda_capture_end(captureStream, &child, $0, $1) }
            try ran.get()
        } catch {
            try? setStream(nil)
            throw error
        }
        try setStream(nil)
        guard let child else { throw CUDAError("cuStreamEndCapture gave no graph") }
        defer { vae_cuda_graph_destroy(child, nil) }  // the node holds a copy
        var node: UnsafeMutableRawPointer?
        try after.withUnsafeBufferPointer { after in
            try cudaCall { vae_cuda_graph_add_child(graph, &node, UnsafeMutablePointer(mutating: after.baseAddress), after.count, child, $0, $1) }
        }
        return node
    }
}
