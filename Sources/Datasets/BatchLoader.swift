import CKernels
import Synchronization
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
    /// Where the examples are in the data set, for a consumer that holds the data set itself and
    /// makes the batch there (the GPU); nil when the batch cannot be remade from it (a loader
    /// that binarises with its sequential generator).
    public let source: BatchSource?

    public init(images: Tensor, labels: [Int]? = nil, condition: Tensor? = nil, source: BatchSource? = nil) {
        self.images = images
        self.labels = labels
        self.condition = condition
        self.source = source
    }

    /// Examples in the batch.
    public var count: Int { images.rows }
}

/// A batch's examples as positions of its epoch's order: example `order[p]` for p in
/// `positions`, binarised with `binarization` (stream `CounterNoise.binarizationStream(epoch:example:)`)
/// when set — everything a consumer holding the data set needs to make the same batch.
public struct BatchSource {
    /// The epoch's order of the data set's examples (shared, not copied, by every batch).
    public let order: [Int]
    /// Changes whenever the loader's order does (a new epoch's shuffle, a resumed order), and is
    /// never the same for two loaders, so a consumer can keep its own copy of `order` and send it
    /// again only when this changes.
    public let orderVersion: Int
    public let positions: Range<Int>
    /// The epoch, from 0.
    public let epoch: Int
    /// The counter-based binarisation, when the loader binarises.
    public let binarization: CounterNoise?
}

/// Draws batches of Float32 images in [0, 1] from an ``ImageDataset``.
///
/// Each epoch visits every example once, in an order shuffled by the loader's own seeded
/// generator when `shuffle` is on; the last batch may be smaller. With `binarize`, each pixel
/// is resampled as Bernoulli(p = value/255) every time it is drawn (dynamic binarisation): by
/// ``counterBinarization`` when set — a pure function of (seed, epoch, example, pixel), which
/// the GPU draws too — or else by the loader's generator in drawing order (runs made before).
/// Every batch is written into the same tensors, overwritten by the next one; each ``Batch``
/// carries its own labels and its ``BatchSource``.
public final class BatchLoader {
    public let dataset: ImageDataset
    public let batchSize: Int
    public let shuffle: Bool
    public let binarize: Bool
    public var rng: RandomGenerator
    /// Binarises by counters (see `CounterNoise.binarize(stream:bytes:into:)`) instead of `rng`.
    public var counterBinarization: CounterNoise?
    /// When false, batches that can be made from their ``Batch/source`` are not copied into
    /// `images` (whose rows are then stale): for a consumer that holds the data set itself.
    public var fillsImages = true
    /// Threads to make a batch's rows with, a slice each (the trainer's batch workers, idle
    /// between steps): each row is made alone, so the values are those one thread makes. Not
    /// used for the sequential generator's binarisation, whose draws follow the rows in order.
    public var rowPool: WorkerPool?
    private var order: [Int] { didSet { orderVersion = Self.nextVersion() } }
    private var orderVersion = BatchLoader.nextVersion()
    /// Versions unique across every loader of the process (a consumer that keeps one loader's
    /// order never mistakes another's for it).
    private static let versions = Atomic<Int>(0)
    private static func nextVersion() -> Int { versions.add(1, ordering: .relaxed).newValue }
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

    /// One pass over the data, epoch `number` (from 0; it keys the counter binarisation);
    /// shuffles first when `shuffle` is on.
    public func epoch(number: Int = 0) -> Epoch {
        if shuffle { rng.shuffle(&order) }
        return Epoch(loader: self, number: number)
    }

    /// The rest of the current epoch (`number`) from batch `batchIndex` on, without shuffling
    /// (to resume).
    public func resumeEpoch(atBatch batchIndex: Int, number: Int = 0) -> Epoch {
        Epoch(loader: self, number: number, position: min(batchIndex * batchSize, dataset.count))
    }

    /// The order of the examples in the current epoch (saved with a checkpoint).
    public var currentOrder: [Int] {
        get { order }
        set {
            precondition(newValue.sorted() == Array(0..<dataset.count), "not a permutation of the data set")
            order = newValue
        }
    }

    /// Fills the loader's batch tensors with the examples at `positions` of the order, in epoch
    /// `epoch`.
    func fill(_ positions: Range<Int>, epoch: Int) -> Batch {
        let indices = order[positions]
        batch.setBatch(indices.count)
        let size = dataset.exampleSize
        let out = batch.data
        let counter = binarize ? counterBinarization : nil
        let remakeable = !binarize || counter != nil
        let source = remakeable
            ? BatchSource(order: order, orderVersion: orderVersion, positions: positions, epoch: epoch, binarization: counter) : nil
        // Row `row` of the batch from the examples' values or bytes (binarised by counters, or by
        // the sequential generator, or scaled to [0, 1]).
        let sequential = binarize && counter == nil
        if let values = dataset.values, fillsImages || !remakeable {
            values.withUnsafeBufferPointer { v in
                forEachRow(indices.count, inOrder: sequential) { row in
                    let example = indices[indices.startIndex + row]
                    let src = v.baseAddress! + example * size, dst = out + row * size
                    if let counter {
                        let stream = CounterNoise.binarizationStream(epoch: epoch, example: example)
                        counter.binarize(stream: stream, values: src, into: UnsafeMutableBufferPointer(start: dst, count: size))
                    } else if binarize {
                        for i in 0..<size { dst[i] = rng.nextFloat() < src[i] ? 1 : 0 }
                    } else {
                        dst.update(from: src, count: size)
                    }
                }
            }
        } else if fillsImages || !remakeable {
            dataset.pixels.withUnsafeBufferPointer { px in
                scale.withUnsafeBufferPointer { table in
                    forEachRow(indices.count, inOrder: sequential) { row in
                        let example = indices[indices.startIndex + row]
                        let src = px.baseAddress! + example * size
                        let dst = out + row * size
                        if let counter {
                            let stream = CounterNoise.binarizationStream(epoch: epoch, example: example)
                            counter.binarize(stream: stream, bytes: src, into: UnsafeMutableBufferPointer(start: dst, count: size))
                        } else if binarize {
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
        return Batch(images: batch, labels: labels, condition: oneHot, source: source)
    }

    /// `body(row)` for rows 0 ..< `rows`: in order on this thread when `inOrder` (or without a
    /// ``rowPool``), else a slice of the rows on each of the pool's threads.
    private func forEachRow(_ rows: Int, inOrder: Bool, _ body: (Int) -> Void) {
        guard !inOrder, let pool = rowPool, pool.count > 1, rows > 1 else {
            for row in 0..<rows { body(row) }
            return
        }
        pool.run { part in
            for row in Parallel.slice(part, of: pool.count, count: rows) { body(row) }
        }
    }

    public struct Epoch: Sequence, IteratorProtocol {
        let loader: BatchLoader
        /// The epoch, from 0.
        let number: Int
        var position = 0

        public mutating func next() -> Batch? {
            guard position < loader.dataset.count else { return nil }
            let end = Swift.min(position + loader.batchSize, loader.dataset.count)
            defer { position = end }
            return loader.fill(position..<end, epoch: number)
        }
    }
}
