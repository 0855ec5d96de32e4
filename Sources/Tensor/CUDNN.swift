#if canImport(Glibc)
import Glibc
#endif

/// cuDNN 9 (`libcudnn.so.9`, its legacy convolution API), loaded with `dlopen`, for the
/// convolutions of a step: implicit-GEMM kernels that read the image where it lies instead of a
/// patch matrix written and read again.
///
/// A convolution here is the forward one, y = conv(x, W) (cross-correlation, as PyTorch's), on
/// channels-last images (NHWC: [n, h, w, c], as the project keeps them) with its filter
/// channels-last too (KRSC: [k, r, s, c] — PyTorch's [k, c, r, s] weight transposed per output
/// channel, which the caller does). Its three products are
///
///     forward:          y  = conv(x, W)             [n, ho, wo, k]
///     backward data:    ∂x = convᵀ(∂y, W)           [n, h, w, c]      (a transposed convolution's forward)
///     backward filter:  ∂W = Σ_n ∂y ⋆ x             [k, r, s, c]
///
/// each by the first algorithm cuDNN's heuristic ranks that is deterministic (so a resumed run
/// repeats its numbers), needs no tensor cores (FMA math: FP32 throughout, no TF32, as the
/// project's products) and fits the workspace. A shape with no such algorithm for any of the
/// three gets no ``Plan`` (the caller keeps its patch-matrix path). A workspace is a buffer of
/// ``workspaceBytes`` made beforehand (one with the handle, a second when a step's graph lets two
/// convolutions run at once: ``useWorkspace(_:)``), so a capture into a CUDA graph allocates nothing.
public final class CUDNN {
    public let path: String
    /// "9.10.2", as the library reports it.
    public let version: String
    private let handle: OpaquePointer
    /// The workspaces (the first made with the handle, the second on first use).
    private var workspaces: DeviceWorkspaces
    /// The one the convolutions run in now.
    public var workspace: DeviceBuffer { workspaces.buffer }
    public static let workspaceBytes = 64 << 20
    /// How many workspaces a step's graph may spread its convolutions over.
    public var workspaceCount: Int { workspaces.slots }

    private typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Destroy = @convention(c) (OpaquePointer?) -> Int32
    private typealias SetStream = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32
    private typealias GetVersion = @convention(c) () -> Int
    private typealias SetTensor = @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, Int32) -> Int32
    private typealias SetFilter = @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, Int32) -> Int32
    private typealias SetConvolution = @convention(c) (OpaquePointer?, Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) -> Int32
    private typealias SetMathType = @convention(c) (OpaquePointer?, Int32) -> Int32
    /// cudnnGetConvolution{Forward,BackwardData,BackwardFilter}Algorithm_v7: handle, the three
    /// descriptors in the function's order and the convolution's, the results asked for, given,
    /// and where they go.
    private typealias Heuristic = @convention(c) (
        OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, Int32, UnsafeMutablePointer<Int32>, UnsafeMutableRawPointer
    ) -> Int32
    /// cudnnConvolution{Forward,BackwardData,BackwardFilter}: handle, α, the first operand's
    /// descriptor and data, the second's, the convolution, the algorithm, the workspace, β, the
    /// result's descriptor and data.
    private typealias Convolve = @convention(c) (
        OpaquePointer?, UnsafeRawPointer, OpaquePointer?, UInt64, OpaquePointer?, UInt64, OpaquePointer?, Int32, UInt64, Int,
        UnsafeRawPointer, OpaquePointer?, UInt64
    ) -> Int32

    private let destroy: Destroy
    private let setStreamFunction: SetStream
    private let createTensor: Create, destroyTensor: Destroy, setTensor: SetTensor
    private let createFilter: Create, destroyFilter: Destroy, setFilter: SetFilter
    private let createConvolution: Create, destroyConvolution: Destroy, setConvolution: SetConvolution, setMathType: SetMathType
    private let forwardHeuristic: Heuristic, dataHeuristic: Heuristic, filterHeuristic: Heuristic
    private let forwardFunction: Convolve, dataFunction: Convolve, filterFunction: Convolve

    // cudnn_graph.h / cudnn_cnn.h: CUDNN_DATA_FLOAT = 0, CUDNN_TENSOR_NHWC = 1,
    // CUDNN_CROSS_CORRELATION = 1, CUDNN_FMA_MATH = 3, CUDNN_DETERMINISTIC = 1; the three
    // algorithm-performance structs share one 48-byte layout (algo, status, time, memory at 16,
    // determinism at 24, mathType at 28).
    private static let (float, nhwc, crossCorrelation, fmaMath, deterministic): (Int32, Int32, Int32, Int32, Int32) = (0, 1, 1, 3, 1)
    private static let resultBytes = 48
    private static let resultsAsked: Int32 = 16

    /// cuDNN 9's sub-libraries, which `libcudnn.so.9` opens by name when first needed, in the
    /// order they depend on each other.
    static let subLibraries = [
        "libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9", "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9",
        "libcudnn_ops.so.9", "libcudnn_cnn.so.9",
    ]

    /// Loads cuDNN from `path`, creates a handle on the current context's device and its workspace.
    /// The sub-libraries beside `path` are opened first, so that cuDNN finds them loaded whether
    /// or not its folder is on the loader's path (PyPI's `nvidia-cudnn` wheels are not).
    public init(path: String) throws {
        let folder = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !folder.isEmpty {
            for name in Self.subLibraries where access(folder + "/" + name, R_OK) == 0 { _ = dlopen(folder + "/" + name, RTLD_NOW | RTLD_GLOBAL) }
        }
        let library = try DynamicLibrary(path, expected: "cuDNN 9")
        self.path = path
        let create = try library.function("cudnnCreate", Create.self)
        destroy = try library.function("cudnnDestroy", Destroy.self)
        let getVersion = try library.function("cudnnGetVersion", GetVersion.self)
        setStreamFunction = try library.function("cudnnSetStream", SetStream.self)
        createTensor = try library.function("cudnnCreateTensorDescriptor", Create.self)
        destroyTensor = try library.function("cudnnDestroyTensorDescriptor", Destroy.self)
        setTensor = try library.function("cudnnSetTensor4dDescriptor", SetTensor.self)
        createFilter = try library.function("cudnnCreateFilterDescriptor", Create.self)
        destroyFilter = try library.function("cudnnDestroyFilterDescriptor", Destroy.self)
        setFilter = try library.function("cudnnSetFilter4dDescriptor", SetFilter.self)
        createConvolution = try library.function("cudnnCreateConvolutionDescriptor", Create.self)
        destroyConvolution = try library.function("cudnnDestroyConvolutionDescriptor", Destroy.self)
        setConvolution = try library.function("cudnnSetConvolution2dDescriptor", SetConvolution.self)
        setMathType = try library.function("cudnnSetConvolutionMathType", SetMathType.self)
        forwardHeuristic = try library.function("cudnnGetConvolutionForwardAlgorithm_v7", Heuristic.self)
        dataHeuristic = try library.function("cudnnGetConvolutionBackwardDataAlgorithm_v7", Heuristic.self)
        filterHeuristic = try library.function("cudnnGetConvolutionBackwardFilterAlgorithm_v7", Heuristic.self)
        forwardFunction = try library.function("cudnnConvolutionForward", Convolve.self)
        dataFunction = try library.function("cudnnConvolutionBackwardData", Convolve.self)
        filterFunction = try library.function("cudnnConvolutionBackwardFilter", Convolve.self)
        let v = getVersion()  // 9.x: 10000·major + 100·minor + patch
        version = "\(v / 10000).\(v % 10000 / 100).\(v % 100)"
        guard v >= 90000 else { throw CUDAError("\(path) is cuDNN \(version); vae uses cuDNN 9") }
        workspaces = try DeviceWorkspaces(bytes: Self.workspaceBytes, slots: 2)  // first: nothing to release if it does not fit
        var handle: OpaquePointer?
        let status = create(&handle)
        guard status == 0, let handle else { throw CUDAError("cudnnCreate failed (cuDNN status \(status))") }
        self.handle = handle
    }

    deinit {
        plans.removeAll()
        _ = destroy(handle)
    }

    /// Runs the convolutions from now on in workspace `slot` (0 ..< ``workspaceCount``), made now
    /// if it is the first time: convolutions that may run at the same time must not share one.
    public func useWorkspace(_ slot: Int) throws {
        try workspaces.select(slot)
    }

    /// Issues the convolutions on `stream` from now on (nil: the default stream).
    public func setStream(_ stream: UnsafeMutableRawPointer?) throws {
        let status = setStreamFunction(handle, stream)
        guard status == 0 else { throw CUDAError("cudnnSetStream failed (cuDNN status \(status))") }
    }

    /// A forward convolution's sizes: `batch` images of `height` × `width` × `channels` in,
    /// `outChannels` out, a square kernel.
    public struct Shape: Hashable, Sendable {
        public let batch: Int, channels: Int, height: Int, width: Int
        public let outChannels: Int, kernel: Int, stride: Int, padding: Int

        public init(batch: Int, channels: Int, height: Int, width: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int) {
            (self.batch, self.channels, self.height, self.width) = (batch, channels, height, width)
            (self.outChannels, self.kernel, self.stride, self.padding) = (outChannels, kernel, stride, padding)
        }

        /// ⌊(size + 2p − k)/s⌋ + 1, as `ConvolutionGeometry` does.
        public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
        public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
    }

    /// One shape's descriptors and algorithms.
    public final class Plan {
        public let shape: Shape
        let input: OpaquePointer, output: OpaquePointer, filter: OpaquePointer, convolution: OpaquePointer
        /// The algorithm and its workspace bytes for forward, backward data and backward filter.
        public let forward: (algorithm: Int32, bytes: Int)
        public let data: (algorithm: Int32, bytes: Int)
        public let filterGradient: (algorithm: Int32, bytes: Int)
        private let release: () -> Void

        init(
            shape: Shape, descriptors: (OpaquePointer, OpaquePointer, OpaquePointer, OpaquePointer), algorithms: [(Int32, Int)],
            release: @escaping () -> Void
        ) {
            self.shape = shape
            (input, output, filter, convolution) = descriptors
            (forward, data, filterGradient) = (algorithms[0], algorithms[1], algorithms[2])
            self.release = release
        }

        deinit { release() }
    }

    /// nil: cuDNN had no usable algorithm for that shape (or refused its descriptors).
    private var plans: [Shape: Plan?] = [:]
    /// Why the last shape without a plan got none, for messages.
    public private(set) var lastRefusal: String?

    /// The shape's plan, made on first use; nil when cuDNN offers no deterministic FMA algorithm
    /// within the workspace for any of its three products (``lastRefusal`` says which).
    public func plan(_ shape: Shape) -> Plan? {
        if let known = plans[shape] { return known }
        let made = makePlan(shape)
        plans[shape] = made
        return made
    }

    private func makePlan(_ shape: Shape) -> Plan? {
        var made: [OpaquePointer] = []
        func release() {
            if made.count > 0 { _ = destroyTensor(made[0]) }
            if made.count > 1 { _ = destroyTensor(made[1]) }
            if made.count > 2 { _ = destroyFilter(made[2]) }
            if made.count > 3 { _ = destroyConvolution(made[3]) }
        }
        func refuse(_ reason: String) -> Plan? {
            lastRefusal = "cuDNN: \(reason) for a \(shape.channels)→\(shape.outChannels) convolution of \(shape.batch) × \(shape.height) × \(shape.width)"
            release()
            return nil
        }
        for create in [createTensor, createTensor, createFilter, createConvolution] {
            var descriptor: OpaquePointer?
            guard create(&descriptor) == 0, let descriptor else { return refuse("a descriptor could not be made") }
            made.append(descriptor)
        }
        let s = shape
        guard setTensor(made[0], Self.nhwc, Self.float, Int32(s.batch), Int32(s.channels), Int32(s.height), Int32(s.width)) == 0,
              setTensor(made[1], Self.nhwc, Self.float, Int32(s.batch), Int32(s.outChannels), Int32(s.outHeight), Int32(s.outWidth)) == 0,
              setFilter(made[2], Self.float, Self.nhwc, Int32(s.outChannels), Int32(s.channels), Int32(s.kernel), Int32(s.kernel)) == 0,
              setConvolution(made[3], Int32(s.padding), Int32(s.padding), Int32(s.stride), Int32(s.stride), 1, 1, Self.crossCorrelation, Self.float) == 0,
              setMathType(made[3], Self.fmaMath) == 0
        else { return refuse("the descriptors were refused") }
        let (x, y, w, c) = (made[0], made[1], made[2], made[3])
        var algorithms: [(Int32, Int)] = []
        // Each heuristic takes its descriptors in its function's order.
        for (name, heuristic, descriptors) in [
            ("forward", forwardHeuristic, (x, w, y)), ("backward data", dataHeuristic, (w, y, x)), ("backward filter", filterHeuristic, (x, y, w)),
        ] {
            guard let chosen = choose(heuristic, descriptors, c) else { return refuse("no deterministic FP32 \(name) algorithm within \(Self.workspaceBytes >> 20) MiB") }
            algorithms.append(chosen)
        }
        let descriptors = (x, y, w, c)
        return Plan(shape: shape, descriptors: descriptors, algorithms: algorithms) { [destroyTensor, destroyFilter, destroyConvolution] in
            _ = destroyTensor(x)
            _ = destroyTensor(y)
            _ = destroyFilter(w)
            _ = destroyConvolution(c)
        }
    }

    /// The heuristic's first algorithm that ran (status 0), is deterministic, uses no tensor
    /// cores and fits the workspace.
    private func choose(_ heuristic: Heuristic, _ d: (OpaquePointer, OpaquePointer, OpaquePointer), _ convolution: OpaquePointer) -> (Int32, Int)? {
        let results = UnsafeMutableRawPointer.allocate(byteCount: Self.resultBytes * Int(Self.resultsAsked), alignment: 16)
        defer { results.deallocate() }
        results.initializeMemory(as: UInt8.self, repeating: 0, count: Self.resultBytes * Int(Self.resultsAsked))
        var count: Int32 = 0
        // The v7 heuristics take the first two descriptors, then the convolution's, then the third.
        guard heuristic(handle, d.0, d.1, convolution, d.2, Self.resultsAsked, &count, results) == 0 else { return nil }
        for i in 0..<Int(min(count, Self.resultsAsked)) {
            let r = results + i * Self.resultBytes
            let (algorithm, status) = (r.load(as: Int32.self), r.load(fromByteOffset: 4, as: Int32.self))
            let (bytes, determinism, math) = (r.load(fromByteOffset: 16, as: Int.self), r.load(fromByteOffset: 24, as: Int32.self), r.load(fromByteOffset: 28, as: Int32.self))
            if status == 0, determinism == Self.deterministic, math == 0 || math == Self.fmaMath, bytes <= Self.workspaceBytes {
                return (algorithm, bytes)
            }
        }
        return nil
    }

    /// What a recorded convolution does.
    public enum Product: Hashable, Sendable {
        /// y = conv(x, W): a is x, b is W (KRSC), c is y.
        case forward
        /// ∂x = convᵀ(∂y, W): a is ∂y, b is W, c is ∂x.
        case backwardData
        /// ∂W = Σ ∂y ⋆ x: a is x, b is ∂y, c is ∂W (KRSC).
        case backwardFilter
    }

    /// Runs `product` of `plan` on the handle's stream (α = 1, β = 0: c is overwritten).
    public func run(_ product: Product, plan: Plan, a: UInt64, b: UInt64, c: UInt64) throws {
        var (alpha, beta): (Float, Float) = (1, 0)
        let status: Int32
        switch product {
        case .forward:
            status = forwardFunction(handle, &alpha, plan.input, a, plan.filter, b, plan.convolution, plan.forward.algorithm, workspace.address,
                                     plan.forward.bytes, &beta, plan.output, c)
        case .backwardData:
            status = dataFunction(handle, &alpha, plan.filter, b, plan.output, a, plan.convolution, plan.data.algorithm, workspace.address,
                                  plan.data.bytes, &beta, plan.input, c)
        case .backwardFilter:
            status = filterFunction(handle, &alpha, plan.input, a, plan.output, b, plan.convolution, plan.filterGradient.algorithm, workspace.address,
                                    plan.filterGradient.bytes, &beta, plan.filter, c)
        }
        guard status == 0 else {
            let s = plan.shape
            throw CUDAError("cuDNN's convolution (\(product), \(s.channels)→\(s.outChannels) over \(s.batch) × \(s.height) × \(s.width)) failed (cuDNN status \(status)); VAE_CUDA_CUDNN=0 does without cuDNN")
        }
    }
}
