import ArgumentParser
import Datasets
import Foundation
import Tensor
import Training

/// How the CPU cores are used: `--threads N|auto --parallel batch|blas`.
struct ThreadingOptions: ParsableArguments {
    @Option(help: """
        CPU cores to use, or auto: train and bench time a few steps of the model under each split \
        of the cores (batch workers × GEMM threads) and take the fastest, and keep what they \
        timed in the probe cache for the next run of the same model (VAE_CACHE: a folder, or off). \
        Default: auto for train and bench (`train --resume`: the run's own split, so that it \
        continues bit for bit), every core for the other commands. Under mpirun: per rank, and \
        every core means the rank's share of the machine.
        """)
    var threads: ThreadCount?

    @Option(name: .customLong("parallel"), help: """
        How to use several cores: batch (each core runs forward and backward on a slice of the \
        batch with single-threaded GEMM; gradients are summed) or blas (one pass, the matrix \
        library splits each product across threads). Default: batch, or with --threads auto the \
        fastest mix of the two.
        """)
    var parallelMode: ParallelMode?

    @Option(help: """
        Threads of each batch worker's matrix products: --threads 16 --gemm-threads 4 runs 4 \
        batch workers whose products each use 4 threads (--threads must be a multiple of it). \
        Default: 1 (--parallel blas: all of --threads).
        """)
    var gemmThreads: Int?

    var parallel: ParallelMode { parallelMode ?? .batch }

    enum ParallelMode: String, ExpressibleByArgument, CaseIterable {
        case batch, blas
    }

    /// `--threads N` or `--threads auto`.
    enum ThreadCount: ExpressibleByArgument, Equatable {
        case auto
        case count(Int)

        init?(argument: String) {
            if argument == "auto" {
                self = .auto
            } else if let n = Int(argument) {
                self = .count(n)
            } else {
                return nil
            }
        }

        static var defaultCompletionKind: CompletionKind { .list(["auto"]) }
    }

    func validate() throws {
        if case .count(let n) = threads, !Limits.threads.contains(n) {
            throw ValidationError("--threads must be auto or between 1 and \(Limits.threads.upperBound)")
        }
        if let gemmThreads {
            guard Limits.threads.contains(gemmThreads) else { throw ValidationError("--gemm-threads must be between 1 and \(Limits.threads.upperBound)") }
            guard case .count(let n) = threads, n % gemmThreads == 0 else {
                throw ValidationError("--gemm-threads \(gemmThreads) needs --threads N, a multiple of it (the batch workers are N / \(gemmThreads))")
            }
            if parallelMode == .blas && gemmThreads != n { throw ValidationError("--parallel blas runs one worker: --gemm-threads must equal --threads") }
        }
    }

    /// Cores in use: the count given, else every core this process may use.
    var threadCount: Int {
        if case .count(let n) = threads { return n }
        return Parallelism.availableCores
    }

    /// A fixed split from the flags (auto and the default: every core, as --parallel says), for
    /// the commands that do not probe.
    var parallelism: Parallelism {
        if let gemmThreads { return Parallelism(workers: threadCount / gemmThreads, gemmThreads: gemmThreads) }
        return parallel == .batch ? .batch(workers: threadCount) : .blas(threads: threadCount)
    }

    /// The split the flags ask for, or nil when they name none (a resume then keeps the run's).
    var requestedParallelism: Parallelism? {
        threads == nil && parallelMode == nil && gemmThreads == nil ? nil : parallelism
    }

    /// Whether train and bench should probe: `--threads auto`, or no `--threads` at all.
    var probes: Bool { threads == nil || threads == .auto }

    /// The splits a probe times, within the cores given (auto: every core) and the family
    /// `--parallel` names, if any.
    func candidates(batchSize: Int, cores: Int? = nil) -> [Parallelism] {
        let family: ParallelismProbe.Family? = parallelMode.map { $0 == .batch ? .batch : .blas }
        return ParallelismProbe.candidates(cores: cores ?? threadCount, batchSize: batchSize, mode: family)
    }

    /// The split to use: the probe's choice when it probes (printing its summary unless quiet), else the flags'.
    func chosen(config: RunConfig, train: ImageDataset, communicator: Communicator, report: (String) -> Void) throws -> Parallelism {
        guard probes else { return parallelism }
        // Under mpirun every rank must time the same splits (their steps exchange gradients):
        // the fewest cores any rank has.
        let cores = communicator.gather(UInt64(threadCount)).min().map(Int.init) ?? threadCount
        let result = try ParallelismProbe.fastest(
            config: config, train: train, candidates: candidates(batchSize: config.training.batchSize / max(communicator.size, 1), cores: cores),
            communicator: communicator, cache: .processDefault)
        if !result.trials.isEmpty { report("threads auto: \(result.summary)") }
        return result.best
    }
}

extension MatrixPrecision: ExpressibleByArgument {}

/// `--precision fp32|bf16`: the operand format of the matrix products.
struct PrecisionOptions: ParsableArguments {
    @Option(help: """
        Matrix products in fp32 or bf16 (bf16 operands, FP32 sums; the weights, the likelihoods, \
        KL and every reported figure stay FP32). bf16 needs a CPU with AVX512_BF16 or AMX; \
        without either the command runs FP32 and says so. With --device cuda the GPU's tensor \
        cores run the bf16 products (cuBLAS's bf16 compute type), whatever the CPU.
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
