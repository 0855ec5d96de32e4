import Foundation
import CKernels
import Datasets
import NN
import Tensor
import VAE

/// Every CUDA kernel against its CPU twin (llm.c's rule: each op a named pair, checked against
/// each other): random inputs of a training step's shapes, the kernel on the GPU, the CPU
/// function on the host, and the largest difference relative to max(|CPU value|, 1). Run by
/// `vae devices --check-kernels` on a machine with an NVIDIA GPU.
public enum GPUKernelCheck {
    public struct Row: Sendable {
        public let kernel: String
        /// What the CPU twin is.
        public let twin: String
        public let elements: Int
        public let largestError: Double
        public let tolerance: Double
        public var passed: Bool { largestError <= tolerance }
    }

    /// The largest |gpu − cpu| / max(|cpu|, 1).
    static func worst(_ gpu: [Float], _ cpu: [Float]) -> Double {
        zip(gpu, cpu).map { Double(abs($0 - $1)) / max(Double(abs($1)), 1) }.max() ?? 0
    }

    /// Runs every check on `context`; rows in the kernels' order.
    public static func run(_ context: CUDAContext, rows: Int = 128, hidden: Int = 400, latent: Int = 20, pixels: Int = 784) throws -> [Row] {
        var rng = RandomGenerator(seed: 7)
        func random(_ n: Int, _ low: Float = -2, _ high: Float = 2) -> [Float] { (0..<n).map { _ in low + (high - low) * rng.nextFloat() } }
        var result: [Row] = []
        func record(_ kernel: String, _ twin: String, _ gpu: [Float], _ cpu: [Float], tolerance: Double = 1e-4) {
            result.append(Row(kernel: kernel, twin: twin, elements: cpu.count, largestError: gpu.count == cpu.count ? worst(gpu, cpu) : .infinity, tolerance: tolerance))
        }
        let grid = { (n: Int) in CUDAContext.grid(for: n) }

        // Each activation in the bias pass (vae_add_bias), and its derivative from the output in
        // the bias gradient (vae_bias_gradient: g through the activation, then its column sums),
        // against the CPU's layers.
        let pre = random(rows * hidden, -6, 6), bias = random(hidden), upstream = random(rows * hidden)
        let activations: [(name: String, layer: Layer?, code: Int32, slope: Float)] = [
            ("none", nil, 0, 0), ("ReLU", ReLU(), 1, 0), ("tanh", Tanh(), 2, 0), ("leaky ReLU", LeakyReLU(slope: 0.2), 3, 0.2), ("sigmoid", Sigmoid(), 4, 0),
            ("softplus", Softplus(), 5, 0),
        ]
        for (name, layer, code, slope) in activations {
            let y = try DeviceBuffer(pre), b = try DeviceBuffer(bias)
            try context.launch("vae_add_bias", grid: grid(pre.count), [.buffer(y), .buffer(b), .int32(Int32(rows)), .int32(Int32(hidden)), .int32(code), .float(slope)])
            let biased = Tensor(shape: [rows, hidden], values: pre.indices.map { pre[$0] + bias[$0 % hidden] })
            let yCPU = layer?.forward(biased) ?? biased
            let twin = layer.map { "Linear's bias, \(type(of: $0)).forward" } ?? "Linear's bias"
            record("vae_add_bias (\(name))", twin, try y.download(), yCPU.toArray())
            let g = try DeviceBuffer(upstream), db = try DeviceBuffer(count: hidden)
            try y.upload(yCPU.toArray())
            try context.launch("vae_bias_gradient", grid: (hidden + 31) / 32, block: 256, shared: 256 * 4, [
                .buffer(g), .buffer(y), .int32(code), .float(slope), .int32(Int32(rows)), .int32(Int32(hidden)), .buffer(db),
            ])
            let gCPU = layer?.backward(Tensor(shape: [rows, hidden], values: upstream)) ?? Tensor(shape: [rows, hidden], values: upstream)
            var dbCPU = [Float](repeating: 0, count: hidden)
            gCPU.sumRows(into: &dbCPU)
            record("vae_bias_gradient (\(name): ∂y through it, Σ rows)", layer.map { "\(type(of: $0)).backward, Tensor.sumRows" } ?? "Tensor.sumRows",
                   try g.download() + db.download(), gCPU.toArray() + dbCPU)
        }

        // The posterior: reparameterisation, KL per row, and the gradient of both.
        let posterior = random(rows * 2 * latent, -1.5, 1.5), eps = CounterNoise(seed: 3).normals(stream: 0, count: rows * latent)
        let post = try DeviceBuffer(posterior), epsBuffer = try DeviceBuffer(eps), z = try DeviceBuffer(count: rows * latent)
        try context.launch("vae_sample_latents", grid: grid(rows * latent), [
            .buffer(post), .buffer(epsBuffer), .buffer(z), .int32(Int32(rows)), .int32(1), .int32(Int32(latent)),
        ])
        let postTensor = Tensor(shape: [rows, 2 * latent], values: posterior), epsTensor = Tensor(shape: [rows, latent], values: eps)
        let zCPU = Tensor(shape: [rows, latent])
        reparameterize(postTensor, noise: epsTensor, into: zCPU)
        record("vae_sample_latents (one sample)", "reparameterize", try z.download(), zCPU.toArray())
        // A training step's draw: ε, z and the sampled KL of 3 samples of each of 43 images
        // (129 rows of 20: rows end inside Philox blocks), against the CPU's normals of the
        // stream, reparameterize and monteCarloObjective's log q − log p written out.
        let (images, samples) = (43, 3)
        let drawn = (eps: try DeviceBuffer(count: images * samples * latent), z: try DeviceBuffer(count: images * samples * latent),
                     kl: try DeviceBuffer(count: images * samples))
        try context.launch("vae_sample_rows", grid: grid(images * samples), [
            .uint64(0x5EED_0003), .uint64(17), .buffer(post), .int32(Int32(images)), .int32(Int32(samples)), .int32(Int32(latent)),
            .buffer(drawn.eps), .buffer(drawn.z), .buffer(drawn.kl),
        ])
        let drawnCPU = CounterNoise(seed: 0x5EED_0003).normals(stream: 17, count: images * samples * latent)
        var repeatedValues: [Float] = []
        for r in 0..<images * samples {
            let b = r / samples
            repeatedValues += posterior[b * 2 * latent..<(b + 1) * 2 * latent]
        }
        let repeated = Tensor(shape: [images * samples, 2 * latent], values: repeatedValues)
        let drawnZ = Tensor(shape: [images * samples, latent])
        reparameterize(repeated, noise: Tensor(shape: [images * samples, latent], values: drawnCPU), into: drawnZ)
        let zValues = drawnZ.toArray()
        var klDrawn: [Float] = []
        for r in 0..<images * samples {
            var (logVarSum, e2, z2): (Float, Float, Float) = (0, 0, 0)
            for j in 0..<latent { logVarSum += posterior[(r / samples) * 2 * latent + latent + j] }
            for j in 0..<latent {
                let (e, zj) = (drawnCPU[r * latent + j], zValues[r * latent + j])
                e2 += e * e
                z2 += zj * zj
            }
            klDrawn.append(0.5 * (z2 - logVarSum - e2))
        }
        record("vae_sample_rows (ε, z, sampled KL; 3 samples per image)", "CounterNoise.normals, reparameterize, log q − log p",
               try drawn.eps.download() + drawn.z.download() + drawn.kl.download(), drawnCPU + zValues + klDrawn)
        // The record of a step's terms with each row's analytic KL from the posterior (kl_row).
        let klRecord = try DeviceBuffer(bytes: 24), noLosses = try DeviceBuffer([Float](repeating: 0, count: rows))
        try context.launch("vae_record_terms", grid: 1, block: 128, shared: 128 * 16, [
            .buffer(noLosses), .buffer(nil), .buffer(post), .int32(Int32(latent)), .int32(Int32(rows)), .float(1), .buffer(nil), .buffer(klRecord), .int32(0),
        ])
        var klCPU = [Double](repeating: 0, count: rows)
        klDivergence(postTensor, perExample: &klCPU)
        var klTerms = [Double](repeating: 0, count: 3)
        try klTerms.withUnsafeMutableBytes { try klRecord.download(raw: $0) }
        record("vae_record_terms (the KL of each posterior row)", "klDivergence per example, added in double", klTerms.map { Float($0) },
               [0, Float(klCPU.reduce(0, +)), Float(klCPU.reduce(0, +))])
        let dz = random(rows * latent), weights = (0..<latent).map { Float($0 % 3 == 0 ? 0 : 1) }
        let dzBuffer = try DeviceBuffer(dz), weightBuffer = try DeviceBuffer(weights), postGrad = try DeviceBuffer(count: posterior.count)
        try context.launch("vae_posterior_backward", grid: grid(rows * latent), [
            .buffer(post), .buffer(epsBuffer), .buffer(dzBuffer), .buffer(weightBuffer), .buffer(postGrad), .int32(Int32(rows)), .int32(Int32(latent)),
            .float(0.7),
        ])
        let gradCPU = Tensor(shape: [rows, 2 * latent])
        _ = weights.withUnsafeBufferPointer { klDivergence(postTensor, gradient: gradCPU, scale: 0.7, dimensionWeights: $0.baseAddress) }
        reparameterizeBackward(postTensor, noise: epsTensor, zGradient: Tensor(shape: [rows, latent], values: dz), into: gradCPU)
        record("vae_posterior_backward", "klDivergence(gradient:) + reparameterizeBackward", try postGrad.download(), gradCPU.toArray())

        // Likelihoods, per row, and the batch sum.
        let x = random(rows * pixels, 0, 1), logits = random(rows * pixels, -6, 6)
        let xBuffer = try DeviceBuffer(x), lBuffer = try DeviceBuffer(logits)
        let lossGrad = try DeviceBuffer(count: x.count), rowSums = try DeviceBuffer(count: rows)
        for (kernel, twin) in [("vae_bernoulli_nll", "vae_bernoulli_nll"), ("vae_squared_error", "vae_squared_error")] {
            try context.launch(kernel, grid: rows, block: 256, shared: 256 * 4, [.buffer(xBuffer), .buffer(lBuffer), .buffer(lossGrad), .buffer(rowSums), .int32(Int32(pixels)), .float(0.01), .int32(1)]
                + [.buffer(nil)])
            var gradientCPU = [Float](repeating: 0, count: x.count), rowCPU = [Float](repeating: 0, count: rows)
            for r in 0..<rows {
                rowCPU[r] = x.withUnsafeBufferPointer { xs in
                    logits.withUnsafeBufferPointer { ls in
                        gradientCPU.withUnsafeMutableBufferPointer { gs in
                            let o = r * pixels
                            return kernel == "vae_bernoulli_nll"
                                ? vae_bernoulli_nll(xs.baseAddress! + o, ls.baseAddress! + o, gs.baseAddress! + o, 0.01, pixels)
                                : vae_squared_error(xs.baseAddress! + o, ls.baseAddress! + o, gs.baseAddress! + o, 0.01, pixels)
                        }
                    }
                }
            }
            record(kernel + " (rows)", twin, try rowSums.download(), rowCPU)
            record(kernel + " (gradient)", twin, try lossGrad.download(), gradientCPU)
        }
        let rowValues = try rowSums.download()

        // Optimisers, one step from random state.
        let n = 652_824
        let w = random(n, -0.1, 0.1), grad = random(n, -0.01, 0.01), m = random(n, -0.001, 0.001), v = random(n, 0, 1e-5)
        let (wB, gB, mB, vB) = (try DeviceBuffer(w), try DeviceBuffer(grad), try DeviceBuffer(m), try DeviceBuffer(v))
        try context.launch("vae_adam", grid: grid(n), [
            .buffer(wB), .buffer(gB), .buffer(mB), .buffer(vB), .int64(n), .float(0.9), .float(0.999), .float(1e-8), .float(1e-3 / 0.1),
            .float(1 / (0.001 as Float).squareRoot()), .float(1),
        ])
        var (wC, gC, mC, vC) = (w, grad, m, v)
        vae_adam_update(&wC, &gC, nil, &mC, &vC, n, 0.9, 0.999, 1e-8, 1e-3 / 0.1, 1 / (0.001 as Float).squareRoot(), 1)
        record("vae_adam (weights)", "vae_adam_update", try wB.download(), wC)
        record("vae_adam (second moments)", "vae_adam_update", try vB.download(), vC)
        let velocity = random(n, -0.01, 0.01)
        let (w2, g2, velocityB) = (try DeviceBuffer(w), try DeviceBuffer(grad), try DeviceBuffer(velocity))
        try context.launch("vae_sgd", grid: grid(n), [.buffer(w2), .buffer(g2), .buffer(velocityB), .int64(n), .float(0.05), .float(0.9), .float(1e-4)])
        var (wS, gS, velocityS) = (w, grad, velocity)
        vae_sgd_update(&wS, &gS, &velocityS, n, 0.05, 0.9, 1e-4)
        record("vae_sgd", "vae_sgd_update", try w2.download(), wS)

        // The per-step record of the loss terms (double sums of the rows, in order).
        let termsRecord = try DeviceBuffer(bytes: 24 * 3)
        let klValues = random(rows, 0, 20)
        let klBuffer = try DeviceBuffer(klValues)
        try context.launch("vae_record_terms", grid: 1, block: 128, shared: 128 * 16, [
            .buffer(rowSums), .buffer(klBuffer), .buffer(nil), .int32(0), .int32(Int32(rows)), .float(0.5), .buffer(nil), .buffer(termsRecord), .int32(2),
        ])
        var terms = [Double](repeating: 0, count: 9)
        try terms.withUnsafeMutableBytes { try termsRecord.download(raw: $0) }
        let (reconstructionSum, klSum) = (rowValues.reduce(0.0) { $0 + Double($1) }, klValues.reduce(0.0) { $0 + Double($1) })
        record("vae_record_terms", "the terms added in double", terms[6...].map { Float($0) },
               [Float(reconstructionSum), Float(klSum), Float(reconstructionSum + 0.5 * klSum)])

        // Batches made from the data set on the device: bytes / 255, values, counter binarisation.
        let examples = 50
        let bytes = (0..<examples * pixels).map { _ in UInt8(truncatingIfNeeded: Int(rng.next() >> 56)) }
        let order = (0..<examples).map { ($0 * 7 + 3) % examples }
        let (first, batchRows) = (9, 21)
        let bytesBuffer = try DeviceBuffer(bytes: bytes.count), orderBuffer = try DeviceBuffer(bytes: 4 * examples)
        try bytes.withUnsafeBytes { try bytesBuffer.upload(raw: $0) }
        try order.map { Int32($0) }.withUnsafeBytes { try orderBuffer.upload(raw: $0) }
        let values = bytes.map { Float($0) / 255 }, valuesBuffer = try DeviceBuffer(values)
        let gathered = try DeviceBuffer(count: batchRows * pixels)
        let binarizer = CounterNoise(seed: 0x5EED_0001)
        for (name, binarize, fromBytes) in [("vae_gather (bytes)", false, true), ("vae_gather (values, binarised)", true, false), ("vae_gather (bytes, binarised)", true, true)] {
            try context.launch("vae_gather", grid: grid(batchRows * pixels / 4 + 1), [
                .buffer(fromBytes ? bytesBuffer : nil), .buffer(fromBytes ? nil : valuesBuffer), .buffer(orderBuffer), .int64(first), .int32(Int32(batchRows)),
                .int32(Int32(pixels)), .int32(binarize ? 1 : 0), .uint64(binarizer.seed), .uint64(3), .buffer(gathered),
            ])
            var cpu = [Float](repeating: 0, count: batchRows * pixels)
            cpu.withUnsafeMutableBufferPointer { out in
                for r in 0..<batchRows {
                    let example = order[first + r], row = UnsafeMutableBufferPointer(rebasing: out[(r * pixels)..<((r + 1) * pixels)])
                    let stream = CounterNoise.binarizationStream(epoch: 3, example: example)
                    bytes.withUnsafeBufferPointer { b in
                        values.withUnsafeBufferPointer { v in
                            let src = b.baseAddress! + example * pixels, srcValues = v.baseAddress! + example * pixels
                            if !binarize {
                                vae_bytes_to_unit(src, row.baseAddress!, pixels)
                            } else if fromBytes {
                                binarizer.binarize(stream: stream, bytes: src, into: row)
                            } else {
                                binarizer.binarize(stream: stream, values: srcValues, into: row)
                            }
                        }
                    }
                }
            }
            record(name, "BatchLoader.fill", try gathered.download(), cpu, tolerance: 0)
        }

        result += try layerChecks(context, rng: &rng)

        // Noise: a stretch that starts and ends inside Philox blocks.
        let count = rows * latent + 3
        let normals = try DeviceBuffer(count: count)
        try context.launch("vae_philox_normals", grid: grid(count / 4 + 2), [.uint64(0x5EED_0002), .uint64(41), .uint64(5), .int64(count), .buffer(normals)])
        record("vae_philox_normals", "CounterNoise.normals", try normals.download(), CounterNoise(seed: 0x5EED_0002).normals(stream: 41, first: 5, count: count), tolerance: 1e-6)
        try context.synchronize()
        return result
    }

    /// The other layers' kernels against their CPU twins: the convolutions' patches and their adjoint (the CPU's in its own column order, permuted),
    /// the layout changes, upsampling, and the two-pass sums of a tall bias gradient.
    static func layerChecks(_ context: CUDAContext, rng: inout RandomGenerator) throws -> [Row] {
        var result: [Row] = []
        func random(_ n: Int, _ low: Float = -2, _ high: Float = 2) -> [Float] { (0..<n).map { _ in low + (high - low) * rng.nextFloat() } }
        func record(_ kernel: String, _ twin: String, _ gpu: [Float], _ cpu: [Float], tolerance: Double = 1e-4) {
            result.append(Row(kernel: kernel, twin: twin, elements: cpu.count, largestError: gpu.count == cpu.count ? worst(gpu, cpu) : .infinity, tolerance: tolerance))
        }
        let grid = { (n: Int) in CUDAContext.grid(for: n) }

        // Patches and their adjoint, for the reference model's geometry and the 3 × 3 one after
        // upsampling; the CPU's patch columns are (kh, kw, c), the GPU's (c, kh, kw).
        let (batch, channels, height, widthPixels) = (3, 5, 7, 6)
        for geometry in [ConvolutionGeometry(kernel: 4, stride: 2, padding: 1), ConvolutionGeometry(kernel: 3, stride: 1, padding: 1)] {
            let (k, s, p) = (geometry.kernel, geometry.stride, geometry.padding)
            let (gh, gw) = (geometry.convolutionOutput(height), geometry.convolutionOutput(widthPixels))
            let (patch, patches) = (channels * k * k, batch * gh * gw)
            // GPU column (c·k + kh)·k + kw holds the CPU's column (kh·k + kw)·C + c.
            let cpuColumn = (0..<patch).map { j in (j % (k * k)) * channels + j / (k * k) }
            let name = "k\(k) s\(s) p\(p)"
            let src = random(batch * height * widthPixels * channels)
            let srcBuffer = try DeviceBuffer(src), colsBuffer = try DeviceBuffer(count: patches * patch)
            try context.launch("vae_im2col", grid: grid(patches * patch), [
                .buffer(srcBuffer), .int32(Int32(batch)), .int32(Int32(channels)), .int32(Int32(height)), .int32(Int32(widthPixels)), .int32(Int32(gh)),
                .int32(Int32(gw)), .int32(Int32(k)), .int32(Int32(s)), .int32(Int32(p)), .buffer(colsBuffer),
            ])
            var colsCPU = [Float](repeating: 0, count: patches * patch)
            vae_im2col_nhwc(src, batch, channels, height, widthPixels, gh, gw, k, s, p, &colsCPU)
            record("vae_im2col (\(name))", "vae_im2col_nhwc", try colsBuffer.download(), (0..<patches * patch).map { colsCPU[$0 / patch * patch + cpuColumn[$0 % patch]] }, tolerance: 0)
            let cols = random(patches * patch), bias = random(channels)
            try colsBuffer.upload(cols)
            let biasBuffer = try DeviceBuffer(bias), dst = try DeviceBuffer(count: src.count)
            try context.launch("vae_col2im", grid: grid(src.count), [
                .buffer(colsBuffer), .int32(Int32(batch)), .int32(Int32(channels)), .int32(Int32(height)), .int32(Int32(widthPixels)), .int32(Int32(gh)),
                .int32(Int32(gw)), .int32(Int32(k)), .int32(Int32(s)), .int32(Int32(p)), .buffer(biasBuffer), .int32(1), .float(0), .buffer(dst),
            ])
            var permuted = [Float](repeating: 0, count: cols.count)
            for i in cols.indices { permuted[i / patch * patch + cpuColumn[i % patch]] = cols[i] }
            var dstCPU = [Float](repeating: 0, count: src.count)
            vae_col2im_nhwc(permuted, batch, channels, height, widthPixels, gh, gw, k, s, p, bias, 1, &dstCPU)
            record("vae_col2im (\(name), bias, ReLU)", "vae_col2im_nhwc", try dst.download(), dstCPU)
        }

        // Layout changes: channels-first [B, C, H, W] to channels-last and back.
        let images = random(4 * 5 * 3 * 3), imagesBuffer = try DeviceBuffer(images), transposed = try DeviceBuffer(count: images.count)
        try context.launch("vae_transpose_examples", grid: grid(images.count), [.buffer(imagesBuffer), .int32(4), .int32(5), .int32(9), .buffer(transposed)])
        let channelsLast = ChannelsLast().forward(Tensor(shape: [4, 5, 3, 3], values: images))
        record("vae_transpose_examples (channels last)", "ChannelsLast.forward", try transposed.download(), channelsLast.toArray(), tolerance: 0)
        try context.launch("vae_transpose_examples", grid: grid(images.count), [.buffer(transposed), .int32(4), .int32(9), .int32(5), .buffer(imagesBuffer)])
        record("vae_transpose_examples (channels first)", "ChannelsFirst.forward", try imagesBuffer.download(), ChannelsFirst().forward(channelsLast).toArray(), tolerance: 0)

        // Two convolutions' weights into cuDNN's [k, taps, c] and their gradients back, one launch
        // each, against the per-layer loops (shapes 3 × 4 × 9 and 2 × 5 × 4).
        do {
            let shapes = [(k: 3, c: 4, taps: 9), (k: 2, c: 5, taps: 4)]
            let stored = shapes.map { random($0.k * $0.c * $0.taps) }, krscGradients = shapes.map { random($0.k * $0.c * $0.taps) }
            let w = try stored.map { try DeviceBuffer($0) }, wCopy = try stored.map { try DeviceBuffer(count: $0.count) }
            let gCopy = try krscGradients.map { try DeviceBuffer($0) }, g = try stored.map { try DeviceBuffer(count: $0.count) }
            var table: [Int64] = [], first = 0
            for (l, shape) in shapes.enumerated() {
                table += [w[l].address, wCopy[l].address, gCopy[l].address, g[l].address].map { Int64(bitPattern: $0) }
                table += [shape.k, shape.c, shape.taps, first].map(Int64.init)
                first += shape.k * shape.c * shape.taps
            }
            let tableBuffer = try DeviceBuffer(bytes: 8 * table.count)
            try table.withUnsafeBytes { try tableBuffer.upload(raw: $0) }
            for backward in [false, true] {
                try context.launch("vae_transpose_filters", grid: grid(first), [.buffer(tableBuffer), .int32(2), .int64(first), .int32(backward ? 1 : 0)])
                var gpu: [Float] = [], cpu: [Float] = []
                for (l, shape) in shapes.enumerated() {
                    let (source, out) = backward ? (krscGradients[l], try g[l].download()) : (stored[l], try wCopy[l].download())
                    var expected = [Float](repeating: 0, count: source.count)
                    for kk in 0..<shape.k {
                        for cc in 0..<shape.c {
                            for tap in 0..<shape.taps {
                                let pytorch = (kk * shape.c + cc) * shape.taps + tap, cudnn = (kk * shape.taps + tap) * shape.c + cc
                                if backward { expected[pytorch] = source[cudnn] } else { expected[cudnn] = source[pytorch] }
                            }
                        }
                    }
                    gpu += out
                    cpu += expected
                }
                record("vae_transpose_filters (\(backward ? "gradients back to [k, c, taps]" : "weights to cuDNN's [k, taps, c]"), 2 layers)", "loops", gpu, cpu, tolerance: 0)
            }
        }

        // Nearest upsampling by 2 of [B, H, W, C] and its backward pass.
        let small = random(3 * 4 * 5 * 6), smallBuffer = try DeviceBuffer(small), large = try DeviceBuffer(count: 4 * small.count)
        try context.launch("vae_upsample", grid: grid(4 * small.count), [.buffer(smallBuffer), .int32(3), .int32(4), .int32(5), .int32(6), .int32(2), .buffer(large)])
        let upsample = Upsample(factor: 2)
        record("vae_upsample", "Upsample.forward", try large.download(), upsample.forward(Tensor(shape: [3, 4, 5, 6], values: small)).toArray(), tolerance: 0)
        let upstream = random(4 * small.count)
        try large.upload(upstream)
        try context.launch("vae_upsample_backward", grid: grid(small.count), [.buffer(large), .int32(3), .int32(4), .int32(5), .int32(6), .int32(2), .buffer(smallBuffer)])
        record("vae_upsample_backward", "Upsample.backward", try smallBuffer.download(), upsample.backward(Tensor(shape: [3, 8, 10, 6], values: upstream))!.toArray())

        // A convolution's bias gradient through its ReLU: 3,000 rows in partial sums of 64, then their sums.
        let (tall, columns, chunk) = (3000, 7, 64), parts = (tall + chunk - 1) / chunk
        let output = random(tall * columns), g = random(tall * columns)
        let (yBuffer, gBuffer) = (try DeviceBuffer(output), try DeviceBuffer(g))
        let partials = try DeviceBuffer(count: parts * columns), sums = try DeviceBuffer(count: columns)
        try context.launch("vae_bias_gradient_partials", grid: grid(parts * columns), [
            .buffer(gBuffer), .buffer(yBuffer), .int32(1), .float(0), .int32(Int32(tall)), .int32(Int32(columns)), .int32(Int32(chunk)), .buffer(partials),
        ])
        try context.launch("vae_bias_gradient", grid: (columns + 31) / 32, block: 256, shared: 256 * 4, [
            .buffer(partials), .buffer(nil), .int32(0), .float(0), .int32(Int32(parts)), .int32(Int32(columns)), .buffer(sums),
        ])
        let masked = Tensor(shape: [tall, columns], values: g.indices.map { output[$0] > 0 ? g[$0] : 0 })
        var sumsCPU = [Float](repeating: 0, count: columns)
        masked.sumRows(into: &sumsCPU)
        record("vae_bias_gradient_partials + vae_bias_gradient (ReLU)", "ReLU.backward, Tensor.sumRows", try gBuffer.download() + sums.download(),
               masked.toArray() + sumsCPU)

        // Slices of a split product added in order.
        let (sliceCount, sliceSize) = (5, 1000)
        let slices = random(sliceCount * sliceSize), slicesBuffer = try DeviceBuffer(slices), added = try DeviceBuffer(count: sliceSize)
        try context.launch("vae_sum_slices", grid: grid(sliceSize), [.buffer(slicesBuffer), .int64(sliceSize), .int32(Int32(sliceCount)), .buffer(added)])
        record("vae_sum_slices", "the slices added (loop)", try added.download(),
               (0..<sliceSize).map { i in (0..<sliceCount).reduce(Float(0)) { $0 + slices[$1 * sliceSize + i] } })
        return result
    }

    /// A model's architecture and activation for a row's name ("" for the default MLP with ReLU).
    static func description(_ config: ModelConfig) -> String {
        (config.architecture == .conv ? ", conv \(config.channels.map(String.init).joined(separator: ",")) \(config.upsampling.rawValue)" : "")
            + (config.activation == .relu ? "" : ", \(config.activation.rawValue)")
            + (config.upperLatentDimension > 0 ? ", two stochastic layers" : "")
    }

    /// Every check: the kernels (``run(_:rows:hidden:latent:pixels:)``) and, with cuBLAS, training
    /// steps of each objective, optimiser, likelihood, conditional and convolutional model and
    /// activation against `Trainer`, and the evaluations against the CPU's.
    /// With `cudnn`, the convolutional models' steps and evaluations run their convolutions
    /// through it (and one through the patch matrices as well).
    public static func all(_ context: CUDAContext, cublas: CUBLAS?, cudnn: CUDNN? = nil) throws -> [Row] {
        var rows = try run(context)
        guard let cublas else { return rows }
        rows += try trainingSteps(context, cublas: cublas)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(kl: .mc))
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 3))
        rows += try trainingSteps(context, cublas: cublas, sgd: true, clipNorm: 0.5)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(freeBits: 0.05))
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 2), conditionClasses: 3)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 2), likelihood: .gaussian)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 2), likelihood: .gaussianPixel)
        // SGD: the size of ∂/∂s shows (Adam moves a scalar by about its rate, whatever the size).
        rows += try trainingSteps(context, cublas: cublas, sgd: true, likelihood: .gaussianShared)
        // The activations besides ReLU, and the convolutional models (24 × 24 images: a bias
        // gradient of more than 1,024 rows is summed in two passes).
        rows += try trainingSteps(context, cublas: cublas, model: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [32, 16], latentDimension: 4, activation: .softplus))
        rows += try trainingSteps(context, cublas: cublas, model: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [32], latentDimension: 4, activation: .sigmoid))
        rows += try trainingSteps(context, cublas: cublas, model: convolutional, cudnn: cudnn)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 2), model: convolutionalNearest, cudnn: cudnn)
        if cudnn != nil { rows += try trainingSteps(context, cublas: cublas, model: convolutional) }
        // Two stochastic layers: the analytic KL of z₂ (K = 1), everything sampled (K = 1), the IWAE bound.
        rows += try trainingSteps(context, cublas: cublas, model: twoLayers)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(kl: .mc), model: twoLayers)
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 3), model: twoLayers)
        // bf16 products: one against the exact product, three steps against the FP32 trainer.
        rows.append(try bf16Product(cublas))
        if cublas.lt != nil {
            rows += try [false, true].map { try biasProduct(cublas, relu: $0) } + [try biasGradientProduct(cublas)]
            if ProcessInfo.processInfo.environment["VAE_CUDA_LT"] != "bias" { rows += try reluMaskProducts(cublas) }
        }
        rows.append(try graphsAgainstPlainLaunches(context, cublas: cublas, cudnn: cudnn))
        // Products split along k (strided-batched slices, then vae_sum_slices), FP32 and bf16.
        rows += try trainingSteps(context, cublas: cublas, splitK: .parts(4))
        rows += try trainingSteps(context, cublas: cublas, objective: TrainingObjective(importanceSamples: 2), precision: .bf16, splitK: .parts(2))
        rows += try trainingSteps(context, cublas: cublas, model: convolutional, precision: .bf16)
        rows += try importanceSampling(context, cublas: cublas)
        rows += try importanceSampling(context, cublas: cublas, likelihood: .gaussian)
        rows += try importanceSampling(context, cublas: cublas, likelihood: .gaussianPixel)
        rows += try importanceSampling(context, cublas: cublas, likelihood: .gaussianShared)
        rows += try importanceSampling(context, cublas: cublas, conditionClasses: 3)
        rows += try importanceSampling(context, cublas: cublas, model: convolutional, cudnn: cudnn)
        rows += try importanceSampling(context, cublas: cublas, model: convolutionalNearest, cudnn: cudnn)
        rows += try importanceSampling(context, cublas: cublas, model: twoLayers)
        return rows
    }

    /// The small convolutional models of the checks: the reference model's layers (strided
    /// convolutions, transposed convolutions) at 2 and 3 channels; and with nearest upsampling,
    /// the leaky ReLU and a σ per pixel (two output channels, so the last layout change moves values).
    /// Four steps of the conv model (a full batch, then the epoch's short last one, then full
    /// ones again: two graphs, each reused with new arguments) as CUDA graphs and as plain
    /// launches, from the same weights: the weights bit for bit the same, and every step a graph.
    static func graphsAgainstPlainLaunches(_ context: CUDAContext, cublas: CUBLAS, cudnn: CUDNN? = nil) throws -> Row {
        var weights: [[Float]] = []
        var launched = 0
        var reason: String?
        var shape = ""
        for graphs in [true, false] {
            var initial = RandomGenerator(seed: 41)
            let model = VariationalAutoencoder(config: convolutional, rng: &initial)
            let step = try CUDAStep(model: model, context: context, cublas: cublas)
            step.cudnn = cudnn
            if !graphs { step.graphs = nil } else if step.graphs == nil { step.graphs = CUDAGraphs(context: context, cublas: cublas) }
            var rng = RandomGenerator(seed: 42)
            let pixels = convolutional.inputShape.reduce(1, *)
            let data = ImageDataset(pixels: (0..<24 * pixels).map { _ in UInt8(truncatingIfNeeded: Int(rng.next() >> 56)) }, labels: nil, shape: convolutional.inputShape)
            try step.useData(data)
            let loader = BatchLoader(dataset: data, batchSize: 16, shuffle: true, binarize: true, seed: 5)
            loader.counterBinarization = CounterNoise(seed: 6)
            loader.fillsImages = false
            let optimizer = Adam(parameters: model.parameters)
            var t: UInt64 = 0
            for epoch in 1...2 {
                for batch in loader.epoch(number: epoch) {
                    _ = try step.enqueueStep(batch, noiseSeed: 7, stream: t, klWeight: 0.5, optimizer: optimizer)
                    t += 1
                }
            }
            _ = try step.collectLosses()
            try step.download(into: model)
            weights.append(model.parameters.flatMap { $0.value.toArray() })
            if graphs {
                launched = step.graphs?.launched ?? 0
                reason = step.graphs?.disabledReason
                shape = step.graphs?.shapeSummary.map { ", " + $0 } ?? ""
            }
        }
        let same = zip(weights[0], weights[1]).allSatisfy { $0.bitPattern == $1.bitPattern }
        let error = launched == 4 && same ? 0 : launched < 4 ? Double.infinity : worst(weights[0], weights[1])
        return Row(kernel: "4 steps as CUDA graphs (\(launched) launched\(shape)\(cudnn != nil ? ", cuDNN's convolutions captured" : "")\(reason.map { "; off: \($0)" } ?? ""))", twin: "the same steps launched plainly, bit for bit",
                   elements: weights[1].count, largestError: error, tolerance: 0)
    }

    /// Σ_l term(l) over l < `count` in double, and Σ_l |term(l)| (the scale its rounding is judged against).
    static func exactSum(_ count: Int, _ term: (Int) -> Double) -> (sum: Double, magnitude: Double) {
        var (sum, magnitude) = (0.0, 0.0)
        for l in 0..<count {
            let t = term(l)
            sum += t
            magnitude += abs(t)
        }
        return (sum, magnitude)
    }

    /// cuBLAS's bf16 product (`CUBLAS.sgemm` with `MatrixPrecision.bf16`, C = A Bᵀ as the
    /// forward pass asks, 96 × 300 by 300 × 80) against the exact product (in double): each
    /// element within 2⁻⁷ Σ_l |a_il b_jl| — two roundings to bf16's 8 bits of mantissa and FP32
    /// sums; a product in the wrong order or of the wrong operands is off by the whole sum.
    static func bf16Product(_ cublas: CUBLAS) throws -> Row {
        let (m, n, k) = (96, 80, 300)
        var rng = RandomGenerator(seed: 31)
        let a = (0..<m * k).map { _ in rng.nextFloat() * 2 - 1 }, b = (0..<n * k).map { _ in rng.nextFloat() * 2 - 1 }
        let (aBuffer, bBuffer, cBuffer) = (try DeviceBuffer(a), try DeviceBuffer(b), try DeviceBuffer(count: m * n))
        try cublas.sgemm(
            transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: 1, a: aBuffer.address, lda: k, b: bBuffer.address, ldb: k, beta: 0,
            c: cBuffer.address, ldc: n, precision: .bf16)
        let c = try cBuffer.download()
        var worstError = 0.0
        for i in 0..<m {
            for j in 0..<n {
                let (exact, magnitude) = exactSum(k) { Double(a[i * k + $0]) * Double(b[j * k + $0]) }
                worstError = max(worstError, abs(Double(c[i * n + j]) - exact) / magnitude)
            }
        }
        return Row(kernel: "cuBLAS bf16 product (COMPUTE_32F_FAST_16BF)", twin: "the exact product, relative to Σ|a b|", elements: m * n,
                   largestError: worstError, tolerance: 1.0 / 128)
    }

    /// cuBLASLt's product with the bias (and ReLU) epilogue (`CUBLAS.product` with `ProductEpilogue.bias`, y = h Wᵀ + b as
    /// a layer's forward pass asks, 96 × 300 by 300 × 80, b on a 256-byte boundary as the step's
    /// parameters are) against the exact product plus bias in double: each element within 2⁻¹⁴
    /// (Σ_l |h_il w_jl| + |b_j|), FP32's rounding over 300 terms with room; a missing or misplaced
    /// bias, or a ReLU not applied, is off by whole values.
    static func biasProduct(_ cublas: CUBLAS, relu: Bool) throws -> Row {
        let (m, n, k) = (96, 80, 300)
        var rng = RandomGenerator(seed: relu ? 33 : 32)
        let h = (0..<m * k).map { _ in rng.nextFloat() * 2 - 1 }, w = (0..<n * k).map { _ in rng.nextFloat() * 2 - 1 }
        let bias = (0..<n).map { _ in rng.nextFloat() * 8 - 4 }
        let (hBuffer, wBuffer, bBuffer, yBuffer) = (try DeviceBuffer(h), try DeviceBuffer(w), try DeviceBuffer(bias), try DeviceBuffer(count: m * n))
        let name = "cuBLASLt product + bias\(relu ? " + ReLU" : "") (epilogue \(relu ? "RELU_BIAS" : "BIAS"))"
        let epilogue = ProductEpilogue.bias(address: bBuffer.address, relu: relu)
        guard cublas.fuses(epilogue, transposeA: false, transposeB: true, m: m, n: n, k: k, a: hBuffer.address, lda: k, b: wBuffer.address, ldb: k,
                           c: yBuffer.address, ldc: n, precision: .fp32) else {
            return Row(kernel: name + ": cuBLASLt offered no algorithm", twin: "the exact product + bias", elements: m * n, largestError: .infinity, tolerance: 0)
        }
        try cublas.product(epilogue, transposeA: false, transposeB: true, m: m, n: n, k: k, a: hBuffer.address, lda: k, b: wBuffer.address, ldb: k,
                           c: yBuffer.address, ldc: n, precision: .fp32)
        let y = try yBuffer.download()
        var worstError = 0.0
        for i in 0..<m {
            for j in 0..<n {
                let (product, size) = exactSum(k) { Double(h[i * k + $0]) * Double(w[j * k + $0]) }
                let sum = product + Double(bias[j]), exact = relu ? max(sum, 0) : sum
                worstError = max(worstError, abs(Double(y[i * n + j]) - exact) / (size + abs(Double(bias[j]))))
            }
        }
        return Row(kernel: name, twin: "the exact product + bias\(relu ? ", then ReLU" : ""), relative to Σ|h w| + |b|", elements: m * n,
                   largestError: worstError, tolerance: 1.0 / 16384)
    }

    /// cuBLASLt's weight-gradient product with the bias-gradient epilogue (BGRADB: ∂W = gᵀ h as a
    /// layer's backward pass asks, g [96 × 80], h [96 × 300], and ∂b = Σ_r g[r] beside it) against
    /// the exact sums in double: ∂W within 2⁻¹⁴ Σ_r |g h|, ∂b within 2⁻¹⁴ Σ_r |g|; a sum over the
    /// wrong operand or axis is off by whole values.
    static func biasGradientProduct(_ cublas: CUBLAS) throws -> Row {
        let (rows, outputs, inputs) = (96, 80, 300)
        var rng = RandomGenerator(seed: 34)
        let g = (0..<rows * outputs).map { _ in rng.nextFloat() * 2 - 1 }, h = (0..<rows * inputs).map { _ in rng.nextFloat() * 2 - 1 }
        let (gBuffer, hBuffer, wBuffer, bBuffer) = (try DeviceBuffer(g), try DeviceBuffer(h), try DeviceBuffer(count: outputs * inputs), try DeviceBuffer(count: outputs))
        let name = "cuBLASLt weight gradient + bias gradient (epilogue BGRADB)"
        let epilogue = ProductEpilogue.rowSumsOfA(address: bBuffer.address)
        guard cublas.fuses(epilogue, transposeA: true, transposeB: false, m: outputs, n: inputs, k: rows, a: gBuffer.address, lda: outputs, b: hBuffer.address,
                           ldb: inputs, c: wBuffer.address, ldc: inputs, precision: .fp32) else {
            return Row(kernel: name + ": cuBLASLt offered no algorithm", twin: "the exact sums", elements: outputs * (inputs + 1), largestError: .infinity, tolerance: 0)
        }
        try cublas.product(epilogue, transposeA: true, transposeB: false, m: outputs, n: inputs, k: rows, a: gBuffer.address, lda: outputs, b: hBuffer.address,
                           ldb: inputs, c: wBuffer.address, ldc: inputs, precision: .fp32)
        let (dW, db) = (try wBuffer.download(), try bBuffer.download())
        var worstError = 0.0
        for j in 0..<outputs {
            let (sum, magnitude) = exactSum(rows) { Double(g[$0 * outputs + j]) }
            worstError = max(worstError, abs(Double(db[j]) - sum) / magnitude)
            for i in 0..<inputs {
                let (exact, size) = exactSum(rows) { Double(g[$0 * outputs + j]) * Double(h[$0 * inputs + i]) }
                worstError = max(worstError, abs(Double(dW[j * inputs + i]) - exact) / size)
            }
        }
        return Row(kernel: name, twin: "the exact gᵀ h and Σ_r g, relative to Σ|g h| and Σ|g|", elements: outputs * (inputs + 1), largestError: worstError,
                   tolerance: 1.0 / 16384)
    }

    /// cuBLASLt's ReLU bit mask from a forward product and its use in the next layer's ∂h product,
    /// as a step runs them: y = max(h Wᵀ + b, 0) with its mask (RELU_AUX_BIAS; h [96 × 300], W
    /// [200 × 300], so each row's bits span two 128-bit words), then ∂pre = (g V) ⊙ [y > 0] and
    /// ∂b = Σ_r ∂pre[r] (DRELU_BGRAD; g [96 × 50], V [50 × 200]) — against the exact sums in
    /// double, the mask taken from the y it came back with: y within 2⁻¹⁴ (Σ|h w| + |b|), ∂pre
    /// within 2⁻¹⁴ Σ|g v|, ∂b within 2⁻¹⁴ Σ_r Σ|g v|. A mask read with the wrong stride or not
    /// applied is off by whole values. Two rows; when cuBLASLt offers no algorithm for either,
    /// one row that says so (a step then does that work in kernels of its own).
    static func reluMaskProducts(_ cublas: CUBLAS) throws -> [Row] {
        let (rows, inputs, outputs, next) = (96, 300, 200, 50)
        var rng = RandomGenerator(seed: 35)
        let h = (0..<rows * inputs).map { _ in rng.nextFloat() * 2 - 1 }, w = (0..<outputs * inputs).map { _ in rng.nextFloat() * 2 - 1 }
        let bias = (0..<outputs).map { _ in rng.nextFloat() * 8 - 4 }
        let g = (0..<rows * next).map { _ in rng.nextFloat() * 2 - 1 }, v = (0..<next * outputs).map { _ in rng.nextFloat() * 2 - 1 }
        let stride = ProductEpilogue.maskStride(columns: outputs)
        let (hBuffer, wBuffer, bBuffer, yBuffer) = (try DeviceBuffer(h), try DeviceBuffer(w), try DeviceBuffer(bias), try DeviceBuffer(count: rows * outputs))
        let (gBuffer, vBuffer, dBuffer, dbBuffer) = (try DeviceBuffer(g), try DeviceBuffer(v), try DeviceBuffer(count: rows * outputs), try DeviceBuffer(count: outputs))
        let mask = try DeviceBuffer(count: rows * stride / 32)
        let forward = ProductEpilogue.biasReLUMask(address: bBuffer.address, mask: mask.address, maskStride: stride)
        let backward = ProductEpilogue.reluGradient(address: dbBuffer.address, mask: mask.address, maskStride: stride)
        let names = ("cuBLASLt product + bias + ReLU with its bit mask (epilogue RELU_AUX_BIAS)",
                     "cuBLASLt ∂h product through the ReLU's mask + bias gradient (epilogue DRELU_BGRAD)")
        guard cublas.fuses(forward, transposeA: false, transposeB: true, m: rows, n: outputs, k: inputs, a: hBuffer.address, lda: inputs,
                           b: wBuffer.address, ldb: inputs, c: yBuffer.address, ldc: outputs, precision: .fp32),
              cublas.fuses(backward, transposeA: false, transposeB: false, m: rows, n: outputs, k: next, a: gBuffer.address, lda: next,
                           b: vBuffer.address, ldb: outputs, c: dBuffer.address, ldc: outputs, precision: .fp32)
        else {
            // Not a failure: the step then takes the ReLU's derivative in its own bias-gradient pass.
            return [Row(kernel: "cuBLASLt ReLU masks (RELU_AUX_BIAS, DRELU_BGRAD): no algorithm offered, not used", twin: "the bias-gradient pass",
                        elements: 0, largestError: 0, tolerance: 0)]
        }
        try cublas.product(forward, transposeA: false, transposeB: true, m: rows, n: outputs, k: inputs, a: hBuffer.address, lda: inputs,
                           b: wBuffer.address, ldb: inputs, c: yBuffer.address, ldc: outputs, precision: .fp32)
        try cublas.product(backward, transposeA: false, transposeB: false, m: rows, n: outputs, k: next, a: gBuffer.address, lda: next,
                           b: vBuffer.address, ldb: outputs, c: dBuffer.address, ldc: outputs, precision: .fp32)
        let (y, d, db) = (try yBuffer.download(), try dBuffer.download(), try dbBuffer.download())
        var (forwardError, backwardError) = (0.0, 0.0)
        for j in 0..<outputs {
            var (columnSum, columnMagnitude) = (0.0, 0.0)
            for r in 0..<rows {
                let (product, size) = exactSum(inputs) { Double(h[r * inputs + $0]) * Double(w[j * inputs + $0]) }
                forwardError = max(forwardError, abs(Double(y[r * outputs + j]) - max(product + Double(bias[j]), 0)) / (size + abs(Double(bias[j]))))
                let (gradient, magnitude) = exactSum(next) { Double(g[r * next + $0]) * Double(v[$0 * outputs + j]) }
                let exact = y[r * outputs + j] > 0 ? gradient : 0
                backwardError = max(backwardError, abs(Double(d[r * outputs + j]) - exact) / magnitude)
                columnSum += exact
                columnMagnitude += magnitude
            }
            backwardError = max(backwardError, abs(Double(db[j]) - columnSum) / columnMagnitude)
        }
        return [
            Row(kernel: names.0, twin: "the exact product + bias, then ReLU, relative to Σ|h w| + |b|", elements: rows * outputs,
                largestError: forwardError, tolerance: 1.0 / 16384),
            Row(kernel: names.1, twin: "the exact (g V) ⊙ [y > 0] and its column sums, relative to Σ|g v|", elements: (rows + 1) * outputs,
                largestError: backwardError, tolerance: 1.0 / 16384),
        ]
    }

    /// A small model with two stochastic layers (64-32-4 and 4-8-3, tanh, as the IWAE paper's).
    static let twoLayers = ModelConfig(
        inputShape: [1, 8, 8], hiddenSizes: [32], latentDimension: 4, activation: .tanh, upperLatentDimension: 3, upperHiddenSizes: [8])
    static let convolutional = ModelConfig(architecture: .conv, inputShape: [1, 24, 24], latentDimension: 4, channels: [2, 3])
    static let convolutionalNearest = ModelConfig(
        architecture: .conv, inputShape: [1, 24, 24], latentDimension: 3, activation: .leakyRelu, likelihood: .gaussianPixel, channels: [3, 4],
        upsampling: .nearest)

    /// `steps` training steps of a small MLP VAE (64-32-4, ReLU, Bernoulli, Adam at 10⁻³, batch
    /// 16 of 40 dynamically binarised examples, so the last batch is short; ε from the same
    /// Philox streams) on the GPU (`CUDAStep`, the data set on the device, the losses read back
    /// once at the end) and on the CPU (`Trainer`, batches from the loader) from the same
    /// initial weights: the batch losses and the final weights, as rows of the table.
    /// With `objective` the sampled KL or the IWAE bound instead of the analytic −ELBO (the rows
    /// then name it).
    /// With `sgd`, SGD (rate 0.05, momentum 0.9, weight decay 10⁻⁴) instead of Adam; with
    /// `clipNorm`, the gradient clipped to that global norm; with `model`, that model instead (its
    /// input shape gives the examples').
    public static func trainingSteps(
        _ context: CUDAContext, cublas: CUBLAS, steps: Int = 3, objective: TrainingObjective = TrainingObjective(), sgd: Bool = false,
        clipNorm: Float? = nil, likelihood: LikelihoodKind = .bernoulli, conditionClasses: Int = 0, model: ModelConfig? = nil,
        precision: MatrixPrecision = .fp32, splitK: CUDAStep.SplitK? = nil, cudnn: CUDNN? = nil
    ) throws -> [Row] {
        let config = model ?? ModelConfig(
            inputShape: [1, 8, 8], hiddenSizes: [32], latentDimension: 4, likelihood: likelihood, gaussianSigma: 0.3,
            conditionClasses: conditionClasses)
        let pixels = config.inputShape.reduce(1, *)
        var cpuInit = RandomGenerator(seed: 11), gpuInit = RandomGenerator(seed: 11)
        let cpuModel = VariationalAutoencoder(config: config, rng: &cpuInit)
        let gpuModel = VariationalAutoencoder(config: config, rng: &gpuInit)
        func optimizer(_ model: VariationalAutoencoder) -> Optimizer {
            sgd ? SGD(parameters: model.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4) : Adam(parameters: model.parameters)
        }
        let trainer = Trainer(
            model: cpuModel, optimizer: optimizer(cpuModel), rng: RandomGenerator(seed: 1), workers: 1, objective: objective, clipNorm: clipNorm)
        trainer.counterNoise = CounterNoise(seed: 99)
        let settings = optimizer(gpuModel)  // its rate and constants; its state lives on the GPU
        let gpu = try CUDAStep(model: gpuModel, context: context, cublas: cublas)
        gpu.precision = precision
        gpu.cudnn = cudnn
        if let splitK {
            gpu.splitK = splitK
            gpu.splitScratchFloor = 0  // grown product by product: a step's work names the smaller ones too
        }
        var rng = RandomGenerator(seed: 12)
        // Labels 0 … 4 for 3 classes: labels 3 and 4 have no class (a row of zeros, as on the CPU).
        let labels = conditionClasses > 0 ? (0..<40).map { $0 * 7 % 5 } : nil
        let data = ImageDataset(pixels: (0..<40 * pixels).map { _ in UInt8(truncatingIfNeeded: Int(rng.next() >> 56)) }, labels: labels, shape: config.inputShape)
        try gpu.useData(data)
        func loader(fills: Bool) -> BatchLoader {
            let loader = BatchLoader(dataset: data, batchSize: 16, shuffle: true, binarize: true, seed: 5, conditionClasses: conditionClasses)
            loader.counterBinarization = CounterNoise(seed: 6)
            loader.fillsImages = fills
            return loader
        }
        let cpuLoader = loader(fills: true), gpuLoader = loader(fills: false)
        var cpuBatches = cpuLoader.epoch(number: 2), gpuBatches = gpuLoader.epoch(number: 2)
        var cpuLosses: [Float] = []
        var gpuQueued: [LossBreakdown] = []
        for t in 0..<steps {
            guard let cpuBatch = cpuBatches.next(), let gpuBatch = gpuBatches.next() else { break }
            cpuLosses.append(Float(try trainer.trainStep(cpuBatch).meanNegativeELBO))
            gpuQueued += try gpu.enqueueStep(gpuBatch, noiseSeed: 99, stream: UInt64(t), objective: objective, klWeight: 1, optimizer: settings,
                                             clipNorm: clipNorm)
        }
        let gpuLosses = (gpuQueued + (try gpu.collectLosses())).map { Float($0.meanNegativeELBO) }
        try gpu.download(into: gpuModel)
        let cpuWeights = cpuModel.parameters.flatMap { $0.value.toArray() }, gpuWeights = gpuModel.parameters.flatMap { $0.value.toArray() }
        let name = (objective.importanceSamples > 1 ? ", IWAE K = \(objective.importanceSamples)" : objective.kl == .mc ? ", sampled KL" : "")
            + (objective.freeBits > 0 ? ", free bits \(objective.freeBits)" : "") + (conditionClasses > 0 ? ", conditional" : "")
            + (sgd ? ", SGD" : "") + (clipNorm.map { ", clipped to \($0)" } ?? "") + (config.likelihood == .bernoulli ? "" : ", \(config.likelihood.rawValue)")
            + description(config) + (precision == .bf16 ? ", bf16 products against FP32" : "")
            + (splitK.map { if case .parts(let p) = $0 { ", products split along k in \(p)" } else { "" } } ?? "")
            + (gpu.cudnnConvolutions > 0 ? ", cuDNN" : gpu.hasConvolutions && precision == .fp32 ? ", patch matrices" : "")
        // bf16 products against the FP32 trainer: within bf16's rounding (3 steps of Adam at 10⁻³).
        let tolerance = precision == .bf16 ? 1e-2 : 1e-4
        return [
            Row(kernel: "training step ×\(steps)\(name) (batch losses)", twin: "Trainer.trainStep", elements: steps, largestError: worst(gpuLosses, cpuLosses), tolerance: tolerance),
            Row(kernel: "training step ×\(steps)\(name) (weights)", twin: "Trainer.trainStep", elements: cpuWeights.count, largestError: worst(gpuWeights, cpuWeights), tolerance: tolerance),
        ]
    }

    /// The evaluation's −ELBO, and importance-sampled log p(x) and ELBO, of 20 images (K = 25 in chunks of 10, so that a chunk
    /// of 5 samples × 3 latent dimensions draws an odd count of normals; groups of 4 images) on
    /// the GPU (`CUDAStep.importanceSampledLogLikelihood`) and on the CPU
    /// (`VariationalAutoencoder.importanceSampledLogLikelihood`), same weights and seed.
    /// With `likelihood` another likelihood than the Bernoulli (the Gaussians at σ = 0.3).
    /// With `conditionClasses`, a conditional model (image i of label i mod 4, the fourth label no
    /// class: a row of zeros). With `model`, that model instead.
    public static func importanceSampling(
        _ context: CUDAContext, cublas: CUBLAS, likelihood: LikelihoodKind = .bernoulli, conditionClasses: Int = 0, model: ModelConfig? = nil,
        cudnn: CUDNN? = nil
    ) throws -> [Row] {
        let config = model ?? ModelConfig(
            inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 3, likelihood: likelihood, gaussianSigma: 0.3,
            conditionClasses: conditionClasses)
        var initial = RandomGenerator(seed: 21)
        let model = VariationalAutoencoder(config: config, rng: &initial)
        var rng = RandomGenerator(seed: 22)
        let pixels = config.inputShape.reduce(1, *)
        let images = Tensor(shape: [20] + config.inputShape, values: (0..<20 * pixels).map { _ in rng.nextFloat() < 0.3 ? 1 : 0 })
        let condition = conditionClasses > 0
            ? Tensor(shape: [20, conditionClasses], values: (0..<20 * conditionClasses).map { $0 % conditionClasses == $0 / conditionClasses % 4 ? 1 : 0 })
            : nil
        let cpu = model.importanceSampledLogLikelihood(images, condition: condition, samples: 25, seed: 5, firstIndex: 3, chunk: 10)
        let step = try CUDAStep(model: model, context: context, cublas: cublas)
        step.cudnn = cudnn
        // Draws for 6 images at a time, decoded 4 at a time (40 rows of 10 samples): uneven groups in both.
        let gpu = try step.importanceSampledLogLikelihood(
            images, condition: condition, samples: 25, seed: 5, firstIndex: 3, chunk: 10, rowsPerLaunch: 40, imagesPerDraw: 6)
        // The evaluation's −ELBO (one ε per image from the same generators).
        let elboGPU = try step.negativeELBO(images, condition: condition, seed: 5, firstIndex: 3)
        let elboCPU = model.negativeELBO(images, condition: condition, seed: 5, firstIndex: 3)
        // Each image's terms and its posterior, as `vae score` reads them.
        let perImageGPU = try step.negativeELBOPerImage(images, condition: condition, seed: 5, firstIndex: 3)
        let perImageCPU = model.negativeELBOPerImage(images, condition: condition, seed: 5, firstIndex: 3)
        let posteriorCPU = model.encode(images, condition: condition)
        let perImage = (
            gpu: (perImageGPU.reconstruction + perImageGPU.kl).map { Float($0) } + Array(UnsafeBufferPointer(start: perImageGPU.posterior.data, count: perImageGPU.posterior.count)),
            cpu: (perImageCPU.reconstruction + perImageCPU.kl).map { Float($0) } + Array(UnsafeBufferPointer(start: posteriorCPU.data, count: posteriorCPU.count)))
        // The latent statistics' sums (KL per dimension, Σ μ, Σ μ²), over two batches of the images.
        let halves = [Tensor(viewing: images, rows: 0..<12), Tensor(viewing: images, rows: 12..<20)]
        let conditionHalves = condition.map { c in [Tensor(viewing: c, rows: 0..<12), Tensor(viewing: c, rows: 12..<20)] }
        let sumsGPU = try step.latentSums((0..<2).map { (halves[$0], conditionHalves?[$0]) }).packed
        let sumsCPU = model.latentSums((0..<2).map { Batch(images: halves[$0], condition: conditionHalves?[$0]) }).packed
        let suffix = (config.likelihood == .bernoulli ? "" : ", \(config.likelihood.rawValue)") + (config.conditionClasses > 0 ? ", conditional" : "")
            + description(config) + (step.cudnnConvolutions > 0 ? ", cuDNN" : "")
        func row(_ name: String, _ value: (ImportanceSampledEstimate) -> Double) -> Row {
            let (g, c) = (gpu.map { Float(value($0)) }, cpu.map { Float(value($0)) })
            return Row(kernel: "importance sampling (\(name))\(suffix)", twin: "importanceSampledLogLikelihood", elements: c.count,
                       largestError: g.count == c.count ? worst(g, c) : .infinity, tolerance: 1e-4)
        }
        return [
            row("log p̂(x)", \.logLikelihood), row("ELBO", \.elbo),
            Row(kernel: "latent statistics (KL, Σ μ, Σ μ² per dimension)\(suffix)", twin: "latentSums", elements: sumsCPU.count,
                largestError: worst(sumsGPU.map { Float($0) }, sumsCPU.map { Float($0) }), tolerance: 1e-4),
            Row(kernel: "evaluation −ELBO (reconstruction, KL)\(suffix)", twin: "negativeELBO(seed:firstIndex:)", elements: 2,
                largestError: worst([Float(elboGPU.reconstruction), Float(elboGPU.kl)], [Float(elboCPU.reconstruction), Float(elboCPU.kl)]), tolerance: 1e-4),
            Row(kernel: "each image's −ELBO terms and posterior\(suffix)", twin: "negativeELBOPerImage, encode", elements: perImage.cpu.count,
                largestError: perImage.gpu.count == perImage.cpu.count ? worst(perImage.gpu, perImage.cpu) : .infinity, tolerance: 1e-4),
        ]
    }
}
