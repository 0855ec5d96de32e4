#if canImport(Glibc)
import Glibc
#endif

/// cuBLAS (`libcublas.so`), loaded with `dlopen`, for the GPU's FP32 matrix products. cuBLAS is
/// column-major; ``sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:precision:batches:strideA:strideB:strideC:)`` takes the
/// row-major arguments `BLAS.sgemm` takes and asks for the transposed product, Cᵀ = op(B)ᵀ op(A)ᵀ,
/// which is C laid out row-major. Math mode is cuBLAS's default (FP32 products in FP32: no
/// TF32), so the GPU's figures stay comparable with the CPU's. With `MatrixPrecision.bf16` a
/// product goes through `cublasGemmEx` with the compute type CUBLAS_COMPUTE_32F_FAST_16BF: the
/// same FP32 buffers, the operands rounded to bf16 (or TF32, cuBLAS's choice) for the tensor
/// cores, the sums in FP32 — the CPU's bf16 products, on the GPU.
///
/// The handle works in a workspace of its own (``workspaceBytes``, set with
/// `cublasSetWorkspace` again after each stream change, which resets it): without one, cuBLAS takes
/// its workspace from a pool of its own, and in a stream capture (a product recorded into a
/// CUDA graph) from stream-ordered allocations — allocation nodes, which a child graph node may
/// not contain; with one workspace the products are also the same on the capture stream as on the
/// default stream (cuBLAS's reproducibility rule for several streams).
public final class CUBLAS {
    public let path: String
    private let handle: OpaquePointer
    private typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Destroy = @convention(c) (OpaquePointer?) -> Int32
    private typealias SetMathMode = @convention(c) (OpaquePointer?, Int32) -> Int32
    private typealias Sgemm = @convention(c) (
        OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>, UInt64, Int32, UInt64, Int32, UnsafePointer<Float>, UInt64, Int32
    ) -> Int32
    private typealias GemmEx = @convention(c) (
        OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer, UInt64, Int32, Int32, UInt64, Int32, Int32, UnsafeRawPointer, UInt64,
        Int32, Int32, Int32, Int32
    ) -> Int32
    private let destroy: Destroy
    private let gemm: Sgemm
    /// cublasGemmEx, for the bf16 products (nil in a cuBLAS without it).
    private let gemmEx: GemmEx?
    private typealias SgemmStridedBatched = @convention(c) (
        OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafePointer<Float>, UInt64, Int32, Int64, UInt64, Int32, Int64, UnsafePointer<Float>,
        UInt64, Int32, Int64, Int32
    ) -> Int32
    private typealias GemmStridedBatchedEx = @convention(c) (
        OpaquePointer?, Int32, Int32, Int32, Int32, Int32, UnsafeRawPointer, UInt64, Int32, Int32, Int64, UInt64, Int32, Int32, Int64,
        UnsafeRawPointer, UInt64, Int32, Int32, Int64, Int32, Int32, Int32
    ) -> Int32
    /// The strided-batched products (nil in a cuBLAS without them), for products split along k.
    private let sgemmStridedBatched: SgemmStridedBatched?
    private let gemmStridedBatchedEx: GemmStridedBatchedEx?
    private typealias SetStream = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32
    private let setStreamFunction: SetStream?
    private typealias SetWorkspace = @convention(c) (OpaquePointer?, UInt64, Int) -> Int32
    private let setWorkspaceFunction: SetWorkspace?
    /// The handle's workspaces (none in a cuBLAS without `cublasSetWorkspace`): the first made
    /// with the handle, the others on first use (``useWorkspace(_:)``).
    private var workspaces: DeviceWorkspaces?
    /// The one the products run in now.
    private var workspace: DeviceBuffer? { workspaces?.buffer }
    /// Each workspace's size: 32 MiB, what cuBLAS recommends for Hopper (4 MiB is enough before it).
    public static let workspaceBytes = 32 << 20
    /// How many workspaces a step's graph may spread its products over, so that two products
    /// run at once (each in its own): ``workspaceSlots``, or 1 in a cuBLAS without
    /// `cublasSetWorkspace` (whose products cannot go into a graph anyway).
    public static let workspaceSlots = 4
    public var workspaceCount: Int { setWorkspaceFunction == nil ? 1 : Self.workspaceSlots }
    /// cuBLASLt, for the products whose epilogue does a layer's bias work (nil: none, and every
    /// product is cuBLAS's, the bias work the caller's).
    public var lt: CUBLASLt?
    /// The stream the products go to (nil: the default stream).
    private var stream: UnsafeMutableRawPointer?

    /// Loads cuBLAS from `path` and creates a handle on the current context's device.
    public init(path: String) throws {
        let library = try DynamicLibrary(path, expected: "cuBLAS 12 or 13")
        self.path = path
        let create = try library.function("cublasCreate_v2", Create.self)
        destroy = try library.function("cublasDestroy_v2", Destroy.self)
        gemm = try library.function("cublasSgemm_v2", Sgemm.self)
        let setMathMode = try library.function("cublasSetMathMode", SetMathMode.self)
        gemmEx = library.optionalFunction("cublasGemmEx", GemmEx.self)
        setStreamFunction = library.optionalFunction("cublasSetStream_v2", SetStream.self)
        sgemmStridedBatched = library.optionalFunction("cublasSgemmStridedBatched", SgemmStridedBatched.self)
        gemmStridedBatchedEx = library.optionalFunction("cublasGemmStridedBatchedEx", GemmStridedBatchedEx.self)
        setWorkspaceFunction = library.optionalFunction("cublasSetWorkspace_v2", SetWorkspace.self)
        var handle: OpaquePointer?
        let status = create(&handle)
        guard status == 0, let handle else { throw CUDAError("cublasCreate failed (cuBLAS status \(status))") }
        self.handle = handle
        let mode = setMathMode(handle, 0)  // CUBLAS_DEFAULT_MATH
        guard mode == 0 else { throw CUDAError("cublasSetMathMode failed (cuBLAS status \(mode))") }
        if setWorkspaceFunction != nil {
            workspaces = try DeviceWorkspaces(bytes: Self.workspaceBytes, slots: Self.workspaceSlots)
            try applyWorkspace()
        }
    }

    /// Runs the products from now on in workspace `slot` (0 ..< ``workspaceCount``), made now if
    /// it is the first time: products that may run at the same time must not share one.
    public func useWorkspace(_ slot: Int) throws {
        guard try workspaces?.select(slot) == true else { return }
        try applyWorkspace()
    }

    /// Points the handle at its workspace (after creation and after every stream change).
    private func applyWorkspace() throws {
        guard let setWorkspaceFunction, let workspace else { return }
        let status = setWorkspaceFunction(handle, workspace.address, workspace.byteCount)
        guard status == 0 else { throw CUDAError("cublasSetWorkspace failed (cuBLAS status \(status))") }
    }

    deinit { _ = destroy(handle) }

    /// Issues the products on `stream` from now on (nil: the default stream), as a capture into
    /// a CUDA graph needs.
    public func setStream(_ stream: UnsafeMutableRawPointer?) throws {
        guard let setStreamFunction else { throw CUDAError("\(path) lacks cublasSetStream_v2") }
        let status = setStreamFunction(handle, stream)
        guard status == 0 else { throw CUDAError("cublasSetStream failed (cuBLAS status \(status))") }
        self.stream = stream
        try applyWorkspace()  // cublasSetStream resets the workspace to cuBLAS's pool
    }

    /// Whether ``lt`` can run C = op(A) op(B) with `epilogue` in one kernel.
    public func fuses(
        _ epilogue: ProductEpilogue, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64,
        ldc: Int, precision: MatrixPrecision
    ) -> Bool {
        lt?.supports(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, epilogue: epilogue,
            precision: precision, workspace: workspace?.byteCount ?? 0) ?? false
    }

    /// C = op(A) op(B) with `epilogue`, through ``lt`` on this handle's stream and in its workspace
    /// (ask ``fuses(_:transposeA:transposeB:m:n:k:a:lda:b:ldb:c:ldc:precision:)`` first).
    public func product(
        _ epilogue: ProductEpilogue, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64,
        ldc: Int, precision: MatrixPrecision
    ) throws {
        guard let lt else { throw CUDAError("a product with an epilogue needs cuBLASLt") }
        try lt.product(
            transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, epilogue: epilogue,
            precision: precision, workspace: (workspace?.address ?? 0, workspace?.byteCount ?? 0), stream: stream)
    }

    /// C[m×n] = α · op(A) · op(B) + β · C on device memory, row-major as `BLAS.sgemm`: `a`, `b`,
    /// `c` are device addresses, `lda`, `ldb`, `ldc` row strides in elements.
    /// With `precision` bf16, the operands rounded to bf16 (or TF32) and the sums in FP32.
    /// With `batches` > 1, that many products at once, the i-th on A + i·`strideA`, B + i·`strideB`
    /// and C + i·`strideC` (elements): cuBLAS's strided-batched product.
    public func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UInt64, lda: Int, b: UInt64, ldb: Int,
        beta: Float, c: UInt64, ldc: Int, precision: MatrixPrecision = .fp32, batches: Int = 1, strideA: Int = 0, strideB: Int = 0, strideC: Int = 0
    ) throws {
        var (alpha, beta) = (alpha, beta)
        if batches > 1 {
            // Column-major, as below: B's operand first, so B's stride is the first one.
            let (ta, tb, count) = (Int32(transposeB ? 1 : 0), Int32(transposeA ? 1 : 0), Int32(batches))
            let status: Int32
            if precision == .bf16 {
                guard let gemmStridedBatchedEx else { throw CUDAError("\(path) lacks cublasGemmStridedBatchedEx") }
                status = gemmStridedBatchedEx(
                    handle, ta, tb, Int32(n), Int32(m), Int32(k), &alpha, b, 0, Int32(ldb), Int64(strideB), a, 0, Int32(lda), Int64(strideA), &beta, c, 0,
                    Int32(ldc), Int64(strideC), count, 75, -1)
            } else {
                guard let sgemmStridedBatched else { throw CUDAError("\(path) lacks cublasSgemmStridedBatched") }
                status = sgemmStridedBatched(
                    handle, ta, tb, Int32(n), Int32(m), Int32(k), &alpha, b, Int32(ldb), Int64(strideB), a, Int32(lda), Int64(strideA), &beta, c, Int32(ldc),
                    Int64(strideC), count)
            }
            guard status == 0 else { throw CUDAError("cuBLAS's strided-batched product failed for \(batches) × \(m)×\(k) · \(k)×\(n) (cuBLAS status \(status))") }
            return
        }
        if precision == .bf16 {
            guard let gemmEx else { throw CUDAError("\(path) lacks cublasGemmEx: bf16 products need cuBLAS 11 or later") }
            // CUDA_R_32F = 0 for A, B and C; CUBLAS_COMPUTE_32F_FAST_16BF = 75; CUBLAS_GEMM_DEFAULT = −1.
            let status = gemmEx(
                handle, transposeB ? 1 : 0, transposeA ? 1 : 0, Int32(n), Int32(m), Int32(k), &alpha, b, 0, Int32(ldb), a, 0, Int32(lda), &beta, c,
                0, Int32(ldc), 75, -1)
            guard status == 0 else { throw CUDAError("cublasGemmEx (bf16) failed for \(m)×\(k) · \(k)×\(n) (cuBLAS status \(status))") }
            return
        }
        let status = gemm(
            handle, transposeB ? 1 : 0, transposeA ? 1 : 0, Int32(n), Int32(m), Int32(k), &alpha, b, Int32(ldb), a, Int32(lda), &beta, c, Int32(ldc))
        guard status == 0 else { throw CUDAError("cublasSgemm failed for \(m)×\(k) · \(k)×\(n) (cuBLAS status \(status))") }
    }
}
