#if canImport(Glibc)
import Glibc
#endif
import Tensor

/// How a run uses the CPU's cores: `workers` batch workers, each running forward and backward
/// on a slice of every batch, and each worker's matrix products split across `gemmThreads`
/// threads by the matrix library (output columns and rows), so `workers × gemmThreads` cores.
/// Batch workers scale the elementwise passes too, but every worker keeps and sums a whole
/// gradient; GEMM threads share one gradient and split the products, and the gradient sum and
/// the optimiser's update (every thread of the split takes a share of those). Small batches on
/// many cores do best with a mix (``ParallelismProbe`` measures which).
public struct Parallelism: Equatable, Sendable, CustomStringConvertible {
    public let workers: Int
    public let gemmThreads: Int

    public init(workers: Int, gemmThreads: Int) {
        self.workers = max(workers, 1)
        self.gemmThreads = max(gemmThreads, 1)
    }

    /// Each of `workers` cores runs forward and backward on a slice of every batch with
    /// single-threaded matrix products; the gradients are summed.
    public static func batch(workers: Int) -> Parallelism { Parallelism(workers: workers, gemmThreads: 1) }

    /// One pass; the matrix library splits each product across `threads` threads.
    public static func blas(threads: Int) -> Parallelism { Parallelism(workers: 1, gemmThreads: threads) }

    /// Every core, batch-parallel.
    public static var allCores: Parallelism { .batch(workers: availableCores) }

    /// Cores this process may give its threads: its affinity mask's (`Parallel.coreCount`),
    /// and under `mpirun` at most its share of the machine, online cores / ranks on this host
    /// (`OMPI_COMM_WORLD_LOCAL_SIZE`) — ranks bound to one core each see one core; ranks left
    /// unbound, or bound to a whole socket, would otherwise each start a thread per core.
    public static var availableCores: Int {
        availableCores(
            mask: Parallel.coreCount, online: sysconf(Int32(_SC_NPROCESSORS_ONLN)),
            localRanks: getenv("OMPI_COMM_WORLD_LOCAL_SIZE").flatMap { Int(String(cString: $0)) })
    }

    /// The rule of ``availableCores``: `mask` cores, and with more than one rank on the host at
    /// most `online` / `localRanks` (at least 1).
    public static func availableCores(mask: Int, online: Int, localRanks: Int?) -> Int {
        guard let local = localRanks, local > 1 else { return max(mask, 1) }
        return max(1, min(mask, online / local))
    }

    /// Sets the matrix library's thread count for this split and returns the number of batch workers.
    @discardableResult
    public func apply() -> Int {
        BLAS.threads = gemmThreads
        return workers
    }

    /// Cores in use.
    public var threads: Int { workers * gemmThreads }

    /// The split in words: "2 batch workers × 1 GEMM thread".
    public var split: String {
        "\(workers) \(workers == 1 && gemmThreads > 1 ? "worker" : "batch worker\(workers == 1 ? "" : "s")") × \(gemmThreads) GEMM thread\(gemmThreads == 1 ? "" : "s")"
    }

    public var description: String { split }

    /// One line naming the matrix library and the split, e.g. "oneDNN 2.6.3 (avx512_core),
    /// 2 batch workers × 1 GEMM thread" or "OpenBLAS kernel Haswell, 1 worker × 2 GEMM threads".
    public var summary: String { "\(GEMMLibrary.summary), \(split)" }
}
