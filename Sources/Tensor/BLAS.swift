import CBLAS
import CDNNL
import CKernels
import CMatmul
import Foundation

/// The number format of the operands of matrix products.
///
/// `.bf16` rounds both operands of every product to bfloat16 (8 significant bits: a relative
/// error of at most 2⁻⁸ per operand, the unit roundoff of an 8-bit significand) and accumulates the products in FP32; everything else —
/// weights, Adam's state, activations, likelihoods, KL, log-sum-exp — stays FP32. It needs a CPU
/// with AVX512_BF16 (``BF16/isSupported``).
public enum MatrixPrecision: String, Codable, CaseIterable, Sendable {
    case fp32, bf16
}

/// The CPU's bf16 dot products (`vdpbf16ps`).
public enum BF16 {
    /// Whether this CPU runs AVX512_BF16 (with AVX512BW and VL).
    public static let isSupported: Bool = vae_cpu_has_avx512bf16() != 0
    /// Whether this CPU has AMX tiles with bf16 (Sapphire Rapids and later Xeons): there bf16
    /// products go to oneDNN's matmul (its AMX kernels), elsewhere to the project's
    /// AVX512_BF16 kernel.
    public static let hasAMX: Bool = vae_cpu_has_amx_bf16() != 0

    /// Which kernel runs the bf16 products here, in words (for `vae bench` and the run's header).
    public static var kernelSummary: String {
        guard isSupported || hasAMX else { return "none (no AVX512_BF16: FP32)" }
        guard hasAMX else { return "the project's AVX512_BF16 kernel (vdpbf16ps)" }
        let implementation = String(cString: vae_matmul_bf16_implementation())
        return "oneDNN matmul in its bf16 math mode (AMX)" + (implementation.isEmpty ? "" : ": \(implementation)")
    }

    /// The precision to run when `requested` is asked for: bf16 falls back to FP32 on a CPU
    /// without AVX512_BF16, with the one line to tell the user. bf16 is kept on a CPU that has
    /// it but runs its dot products no faster than its FP32 FMAs (Intel's Xeons without AMX
    /// issue one `vdpbf16ps` every two cycles: half the FP32 rate), with a line saying so.
    public static func resolve(_ requested: MatrixPrecision) -> (precision: MatrixPrecision, message: String?) {
        guard requested == .bf16 else { return (requested, nil) }
        if hasAMX { return (.bf16, nil) }
        guard isSupported else { return (.fp32, "this CPU has no AVX512_BF16: running in FP32") }
        let ratio = rateOverFP32
        if ratio < 1 {
            return (.bf16, "this CPU's bf16 dot products run at \(String(format: "%.2f", ratio))× the rate of its FP32 FMAs (probed): bf16 is slower than fp32 here")
        }
        return (.bf16, nil)
    }

    /// The bf16 dot-product rate over the FP32 FMA rate of one core, probed once (about 20 ms);
    /// 0 without AVX512_BF16.
    public static let rateOverFP32: Double = {
        guard isSupported else { return 0 }
        func best(_ probe: (Int, UnsafeMutablePointer<Float>?) -> Double) -> Double {
            var sink: Float = 0, rate = 0.0
            for _ in 0..<3 {
                let start = monotonicSeconds()
                let flops = probe(300_000, &sink)
                rate = max(rate, flops / max(monotonicSeconds() - start, 1e-9))
            }
            return rate
        }
        return best(vae_bf16_dot_flops) / best(vae_fma_flops)
    }()
}

/// The library that computes FP32 matrix products.
///
/// oneDNN (Intel's deep-learning library, Debian's `libdnnl-dev`) by default: its JIT-compiled
/// sgemm ran the default model's eleven products per step 16–30% faster than OpenBLAS 0.3.21 at
/// 128 rows per step and 20–40% faster at 64 (one core, Intel Xeon with AVX-512), where OpenBLAS
/// pays a packing pass over the weight matrix on every call. `VAE_GEMM=openblas` selects
/// OpenBLAS instead (to compare, or on a CPU where it is faster).
public enum GEMMLibrary: String, Sendable, CaseIterable {
    case oneDNN = "onednn"
    case openBLAS = "openblas"

    /// The environment variable that chooses the library.
    public static let variable = "VAE_GEMM"

    /// The library `VAE_GEMM` names (oneDNN when it is unset or empty); nil for any other value.
    public static func from(environment: [String: String]) -> GEMMLibrary? {
        guard let value = environment[variable], !value.isEmpty else { return .oneDNN }
        return GEMMLibrary(rawValue: value.lowercased())
    }

    /// The library of this process (oneDNN when `VAE_GEMM` names none: the CLI refuses that
    /// value with a message first, ``environmentError``).
    public static let selected: GEMMLibrary = from(environment: ProcessInfo.processInfo.environment) ?? .oneDNN

    /// The one line to print when `VAE_GEMM` names no library, nil otherwise.
    public static var environmentError: String? {
        let environment = ProcessInfo.processInfo.environment
        guard from(environment: environment) == nil else { return nil }
        return "\(variable)=\(environment[variable] ?? "") names no matrix library: use onednn (the default) or openblas"
    }

    /// The library, its version and the instruction set it runs, e.g. "oneDNN 2.6.3 (avx512_core)".
    public static var summary: String {
        switch selected {
        case .openBLAS:
            return "OpenBLAS kernel \(BLAS.coreName)"
        case .oneDNN:
            let v = dnnl_version().pointee
            // oneDNN's own name of the instruction set it dispatches to, e.g. "cpu_isa_avx2".
            let isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()).map { String(cString: $0) } ?? "unknown"
            return "oneDNN \(v.major).\(v.minor).\(v.patch) (\(isa.replacingOccurrences(of: "cpu_isa_", with: "")))"
        }
    }
}

/// OpenBLAS: the kernel it runs, its threads, and single-precision GEMM.
public enum BLAS {
    /// The kernel family OpenBLAS chose when it loaded (e.g. "Haswell", "SkylakeX", "Zen").
    /// It is read from `OPENBLAS_CORETYPE` if set, otherwise detected from the CPU.
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// The x86 vector instruction sets, narrowest first, as far as OpenBLAS's kernels use them.
    public enum VectorISA: Int, Comparable, Sendable {
        case sse, avx, avx2, avx512
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

        /// The widest set a CPU with these `/proc/cpuinfo` flags runs (OpenBLAS's AVX-512
        /// kernels need F, DQ, BW and VL; its AVX2 ones FMA too).
        public init(cpuFlags flags: Set<Substring>) {
            if ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy(flags.contains) { self = .avx512 }
            else if flags.contains("avx2") && flags.contains("fma") { self = .avx2 }
            else if flags.contains("avx") { self = .avx }
            else { self = .sse }
        }

        /// What an OpenBLAS x86 kernel family uses; nil for names not listed (other architectures).
        public init?(openBLASKernel name: String) {
            switch name.lowercased() {
            case "skylakex", "cooperlake", "sapphirerapids": self = .avx512
            case "haswell", "zen", "zen4", "zen5": self = .avx2
            case "sandybridge": self = .avx
            case "katmai", "coppermine", "northwood", "prescott", "banias", "core2", "penryn", "dunnington",
                 "nehalem", "atom", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "bulldozer",
                 "piledriver", "steamroller", "excavator", "nano":
                self = .sse
            default: return nil
            }
        }

        /// The OpenBLAS kernel family to ask for (`OPENBLAS_CORETYPE`) to use this set.
        public var openBLASKernel: String {
            switch self {
            case .avx512: "SkylakeX"
            case .avx2: "Haswell"
            case .avx: "Sandybridge"
            case .sse: "Prescott"
            }
        }
    }

    /// The widest vector set this CPU runs, from `/proc/cpuinfo` (SSE when it cannot be read).
    public static var cpuISA: VectorISA {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return .sse }
        return VectorISA(cpuFlags: Set(line.split(separator: " ")))
    }

    /// The `OPENBLAS_CORETYPE` that makes OpenBLAS use the CPU's widest vectors, when it chose a
    /// narrower kernel on its own — an OpenBLAS older than the CPU does not know its model and
    /// falls back to a generic one (Debian's 0.3.21 takes a 2023 Intel Xeon, family 6 model 207,
    /// for a Prescott: SSE3, a sixth of the GEMM speed). Nil when the choice is already the
    /// widest, the kernel is not an x86 one, or the user has set `OPENBLAS_CORETYPE` (theirs wins).
    ///
    /// The variable is read once, when OpenBLAS loads, so a process acts on this by starting
    /// itself again with it set (the `vae` tool does, before anything else).
    public static func betterCoreType(kernel: String, cpu: VectorISA, environment: [String: String]) -> String? {
        if let pinned = environment["OPENBLAS_CORETYPE"], !pinned.isEmpty { return nil }
        guard let chosen = VectorISA(openBLASKernel: kernel), chosen < cpu else { return nil }
        return cpu.openBLASKernel
    }

    /// A warning when OpenBLAS computes the products (``GEMMLibrary/selected``) and
    /// `OPENBLAS_CORETYPE` pins a kernel narrower than the CPU supports (some machines set it to
    /// Haswell, AVX2, which halves GEMM speed on an AVX-512 CPU); nil otherwise.
    public static var slowKernelWarning: String? {
        guard GEMMLibrary.selected == .openBLAS, let pinned = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !pinned.isEmpty else { return nil }
        let core = coreName, cpu = cpuISA
        guard let chosen = VectorISA(openBLASKernel: core), chosen < cpu else { return nil }
        return "warning: OPENBLAS_CORETYPE=\(pinned) pins OpenBLAS to its \(core) kernel, but this CPU supports \(cpu == .avx512 ? "AVX-512" : "AVX2"); set OPENBLAS_CORETYPE=\(cpu.openBLASKernel) (or unset it) for up to 2× faster matrix products"
    }

    /// Threads one FP32 GEMM uses (OpenBLAS's setting, and oneDNN's on every thread that calls it).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set {
            openblas_set_num_threads(Int32(max(1, newValue)))
            oneDNNThreads = Int32(max(1, newValue))
        }
    }
    /// The thread count every caller of oneDNN's sgemm sets for itself (see ``threads``).
    @usableFromInline nonisolated(unsafe) static var oneDNNThreads: Int32 = 1

    /// C[m×n] = α · op(A) · op(B) + β · C, row-major, where op(X) is X or Xᵀ.
    /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored. With β = 0, C is only
    /// written (NaNs in it do not propagate). FP32 goes to `library` (``GEMMLibrary/selected``:
    /// oneDNN unless `VAE_GEMM=openblas`); `.bf16` to the project's AVX512_BF16 kernel
    /// (`vae_gemm_bf16`: bf16 operands, FP32 sums).
    @inlinable
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, precision: MatrixPrecision = .fp32,
        library: GEMMLibrary = .selected
    ) {
        if m == 0 || n == 0 { return }
        guard ProductTally.isOn else {
            return product(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, library)
        }
        let start = monotonicSeconds()
        product(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, precision, library)
        ProductTally.record(m: m, n: n, k: k, since: start)
    }

    /// The product itself, in the library `sgemm` chose.
    @inlinable
    static func product(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
        _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
        _ precision: MatrixPrecision, _ library: GEMMLibrary
    ) {
        if precision == .bf16 {
            // AMX: oneDNN's matmul (α = 1, β ∈ {0, 1}: what the networks ask for); otherwise, or
            // if oneDNN declines, the project's kernel.
            if BF16.hasAMX && alpha == 1 && (beta == 0 || beta == 1)
                && oneDNNBF16Product(transposeA, transposeB, m, n, k, a, lda, b, ldb, accumulate: beta == 1, c, ldc) {
                return
            }
            precondition(BF16.isSupported, "bf16 products need a CPU with AVX512_BF16 (resolve the precision first)")
            vae_gemm_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if library == .oneDNN {
            // oneDNN threads with OpenMP, whose thread count is per calling thread: the trainer's
            // workers each set theirs to the one thread they run on, once.
            if omp_get_max_threads() != oneDNNThreads { omp_set_num_threads(oneDNNThreads) }
            let (transposed, plain) = (CChar(UInt8(ascii: "T")), CChar(UInt8(ascii: "N")))
            let status = dnnl_sgemm(
                transposeA ? transposed : plain, transposeB ? transposed : plain, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
            precondition(status == dnnl_success, "oneDNN sgemm failed (status \(status.rawValue)) for \(m)×\(k) · \(k)×\(n)")
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}

extension BLAS {
    /// C = op(A) · op(B) (+ C with `accumulate`) through oneDNN's matmul in its bf16 math mode
    /// (`vae_matmul_bf16`: bf16 products on AMX or AVX512_BF16, FP32 elsewhere), with oneDNN's
    /// threads set as for its sgemm; false when oneDNN declines the shape.
    public static func oneDNNBF16Product(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
        _ b: UnsafePointer<Float>, _ ldb: Int, accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) -> Bool {
        if omp_get_max_threads() != oneDNNThreads { omp_set_num_threads(oneDNNThreads) }
        return vae_matmul_bf16(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, a, lda, b, ldb, accumulate ? 1 : 0, c, ldc) == 0
    }
}

/// `c = α · op(a) · op(b) + β · c` for tensors viewed as matrices `[rows, rowSize]`.
///
/// With `transposeA`, `a` of shape `[k, m]` is used as `aᵀ`; likewise for `b`.
public func matmul(
    _ a: Tensor, _ b: Tensor, into c: Tensor,
    transposeA: Bool = false, transposeB: Bool = false, alpha: Float = 1, beta: Float = 0,
    precision: MatrixPrecision = .fp32
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
        alpha: alpha, a: a.data, lda: aCols, b: b.data, ldb: bCols, beta: beta, c: c.data, ldc: n, precision: precision)
}
