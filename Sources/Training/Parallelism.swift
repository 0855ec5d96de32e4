import Tensor

/// How a run uses the CPU's cores.
public enum Parallelism: Equatable, Sendable {
    /// Each of `workers` cores runs forward and backward on a slice of every batch with
    /// single-threaded matrix products; the gradients are summed (the default).
    case batch(workers: Int)
    /// One pass; the matrix library splits each product across `threads` threads.
    case blas(threads: Int)

    /// Every core, batch-parallel.
    public static var allCores: Parallelism { .batch(workers: Parallel.coreCount) }

    /// Sets the matrix library's thread count for this mode and returns the number of batch workers.
    @discardableResult
    public func apply() -> Int {
        switch self {
        case .batch(let workers):
            BLAS.threads = 1
            return max(workers, 1)
        case .blas(let threads):
            BLAS.threads = max(threads, 1)
            return 1
        }
    }

    /// Cores in use.
    public var threads: Int {
        switch self {
        case .batch(let n), .blas(let n): max(n, 1)
        }
    }

    /// Threads of each matrix product.
    public var gemmThreads: Int {
        if case .blas(let n) = self { return max(n, 1) }
        return 1
    }

    /// The split in words: "2 batch workers × 1 GEMM thread".
    public var split: String {
        switch self {
        case .batch(let n): "\(n) batch worker\(n == 1 ? "" : "s") × 1 GEMM thread"
        case .blas(let n): "1 worker × \(n) GEMM thread\(n == 1 ? "" : "s")"
        }
    }

    /// One line naming the matrix library and the split, e.g. "oneDNN 2.6.3 (avx512_core),
    /// 2 batch workers × 1 GEMM thread" or "OpenBLAS kernel Haswell, 1 worker × 2 GEMM threads".
    public var summary: String { "\(GEMMLibrary.summary), \(split)" }
}
