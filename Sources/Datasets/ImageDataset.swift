import Files
import Tensor

/// Images held as bytes (0…255), one row of C·H·W per example, with optional labels.
/// Batches are converted to Float32 in [0, 1] only when drawn, so memory stays at one byte
/// per pixel (47 MB for the 60,000 Fashion-MNIST training images).
public struct ImageDataset: Sendable {
    public let pixels: [UInt8]
    public let labels: [Int]?
    /// One example's shape, [channels, height, width].
    public let shape: [Int]
    public let count: Int

    public init(pixels: [UInt8], labels: [Int]?, shape: [Int]) {
        let size = shape.reduce(1, *)
        precondition(size > 0 && pixels.count % size == 0, "pixels do not divide into examples of \(shape)")
        precondition(labels == nil || labels!.count == pixels.count / size, "label count mismatch")
        self.pixels = pixels
        self.labels = labels
        self.shape = shape
        self.count = pixels.count / size
    }

    /// Values per example.
    public var exampleSize: Int { shape.reduce(1, *) }

    /// The first `n` examples.
    public func prefix(_ n: Int) -> ImageDataset {
        let k = min(n, count)
        return ImageDataset(pixels: Array(pixels[0..<(k * exampleSize)]), labels: labels.map { Array($0[0..<k]) }, shape: shape)
    }

    /// Loads an IDX image file ([N, H, W] bytes) and, optionally, its IDX label file ([N]).
    public static func loadIDX(images imagesPath: String, labels labelsPath: String?) throws -> ImageDataset {
        let images = try IDXArray(contentsOf: imagesPath, expectedDimensions: 3)
        var labels: [Int]?
        if let labelsPath {
            let l = try IDXArray(contentsOf: labelsPath, expectedDimensions: 1)
            guard l.dimensions[0] == images.dimensions[0] else {
                throw IDXError.countMismatch(images: images.dimensions[0], labels: l.dimensions[0], imagesPath: imagesPath, labelsPath: labelsPath)
            }
            labels = l.bytes.map(Int.init)
        }
        guard images.dimensions[1] > 0 && images.dimensions[2] > 0 else {
            throw IDXError.wrongDimensions(path: imagesPath, expected: 3, found: 3)
        }
        return ImageDataset(pixels: images.bytes, labels: labels, shape: [1, images.dimensions[1], images.dimensions[2]])
    }

    /// A copy with every pixel replaced by 0 or 255, drawn as Bernoulli(pixel/255) from a
    /// generator seeded with `seed` (a fixed binarisation, as used for test sets).
    public func binarized(seed: UInt64) -> ImageDataset {
        var rng = RandomGenerator(seed: seed)
        let table = (0..<256).map { Float($0) / 255 }
        let out = pixels.map { p -> UInt8 in rng.nextFloat() < table[Int(p)] ? 255 : 0 }
        return ImageDataset(pixels: out, labels: labels, shape: shape)
    }
}

/// The data sets `vae` knows by name.
public enum DatasetName: String, CaseIterable, Sendable {
    case fashionMNIST = "fashion-mnist"
    case mnist

    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    public enum Split: Sendable { case train, test }

    /// Names of the ten classes, by label.
    public var classNames: [String] {
        switch self {
        case .fashionMNIST: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        case .mnist: (0..<10).map { "digit \($0)" }
        }
    }

    /// The standard MNIST-family file names for a split (without `.gz`).
    public static func fileNames(_ split: Split) -> (images: String, labels: String) {
        switch split {
        case .train: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        case .test: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        }
    }

    /// Loads a split from `directory` (the default location when nil), accepting each file
    /// gzipped (`.gz`) or not.
    public func load(_ split: Split, directory: String?) throws -> ImageDataset {
        let dir: String
        switch (self, directory) {
        case (_, let d?): dir = d
        case (.fashionMNIST, nil): dir = Self.fashionMNISTDirectory
        case (.mnist, nil):
            throw FileError(path: "mnist", reason: "MNIST is not installed with the system; pass --data-dir DIR holding the four standard MNIST files")
        }
        let names = Self.fileNames(split)
        func locate(_ name: String) throws -> String {
            for candidate in ["\(dir)/\(name).gz", "\(dir)/\(name)"] where Files.exists(candidate) { return candidate }
            let hint = self == .fashionMNIST && directory == nil ? " (install it with scripts/setup.sh, or: apt-get install dataset-fashion-mnist)" : ""
            throw FileError(path: "\(dir)/\(name).gz", reason: "no such file\(hint)")
        }
        return try ImageDataset.loadIDX(images: try locate(names.images), labels: try locate(names.labels))
    }
}
