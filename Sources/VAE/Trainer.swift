import NN
import Tensor

/// Training stopped because the loss or a gradient was not finite.
public struct NonFiniteLossError: Error, CustomStringConvertible {
    public let step: Int
    public var description: String {
        "the loss became non-finite at step \(step); lower --lr or check that the data lie in [0, 1]"
    }
}

/// Where a training epoch is, reported after every step.
public struct StepProgress: Sendable {
    public let step: Int
    public let stepsInEpoch: Int
    public let imagesSeen: Int
    /// Running mean of −ELBO per image over this epoch so far.
    public let runningLoss: Double
}

/// Minimises the batch-mean −ELBO with an optimiser (Adam by default).
public final class Trainer {
    public let model: VariationalAutoencoder
    public let optimizer: Optimizer
    /// Draws ε for the reparameterisation.
    public var rng: RandomGenerator
    /// β: weight of the KL term (1 for the plain ELBO).
    public var klWeight: Float = 1
    /// Total optimiser steps taken.
    public private(set) var step = 0

    public init(model: VariationalAutoencoder, optimizer: Optimizer, rng: RandomGenerator) {
        self.model = model
        self.optimizer = optimizer
        self.rng = rng
    }

    /// One optimiser step on a batch; returns the batch's loss terms (before the update).
    public func trainStep(_ batch: Tensor) throws -> LossBreakdown {
        let loss = model.negativeELBO(batch, rng: &rng, computeGradients: true, klWeight: klWeight)
        guard loss.reconstruction.isFinite, loss.kl.isFinite else { throw NonFiniteLossError(step: step + 1) }
        optimizer.step()
        step += 1
        return loss
    }

    /// Trains on every batch of `batches` once; `onStep` sees progress after each step.
    public func trainEpoch<S: Sequence>(
        _ batches: S, stepsInEpoch: Int, onStep: (StepProgress) -> Void = { _ in }
    ) throws -> LossBreakdown where S.Element == Tensor {
        var total = LossBreakdown()
        var index = 0
        for batch in batches {
            total += try trainStep(batch)
            index += 1
            onStep(StepProgress(step: index, stepsInEpoch: stepsInEpoch, imagesSeen: total.images, runningLoss: total.meanNegativeELBO))
        }
        return total
    }
}

extension VariationalAutoencoder {
    /// −ELBO over all `batches` with one ε per image drawn from a generator seeded with `seed`,
    /// so the same model and data always give the same figure.
    public func evaluate<S: Sequence>(_ batches: S, seed: UInt64 = 0) -> LossBreakdown where S.Element == Tensor {
        var rng = RandomGenerator(seed: seed)
        var total = LossBreakdown()
        for batch in batches { total += negativeELBO(batch, rng: &rng, computeGradients: false) }
        return total
    }
}
