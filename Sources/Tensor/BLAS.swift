import CBLAS
import Foundation

/// OpenBLAS: the kernel it runs, its threads, and single-precision GEMM.
public enum BLAS {
    /// The kernel family OpenBLAS chose when it loaded (e.g. "Haswell", "SkylakeX", "Zen").
    /// It is read from `OPENBLAS_CORETYPE` if set, otherwise detected from the CPU.
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// Kernels that use AVX-512.
    static let avx512Kernels: Set<String> = ["skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"]

    static var cpuHasAVX512: Bool {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        return info.split(separator: "\n").contains { $0.hasPrefix("flags") && $0.contains(" avx512f") }
    }

    /// A warning when `OPENBLAS_CORETYPE` pins a kernel narrower than the CPU supports (some
    /// machines set it to Haswell, AVX2, which halves GEMM speed on an AVX-512 CPU); nil otherwise.
    public static var slowKernelWarning: String? {
        guard let pinned = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !pinned.isEmpty else { return nil }
        let core = coreName
        guard cpuHasAVX512, !avx512Kernels.contains(core.lowercased()) else { return nil }
        return "warning: OPENBLAS_CORETYPE=\(pinned) pins OpenBLAS to its \(core) kernel, but this CPU supports AVX-512; unset OPENBLAS_CORETYPE for up to 2× faster matrix products"
    }

    /// Threads OpenBLAS uses for one GEMM.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// C[m×n] = α · op(A) · op(B) + β · C, row-major, where op(X) is X or Xᵀ.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored.
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}

/// `c = α · op(a) · op(b) + β · c` for tensors viewed as matrices `[rows, rowSize]`.
///
/// With `transposeA`, `a` of shape `[k, m]` is used as `aᵀ`; likewise for `b`.
public func matmul(
    _ a: Tensor, _ b: Tensor, into c: Tensor,
    transposeA: Bool = false, transposeB: Bool = false, alpha: Float = 1, beta: Float = 0
) {
    let (aRows, aCols) = (a.rows, a.rowSize)
    let (bRows, bCols) = (b.rows, b.rowSize)
    let m = transposeA ? aCols : aRows
    let k = transposeA ? aRows : aCols
    let kb = transposeB ? bCols : bRows
    let n = transposeB ? bRows : bCols
    precondition(k == kb, "matmul inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
    precondition(c.rows == m && c.rowSize == n, "matmul output \(c.shape) is not [\(m), \(n)]")
    BLAS.sgemm(
        transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
        alpha: alpha, a: a.data, lda: aCols, b: b.data, ldb: bCols, beta: beta, c: c.data, ldc: n)
}
