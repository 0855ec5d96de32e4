import Datasets
import Imaging
import Tensor
import VAE

/// The PNG pictures the CLI draws from a model.
enum Pictures {
    /// `count` samples decoded from z ~ N(0, I), in a square-ish grid (all of class `label`
    /// for a conditional model).
    static func samples(_ model: VariationalAutoencoder, count: Int, seed: UInt64, label: Int = 0) -> Image {
        var rng = RandomGenerator(seed: seed)
        model.condition = oneHotLabels([Int](repeating: label, count: count), for: model)
        let images = model.generate(count: count, rng: &rng)
        let columns = Int(Double(count).squareRoot().rounded(.up))
        return grid(images, columns: columns, shape: model.config.inputShape)
    }

    /// A conditional model's samples: one row per class, `perClass` columns.
    static func samplesPerClass(_ model: VariationalAutoencoder, perClass: Int, seed: UInt64) -> Image {
        var rng = RandomGenerator(seed: seed)
        let classes = model.config.conditionClasses
        model.condition = oneHotLabels((0..<classes).flatMap { [Int](repeating: $0, count: perClass) }, for: model)
        return grid(model.generate(count: classes * perClass, rng: &rng), columns: perClass, shape: model.config.inputShape)
    }

    /// The first `count` test images, each row of originals above the row of their reconstructions.
    static func reconstructions(_ model: VariationalAutoencoder, testSet: ImageDataset, count: Int, columns: Int = 8) -> Image {
        let loader = makeLoader(testSet.prefix(count), batchSize: count, for: model)
        var epoch = loader.epoch()
        let originals = epoch.next()!
        model.condition = loader.lastCondition
        let recon = model.reconstruct(originals)
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

    static func grid(_ images: Tensor, columns: Int, shape: [Int]) -> Image {
        ImageGrid.make(
            UnsafeBufferPointer(images.buffer), count: images.rows,
            channels: shape[0], height: shape[1], width: shape[2], columns: columns)
    }
}
