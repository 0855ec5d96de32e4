import Datasets
import NN
import Tensor

/// Training stopped because the loss or a gradient was not finite.
public struct NonFiniteLossError: Error, CustomStringConvertible {
    public let step: Int
    public var description: String { "the loss became non-finite at step \(step); \(Self.hint)" }
    public static let hint = "lower --lr or check that the data lie in [0, 1]"
}

/// Minimises the batch mean of the training objective (the −ELBO with β, warm-up or free bits,
/// or the −IWAE bound; see ``TrainingObjective``) with an optimiser (Adam by default).
///
/// With several workers each step splits the batch across cores (``DataParallel``): every
/// worker runs forward and backward on its rows, then the workers sum the gradients and apply
/// the optimiser to disjoint slices of the parameters. ε for the whole batch is drawn first
/// from `rng`, so the random stream does not depend on the number of workers.
///
/// With a `Communicator` of several processes (ranks), `batch` is the *global* batch: every rank
/// draws the same ε for all of it and computes on its contiguous slice of the rows, the
/// gradient is scaled by 1/(global batch), and the ranks combine their gradients in one of two
/// ways (``ShardedUpdate/Policy``): one in-place all-reduce of a flat gradient buffer, after
/// which every rank updates every weight; or, sharded (ZeRO stage 1, ``ShardedUpdate``), the
/// gradients summed onto each rank's shard, each rank updating its shard, the shards gathered.
/// So N ranks × B/N rows compute what one process computes on B rows, up to the summation
/// order, and hold identical weights.
public final class Trainer {
    public let model: VariationalAutoencoder
    public let optimizer: Optimizer
    /// Draws ε for the reparameterisation (when ``counterNoise`` is nil).
    public var rng: RandomGenerator
    /// When set, ε of step t (counting from 0) is numbers 0, 1, … of Philox stream t, and ε₂
    /// of a second stochastic layer those of stream t + 2⁶³: the same for the same (seed, step)
    /// however the batch is shared out and on whatever device.
    public var counterNoise: CounterNoise?
    /// When set, every step runs on this GPU (``CUDAStep``: the same −ELBO, ops and Adam, with
    /// the weights and the optimiser's state on the device); the host's copies are brought up
    /// to date by ``synchronizeHost()``. Needs ``counterNoise`` (the GPU draws the same ε).
    public private(set) var device: CUDAStep?
    /// Whether a step on the device, or a sharded update, has left the host's weights or
    /// optimiser state incomplete since ``synchronizeHost()`` last ran (the same on every rank).
    private var hostIsStale = false
    /// Loss terms of steps queued by ``enqueueStep(_:)`` and not yet collected, in order (the
    /// device's own wait on the device until ``collectLosses(into:)``).
    private var pendingLosses: [LossBreakdown] = []
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
    /// The processes of the job (nil: this process alone).
    public let communicator: Communicator?
    private var noise: Tensor?
    private var localBatch: Tensor?
    private var localCondition: Tensor?
    private var localNoise: Tensor?
    private var upperNoise: Tensor?
    private var localUpperNoise: Tensor?
    /// Under several ranks: the model's weights and gradients as flat buffers, and which shard of
    /// them this rank updates.
    public let sharding: ShardedUpdate?
    /// Under several ranks without sharding: every gradient as one flat buffer (the gradients are
    /// views of it) for the one in-place all-reduce per step; every rank then updates everything.
    private let flatGradient: Tensor?
    /// Under several ranks with one worker each and no sharding: the flat gradient cut into
    /// buckets, the last parameters' first (each at least 1 MB), each summed across
    /// the ranks by a non-blocking all-reduce started as soon as the backward pass has made its
    /// gradients final (``VariationalAutoencoder/onGradientsFinal``), so that the exchange runs
    /// while the earlier layers' backward does — PyTorch DDP's scheme. Every rank starts the
    /// same buckets in the same order (a rank without rows starts them all after zeroing).
    /// (``GradientBuckets``; `overlap` decides whether to.)
    private var buckets: [(firstParameter: Int, range: Range<Int>)] = []
    private var bucketsStarted = 0

    /// How the ranks combine their gradients, in words (nil for a process alone).
    public var gradientExchange: String? {
        guard communicator != nil else { return nil }
        if sharding != nil { return "gradients reduce-scattered, the update sharded, the weights all-gathered (ZeRO stage 1)" }
        if !buckets.isEmpty {
            return "gradients summed in \(buckets.count) bucket\(buckets.count == 1 ? "" : "s") started during the backward pass"
        }
        return "gradients summed by one all-reduce after the backward pass"
    }
    /// Seconds spent exchanging gradients and weights across ranks (the reduce-scatter and the
    /// all-gather), and the bytes each step sums, for `vae bench`.
    public private(set) var communicationSeconds = 0.0
    /// Seconds spent summing the workers' gradients and updating the parameters (the optimiser's
    /// step, with clipping if set), the exchanges across ranks not included; for `vae bench`.
    public private(set) var updateSeconds = 0.0
    public var bytesSummedPerStep: Int { communicator == nil ? 0 : 4 * model.parameterCount }
    /// One slot per worker, written concurrently (a raw buffer: no shared Swift container).
    private let workerLosses: UnsafeMutableBufferPointer<LossBreakdown>
    /// Per worker, the batch's per-dimension KL sums (free bits); then the 0/1 gradient mask.
    private let klSums: UnsafeMutableBufferPointer<Double>
    private let klMask: UnsafeMutableBufferPointer<Float>
    /// Elements per chunk of the gradient sum + update, small enough to stay in L1/L2.
    private let chunk = 8192
    /// Each worker's parameters, in the model's order (computed once: no work per step).
    private let workerParameters: [[Parameter]]
    /// Every element of every parameter, as (parameter index, elements): what the workers' gradients
    /// are summed over.
    private let wholeParameters: [(parameter: Int, range: Range<Int>)]
    /// What this process updates: its shard under several ranks, else every element.
    private let updatePieces: [(parameter: Int, range: Range<Int>)]

    public init(
        model: VariationalAutoencoder, optimizer: Optimizer, rng: RandomGenerator, workers: Int = 1,
        objective: TrainingObjective = TrainingObjective(), clipNorm: Float? = nil, communicator: Communicator? = nil,
        sharding policy: ShardedUpdate.Policy = .auto, overlap: GradientBuckets.Policy = .auto
    ) {
        self.clipNorm = clipNorm
        let communicator = (communicator?.size ?? 1) > 1 ? communicator : nil
        self.communicator = communicator
        self.model = model
        self.optimizer = optimizer
        self.rng = rng
        self.objective = objective
        // The flat buffers first, so that the workers' replicas share the packed values.
        let shards = communicator.map { policy.shards(ranks: $0.size) } ?? false
        sharding = shards ? communicator.map { ShardedUpdate(parameters: model.parameters, communicator: $0) } : nil
        flatGradient = communicator != nil && !shards ? Parameter.packGradients(model.parameters) : nil
        parallel = DataParallel(model: model, workers: workers)
        if let communicator, flatGradient != nil, workers == 1, model.config.upperLatentDimension == 0,
           overlap.overlaps(ranks: communicator.size, ranksOnThisHost: communicator.ranksOnThisHost) {
            buckets = GradientBuckets(parameterSizes: model.parameters.map(\.value.count)).buckets
        }
        workerParameters = parallel.workers.map(\.parameters)
        wholeParameters = model.parameters.enumerated().map { ($0, 0..<$1.value.count) }
        updatePieces = sharding?.pieces ?? wholeParameters
        workerLosses = .allocate(capacity: max(workers, 1))
        workerLosses.initialize(repeating: LossBreakdown())
        klSums = .allocate(capacity: max(workers, 1) * model.latentDimension)
        klSums.initialize(repeating: 0)
        klMask = .allocate(capacity: model.latentDimension)
        klMask.initialize(repeating: 1)
        precondition(optimizer.parameters.elementsEqual(model.parameters, by: ===), "optimizer must own the model's parameters")
        if !buckets.isEmpty {
            model.onGradientsFinal = { [weak self] first in self?.startBuckets(downTo: first) }
        }
    }

    /// Starts the sums of the buckets not yet started whose parameters all have final gradients
    /// (index `first` on), in bucket order, and lets the started ones advance.
    private func startBuckets(downTo first: Int) {
        guard let communicator, let flatGradient else { return }
        while bucketsStarted < buckets.count && buckets[bucketsStarted].firstParameter >= first {
            let range = buckets[bucketsStarted].range
            communicator.startSum(UnsafeMutableBufferPointer(rebasing: flatGradient.buffer[range]))
            bucketsStarted += 1
        }
        communicator.progressSums()
    }

    deinit {
        if !buckets.isEmpty { model.onGradientsFinal = nil }
        workerLosses.deallocate()
        klSums.deallocate()
        klMask.deallocate()
    }

    /// Moves training to `step`'s GPU from now on: its weights and the optimiser's state (moments
    /// and step count) are uploaded from the host's (after a checkpoint was loaded, they are the
    /// checkpoint's). Throws, before anything runs, for what the GPU cannot compute yet.
    /// With `data` (the training set the batches will come from), the GPU keeps it and makes each
    /// batch there from its `BatchSource`.
    public func useDevice(_ step: CUDAStep, data: ImageDataset? = nil) throws {
        if let what = CUDAStep.unsupported(objective: objective, optimizer: optimizer) {
            throw CUDAError("--device cuda: \(what) is not supported on the GPU yet")
        }
        guard communicator == nil else { throw CUDAError("--device cuda: several MPI ranks on GPUs are not supported yet") }
        guard counterNoise != nil else { throw CUDAError("--device cuda: the run draws ε from the sequential generator (made before counter noise); resume it on the CPU") }
        try step.upload(from: model)
        try step.upload(state: optimizer)
        if let data { try step.useData(data) }
        device = step
    }

    /// Makes the host's weights and optimiser state whole and current, for an evaluation, a
    /// checkpoint or pictures: from the GPU after device steps, and under a sharded update from
    /// the other ranks' shards of the optimiser's state (a collective call: every rank calls it,
    /// at the same point). Nothing to do when no step has run since the last call, so rank 0
    /// alone may call it before training.
    /// The device's queued losses are collected first (kept for ``collectLosses(into:)``): a step whose
    /// loss was not finite throws ``NonFiniteLossError`` and the host keeps its weights.
    public func synchronizeHost() throws {
        guard hostIsStale else { return }
        if let device {
            pendingLosses += try device.collectLosses()
            try device.download(into: model)
            try device.download(state: optimizer)
        }
        hostIsStale = false
        sharding?.gatherState(of: optimizer)
    }

    /// The KL weight this step uses (β, ramped up during the warm-up).
    public var currentKLWeight: Float { objective.klWeight(afterEpochs: epochsDone) }

    /// One optimiser step on a batch of images and their labels; returns the batch's loss terms
    /// (before the update), with those of any steps queued before it and not yet collected.
    public func trainStep(_ batch: Batch) throws -> LossBreakdown {
        try enqueueStep(batch)
        var total = LossBreakdown()
        try collectLosses(into: &total)
        return total
    }

    /// Queues one optimiser step on a batch; its loss terms wait for ``collectLosses(into:)``. On the
    /// CPU the step runs here and now; on the GPU it is queued there and this returns without
    /// waiting for it (the batch made on the device when it holds the data set), so the host
    /// runs ahead and the loss is read back once per progress update instead of once per step.
    public func enqueueStep(_ batch: Batch) throws {
        if let device {
            guard let counterNoise else { preconditionFailure("useDevice checks it") }
            pendingLosses += try device.enqueueStep(
                batch, noiseSeed: counterNoise.seed, stream: UInt64(step), objective: objective, klWeight: currentKLWeight, optimizer: optimizer,
                clipNorm: clipNorm)
            hostIsStale = true
            step += 1
            return
        }
        pendingLosses.append(try trainStep(batch.images, condition: batch.condition))
    }

    /// Adds the loss terms (before each update) of the steps queued since the last call to
    /// `total`, step by step in order; on the GPU one read-back that waits for them. Throws
    /// ``NonFiniteLossError`` for the first step whose loss was not finite. (Added in place: no
    /// array is handed out, so a CPU step allocates nothing here.)
    public func collectLosses(into total: inout LossBreakdown) throws {
        if let device { pendingLosses += try device.collectLosses() }
        defer { pendingLosses.removeAll(keepingCapacity: true) }
        for loss in pendingLosses { total += loss }
    }

    /// One optimiser step on `batch` (with its one-hot labels for a conditional model); returns
    /// the batch's loss terms (before the update).
    public func trainStep(_ global: Tensor, condition globalCondition: Tensor? = nil) throws -> LossBreakdown {
        if device != nil {
            return try trainStep(Batch(images: global, condition: globalCondition))
        }
        let samples = objective.usesMonteCarlo ? objective.importanceSamples : 1
        let d = model.latentDimension
        let globalNoise = Tensor.reusing(noise, rows: global.rows * samples, columns: d)
        noise = globalNoise
        fillNoise(globalNoise, stream: UInt64(step))
        // A second stochastic layer draws its ε₂ after ε₁ (so one-layer models keep their stream).
        let d2 = model.config.upperLatentDimension
        var globalUpperNoise: Tensor?
        if d2 > 0 {
            let t = Tensor.reusing(upperNoise, rows: global.rows * samples, columns: d2)
            upperNoise = t
            fillNoise(t, stream: UInt64(step) | 1 << 63)
            globalUpperNoise = t
        }
        let scale = 1 / Float(global.rows)
        // This rank's rows of the global batch (all of them for a process alone), as views.
        let mine = communicator.map { Parallel.slice($0.rank, of: $0.size, count: global.rows) } ?? 0..<global.rows
        let batch = communicator == nil ? global : Tensor.view(global, rows: mine, reusing: &localBatch)
        let condition = communicator == nil ? globalCondition : globalCondition.map { Tensor.view($0, rows: mine, reusing: &localCondition) }
        let eps = communicator == nil
            ? globalNoise : Tensor.view(globalNoise, rows: (mine.lowerBound * samples)..<(mine.upperBound * samples), reusing: &localNoise)
        func labels(_ w: Int) -> Tensor? { parallel.conditionRows(w, of: condition, range: parallel.rows(w, of: batch.rows)) }
        let weight = currentKLWeight
        bucketsStarted = 0
        var loss = LossBreakdown()
        if let globalUpperNoise {
            // This rank's ε₂ rows, as `eps` holds its ε₁ rows (the same rows of the same global batch).
            let eps2 = communicator == nil
                ? globalUpperNoise : Tensor.view(globalUpperNoise, rows: (mine.lowerBound * samples)..<(mine.upperBound * samples), reusing: &localUpperNoise)
            let analytic = samples == 1 && objective.kl == .analytic
            parallel.run { w, worker in
                let rows = parallel.rows(w, of: batch.rows)
                let noiseRows = (rows.lowerBound * samples)..<(rows.upperBound * samples)
                workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.twoLayerObjective(
                    parallel.input(w, of: batch), noise: parallel.noise(w, of: eps, rows: noiseRows), upperNoise: parallel.upperNoise(w, of: eps2, rows: noiseRows),
                    samples: samples, computeGradients: true, klWeight: weight, analyticUpperKL: analytic, gradientScale: scale)
            }
            for l in workerLosses { loss += l }
        } else if objective.usesMonteCarlo {
            parallel.run { w, worker in
                let rows = parallel.rows(w, of: batch.rows)
                workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.monteCarloObjective(
                    parallel.input(w, of: batch), condition: labels(w), noise: parallel.noise(w, of: eps, rows: (rows.lowerBound * samples)..<(rows.upperBound * samples)),
                    samples: samples, computeGradients: true, klWeight: weight, gradientScale: scale)
            }
            for l in workerLosses { loss += l }
        } else if objective.freeBits > 0 {
            loss = freeBitsStep(batch, globalRows: global.rows, labels: labels, noise: eps, klWeight: weight, scale: scale)
        } else {
            parallel.run { w, worker in
                let rows = parallel.rows(w, of: batch.rows)
                workerLosses[w] = rows.isEmpty ? LossBreakdown() : worker.negativeELBO(
                    parallel.input(w, of: batch), condition: labels(w), noise: parallel.noise(w, of: eps),
                    computeGradients: true, klWeight: weight, gradientScale: scale)
            }
            for l in workerLosses { loss += l }
        }
        if !buckets.isEmpty, let flatGradient {
            // The buckets the backward pass did not start (all of them on a rank without rows,
            // whose gradient is zero), in order, before any other collective call.
            let start = monotonicSeconds()
            if parallel.activeWorkers(for: batch.rows) == 0 { flatGradient.fill(0) }
            startBuckets(downTo: 0)
            communicationSeconds += monotonicSeconds() - start
        }
        if let communicator { loss = communicator.sum(loss) }
        guard loss.reconstruction.isFinite, loss.kl.isFinite else {
            communicator?.waitForSums()
            throw NonFiniteLossError(step: step + 1)
        }
        let (updateStart, communicationBefore) = (monotonicSeconds(), communicationSeconds)
        applyUpdate(activeWorkers: parallel.activeWorkers(for: batch.rows))
        updateSeconds += monotonicSeconds() - updateStart - (communicationSeconds - communicationBefore)
        step += 1
        return loss
    }

    /// ε from the counter-based stream `stream` when set, else the next numbers of `rng`.
    private func fillNoise(_ t: Tensor, stream: UInt64) {
        if let counterNoise {
            counterNoise.normals(stream: stream, first: 0, into: t.buffer)
        } else {
            rng.fillNormal(t)
        }
    }

    /// Free bits: the batch-mean KL of each dimension decides whether its KL gradient counts, so
    /// the workers first encode and sum their KL per dimension, then finish the step.
    private func freeBitsStep(
        _ batch: Tensor, globalRows: Int, labels: (Int) -> Tensor?, noise eps: Tensor, klWeight weight: Float, scale: Float
    ) -> LossBreakdown {
        let d = model.latentDimension
        for i in klSums.indices { klSums[i] = 0 }
        parallel.run { w, worker in
            guard !parallel.rows(w, of: batch.rows).isEmpty else { return }
            klSumsPerDimension(worker.encode(parallel.input(w, of: batch), condition: labels(w)), into: klSums.baseAddress! + w * d)
        }
        let lambda = Double(objective.freeBits)
        // The batch's totals in worker 0's row (then summed across ranks).
        for w in 1..<max(parallel.count, 1) { for j in 0..<d { klSums[j] += klSums[w * d + j] } }
        communicator?.sum(UnsafeMutableBufferPointer(rebasing: klSums[0..<d]))
        var flooredKL = 0.0
        for j in 0..<d {
            let mean = klSums[j] / Double(globalRows)
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
    /// is completed first, since the global norm needs all of it. Under several ranks the sum
    /// goes on across them onto this rank's shard, the workers update that shard, and the ranks
    /// gather each other's shards of the weights.
    private func applyUpdate(activeWorkers: Int) {
        let params = workerParameters[0]
        let others = workerParameters.prefix(activeWorkers).dropFirst()
        let fuse = others.count <= 1 && clipNorm == nil && communicator == nil
        if !fuse {
            // (With buckets, the one worker's gradient is already being summed across ranks.)
            if buckets.isEmpty { chunked(wholeParameters) { k, range in
                let g = params[k].gradient.data
                if activeWorkers == 0 {
                    for i in range { g[i] = 0 }  // a rank without rows in this batch adds nothing
                    return
                }
                for other in others {
                    let h = other[k].gradient.data
                    for i in range { g[i] += h[i] }
                }
            } }
            if let sharding {
                let start = monotonicSeconds()
                sharding.sumGradients()
                communicationSeconds += monotonicSeconds() - start
                if let clipNorm { sharding.clip(maxNorm: clipNorm) }
            } else if let communicator, let flatGradient {
                let start = monotonicSeconds()
                if buckets.isEmpty { communicator.sum(flatGradient.buffer) } else { communicator.waitForSums() }
                communicationSeconds += monotonicSeconds() - start
                if let clipNorm { clipGradientNorm(params, maxNorm: clipNorm) }
            } else if let clipNorm {
                clipGradientNorm(params, maxNorm: clipNorm)
            }
        }
        optimizer.beginStep()
        chunked(updatePieces) { k, range in
            let extra = fuse ? others.first.map { UnsafePointer($0[k].gradient.data) } : nil
            optimizer.update(parameterAt: k, range: range, addingGradient: extra)
        }
        if let sharding {
            let start = monotonicSeconds()
            sharding.gatherValues()
            communicationSeconds += monotonicSeconds() - start
            hostIsStale = true  // this rank's shard of the optimiser's state only
        }
    }

    /// `body(k, range)` over every element of `pieces` (parameter k's elements `range`), the
    /// workers taking disjoint slices of each piece, and each worker's GEMM threads (a split with
    /// several per worker) disjoint slices of its slice (`BLAS.onGEMMThreads`), in chunks of
    /// `chunk` elements: every core of the split takes a share, its boundaries 16 floats
    /// (a cache line) apart. Elementwise, so the numbers do not depend on the split.
    private func chunked(_ pieces: [(parameter: Int, range: Range<Int>)], _ body: (Int, Range<Int>) -> Void) {
        parallel.run { w, _ in
            BLAS.onGEMMThreads { t, threads in
                for (k, piece) in pieces {
                    // Boundaries 16 floats apart from the piece's start: on whole cache lines, so no line
                    // written by two threads, where the piece starts on one (each parameter's own tensor and
                    // the optimiser's state do; in the packed buffers of several ranks a parameter need not).
                    let slice = Parallel.slice(w, of: parallel.count, count: piece.count, multipleOf: 16)
                    let share = Parallel.slice(t, of: threads, count: slice.count, multipleOf: 16)
                    var start = piece.lowerBound + slice.lowerBound + share.lowerBound
                    let end = piece.lowerBound + slice.lowerBound + share.upperBound
                    while start < end {
                        let range = start..<min(start + chunk, end)
                        body(k, range)
                        start = range.upperBound
                    }
                }
            }
        }
    }

    /// Trains on every batch of `batches` once; returns the epoch's loss terms (on the GPU read
    /// back once, at the end).
    public func trainEpoch<S: Sequence>(_ batches: S, stepsInEpoch: Int) throws -> LossBreakdown where S.Element == Batch {
        var index = 0
        let start = epochsDone.rounded(.down)
        for batch in batches {
            epochsDone = start + Double(index) / Double(max(stepsInEpoch, 1))
            try enqueueStep(batch)
            index += 1
        }
        epochsDone = start + 1
        var total = LossBreakdown()
        try collectLosses(into: &total)
        return total
    }
}

extension VariationalAutoencoder {
    /// −ELBO over all `batches`, image i's ε seeded by (`seed`, `firstIndex` + i) (see
    /// ``negativeELBO(_:condition:seed:firstIndex:)``), so the same model and data always give
    /// the same figure, however they are batched or shared out.
    public func evaluate<S: Sequence>(_ batches: S, seed: UInt64 = 0, firstIndex: Int = 0) -> LossBreakdown where S.Element == Batch {
        var total = LossBreakdown()
        var index = firstIndex
        for batch in batches {
            total += negativeELBO(batch.images, condition: batch.condition, seed: seed, firstIndex: index)
            index += batch.count
        }
        return total
    }
}

extension Communicator {
    /// `loss` summed over every rank (one small in-place sum; no allocation).
    public func sum(_ loss: LossBreakdown) -> LossBreakdown {
        guard size > 1 else { return loss }
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: 4) { sums in
            (sums[0], sums[1], sums[2], sums[3]) = (loss.reconstruction, loss.kl, loss.objective, Double(loss.images))
            sum(sums)
            return LossBreakdown(reconstruction: sums[0], kl: sums[1], objective: sums[2], images: Int(sums[3]))
        }
    }
}
