import Datasets
import Foundation
import Tensor
import Testing
import TestSupport
@testable import Training
@testable import VAE

/// AUROC by its definition: the fraction of (positive, negative) pairs the score orders right,
/// ties counting one half.
func pairwiseAUROC(_ scores: [Double], _ positive: [Bool]) -> Double {
    var right = 0.0, pairs = 0.0
    for i in scores.indices where positive[i] {
        for j in scores.indices where !positive[j] {
            pairs += 1
            right += scores[i] > scores[j] ? 1 : scores[i] == scores[j] ? 0.5 : 0
        }
    }
    return right / pairs
}

@Test func aurocAndAveragePrecisionOnKnownExamples() {
    // scikit-learn's documented example: roc_auc_score = 0.75, average_precision_score = 0.8333….
    let scores = [0.1, 0.4, 0.35, 0.8], positive = [false, false, true, true]
    #expect(abs(Separation.auroc(scores, positive: positive) - 0.75) < 1e-12)
    #expect(abs(Separation.averagePrecision(scores, positive: positive) - 5.0 / 6.0) < 1e-12)
    // Perfect and reversed orderings; all tied.
    #expect(Separation.auroc([1, 2, 3, 4], positive: [false, false, true, true]) == 1)
    #expect(Separation.auroc([4, 3, 2, 1], positive: [false, false, true, true]) == 0)
    #expect(Separation.auroc([1, 1, 1, 1], positive: [false, true, false, true]) == 0.5)
    #expect(Separation.averagePrecision([1, 2, 3, 4], positive: [false, false, true, true]) == 1)
    // Random scores with many ties against the pairwise definition.
    var rng = RandomGenerator(seed: 9)
    for _ in 0..<20 {
        let n = 5 + rng.nextInt(below: 60)
        let s = (0..<n).map { _ in Double(rng.nextInt(below: 7)) }
        var p = (0..<n).map { _ in rng.nextInt(below: 3) == 0 }
        p[0] = true
        p[1] = false
        #expect(abs(Separation.auroc(s, positive: p) - pairwiseAUROC(s, p)) < 1e-12)
    }
}

/// Each example's −ELBO is the one evaluation gives it (same keyed ε: the sum over examples is
/// the dataset's figure), its log p(x) the importance-sampling estimate of that image, and the
/// scores do not depend on the number of cores.
@Test func scoresAgreeWithEvaluationAndDoNotDependOnCores() throws {
    var rng = RandomGenerator(seed: 4)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 3), rng: &rng)
    let data = randomImages(29, seed: 8)
    let one = try model.scores(data, samples: 16, seed: 5, workers: 1)
    let two = try model.scores(data, samples: 16, seed: 5, workers: 2)
    #expect(one == two)
    let whole = model.evaluate(data, seed: 5)
    #expect(abs(one.map(\.negativeELBO).reduce(0, +) - (whole.reconstruction + whole.kl)) < 1e-6 * abs(whole.reconstruction))
    #expect(abs(one.map(\.kl).reduce(0, +) - whole.kl) < 1e-6 * whole.kl)
    let estimates = model.logLikelihood(data, samples: 16, seed: 5, workers: 1).perImage
    #expect(one.map(\.logLikelihood) == estimates.map(\.logLikelihood))
    // μ is the first half of the encoder's output for the example.
    var batches = BatchLoader.evaluation(data, for: model).epoch()
    let h = model.encode(batches.next()!.images)
    for i in [0, 13, 28] { #expect(one[i].posteriorMean == (0..<3).map { h[i * 6 + $0] }) }
}

/// `negativeELBOPerImage` (the CPU twin of the GPU's per-image pass that `vae score --device`
/// reads) gives each image of a batch the terms of that image alone, in its own place, for one
/// and for two stochastic layers; they add up to the batch's `negativeELBO`.
@Test func perImageTermsAreEachImagesAlone() throws {
    let data = randomImages(29, seed: 8)
    for upper in [0, 2] {
        var rng = RandomGenerator(seed: 6)
        let model = VariationalAutoencoder(
            config: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 3, upperLatentDimension: upper), rng: &rng)
        var loaded = BatchLoader.evaluation(data, for: model).epoch()
        let images = loaded.next()!.images.clone()
        #expect(images.rows == 29)
        let terms = model.negativeELBOPerImage(images, seed: 5, firstIndex: 4)
        let whole = model.negativeELBO(images, seed: 5, firstIndex: 4)
        #expect(abs(terms.reconstruction.reduce(0, +) - whole.reconstruction) < 1e-9 * whole.reconstruction)
        #expect(abs(terms.kl.reduce(0, +) - whole.kl) < 1e-9 * max(abs(whole.kl), 1))
        var row: Tensor?
        for i in [0, 7, 13, 28] {
            let alone = model.negativeELBO(Tensor.view(images, rows: i..<(i + 1), reusing: &row), seed: 5, firstIndex: 4 + i)
            #expect(abs(terms.reconstruction[i] - alone.reconstruction) < 1e-5 * alone.reconstruction, "\(upper) layer(s), image \(i): \(terms.reconstruction[i]) alone \(alone)")
            #expect(abs(terms.kl[i] - alone.kl) < 1e-5 * max(abs(alone.kl), 1), "\(upper) layer(s), image \(i): \(terms.kl[i]) alone \(alone)")
        }
    }
}

@Test func meanAbsoluteDifferenceOfTwoEstimatesIsPerImage() {
    func estimate(_ values: [Double]) -> LogLikelihoodEstimate {
        LogLikelihoodEstimate(perImage: values.map { ImportanceSampledEstimate(logLikelihood: $0, elbo: $0) }, samples: 1)
    }
    // Differences +1, −3, +0.5: the means differ by 1.5/3 = −0.5, the per-image mean |Δ| is 1.5.
    let a = estimate([-10, -20, -30.5]), b = estimate([-11, -17, -31])
    #expect(abs(a.meanAbsoluteDifference(from: b) - 1.5) < 1e-12)
    #expect(abs(b.meanAbsoluteDifference(from: a) - 1.5) < 1e-12)
    #expect(a.meanAbsoluteDifference(from: a) == 0)
    // The mean and its standard error: Σ(v − mean)² = 210.1667, / (n − 1) / n = 35.028, √ = 5.91843.
    #expect(abs(a.mean - (-60.5 / 3)) < 1e-12)
    #expect(abs(a.standardError - 5.918426968188235) < 1e-9, "\(a.standardError)")
}
