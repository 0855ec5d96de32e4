import NN
import Tensor

/// Splits batches across cores: worker 0 is the model itself, the others are replicas sharing
/// its weights. Each worker takes a contiguous slice of the batch's rows, copied into its own
/// buffer, and runs with single-threaded GEMMs on its own core.
public final class DataParallel {
    public let model: VariationalAutoencoder
    /// `workers[0] === model`.
    public let workers: [VariationalAutoencoder]
    /// Each worker's own buffers (one object per worker, so threads never share a container).
    private final class Buffers {
        var input: Tensor?
        var noise: Tensor?
    }
    private let buffers: [Buffers]

    public init(model: VariationalAutoencoder, workers count: Int) {
        precondition(count >= 1, "at least one worker")
        self.model = model
        workers = [model] + (1..<max(count, 1)).map { _ in model.replica() }
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

    /// Worker `w`'s copy of its rows of `batch` (the batch itself when there is one worker).
    public func input(_ w: Int, of batch: Tensor) -> Tensor {
        slice(batch, rows: rows(w, of: batch.rows), buffer: &buffers[w].input)
    }

    /// Worker `w`'s copy of its rows of `noise`.
    public func noise(_ w: Int, of noise: Tensor) -> Tensor {
        slice(noise, rows: rows(w, of: noise.rows), buffer: &buffers[w].noise)
    }

    private func slice(_ t: Tensor, rows range: Range<Int>, buffer: inout Tensor?) -> Tensor {
        if count == 1 { return t }
        let out = Tensor.reusing(buffer, shape: [range.count] + t.shape.dropFirst())
        buffer = out
        let n = t.rowSize
        out.data.update(from: t.data + range.lowerBound * n, count: range.count * n)
        return out
    }

    /// Runs `body(w, worker)` for every worker concurrently.
    public func run(_ body: (Int, VariationalAutoencoder) -> Void) {
        Parallel.run(count) { w in body(w, workers[w]) }
    }

    /// `f(worker, rows)` on every worker's slice of `batch`, each writing rows × `rowShape` into
    /// a new output tensor (for inference: reconstruction, generation).
    public func map(_ batch: Tensor, outputRowShape: [Int], _ f: (VariationalAutoencoder, Tensor) -> Tensor) -> Tensor {
        let out = Tensor(shape: [batch.rows] + outputRowShape)
        run { w, worker in
            let range = rows(w, of: batch.rows)
            guard !range.isEmpty else { return }
            let result = f(worker, input(w, of: batch))
            (out.data + range.lowerBound * out.rowSize).update(from: result.data, count: result.count)
        }
        return out
    }
}
