import Files
import Foundation
import Imaging
import Tensor

/// Reading the user's own images: NumPy `.npy`, a folder of PNG files, or CSV.
///
/// Scaling to [0, 1], one rule for every format: bytes (uint8, and 8-bit PNG) are divided by
/// 255; floating-point data already within [0, 1] are kept; floating-point data within
/// [0, 255] are divided by 255; anything else, and NaN or ±∞, is refused.
public enum UserData {
    /// Loads images from `path` (a `.npy` or `.csv` file, or a folder of `.png` files), with
    /// labels from `labelsPath` (`.npy` of integers) or, for CSV, a column named `label`, or,
    /// for a PNG folder of class sub-folders, the sub-folder index. `imageShape` gives [C, H, W]
    /// to rows of flat values ([N, D] arrays and CSV); by default they are [1, 1, D].
    public static func load(_ path: String, labels labelsPath: String? = nil, imageShape: [Int]? = nil) throws -> ImageDataset {
        var data: ImageDataset
        if Files.isDirectory(path) {
            data = try pngFolder(path)
        } else if path.lowercased().hasSuffix(".csv") {
            data = try csv(path, imageShape: imageShape)
        } else {
            data = try npyImages(path, imageShape: imageShape)
        }
        if let labelsPath {
            let labels = try npyLabels(labelsPath)
            guard labels.count == data.count else {
                throw FileError(path: labelsPath, reason: "holds \(labels.count) labels for the \(data.count) images of \(path)")
            }
            data = data.values.map { ImageDataset(values: $0, labels: labels, shape: data.shape) }
                ?? ImageDataset(pixels: data.pixels, labels: labels, shape: data.shape)  // (named classes are replaced too)
        }
        return data
    }

    /// A seeded split: `fraction` of the examples (at least one) become the test set.
    public static func split(_ data: ImageDataset, testFraction fraction: Double, seed: UInt64) -> (train: ImageDataset, test: ImageDataset) {
        var order = Array(0..<data.count)
        var rng = RandomGenerator(seed: seed)
        rng.shuffle(&order)
        let testCount = min(data.count - 1, max(1, Int((Double(data.count) * fraction).rounded())))
        return (data.subset(Array(order[testCount...])), data.subset(Array(order[..<testCount])))
    }

    static func npyImages(_ path: String, imageShape: [Int]?) throws -> ImageDataset {
        let array: NPYArray
        do {
            array = try NPYArray(bytes: try Files.read(path))
        } catch let error as NPYError {
            throw FileError(path: path, reason: error.description)
        }
        let n = array.shape[0]
        guard n > 0 else { throw FileError(path: path, reason: "holds no examples") }
        let rowShape: [Int]
        switch array.shape.count {
        case 2: rowShape = [1, 1, array.shape[1]]
        case 3: rowShape = [1, array.shape[1], array.shape[2]]
        case 4: rowShape = Array(array.shape[1...])
        default: throw FileError(path: path, reason: "shape \(array.shape) is not [N, H, W], [N, C, H, W] or [N, D]")
        }
        let shape = try reshaped(rowShape, imageShape, path: path)
        switch array.elements {
        case .uint8(let bytes): return ImageDataset(pixels: bytes, labels: nil, shape: shape)
        case .float32(let v): return ImageDataset(values: try scaled(v.lazy.map(Double.init), count: v.count, path: path), labels: nil, shape: shape)
        case .float64(let v): return ImageDataset(values: try scaled(v.lazy, count: v.count, path: path), labels: nil, shape: shape)
        case .int64: throw FileError(path: path, reason: "integer images are not supported: save them as uint8 or float32")
        }
    }

    /// The whole numbers of a `.npy` file (labels, or 0/1 marks), with errors naming it.
    public static func npyLabels(_ path: String) throws -> [Int] {
        let array: NPYArray
        do {
            array = try NPYArray(bytes: try Files.read(path))
        } catch let error as NPYError {
            throw FileError(path: path, reason: error.description)
        }
        guard array.shape.count == 1 else { throw FileError(path: path, reason: "labels must be a 1-D array, not \(array.shape)") }
        let labels: [Int]
        switch array.elements {
        case .uint8(let v): labels = v.map(Int.init)
        case .int64(let v): labels = v.map { Int(clamping: $0) }
        case .float32(let v): labels = v.map { $0.isFinite && $0 == $0.rounded() && abs($0) < 1e6 ? Int($0) : -1 }
        case .float64(let v): labels = v.map { $0.isFinite && $0 == $0.rounded() && abs($0) < 1e6 ? Int($0) : -1 }
        }
        guard labels.allSatisfy({ $0 >= 0 && $0 < 1000 }) else { throw FileError(path: path, reason: "labels must be whole numbers from 0 to 999") }
        return labels
    }

    /// PNG files directly in `path`, or in class sub-folders (labels = sub-folder order).
    static func pngFolder(_ path: String) throws -> ImageDataset {
        guard let entries = Files.contents(ofDirectory: path) else { throw FileError(path: path, reason: "cannot list the folder") }
        let classes = entries.filter { Files.isDirectory("\(path)/\($0)") }
        var files: [(String, Int?)] = entries.filter { $0.lowercased().hasSuffix(".png") }.map { ("\(path)/\($0)", nil) }
        let labelled = classes.filter { (Files.contents(ofDirectory: "\(path)/\($0)") ?? []).contains { $0.lowercased().hasSuffix(".png") } }
        if !files.isEmpty && !labelled.isEmpty {
            // Either layout alone is clear; both at once would silently drop the labels.
            throw FileError(path: path, reason: "holds both .png files (\(files[0].0.split(separator: "/").last!)\(files.count > 1 ? ", …" : "")) and class sub-folders of .png files (\(labelled[0])\(labelled.count > 1 ? ", …" : "")); keep one layout: images directly in the folder (unlabelled) or only in class sub-folders (labelled)")
        }
        if files.isEmpty {
            for (label, name) in classes.enumerated() {
                let sub = "\(path)/\(name)"
                files += (Files.contents(ofDirectory: sub) ?? []).filter { $0.lowercased().hasSuffix(".png") }.map { ("\(sub)/\($0)", label) }
            }
        }
        guard !files.isEmpty else { throw FileError(path: path, reason: "holds no .png files (directly or in class sub-folders)") }
        var pixels: [UInt8] = []
        var shape: [Int]?
        for (file, _) in files {
            let image: Image
            do {
                image = try PNG.decode(try Files.read(file, limit: 1 << 28))
            } catch let error as PNGError {
                throw FileError(path: file, reason: error.description)
            }
            let s = [image.channels, image.height, image.width]
            if let shape, shape != s {
                throw FileError(path: file, reason: "is \(s[2])×\(s[1]) with \(s[0]) channel(s), unlike the first image (\(shape[2])×\(shape[1]), \(shape[0]))")
            }
            shape = s
            // Interleaved HWC → planar CHW.
            for c in 0..<image.channels {
                for i in 0..<(image.width * image.height) { pixels.append(image.pixels[i * image.channels + c]) }
            }
        }
        let labels = files.allSatisfy { $0.1 != nil } ? files.map { $0.1! } : nil
        var data = ImageDataset(pixels: pixels, labels: labels, shape: shape!)
        if labels != nil { data.classNames = classes }
        return data
    }

    /// CSV: one example per row, numbers only; an optional header row, whose column named
    /// `label` (if any) holds the labels.
    static func csv(_ path: String, imageShape: [Int]?) throws -> ImageDataset {
        try csv(text: String(decoding: try Files.read(path), as: UTF8.self), path: path, imageShape: imageShape)
    }

    /// Parses CSV text (`path` names it in errors).
    public static func csv(text: String, path: String, imageShape: [Int]? = nil) throws -> ImageDataset {
        // Lines end with \n or \r\n only (not every Unicode line break: a vertical tab is data).
        var lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !lines.isEmpty else { throw FileError(path: path, reason: "is empty") }
        var labelColumn: Int?
        var width: Int?
        let first = lines[0].split(separator: ",", omittingEmptySubsequences: false)
        if first.contains(where: { Double($0.trimmingCharacters(in: .whitespaces)) == nil }) {
            labelColumn = first.firstIndex { $0.trimmingCharacters(in: .whitespaces).lowercased() == "label" }
            width = first.count  // every row has the header's columns
            lines.removeFirst()
        }
        guard !lines.isEmpty else { throw FileError(path: path, reason: "has a header but no rows") }
        var values: [Double] = [], labels: [Int] = []
        for (i, line) in lines.enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if let width, fields.count != width {
                throw FileError(path: path, reason: "row \(i + 1) has \(fields.count) columns, expected \(width)")
            }
            width = fields.count
            for (j, field) in fields.enumerated() {
                guard let v = Double(field) else { throw FileError(path: path, reason: "row \(i + 1), column \(j + 1): '\(field.prefix(20))' is not a number") }
                if j == labelColumn {
                    guard v == v.rounded(), v >= 0, v < 1000 else { throw FileError(path: path, reason: "row \(i + 1): label \(field) is not a whole number from 0 to 999") }
                    labels.append(Int(v))
                } else {
                    values.append(v)
                }
            }
        }
        let d = width! - (labelColumn == nil ? 0 : 1)
        guard d > 0 else { throw FileError(path: path, reason: "has no data columns") }
        let shape = try reshaped([1, 1, d], imageShape, path: path)
        return ImageDataset(values: try scaled(values.lazy, count: values.count, path: path), labels: labelColumn == nil ? nil : labels, shape: shape)
    }

    /// The row shape after `--image-shape`, which must hold the same number of values.
    static func reshaped(_ rowShape: [Int], _ imageShape: [Int]?, path: String) throws -> [Int] {
        guard let imageShape else { return rowShape }
        guard imageShape.count == 3, imageShape.reduce(1, *) == rowShape.reduce(1, *) else {
            throw FileError(path: path, reason: "rows of \(rowShape.reduce(1, *)) values cannot be shaped as \(imageShape)")
        }
        return imageShape
    }

    /// Floats scaled by the documented rule.
    static func scaled<S: Sequence>(_ values: S, count: Int, path: String) throws -> [Float] where S.Element == Double {
        var low = Double.infinity, high = -Double.infinity
        for v in values {
            guard v.isFinite else { throw FileError(path: path, reason: "holds NaN or infinite values") }
            low = min(low, v)
            high = max(high, v)
        }
        guard count > 0 else { return [] }
        guard low >= 0 && high <= 255 else {
            throw FileError(path: path, reason: "values span [\(low), \(high)]; scale them to [0, 1] (or bytes 0…255)")
        }
        let divisor = high <= 1 ? 1.0 : 255.0
        return values.map { Float($0 / divisor) }
    }
}
