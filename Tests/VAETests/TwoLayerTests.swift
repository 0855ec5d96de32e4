import Datasets
import Foundation
import NN
import Tensor
import Testing
import TestSupport
@testable import VAE

/// A model with two stochastic layers (d₁ = 3, d₂ = 2) small enough for finite differences.
func twoLayerModel(likelihood: LikelihoodKind = .bernoulli, seed: UInt64 = 1) -> VariationalAutoencoder {
    var rng = RandomGenerator(seed: seed)
    let config = ModelConfig(
        inputShape: [1, 2, 3], hiddenSizes: [4], latentDimension: 3, activation: .tanh, likelihood: likelihood, gaussianSigma: 0.5,
        upperLatentDimension: 2, upperHiddenSizes: [3])
    return VariationalAutoencoder(config: config, rng: &rng)
}

@Test func twoLayerModelHasTheFourNetworksAndTheirNames() {
    let model = twoLayerModel()
    #expect(model.hasTwoStochasticLayers && !smallModel().hasTwoStochasticLayers)
    let names = model.namedParameters.map(\.name)
    #expect(names == [
        "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias",
        "encoder2.0.weight", "encoder2.0.bias", "encoder2.2.weight", "encoder2.2.bias",
        "decoder2.0.weight", "decoder2.0.bias", "decoder2.2.weight", "decoder2.2.bias",
    ])
    // q(z₂|z₁): 3 → 3 → [μ₂ | log σ₂²] (4); p(z₁|z₂): 2 → 3 → [μ | log σ²] of z₁ (6).
    let shapes = Dictionary(uniqueKeysWithValues: model.namedParameters.map { ($0.name, $0.parameter.shape) })
    #expect(shapes["encoder2.0.weight"] == [3, 3] && shapes["encoder2.2.weight"] == [4, 3])
    #expect(shapes["decoder2.0.weight"] == [3, 2] && shapes["decoder2.2.weight"] == [6, 3])
    // The parameter count comes from the same plan the model is built from.
    #expect(Int(model.config.parameterCount) == model.parameterCount)
}

/// Every parameter's gradient against central differences: the ELBO with the analytic z₂ KL
/// (β = 0.7), with every term sampled, and the IWAE bound with K = 3.
@Test(arguments: [(1, Float(0.7), true, LikelihoodKind.bernoulli), (1, Float(1), false, .gaussian), (3, Float(1), false, .bernoulli)])
func twoLayerObjectiveGradients(samples k: Int, beta: Float, analytic: Bool, likelihood: LikelihoodKind) {
    let model = twoLayerModel(likelihood: likelihood, seed: 3)
    let x = randomTensor([3, 1, 2, 3], seed: 7, low: 0, high: 1)
    let eps1 = randomTensor([3 * k, 3], seed: 8, low: -2, high: 2)
    let eps2 = randomTensor([3 * k, 2], seed: 9, low: -2, high: 2)
    checkModelGradients(model, label: "K=\(k) β=\(beta) analytic=\(analytic)", loss: {
        model.twoLayerObjective(x, noise: eps1, upperNoise: eps2, samples: k, computeGradients: false, klWeight: beta, analyticUpperKL: analytic).meanObjective
    }, computeGradients: {
        model.twoLayerObjective(x, noise: eps1, upperNoise: eps2, samples: k, computeGradients: true, klWeight: beta, analyticUpperKL: analytic)
    })
}

/// log N(v; m, diag e^lv) summed, in Double, with the 2π terms.
func gaussianLogDensity(_ v: [Double], _ m: [Double], _ lv: [Double]) -> Double {
    zip(zip(v, m), lv).reduce(0) { $0 - 0.5 * (log(2 * Double.pi) + $1.1 + ($1.0.0 - $1.0.1) * ($1.0.0 - $1.0.1) * exp(-$1.1)) }
}

/// log w of one sample from the densities written out (naive loops over the networks' outputs),
/// against the objective's; and the analytic z₂ KL against the mean of many sampled ones.
@Test func twoLayerLogWeightsMatchTheDensitiesAndTheAnalyticKLIsTheSampledOnesMean() {
    let model = twoLayerModel(likelihood: .gaussian, seed: 5)
    let x = randomTensor([2, 1, 2, 3], seed: 1, low: 0, high: 1)
    let eps1 = randomTensor([2, 3], seed: 2, low: -2, high: 2), eps2 = randomTensor([2, 2], seed: 4, low: -2, high: 2)
    let loss = model.twoLayerObjective(x, noise: eps1, upperNoise: eps2, samples: 1, computeGradients: false)
    let logW = Array(model.lastLogWeights)
    #expect(abs(loss.objective + logW.reduce(0, +)) < 1e-9)
    for b in 0..<2 {
        let xb = Tensor(shape: [1, 1, 2, 3], values: Array(x.toArray()[(b * 6)..<(b * 6 + 6)]))
        let q1 = model.encode(xb).toArray().map(Double.init)
        let (mu1, lv1) = (Array(q1[0..<3]), Array(q1[3..<6]))
        let z1 = (0..<3).map { mu1[$0] + exp(0.5 * lv1[$0]) * Double(eps1[b * 3 + $0]) }
        let z1t = Tensor(shape: [1, 3], values: z1.map(Float.init))
        let q2 = model.encoder2!(z1t).toArray().map(Double.init)
        let (mu2, lv2) = (Array(q2[0..<2]), Array(q2[2..<4]))
        let z2 = (0..<2).map { mu2[$0] + exp(0.5 * lv2[$0]) * Double(eps2[b * 2 + $0]) }
        let p1 = model.decoder2!(Tensor(shape: [1, 2], values: z2.map(Float.init))).toArray().map(Double.init)
        let mean = model.decoder(z1t).toArray().map(Double.init)
        let xs = xb.toArray().map(Double.init)
        let expected = gaussianLogDensity(xs, mean, [Double](repeating: 2 * log(0.5), count: 6))
            + gaussianLogDensity(z1, Array(p1[0..<3]), Array(p1[3..<6])) + gaussianLogDensity(z2, [0, 0], [0, 0])
            - gaussianLogDensity(z1, mu1, lv1) - gaussianLogDensity(z2, mu2, lv2)
        #expect(abs(logW[b] - expected) < 1e-4 * max(1, abs(expected)), "image \(b): \(logW[b]) vs \(expected)")
    }
    // E over z₂ of the sampled z₂ part = the analytic KL: both objectives' KL terms agree on average.
    var rng = RandomGenerator(seed: 7)
    let draws = 4000
    let e2 = Tensor(shape: [2, 2])
    var sampled = 0.0, analytic = 0.0
    for _ in 0..<draws {
        rng.fillNormal(e2)
        sampled += model.twoLayerObjective(x, noise: eps1, upperNoise: e2, samples: 1, computeGradients: false).kl
        analytic += model.twoLayerObjective(x, noise: eps1, upperNoise: e2, samples: 1, computeGradients: false, analyticUpperKL: true).kl
    }
    #expect(abs(sampled - analytic) / Double(draws) < 0.03, "sampled \(sampled / Double(draws)) vs analytic \(analytic / Double(draws))")
}

/// A linear-Gaussian two-layer model, whose log p(x) is known in closed form:
/// z₂ ~ N(0, 1), z₁ = A z₂ + a + s ⊙ u, x = C z₁ + c + σ e (u, e standard normal), so
/// x ~ N(C a + c, C (A Aᵀ + diag s²) Cᵀ + σ² I) = N(b, W Wᵀ + σ² I) with W = [C A | C diag s].
/// The encoders are set to the exact posteriors' means and variances (diagonal for z₁, widened
/// by e^0.3): the importance-sampled estimate must converge to log p(x).
@Test func twoLayerImportanceSamplingConvergesToTheExactLikelihood() {
    let (dim, d1, sigma): (Int, Int, Double) = (4, 2, 0.5)
    var rng = RandomGenerator(seed: 21)
    let config = ModelConfig(
        inputShape: [1, 1, dim], hiddenSizes: [], latentDimension: d1, likelihood: .gaussian, gaussianSigma: Float(sigma),
        upperLatentDimension: 1, upperHiddenSizes: [])
    let model = VariationalAutoencoder(config: config, rng: &rng)
    func uniform(_ n: Int, _ bound: Float) -> [Double] { (0..<n).map { _ in Double(rng.nextFloat() * 2 * bound - bound) } }
    let aMat = uniform(d1, 1.2), a = uniform(d1, 0.5), logS2 = [log(0.3), log(0.5)]
    let cMat = (0..<dim).map { _ in uniform(d1, 1.2) }, c = uniform(dim, 0.5)
    // p(z₁|z₂): decoder2 = Linear(1 → 4): μ = A z₂ + a, log s² constant.
    let p1 = model.decoder2!.layers[0] as! Linear
    for j in 0..<d1 {
        p1.weight.value[j] = Float(aMat[j]); p1.bias.value[j] = Float(a[j])
        p1.weight.value[d1 + j] = 0; p1.bias.value[d1 + j] = Float(logS2[j])
    }
    // p(x|z₁): decoder = Linear(2 → 4).
    let px = model.decoder.layers[0] as! Linear
    for r in 0..<dim {
        for j in 0..<d1 { px.weight.value[r * d1 + j] = Float(cMat[r][j]) }
        px.bias.value[r] = Float(c[r])
    }
    // Prior of z₁: N(a, Σ₁ = A Aᵀ + diag s²); posterior precision P = Σ₁⁻¹ + CᵀC/σ².
    func inverse(_ m: [[Double]]) -> [[Double]] {
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0]
        return [[m[1][1] / det, -m[0][1] / det], [-m[1][0] / det, m[0][0] / det]]
    }
    let sigma1 = (0..<2).map { i in (0..<2).map { j in aMat[i] * aMat[j] + (i == j ? exp(logS2[i]) : 0) } }
    let prior1 = inverse(sigma1)
    let precision = (0..<2).map { i in (0..<2).map { j in prior1[i][j] + (0..<dim).reduce(0.0) { $0 + cMat[$1][i] * cMat[$1][j] } / (sigma * sigma) } }
    let cov = inverse(precision)
    // Posterior mean = cov (Σ₁⁻¹ a + Cᵀ (x − c)/σ²) = M x + m.
    let q1 = model.encoder.layers[0] as! Linear  // x (4) → [μ | log σ²] (4)
    for i in 0..<2 {
        for r in 0..<dim { q1.weight.value[i * dim + r] = Float((0..<2).reduce(0.0) { $0 + cov[i][$1] * cMat[r][$1] } / (sigma * sigma)) }
        let priorPart = (0..<2).reduce(0.0) { s, k in s + cov[i][k] * (0..<2).reduce(0.0) { $0 + prior1[k][$1] * a[$1] } }
        let dataPart = (0..<dim).reduce(0.0) { s, r in s + Double(q1.weight.value[i * dim + r]) * c[r] }
        q1.bias.value[i] = Float(priorPart - dataPart)
        for r in 0..<dim { q1.weight.value[(2 + i) * dim + r] = 0 }
        q1.bias.value[2 + i] = Float(log(cov[i][i]) + 0.3)
    }
    // q(z₂|z₁): the exact posterior of z₂ given z₁: precision 1 + Σ_j A_j² / s_j², mean = Σ_j A_j (z₁ⱼ − a_j)/s_j² / precision.
    let p2 = 1 + (0..<2).reduce(0.0) { $0 + aMat[$1] * aMat[$1] / exp(logS2[$1]) }
    let q2 = model.encoder2!.layers[0] as! Linear  // z₁ (2) → [μ₂ | log σ₂²] (2)
    for j in 0..<2 { q2.weight.value[j] = Float(aMat[j] / exp(logS2[j]) / p2); q2.weight.value[2 + j] = 0 }
    q2.bias.value[0] = Float(-(0..<2).reduce(0.0) { $0 + aMat[$1] * a[$1] / exp(logS2[$1]) } / p2)
    q2.bias.value[1] = Float(-log(p2))

    // 40 images from the model and their exact log-densities.
    let w = (0..<dim).map { r in [(0..<2).reduce(0.0) { $0 + cMat[r][$1] * aMat[$1] }] + (0..<2).map { cMat[r][$0] * exp(0.5 * logS2[$0]) } }
    let b = (0..<dim).map { r in c[r] + (0..<2).reduce(0.0) { $0 + cMat[r][$1] * a[$1] } }
    let count = 40
    let images = Tensor(shape: [count, 1, 1, dim])
    var exact: [Double] = []
    for i in 0..<count {
        var noise = [Float](repeating: 0, count: 1 + 2 + dim)
        noise.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: $0.count) }
        let n = noise.map(Double.init)
        let z1 = (0..<2).map { aMat[$0] * n[0] + a[$0] + exp(0.5 * logS2[$0]) * n[1 + $0] }
        let xv = (0..<dim).map { r in c[r] + (0..<2).reduce(0.0) { $0 + cMat[r][$1] * z1[$1] } + sigma * n[3 + r] }
        for r in 0..<dim { images[i * dim + r] = Float(xv[r]) }
        exact.append(exactLinearGaussianLogDensity(xv, w: w, b: b, sigma: sigma))
    }
    // The estimates with K = 4096 in chunks of 1000 (ε₁, ε₂ of each chunk from the image's stream).
    let estimates = model.importanceSampledLogLikelihood(images, samples: 4096, seed: 5, chunk: 1000)
    let errors = zip(estimates, exact).map { $0.logLikelihood - $1 }
    #expect(errors.map(abs).max()! < 0.05, "worst per-image error \(errors.map(abs).max()!)")
    #expect(abs(errors.reduce(0, +) / Double(count)) < 0.01, "mean error \(errors.reduce(0, +) / Double(count))")
    // The ELBO from the same samples is below log p(x) (q is not the exact posterior).
    #expect(estimates.map(\.elbo).reduce(0, +) < exact.reduce(0, +) - 0.01 * Double(count))
    // Cores do not change an image's estimate; nor does the chunking of its samples (the same ε₁
    // and ε₂, from two streams; products of other row counts may round otherwise: 1e-8 here).
    let split = DataParallel(model: model, workers: 3).importanceSampledLogLikelihood(images, samples: 300, seed: 5)
    let alone = model.importanceSampledLogLikelihood(images, samples: 300, seed: 5)
    #expect(split == alone)
    let chunked = model.importanceSampledLogLikelihood(images, samples: 300, seed: 5, chunk: 77)
    for (p, q) in zip(chunked, alone) { #expect(abs(p.logLikelihood - q.logLikelihood) < 1e-6) }
}

/// Training steps through the Trainer lower the two-layer model's objective, and the seed-keyed
/// evaluation is reproducible and reports the analytic-z₂ ELBO.
@Test func twoLayerModelTrainsAndEvaluates() throws {
    let model = twoLayerModel(likelihood: .bernoulli, seed: 8)
    let x = randomTensor([16, 1, 2, 3], seed: 3, low: 0, high: 1)
    let before = model.negativeELBO(x, seed: 4, firstIndex: 0)
    #expect(before == model.negativeELBO(x, seed: 4, firstIndex: 0))
    #expect(abs(before.objective - (before.reconstruction + before.kl)) < 1e-9)
    for kl in [KLEstimator.analytic, .mc] {
        let trained = twoLayerModel(likelihood: .bernoulli, seed: 8)
        let trainer = Trainer(model: trained, optimizer: Adam(parameters: trained.parameters, learningRate: 0.02), rng: RandomGenerator(seed: 1), workers: 2,
                              objective: TrainingObjective(kl: kl))
        for _ in 0..<150 { _ = try trainer.trainStep(x) }
        let after = trained.negativeELBO(x, seed: 4, firstIndex: 0)
        #expect(after.meanNegativeELBO < before.meanNegativeELBO - 0.5, "\(kl): \(before.meanNegativeELBO) → \(after.meanNegativeELBO)")
    }
    // The IWAE objective (K = 4) trains too.
    let iwae = twoLayerModel(likelihood: .bernoulli, seed: 8)
    let trainer = Trainer(model: iwae, optimizer: Adam(parameters: iwae.parameters, learningRate: 0.02), rng: RandomGenerator(seed: 1),
                          objective: TrainingObjective(importanceSamples: 4))
    for _ in 0..<150 { _ = try trainer.trainStep(x) }
    #expect(iwae.negativeELBO(x, seed: 4, firstIndex: 0).meanNegativeELBO < before.meanNegativeELBO - 0.5)
}

/// Per-dimension statistics of a two-layer model: z₁'s KL against p(z₁|z₂ = μ₂(μ₁)) and z₂'s
/// against N(0, 1), from the networks' outputs written out.
@Test func twoLayerLatentStatisticsCoverBothLayers() {
    let model = twoLayerModel(likelihood: .bernoulli, seed: 6)
    let x = randomTensor([3, 1, 2, 3], seed: 2, low: 0, high: 1)
    let stats = model.latentSums([Batch(images: x, labels: nil, condition: nil)]).statistics
    #expect(stats.klPerDimension.count == 5 && stats.images == 3)
    var kl = [Double](repeating: 0, count: 5)
    for b in 0..<3 {
        let xb = Tensor(shape: [1, 1, 2, 3], values: Array(x.toArray()[(b * 6)..<(b * 6 + 6)]))
        let q1 = model.encode(xb).toArray().map(Double.init)
        let q2 = model.encoder2!(Tensor(shape: [1, 3], values: q1[0..<3].map(Float.init))).toArray().map(Double.init)
        let p1 = model.decoder2!(Tensor(shape: [1, 2], values: q2[0..<2].map(Float.init))).toArray().map(Double.init)
        for j in 0..<3 {
            let (m, lv, pm, plv) = (q1[j], q1[3 + j], p1[j], p1[3 + j])
            kl[j] += 0.5 * (plv - lv + (exp(lv) + (m - pm) * (m - pm)) / exp(plv) - 1) / 3
        }
        for j in 0..<2 { kl[3 + j] += 0.5 * (q2[j] * q2[j] + exp(q2[2 + j]) - q2[2 + j] - 1) / 3 }
    }
    for j in 0..<5 { #expect(abs(stats.klPerDimension[j] - kl[j]) < 1e-5 * max(1, kl[j]), "dimension \(j): \(stats.klPerDimension[j]) vs \(kl[j])") }
    #expect(stats.dimensions(3..<5).klPerDimension == Array(stats.klPerDimension[3...]))
}
