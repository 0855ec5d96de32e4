import Foundation
import NN
import Tensor
import Testing
import TestSupport
import VAE
import Datasets

func convModel(conditionClasses: Int = 0, upsampling: Upsampling = .transposed, likelihood: LikelihoodKind = .bernoulli, inputChannels: Int = 1, seed: UInt64 = 1) -> VariationalAutoencoder {
    var rng = RandomGenerator(seed: seed)
    let config = ModelConfig(
        architecture: .conv, inputShape: [inputChannels, 8, 8], latentDimension: 3, activation: .tanh, likelihood: likelihood,
        channels: [2, 3], upsampling: upsampling, conditionClasses: conditionClasses)
    return VariationalAutoencoder(config: config, rng: &rng)
}

func oneHot(_ labels: [Int], classes: Int) -> Tensor {
    let t = Tensor(shape: [labels.count, classes])
    for (r, l) in labels.enumerated() { t[r * classes + l] = 1 }
    return t
}

func checkELBOGradients(_ model: VariationalAutoencoder, _ x: Tensor, condition: Tensor? = nil, label: String, step: Float = 1e-2) {
    checkModelGradients(model, label: label, step: step, loss: {
        var rng = RandomGenerator(seed: 5)
        return model.negativeELBO(x, condition: condition, rng: &rng, computeGradients: false).meanNegativeELBO
    }, computeGradients: {
        var rng = RandomGenerator(seed: 5)
        model.negativeELBO(x, condition: condition, rng: &rng, computeGradients: true)
    })
}

@Test(arguments: [(Upsampling.transposed, LikelihoodKind.bernoulli, 1), (.nearest, .bernoulli, 1), (.transposed, .gaussianPixel, 1),
                  (.transposed, .gaussianPixel, 3), (.nearest, .bernoulli, 3)])
func convolutionalVAEGradientsForEveryParameter(upsampling: Upsampling, likelihood: LikelihoodKind, inputChannels: Int) {
    let model = convModel(upsampling: upsampling, likelihood: likelihood, inputChannels: inputChannels)
    let x = randomTensor([3, inputChannels, 8, 8], seed: 2, low: 0, high: 1)
    #expect(model.namedParameters.map(\.name).prefix(6) == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias", "encoder.5.weight", "encoder.5.bias"])
    // Three channels triple the Float32 loss and its rounding noise: a larger step (tanh is smooth).
    checkELBOGradients(model, x, label: "conv \(upsampling) \(likelihood) \(inputChannels) channels", step: inputChannels == 1 ? 1e-2 : 3e-2)
    var rng = RandomGenerator(seed: 1)
    #expect(model.generate(count: 2, rng: &rng).shape == [2, inputChannels, 8, 8])
}

@Test(arguments: Architecture.allCases)
func conditionalVAEGradientsAndTheLabelMatters(architecture: Architecture) {
    let model: VariationalAutoencoder
    if architecture == .conv {
        model = convModel(conditionClasses: 4)
    } else {
        var rng = RandomGenerator(seed: 1)
        model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [5], latentDimension: 2, activation: .tanh, conditionClasses: 4), rng: &rng)
    }
    let shape = [3] + model.config.inputShape
    let x = randomTensor(shape, seed: 2, low: 0, high: 1)
    checkELBOGradients(model, x, condition: oneHot([0, 3, 1], classes: 4), label: "conditional \(architecture)")
    var rng = RandomGenerator(seed: 5)
    let withLabels = model.negativeELBO(x, condition: oneHot([0, 3, 1], classes: 4), rng: &rng, computeGradients: false).meanNegativeELBO
    rng = RandomGenerator(seed: 5)
    let otherLabels = model.negativeELBO(x, condition: oneHot([2, 2, 2], classes: 4), rng: &rng, computeGradients: false).meanNegativeELBO
    #expect(withLabels != otherLabels)
    // Samples of one class: the decoder sees that label in every row.
    rng = RandomGenerator(seed: 1)
    #expect(model.generate(count: 2, condition: oneHot([1, 1], classes: 4), rng: &rng).shape == [2] + model.config.inputShape)
}

@Test func conditionalTrainingSplitsLabelsAcrossWorkers() throws {
    let x = randomTensor([7, 1, 8, 8], seed: 3, low: 0, high: 1)
    let labels = oneHot([0, 1, 2, 3, 0, 1, 2], classes: 4)
    func run(_ workers: Int) throws -> [[Float]] {
        let model = convModel(conditionClasses: 4, seed: 2)
        let trainer = Trainer(model: model, optimizer: SGD(parameters: model.parameters, learningRate: 0.05), rng: RandomGenerator(seed: 4), workers: workers)
        for _ in 0..<3 { _ = try trainer.trainStep(x, condition: labels) }
        return model.parameters.map { $0.value.toArray() }
    }
    for (a, b) in zip(try run(1), try run(2)) {
        for (p, q) in zip(a, b) { #expect(abs(p - q) <= 1e-5 * max(1, abs(p))) }
    }
}

@Test func conditionalImportanceSamplingAndIWAEUseEachImagesLabel() {
    let model = convModel(conditionClasses: 4, seed: 3)
    let x = randomTensor([4, 1, 8, 8], seed: 3, low: 0, high: 1)
    let labels = oneHot([0, 1, 2, 3], classes: 4)
    let whole = model.importanceSampledLogLikelihood(x, condition: labels, samples: 20, seed: 1)
    let split = DataParallel(model: model, workers: 2).importanceSampledLogLikelihood(x, condition: labels, samples: 20, seed: 1)
    for (a, b) in zip(whole, split) { #expect(abs(a.logLikelihood - b.logLikelihood) < 1e-6) }
    // IWAE objective gradient with a condition repeated over the samples.
    let eps = randomTensor([4 * 3, 3], seed: 4, low: -2, high: 2)
    checkModelGradients(model, label: "conditional IWAE", loss: {
        model.monteCarloObjective(x, condition: labels, noise: eps, samples: 3, computeGradients: false).meanObjective
    }, computeGradients: {
        model.monteCarloObjective(x, condition: labels, noise: eps, samples: 3, computeGradients: true)
    })
}

@Test func checkpointsRecordTheArchitecture() throws {
    let model = convModel(conditionClasses: 4, upsampling: .nearest)
    let path = temporaryDirectory() + "/conv.safetensors"
    try Checkpoint.save(model, to: path)
    let loaded = try Checkpoint.load(path)
    #expect(loaded.config == model.config && loaded.config.architecture == .conv && loaded.config.conditionClasses == 4)
    // A configuration written before these fields existed still loads (as an MLP, unconditional).
    let old = #"{"activation":"relu","architecture":"mlp","gaussianSigma":0.1,"hiddenSizes":[400],"inputShape":[1,28,28],"latentDimension":20,"likelihood":"bernoulli"}"#
    let config = try JSONDecoder().decode(ModelConfig.self, from: Data(old.utf8))
    #expect(config.channels == [32, 64] && config.conditionClasses == 0 && config.upsampling == .transposed)
    var bad = ModelConfig(architecture: .conv, inputShape: [1, 28, 28], channels: [8, 8, 8])
    #expect(throws: ModelConfigError.self) { try bad.validate() }  // 28 is not divisible by 8
    bad.channels = [8, 8]
    try bad.validate()
}

/// The encoder's input is data: no layer up to its first one with parameters computes an input
/// gradient (the label join and the layout conversion in front of it included); every later one
/// does. (The first convolution's input gradient was once computed and thrown away.)
@Test(arguments: Architecture.allCases, [0, 4])
func onlyTheEncodersDataLayersSkipTheirInputGradient(architecture: Architecture, classes: Int) {
    var rng = RandomGenerator(seed: 1)
    let model = architecture == .conv
        ? convModel(conditionClasses: classes)
        : VariationalAutoencoder(config: ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [5], latentDimension: 2, conditionClasses: classes), rng: &rng)
    let layers = model.encoder.layers
    guard let first = layers.firstIndex(where: { !$0.namedParameters.isEmpty }) else { Issue.record("no parameters"); return }
    #expect(first > 0 || (architecture == .mlp && classes == 0), "the case should have a layer in front of the first parametric one")
    #expect(layers[...first].allSatisfy { !$0.computesInputGradient })
    #expect(layers[(first + 1)...].allSatisfy { $0.computesInputGradient })
}
