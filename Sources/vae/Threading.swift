import ArgumentParser
import Foundation
import Tensor
import Training

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
        if let threads, !Limits.threads.contains(threads) { throw ValidationError("--threads must be between 1 and \(Limits.threads.upperBound)") }
    }

    var threadCount: Int { threads ?? Parallel.coreCount }

    /// The library's description of this choice (applied by whoever runs the model).
    var parallelism: Parallelism {
        parallel == .batch ? .batch(workers: threadCount) : .blas(threads: threadCount)
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

/// A problem found while running a command (as opposed to a malformed flag): printed as one
/// line without the usage hint.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func printWarning(_ message: String) {
    fflush(stdout)
    FileHandle.standardError.write(Data(("warning: " + message + "\n").utf8))
}
