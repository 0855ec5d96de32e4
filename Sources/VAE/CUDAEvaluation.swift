import Foundation
import Tensor

extension CUDAStep {
    /// ``VariationalAutoencoder/importanceSampledLogLikelihood(_:condition:samples:seed:firstIndex:chunk:)``
    /// on the GPU, with the weights this step holds (a conditional model's decoder given each
    /// image's one-hot label, `condition`, for all of its samples): for each row of `images`,
    /// log p̂(x) = log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x) over K = `samples` draws z_k ~ q(z|x),
    /// and the ELBO estimated from the same draws. A model with two stochastic layers draws each
    /// image's ε₂ from its second generator, and log w has every term at the samples.
    ///
    /// The same draws as the CPU's: image i's ε come from its own generator seeded by (`seed`,
    /// `firstIndex` + i), in chunks of `chunk` samples as the CPU draws them — the generator's
    /// words one thread per image (`vae_image_words`) for as many images as 512 MB of draws hold,
    /// Box–Muller in parallel, then a group of those images at a time (about `rowsPerLaunch` rows of
    /// logits) through the decoder together;
    /// each row's log-weight is formed and folded into its image's running log-sum-exp on the
    /// device, so only one group's chunk of logits is ever stored, never K × D per image, and
    /// three numbers per image come back.
    public func importanceSampledLogLikelihood(
        _ images: Tensor, condition: Tensor? = nil, samples: Int, seed: UInt64, firstIndex: Int = 0, chunk: Int = 1000, rowsPerLaunch: Int = 65_536,
        imagesPerDraw: Int? = nil
    ) throws -> [ImportanceSampledEstimate] {
        precondition(samples >= 1 && chunk >= 1, "need at least one sample")
        precondition(images.rowSize == pixels, "images of \(images.rowSize) values for a model of \(pixels)")
        let (n, d) = (images.rows, latent)
        guard n > 0 else { return [] }
        let perImage = min(chunk, samples)
        let group = max(1, min(n, rowsPerLaunch / perImage, rowsPerPass(rows: n * perImage) / perImage))
        let (chunkValues, chunkPairs) = (perImage * d, (perImage * max(d, upperLatent) + 1) / 2)
        // The draws are made for more images at once than are decoded at once: an image's
        // generator is sequential (one thread per image), so a launch takes its chunk's length
        // whatever the number of images — as many images as the evaluation's memory bound allows
        // (`imagesPerDraw` for the checks), then decoded a group at a time.
        let drawBytes = 16 * chunkPairs + 4 * chunkValues + 4 * perImage * upperLatent
        let drawGroup = max(1, min(n, imagesPerDraw ?? max(group, 4 * Self.evaluationValues / drawBytes)))
        // Buffers for one draw group's ε (and ε₂), and one decoding group at a time.
        let words = try DeviceBuffer(bytes: 16 * drawGroup * chunkPairs), eps = try DeviceBuffer(count: drawGroup * chunkValues)
        let decoderWork = try makeWorkspace(decoderOps, input: d, rows: group * perImage, training: false)
        let z = try DeviceBuffer(count: group * chunkValues), rowNLL = try DeviceBuffer(count: group * perImage)
        let logWeights = try DeviceBuffer(bytes: 8 * group * perImage)
        let states = try imageGenerators(seed: seed, firstIndex: firstIndex, images: n)
        // A second stochastic layer: each image's ε₂ from its second generator, every term of log w sampled.
        var upperWork = upperLatent > 0 ? try makeUpperWork(rows: group * perImage, training: false) : nil
        let upperStates = upperLatent > 0 ? try imageGenerators(seed: seed, firstIndex: firstIndex, images: n, upper: true) : nil
        let eps2 = upperLatent > 0 ? try DeviceBuffer(count: drawGroup * perImage * upperLatent) : nil
        let rowKL = upperLatent > 0 ? try DeviceBuffer(count: group * perImage) : nil
        // Each image's running log-sum-exp (shift, scaled) and Σ log w, in double: [3, n].
        let sums = try DeviceBuffer(bytes: 3 * 8 * n)
        let initial = [Double](repeating: -.infinity, count: n) + [Double](repeating: 0, count: 2 * n)
        try initial.withUnsafeBytes { try sums.upload(raw: $0) }
        let (x, posterior, labels) = try encode(images, condition: condition)
        // Draw group by draw group, each image's chunks in order, each chunk's decoding group by
        // group (an image's generators are its own, so the groups' order changes no draw).
        for drawFirst in stride(from: 0, to: n, by: drawGroup) {
            let drawn = min(drawGroup, n - drawFirst)
            var done = 0
            while done < samples {
                let k = min(perImage, samples - done)
                try imageNormals(rows(states, drawFirst, drawn, width: 8), images: drawn, count: k * d, words: words, into: eps)
                if let upperStates, let eps2 {
                    try imageNormals(rows(upperStates, drawFirst, drawn, width: 8), images: drawn, count: k * upperLatent, words: words, into: eps2)
                }
                for first in stride(from: drawFirst, to: drawFirst + drawn, by: group) {
                    let m = min(group, drawFirst + drawn - first), sampleRows = m * k
                    let imagePosterior = rows(posterior, first, m, width: 2 * d)
                    let groupLabels = labels.map { rows($0, first, m, width: conditionClasses) }
                    let groupEps = rows(eps, first - drawFirst, m, width: k * d)
                    let groupEps2 = eps2.map { rows($0, first - drawFirst, m, width: k * upperLatent) }
                    // The doubles of images first ..< first + m in each of the three rows of `sums`.
                    let shift = rows(sums, first, m, width: 2), scaled = rows(sums, n + first, m, width: 2), total = rows(sums, 2 * n + first, m, width: 2)
                    try context.launch("vae_sample_latents", grid: CUDAContext.grid(for: sampleRows * d), [
                        .buffer(imagePosterior), .buffer(groupEps), .buffer(z), .int32(Int32(m)), .int32(Int32(k)), .int32(Int32(d)),
                    ])
                    try forward(decoderOps, input: z, width: d, work: decoderWork, rows: sampleRows, condition: groupLabels.map { ($0, k) })
                    try likelihoodRows(
                        x: rows(x, first, m, width: pixels), output: decoderWork.lastOutput(input: z), gradient: nil, into: rowNLL, rows: sampleRows, scale: 1,
                        xRepeat: k)
                    if var work = upperWork, let groupEps2, let rowKL {
                        work.eps2 = groupEps2
                        upperWork = work
                        try upperForward(z1: z, rows: sampleRows, work: work)
                        try twoLayerKL(
                            posterior1: imagePosterior, eps1: groupEps, z1: z, images: m, samples: k, analytic: false, work: work, rowKL: rowKL,
                            rowNLL: rowNLL, logWeights: logWeights)
                    } else {
                        try context.launch("vae_log_weights", grid: CUDAContext.grid(for: sampleRows), [
                            .buffer(z), .buffer(imagePosterior), .buffer(rowNLL), .int32(Int32(m)), .int32(Int32(k)), .int32(Int32(d)), .buffer(logWeights),
                        ])
                    }
                    try context.launch("vae_logsumexp_update", grid: CUDAContext.grid(for: m, block: 64), block: 64, [
                        .buffer(logWeights), .int32(Int32(m)), .int32(Int32(k)), .buffer(shift), .buffer(scaled), .buffer(total),
                    ])
                }
                done += k
            }
        }
        var values = [Double](repeating: 0, count: 3 * n)
        try values.withUnsafeMutableBytes { try sums.download(raw: $0) }
        let logK = log(Double(samples))
        return (0..<n).map { i in
            ImportanceSampledEstimate(logLikelihood: values[i] + log(values[n + i]) - logK, elbo: values[2 * n + i] / Double(samples))
        }
    }

    /// ``VariationalAutoencoder/negativeELBO(_:condition:seed:firstIndex:)`` on the GPU, with the
    /// weights this step holds: −log p(x|z) + KL(q(z|x) ‖ p(z)) of each row of `images` (the
    /// analytic KL, β = 1) with one ε per image from its own generator seeded by (`seed`,
    /// `firstIndex` + i), as the CPU draws it; the terms summed in double, images in order. With
    /// two stochastic layers, ε₂ from each image's second generator and the KL term of
    /// `twoLayerKL` with z₂'s part in closed form.
    public func negativeELBO(_ images: Tensor, condition: Tensor? = nil, seed: UInt64, firstIndex: Int = 0) throws -> LossBreakdown {
        let n = images.rows
        guard n > 0 else { return LossBreakdown() }
        return try evaluationRows(images, condition: condition, seed: seed, firstIndex: firstIndex) { rowNLL, rowKL, posterior in
            // With one stochastic layer each row's analytic KL is summed from the posterior where
            // the terms are recorded; with two, from the rows twoLayerKL wrote.
            let terms = try DeviceBuffer(bytes: 24)
            try context.launch("vae_record_terms", grid: 1, block: 128, shared: 128 * 16, [
                .buffer(rowNLL), .buffer(rowKL), .buffer(rowKL == nil ? posterior : nil), .int32(Int32(latent)), .int32(Int32(n)), .float(1), .buffer(nil),
                .buffer(terms), .int32(0),
            ])
            var values = [Double](repeating: 0, count: 3)
            try values.withUnsafeMutableBytes { try terms.download(raw: $0) }
            return LossBreakdown(reconstruction: values[0], kl: values[1], objective: values[2], images: n)
        }
    }

    /// Each image's −ELBO terms as ``negativeELBO(_:condition:seed:firstIndex:)`` sums them — the
    /// rows' −log p(x|z) from the GPU, the KL term from the posterior the GPU encoded (the CPU's
    /// ``klDivergence(_:perExample:gradient:scale:dimensionWeights:)`` on it; with two stochastic
    /// layers the GPU's rows) — and that posterior, [n, 2d] (μ then log σ²).
    public func negativeELBOPerImage(
        _ images: Tensor, condition: Tensor? = nil, seed: UInt64, firstIndex: Int = 0
    ) throws -> (reconstruction: [Double], kl: [Double], posterior: Tensor) {
        let n = images.rows
        let posteriorTensor = Tensor(shape: [n, 2 * latent])
        guard n > 0 else { return ([], [], posteriorTensor) }
        let (reconstruction, rowKLs) = try evaluationRows(images, condition: condition, seed: seed, firstIndex: firstIndex) { rowNLL, rowKL, posterior in
            try posterior.download(raw: UnsafeMutableRawBufferPointer(start: posteriorTensor.data, count: 4 * posteriorTensor.count))
            return (try rowNLL.download(count: n).map(Double.init), try rowKL?.download(count: n).map(Double.init))
        }
        var kl = rowKLs ?? [Double](repeating: 0, count: n)
        if rowKLs == nil { kl.withUnsafeMutableBufferPointer { _ = klDivergence(posteriorTensor, perExample: $0.baseAddress) } }
        return (reconstruction, kl, posteriorTensor)
    }

    /// The evaluation pass shared by the two above: each image's ε from its generator, z, the
    /// decoder and −log p(x|z) per row; with two stochastic layers each row's KL term too (nil
    /// with one: it is the posterior's closed form). `body` gets the rows and the posterior while
    /// every buffer the queued work uses is still held.
    private func evaluationRows<Result>(
        _ images: Tensor, condition: Tensor?, seed: UInt64, firstIndex: Int,
        _ body: (_ rowNLL: DeviceBuffer, _ rowKL: DeviceBuffer?, _ posterior: DeviceBuffer) throws -> Result
    ) throws -> Result {
        precondition(images.rowSize == pixels, "images of \(images.rowSize) values for a model of \(pixels)")
        let (n, d) = (images.rows, latent)
        let group = rowsPerPass(rows: n)
        let decoderWork = try makeWorkspace(decoderOps, input: d, rows: group, training: false)
        let words = try DeviceBuffer(bytes: 16 * n * ((max(d, upperLatent) + 1) / 2)), eps = try DeviceBuffer(count: n * d), z = try DeviceBuffer(count: n * d)
        let rowNLL = try DeviceBuffer(count: n), rowKL = upperLatent > 0 ? try DeviceBuffer(count: n) : nil
        try imageNormals(try imageGenerators(seed: seed, firstIndex: firstIndex, images: n), images: n, count: d, words: words, into: eps)
        // A second stochastic layer: each image's ε₂ from its second generator; the closed-form KL of z₂.
        var upperWork = upperLatent > 0 ? try makeUpperWork(rows: group, training: false) : nil
        let eps2 = upperLatent > 0 ? try DeviceBuffer(count: n * upperLatent) : nil
        if let eps2 {
            try imageNormals(try imageGenerators(seed: seed, firstIndex: firstIndex, images: n, upper: true), images: n, count: upperLatent, words: words, into: eps2)
        }
        let (x, posterior, labels) = try encode(images, condition: condition)
        try context.launch("vae_sample_latents", grid: CUDAContext.grid(for: n * d), [
            .buffer(posterior), .buffer(eps), .buffer(z), .int32(Int32(n)), .int32(1), .int32(Int32(d)),
        ])
        for first in stride(from: 0, to: n, by: group) {
            let m = min(group, n - first), zRows = rows(z, first, m, width: d)
            try forward(decoderOps, input: zRows, width: d, work: decoderWork, rows: m, condition: labels.map { (rows($0, first, m, width: conditionClasses), 1) })
            try likelihoodRows(
                x: rows(x, first, m, width: pixels), output: decoderWork.lastOutput(input: zRows), gradient: nil, into: rows(rowNLL, first, m, width: 1),
                rows: m, scale: 1, xRepeat: 1)
            if var work = upperWork, let eps2, let rowKL {
                work.eps2 = rows(eps2, first, m, width: upperLatent)
                upperWork = work
                try upperForward(z1: zRows, rows: m, work: work)
                try twoLayerKL(
                    posterior1: rows(posterior, first, m, width: 2 * d), eps1: rows(eps, first, m, width: d), z1: zRows, images: m, samples: 1, analytic: true,
                    work: work, rowKL: rows(rowKL, first, m, width: 1))
            }
        }
        return try withExtendedLifetime((words, eps, z, decoderWork, upperWork, eps2, x, labels)) { try body(rowNLL, rowKL, posterior) }
    }

    /// ``VariationalAutoencoder/latentSums(_:)`` on the GPU for batches of images (with their
    /// one-hot labels for a conditional model): each batch's posteriors encoded there and their
    /// per-dimension KL, Σ μ and Σ μ² added in double, images in order (with two stochastic
    /// layers z₁'s dimensions then z₂'s, as ``LatentStatistics`` says); the sums come back once.
    public func latentSums(_ batches: some Sequence<(images: Tensor, condition: Tensor?)>) throws -> LatentSums {
        let (d, d2) = (latent, upperLatent), total = d + d2
        let sums = try DeviceBuffer(bytes: 24 * total)
        try [Double](repeating: 0, count: 3 * total).withUnsafeBytes { try sums.upload(raw: $0) }
        var images = 0
        for (batch, condition) in batches {
            let n = batch.rows
            guard n > 0 else { continue }
            precondition(batch.rowSize == pixels, "images of \(batch.rowSize) values for a model of \(pixels)")
            let posterior = try encode(batch, condition: condition).posterior
            if d2 == 0 {
                try context.launch("vae_latent_sums", grid: CUDAContext.grid(for: d), [
                    .buffer(posterior), .buffer(nil), .int32(Int32(n)), .int32(Int32(d)), .int32(Int32(total)), .int32(0), .buffer(sums),
                ])
            } else {
                // Two stochastic layers: z₁'s KL against p(z₁|z₂) at z₂ = μ₂(μ₁(x)), z₂'s against N(0, I).
                let work = try makeUpperWork(rows: n, training: false)
                let mu1 = try DeviceBuffer(count: n * d)
                try context.launch("vae_first_columns", grid: CUDAContext.grid(for: n * d), [
                    .buffer(posterior), .int32(Int32(n)), .int32(Int32(d)), .int32(Int32(2 * d)), .buffer(mu1),
                ])
                try forward(encoder2Ops, input: mu1, width: d, work: work.encoder2, rows: n)
                let upper = work.posterior2(z1: mu1)
                try context.launch("vae_first_columns", grid: CUDAContext.grid(for: n * d2), [
                    .buffer(upper), .int32(Int32(n)), .int32(Int32(d2)), .int32(Int32(2 * d2)), .buffer(work.z2),
                ])
                try forward(decoder2Ops, input: work.z2, width: d2, work: work.decoder2, rows: n)
                try context.launch("vae_latent_sums", grid: CUDAContext.grid(for: d), [
                    .buffer(posterior), .buffer(work.prior), .int32(Int32(n)), .int32(Int32(d)), .int32(Int32(total)), .int32(0), .buffer(sums),
                ])
                try context.launch("vae_latent_sums", grid: CUDAContext.grid(for: d2), [
                    .buffer(upper), .buffer(nil), .int32(Int32(n)), .int32(Int32(d2)), .int32(Int32(total)), .int32(Int32(d)), .buffer(sums),
                ])
            }
            images += n
        }
        var values = [Double](repeating: 0, count: 3 * total)
        try values.withUnsafeMutableBytes { try sums.download(raw: $0) }
        return LatentSums(packed: values + [Double(images)])
    }

    /// `images` (and their one-hot labels for a conditional model) on the device and their
    /// posteriors [μ | log σ²] from the encoder (in passes of a bounded workspace, each writing
    /// its rows of the posteriors).
    private func encode(_ images: Tensor, condition: Tensor?) throws -> (x: DeviceBuffer, posterior: DeviceBuffer, labels: DeviceBuffer?) {
        let n = images.rows
        let x = try DeviceBuffer(count: n * pixels), posterior = try DeviceBuffer(count: n * 2 * latent)
        try x.upload(images)
        let labels = try oneHotLabels(condition, images: n)
        let group = rowsPerPass(encoderOps, input: pixels, rows: n)
        let work = try makeWorkspace(encoderOps, input: pixels, rows: group, training: false)
        for first in stride(from: 0, to: n, by: group) {
            let m = min(group, n - first)
            try forward(encoderOps, input: rows(x, first, m, width: pixels), width: pixels, work: work.writingLastOutput(to: rows(posterior, first, m, width: 2 * latent)),
                        rows: m, condition: labels.map { (rows($0, first, m, width: conditionClasses), 1) })
        }
        return (x, posterior, labels)
    }

    /// Each image's own generator on the device, image i's seeded by (`seed`, `firstIndex` + i)
    /// as the CPU seeds it (four state words per image); with `upper`, its second generator (a
    /// second stochastic layer's ε₂).
    private func imageGenerators(seed: UInt64, firstIndex: Int, images n: Int, upper: Bool = false) throws -> DeviceBuffer {
        let states = try DeviceBuffer(bytes: 32 * n)
        let seeds = (0..<n).flatMap { i in
            RandomGenerator(seed: upper ? VariationalAutoencoder.upperImageSeed(seed, firstIndex + i) : VariationalAutoencoder.imageSeed(seed, firstIndex + i)).state
        }
        try seeds.withUnsafeBytes { try states.upload(raw: $0) }
        return states
    }

    /// The next `count` normals of each image's generator (advanced) into `out` [images, count],
    /// as `RandomGenerator.fillNormal` draws them: the words one thread per image (into `words`,
    /// room for 2·⌈count/2⌉ per image), Box–Muller in parallel.
    private func imageNormals(_ states: DeviceBuffer, images n: Int, count: Int, words: DeviceBuffer, into out: DeviceBuffer) throws {
        let pairs = (count + 1) / 2
        try context.launch("vae_image_words", grid: CUDAContext.grid(for: n, block: 64), block: 64, [
            .buffer(states), .int32(Int32(n)), .int32(Int32(pairs)), .buffer(words),
        ])
        try context.launch("vae_box_muller", grid: CUDAContext.grid(for: n * pairs), [.buffer(words), .int32(Int32(n)), .int32(Int32(count)), .buffer(out)])
    }

    /// A conditional model's one-hot labels ([images, classes], from `condition`) on the device;
    /// nil for a model without labels.
    private func oneHotLabels(_ condition: Tensor?, images: Int) throws -> DeviceBuffer? {
        guard conditionClasses > 0 else { return nil }
        guard let condition, condition.rows == images, condition.rowSize == conditionClasses else {
            throw CUDAError("a conditional model needs the images' one-hot labels ([\(images), \(conditionClasses)])")
        }
        let buffer = try DeviceBuffer(count: images * conditionClasses)
        try buffer.upload(condition)
        return buffer
    }
}

/// Rows first ..< first + count of a buffer of `width` floats per row, as a buffer.
private func rows(_ buffer: DeviceBuffer, _ first: Int, _ count: Int, width: Int) -> DeviceBuffer {
    DeviceBuffer(viewOf: buffer, offset: first * width, count: count * width)
}
