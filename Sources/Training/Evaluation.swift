import Datasets
import Files
import Foundation
import Tensor
import VAE

/// An importance-sampled estimate of the mean log p(x) over a data set, in nats per image.
public struct LogLikelihoodEstimate: Sendable {
    /// Mean over the images of log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).
    public let mean: Double
    /// The standard error of that mean (over images).
    public let standardError: Double
    /// K.
    public let samples: Int
    /// Each image's estimate, in data-set order.
    public let perImage: [ImportanceSampledEstimate]

    /// The mean and its standard error of `perImage`'s estimates with K = `samples`.
    public init(perImage: [ImportanceSampledEstimate], samples: Int) {
        let values = perImage.map(\.logLikelihood)
        let n = Double(max(values.count, 1))
        let mean = values.reduce(0, +) / n
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / max(n - 1, 1)
        self.mean = mean
        standardError = (variance / n).squareRoot()
        self.samples = samples
        self.perImage = perImage
    }

    /// The mean over images of |this image's estimate − `other`'s|, for two estimates on the same
    /// images (e.g. the same samples in bf16 and in FP32: the products' rounding alone).
    public func meanAbsoluteDifference(from other: LogLikelihoodEstimate) -> Double {
        precondition(perImage.count == other.perImage.count, "estimates of \(perImage.count) and \(other.perImage.count) images")
        let total = zip(perImage, other.perImage).reduce(0.0) { $0 + abs($1.0.logLikelihood - $1.1.logLikelihood) }
        return total / Double(max(perImage.count, 1))
    }
}

/// One rank's contiguous share of a data set, for evaluation split across the ranks of a job:
/// each rank evaluates its share and the sums are added up, and since image i's ε is keyed to
/// (seed, i) the figures are those of one process up to the order of summation.
public struct DatasetShard {
    /// This rank's images (all of them for a process alone).
    public let images: ImageDataset
    /// The index of the share's first image in the whole data set.
    public let firstIndex: Int
    public let communicator: Communicator

    public init(_ dataset: ImageDataset, communicator: Communicator) {
        self.communicator = communicator
        let share = Parallel.slice(communicator.rank, of: communicator.size, count: dataset.count)
        images = communicator.size > 1 ? dataset.subset(Array(share)) : dataset
        firstIndex = share.lowerBound
    }

    /// −ELBO and its terms over the whole data set (every rank gets the total); with `device`, on
    /// the GPU with the weights it holds (the same ε per image).
    public func evaluate(_ model: VariationalAutoencoder, seed: UInt64 = RunSeeds.evaluation, device: CUDAStep? = nil) throws -> LossBreakdown {
        guard let device else {
            return communicator.sum(model.evaluate(BatchLoader.evaluation(images, for: model).epoch(), seed: seed, firstIndex: firstIndex))
        }
        var total = LossBreakdown()
        var first = firstIndex
        for batch in BatchLoader.evaluation(images, for: model).epoch() {
            total += try device.negativeELBO(batch.images, condition: batch.condition, seed: seed, firstIndex: first)
            first += batch.count
        }
        return communicator.sum(total)
    }

    /// Per-dimension KL and active units over the whole data set (every rank gets them); with
    /// `device`, the posteriors encoded (and a second layer's statistics taken) on the GPU.
    public func latentStatistics(_ model: VariationalAutoencoder, device: CUDAStep? = nil) throws -> LatentStatistics {
        let batches = BatchLoader.evaluation(images, for: model).epoch()
        let sums = try device.map { try $0.latentSums(batches.lazy.map { ($0.images, $0.condition) }) } ?? model.latentSums(batches)
        guard communicator.size > 1 else { return sums.statistics }
        var packed = sums.packed
        packed.withUnsafeMutableBufferPointer { communicator.sum($0) }
        return LatentSums(packed: packed).statistics
    }
}

extension VariationalAutoencoder {
    /// −ELBO and its terms over `dataset`, image i's ε seeded by (the fixed evaluation seed, i)
    /// (so the same model and data always give the same figures).
    public func evaluate(_ dataset: ImageDataset, seed: UInt64 = RunSeeds.evaluation) -> LossBreakdown {
        evaluate(BatchLoader.evaluation(dataset, for: self).epoch(), seed: seed)
    }

    /// Per-dimension KL and active units over `dataset`.
    public func latentStatistics(_ dataset: ImageDataset) -> LatentStatistics {
        latentStatistics(BatchLoader.evaluation(dataset, for: self).epoch())
    }

    /// log p(x) of every image of `dataset` by importance sampling with `samples` draws from
    /// q(z|x) (image i's draws seeded by (`seed`, i): the same for any batching or core count),
    /// split across `workers` cores; `progress` sees the images done after each batch.
    public func logLikelihood(
        _ dataset: ImageDataset, samples: Int, seed: UInt64 = 1, workers: Int = Parallel.coreCount,
        progress: (Int) -> Void = { _ in }
    ) -> LogLikelihoodEstimate {
        let parallel = DataParallel(model: self, workers: workers)
        var estimates: [ImportanceSampledEstimate] = []
        for batch in BatchLoader.evaluation(dataset, for: self).epoch() {
            estimates += parallel.importanceSampledLogLikelihood(batch.images, condition: batch.condition, samples: samples, seed: seed, firstIndex: estimates.count)
            progress(estimates.count)
        }
        return LogLikelihoodEstimate(perImage: estimates, samples: samples)
    }

    /// `logLikelihood(_:samples:seed:workers:progress:)` on a GPU whose step holds this model's
    /// weights (`CUDAStep.importanceSampledLogLikelihood`: the same draws, decoded in large
    /// groups of images, the log-sum-exp on the device).
    public func logLikelihood(
        _ dataset: ImageDataset, samples: Int, seed: UInt64 = 1, on device: CUDAStep, progress: (Int) -> Void = { _ in }
    ) throws -> LogLikelihoodEstimate {
        try device.upload(from: self)
        var estimates: [ImportanceSampledEstimate] = []
        for batch in BatchLoader.evaluation(dataset, for: self, batchSize: 10_000).epoch() {
            estimates += try device.importanceSampledLogLikelihood(
                batch.images, condition: batch.condition, samples: samples, seed: seed, firstIndex: estimates.count)
            progress(estimates.count)
        }
        return LogLikelihoodEstimate(perImage: estimates, samples: samples)
    }
}

/// The result of `vae eval --iw-samples` kept in the run folder (`RUN/log-likelihood.json`), for
/// the report: log p(x) with its standard error, and the −ELBO of the same images.
public struct LikelihoodRecord: Codable, Equatable, Sendable {
    /// "final" or "best".
    public var weights: String
    public var images: Int
    /// K, importance samples per image.
    public var samples: Int
    /// Mean log p(x) estimate and its standard error, nats per image.
    public var logLikelihood: Double
    public var standardError: Double
    /// −ELBO of the same images, nats per image (the gap is log p(x) + this).
    public var negativeELBO: Double
    public var seconds: Double
    /// When it was measured (ISO 8601).
    public var date: String

    public init(weights: String, images: Int, samples: Int, logLikelihood: Double, standardError: Double, negativeELBO: Double, seconds: Double, date: String) {
        (self.weights, self.images, self.samples, self.logLikelihood) = (weights, images, samples, logLikelihood)
        (self.standardError, self.negativeELBO, self.seconds, self.date) = (standardError, negativeELBO, seconds, date)
    }

    /// log p(x) − ELBO: what the ELBO leaves out (≥ 0 up to the estimate's noise).
    public var gap: Double { logLikelihood + negativeELBO }
}

extension RunFolder {
    /// `RUN/log-likelihood.json`.
    public var likelihoodPath: String { "\(path)/log-likelihood.json" }

    public func writeLikelihood(_ record: LikelihoodRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(Array(try encoder.encode(record)) + [10], to: likelihoodPath)
    }

    /// The recorded log p(x), or nil if `vae eval --iw-samples` has not been run on the folder.
    public func likelihood() -> LikelihoodRecord? {
        guard let bytes = try? Files.read(likelihoodPath, limit: 1 << 16) else { return nil }
        return try? JSONDecoder().decode(LikelihoodRecord.self, from: Data(bytes))
    }
}
