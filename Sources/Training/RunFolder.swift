import Datasets
import Files
import Foundation
import VAE

/// The files of a run folder.
public struct RunFolder: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// The final weights (after the last epoch trained).
    public var modelPath: String { "\(path)/model.safetensors" }
    /// The weights of the epoch with the best validation −ELBO (runs with a validation split).
    public var bestModelPath: String { "\(path)/best.safetensors" }
    public var configPath: String { "\(path)/config.json" }
    public var metricsPath: String { "\(path)/metrics.csv" }
    public var samplesPath: String { "\(path)/samples.png" }
    public var reconstructionsPath: String { "\(path)/reconstructions.png" }
    /// Weights, optimiser state and position, to continue training (`vae train --resume`).
    public var checkpointPath: String { "\(path)/checkpoint.safetensors" }

    /// Which saved weights to load.
    public enum Weights: String, CaseIterable, Sendable {
        /// `model.safetensors`: the weights after the last epoch.
        case final
        /// `best.safetensors`: the weights of the best validation epoch.
        case best
    }

    public func readConfig() throws -> RunConfig {
        let bytes = try Files.read(configPath, limit: 1 << 20)
        let config: RunConfig
        do {
            config = try JSONDecoder().decode(RunConfig.self, from: Data(bytes))
        } catch let error as ModelConfigError {
            throw FileError(path: configPath, reason: error.message)
        } catch {
            throw FileError(path: configPath, reason: "not a swift-vae run configuration (\(describe(error)))")
        }
        do {
            try config.validate()
        } catch let error as ConfigurationError {
            throw FileError(path: configPath, reason: error.message)
        }
        return config
    }

    public func writeConfig(_ config: RunConfig) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(Array(try encoder.encode(config)) + [10], to: configPath)
    }

    /// `RUN/snapshots/epoch-NNNN.safetensors`: the weights after epoch `epoch`, kept when the run
    /// has it in `snapshotEpochs`.
    public func snapshotPath(epoch: Int) -> String {
        let n = String(epoch)
        return "\(path)/snapshots/epoch-\(String(repeating: "0", count: max(0, 4 - n.count)) + n).safetensors"
    }

    /// A trained model (the final or the best weights, or the snapshot after `epoch`) and its
    /// configuration; errors name the missing or bad file.
    public func loadModel(_ weights: Weights = .final, epoch: Int? = nil) throws -> (VariationalAutoencoder, RunConfig) {
        guard Files.isDirectory(path) else { throw FileError(path: path, reason: "no such run folder (create one with `vae train --out \(path)`)") }
        let config = try readConfig()
        if let epoch {
            let file = snapshotPath(epoch: epoch)
            guard Files.exists(file) else {
                let kept = config.training.snapshotEpochs ?? []
                throw FileError(path: file, reason: kept.contains(epoch)
                    ? "not written yet: the run is \(stateDescription)"
                    : "no snapshot of epoch \(epoch): the run keeps \(kept.isEmpty ? "none (train with --snapshot-epochs)" : "epochs " + kept.map(String.init).joined(separator: ", "))")
            }
            let model = try Checkpoint.load(file)
            guard model.config == config.model else { throw FileError(path: file, reason: "model configuration differs from \(configPath)") }
            return (model, config)
        }
        let file = weights == .best ? bestModelPath : modelPath
        if weights == .final && !Files.exists(file) {
            throw FileError(path: file, reason: "not written yet: the run is \(stateDescription)")
        }
        if weights == .best && !Files.exists(file) {
            throw FileError(path: file, reason: config.training.validationFraction > 0
                ? "no best weights yet (they are written after the first epoch)"
                : "no best weights: the run has no validation split (train with --validation-split)")
        }
        let model = try Checkpoint.load(file)
        guard model.config == config.model else {
            throw FileError(path: file, reason: "model configuration differs from \(configPath)")
        }
        return (model, config)
    }
}

/// A readable one-line description of a decoding error.
func describe(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, _): "missing field '\(key.stringValue)'"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        "bad value at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
    case DecodingError.dataCorrupted(let context) where !context.codingPath.isEmpty:
        "bad value at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
    case DecodingError.dataCorrupted: "not valid JSON"
    default: "\(error)"
    }
}
