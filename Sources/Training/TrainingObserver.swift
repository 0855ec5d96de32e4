#if canImport(Glibc)
import Glibc
#endif
import VAE

/// What a run reports as it goes. Every method has an empty default: implement the ones you
/// need. The `vae` command's progress bar is one observer; a report writer or a distributed
/// coordinator plugs in the same way, without touching the loop.
public protocol TrainingObserver: AnyObject {
    /// Training is about to start (or continue) at `state`.
    func runStarted(_ run: TrainingRun, at state: TrainingState)
    /// One optimiser step is done.
    func stepDone(_ run: TrainingRun, _ progress: StepReport)
    /// An epoch is done, evaluated, and its weights and metrics row are saved. Called before the
    /// epoch's checkpoint is written, so what an observer writes here is covered by that
    /// checkpoint: a run resumed from it never repeats the call.
    func epochDone(_ run: TrainingRun, _ summary: EpochSummary)
    /// A training checkpoint was written (mid-epoch or after an epoch).
    func checkpointWritten(_ run: TrainingRun, path: String, state: TrainingState)
    /// The run ended: finished, stopped early, or stopped on request (a checkpoint is saved).
    func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome)
}

extension TrainingObserver {
    public func runStarted(_ run: TrainingRun, at state: TrainingState) {}
    public func stepDone(_ run: TrainingRun, _ progress: StepReport) {}
    public func epochDone(_ run: TrainingRun, _ summary: EpochSummary) {}
    public func checkpointWritten(_ run: TrainingRun, path: String, state: TrainingState) {}
    public func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) {}
}

/// Where an epoch is after a step.
public struct StepReport: Sendable {
    /// The epoch in progress, from 1.
    public let epoch: Int
    /// Steps of this epoch done, of `stepsInEpoch`.
    public let step: Int
    public let stepsInEpoch: Int
    /// Optimiser steps of the whole run.
    public let globalStep: Int
    /// Images of this epoch so far.
    public let imagesSeen: Int
    /// The running −ELBO per image of this epoch, over its steps up to global step ``lossStep``:
    /// on the CPU every step so far; on the GPU, which reads its losses back once per progress
    /// update instead of once per step, those up to the last read-back (NaN before the first).
    public let runningLoss: Double
    /// The global step up to which ``runningLoss`` counts.
    public let lossStep: Int
    /// The learning rate of the step.
    public let learningRate: Float
    /// Seconds since the epoch started.
    public let elapsed: Double
}

/// One epoch's figures (nats per image), as `metrics.csv` records them.
public struct EpochSummary: Sendable {
    /// From 1.
    public let epoch: Int
    public let train: LossBreakdown
    /// −ELBO on the validation set (runs with a validation split).
    public let validation: LossBreakdown?
    /// −ELBO on the test set; nil after an epoch whose test evaluation `testEvery` skips.
    public let test: LossBreakdown?
    /// Per-dimension KL and active units on the test set (nil when `test` is).
    public let latent: LatentStatistics?
    /// The learning rate at the epoch's first step, and the KL weight at its start.
    public let learningRate: Float
    public let klWeight: Double
    public let seconds: Double
    public let imagesPerSecond: Double
    /// Whether this epoch has the best validation −ELBO so far (its weights are in `best.safetensors`).
    public let isBest: Bool
}

/// How a call to ``TrainingRun/train(observer:stop:)`` ended.
public enum TrainingOutcome: Equatable, Sendable {
    /// Every epoch is done.
    case finished(epochs: Int)
    /// Early stopping ended the run after `epoch` epochs; the best validation epoch was `bestEpoch`.
    case stoppedEarly(epoch: Int, bestEpoch: Int)
    /// A stop was requested: the run saved a checkpoint after `step` of `stepsInEpoch` steps of
    /// epoch `epoch` (from 1) and can be resumed.
    case interrupted(epoch: Int, step: Int, stepsInEpoch: Int, signal: Int32)
    /// The checkpoint says training was already over after `epochs` epochs; `completed` lists
    /// the outputs that were missing and have now been written (empty: nothing to do).
    case alreadyFinished(epochs: Int, completed: [String])
}

/// A request to stop a run at the end of its current step (it then saves a checkpoint).
///
/// The caller owns it and may set it from anywhere — another thread, or a signal handler
/// through ``flag``, which is a plain integer that is safe to write from one.
public final class StopRequest: @unchecked Sendable {
    /// 0 while no stop is requested, otherwise the signal number (or any non-zero value).
    public let flag: UnsafeMutablePointer<sig_atomic_t>

    public init() {
        flag = .allocate(capacity: 1)
        flag.initialize(to: 0)
    }

    deinit { flag.deallocate() }

    /// Asks the run to stop after its current step; `signal` is reported back in the outcome.
    public func request(signal: Int32 = SIGINT) { flag.pointee = sig_atomic_t(signal) }

    /// The requested signal, or nil.
    public var requested: Int32? { flag.pointee == 0 ? nil : Int32(flag.pointee) }
}

/// Several observers told in turn, in the order given (e.g. the progress bar and a report
/// writer).
public final class ObserverGroup: TrainingObserver {
    public let observers: [TrainingObserver]

    public init(_ observers: [TrainingObserver]) { self.observers = observers }

    public func runStarted(_ run: TrainingRun, at state: TrainingState) { for o in observers { o.runStarted(run, at: state) } }
    public func stepDone(_ run: TrainingRun, _ progress: StepReport) { for o in observers { o.stepDone(run, progress) } }
    public func epochDone(_ run: TrainingRun, _ summary: EpochSummary) { for o in observers { o.epochDone(run, summary) } }
    public func checkpointWritten(_ run: TrainingRun, path: String, state: TrainingState) {
        for o in observers { o.checkpointWritten(run, path: path, state: state) }
    }
    public func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { for o in observers { o.runEnded(run, outcome) } }
}
