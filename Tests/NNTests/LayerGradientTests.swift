import Foundation
import NN
import Tensor
import Testing
import TestSupport

/// Checks a layer's backward pass against central differences of L = Σ r ⊙ layer(x), for the
/// input and every parameter.
func checkLayerGradients(_ layer: Layer, input x: Tensor, seed: UInt64 = 11, step: Float = 1e-2, atol: Double = 1e-3, rtol: Double = 1e-2) {
    let y = layer(x)
    let r = randomTensor(y.shape, seed: seed)
    let loss = { weightedSum(layer(x), r) }
    _ = layer(x)
    let dx = layer.backward(r)
    if layer.computesInputGradient {
        guard let dx else { Issue.record("no input gradient"); return }
        let analytic = dx.toArray()
        let m = gradientMismatch(analytic: analytic, numeric: numericalGradient(of: loss, wrt: x, step: step), atol: atol, rtol: rtol)
        #expect(m.excess <= 0, "input gradient[\(m.index)]: analytic \(m.analytic) vs numeric \(m.numeric)")
    }
    for (name, p) in layer.namedParameters {
        let analytic = p.gradient.toArray()
        let m = gradientMismatch(analytic: analytic, numeric: numericalGradient(of: loss, wrt: p.value, step: step), atol: atol, rtol: rtol)
        #expect(m.excess <= 0, "\(name) gradient[\(m.index)]: analytic \(m.analytic) vs numeric \(m.numeric)")
    }
}

@Test func linearGradients() {
    var rng = RandomGenerator(seed: 1)
    checkLayerGradients(Linear(5, 4, rng: &rng), input: randomTensor([3, 5], seed: 2))
}

@Test func linearForwardMatchesDefinition() {
    var rng = RandomGenerator(seed: 1)
    let layer = Linear(3, 2, rng: &rng)
    let x = randomTensor([4, 3], seed: 5)
    let y = layer(x)
    for b in 0..<4 {
        for o in 0..<2 {
            var s = Double(layer.bias.value[o])
            for i in 0..<3 { s += Double(x[b * 3 + i]) * Double(layer.weight.value[o * 3 + i]) }
            #expect(abs(Double(y[b * 2 + o]) - s) < 1e-6)
        }
    }
}

@Test func linearInitialisationIsPyTorchUniform() {
    var rng = RandomGenerator(seed: 1)
    let layer = Linear(400, 300, rng: &rng)
    let bound: Float = 1 / 20
    #expect(layer.weight.value.maxAbs() <= bound)
    #expect(layer.weight.value.maxAbs() > 0.99 * bound)
    // Uniform(−b, b) has variance b²/3.
    let w = layer.weight.value
    let variance = (0..<w.count).reduce(0.0) { $0 + Double(w[$1]) * Double(w[$1]) } / Double(w.count)
    #expect(abs(variance - Double(bound * bound) / 3) < 0.02 * Double(bound * bound) / 3)
    #expect(layer.bias.value.maxAbs() <= bound)
}

@Test func linearSkipsInputGradientWhenAsked() {
    var rng = RandomGenerator(seed: 1)
    let layer = Linear(3, 2, rng: &rng)
    layer.computesInputGradient = false
    let x = randomTensor([2, 3], seed: 1)
    _ = layer(x)
    #expect(layer.backward(randomTensor([2, 2], seed: 2)) == nil)
    #expect(layer.weight.gradient.maxAbs() > 0)
}

/// Inputs kept at least 0.1 away from 0, where ReLU-like functions have a kink.
func inputsAwayFromZero(_ shape: [Int], seed: UInt64) -> Tensor {
    let t = randomTensor(shape, seed: seed, low: -2, high: 2)
    for i in 0..<t.count where abs(t[i]) < 0.1 { t[i] += t[i] >= 0 ? 0.2 : -0.2 }
    return t
}

@Test func activationGradients() {
    let activations: [Layer] = [ReLU(), LeakyReLU(slope: 0.1), Tanh(), Sigmoid(), Softplus()]
    for layer in activations {
        checkLayerGradients(layer, input: inputsAwayFromZero([4, 6], seed: 3))
    }
}

@Test func activationValues() {
    let x = Tensor(shape: [1, 4], values: [-30, -1, 0.5, 30])
    let expectations: [(Layer, [Double])] = [
        (ReLU(), [0, 0, 0.5, 30]),
        (LeakyReLU(slope: 0.1), [-3, -0.1, 0.5, 30]),
        (Tanh(), [-1, tanh(-1), tanh(0.5), 1]),
        (Sigmoid(), [1 / (1 + exp(30)), 1 / (1 + exp(1)), 1 / (1 + exp(-0.5)), 1 / (1 + exp(-30))]),
        (Softplus(), [log1p(exp(-30)), log1p(exp(-1)), log1p(exp(0.5)), 30 + log1p(exp(-30))]),
    ]
    for (layer, expected) in expectations {
        let y = layer(x)
        for i in 0..<4 {
            #expect(abs(Double(y[i]) - expected[i]) <= 1e-6 * max(1, abs(expected[i])), "\(type(of: layer)) at \(x[i])")
        }
    }
}

@Test func sequentialChainsGradientsAndNamesParameters() {
    var rng = RandomGenerator(seed: 4)
    let net = Sequential(Linear(4, 6, rng: &rng), Tanh(), Linear(6, 3, rng: &rng), Softplus())
    #expect(net.namedParameters.map(\.name) == ["0.weight", "0.bias", "2.weight", "2.bias"])
    checkLayerGradients(net, input: randomTensor([5, 4], seed: 6))
}

@Test func layersHandleAShorterBatchWithoutReallocating() {
    var rng = RandomGenerator(seed: 4)
    let layer = Linear(3, 2, rng: &rng)
    let first = layer(randomTensor([8, 3], seed: 1))
    let storage = first.data
    let second = layer(randomTensor([5, 3], seed: 2))
    #expect(second.data == storage && second.shape == [5, 2])
    checkLayerGradients(layer, input: randomTensor([5, 3], seed: 3))
}
