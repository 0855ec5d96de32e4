import NN
import Tensor

/// Splits batches across cores: worker 0 is the model itself, the others are replicas sharing
/// its weights. Each worker takes a contiguous slice of the batch's rows (a view, no copy) and
/// runs with single-threaded GEMMs on its own core.
public final class DataParallel {
    public let model: VariationalAutoencoder
    /// `workers[0] === model`.
    public let workers: [VariationalAutoencoder]
    /// One thread per worker beyond the caller's.
    public let pool: WorkerPool
    /// Each worker's own buffers (one object per worker, so threads never share a container).
    private final class Buffers {
        var input: Tensor?
        var noise: Tensor?
        var upperNoise: Tensor?
        var output: Tensor?
        var condition: Tensor?
    }
    private let buffers: [Buffers]

    public init(model: VariationalAutoencoder, workers count: Int) {
        precondition(count >= 1, "at least one worker")
        self.model = model
        workers = [model] + (1..<max(count, 1)).map { _ in model.replica() }
        // Each worker's products (and its share of the update) run on its GEMM threads — an
        // OpenMP team it starts, which inherits its affinity: a pinned worker gets that many CPUs.
        pool = WorkerPool(count: count, cpusPerPart: BLAS.threadsPerCaller)
        buffers = (0..<max(count, 1)).map { _ in Buffers() }
    }

    public var count: Int { workers.count }

    /// Workers that get rows of a batch of `rows`: the first min(count, rows), so worker 0
    /// (whose gradients are the model's) always has some.
    public func activeWorkers(for rows: Int) -> Int { min(count, rows) }

    /// Rows of a batch of `rows` that worker `w` handles (empty for the inactive ones).
    public func rows(_ w: Int, of rows: Int) -> Range<Int> {
        let active = activeWorkers(for: rows)
        return w < active ? Parallel.slice(w, of: active, count: rows) : 0..<0
    }

    /// Worker `w`'s rows of `batch`, as a view (the batch itself when there is one worker).
    public func input(_ w: Int, of batch: Tensor) -> Tensor {
        slice(batch, rows: rows(w, of: batch.rows), buffer: &buffers[w].input)
    }

    /// Worker `w`'s rows of `noise` (one row per image), as a view.
    public func noise(_ w: Int, of noise: Tensor) -> Tensor {
        slice(noise, rows: rows(w, of: noise.rows), buffer: &buffers[w].noise)
    }

    /// Rows `rows` of `noise` for worker `w`, as a view (several noise rows per image).
    public func noise(_ w: Int, of noise: Tensor, rows range: Range<Int>) -> Tensor {
        slice(noise, rows: range, buffer: &buffers[w].noise)
    }

    /// Rows `rows` of the second stochastic layer's `noise` for worker `w`, as a view.
    public func upperNoise(_ w: Int, of noise: Tensor, rows range: Range<Int>) -> Tensor {
        slice(noise, rows: range, buffer: &buffers[w].upperNoise)
    }

    /// A view of `rows` of `t` held in `buffer` (no copy; re-pointed on every call).
    private func slice(_ t: Tensor, rows range: Range<Int>, buffer: inout Tensor?) -> Tensor {
        count == 1 ? t : Tensor.view(t, rows: range, reusing: &buffer)
    }

    /// Rows `range` of a condition (one-hot labels) for worker `w`, as a view; nil stays nil.
    public func conditionRows(_ w: Int, of condition: Tensor?, range: Range<Int>) -> Tensor? {
        guard let condition else { return nil }
        return slice(condition, rows: range, buffer: &buffers[w].condition)
    }

    /// Runs `body(w, worker)` for every worker concurrently.
    public func run(_ body: (Int, VariationalAutoencoder) -> Void) {
        pool.run { w in body(w, workers[w]) }
    }

    /// `f(worker, rows, conditionRows, outputRows)` on every worker's slice of `batch` (and of its
    /// one-hot labels `condition`), where `outputRows` is a view of the same rows of `output` that
    /// `f` fills (for inference: reconstruction, generation).
    public func map(
        _ batch: Tensor, condition: Tensor? = nil, into output: Tensor, _ f: (VariationalAutoencoder, Tensor, Tensor?, Tensor) -> Void
    ) {
        precondition(output.rows == batch.rows, "output \(output.shape) for a batch of \(batch.rows)")
        run { w, worker in
            let range = rows(w, of: batch.rows)
            guard !range.isEmpty else { return }
            f(worker, input(w, of: batch), conditionRows(w, of: condition, range: range), slice(output, rows: range, buffer: &buffers[w].output))
        }
    }
}
