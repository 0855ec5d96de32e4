import Datasets
import Foundation
import Imaging
import SafeTensors
import VAE

/// Every parser of untrusted input, by name, for the fuzzers (`scripts/fuzz.sh`) and for the
/// regression tests that replay their corpus. Each call must return or throw, never crash,
/// hang or allocate without bound.
public enum FuzzTargets {
    public static let names = ["idx", "npy", "safetensors", "checkpoint", "png", "csv", "config"]

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
            default:
                preconditionFailure("unknown fuzz target \(name)")
            }
            return true
        } catch {
            return false
        }
    }
}
