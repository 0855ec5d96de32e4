import CCUDA

/// A kernel launch as recorded for a graph: the kernel, its 1-D grid and block, its shared
/// memory, and each argument's 8-byte slot value.
public struct RecordedKernel: Equatable {
    public let name: String
    public let grid: Int
    public let block: Int
    public let shared: Int
    public let values: [UInt64]

    /// Whether `other` launches the same kernel the same way (its arguments may differ).
    func hasShape(of other: RecordedKernel) -> Bool {
        name == other.name && grid == other.grid && block == other.block && shared == other.shared && values.count == other.values.count
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
/// launches it: two or three driver calls instead of one per kernel and product. The kernels run
/// in the recorded order one after another, so the numbers are those of plain launches.
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

    public init(context: CUDAContext, cublas: CUBLAS) {
        self.context = context
        self.cublas = cublas
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
        var previous: UnsafeMutableRawPointer?
        var kernels: [(index: Int, node: UnsafeMutableRawPointer, kernel: RecordedKernel)] = []
        for (i, item) in work.enumerated() {
            var node: UnsafeMutableRawPointer?
            switch item {
            case .kernel(let kernel):
                let (function, arguments) = try context.node(kernel)
                try cudaCall {
                    vae_cuda_graph_add_kernel(graph, &node, previous, function, UInt32(kernel.grid), UInt32(kernel.block), UInt32(kernel.shared), arguments, $0, $1)
                }
                guard let node else { throw CUDAError("cuGraphAddKernelNode gave no node") }
                kernels.append((i, node, kernel))
            case .product(let product):
                // cuBLAS's kernels for the product, captured from a stream into a child graph.
                node = try captured(into: graph, after: previous, setStream: cublas.setStream) { try product.run(on: cublas) }
            case .convolution(let convolution):
                // cuDNN's likewise.
                guard let cudnn else { throw CUDAError("a recorded cuDNN convolution without cuDNN") }
                node = try captured(into: graph, after: previous, setStream: cudnn.setStream) { try convolution.run(on: cudnn) }
            }
            previous = node
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
        return graphs.count - 1
    }
    /// A library's work (`body`, issued on the stream `setStream` points it at) captured from the
    /// capture stream into a child graph, added to `graph` after `previous`; the library is put
    /// back on the default stream after.
    private func captured(
        into graph: UnsafeMutableRawPointer, after previous: UnsafeMutableRawPointer?, setStream: (UnsafeMutableRawPointer?) throws -> Void,
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
        try cudaCall { vae_cuda_graph_add_child(graph, &node, previous, child, $0, $1) }
        return node
    }
}
