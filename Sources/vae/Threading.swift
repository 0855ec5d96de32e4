import ArgumentParser
import Foundation
import Tensor

/// How the CPU cores are used: `--threads N --parallel batch|blas`.
struct ThreadingOptions: ParsableArguments {
    @Option(help: "CPU cores to use (default: all).")
    var threads: Int?

    @Option(help: """
        How to use several cores: batch (each core runs forward and backward on a slice of the \
        batch with single-threaded GEMM; gradients are summed) or blas (one pass, OpenBLAS \
        splits each matrix product across threads).
        """)
    var parallel: ParallelMode = .batch

    enum ParallelMode: String, ExpressibleByArgument, CaseIterable {
        case batch, blas
    }

    func validate() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    var threadCount: Int { threads ?? Parallel.coreCount }

    /// Sets OpenBLAS's thread count and returns the number of batch workers.
    func configure() -> Int {
        switch parallel {
        case .batch:
            BLAS.threads = 1
            return threadCount
        case .blas:
            BLAS.threads = threadCount
            return 1
        }
    }

    func summary(workers: Int) -> String {
        let mode = parallel == .batch
            ? "\(workers) batch worker\(workers == 1 ? "" : "s") × 1 OpenBLAS thread"
            : "1 worker × \(BLAS.threads) OpenBLAS thread\(BLAS.threads == 1 ? "" : "s")"
        return "OpenBLAS kernel \(BLAS.coreName), \(mode)"
    }
}

/// Warns when `OPENBLAS_CORETYPE` pins a kernel narrower than the CPU supports (on these
/// machines it is set to Haswell, AVX2, which halves GEMM speed on an AVX-512 CPU).
enum KernelCheck {
    /// Kernels that use AVX-512.
    static let avx512Kernels: Set<String> = ["skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"]

    static var cpuHasAVX512: Bool {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        return info.split(separator: "\n").contains { $0.hasPrefix("flags") && $0.contains(" avx512f") }
    }

    /// The warning to print, if any.
    static var warning: String? {
        guard let pinned = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"], !pinned.isEmpty else { return nil }
        let core = BLAS.coreName
        guard cpuHasAVX512, !avx512Kernels.contains(core.lowercased()) else { return nil }
        return "warning: OPENBLAS_CORETYPE=\(pinned) pins OpenBLAS to its \(core) kernel, but this CPU supports AVX-512; unset OPENBLAS_CORETYPE for up to 2× faster matrix products"
    }

    static func warnIfSlow() {
        guard let warning else { return }
        fflush(stdout)
        FileHandle.standardError.write(Data((warning + "\n").utf8))
    }
}
