import Files
import Foundation
import NN
import SafeTensors
import Tensor
import Testing
import TestSupport
import VAE

@Test func checkpointRoundTripIsBitForBit() throws {
    let model = smallModel(activation: .softplus, likelihood: .gaussian, seed: 9)
    let path = temporaryDirectory() + "/model.safetensors"
    try Checkpoint.save(model, to: path)
    let loaded = try Checkpoint.load(path)
    #expect(loaded.config == model.config)
    for ((n1, p1), (n2, p2)) in zip(model.namedParameters, loaded.namedParameters) {
        #expect(n1 == n2)
        #expect(p1.value.toArray().map(\.bitPattern) == p2.value.toArray().map(\.bitPattern))
    }
    // Saving the loaded model reproduces the file byte for byte.
    #expect(Checkpoint.serialize(loaded) == (try Files.read(path)))
}

/// Writes a safetensors file with the given tensors and config metadata.
func writeArchive(_ tensors: [(String, [Int])], config: String?, dtype16: String? = nil, path: String) throws {
    var writer = SafeTensorsWriter()
    if let config { writer.metadata["config"] = config }
    for (name, shape) in tensors { writer.add(name, shape: shape, floats: [Float](repeating: 0.5, count: shape.reduce(1, *))) }
    try Files.writeAtomically(writer.serialize(), to: path)
}

@Test func mismatchedCheckpointsAreRefusedWithClearErrors() throws {
    let model = smallModel()
    let config = Checkpoint.encodeConfig(model.config)
    let good = model.namedParameters.map { ($0.name, $0.parameter.shape) }
    let dir = temporaryDirectory()
    func loadError(_ tensors: [(String, [Int])], config: String?) throws -> String {
        let path = dir + "/m.safetensors"
        try writeArchive(tensors, config: config, path: path)
        do {
            _ = try Checkpoint.load(path)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }
    #expect(try loadError(good, config: config) == "loaded")
    var wrongShape = good
    wrongShape[2].1 = [6, 5]
    #expect(try loadError(wrongShape, config: config).contains("tensor 'encoder.2.weight' has shape [6, 5], expected [4, 5]"))
    #expect(try loadError(Array(good.dropLast()), config: config).contains("tensor 'decoder.4.bias' is missing"))
    #expect(try loadError(good + [("decoder.9.weight", [1])], config: config).contains("unexpected tensor 'decoder.9.weight'"))
    #expect(try loadError(good, config: nil).contains("no model configuration"))
    #expect(try loadError(good, config: "{\"architecture\": 3}").contains("unreadable model configuration"))
    let badLatent = config.replacingOccurrences(of: "\"latentDimension\":3", with: "\"latentDimension\":0")
    #expect(try loadError(good, config: badLatent).contains("bad model configuration: --latent must be between 1 and 4096"))
    let path = dir + "/m.safetensors"
    try Files.writeAtomically([1, 2, 3], to: path)
    #expect(throws: CheckpointError.self) { try Checkpoint.load(path) }
    #expect(throws: FileError.self) { try Checkpoint.load(dir + "/absent.safetensors") }
}

@Test func checkpointRefusesNonFloat32Tensors() throws {
    let model = smallModel()
    // Hand-build a file whose first tensor is F64.
    var header = "{\"__metadata__\":{\"config\":\(jsonQuoted(Checkpoint.encodeConfig(model.config)))}"
    var offset = 0
    var data: [UInt8] = []
    for (i, (name, p)) in model.namedParameters.enumerated() {
        let size = p.value.count * (i == 0 ? 8 : 4)
        header += ",\"\(name)\":{\"dtype\":\"\(i == 0 ? "F64" : "F32")\",\"shape\":\(p.shape),\"data_offsets\":[\(offset),\(offset + size)]}"
        data += [UInt8](repeating: 0, count: size)
        offset += size
    }
    header += "}"
    var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init)
    bytes += Array(header.utf8) + data
    let path = temporaryDirectory() + "/f64.safetensors"
    try Files.writeAtomically(bytes, to: path)
    #expect(throws: CheckpointError.self) { try Checkpoint.load(path) }
    do { _ = try Checkpoint.load(path) } catch { #expect("\(error)".contains("dtype F64, expected F32")) }
}

func jsonQuoted(_ s: String) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: [s]), as: UTF8.self).dropFirst().dropLast().description
}

@Test func parameterCountMatchesTheBuiltModels() {
    for config in [
        ModelConfig(), ModelConfig(hiddenSizes: [64, 32], likelihood: .gaussianPixel, conditionClasses: 10),
        ModelConfig(architecture: .conv), ModelConfig(architecture: .conv, inputShape: [3, 16, 16], channels: [4, 8], upsampling: .nearest, conditionClasses: 3),
        ModelConfig(hiddenSizes: [], likelihood: .gaussianShared),
    ] {
        var rng = RandomGenerator(seed: 1)
        #expect(Double(VariationalAutoencoder(config: config, rng: &rng).parameterCount) == config.parameterCount, "\(config)")
    }
    let absurd = ModelConfig(inputShape: [1, 4096, 4096], hiddenSizes: [65536, 65536])
    #expect(throws: ModelConfigError.self) { try absurd.validate() }
}

@Test func aSmallFileCannotDescribeAHugeModel() throws {
    // A valid header whose configuration asks for ~4.5·10⁸ parameters (under the cap), with one tiny tensor.
    var writer = SafeTensorsWriter()
    writer.metadata["config"] = Checkpoint.encodeConfig(ModelConfig(inputShape: [1, 500, 500], hiddenSizes: [900]))
    writer.add("encoder.0.weight", shape: [1], floats: [0])
    do {
        _ = try Checkpoint.load(bytes: writer.serialize(), path: "tiny.safetensors")
        Issue.record("loaded")
    } catch {
        #expect("\(error)".contains("tiny.safetensors: the configuration describes"), "\(error)")
    }
}
