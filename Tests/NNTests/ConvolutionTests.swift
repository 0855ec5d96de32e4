import NN
import Tensor
import Testing
import TestSupport

let geometries = [
    ConvolutionGeometry(kernel: 4, stride: 2, padding: 1),
    ConvolutionGeometry(kernel: 3, stride: 1, padding: 1),
    ConvolutionGeometry(kernel: 3, stride: 2, padding: 0),
    ConvolutionGeometry(kernel: 2, stride: 3, padding: 2),
]

/// The layer on channels-first images, as the naive references and PyTorch see it.
func channelsFirst(_ layer: Layer) -> Sequential { Sequential(ChannelsLast(), layer, ChannelsFirst()) }

/// y[b, o, i, j] = bias[o] + Σ W[o, c, u, v] x[b, c, i·s − p + u, j·s − p + v], as loops (NCHW).
func naiveConvolution(_ x: Tensor, _ layer: Conv2D) -> [Double] {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let g = layer.geometry, o = layer.outChannels, k = g.kernel
    let (ho, wo) = (g.convolutionOutput(h), g.convolutionOutput(w))
    var y = [Double](repeating: 0, count: b * o * ho * wo)
    for n in 0..<b { for oc in 0..<o { for i in 0..<ho { for j in 0..<wo {
        var s = Double(layer.bias.value[oc])
        for ic in 0..<c { for u in 0..<k { for v in 0..<k {
            let (r, q) = (i * g.stride - g.padding + u, j * g.stride - g.padding + v)
            guard r >= 0 && r < h && q >= 0 && q < w else { continue }
            s += Double(layer.weight.value[((oc * c + ic) * k + u) * k + v]) * Double(x[((n * c + ic) * h + r) * w + q])
        } } }
        y[((n * o + oc) * ho + i) * wo + j] = s
    } } } }
    return y
}

/// Each input value spreads W[c, o, ·, ·] over the output window at (i·s − p, j·s − p), as
/// loops (NCHW).
func naiveTransposedConvolution(_ x: Tensor, _ layer: ConvTranspose2D) -> [Double] {
    let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let g = layer.geometry, o = layer.outChannels, k = g.kernel
    let (ho, wo) = (g.transposedOutput(h), g.transposedOutput(w))
    var y = [Double](repeating: 0, count: b * o * ho * wo)
    for n in 0..<b { for oc in 0..<o { for i in 0..<(ho * wo) { y[(n * o + oc) * ho * wo + i] = Double(layer.bias.value[oc]) } } }
    for n in 0..<b { for ic in 0..<c { for i in 0..<h { for j in 0..<w {
        let v = Double(x[((n * c + ic) * h + i) * w + j])
        for oc in 0..<o { for u in 0..<k { for t in 0..<k {
            let (r, q) = (i * g.stride - g.padding + u, j * g.stride - g.padding + t)
            guard r >= 0 && r < ho && q >= 0 && q < wo else { continue }
            y[((n * o + oc) * ho + r) * wo + q] += v * Double(layer.weight.value[((ic * o + oc) * k + u) * k + t])
        } } }
    } } } }
    return y
}

/// 3 input channels take the patch kernels' narrow path (k·C ≤ 16: rows through a padded line),
/// 9 the general one (bounds worked out per position); up to 4 output channels skip the patches
/// (sums straight over the image), 8 go through im2col and GEMM.
@Test(arguments: geometries, [(3, 2), (3, 8), (9, 4), (9, 8)])
func convolutionMatchesDirectLoopsAndItsGradientsCheck(geometry: ConvolutionGeometry, sizes: (in: Int, out: Int)) {
    var rng = RandomGenerator(seed: 1)
    let (channels, outChannels) = sizes
    let layer = Conv2D(channels, outChannels, geometry: geometry, rng: &rng)
    let x = randomTensor([2, channels, 7, 6], seed: 2)
    let y = channelsFirst(layer)(x)
    #expect(y.shape == [2, outChannels, geometry.convolutionOutput(7), geometry.convolutionOutput(6)])
    for (a, b) in zip(y.toArray(), naiveConvolution(x, layer)) { #expect(abs(Double(a) - b) < 1e-5) }
    checkLayerGradients(layer, input: randomTensor([2, 7, 6, channels], seed: 3), step: 1e-2)
    checkLayerGradients(channelsFirst(layer), input: x, step: 1e-2)
}

/// 2 output channels take the narrow path of the patch kernels, 9 the general one.
@Test(arguments: geometries, [2, 9])
func transposedConvolutionMatchesDirectLoopsAndItsGradientsCheck(geometry: ConvolutionGeometry, outChannels: Int) {
    var rng = RandomGenerator(seed: 3)
    let layer = ConvTranspose2D(3, outChannels, geometry: geometry, rng: &rng)
    let x = randomTensor([2, 3, 4, 5], seed: 4)
    let y = channelsFirst(layer)(x)
    #expect(y.shape == [2, outChannels, geometry.transposedOutput(4), geometry.transposedOutput(5)])
    for (a, b) in zip(y.toArray(), naiveTransposedConvolution(x, layer)) { #expect(abs(Double(a) - b) < 1e-5) }
    checkLayerGradients(layer, input: randomTensor([2, 4, 5, 3], seed: 5), step: 1e-2)
    checkLayerGradients(channelsFirst(layer), input: x, step: 1e-2)
}

@Test func transposedConvolutionIsTheAdjointOfConvolution() {
    // ⟨conv(x), y⟩ = ⟨x, convT(y)⟩ with the same weights and no bias.
    var rng = RandomGenerator(seed: 5)
    let g = ConvolutionGeometry(kernel: 4, stride: 2, padding: 1)
    let conv = Conv2D(3, 5, geometry: g, rng: &rng)
    let convT = ConvTranspose2D(5, 3, geometry: g, rng: &rng)
    convT.weight.value.copy(from: conv.weight.value)
    conv.bias.value.fill(0)
    convT.bias.value.fill(0)
    let x = randomTensor([2, 8, 8, 3], seed: 6)
    let y = randomTensor([2, 4, 4, 5], seed: 7)
    let left = weightedSum(conv(x), y), right = weightedSum(x, convT(y))
    #expect(abs(left - right) < 1e-4 * max(1, abs(left)))
}

@Test func referenceArchitectureShapes() {
    // Encoder 1→32→64 (k4 s2 p1) on 28×28, decoder back up: 28 → 14 → 7 → 14 → 28.
    var rng = RandomGenerator(seed: 1)
    let g = ConvolutionGeometry(kernel: 4, stride: 2, padding: 1)
    let net = Sequential(Conv2D(1, 32, geometry: g, rng: &rng), ReLU(), Conv2D(32, 64, geometry: g, rng: &rng), ReLU(),
                         Reshape.flatten(7 * 7 * 64), Reshape([7, 7, 64]),
                         ConvTranspose2D(64, 32, geometry: g, rng: &rng), ReLU(), ConvTranspose2D(32, 1, geometry: g, rng: &rng))
    #expect(net(randomTensor([3, 28, 28, 1], seed: 2)).shape == [3, 28, 28, 1])
}

@Test func shapeLayersAndConditioningGradients() {
    let flat = Reshape.flatten(12)
    let x = randomTensor([2, 3, 2, 2], seed: 1)
    #expect(flat(x).shape == [2, 12] && flat(x).data == x.data)  // a view: no copy
    checkLayerGradients(flat, input: x)
    let up = Upsample(factor: 2)
    let small = Tensor(shape: [1, 2, 2, 1], values: [1, 2, 3, 4])
    #expect(up(small).toArray() == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
    // Two channels stay interleaved: pixel (i, j) of the output is pixel (i/2, j/2) of the input.
    let pair = Tensor(shape: [1, 1, 2, 2], values: [1, -1, 2, -2])
    #expect(up(pair).toArray() == [1, -1, 1, -1, 2, -2, 2, -2, 1, -1, 1, -1, 2, -2, 2, -2])
    checkLayerGradients(up, input: randomTensor([2, 3, 3, 2], seed: 2))
    let conditioning = Conditioning(conditionSize: 3)
    conditioning.condition = Tensor(shape: [2, 3], values: [0, 1, 0, 1, 0, 0])
    let joined = conditioning(Tensor(shape: [2, 2], values: [5, 6, 7, 8]))
    #expect(joined.toArray() == [5, 6, 0, 1, 0, 7, 8, 1, 0, 0])
    checkLayerGradients(conditioning, input: randomTensor([2, 4], seed: 3))
}

@Test func convolutionReplicasShareWeights() {
    var rng = RandomGenerator(seed: 1)
    let conv = Conv2D(2, 3, geometry: ConvolutionGeometry(kernel: 3), rng: &rng)
    let copy = conv.replica() as! Conv2D
    #expect(copy.weight.value === conv.weight.value && copy.weight.gradient !== conv.weight.gradient)
}

/// Runs a batch (processed in several chunks) and each image alone; outputs, input gradients and
/// summed weight gradients must agree.
func checkChunkingIsInvisible(_ layer: Layer, input x: Tensor, weight: Parameter) {
    let batch = x.rows, size = x.rowSize
    let y = layer(x).clone()
    let dy = randomTensor(y.shape, seed: 9)
    let dx = layer.backward(dy)!.clone()
    let dW = weight.gradient.clone()
    let summed = Tensor(shape: dW.shape)
    for i in 0..<batch {
        let xi = Tensor(viewing: x, rows: i..<(i + 1)).clone()
        let yi = layer(xi)
        for k in 0..<yi.count { #expect(abs(yi[k] - y[i * yi.count + k]) < 1e-4) }
        let dxi = layer.backward(Tensor(viewing: dy, rows: i..<(i + 1)).clone())!
        for k in 0..<size { #expect(abs(dxi[k] - dx[i * size + k]) < 1e-4) }
        summed.add(weight.gradient)
    }
    let worst = (0..<dW.count).map { abs(dW[$0] - summed[$0]) / max(1, abs(summed[$0])) }.max()!
    #expect(worst < 1e-4, "weight gradient differs by \(worst)")
}

@Test func chunkedConvolutionsMatchImageByImage() {
    // 16 channels × 3×3 kernel over 16×16 positions: 36,864 patch values per image, three images
    // per 2¹⁷-value chunk, so 5 images make 2 chunks.
    var rng = RandomGenerator(seed: 1)
    let conv = Conv2D(16, 2, geometry: ConvolutionGeometry(kernel: 3, stride: 1, padding: 1), rng: &rng)
    checkChunkingIsInvisible(conv, input: randomTensor([5, 16, 16, 16], seed: 2), weight: conv.weight)
    let convT = ConvTranspose2D(2, 16, geometry: ConvolutionGeometry(kernel: 3, stride: 1, padding: 1), rng: &rng)
    checkChunkingIsInvisible(convT, input: randomTensor([5, 16, 16, 2], seed: 3), weight: convT.weight)
}

@Test func layoutConversionsTransposeEachImageAndInvertEachOther() {
    let x = randomTensor([2, 3, 4, 5], seed: 1)  // [B, C, H, W]
    let last = ChannelsLast(), first = ChannelsFirst()
    let y = last(x)
    #expect(y.shape == [2, 4, 5, 3])
    for b in 0..<2 { for c in 0..<3 { for i in 0..<4 { for j in 0..<5 {
        #expect(y[((b * 4 + i) * 5 + j) * 3 + c] == x[((b * 3 + c) * 4 + i) * 5 + j])
    } } } }
    #expect(first(y).toArray() == x.toArray())
    checkLayerGradients(last, input: x)
    checkLayerGradients(first, input: randomTensor([2, 4, 5, 3], seed: 2))
    // One channel: the same numbers in the same order, so a view.
    let gray = randomTensor([2, 1, 4, 5], seed: 3)
    #expect(last(gray).shape == [2, 4, 5, 1] && last(gray).data == gray.data)
    checkLayerGradients(last, input: gray)
}

@Test func layoutConversionsTakeNoIndexInParameterNames() {
    var rng = RandomGenerator(seed: 1)
    let net = Sequential(ChannelsLast(), Conv2D(1, 2, geometry: ConvolutionGeometry(kernel: 3), rng: &rng), ReLU(), ChannelsFirst(),
                         Reshape.flatten(2), Linear(2, 1, rng: &rng))
    #expect(net.namedParameters.map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias"])
}
