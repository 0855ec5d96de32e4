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

/// Prints the library's warning when `OPENBLAS_CORETYPE` pins a kernel narrower than the CPU.
enum KernelCheck {
    static func warnIfSlow() {
        guard let warning = BLAS.slowKernelWarning else { return }
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
