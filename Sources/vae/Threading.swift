import ArgumentParser
import Foundation
import Tensor
import Training

/// How the CPU cores are used: `--threads N --parallel batch|blas`.
struct ThreadingOptions: ParsableArguments {
    @Option(help: "CPU cores to use (default: all; `train --resume`: the run's own, so that it continues bit for bit).")
    var threads: Int?

    @Option(name: .customLong("parallel"), help: """
        How to use several cores: batch (each core runs forward and backward on a slice of the \
        batch with single-threaded GEMM; gradients are summed) or blas (one pass, the matrix \
        library splits each product across threads). Default: batch.
        """)
    var parallelMode: ParallelMode?

    var parallel: ParallelMode { parallelMode ?? .batch }

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

    /// The split the flags ask for, or nil when they name none (a resume then keeps the run's).
    var requestedParallelism: Parallelism? {
        threads == nil && parallelMode == nil ? nil : parallelism
    }
}

extension MatrixPrecision: ExpressibleByArgument {}

/// `--precision fp32|bf16`: the operand format of the matrix products.
struct PrecisionOptions: ParsableArguments {
    @Option(help: """
        Matrix products in fp32 or bf16 (bf16 operands, FP32 sums; the weights, the likelihoods, \
        KL and every reported figure stay FP32). bf16 needs a CPU with AVX512_BF16; without it \
        the command runs FP32 and says so.
        """)
    var precision: MatrixPrecision = .fp32

    /// What this CPU runs, after printing the one line that says when bf16 falls back to FP32.
    func resolved() -> MatrixPrecision {
        let resolved = BF16.resolve(precision)
        if let message = resolved.message { printWarning(message) }
        return resolved.precision
    }
}

/// Prints the library's warning when `OPENBLAS_CORETYPE` pins a kernel narrower than the CPU.
enum KernelCheck {
    /// Set, in the process `vae` starts again, to the kernel OpenBLAS had chosen by itself.
    static let detectedVariable = "VAE_OPENBLAS_DETECTED"

    /// When OpenBLAS chose a kernel narrower than the CPU (it does not know the CPU's model),
    /// starts this same command again with `OPENBLAS_CORETYPE` naming the right one — the
    /// variable is read only when OpenBLAS loads. Called first thing, before MPI or any output;
    /// the process keeps its id, so `mpirun` and shells see no difference. If the restart
    /// fails, the command goes on with the narrow kernel.
    static func restartWithWidestKernel() {
        let environment = ProcessInfo.processInfo.environment
        guard GEMMLibrary.selected == .openBLAS, environment[detectedVariable] == nil,
              let better = BLAS.betterCoreType(kernel: BLAS.coreName, cpu: BLAS.cpuISA, environment: environment) else { return }
        setenv(detectedVariable, BLAS.coreName, 1)
        setenv("OPENBLAS_CORETYPE", better, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")
    }

    /// How the kernel came to be chosen, for `vae bench`.
    static var choice: String {
        let environment = ProcessInfo.processInfo.environment
        if let detected = environment[detectedVariable], let chosen = environment["OPENBLAS_CORETYPE"] {
            return "set to \(chosen) by vae; OpenBLAS detected \(detected)"
        }
        return environment["OPENBLAS_CORETYPE"].map { "OPENBLAS_CORETYPE=\($0)" } ?? "OPENBLAS_CORETYPE unset"
    }

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
