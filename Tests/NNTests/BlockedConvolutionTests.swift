import CKernels
import NN
import Tensor
import Testing
import TestSupport

/// The register-blocked convolution kernels need AVX-512; elsewhere the layers use im2col + GEMM
/// (tested in ConvolutionTests) and these tests have nothing to check.
let blockedKernelsAvailable = vae_blocked_convolution_supported(16, 16, 3) != 0

/// One shape for the blocked kernels: R channels summed per tap, V computed side by side
/// (V/16 vectors: 1, 2, 3, 4, and 80 = a block of 4 then one of 1), an input plane, geometry.
struct BlockedCase: CustomTestStringConvertible, Sendable {
    var reduced: Int, vector: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int
    var testDescription: String { "R\(reduced) V\(vector) \(height)×\(width) k\(kernel) s\(stride) p\(padding)" }
    var convolvedHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
    var convolvedWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
}

let blockedCases = [
    BlockedCase(reduced: 4, vector: 16, height: 9, width: 7, kernel: 3, stride: 1, padding: 1),
    BlockedCase(reduced: 5, vector: 48, height: 6, width: 11, kernel: 4, stride: 2, padding: 1),
    BlockedCase(reduced: 33, vector: 80, height: 5, width: 5, kernel: 2, stride: 3, padding: 2),
    BlockedCase(reduced: 16, vector: 32, height: 8, width: 13, kernel: 5, stride: 2, padding: 2),
    BlockedCase(reduced: 8, vector: 64, height: 14, width: 14, kernel: 4, stride: 2, padding: 1),
    // Fewer than 4 reduced channels: gathers and gathered weight gradients use a zero-padded
    // copy (here one that must reach past the last row read: 10 rows, k3 s2 p0 reads 9).
    BlockedCase(reduced: 1, vector: 32, height: 10, width: 9, kernel: 4, stride: 2, padding: 1),
    BlockedCase(reduced: 3, vector: 16, height: 10, width: 11, kernel: 3, stride: 2, padding: 0),
]

private func values(_ count: Int, seed: UInt64) -> [Float] { randomTensor([count], seed: seed).toArray() }

private func expectClose(_ actual: [Float], _ expected: [Double], _ what: String) {
    #expect(actual.count == expected.count)
    let worst = zip(actual, expected).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
    #expect(worst < 1e-5 * 64, "\(what): worst relative difference \(worst)")
}

/// out[b, i, j, o] = bias[o] + Σ in[b, i·s − p + u, j·s − p + v, c] · w[u, v, c, o], as loops.
@Test(.enabled(if: blockedKernelsAvailable), arguments: blockedCases, [false, true])
func gatherMatchesLoops(shape: BlockedCase, relu: Bool) {
    let (R, V, H, W, K, s, p, batch) = (shape.reduced, shape.vector, shape.height, shape.width, shape.kernel, shape.stride, shape.padding, 5)  // 4 + 1: two passes of the kernels' 4 images
    let (Ho, Wo) = (shape.convolvedHeight, shape.convolvedWidth)
    let x = values(batch * H * W * R, seed: 1), w = values(K * K * R * V, seed: 2), bias = values(V, seed: 3)
    for withBias in [true, false] {
        var out = [Float](repeating: .nan, count: batch * Ho * Wo * V)
        vae_conv_gather(x, batch, R, H, W, Ho, Wo, K, s, p, w, V, withBias ? bias : nil, relu ? 1 : 0, &out)
        var expected = [Double](repeating: 0, count: out.count)
        for b in 0..<batch { for i in 0..<Ho { for j in 0..<Wo { for o in 0..<V {
            var sum = withBias ? Double(bias[o]) : 0
            for u in 0..<K { for v in 0..<K {
                let (r, q) = (i * s - p + u, j * s - p + v)
                guard r >= 0 && r < H && q >= 0 && q < W else { continue }
                for c in 0..<R { sum += Double(x[((b * H + r) * W + q) * R + c]) * Double(w[((u * K + v) * R + c) * V + o]) }
            } }
            expected[((b * Ho + i) * Wo + j) * V + o] = relu ? max(sum, 0) : sum
        } } } }
        expectClose(out, expected, "gather\(withBias ? "" : " without bias")")
    }
}

/// out[b, y, x, o] = bias[o] + Σ over (i, j, u, v) with y = i·s − p + u, x = j·s − p + v of
/// in[b, i, j, c] · w[u, v, c, o], as loops; the output is one row and column larger than the
/// transposed size, as a convolution's input can be, so some positions get the bias alone.
@Test(.enabled(if: blockedKernelsAvailable), arguments: blockedCases, [false, true])
func scatterMatchesLoops(shape: BlockedCase, relu: Bool) {
    let (R, V, H, W, K, s, p, batch) = (shape.reduced, shape.vector, shape.height, shape.width, shape.kernel, shape.stride, shape.padding, 5)  // 4 + 1: two passes of the kernels' 4 images
    let (Ho, Wo) = ((H - 1) * s - 2 * p + K + 1, (W - 1) * s - 2 * p + K + 1)
    let x = values(batch * H * W * R, seed: 4), w = values(K * K * R * V, seed: 5), bias = values(V, seed: 6)
    for withBias in [true, false] {
        var out = [Float](repeating: .nan, count: batch * Ho * Wo * V)
        vae_conv_scatter(x, batch, R, H, W, Ho, Wo, K, s, p, w, V, withBias ? bias : nil, relu ? 1 : 0, &out)
        var expected = [Double](repeating: 0, count: out.count)
        for b in 0..<batch { for y in 0..<Ho { for q in 0..<Wo { for o in 0..<V {
            expected[((b * Ho + y) * Wo + q) * V + o] = withBias ? Double(bias[o]) : 0
        } } } }
        for b in 0..<batch { for i in 0..<H { for j in 0..<W { for u in 0..<K { for v in 0..<K {
            let (y, q) = (i * s - p + u, j * s - p + v)
            guard y >= 0 && y < Ho && q >= 0 && q < Wo else { continue }
            for o in 0..<V {
                var sum = 0.0
                for c in 0..<R { sum += Double(x[((b * H + i) * W + j) * R + c]) * Double(w[((u * K + v) * R + c) * V + o]) }
                expected[((b * Ho + y) * Wo + q) * V + o] += sum
            }
        } } } } }
        if relu { expected = expected.map { max($0, 0) } }
        expectClose(out, expected, "scatter\(withBias ? "" : " without bias")")
    }
}

/// gradient[u, v, a, o] += Σ broadcast[·, a] · vector[·, o] over grid positions and the gathered
/// positions inside their plane, both ways round (Conv2D: broadcast gathered; ConvTranspose2D:
/// vector gathered), accumulating onto what the gradient held.
@Test(.enabled(if: blockedKernelsAvailable), arguments: blockedCases, [true, false])
func weightGradientMatchesLoops(shape: BlockedCase, broadcastIsGathered: Bool) {
    let (A, V, K, s, p, batch) = (shape.reduced, shape.vector, shape.kernel, shape.stride, shape.padding, 3)
    // The gathered plane is the case's input; the grid is the convolution's output over it.
    let (Ht, Wt, Hg, Wg) = (shape.height, shape.width, shape.convolvedHeight, shape.convolvedWidth)
    let broadcast = values(batch * (broadcastIsGathered ? Ht * Wt : Hg * Wg) * A, seed: 7)
    let vector = values(batch * (broadcastIsGathered ? Hg * Wg : Ht * Wt) * V, seed: 8)
    let start = values(K * K * A * V, seed: 9)
    var gradient = start
    vae_conv_weight_gradient(broadcast, A, vector, V, batch, Hg, Wg, Ht, Wt, K, s, p, broadcastIsGathered ? 1 : 0, &gradient)
    var expected = start.map(Double.init)
    for b in 0..<batch { for i in 0..<Hg { for j in 0..<Wg { for u in 0..<K { for v in 0..<K {
        let (r, q) = (i * s - p + u, j * s - p + v)
        guard r >= 0 && r < Ht && q >= 0 && q < Wt else { continue }
        let grid = (b * Hg + i) * Wg + j, gathered = (b * Ht + r) * Wt + q
        let (bp, vp) = broadcastIsGathered ? (gathered, grid) : (grid, gathered)
        for a in 0..<A { for o in 0..<V {
            expected[((u * K + v) * A + a) * V + o] += Double(broadcast[bp * A + a]) * Double(vector[vp * V + o])
        } }
    } } } } }
    expectClose(gradient, expected, "weight gradient")
}

@Test func weightReordersMoveEveryElementAndInvertEachOther() {
    let (a, b, taps) = (3, 5, 4)
    let w = (0..<(a * b * taps)).map(Float.init)
    var scratch = [Float](repeating: 0, count: w.count)
    for swap in [false, true] {
        var out = [Float](repeating: .nan, count: w.count)
        vae_weight_taps_first(w, a, b, taps, swap ? 1 : 0, &scratch, &out)
        for i in 0..<a { for j in 0..<b { for t in 0..<taps {
            let position = swap ? (t * b + j) * a + i : (t * a + i) * b + j
            #expect(out[position] == w[(i * b + j) * taps + t])
        } } }
        var back = [Float](repeating: .nan, count: w.count)
        vae_weight_taps_last(out, a, b, taps, swap ? 1 : 0, &scratch, &back)
        #expect(back == w)
    }
}

/// A layer's output, input gradient and parameter gradients for one input and output gradient.
private func pass(_ layer: Layer, _ x: Tensor, _ dy: Tensor) -> [[Float]] {
    let y = layer(x).toArray()
    let dx = layer.backward(dy)!.toArray()
    return [y, dx] + layer.namedParameters.map { $0.parameter.gradient.toArray() }
}

/// The blocked kernels against the im2col + GEMM path (a replica sharing the weights), with and
/// without a fused ReLU, over batches that take several chunks; and finite differences.
@Test(.enabled(if: blockedKernelsAvailable), arguments: [
    (ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), 16, 32),
    (ConvolutionGeometry(kernel: 3, stride: 1, padding: 1), 32, 16),
    (ConvolutionGeometry(kernel: 3, stride: 2, padding: 0), 16, 48),
    // An encoder's one-channel input and a decoder's one-channel output (padded copies; the
    // transposed layer's weight gradient broadcasts ∂L/∂y and vectorises x's channels).
    (ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), 1, 32),
    (ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), 32, 1),
])
func blockedLayersMatchThePatchPath(geometry: ConvolutionGeometry, inChannels: Int, outChannels: Int) {
    var rng = RandomGenerator(seed: 1)
    let layers: [ConvolutionLayer & Layer] = [
        Conv2D(inChannels, outChannels, geometry: geometry, rng: &rng),
        ConvTranspose2D(inChannels, outChannels, geometry: geometry, rng: &rng),
    ]
    for layer in layers {
        let size = layer is Conv2D ? 13 : 6
        let x = randomTensor([7, size, size, inChannels], seed: 2)
        for relu in [false, true] {
            let blockedLayer = layer.replica()  // a ReLU fuses into its layer for good
            let blocked: Layer = relu ? Sequential(blockedLayer, ReLU()) : blockedLayer
            let patchLayer = layer.replica() as! ConvolutionLayer & Layer
            patchLayer.allowsBlockedKernels = false
            let patches: Layer = relu ? Sequential(patchLayer, ReLU()) : patchLayer
            let dy = randomTensor(blocked(x).shape, seed: 3)
            for (name, (a, b)) in zip(["output", "input gradient", "weight gradient", "bias gradient"], zip(pass(blocked, x, dy), pass(patches, x, dy))) {
                let worst = zip(a, b).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(a.count == b.count && worst < 1e-4, "\(type(of: layer)) relu \(relu): \(name) differs by \(worst)")
            }
        }
        checkLayerGradients(layer, input: randomTensor([2, size / 2, size / 2, inChannels], seed: 4), step: 1e-2)
    }
}

@Test(.enabled(if: blockedKernelsAvailable))
func blockedLayersMatchDirectLoops() {
    var rng = RandomGenerator(seed: 2)
    let g = ConvolutionGeometry(kernel: 4, stride: 2, padding: 1)
    let conv = Conv2D(16, 32, geometry: g, rng: &rng)
    let x = randomTensor([2, 16, 10, 8], seed: 5)
    for (a, b) in zip(channelsFirst(conv)(x).toArray(), naiveConvolution(x, conv)) { #expect(abs(Double(a) - b) < 1e-4) }
    let convT = ConvTranspose2D(16, 32, geometry: g, rng: &rng)
    let z = randomTensor([2, 16, 5, 4], seed: 6)
    for (a, b) in zip(channelsFirst(convT)(z).toArray(), naiveTransposedConvolution(z, convT)) { #expect(abs(Double(a) - b) < 1e-4) }
}
