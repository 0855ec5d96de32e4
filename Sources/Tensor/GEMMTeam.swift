import CDNNL

extension BLAS {
    /// The threads a caller's products run on, itself included, when those threads are its own
    /// (oneDNN's OpenMP team, started by the calling thread and inheriting its CPU affinity):
    /// ``threads`` with oneDNN, 1 with OpenBLAS (whose threads are one pool for the process). The
    /// team ``onGEMMThreads(_:)`` runs on, and the CPUs a pinned batch worker needs.
    public static var threadsPerCaller: Int { GEMMLibrary.selected == .oneDNN ? Int(oneDNNThreads) : 1 }

    /// Runs `body(thread, threads)` once on each of the calling thread's GEMM threads — the
    /// OpenMP team oneDNN's products use, ``threadsPerCaller`` of them, the caller as thread 0 —
    /// and returns when all have; `body(0, 1)` on the caller alone when that is one thread. For
    /// the elementwise passes of a split where each batch worker has GEMM threads (the gradient
    /// sum, the optimiser's update, the likelihood's rows): the cores that split a worker's
    /// products split its share of those passes too, instead of waiting. `threads` in `body` is
    /// the team the runtime gave, which may be fewer than asked: slice by it.
    public static func onGEMMThreads(_ body: (_ thread: Int, _ threads: Int) -> Void) {
        let asked = Int32(threadsPerCaller)
        guard asked > 1 else {
            body(0, 1)
            return
        }
        if omp_get_max_threads() != asked { omp_set_num_threads(asked) }
        withoutActuallyEscaping(body) { body in
            var job = body
            withUnsafeMutablePointer(to: &job) { pointer in
                GOMP_parallel({ context in
                    let body = context!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee
                    body(Int(omp_get_thread_num()), Int(omp_get_num_threads()))
                }, pointer, UInt32(asked), 0)
            }
        }
    }
}

extension BLAS {
    /// Work below which a pass over a worker's rows or columns stays on the caller: waking the
    /// team costs about a microsecond, a few thousand floats' worth of a streaming pass.
    public static let gemmThreadsMinimumWork = 16_384

    /// Runs `body` on contiguous slices of 0..<count, one on each of the caller's GEMM threads
    /// (``onGEMMThreads(_:)``), with the inner boundaries multiples of `multiple` (16 floats keep
    /// threads writing neighbouring slices of a line-aligned buffer off each other's cache lines);
    /// on the caller alone, `body(0..<count)`, when the team is one thread or `count × work`
    /// (the floats a unit touches) is under ``gemmThreadsMinimumWork``. For the elementwise passes
    /// of a batch worker whose products run on several threads (a bias broadcast, a ReLU, a bias
    /// gradient): a pass whose units are independent gives the same numbers on any slicing.
    public static func splitOverGEMMThreads(
        _ count: Int, work: Int = 1, multipleOf multiple: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        guard threadsPerCaller > 1, count > 1, count * work >= gemmThreadsMinimumWork else {
            body(0..<count)
            return
        }
        onGEMMThreads { thread, threads in
            let part = Parallel.slice(thread, of: threads, count: count, multipleOf: multiple)
            if !part.isEmpty { body(part) }
        }
    }
}
