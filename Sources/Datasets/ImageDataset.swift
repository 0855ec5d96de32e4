import Files
import Tensor

/// Images, one row of C·H·W values per example, with optional labels. Byte images (0…255)
/// stay bytes and are converted to Float32 in [0, 1] only when a batch is drawn, so memory
/// stays at one byte per pixel (47 MB for the 60,000 Fashion-MNIST training images); data that
/// arrive as floats in [0, 1] are kept as floats (`values`).
public struct ImageDataset: Sendable {
    /// Byte images (empty when the data are floats).
    public let pixels: [UInt8]
    /// Float images in [0, 1] (nil when the data are bytes).
    public let values: [Float]?
    public let labels: [Int]?
    /// One example's shape, [channels, height, width].
    public let shape: [Int]
    public let count: Int
    /// Names of the classes by label, when the data name them (PNG class sub-folders).
    public var classNames: [String]?

    public init(pixels: [UInt8], labels: [Int]?, shape: [Int]) {
        let size = shape.reduce(1, *)
        precondition(size > 0 && pixels.count % size == 0, "pixels do not divide into examples of \(shape)")
        precondition(labels == nil || labels!.count == pixels.count / size, "label count mismatch")
        self.pixels = pixels
        self.values = nil
        self.labels = labels
        self.shape = shape
        self.count = pixels.count / size
    }

    /// Float images, every value in [0, 1].
    public init(values: [Float], labels: [Int]?, shape: [Int]) {
        let size = shape.reduce(1, *)
        precondition(size > 0 && values.count % size == 0, "values do not divide into examples of \(shape)")
        precondition(labels == nil || labels!.count == values.count / size, "label count mismatch")
        self.pixels = []
        self.values = values
        self.labels = labels
        self.shape = shape
        self.count = values.count / size
    }

    /// Values per example.
    public var exampleSize: Int { shape.reduce(1, *) }

    /// Writes example `index` as floats in [0, 1].
    public func copyExample(_ index: Int, to out: UnsafeMutablePointer<Float>) {
        let n = exampleSize
        if let values {
            values.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + index * n, count: n) }
        } else {
            for k in 0..<n { out[k] = Float(pixels[index * n + k]) / 255 }
        }
    }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ImageDataset {
        let n = exampleSize
        let newLabels = labels.map { l in indices.map { l[$0] } }
        var result: ImageDataset
        if let values {
            var out = [Float]()
            out.reserveCapacity(indices.count * n)
            for i in indices { out += values[(i * n)..<((i + 1) * n)] }
            result = ImageDataset(values: out, labels: newLabels, shape: shape)
        } else {
            var out = [UInt8]()
            out.reserveCapacity(indices.count * n)
            for i in indices { out += pixels[(i * n)..<((i + 1) * n)] }
            result = ImageDataset(pixels: out, labels: newLabels, shape: shape)
        }
        result.classNames = classNames
        return result
    }

    /// The first `n` examples.
    public func prefix(_ n: Int) -> ImageDataset {
        subset(Array(0..<min(n, count)))
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
        var result: ImageDataset
        if let values {
            result = ImageDataset(pixels: values.map { rng.nextFloat() < $0 ? 255 : 0 }, labels: labels, shape: shape)
        } else {
            let table = (0..<256).map { Float($0) / 255 }
            result = ImageDataset(pixels: pixels.map { p -> UInt8 in rng.nextFloat() < table[Int(p)] ? 255 : 0 }, labels: labels, shape: shape)
        }
        result.classNames = classNames
        return result
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
