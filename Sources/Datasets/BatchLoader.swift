import CKernels
import Tensor

/// Draws batches of Float32 images in [0, 1] from an ``ImageDataset``.
///
/// Each epoch visits every example once, in an order shuffled by the loader's own seeded
/// generator when `shuffle` is on; the last batch may be smaller. With `binarize`, each pixel
/// is resampled as Bernoulli(p = value/255) every time it is drawn (dynamic binarisation).
/// Every batch is written into the same tensor, overwritten by the next one.
public final class BatchLoader {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let binarize: Bool
    public var rng: RandomGenerator
    private var order: [Int]
    private let batch: Tensor
    private let labels: UnsafeMutablePointer<Int>
    private let scale: [Float] = (0..<256).map { Float($0) / 255 }
    /// Classes of the one-hot labels made with each batch (0: none).
    public let conditionClasses: Int
    private let oneHot: Tensor?

    public init(dataset: ImageDataset, batchSize: Int, shuffle: Bool, binarize: Bool = false, seed: UInt64 = 0, conditionClasses: Int = 0) {
        precondition(conditionClasses == 0 || dataset.labels != nil, "one-hot labels need a labelled data set")
        precondition(batchSize > 0, "batch size must be positive")
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.binarize = binarize
        self.rng = RandomGenerator(seed: seed)
        order = Array(0..<dataset.count)
        let rows = min(batchSize, max(dataset.count, 1))
        batch = Tensor(shape: [rows] + dataset.shape)
        labels = .allocate(capacity: rows)
        self.conditionClasses = conditionClasses
        oneHot = conditionClasses > 0 ? Tensor(shape: [rows, conditionClasses]) : nil
    }

    deinit { labels.deallocate() }

    /// Batches per epoch (the last one may be short).
    public var batchesPerEpoch: Int { (dataset.count + batchSize - 1) / batchSize }

    /// Labels of the examples in the most recent batch.
    public var lastLabels: UnsafeBufferPointer<Int> { UnsafeBufferPointer(start: labels, count: batch.rows) }

    /// One-hot labels [B, classes] of the most recent batch (nil without `conditionClasses`).
    public var lastCondition: Tensor? { oneHot }

    /// One pass over the data; shuffles first when `shuffle` is on.
    public func epoch() -> Epoch {
        if shuffle { rng.shuffle(&order) }
        return Epoch(loader: self)
    }

    /// The rest of the current epoch from batch `batchIndex` on, without shuffling (to resume).
    public func resumeEpoch(atBatch batchIndex: Int) -> Epoch {
        Epoch(loader: self, position: min(batchIndex * batchSize, dataset.count))
    }

    /// The order of the examples in the current epoch (saved with a checkpoint).
    public var currentOrder: [Int] {
        get { order }
        set {
            precondition(newValue.sorted() == Array(0..<dataset.count), "not a permutation of the data set")
            order = newValue
        }
    }

    /// Fills the loader's batch tensor with the examples at `indices` and returns it.
    func fill(_ indices: ArraySlice<Int>) -> Tensor {
        batch.setBatch(indices.count)
        let size = dataset.exampleSize
        let out = batch.data
        if let values = dataset.values {
            values.withUnsafeBufferPointer { v in
                for (row, example) in indices.enumerated() {
                    let src = v.baseAddress! + example * size, dst = out + row * size
                    if binarize {
                        for i in 0..<size { dst[i] = rng.nextFloat() < src[i] ? 1 : 0 }
                    } else {
                        dst.update(from: src, count: size)
                    }
                    labels[row] = dataset.labels?[example] ?? -1
                }
            }
        } else {
        dataset.pixels.withUnsafeBufferPointer { px in
            scale.withUnsafeBufferPointer { table in
                for (row, example) in indices.enumerated() {
                    let src = px.baseAddress! + example * size
                    let dst = out + row * size
                    if binarize {
                        for i in 0..<size { dst[i] = rng.nextFloat() < table[Int(src[i])] ? 1 : 0 }
                    } else {
                        vae_bytes_to_unit(src, dst, size)
                    }
                    labels[row] = dataset.labels?[example] ?? -1
                }
            }
        }
        }
        if let oneHot {
            oneHot.setBatch(indices.count)
            oneHot.fill(0)
            for row in 0..<indices.count where labels[row] >= 0 && labels[row] < conditionClasses {
                oneHot[row * conditionClasses + labels[row]] = 1
            }
        }
        return batch
    }

    public struct Epoch: Sequence, IteratorProtocol {
        let loader: BatchLoader
        var position = 0

        public mutating func next() -> Tensor? {
            guard position < loader.dataset.count else { return nil }
            let end = Swift.min(position + loader.batchSize, loader.dataset.count)
            defer { position = end }
            return loader.fill(loader.order[position..<end])
        }
    }
}
