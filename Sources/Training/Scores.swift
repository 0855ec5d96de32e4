import Datasets
import Tensor
import VAE

/// One example's scores under a model (nats): how unlikely the model finds it.
public struct ExampleScore: Sendable, Equatable {
    /// log p(x), importance sampled with K draws from q(z|x) (K = 1: a one-sample ELBO).
    public var logLikelihood: Double
    /// −ELBO with the analytic KL, one ε keyed to the example's index.
    public var negativeELBO: Double
    /// −log p(x|z) of that sample.
    public var reconstruction: Double
    /// KL(q(z|x) ‖ p(z)).
    public var kl: Double
    /// E_q[z] = μ(x).
    public var posteriorMean: [Float]
}

extension VariationalAutoencoder {
    /// Every example's scores, batch by batch (`progress` sees the examples done): log p(x) with
    /// `samples` importance samples (image i's draws seeded by (`seed`, i), split across
    /// `workers` cores), and the −ELBO, its terms and μ with image i's ε keyed to (`seed`, i). The
    /// figures do not depend on the batching or the number of cores. With `device` (a GPU step
    /// holding this model's weights) log p(x), the −ELBO's terms and μ are computed there, from
    /// the same draws (the terms a batch at a time: the same up to the products' rounding).
    public func scores(
        _ dataset: ImageDataset, samples: Int, seed: UInt64 = 1, workers: Int = Parallel.coreCount, device: CUDAStep? = nil,
        progress: (Int) -> Void = { _ in }
    ) throws -> [ExampleScore] {
        try device?.upload(from: self)
        let parallel = DataParallel(model: self, workers: workers)
        let d = latentDimension
        var out: [ExampleScore] = []
        out.reserveCapacity(dataset.count)
        for batch in BatchLoader.evaluation(dataset, for: self).epoch() {
            let first = out.count
            let estimates = try device?.importanceSampledLogLikelihood(batch.images, condition: batch.condition, samples: samples, seed: seed, firstIndex: first)
                ?? parallel.importanceSampledLogLikelihood(batch.images, condition: batch.condition, samples: samples, seed: seed, firstIndex: first)
            // The −ELBO's terms and μ: on the GPU the batch's in one pass; on the CPU each image
            // alone (as its log p(x)), so that its figures do not depend on its batch at all.
            let (reconstruction, kl, posterior): ([Double], [Double], Tensor)
            if let device {
                (reconstruction, kl, posterior) = try device.negativeELBOPerImage(batch.images, condition: batch.condition, seed: seed, firstIndex: first)
            } else {
                posterior = encode(batch.images, condition: batch.condition).clone()
                (reconstruction, kl) = parallel.negativeELBOTermsOfEachImage(batch.images, condition: batch.condition, seed: seed, firstIndex: first)
            }
            for i in 0..<batch.count {
                out.append(ExampleScore(
                    logLikelihood: estimates[i].logLikelihood, negativeELBO: reconstruction[i] + kl[i], reconstruction: reconstruction[i],
                    kl: kl[i], posteriorMean: Array(UnsafeBufferPointer(start: posterior.data + i * 2 * d, count: d))))
            }
            progress(out.count)
        }
        return out
    }
}

extension DataParallel {
    /// Each image's −ELBO terms (−log p(x|z), KL), the image alone — one-row products, so that
    /// its figures do not depend on its batch — with ε keyed to (`seed`, `firstIndex` + i), as
    /// `VariationalAutoencoder.negativeELBO(_:condition:seed:firstIndex:)` draws it; the
    /// images split across the workers.
    func negativeELBOTermsOfEachImage(
        _ images: Tensor, condition: Tensor?, seed: UInt64, firstIndex: Int
    ) -> (reconstruction: [Double], kl: [Double]) {
        let n = images.rows
        let terms = UnsafeMutableBufferPointer<(reconstruction: Double, kl: Double)>.allocate(capacity: n)
        terms.initialize(repeating: (0, 0))
        defer { terms.deallocate() }
        run { w, worker in
            var row: Tensor?, rowCondition: Tensor?
            for i in rows(w, of: n) {
                let x = Tensor.view(images, rows: i..<(i + 1), reusing: &row)
                let c = condition.map { Tensor.view($0, rows: i..<(i + 1), reusing: &rowCondition) }
                let loss = worker.negativeELBO(x, condition: c, seed: seed, firstIndex: firstIndex + i)
                terms[i] = (loss.reconstruction, loss.kl)
            }
        }
        return (terms.map(\.reconstruction), terms.map(\.kl))
    }
}

/// How well a score separates two groups (the anomalies, `positive`, score higher).
public enum Separation {
    /// The area under the ROC curve: the probability that a random positive scores higher than
    /// a random negative, ties counting one half (the Mann–Whitney U statistic / (n₊ n₋)).
    public static func auroc(_ scores: [Double], positive: [Bool]) -> Double {
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        // Average ranks (from 1) over runs of equal scores.
        var ranks = [Double](repeating: 0, count: scores.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            for k in i...j { ranks[order[k]] = Double(i + j) / 2 + 1 }
            i = j + 1
        }
        let nPositive = Double(positive.filter { $0 }.count), nNegative = Double(positive.count) - nPositive
        guard nPositive > 0 && nNegative > 0 else { return .nan }
        let rankSum = zip(ranks, positive).filter(\.1).map(\.0).reduce(0, +)
        return (rankSum - nPositive * (nPositive + 1) / 2) / (nPositive * nNegative)
    }

    /// Average precision: Σ_k (R_k − R_{k−1}) P_k over the thresholds k from the highest score
    /// down (the precision at each recall step; tied scores enter together).
    public static func averagePrecision(_ scores: [Double], positive: [Bool]) -> Double {
        let total = Double(positive.filter { $0 }.count)
        guard total > 0 else { return .nan }
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var truePositives = 0.0, seen = 0.0, previousRecall = 0.0, ap = 0.0
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
            for k in i...j where positive[order[k]] { truePositives += 1 }
            seen += Double(j - i + 1)
            let recall = truePositives / total
            ap += (recall - previousRecall) * (truePositives / seen)
            previousRecall = recall
            i = j + 1
        }
        return ap
    }
}

extension ExampleScore {
    /// The scores an anomaly study compares, each oriented so that higher means more anomalous.
    public static let anomalyMeasures: [(name: String, value: @Sendable (ExampleScore) -> Double)] = [
        ("−log p(x)", { -$0.logLikelihood }), ("−ELBO", { $0.negativeELBO }), ("reconstruction NLL", { $0.reconstruction }), ("KL", { $0.kl }),
    ]

    /// `scores` with their `labels` (−1: none) as CSV: index, label, log_px, neg_elbo,
    /// reconstruction, kl, mu_1 … mu_d.
    public static func csv(_ scores: [ExampleScore], labels: [Int]) -> String {
        let d = scores.first?.posteriorMean.count ?? 0
        var text = (["index", "label", "log_px", "neg_elbo", "reconstruction", "kl"] + (0..<d).map { "mu_\($0 + 1)" }).joined(separator: ",") + "\n"
        for (i, s) in scores.enumerated() {
            text += "\(i),\(labels[i]),\(s.logLikelihood),\(s.negativeELBO),\(s.reconstruction),\(s.kl)," + s.posteriorMean.map { "\($0)" }.joined(separator: ",") + "\n"
        }
        return text
    }

    /// The same as a NumPy structured array (mu as float32[d], the rest float64, label int64).
    public static func npy(_ scores: [ExampleScore], labels: [Int]) -> [UInt8] {
        NPY.structuredArray(rows: scores.count, fields: [
            .int64(name: "label", values: labels), .float64(name: "log_px", values: scores.map(\.logLikelihood)),
            .float64(name: "neg_elbo", values: scores.map(\.negativeELBO)), .float64(name: "reconstruction", values: scores.map(\.reconstruction)),
            .float64(name: "kl", values: scores.map(\.kl)),
            .float32(name: "mu", values: scores.flatMap(\.posteriorMean), perRow: scores.first?.posteriorMean.count ?? 0),
        ])
    }
}
