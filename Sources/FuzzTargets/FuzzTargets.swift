import Datasets
import Foundation
import Imaging
import Reports
import Files
import SafeTensors
import Training
import VAE

/// Every parser of untrusted input, by name, for the fuzzers (`scripts/fuzz.sh`) and for the
/// regression tests that replay their corpus. Each call must return or throw, never crash,
/// hang or allocate without bound.
public enum FuzzTargets {
    public static let names = ["idx", "npy", "safetensors", "checkpoint", "png", "csv", "config", "run", "tfevents"]

    /// Parses `bytes` with parser `name`; returns whether the input was accepted.
    @discardableResult
    public static func run(_ name: String, _ bytes: [UInt8]) -> Bool {
        do {
            switch name {
            case "idx":
                var raw = bytes
                if Gzip.isCompressed(raw) { raw = try Gzip.decompress(raw, limit: 1 << 24) }
                _ = try IDXArray(bytes: raw, path: "fuzz", expectedDimensions: 3)
            case "npy":
                _ = try NPYArray(bytes: bytes)
            case "safetensors":
                let archive = try SafeTensorsArchive(bytes: bytes)
                for name in archive.tensors.keys where archive.tensors[name]?.dtype == .f32 { _ = try archive.floats(name) }
            case "checkpoint":
                _ = try Checkpoint.load(bytes: bytes, path: "fuzz")
            case "png":
                _ = try PNG.decode(bytes)
            case "csv":
                _ = try UserData.csv(text: String(decoding: bytes, as: UTF8.self), path: "fuzz")
            case "config":
                let config = try JSONDecoder().decode(ModelConfig.self, from: Data(bytes))
                try config.validate()
            case "run":
                // `bytes` as the config.json of a run folder whose checkpoint stays as trained:
                // resuming must accept it or refuse it with a message, never crash or allocate
                // a model the checkpoint does not back.
                // One fixture folder: inputs are tried one at a time (test cases run in parallel).
                RunFixture.lock.lock()
                defer { RunFixture.lock.unlock() }
                let folder = RunFixture.folder
                try Files.writeAtomically(bytes, to: folder.configPath)
                let run = try TrainingRun(resuming: folder, parallelism: .batch(workers: 1))
                _ = run.isTrainingDone
            case "tfevents":
                // A TensorBoard event file as a resumed run reads it back: its intact records.
                return !EventFile.records(bytes).isEmpty
            default:
                preconditionFailure("unknown fuzz target \(name)")
            }
            return true
        } catch {
            return false
        }
    }
}

/// A tiny run (16 images of 4×4, an MLP with one hidden layer of 4) with its first checkpoint,
/// at a fixed path so that its config.json (the seed of the `run` target) names real files.
enum RunFixture {
    static let path = "/tmp/swift-vae-fuzz-run"
    static let lock = NSLock()

    static let folder: RunFolder = {
        Files.removeTree(path)
        try! Files.createDirectory(path)
        let pixels = (0..<(16 * 16)).map { UInt8(($0 * 37) % 256) }
        try! Files.writeAtomically(npyBytes(pixels, shape: [16, 4, 4]), to: path + "/images.npy")
        var training = TrainingConfig(epochs: 1, batchSize: 8)
        training.useFiles(path + "/images.npy", testSplit: 0.25)
        let model = ModelConfig(inputShape: [1, 4, 4], hiddenSizes: [4], latentDimension: 2)
        let folder = RunFolder(path: path + "/run")
        _ = try! TrainingRun(
            creating: folder, config: RunConfig(model: model, training: training, runID: "0123456789abcdef"), parallelism: .batch(workers: 1))
        return folder
    }()

    /// A version-1 .npy file of unsigned bytes.
    static func npyBytes(_ values: [UInt8], shape: [Int]) -> [UInt8] {
        var header = Array("{'descr': '|u1', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", ")),), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 255), UInt8(header.count >> 8)] + header + values
    }
}
