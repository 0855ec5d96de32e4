import Datasets
import Foundation
import NN
import Tensor
import VAE

/// Picks how to split a run over the cores by timing it: a few training steps of the run's own
/// model, objective, batch size and data under each candidate split, on a scratch copy of the
/// model (the run's weights and random streams are untouched), in two passes: every candidate,
/// then the close ones again, each one's faster pass kept. Small batches on many cores are
/// often fastest on fewer cores than the machine has (each batch worker sums a whole gradient),
/// which no fixed rule gets right for every model and machine. The result is kept in the
/// ``ProbeCache``, so that the next run of the same model on the same machine starts at once,
/// with the same split.
public enum ParallelismProbe {
    /// One candidate's figure: seconds per training step.
    public struct Trial: Sendable, Equatable {
        public let parallelism: Parallelism
        public let secondsPerStep: Double
    }

    /// What the probe found: the fastest split and every candidate's time.
    public struct Result: Sendable {
        public let best: Parallelism
        public let trials: [Trial]
        /// Wall time the probe took.
        public let seconds: Double
        /// When the result was probed by an earlier run and read from the cache: the day it
        /// was probed ("2026-12-05") and the cache's folder.
        public var reused: (probed: String, folder: String)?
        /// Why a fresh result was not kept in the cache (other work was running), if it was not.
        public var notKept: String?

        public init(
            best: Parallelism, trials: [Trial], seconds: Double, reused: (probed: String, folder: String)? = nil
        ) {
            self.best = best
            self.trials = trials
            self.seconds = seconds
            self.reused = reused
        }

        /// "4 batch workers × 1 GEMM thread (chosen of 1×1 3.10, 2×1 1.92, 4×1 1.50 ms/step, …; probed in 0.4 s)",
        /// or for a result read from the cache "…; probed in 0.4 s on 2026-12-05 and kept in
        /// FOLDER, VAE_CACHE=off to probe again)".
        public var summary: String {
            let times = trials.map { "\($0.parallelism.workers)×\($0.parallelism.gemmThreads) \(fixed(1000 * $0.secondsPerStep))" }
            let when = reused.map { " on \($0.probed) and kept in \($0.folder), VAE_CACHE=off to probe again" } ?? notKept.map { "; \($0)" } ?? ""
            return "\(best.split) (chosen of \(times.joined(separator: ", ")) ms/step, workers × GEMM threads: the first within "
                + "\(Int(100 * ParallelismProbe.tieMargin))% of the fastest; probed in \(fixed(seconds)) s\(when))"
        }

        private func fixed(_ x: Double) -> String { String(format: "%.2f", x) }
    }

    /// The splits worth timing on `cores` cores for batches of `batchSize`: batch workers 1, 2,
    /// 4, … up to the cores (and the batch), one worker with every core splitting the products,
    /// and the mixes in between (powers of two whose product is the cores). `mode` keeps to one
    /// family: `.batch` (GEMM threads 1) or `.blas` (one worker).
    public static func candidates(cores: Int, batchSize: Int, mode: Family? = nil) -> [Parallelism] {
        let cores = max(cores, 1)
        var counts: [Int] = []
        var n = 1
        while n < cores { counts.append(n); n *= 2 }
        counts.append(cores)
        var result: [Parallelism] = []
        if mode != .blas { result += counts.filter { $0 <= max(batchSize, 1) }.map { .batch(workers: $0) } }
        if mode == nil {
            for workers in counts where workers > 1 && workers < cores && cores % workers == 0 && workers <= batchSize {
                result.append(Parallelism(workers: workers, gemmThreads: cores / workers))
            }
        }
        if mode != .batch { result += counts.filter { $0 > 1 || mode == .blas }.map { .blas(threads: $0) } }
        var seen: [Parallelism] = []
        for p in result where !seen.contains(p) { seen.append(p) }
        return seen
    }

    /// How much faster a later candidate must be to be chosen over an earlier one: splits that
    /// time alike (within the noise of a few steps) would otherwise be chosen by chance, run to
    /// run, and two new runs of the same command would differ by their summation order.
    public static let tieMargin = 0.02

    /// The candidate chosen from their times (in `candidates`' order: fewer batch workers first):
    /// the first whose time is within ``tieMargin`` of the fastest.
    public static func choice(_ times: [Double]) -> Int {
        guard let fastest = times.min() else { return 0 }
        return times.firstIndex { $0 <= fastest * (1 + tieMargin) } ?? 0
    }

    /// The families of splits `candidates(cores:batchSize:mode:)` can keep to.
    public enum Family: Sendable { case batch, blas }

    /// How much slower than the fastest first pass a candidate may be and still be timed a
    /// second time: the second pass is for the contenders, whose order a pass's noise (a few
    /// percent) could change; a candidate 10% behind does not win on a second try often enough
    /// to pay for its steps, and when it does it wins by little.
    public static let retimeMargin = 0.10

    /// The candidates the second pass times, from the first pass's `times`: those within
    /// ``retimeMargin`` of the fastest — none when fewer than two are (one contender is chosen
    /// whatever a second pass says).
    public static func contenders(_ times: [Double]) -> [Int] {
        guard let fastest = times.min() else { return [] }
        let close = times.indices.filter { times[$0] <= fastest * (1 + retimeMargin) }
        return close.count > 1 ? close : []
    }

    /// How much slower than the fastest so far a candidate's median step over its first timed
    /// steps must be for it to stop there: a split 25% behind after three steps is behind.
    public static let dropMargin = 0.25

    /// Whether a candidate whose first `steps` timed steps took `typical` seconds (their median)
    /// stops timing, the fastest candidate so far taking `fastest`: after three steps or more (so
    /// that one delayed step does not decide), when it is more than ``dropMargin`` slower.
    public static func dropsEarly(typical: Double, steps: Int, fastest: Double) -> Bool {
        steps >= 3 && typical > fastest * (1 + dropMargin)
    }

    /// Times `candidates` on `steps` steps each (after `warmup` steps that let each split's
    /// threads and buffers settle) and returns the ``choice(_:)`` among their median steps. Two
    /// passes, each candidate's faster one kept; the second times only the ``contenders(_:)``,
    /// and a candidate that ``dropsEarly(typical:steps:fastest:)`` stops after three steps (the
    /// candidates are timed from the last — most cores on the products — to the first, which on
    /// many cores is the slowest and then stops early). Under several ranks every rank probes at once (so the figures
    /// include the ranks' contention) and the ranks' times are summed before the choice, so all
    /// of them choose the same split.
    ///
    /// With a `cache` (one process only: ranks probe together, every time), a result probed
    /// before for the same machine, build of vae, model, objective, batch and candidates is
    /// read back instead of probing, and a new one is stored.
    public static func fastest(
        config: RunConfig, train: ImageDataset, candidates: [Parallelism], steps: Int = 6, warmup: Int = 2,
        communicator: Communicator = SingleProcess(), cache: ProbeCache? = nil
    ) throws -> Result {
        precondition(!candidates.isEmpty, "nothing to probe")
        let start = monotonicSeconds()
        guard candidates.count > 1 else { return Result(best: candidates[0], trials: [], seconds: 0) }
        let training = config.training
        let precision = BF16.resolve(training.matrixPrecision).precision
        let cache = communicator.size == 1 ? cache : nil
        let key = cache.map { _ in ProbeCache.key(config: config, precision: precision, candidates: candidates, steps: steps, warmup: warmup) }
        if let cache, let key, let stored = cache.result(key, candidates: candidates) { return stored }
        var rng = RandomGenerator(seed: RunSeeds(training.seed).initialization)
        let model = VariationalAutoencoder(config: config.model, rng: &rng)
        model.precision = precision
        // The same batches for every candidate, this rank's share of each global batch.
        let loader = BatchLoader(
            dataset: train, batchSize: training.batchSize, shuffle: true, binarize: training.binarize, seed: RunSeeds(training.seed).data,
            conditionClasses: config.model.conditionClasses)
        let batches = Array(loader.epoch().prefix(warmup + steps))
        guard !batches.isEmpty else { return Result(best: candidates[0], trials: [], seconds: 0) }
        let untimed = min(warmup, batches.count - 1)
        // How busy the machine is, for the cache to keep only a probe that had it to itself.
        let load = cache == nil ? nil : MachineUse.now()
        var best = [Double](repeating: .infinity, count: candidates.count)
        for pass in 0..<2 {
            let timing = pass == 0 ? Array(candidates.indices) : contenders(best)
            guard !timing.isEmpty else { break }
            var times = [Double](repeating: .infinity, count: candidates.count)
            for i in timing.reversed() {
                let workers = candidates[i].apply()
                let optimizer = training.optimizerConfig.make(parameters: model.parameters, learningRate: training.learningRate)
                let trainer = Trainer(
                    model: model, optimizer: optimizer, rng: RandomGenerator(seed: 1), workers: workers,
                    objective: training.trainingObjective, clipNorm: training.clipNorm, communicator: communicator)
                trainer.counterNoise = CounterNoise(seed: 1)
                var stepTimes: [Double] = []
                let fastest = min(best.min() ?? .infinity, times.min() ?? .infinity)
                // The first candidate timed also settles the process (its first steps touch the
                // scratch model's memory for the first time): its warm-up steps run twice.
                let settling = pass == 0 && i == timing.last ? untimed : 0
                for (k, batch) in (batches.prefix(settling) + batches).enumerated() {
                    let started = monotonicSeconds()
                    _ = try? trainer.trainStep(batch)
                    guard k >= settling + untimed else { continue }
                    stepTimes.append(monotonicSeconds() - started)
                    // Under several ranks every rank takes every step (they exchange gradients).
                    if communicator.size == 1 && dropsEarly(typical: median(stepTimes), steps: stepTimes.count, fastest: fastest) { break }
                }
                // The median step: a step that another process or an interrupt delayed moves it
                // little (the mean of six steps moves by a sixth of the delay).
                times[i] = median(stepTimes)
            }
            // The ranks' times summed: every rank sees the same figures, so all time the same
            // contenders and choose the same split.
            if communicator.size > 1 { times.withUnsafeMutableBufferPointer { communicator.sum($0) } }
            best = zip(best, times).map { min($0, $1) }
        }
        let choice = choice(best)
        let trials = candidates.indices.map { Trial(parallelism: candidates[$0], secondsPerStep: best[$0] / Double(communicator.size)) }
        let othersShare = load.flatMap { start in MachineUse.now()?.othersShare(since: start) }
        var result = Result(best: candidates[choice], trials: trials, seconds: monotonicSeconds() - start)
        if let cache, let key {
            if let reason = cache.refusal(othersShare: othersShare) { result.notKept = reason } else { cache.store(result, key) }
        }
        return result
    }
}
