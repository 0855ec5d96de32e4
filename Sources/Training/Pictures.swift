import Datasets
import Imaging
import Tensor
import VAE

/// The pictures drawn from a model (the end of a run writes two of them).
public enum Pictures {
    /// `count` samples decoded from z ~ N(0, I), in a square-ish grid (all of class `label`
    /// for a conditional model).
    public static func samples(_ model: VariationalAutoencoder, count: Int, seed: UInt64, label: Int = 0) -> Image {
        var rng = RandomGenerator(seed: seed)
        let condition = model.config.oneHot([Int](repeating: label, count: count))
        let images = model.generate(count: count, condition: condition, rng: &rng)
        let columns = Int(Double(count).squareRoot().rounded(.up))
        return grid(images, columns: columns, shape: model.config.inputShape)
    }

    /// A conditional model's samples: one row per class, `perClass` columns.
    public static func samplesPerClass(_ model: VariationalAutoencoder, perClass: Int, seed: UInt64) -> Image {
        var rng = RandomGenerator(seed: seed)
        let classes = model.config.conditionClasses
        let condition = model.config.oneHot((0..<classes).flatMap { [Int](repeating: $0, count: perClass) })
        return grid(model.generate(count: classes * perClass, condition: condition, rng: &rng), columns: perClass, shape: model.config.inputShape)
    }

    /// The samples a run shows: 64 in a grid, or 8 per class for a conditional model.
    public static func runSamples(_ model: VariationalAutoencoder, seed: UInt64) -> Image {
        model.config.isConditional ? samplesPerClass(model, perClass: 8, seed: seed) : samples(model, count: 64, seed: seed)
    }

    /// The first `count` test images, each row of originals above the row of their reconstructions.
    public static func reconstructions(_ model: VariationalAutoencoder, testSet: ImageDataset, count: Int, columns: Int = 8) -> Image {
        var epoch = BatchLoader.evaluation(testSet.prefix(count), for: model, batchSize: count).epoch()
        let batch = epoch.next()!
        let originals = batch.images
        let recon = model.reconstruct(originals, condition: batch.condition)
        let size = model.config.inputSize
        let n = originals.rows
        let cols = min(columns, n)
        // Interleave rows: originals of block k, then their reconstructions.
        let blocks = (n + cols - 1) / cols
        let tiles = Tensor(shape: [2 * blocks * cols] + model.config.inputShape)
        tiles.fill(1)
        for k in 0..<n {
            let block = k / cols, column = k % cols
            (tiles.data + ((2 * block) * cols + column) * size).update(from: originals.data + k * size, count: size)
            (tiles.data + ((2 * block + 1) * cols + column) * size).update(from: recon.data + k * size, count: size)
        }
        return grid(tiles, columns: cols, shape: model.config.inputShape)
    }

    /// Images [n, C, H, W] in [0, 1] as a grid with `columns` tiles per row.
    public static func grid(_ images: Tensor, columns: Int, shape: [Int]) -> Image {
        ImageGrid.make(
            UnsafeBufferPointer(images.buffer), count: images.rows,
            channels: shape[0], height: shape[1], width: shape[2], columns: columns)
    }
}
