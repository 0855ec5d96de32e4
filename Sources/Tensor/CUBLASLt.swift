#if canImport(Glibc)
import Glibc
#endif

/// cuBLASLt (`libcublasLt.so`), loaded with `dlopen`, for the products whose epilogue does a
/// layer's bias work (``ProductEpilogue``): y = max(h Wᵀ + b, 0) in one kernel instead of a
/// product and a bias pass, and ∂b = Σ_r g[r] beside ∂W = gᵀ h instead of a bias-gradient pass.
///
/// Row-major as ``CUBLAS``: the product asked for is Cᵀ = op(B)ᵀ op(A)ᵀ in column-major terms,
/// whose rows are C's columns, so the epilogue's bias (one value per row of D, broadcast along
/// its columns) is one value per output column of the row-major C — a layer's bias. Each shape
/// (with its operands' alignments, the epilogue and the precision) gets a plan once: a matmul
/// descriptor, four matrix layouts and the algorithm cuBLASLt's heuristic puts first; a shape the
/// heuristic offers nothing for is not fused (the caller adds the bias itself). The products run
/// in the workspace the caller passes (`CUBLAS`'s), so a capture into a CUDA graph allocates
/// nothing.
/// What cuBLASLt's epilogue does in a product C = op(A) op(B) (row-major, as `CUBLAS.sgemm`).
///
/// A ReLU layer followed by a linear one can hand its ReLU's derivative from its forward product
/// to the next layer's input-gradient product: the forward's epilogue keeps one bit per element of
/// y = max(h Wᵀ + b, 0), set where y > 0 (cuBLASLt's bit mask, `maskStride` bits per row of C, a
/// multiple of 128), and the backward product ∂h = g W multiplies by those bits and sums the
/// columns as it stores: ∂(pre-activation) and the layer's bias gradient without a pass of their own.
public enum ProductEpilogue: Hashable, Sendable {
    /// C + bias (one value per column of C: a layer's bias at `address`), then ReLU with `relu`
    /// (cuBLASLt's BIAS / RELU_BIAS).
    case bias(address: UInt64, relu: Bool)
    /// Also the sums over k of op(A)'s rows into `address` (m values): a layer's bias gradient
    /// Σ_r g[r, j] beside its weight gradient gᵀ h (cuBLASLt's BGRADB: op(A) is the
    /// column-major call's B).
    case rowSumsOfA(address: UInt64)
    /// C + bias, then ReLU, and C's bit mask (C > 0) into `mask` (cuBLASLt's RELU_AUX_BIAS).
    case biasReLUMask(address: UInt64, mask: UInt64, maskStride: Int)
    /// C ⊙ the bit mask at `mask` (written by a ``biasReLUMask(address:mask:maskStride:)`` product of
    /// C's shape), and the sums of the result's rows into `address` (n values): ∂L/∂(pre-activation)
    /// of a ReLU layer and its bias gradient Σ_r, from ∂L/∂y = g W (cuBLASLt's DRELU_BGRAD).
    case reluGradient(address: UInt64, mask: UInt64, maskStride: Int)

    /// The device address the epilogue reads or writes (cuBLASLt's BIAS_POINTER).
    public var address: UInt64 {
        switch self {
        case .bias(let address, _), .rowSumsOfA(let address), .biasReLUMask(let address, _, _), .reluGradient(let address, _, _): address
        }
    }

    /// The bit mask's address and bits per row of C (cuBLASLt's EPILOGUE_AUX_POINTER and _LD), if any.
    public var mask: (address: UInt64, stride: Int)? {
        switch self {
        case .bias, .rowSumsOfA: nil
        case .biasReLUMask(_, let mask, let stride), .reluGradient(_, let mask, let stride): (mask, stride)
        }
    }

    /// Bits per row of a bit mask for rows of `columns` values: cuBLASLt's leading dimension, a
    /// multiple of 128.
    public static func maskStride(columns: Int) -> Int { (columns + 127) / 128 * 128 }

    /// cublasLtEpilogue_t: BIAS = 4, RELU_BIAS = 6, RELU_AUX_BIAS = 134, DRELU_BGRAD = 152, BGRADB = 512.
    var code: UInt32 {
        switch self {
        case .bias(_, let relu): relu ? 6 : 4
        case .rowSumsOfA: 512
        case .biasReLUMask: 134
        case .reluGradient: 152
        }
    }

    /// In words, for messages.
    var name: String {
        switch self {
        case .bias(_, let relu): relu ? "bias + ReLU" : "bias"
        case .rowSumsOfA: "bias gradient"
        case .biasReLUMask: "bias + ReLU with its mask"
        case .reluGradient: "ReLU gradient and bias gradient"
        }
    }
}

public final class CUBLASLt {
    public let path: String
    private let handle: OpaquePointer
    private typealias Create = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Destroy = @convention(c) (OpaquePointer?) -> Int32
    private typealias DescCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, Int32) -> Int32
    private typealias SetAttribute = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer, Int) -> Int32
    private typealias LayoutCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32, UInt64, UInt64, Int64) -> Int32
    private typealias PreferenceCreate = @convention(c) (UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Heuristic = @convention(c) (
        OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, OpaquePointer?, Int32,
        UnsafeMutableRawPointer, UnsafeMutablePointer<Int32>
    ) -> Int32
    private typealias Matmul = @convention(c) (
        OpaquePointer?, OpaquePointer?, UnsafeRawPointer, UInt64, OpaquePointer?, UInt64, OpaquePointer?, UnsafeRawPointer, UInt64, OpaquePointer?,
        UInt64, OpaquePointer?, UnsafeRawPointer, UInt64, Int, UnsafeMutableRawPointer?
    ) -> Int32
    private let destroy: Destroy
    private let descCreate: DescCreate
    private let descDestroy: Destroy
    private let descSetAttribute: SetAttribute
    private let layoutCreate: LayoutCreate
    private let layoutDestroy: Destroy
    private let preferenceCreate: PreferenceCreate
    private let preferenceDestroy: Destroy
    private let preferenceSetAttribute: SetAttribute
    private let heuristic: Heuristic
    private let matmul: Matmul

    // cublasLt.h: cublasLtMatmulDescAttributes_t, cublasLtEpilogue_t, cublasLtMatmulPreferenceAttributes_t.
    private static let (descTransA, descTransB, descEpilogue, descBiasPointer): (Int32, Int32, Int32, Int32) = (3, 4, 7, 8)
    private static let (descMaskPointer, descMaskStride): (Int32, Int32) = (11, 12)  // EPILOGUE_AUX_POINTER, EPILOGUE_AUX_LD
    private static let preferenceMaxWorkspace: Int32 = 1
    private static let preferenceAlignment: [Int32] = [5, 6, 7, 8]  // MIN_ALIGNMENT_A/B/C/D_BYTES
    /// Bytes kept for one `cublasLtMatmulHeuristicResult_t` (96 in CUDA 12: the 64-byte algorithm
    /// first, then its workspace size); room to spare.
    private static let resultBytes = 1024

    /// One shape's plan: the descriptor (its bias pointer set before each product), the layouts
    /// and the chosen algorithm (the first 64 bytes of the heuristic's result).
    private final class Plan {
        let desc: OpaquePointer
        let layouts: [OpaquePointer]  // A, B, C (= D)
        let result: UnsafeMutableRawPointer
        let workspace: Int
        let release: (Plan) -> Void
        init(desc: OpaquePointer, layouts: [OpaquePointer], result: UnsafeMutableRawPointer, workspace: Int, release: @escaping (Plan) -> Void) {
            (self.desc, self.layouts, self.result, self.workspace, self.release) = (desc, layouts, result, workspace, release)
        }
        deinit { release(self) }
    }
    private struct Key: Hashable {
        let transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        /// The column-major call's A (our B), B (our A) and C = D alignments, in bytes (no array:
        /// a key is made for every product of every recorded step).
        let alignA: Int, alignB: Int, alignC: Int
        let epilogue: UInt32
        /// The bit mask's bits per row (0: none).
        let maskStride: Int
        let bf16: Bool
    }
    /// nil: the heuristic had nothing for that key.
    private var plans: [Key: Plan?] = [:]

    /// Loads cuBLASLt from `path` and creates a handle.
    public init(path: String) throws {
        let library = try DynamicLibrary(path, expected: "cuBLASLt 12 or 13")
        self.path = path
        let create = try library.function("cublasLtCreate", Create.self)
        destroy = try library.function("cublasLtDestroy", Destroy.self)
        descCreate = try library.function("cublasLtMatmulDescCreate", DescCreate.self)
        descDestroy = try library.function("cublasLtMatmulDescDestroy", Destroy.self)
        descSetAttribute = try library.function("cublasLtMatmulDescSetAttribute", SetAttribute.self)
        layoutCreate = try library.function("cublasLtMatrixLayoutCreate", LayoutCreate.self)
        layoutDestroy = try library.function("cublasLtMatrixLayoutDestroy", Destroy.self)
        preferenceCreate = try library.function("cublasLtMatmulPreferenceCreate", PreferenceCreate.self)
        preferenceDestroy = try library.function("cublasLtMatmulPreferenceDestroy", Destroy.self)
        preferenceSetAttribute = try library.function("cublasLtMatmulPreferenceSetAttribute", SetAttribute.self)
        heuristic = try library.function("cublasLtMatmulAlgoGetHeuristic", Heuristic.self)
        matmul = try library.function("cublasLtMatmul", Matmul.self)
        var handle: OpaquePointer?
        let status = create(&handle)
        guard status == 0, let handle else { throw CUDAError("cublasLtCreate failed (cuBLAS status \(status))") }
        self.handle = handle
    }

    deinit {
        plans.removeAll()
        _ = destroy(handle)
    }

    /// The largest power of two (at most 256) that divides a device address: its alignment.
    static func alignment(_ address: UInt64) -> Int {
        address == 0 ? 256 : min(256, 1 << address.trailingZeroBitCount)
    }

    /// Whether C = op(A) op(B) with `epilogue`, of this shape and these operands' alignments, has a
    /// plan (made now if it is the first time); false sends the caller to a plain product and a
    /// kernel of its own. `workspace` bytes are what the product may use.
    public func supports(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64, ldc: Int,
        epilogue: ProductEpilogue, precision: MatrixPrecision, workspace: Int
    ) -> Bool {
        guard epilogue.address % 16 == 0, (epilogue.mask?.address ?? 0) % 256 == 0 else { return false }
        return plan(key(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, epilogue, precision), workspace: workspace) != nil
    }

    /// C = op(A) op(B) with `epilogue` (row-major, as `CUBLAS.sgemm`, α = 1, β = 0), on `stream` in
    /// `workspace` (address, bytes). Throws if the shape has no plan (ask
    /// ``supports(transposeA:transposeB:m:n:k:a:lda:b:ldb:c:ldc:epilogue:precision:workspace:)`` first) or cuBLASLt fails.
    public func product(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UInt64, lda: Int, b: UInt64, ldb: Int, c: UInt64, ldc: Int,
        epilogue: ProductEpilogue, precision: MatrixPrecision, workspace: (address: UInt64, bytes: Int), stream: UnsafeMutableRawPointer?
    ) throws {
        guard let plan = plan(key(transposeA, transposeB, m, n, k, a, lda, b, ldb, c, ldc, epilogue, precision), workspace: workspace.bytes) else {
            throw CUDAError("cuBLASLt has no algorithm for the product \(m)×\(k) · \(k)×\(n) with its \(epilogue.name)")
        }
        var pointer = epilogue.address
        var status = descSetAttribute(plan.desc, Self.descBiasPointer, &pointer, 8)
        guard status == 0 else { throw CUDAError("cublasLtMatmulDescSetAttribute (bias pointer) failed (cuBLAS status \(status))") }
        if var mask = epilogue.mask?.address {
            status = descSetAttribute(plan.desc, Self.descMaskPointer, &mask, 8)
            guard status == 0 else { throw CUDAError("cublasLtMatmulDescSetAttribute (mask pointer) failed (cuBLAS status \(status))") }
        }
        var (alpha, beta): (Float, Float) = (1, 0)
        // Column-major: B's operand first (A = b, B = a), C and D the same matrix.
        status = matmul(
            handle, plan.desc, &alpha, b, plan.layouts[0], a, plan.layouts[1], &beta, c, plan.layouts[2], c, plan.layouts[2], plan.result,
            workspace.address, workspace.bytes, stream)
        guard status == 0 else {
            let without = epilogue.mask != nil ? "VAE_CUDA_LT=bias does without the ReLU masks, VAE_CUDA_LT=0 without cuBLASLt" : "VAE_CUDA_LT=0 does without cuBLASLt"
            throw CUDAError("cublasLtMatmul (with its \(epilogue.name)) failed for \(m)×\(k) · \(k)×\(n) (cuBLAS status \(status)); \(without)")
        }
    }

    private func key(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UInt64, _ lda: Int, _ b: UInt64, _ ldb: Int, _ c: UInt64, _ ldc: Int,
        _ epilogue: ProductEpilogue, _ precision: MatrixPrecision
    ) -> Key {
        Key(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc,
            alignA: Self.alignment(b), alignB: Self.alignment(a), alignC: Self.alignment(c), epilogue: epilogue.code,
            maskStride: epilogue.mask?.stride ?? 0, bf16: precision == .bf16)
    }

    /// The key's plan, made on first use (nil when cuBLASLt offers no algorithm).
    private func plan(_ key: Key, workspace: Int) -> Plan? {
        if let known = plans[key] { return known }
        let made = makePlan(key, workspace: workspace)
        plans[key] = made
        return made
    }

    /// A plan for `key`: the descriptor (with the mask's leading dimension, and a 256-byte-aligned
    /// placeholder for its pointer, which the heuristic reads for its alignment), the layouts and
    /// the heuristic's first algorithm; nil when any of it is refused.
    private func makePlan(_ key: Key, workspace: Int) -> Plan? {
        // CUBLAS_COMPUTE_32F = 68 (or CUBLAS_COMPUTE_32F_FAST_16BF = 75), scale type CUDA_R_32F = 0.
        var desc: OpaquePointer?
        guard descCreate(&desc, key.bf16 ? 75 : 68, 0) == 0, let desc else { return nil }
        var layouts: [OpaquePointer] = []
        var preference: OpaquePointer?
        let result = UnsafeMutableRawPointer.allocate(byteCount: Self.resultBytes, alignment: 16)
        result.initializeMemory(as: UInt8.self, repeating: 0, count: Self.resultBytes)
        func release(_ plan: Plan?) {
            _ = descDestroy(desc)
            for layout in layouts { _ = layoutDestroy(layout) }
            result.deallocate()
        }
        defer { if let preference { _ = preferenceDestroy(preference) } }
        // Column-major: transa = op of b (the first operand), transb = op of a; M = n, N = m.
        var (transa, transb): (Int32, Int32) = (key.transposeB ? 1 : 0, key.transposeA ? 1 : 0)
        var epilogue = key.epilogue
        let shapes: [(rows: Int, cols: Int, ld: Int)] = [
            key.transposeB ? (key.k, key.n, key.ldb) : (key.n, key.k, key.ldb),
            key.transposeA ? (key.m, key.k, key.lda) : (key.k, key.m, key.lda),
            (key.n, key.m, key.ldc),
        ]
        for shape in shapes {
            var layout: OpaquePointer?
            guard layoutCreate(&layout, 0, UInt64(shape.rows), UInt64(shape.cols), Int64(shape.ld)) == 0, let layout else {
                release(nil)
                return nil
            }
            layouts.append(layout)
        }
        var workspaceBytes = UInt64(workspace)
        guard descSetAttribute(desc, Self.descTransA, &transa, 4) == 0, descSetAttribute(desc, Self.descTransB, &transb, 4) == 0,
              descSetAttribute(desc, Self.descEpilogue, &epilogue, 4) == 0, preferenceCreate(&preference) == 0, let preference,
              preferenceSetAttribute(preference, Self.preferenceMaxWorkspace, &workspaceBytes, 8) == 0
        else {
            release(nil)
            return nil
        }
        for (attribute, alignment) in zip(Self.preferenceAlignment, [key.alignA, key.alignB, key.alignC, key.alignC]) {
            var bytes = UInt32(alignment)
            guard preferenceSetAttribute(preference, attribute, &bytes, 4) == 0 else {
                release(nil)
                return nil
            }
        }
        if key.maskStride > 0 {
            var (stride, placeholder) = (Int64(key.maskStride), UInt64(256))
            guard descSetAttribute(desc, Self.descMaskStride, &stride, 8) == 0, descSetAttribute(desc, Self.descMaskPointer, &placeholder, 8) == 0 else {
                release(nil)
                return nil
            }
        }
        var found: Int32 = 0
        guard heuristic(handle, desc, layouts[0], layouts[1], layouts[2], layouts[2], preference, 1, result, &found) == 0, found >= 1 else {
            release(nil)
            return nil
        }
        // The result's workspace size follows the 64-byte algorithm.
        let needed = result.load(fromByteOffset: 64, as: Int.self)
        guard needed <= workspace else {
            release(nil)
            return nil
        }
        return Plan(desc: desc, layouts: layouts, result: result, workspace: needed) { _ in release(nil) }
    }
}
