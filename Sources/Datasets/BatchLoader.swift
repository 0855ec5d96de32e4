import CKernels
import Tensor

/// A batch of examples as the model takes it: images in [0, 1] and, when the data set has them,
/// their labels (and, for a conditional model, the labels one-hot). The tensors belong to the
/// loader that made the batch and are overwritten by its next batch.
public struct Batch {
    /// [B, C, H, W] values in [0, 1].
    public let images: Tensor
    /// The examples' labels (nil for unlabelled data).
    public let labels: [Int]?
    /// One-hot labels [B, classes] when the loader was asked for them (conditional models).
    public let condition: Tensor?

    public init(images: Tensor, labels: [Int]? = nil, condition: Tensor? = nil) {
        self.images = images
        self.labels = labels
        self.condition = condition
    }

    /// Examples in the batch.
    public var count: Int { images.rows }
}

/// Draws batches of Float32 images in [0, 1] from an ``ImageDataset``.
///
/// Each epoch visits every example once, in an order shuffled by the loader's own seeded
/// generator when `shuffle` is on; the last batch may be smaller. With `binarize`, each pixel
/// is resampled as Bernoulli(p = value/255) every time it is drawn (dynamic binarisation).
/// Every batch is written into the same tensors, overwritten by the next one; each ``Batch``
/// carries its own labels.
public final class BatchLoader {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let binarize: Bool
    public var rng: RandomGenerator
    private var order: [Int]
    private let batch: Tensor
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
        self.conditionClasses = conditionClasses
        oneHot = conditionClasses > 0 ? Tensor(shape: [rows, conditionClasses]) : nil
    }

    /// Batches per epoch (the last one may be short).
    public var batchesPerEpoch: Int { (dataset.count + batchSize - 1) / batchSize }

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

    /// Fills the loader's batch tensors with the examples at `indices`.
    func fill(_ indices: ArraySlice<Int>) -> Batch {
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
                }
            }
        }
        }
        let labels = dataset.labels.map { all in indices.map { all[$0] } }
        if let oneHot, let labels {
            oneHot.setBatch(indices.count)
            oneHot.fill(0)
            for (row, label) in labels.enumerated() where label >= 0 && label < conditionClasses {
                oneHot[row * conditionClasses + label] = 1
            }
        }
        return Batch(images: batch, labels: labels, condition: oneHot)
    }

    public struct Epoch: Sequence, IteratorProtocol {
        let loader: BatchLoader
        var position = 0

        public mutating func next() -> Batch? {
            guard position < loader.dataset.count else { return nil }
            let end = Swift.min(position + loader.batchSize, loader.dataset.count)
            defer { position = end }
            return loader.fill(loader.order[position..<end])
        }
    }
}
