import Datasets
import Files
import VAE

/// The data of a run as the model sees it: the training set (raw: a binarised run resamples it
/// as it draws), the validation set held out of it (if any), and the test set; validation and
/// test are binarised once with a fixed seed when the run binarises.
public struct DataSplits: Sendable {
    public var train: ImageDataset
    public var validation: ImageDataset?
    public var test: ImageDataset
    /// Names of the classes, by label.
    public var classNames: [String]

    /// One example's shape, [channels, height, width].
    public var inputShape: [Int] { train.shape }

    /// Classes a conditional model needs: one more than the largest label (0 without labels).
    public var classCount: Int {
        let largest = [train.labels, validation?.labels, test.labels].compactMap { $0?.max() }.max() ?? -1
        return largest + 1
    }
}

extension ModelConfig {
    /// Throws unless `dataset` fits this model: one example's shape and, for a conditional model,
    /// labels within its classes. `role` names the set in the message ("test", …); `hint` is
    /// appended (for a run loaded from its folder: the data may have changed since training).
    public func check(_ dataset: ImageDataset, _ role: String, hint: String = "") throws {
        func shape(_ s: [Int]) -> String { s.map(String.init).joined(separator: "×") }
        guard dataset.count > 0 else { throw DataError("the \(role) set holds no images\(hint)") }
        guard dataset.shape == inputShape else {
            throw DataError("the \(role) images are \(shape(dataset.shape)), the model expects \(shape(inputShape))\(hint)")
        }
        guard isConditional else { return }
        guard let labels = dataset.labels else {
            throw DataError("the \(role) images have no labels, and the conditional model needs them\(hint)")
        }
        if let bad = labels.first(where: { $0 < 0 || $0 >= conditionClasses }) {
            throw DataError("the \(role) images have label \(bad), and the model knows labels 0…\(conditionClasses - 1)\(hint)")
        }
    }
}

/// A problem with the data of a run (sizes, labels) that is not a problem of one file.
public struct DataError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension TrainingConfig {
    /// The data set's built-in name (Fashion-MNIST for your own files).
    public var datasetName: DatasetName { DatasetName(rawValue: dataset) ?? .fashionMNIST }

    /// Names of the classes, by label (your own data's as recorded when the run was made).
    public var classNames: [String] {
        dataset == Self.userData ? (userClassNames ?? (0..<10).map { "class \($0)" }) : datasetName.classNames
    }

    /// Loads the training, validation and test sets.
    public func loadData() throws -> DataSplits {
        var (train, test) = try loadTrainAndTest()
        if let classes {
            guard let labels = train.labels else { throw DataError("--classes needs labelled training images") }
            let wanted = Set(classes)
            let kept = labels.indices.filter { wanted.contains(labels[$0]) }
            guard !kept.isEmpty else { throw DataError("no training image has a label in --classes \(classes.map(String.init).joined(separator: ","))") }
            train = train.subset(kept)
        }
        var validation: ImageDataset?
        if validationFraction > 0 {
            guard train.count >= 2 else { throw DataError("\(train.count) training image cannot be split for validation") }
            let split = UserData.split(train, testFraction: validationFraction, seed: RunSeeds(seed).validationSplit)
            (train, validation) = (split.train, split.test)
        }
        if binarize {
            test = test.binarized(seed: testBinarizationSeed)
            validation = validation?.binarized(seed: testBinarizationSeed)
        }
        var splits = DataSplits(train: train, validation: validation, test: test, classNames: classNames)
        if dataset == Self.userData && userClassNames == nil {
            splits.classNames = train.classNames ?? (0..<max(splits.classCount, 1)).map { "class \($0)" }
        }
        return splits
    }

    /// Training and test images as stored (before any binarisation or validation split).
    func loadTrainAndTest() throws -> (train: ImageDataset, test: ImageDataset) {
        guard dataset == Self.userData, let dataPath else {
            return (try datasetName.load(.train, directory: dataDirectory), try datasetName.load(.test, directory: dataDirectory))
        }
        let all = try UserData.load(dataPath, labels: labelsPath, imageShape: imageShape)
        if let testDataPath {
            let test = try UserData.load(testDataPath, labels: testLabelsPath, imageShape: imageShape)
            guard test.shape == all.shape else {
                throw DataError("\(testDataPath) holds \(test.shape) images, \(dataPath) holds \(all.shape)")
            }
            return (all, test)
        }
        guard all.count >= 2 else { throw DataError("\(dataPath) holds \(all.count) image; a test split needs at least 2") }
        let split = UserData.split(all, testFraction: testSplit ?? 0.1, seed: RunSeeds(seed).testSplit)
        return (split.train, split.test)
    }

    /// The test set as the model sees it (binarised once with a fixed seed if trained binarised),
    /// checked against `model`, so that data changed since training is refused, not fed to it.
    public func loadTestSet(for model: ModelConfig) throws -> ImageDataset {
        var test = dataset == Self.userData ? try loadTrainAndTest().test : try datasetName.load(.test, directory: dataDirectory)
        if binarize { test = test.binarized(seed: testBinarizationSeed) }
        try model.check(test, "test", hint: " (the data behind the run changed since it was trained?)")
        return test
    }
}

extension BatchLoader {
    /// An unshuffled loader over `dataset` for evaluating `model` (one-hot labels for a
    /// conditional model).
    public static func evaluation(_ dataset: ImageDataset, for model: VariationalAutoencoder, batchSize: Int = 1000) -> BatchLoader {
        BatchLoader(dataset: dataset, batchSize: batchSize, shuffle: false, conditionClasses: model.config.conditionClasses)
    }
}
