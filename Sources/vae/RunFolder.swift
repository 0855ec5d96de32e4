import Datasets
import Files
import Foundation
import Tensor
import VAE

/// How a model was trained: saved as `config.json` beside the weights.
struct TrainingConfig: Codable, Equatable {
    var dataset: String
    var dataDirectory: String?
    var epochs: Int
    var batchSize: Int
    var learningRate: Float
    var seed: UInt64
    var binarize: Bool
    /// Seed of the fixed binarisation of the test set (when `binarize` is on).
    var testBinarizationSeed: UInt64
    /// What was minimised (absent in runs that predate objectives: the plain ELBO).
    var objective: TrainingObjective?
    /// Your own data (`dataset` = "files"): images, labels, test images and labels, or the
    /// fraction split off as the test set, and the shape given to flat rows.
    var dataPath: String?
    var labelsPath: String?
    var testDataPath: String?
    var testLabelsPath: String?
    var testSplit: Double?
    var imageShape: [Int]?
    /// Names of your own data's classes, by label.
    var userClassNames: [String]?
}

/// The contents of `RUN/config.json`.
struct RunConfig: Codable, Equatable {
    var model: ModelConfig
    var training: TrainingConfig
}

/// The files of a run folder.
struct RunFolder {
    let path: String

    var modelPath: String { "\(path)/model.safetensors" }
    var configPath: String { "\(path)/config.json" }
    var metricsPath: String { "\(path)/metrics.csv" }
    var samplesPath: String { "\(path)/samples.png" }
    var reconstructionsPath: String { "\(path)/reconstructions.png" }
    /// Weights, optimiser state and position, to continue training (`vae train --resume`).
    var checkpointPath: String { "\(path)/checkpoint.safetensors" }

    /// Seed used for every evaluation's ε, so a run's figures are reproducible.
    static let evaluationSeed: UInt64 = 0
    /// Seed of the test set's fixed binarisation.
    static let testBinarizationSeed: UInt64 = 0

    func readConfig() throws -> RunConfig {
        let bytes = try Files.read(configPath, limit: 1 << 20)
        do {
            let config = try JSONDecoder().decode(RunConfig.self, from: Data(bytes))
            try config.model.validate()
            return config
        } catch let error as ModelConfigError {
            throw FileError(path: configPath, reason: error.message)
        } catch {
            throw FileError(path: configPath, reason: "not a swift-vae run configuration (\(describe(error)))")
        }
    }

    func writeConfig(_ config: RunConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(Array(try encoder.encode(config)) + [10], to: configPath)
    }

    /// The trained model and its configuration; errors name the missing or bad file.
    func loadModel() throws -> (VariationalAutoencoder, RunConfig) {
        guard Files.isDirectory(path) else { throw FileError(path: path, reason: "no such run folder (create one with `vae train --out \(path)`)") }
        let config = try readConfig()
        let model = try Checkpoint.load(modelPath)
        guard model.config == config.model else {
            throw FileError(path: modelPath, reason: "model configuration differs from \(configPath)")
        }
        return (model, config)
    }
}

/// One-hot labels for a conditional model (nil for an unconditional one).
func oneHotLabels(_ labels: [Int], for model: VariationalAutoencoder) -> Tensor? {
    let k = model.config.conditionClasses
    guard k > 0 else { return nil }
    let t = Tensor(shape: [labels.count, k])
    for (r, l) in labels.enumerated() where l >= 0 && l < k { t[r * k + l] = 1 }
    return t
}

/// A loader over `dataset` that also makes one-hot labels when `model` is conditional.
func makeLoader(_ dataset: ImageDataset, batchSize: Int, for model: VariationalAutoencoder) -> BatchLoader {
    BatchLoader(dataset: dataset, batchSize: batchSize, shuffle: false, conditionClasses: model.config.conditionClasses)
}

extension TrainingConfig {
    static let userData = "files"

    var datasetName: DatasetName { DatasetName(rawValue: dataset) ?? .fashionMNIST }

    /// Names of the classes, by label.
    var classNames: [String] {
        dataset == Self.userData ? (userClassNames ?? (0..<10).map { "class \($0)" }) : datasetName.classNames
    }

    /// Training and test images as stored (before any binarisation).
    func loadSplits() throws -> (train: ImageDataset, test: ImageDataset) {
        guard dataset == Self.userData, let dataPath else {
            return (try datasetName.load(.train, directory: dataDirectory), try datasetName.load(.test, directory: dataDirectory))
        }
        let all = try UserData.load(dataPath, labels: labelsPath, imageShape: imageShape)
        if let testDataPath {
            let test = try UserData.load(testDataPath, labels: testLabelsPath, imageShape: imageShape)
            guard test.shape == all.shape else {
                throw CLIError("\(testDataPath) holds \(test.shape) images, \(dataPath) holds \(all.shape)")
            }
            return (all, test)
        }
        guard all.count >= 2 else { throw CLIError("\(dataPath) holds \(all.count) image; a test split needs at least 2") }
        let split = UserData.split(all, testFraction: testSplit ?? 0.1, seed: seed &+ 0x5EED_0003)
        return (split.train, split.test)
    }

    /// The test split as the model sees it (binarised once with a fixed seed if trained binarised).
    func loadTestSet() throws -> ImageDataset {
        let test = dataset == Self.userData ? try loadSplits().test : try datasetName.load(.test, directory: dataDirectory)
        return binarize ? test.binarized(seed: testBinarizationSeed) : test
    }
}

/// A readable one-line description of a decoding error.
func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        "bad value at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
    case DecodingError.dataCorrupted: "not valid JSON"
    default: "\(error)"
    }
}

/// A problem found while running a command (as opposed to a malformed flag): printed as one
/// line without the usage hint.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
