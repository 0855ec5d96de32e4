import Foundation
import NN
import Tensor
import Testing
import TestSupport

/// Gradient checks of the bf16 path. The reference is the *FP32* function (central differences
/// of L = Σ r ⊙ layer(x) with the layer in FP32): finite differences of the bf16 forward itself
/// would measure its rounding steps, not a derivative. Tolerances come from bf16's 8 significant
/// bits: every value the layer computes (output or gradient) is a sum Σ aᵢbᵢ of products of two
/// bf16-rounded operands, each within 2⁻⁸ relative, so it lies within (2⁻⁷ + 2⁻¹⁶)·Σ|aᵢbᵢ| of the
/// exact sum; with the operands in [−1, 1] and the weights within ±bound, Σ|aᵢbᵢ| ≤ terms·bound.
/// Checked: that bound, with the FP32 finite differences' own error (1e-3) on top — and that the
/// bf16 results are not the FP32 ones.
func checkBF16Layer(_ layer: Layer & PrecisionSetting, input x: Tensor, terms: (input: Int, weight: Int, output: Int), bound: Double) {
    let r = randomTensor(layer(x).shape, seed: 11)
    layer.precision = .fp32
    let y32 = layer(x).toArray()
    let loss = { weightedSum(layer(x), r) }
    let numericInput = layer.computesInputGradient ? numericalGradient(of: loss, wrt: x) : []
    let numericParameters = layer.namedParameters.map { numericalGradient(of: loss, wrt: $0.parameter.value) }

    layer.precision = .bf16
    let y16 = layer(x).toArray()
    let dx = layer.backward(r)
    let bf16 = 0x1p-7 + 0x1p-16
    let outputTolerance = bf16 * Double(terms.output) * bound + 1e-6
    let worstOutput = zip(y16, y32).map { abs(Double($0) - Double($1)) }.max() ?? 0
    #expect(worstOutput <= outputTolerance, "forward: \(worstOutput) > \(outputTolerance)")
    #expect(y16 != y32, "the bf16 forward equals the FP32 one")
    if let dx {
        let m = gradientMismatch(analytic: dx.toArray(), numeric: numericInput, atol: bf16 * Double(terms.input) * bound + 1e-3, rtol: 0)
        #expect(m.excess <= 0, "input gradient[\(m.index)]: bf16 \(m.analytic) vs FP32 numeric \(m.numeric)")
    }
    for ((name, p), numeric) in zip(layer.namedParameters, numericParameters) where name == "weight" {
        let m = gradientMismatch(analytic: p.gradient.toArray(), numeric: numeric, atol: bf16 * Double(terms.weight) + 1e-3, rtol: 0)
        #expect(m.excess <= 0, "\(name) gradient[\(m.index)]: bf16 \(m.analytic) vs FP32 numeric \(m.numeric)")
    }
    // The bias gradient is a plain FP32 sum, not a product: as exact as in FP32.
    for ((name, p), numeric) in zip(layer.namedParameters, numericParameters) where name == "bias" {
        let m = gradientMismatch(analytic: p.gradient.toArray(), numeric: numeric)
        #expect(m.excess <= 0, "bias gradient[\(m.index)]: \(m.analytic) vs \(m.numeric)")
    }
}

@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func linearBF16GradientsWithinBF16Tolerance() {
    var rng = RandomGenerator(seed: 1)
    // Odd sizes: k and n tails in every product; 13 rows, more than one 12-row block.
    let (batch, inputs, outputs) = (13, 37, 29)
    let layer = Linear(inputs, outputs, rng: &rng)  // weights within ±1/√37
    checkBF16Layer(layer, input: randomTensor([batch, inputs], seed: 2),
                   terms: (input: outputs, weight: batch, output: inputs), bound: 1 / Double(inputs).squareRoot())
}

@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func convolutionBF16GradientsWithinBF16Tolerance() {
    var rng = RandomGenerator(seed: 3)
    // 6 → 16 channels, kernel 4, stride 2: the im2col products (the blocked kernels are FP32 only).
    let conv = Conv2D(6, 16, geometry: ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), rng: &rng)
    let taps = 6 * 4 * 4
    checkBF16Layer(conv, input: randomTensor([2, 8, 8, 6], seed: 4),
                   terms: (input: 16 * 4, weight: 2 * 4 * 4, output: taps), bound: 1 / Double(taps).squareRoot())
    let transposed = ConvTranspose2D(16, 6, geometry: ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), rng: &rng)
    checkBF16Layer(transposed, input: randomTensor([2, 4, 4, 16], seed: 5),
                   terms: (input: 6 * 16, weight: 2 * 8 * 8, output: 16 * 4), bound: 1 / Double(6 * 16).squareRoot())
}

/// `Sequential` passes the precision to its layers, and replicas keep it.
@Test func precisionReachesEveryLayerAndReplica() {
    var rng = RandomGenerator(seed: 1)
    let network = Sequential(Linear(4, 3, rng: &rng), ReLU(), Linear(3, 2, rng: &rng))
    #expect(network.precision == .fp32)
    network.precision = .bf16
    let linears = network.layers.compactMap { $0 as? Linear }
    #expect(linears.count == 2 && linears.allSatisfy { $0.precision == .bf16 })
    let copy = network.replica() as! Sequential
    #expect(copy.layers.compactMap { $0 as? Linear }.allSatisfy { $0.precision == .bf16 })
}
