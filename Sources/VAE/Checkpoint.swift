import Files
import Foundation
import NN
import SafeTensors
import Tensor

/// A checkpoint that cannot be loaded into a model; the message names the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }
    public var description: String { "\(path): \(problem)" }
}

/// Model checkpoints as safetensors files: one F32 tensor per parameter, named by module path
/// (`encoder.0.weight`, …), with the `ModelConfig` as JSON under `__metadata__["config"]`.
public enum Checkpoint {
    public static let formatName = "swift-vae"

    /// The file's bytes for `model` (plus any extra metadata strings).
    public static func serialize(_ model: VariationalAutoencoder, metadata: [String: String] = [:]) -> [UInt8] {
        var writer = SafeTensorsWriter(metadata: metadata)
        writer.metadata["format"] = formatName
        writer.metadata["config"] = encodeConfig(model.config)
        for (name, p) in model.namedParameters {
            writer.add(name, shape: p.value.shape, floats: UnsafeBufferPointer(p.value.buffer))
        }
        return writer.serialize()
    }

    /// Writes `model` to `path` atomically.
    public static func save(_ model: VariationalAutoencoder, to path: String, metadata: [String: String] = [:]) throws {
        try Files.writeAtomically(serialize(model, metadata: metadata), to: path)
    }

    /// Rebuilds the model a checkpoint describes and loads its weights.
    public static func load(_ path: String) throws -> VariationalAutoencoder {
        try load(bytes: try Files.read(path), path: path)
    }

    /// Rebuilds the model described by checkpoint bytes (`path` names them in errors). The
    /// configuration may describe at most 2²⁰ more parameters than the file holds values, so a
    /// small file cannot make the loader allocate a huge model (a missing tensor is then named
    /// by the checks that follow).
    public static func load(bytes: [UInt8], path: String) throws -> VariationalAutoencoder {
        let archive: SafeTensorsArchive
        do {
            archive = try SafeTensorsArchive(bytes: bytes)
        } catch let error as SafeTensorsError {
            throw CheckpointError(path: path, problem: error.description)
        }
        guard let json = archive.metadata["config"] else {
            throw CheckpointError(path: path, problem: "no model configuration in the header's __metadata__ (not a swift-vae checkpoint?)")
        }
        let config: ModelConfig
        do {
            config = try JSONDecoder().decode(ModelConfig.self, from: Data(json.utf8))
            try config.validate()
        } catch let error as ModelConfigError {
            throw CheckpointError(path: path, problem: "bad model configuration: \(error.message)")
        } catch {
            throw CheckpointError(path: path, problem: "unreadable model configuration in __metadata__")
        }
        let stored = archive.tensors.values.reduce(0) { $0 + $1.dataRange.count } / 4
        guard config.parameterCount <= Double(stored + (1 << 20)) else {
            throw CheckpointError(path: path, problem: "the configuration describes \(Int(config.parameterCount)) parameters but the file holds \(stored) values")
        }
        var rng = RandomGenerator(seed: 0)
        let model = VariationalAutoencoder(config: config, rng: &rng)
        try loadWeights(archive, into: model, path: path)
        return model
    }

    /// Copies the archive's tensors into `model`, checking that names, dtypes and shapes match
    /// exactly (no tensor missing, none left over).
    public static func loadWeights(_ archive: SafeTensorsArchive, into model: VariationalAutoencoder, path: String) throws {
        let expected = model.namedParameters
        let expectedNames = Set(expected.map(\.name))
        if let extra = archive.tensors.keys.sorted().first(where: { !expectedNames.contains($0) }) {
            throw CheckpointError(path: path, problem: "unexpected tensor '\(extra)' for this model")
        }
        for (name, p) in expected {
            guard let info = archive.tensors[name] else {
                throw CheckpointError(path: path, problem: "tensor '\(name)' is missing")
            }
            guard info.dtype == .f32 else {
                throw CheckpointError(path: path, problem: "tensor '\(name)' has dtype \(info.dtype.rawValue), expected F32")
            }
            guard info.shape == p.value.shape else {
                throw CheckpointError(path: path, problem: "tensor '\(name)' has shape \(info.shape), expected \(p.value.shape)")
            }
            let values = try archive.floats(name)
            values.withUnsafeBufferPointer { p.value.data.update(from: $0.baseAddress!, count: values.count) }
        }
    }

    public static func encodeConfig(_ config: ModelConfig) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(config), as: UTF8.self)
    }
}
