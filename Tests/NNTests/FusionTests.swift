import NN
import Tensor
import Testing
import TestSupport

/// `Sequential(layer, ReLU())` fuses the ReLU into the layer. The reference is the same layer
/// unfused (a replica sharing its weights) followed by a standalone ReLU, two pieces each checked
/// by finite differences and direct loops elsewhere; outputs and every gradient must agree.
/// (Finite differences through the pair itself would straddle the ReLU's kink.)
func checkFusedReLUMatchesUnfused(_ layer: Layer, fused: () -> Bool, input x: Tensor, weight: Parameter, bias: Parameter) {
    let unfusedLayer = layer.replica()
    let unfused = (unfusedLayer, ReLU())
    let pair = Sequential(layer, ReLU())
    #expect(fused(), "Sequential did not fuse the ReLU")

    let yFused = pair(x).clone()
    let yUnfused = unfused.1(unfused.0(x)).clone()
    #expect(yFused.toArray() == yUnfused.toArray())
    #expect(yFused.toArray().contains(0) && yFused.toArray().contains { $0 > 0 }, "the test should cover both sides of the ReLU")

    let dy = randomTensor(yFused.shape, seed: 11)
    let dxFused = pair.backward(dy)!.clone()
    let (dW, db) = (weight.gradient.clone(), bias.gradient.clone())
    let dxUnfused = unfused.0.backward(unfused.1.backward(dy)!)!.clone()
    let unfusedParameters = unfusedLayer.namedParameters.map(\.parameter)
    func close(_ a: Tensor, _ b: Tensor) -> Bool {
        zip(a.toArray(), b.toArray()).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }
    }
    #expect(close(dxFused, dxUnfused))
    #expect(close(dW, unfusedParameters[0].gradient))
    #expect(close(db, unfusedParameters[1].gradient))
}

@Test func reluFusesIntoConvolutionsAndLinearLayers() {
    var rng = RandomGenerator(seed: 1)
    let g = ConvolutionGeometry(kernel: 4, stride: 2, padding: 1)
    for channels in [1, 16] {  // the narrow and general patch paths
        for outChannels in [3, 8] {  // straight over the image, and through GEMM
            let conv = Conv2D(channels, outChannels, geometry: g, rng: &rng)
            checkFusedReLUMatchesUnfused(conv, fused: { conv.fusesReLU }, input: randomTensor([3, 6, 6, channels], seed: 2), weight: conv.weight, bias: conv.bias)
        }
        let convT = ConvTranspose2D(3, channels, geometry: g, rng: &rng)
        checkFusedReLUMatchesUnfused(convT, fused: { convT.fusesReLU }, input: randomTensor([3, 3, 3, 3], seed: 3), weight: convT.weight, bias: convT.bias)
    }
    let linear = Linear(5, 7, rng: &rng)
    checkFusedReLUMatchesUnfused(linear, fused: { linear.fusesReLU }, input: randomTensor([4, 5], seed: 4), weight: linear.weight, bias: linear.bias)
}

@Test func onlyAReLUDirectlyAfterAFusingLayerIsFused() {
    var rng = RandomGenerator(seed: 1)
    let linear = Linear(3, 3, rng: &rng), relu = ReLU(), tanh = Tanh(), later = ReLU()
    _ = Sequential(linear, tanh, later)
    #expect(!linear.fusesReLU && !later.isFused)
    let second = Linear(3, 3, rng: &rng)
    _ = Sequential(second, relu)
    #expect(second.fusesReLU && relu.isFused)
}
