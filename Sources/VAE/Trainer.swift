import Datasets
import NN
import Tensor

/// Training stopped because the loss or a gradient was not finite.
public struct NonFiniteLossError: Error, CustomStringConvertible {
    public let step: Int
    public var description: String { "the loss became non-finite at step \(step); \(Self.hint)" }
    public static let hint = "lower --lr or check that the data lie in [0, 1]"
}

/// Where a training epoch is, reported after every step.
public struct StepProgress: Sendable {
    public let step: Int
    public let stepsInEpoch: Int
    public let imagesSeen: Int
    /// Running mean of −ELBO per image over this epoch so far.
    public let runningLoss: Double

    public init(step: Int, stepsInEpoch: Int, imagesSeen: Int, runningLoss: Double) {
        self.step = step
        self.stepsInEpoch = stepsInEpoch
        self.imagesSeen = imagesSeen
        self.runningLoss = runningLoss
    }
}

/// Minimises the batch mean of the training objective (the −ELBO with β, warm-up or free bits,
/// or the −IWAE bound; see ``TrainingObjective``) with an optimiser (Adam by default).
///
/// With several workers each step splits the batch across cores (``DataParallel``): every
/// worker runs forward and backward on its rows, then the workers sum the gradients and apply
/// the optimiser to disjoint slices of the parameters. ε for the whole batch is drawn first
/// from `rng`, so the random stream does not depend on the number of workers.
public final class Trainer {
    public let model: VariationalAutoencoder
    public let optimizer: Optimizer
    /// Draws ε for the reparameterisation.
    public var rng: RandomGenerator
    /// What is minimised: β, KL warm-up, free bits, IWAE samples, KL estimator.
    public var objective: TrainingObjective
    /// Epochs of training done so far (fractional within an epoch); drives the KL warm-up.
    public var epochsDone: Double = 0
    /// Total optimiser steps taken (restored when resuming).
    public var step = 0
    /// Largest global L2 norm of the summed gradient; a larger one is scaled down to it before
    /// the update (nil: no clipping).
    public var clipNorm: Float?
    public let parallel: DataParallel
    private var noise: Tensor?
    /// One slot per worker, written concurrently (a raw buffer: no shared Swift container).
    private let workerLosses: UnsafeMutableBufferPointer<LossBreakdown>
    /// Per worker, the batch's per-dimension KL sums (free bits); then the 0/1 gradient mask.
    private let klSums: UnsafeMutableBufferPointer<Double>
    private let klMask: UnsafeMutableBufferPointer<Float>
    /// Elements per chunk of the gradient sum + update, small enough to stay in L1/L2.
    private let chunk = 8192
    /// Each worker's parameters, in the model's order (computed once: no work per step).
    private let workerParameters: [[Parameter]]

    public init(
        model: VariationalAutoencoder, optimizer: Optimizer, rng: RandomGenerator, workers: Int = 1,
        objective: TrainingObjective = TrainingObjective(), clipNorm: Float? = nil
    ) {
        self.clipNorm = clipNorm
        self.model = model
        self.optimizer = optimizer
        self.rng = rng
        self.objective = objective
        parallel = DataParallel(model: model, workers: workers)
        workerParameters = parallel.workers.map(\.parameters)
        workerLosses = .allocate(capacity: max(workers, 1))
        workerLosses.initialize(repeating: LossBreakdown())
        klSums = .allocate(capacity: max(workers, 1) * model.latentDimension)
        klSums.initialize(repeating: 0)
        klMask = .allocate(capacity: model.latentDimension)
        klMask.initialize(repeating: 1)
        precondition(optimizer.parameters.elementsEqual(model.parameters, by: ===), "optimizer must own the model's parameters")
    }

    deinit {
        workerLosses.deallocate()
        klSums.deallocate()
        klMask.deallocate()
    }

    /// The KL weight this step uses (β, ramped up during the warm-up).
    public var currentKLWeight: Float { objective.klWeight(afterEpochs: epochsDone) }

    /// One optimiser step on a batch of images and their labels; returns the batch's loss terms
    /// (before the update).
    public func trainStep(_ batch: Batch) throws -> LossBreakdown {
        try trainStep(batch.images, condition: batch.condition)
    }

    /// One optimiser step on `batch` (with its one-hot labels for a conditional model); returns
    /// the batch's loss terms (before the update).
    public func trainStep(_ batch: Tensor, condition: Tensor? = nil) throws -> LossBreakdown {
        func labels(_ w: Int) -> Tensor? { parallel.conditionRows(w, of: condition, range: parallel.rows(w, of: batch.rows)) }
        let samples = objective.usesMonteCarlo ? objective.importanceSamples : 1
        let d = model.latentDimension
        let eps = Tensor.reusing(noise, rows: batch.rows * samples, columns: d)
        noise = eps
        rng.fillNormal(eps)
        let scale = 1 / Float(batch.rows)
        let weight = currentKLWeight
        var loss = LossBreakdown()
        if objective.usesMonteCarlo {
            parallel.run { w, worker in
                let rows = parallel.rows(w, of: batch.rows)
                workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.monteCarloObjective(
                    parallel.input(w, of: batch), condition: labels(w), noise: parallel.noise(w, of: eps, rows: (rows.lowerBound * samples)..<(rows.upperBound * samples)),
                    samples: samples, computeGradients: true, klWeight: weight, gradientScale: scale)
            }
            for l in workerLosses { loss += l }
        } else if objective.freeBits > 0 {
            loss = freeBitsStep(batch, labels: labels, noise: eps, klWeight: weight, scale: scale)
        } else {
            parallel.run { w, worker in
                let rows = parallel.rows(w, of: batch.rows)
                workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.negativeELBO(
                    parallel.input(w, of: batch), condition: labels(w), noise: parallel.noise(w, of: eps),
                    computeGradients: true, klWeight: weight, gradientScale: scale)
            }
            for l in workerLosses { loss += l }
        }
        guard loss.reconstruction.isFinite, loss.kl.isFinite else { throw NonFiniteLossError(step: step + 1) }
        applyUpdate(activeWorkers: parallel.activeWorkers(for: batch.rows))
        step += 1
        return loss
    }

    /// Free bits: the batch-mean KL of each dimension decides whether its KL gradient counts, so
    /// the workers first encode and sum their KL per dimension, then finish the step.
    private func freeBitsStep(
        _ batch: Tensor, labels: (Int) -> Tensor?, noise eps: Tensor, klWeight weight: Float, scale: Float
    ) -> LossBreakdown {
        let d = model.latentDimension
        for i in klSums.indices { klSums[i] = 0 }
        parallel.run { w, worker in
            guard !parallel.rows(w, of: batch.rows).isEmpty else { return }
            klSumsPerDimension(worker.encode(parallel.input(w, of: batch), condition: labels(w)), into: klSums.baseAddress! + w * d)
        }
        let lambda = Double(objective.freeBits)
        var flooredKL = 0.0
        for j in 0..<d {
            var total = 0.0
            for w in 0..<parallel.count { total += klSums[w * d + j] }
            let mean = total / Double(batch.rows)
            klMask[j] = mean > lambda ? 1 : 0
            flooredKL += max(lambda, mean)
        }
        parallel.run { w, worker in
            let rows = parallel.rows(w, of: batch.rows)
            workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.negativeELBO(
                parallel.input(w, of: batch), condition: labels(w), noise: parallel.noise(w, of: eps), computeGradients: true,
                klWeight: weight, gradientScale: scale, klDimensionWeights: klMask.baseAddress, reuseEncoding: true)
        }
        var loss = LossBreakdown()
        for l in workerLosses { loss += l }
        loss.objective = loss.reconstruction + Double(weight) * flooredKL * Double(batch.rows)
        return loss
    }

    /// Sums the active workers' gradients into the model's and updates, each worker taking a
    /// slice of every parameter, chunk by chunk so the summed gradient is still in cache. With
    /// two workers the sum is fused into the optimiser's update; with gradient clipping the sum
    /// is completed first, since the global norm needs all of it.
    private func applyUpdate(activeWorkers: Int) {
        let params = workerParameters[0]
        let others = workerParameters.prefix(activeWorkers).dropFirst()
        let fuse = others.count <= 1 && clipNorm == nil
        if !fuse {
            chunked(params) { k, range in
                let g = params[k].gradient.data
                for other in others {
                    let h = other[k].gradient.data
                    for i in range { g[i] += h[i] }
                }
            }
            if let clipNorm { clipGradientNorm(params, maxNorm: clipNorm) }
        }
        optimizer.beginStep()
        chunked(params) { k, range in
            let extra = fuse ? others.first.map { UnsafePointer($0[k].gradient.data) } : nil
            optimizer.update(parameterAt: k, range: range, addingGradient: extra)
        }
    }

    /// `body(k, range)` over every parameter's elements, the workers taking disjoint slices of
    /// each parameter, in chunks of `chunk` elements.
    private func chunked(_ params: [Parameter], _ body: (Int, Range<Int>) -> Void) {
        parallel.run { w, _ in
            for k in params.indices {
                let slice = Parallel.slice(w, of: parallel.count, count: params[k].value.count)
                var start = slice.lowerBound
                while start < slice.upperBound {
                    let range = start..<min(start + chunk, slice.upperBound)
                    body(k, range)
                    start = range.upperBound
                }
            }
        }
    }

    /// Trains on every batch of `batches` once; `onStep` sees progress after each step.
    public func trainEpoch<S: Sequence>(
        _ batches: S, stepsInEpoch: Int, onStep: (StepProgress) -> Void = { _ in }
    ) throws -> LossBreakdown where S.Element == Batch {
        var total = LossBreakdown()
        var index = 0
        let start = epochsDone.rounded(.down)
        for batch in batches {
            epochsDone = start + Double(index) / Double(max(stepsInEpoch, 1))
            total += try trainStep(batch)
            index += 1
            onStep(StepProgress(step: index, stepsInEpoch: stepsInEpoch, imagesSeen: total.images, runningLoss: total.meanNegativeELBO))
        }
        epochsDone = start + 1
        return total
    }
}

extension VariationalAutoencoder {
    /// −ELBO over all `batches` with one ε per image drawn from a generator seeded with `seed`,
    /// so the same model and data always give the same figure.
    public func evaluate<S: Sequence>(_ batches: S, seed: UInt64 = 0) -> LossBreakdown where S.Element == Batch {
        var rng = RandomGenerator(seed: seed)
        var total = LossBreakdown()
        for batch in batches {
            total += negativeELBO(batch.images, condition: batch.condition, rng: &rng, computeGradients: false)
        }
        return total
    }
}
