import Foundation
import NN
import Tensor
import Testing
import TestSupport
import VAE

/// log N(x; b, W Wᵀ + σ² I) in closed form, by Cholesky factorisation in Double.
func exactLinearGaussianLogDensity(_ x: [Double], w: [[Double]], b: [Double], sigma: Double) -> Double {
    let n = x.count
    var c = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
        for j in 0..<n {
            c[i][j] = zip(w[i], w[j]).reduce(0) { $0 + $1.0 * $1.1 } + (i == j ? sigma * sigma : 0)
        }
    }
    var l = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
        for j in 0...i {
            var s = c[i][j]
            for k in 0..<j { s -= l[i][k] * l[j][k] }
            l[i][j] = i == j ? s.squareRoot() : s / l[j][j]
        }
    }
    // Solve L y = x − b; quadratic form = |y|², log det C = 2 Σ log L_ii.
    var y = [Double](repeating: 0, count: n)
    for i in 0..<n {
        var s = x[i] - b[i]
        for k in 0..<i { s -= l[i][k] * y[k] }
        y[i] = s / l[i][i]
    }
    let logDet = 2 * (0..<n).reduce(0) { $0 + log(l[$1][$1]) }
    return -0.5 * (Double(n) * log(2 * Double.pi) + logDet + y.reduce(0) { $0 + $1 * $1 })
}

/// A VAE with a linear decoder x = W z + b and Gaussian noise σ, 200 images drawn from it, and
/// their exact log-densities. The encoder is set to the exact posterior's mean scaled by
/// `meanScale` and its marginal variances times e^`logVarianceOffset` (q = the best diagonal
/// approximation when both are neutral; a poor q otherwise).
func linearGaussianSetup(meanScale: Double = 1, logVarianceOffset: Double = 0.3) -> (VariationalAutoencoder, Tensor, [Double]) {
    let (dim, latent, sigma): (Int, Int, Float) = (5, 2, 0.6)
    var rng = RandomGenerator(seed: 11)
    let config = ModelConfig(inputShape: [1, 1, dim], hiddenSizes: [], latentDimension: latent, likelihood: .gaussian, gaussianSigma: sigma)
    let model = VariationalAutoencoder(config: config, rng: &rng)
    let decoder = model.decoder.layers[0] as! Linear
    rng.fillUniform(decoder.weight.value, low: -1.2, high: 1.2)
    rng.fillUniform(decoder.bias.value, low: -0.5, high: 0.5)
    let w = (0..<dim).map { i in (0..<latent).map { Double(decoder.weight.value[i * latent + $0]) } }
    let b = (0..<dim).map { Double(decoder.bias.value[$0]) }
    // Exact posterior: Σ = (I + WᵀW/σ²)⁻¹ (2×2), mean = A (x − b) with A = Σ Wᵀ / σ².
    let s2 = Double(sigma * sigma)
    var p = [[1.0, 0.0], [0.0, 1.0]]
    for r in 0..<dim { for i in 0..<2 { for j in 0..<2 { p[i][j] += w[r][i] * w[r][j] / s2 } } }
    let det = p[0][0] * p[1][1] - p[0][1] * p[1][0]
    let cov = [[p[1][1] / det, -p[0][1] / det], [-p[1][0] / det, p[0][0] / det]]
    let a = (0..<2).map { i in (0..<dim).map { r in (cov[i][0] * w[r][0] + cov[i][1] * w[r][1]) / s2 * meanScale } }
    let encoder = model.encoder.layers[0] as! Linear  // x → [μ | log σ²], weight [4, 5]
    for i in 0..<2 {
        for r in 0..<dim {
            encoder.weight.value[i * dim + r] = Float(a[i][r])
            encoder.weight.value[(2 + i) * dim + r] = 0
        }
        encoder.bias.value[i] = Float(-(0..<dim).reduce(0.0) { $0 + a[i][$1] * b[$1] })
        encoder.bias.value[2 + i] = Float(log(cov[i][i]) + logVarianceOffset)
    }
    // Data from the model itself: z ~ N(0, I), x = W z + b + σ ε.
    let count = 200
    let x = Tensor(shape: [count, 1, 1, dim])
    var exact: [Double] = []
    for i in 0..<count {
        var z = [Float](repeating: 0, count: latent), e = [Float](repeating: 0, count: dim)
        z.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: latent) }
        e.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: dim) }
        for r in 0..<dim {
            var v = b[r] + Double(sigma * e[r])
            for c in 0..<latent { v += w[r][c] * Double(z[c]) }
            x[i * dim + r] = Float(v)
        }
        exact.append(exactLinearGaussianLogDensity((0..<dim).map { Double(x[i * dim + $0]) }, w: w, b: b, sigma: Double(sigma)))
    }
    return (model, x, exact)
}

func meanEstimates(_ model: VariationalAutoencoder, _ x: Tensor, samples k: Int) -> (logPx: Double, elbo: Double, perImage: [Double]) {
    let e = model.importanceSampledLogLikelihood(x, samples: k, seed: 3, chunk: 512)
    let n = Double(e.count)
    return (e.map(\.logLikelihood).reduce(0, +) / n, e.map(\.elbo).reduce(0, +) / n, e.map(\.logLikelihood))
}

@Test func importanceSamplingConvergesToTheExactLikelihoodOfALinearGaussianModel() {
    let (model, x, exact) = linearGaussianSetup()
    let exactMean = exact.reduce(0, +) / Double(exact.count)
    let large = meanEstimates(model, x, samples: 4096)
    #expect(abs(large.logPx - exactMean) < 0.01, "IWAE_4096 \(large.logPx) vs exact \(exactMean)")
    let worst = zip(large.perImage, exact).map { abs($0 - $1) }.max()!
    #expect(worst < 0.05, "worst per-image error \(worst)")
    // Even the best diagonal q leaves a gap: the ELBO is below log p(x).
    #expect(large.elbo < exactMean - 0.01)
}

@Test func boundsTightenWithMoreSamples() {
    // A poor q (mean shrunk, variance inflated): large gaps, so the ordering stands out of the noise.
    let (model, x, exact) = linearGaussianSetup(meanScale: 0.6, logVarianceOffset: 1.2)
    let exactMean = exact.reduce(0, +) / Double(exact.count)
    let ks = [1, 2, 4, 16, 64, 256, 4096]
    let estimates = ks.map { meanEstimates(model, x, samples: $0) }
    let elbo = estimates.last!.elbo  // the ELBO from 4096 samples per image
    #expect(exactMean - elbo > 1, "ELBO \(elbo) vs log p(x) \(exactMean)")
    // K = 1 is an unbiased one-sample estimate of the ELBO: within 4 standard errors.
    let one = estimates[0].perImage
    let sd = (one.map { ($0 - estimates[0].logPx) * ($0 - estimates[0].logPx) }.reduce(0, +) / Double(one.count - 1)).squareRoot()
    #expect(abs(estimates[0].logPx - elbo) < 4 * sd / Double(one.count).squareRoot())
    for i in 1..<ks.count {
        #expect(estimates[i - 1].logPx <= estimates[i].logPx + 0.02, "IWAE_\(ks[i - 1]) \(estimates[i - 1].logPx) > IWAE_\(ks[i]) \(estimates[i].logPx)")
    }
    #expect(estimates.last!.logPx <= exactMean + 0.02)
    #expect(estimates.last!.logPx - estimates[0].logPx > 0.5)
}

@Test func analyticELBOMatchesTheMonteCarloELBO() {
    let (model, x, _) = linearGaussianSetup()
    // Analytic KL with one ε per image, averaged over 200 draws of ε.
    var analytic = 0.0
    for s in 0..<200 {
        var rng = RandomGenerator(seed: UInt64(s))
        analytic -= model.negativeELBO(x, rng: &rng, computeGradients: false).meanNegativeELBO
    }
    analytic /= 200
    let mc = model.importanceSampledLogLikelihood(x, samples: 2000, seed: 9).map(\.elbo).reduce(0, +) / Double(x.rows)
    #expect(abs(analytic - mc) < 0.05, "analytic \(analytic) vs Monte-Carlo \(mc)")
}

@Test func estimatesDoNotDependOnBatchingOrWorkers() {
    let (model, x, _) = linearGaussianSetup()
    let whole = model.importanceSampledLogLikelihood(x, samples: 100, seed: 4, chunk: 37)
    let split = DataParallel(model: model, workers: 3).importanceSampledLogLikelihood(x, samples: 100, seed: 4)
    #expect(whole.count == split.count)
    for (a, b) in zip(whole, split) { #expect(abs(a.logLikelihood - b.logLikelihood) < 1e-9) }
}
