import Tensor

/// How a run uses the CPU's cores.
public enum Parallelism: Equatable, Sendable {
    /// Each of `workers` cores runs forward and backward on a slice of every batch with
    /// single-threaded matrix products; the gradients are summed (the default).
    case batch(workers: Int)
    /// One pass; OpenBLAS splits each matrix product across `threads` threads.
    case blas(threads: Int)

    /// Every core, batch-parallel.
    public static var allCores: Parallelism { .batch(workers: Parallel.coreCount) }

    /// Sets OpenBLAS's thread count for this mode and returns the number of batch workers.
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

    /// One line naming the kernel and the split, e.g. "OpenBLAS kernel Cooperlake, 2 batch workers × 1 OpenBLAS thread".
    public var summary: String {
        switch self {
        case .batch(let n): "OpenBLAS kernel \(BLAS.coreName), \(n) batch worker\(n == 1 ? "" : "s") × 1 OpenBLAS thread"
        case .blas(let n): "OpenBLAS kernel \(BLAS.coreName), 1 worker × \(n) OpenBLAS thread\(n == 1 ? "" : "s")"
        }
    }
}
