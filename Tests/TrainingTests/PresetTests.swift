import Datasets
import Files
import Foundation
import NN
import Tensor
import Testing
import TestSupport
@testable import Training
@testable import VAE

/// `--preset NAME` becomes its flags where it stands; later flags override them (the parser keeps
/// the last value of an option); an unknown name is refused with the known ones.
@Test func presetsExpandInPlace() throws {
    let expanded = try Preset.expand(["train", "--preset", "iwae-paper", "--epochs", "121", "--out", "r"])
    #expect(expanded.first == "train" && expanded.suffix(4) == ["--epochs", "121", "--out", "r"])
    #expect(Array(expanded.dropFirst().prefix(Preset.iwaePaper.arguments.count)) == Preset.iwaePaper.arguments)
    #expect(try Preset.expand(["--preset=iwae-paper"]) == Preset.iwaePaper.arguments)
    // The paper's figures (Burda et al. 2015, section 5 and appendix): batch 20, Adam ε 1e-4, latent 50, 200-unit tanh layers.
    let a = Preset.iwaePaper.arguments
    func value(_ flag: String) -> String? { a.firstIndex(of: flag).map { a[$0 + 1] } }
    #expect(value("--batch-size") == "20" && value("--adam-epsilon") == "1e-4" && value("--latent") == "50")
    #expect(value("--hidden") == "200,200" && value("--activation") == "tanh" && value("--lr-schedule") == "iwae" && value("--epochs") == "3280")
    #expect(a.contains("--binarize"))
    // For a command without some of the flags, they go with their values.
    let bench = try Preset.expand(["bench", "--preset", "iwae-paper"], dropping: ["--binarize", "--epochs", "--lr-schedule"])
    #expect(!bench.contains("--binarize") && !bench.contains("--epochs") && !bench.contains("3280") && !bench.contains("iwae"))
    #expect(bench.count == 1 + a.count - 5 && bench.contains("--batch-size") && bench.contains("--adam-epsilon"))
    #expect(throws: ConfigurationError.self) { try Preset.expand(["--preset", "nope"]) }
    #expect(throws: ConfigurationError.self) { try Preset.expand(["--preset"]) }
}

/// Glorot-uniform weights lie in ±√(6/(in + out)) and fill that range; the biases start at 0.
@Test func glorotInitialisationKeepsItsBounds() {
    var rng = RandomGenerator(seed: 3)
    let layer = Linear(200, 50, rng: &rng, initialization: .glorot)
    let bound = (6.0 / 250.0).squareRoot()
    let w = layer.weight.value.toArray()
    #expect(w.allSatisfy { abs(Double($0)) <= bound })
    #expect(Double(w.map(abs).max()!) > 0.98 * bound)
    #expect(layer.bias.value.toArray().allSatisfy { $0 == 0 })
    // The default stays PyTorch's: ±1/√in, with random biases.
    let torch = Linear(200, 50, rng: &rng)
    #expect(torch.weight.value.toArray().allSatisfy { abs($0) <= 1 / Float(200).squareRoot() })
    #expect(torch.bias.value.toArray().contains { $0 != 0 })
}

/// With `outputBiasFromData` a new run's last decoder bias is logit(clip(mean pixel, 0.001,
/// 0.999)) of the training images (computed here by a plain loop over the IDX bytes); the
/// weights after chosen epochs are kept as snapshots that load like the final model.
@Test func outputBiasFromDataAndSnapshots() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    var config = tinyConfig(dir, epochs: 3) { $0.snapshotEpochs = [1, 3] }
    config.model.outputBiasFromData = true
    config.model.initialization = .glorot
    let run = try TrainingRun(creating: RunFolder(path: dir + "/run"), config: config, parallelism: .batch(workers: 1))
    let last = run.model.decoder.layers.last { $0 is Linear } as! Linear
    // Reference: the tiny set's training images (the first 96 of the IDX file, no split).
    let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/train-images-idx3-ubyte")).dropFirst(16))
    for j in [0, 7, 9, 63] {
        var sum = 0.0
        for k in 0..<96 { sum += Double(bytes[k * 64 + j]) / 255 }
        let mean = min(max(sum / 96, 0.001), 0.999)
        #expect(abs(Double(last.bias.value[j]) - Foundation.log(mean / (1 - mean))) < 1e-5, "pixel \(j)")
    }
    _ = try run.train()
    let folder = RunFolder(path: dir + "/run")
    #expect(FileManager.default.fileExists(atPath: folder.snapshotPath(epoch: 1)))
    #expect(!FileManager.default.fileExists(atPath: folder.snapshotPath(epoch: 2)))
    let (final, _) = try folder.loadModel()
    let (third, _) = try folder.loadModel(epoch: 3)
    #expect(final.parameters.map { $0.value.toArray() } == third.parameters.map { $0.value.toArray() })
    let (first, _) = try folder.loadModel(epoch: 1)
    #expect(first.parameters.map { $0.value.toArray() } != third.parameters.map { $0.value.toArray() })
    #expect(throws: FileError.self) { try folder.loadModel(epoch: 2) }
    // Refused where it does not apply.
    var conv = config.model
    conv.likelihood = .gaussian
    #expect(throws: ModelConfigError.self) { try conv.validate() }
}
