import Datasets
import Foundation
import NN
import Tensor
import VAE

/// Picks how to split a run over the cores by timing it: a few training steps of the run's own
/// model, objective, batch size and data under each candidate split, on a scratch copy of the
/// model (the run's weights and random streams are untouched), the candidates taken in turn
/// twice and each one's faster pass kept. Small batches on many cores are often fastest on
/// fewer cores than the machine has (each batch worker sums a whole gradient), which no fixed
/// rule gets right for every model and machine.
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

        /// "4 batch workers × 1 GEMM thread (chosen of 1×1 3.10, 2×1 1.92, 4×1 1.50 ms/step, …; probed in 0.4 s)".
        public var summary: String {
            let times = trials.map { "\($0.parallelism.workers)×\($0.parallelism.gemmThreads) \(fixed(1000 * $0.secondsPerStep))" }
            return "\(best.split) (chosen of \(times.joined(separator: ", ")) ms/step, workers × GEMM threads: the first within "
                + "\(Int(100 * ParallelismProbe.tieMargin))% of the fastest; probed in \(fixed(seconds)) s)"
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

    /// Times `candidates` on `steps` steps each (after `warmup` steps that let each split's
    /// threads and buffers settle), two passes, and returns the ``choice(_:)``. Under several ranks
    /// every rank probes at once (so the figures include the ranks' contention) and the ranks'
    /// times are summed before the choice, so all of them choose the same split.
    public static func fastest(
        config: RunConfig, train: ImageDataset, candidates: [Parallelism], steps: Int = 6, warmup: Int = 2,
        communicator: Communicator = SingleProcess()
    ) throws -> Result {
        precondition(!candidates.isEmpty, "nothing to probe")
        let start = monotonicSeconds()
        guard candidates.count > 1 else { return Result(best: candidates[0], trials: [], seconds: 0) }
        let training = config.training
        var rng = RandomGenerator(seed: RunSeeds(training.seed).initialization)
        let model = VariationalAutoencoder(config: config.model, rng: &rng)
        model.precision = BF16.resolve(training.matrixPrecision).precision
        // The same batches for every candidate, this rank's share of each global batch.
        let loader = BatchLoader(
            dataset: train, batchSize: training.batchSize, shuffle: true, binarize: training.binarize, seed: RunSeeds(training.seed).data,
            conditionClasses: config.model.conditionClasses)
        let batches = Array(loader.epoch().prefix(warmup + steps))
        guard !batches.isEmpty else { return Result(best: candidates[0], trials: [], seconds: 0) }
        var best = [Double](repeating: .infinity, count: candidates.count)
        for _ in 0..<2 {
            for (i, candidate) in candidates.enumerated() {
                let workers = candidate.apply()
                let optimizer = training.optimizerConfig.make(parameters: model.parameters, learningRate: training.learningRate)
                let trainer = Trainer(
                    model: model, optimizer: optimizer, rng: RandomGenerator(seed: 1), workers: workers,
                    objective: training.trainingObjective, clipNorm: training.clipNorm, communicator: communicator)
                trainer.counterNoise = CounterNoise(seed: 1)
                var timed = 0.0
                for (k, batch) in batches.enumerated() {
                    let before = monotonicSeconds()
                    _ = try? trainer.trainStep(batch)
                    if k >= min(warmup, batches.count - 1) { timed += monotonicSeconds() - before }
                }
                best[i] = min(best[i], timed / Double(batches.count - min(warmup, batches.count - 1)))
            }
        }
        if communicator.size > 1 { best.withUnsafeMutableBufferPointer { communicator.sum($0) } }
        let choice = choice(best)
        let trials = candidates.indices.map { Trial(parallelism: candidates[$0], secondsPerStep: best[$0] / Double(communicator.size)) }
        return Result(best: candidates[choice], trials: trials, seconds: monotonicSeconds() - start)
    }
}
