#if canImport(Glibc)
import Glibc
#endif
import Datasets
import Files
import Foundation
import Imaging
import NN
import SafeTensors
import Tensor
import VAE

/// A problem that ends a run (the message says what was kept).
public struct TrainingRunError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One training run in one run folder: the model, its data, the optimiser and where training
/// is. ``train(observer:stop:)`` runs the epochs; each epoch is evaluated on the validation and
/// test sets, recorded in `metrics.csv`, and saved (`model.safetensors`, `best.safetensors` when
/// the validation −ELBO improves, and a training checkpoint), so that a run stopped at any
/// moment continues exactly with ``init(resuming:parallelism:communicator:device:sharding:overlap:)``. The end of a run draws
/// `samples.png` and `reconstructions.png`.
///
///     let data = try training.loadData()
///     let model = ModelConfig(inputShape: data.inputShape, latentDimension: 20)
///     let run = try TrainingRun(creating: RunFolder(path: "runs/a"), config: RunConfig(model: model, training: training), data: data)
///     let outcome = try run.train()
public final class TrainingRun {
    /// The run folder (while a replacing run is being set up, the folder beside it where it is built).
    public private(set) var folder: RunFolder
    public let config: RunConfig
    public let data: DataSplits
    /// This rank's share of the test and validation sets (evaluation is split across ranks).
    private let testShard: DatasetShard
    private let validationShard: DatasetShard?
    public let model: VariationalAutoencoder
    public let optimizer: Optimizer
    public let trainer: Trainer
    /// Where training is (after the last step taken).
    public private(set) var state: TrainingState
    /// Whether this run continues one from its checkpoint.
    public let isResumed: Bool
    /// Things the caller should tell the user (e.g. a resume with another core count).
    public private(set) var warnings: [String] = []
    let loader: BatchLoader
    /// The global step up to which the epoch's loss so far (`state.partialLoss`) counts.
    private var lossStep = 0
    private var metrics: MetricsFile
    private let workers: Int
    /// How this process splits the work across its cores.
    public let parallelism: Parallelism
    /// Where the steps are computed (the host evaluates, writes checkpoints and draws pictures).
    public private(set) var device: ComputeDevice = .cpu
    /// The GPU in words when training on one ("cuda:0: NVIDIA H200, …").
    public private(set) var deviceSummary: String?
    /// This process's lock on the folder: one writer per run, for as long as this object lives.
    private var lock: FileLock?
    /// The processes of the job (`mpirun -np N`): each trains on its slice of every batch;
    /// rank 0 alone writes the run folder.
    public let communicator: Communicator
    /// Whether this process writes the run folder (rank 0 of the job).
    public var isWriter: Bool { communicator.rank == 0 }

    /// Starts a new run in `folder`, which must be empty or absent unless `replacing`; `data`
    /// defaults to the configuration's. Before it returns, the folder holds the run's config,
    /// status and first checkpoint (so an unwritable or full disk fails now, not after an
    /// epoch). Replacing a run builds the new one in a folder beside it and swaps it in once
    /// that first checkpoint is written: until then the old run stays whole.
    public convenience init(
        creating folder: RunFolder, config: RunConfig, data: DataSplits? = nil, parallelism: Parallelism = .allCores, replacing: Bool = false,
        communicator: Communicator = SingleProcess(), device: ComputeDevice = .cpu, sharding: ShardedUpdate.Policy = .auto,
        overlap: GradientBuckets.Policy = .auto
    ) throws {
        try config.validate()
        let target = RunFolder(path: try Files.resolvingLinks(folder.path))
        if communicator.rank == 0 { try Self.checkCanCreate(target, replacing: replacing) }
        let data = try data ?? config.training.loadData()
        var config = config
        config.training.makePathsAbsolute()  // so that --resume works from any directory
        if config.training.dataset == TrainingConfig.userData && config.training.userClassNames == nil {
            config.training.userClassNames = data.classNames
        }
        if config.runID == nil { config.runID = newRunID() }
        let replace = communicator.rank == 0 && replacing && !(target.occupants ?? []).isEmpty
        let staging = replace ? target.sibling(".new-\(getpid())") : target
        try self.init(
            folder: staging, config: config, data: data, parallelism: parallelism, checkpoint: nil, communicator: communicator, device: device,
            sharding: sharding, overlap: overlap)
        guard isWriter else { return }

        let oldLock = replace ? try Self.lock(target) : nil
        if replace { Self.removeAbandonedStagingFolders(of: target) }
        let existed = Files.exists(staging.path)
        try Files.createDirectory(staging.path)
        lock = try Self.lock(staging)
        if let occupants = staging.occupants, !occupants.isEmpty, !replace {
            throw TrainingRunError("\(target.path) is not empty (it holds \(occupants.prefix(3).joined(separator: ", "))); another process wrote into it")
        }
        do {
            try staging.writeConfig(config)
            try checkFreeSpace()
            try writeStatus(.running)
            try saveCheckpoint(nil)
        } catch {
            // A run that could not start leaves nothing behind: the folder stays as it was.
            if existed {
                for path in [staging.configPath, staging.statusPath, staging.checkpointPath, staging.lockPath] { Files.removeTree(path) }
            } else {
                Files.removeTree(staging.path)
            }
            throw error
        }
        if replace {
            try Files.exchange(staging.path, target.path)
            oldLock?.release()
            Files.removeTree(staging.path)  // the old run, now at the staging name
            self.folder = target
            metrics = MetricsFile(path: target.metricsPath, latentDimension: config.model.allLatentDimensions)
        }
    }

    /// Continues the run in `folder` from its training checkpoint (its `config.json` decides
    /// everything but the cores). `parallelism` nil: the cores the run recorded, so that it
    /// continues bit for bit; another split continues it too, with a warning that its numbers
    /// will differ by rounding. Refused while another process trains the run.
    public convenience init(
        resuming folder: RunFolder, parallelism: Parallelism? = nil, communicator: Communicator = SingleProcess(), device: ComputeDevice = .cpu,
        sharding: ShardedUpdate.Policy = .auto, overlap: GradientBuckets.Policy = .auto
    ) throws {
        guard Files.isDirectory(folder.path) else {
            throw FileError(path: folder.path, reason: "no such run folder (create one with `vae train --out \(folder.path)`)")
        }
        let lock = communicator.rank == 0 ? try Self.lock(folder) : nil
        let config = try folder.readConfig()
        guard Files.exists(folder.checkpointPath) else {
            throw TrainingRunError("\(folder.checkpointPath): no training checkpoint to resume from")
        }
        let checkpoint = try TrainingCheckpoint.open(folder.checkpointPath, model: config.model, runID: config.runID)
        let parallelism = parallelism ?? TrainingCheckpoint.recordedParallelism(checkpoint) ?? .allCores
        try config.training.checkPathsExist(configPath: folder.configPath)
        try self.init(
            folder: folder, config: config, data: try config.training.loadData(), parallelism: parallelism, checkpoint: checkpoint,
            communicator: communicator, device: device, sharding: sharding, overlap: overlap)
        self.lock = lock
    }

    /// Folders `.NAME.new-PID` beside `target` that no live process holds: what a replacing run
    /// killed before its swap left behind.
    static func removeAbandonedStagingFolders(of target: RunFolder) {
        let probe = target.sibling(".new-")
        guard let slash = probe.path.lastIndex(of: "/") else { return }
        let parent = String(probe.path[..<slash]), prefix = String(probe.path[probe.path.index(after: slash)...])
        for name in Files.contents(ofDirectory: parent.isEmpty ? "/" : parent) ?? [] where name.hasPrefix(prefix) {
            let folder = RunFolder(path: "\(parent)/\(name)")
            if folder.writer == nil { Files.removeTree(folder.path) }
        }
    }

    /// Takes the folder's writer lock, or says who has it.
    static func lock(_ folder: RunFolder) throws -> FileLock {
        do {
            return try FileLock(folder.lockPath, holder: lockHolderDescription())
        } catch let error as FileLockError where error.holder != nil {
            throw TrainingRunError("\(folder.path) is being trained by \(error.holder!); a run has one writer at a time (eval, sample and the other commands can read it meanwhile)")
        }
    }

    private init(
        folder: RunFolder, config: RunConfig, data: DataSplits, parallelism: Parallelism, checkpoint: SafeTensorsArchive?,
        communicator: Communicator, device: ComputeDevice = .cpu, sharding: ShardedUpdate.Policy = .auto,
        overlap: GradientBuckets.Policy = .auto
    ) throws {
        self.communicator = communicator
        let training = config.training, modelConfig = config.model
        try Self.check(data, against: modelConfig)
        self.folder = folder
        self.config = config
        self.data = data
        testShard = DatasetShard(data.test, communicator: communicator)
        validationShard = data.validation.map { DatasetShard($0, communicator: communicator) }
        isResumed = checkpoint != nil
        workers = parallelism.apply()
        self.parallelism = parallelism
        let seeds = RunSeeds(training.seed)
        var initRNG = RandomGenerator(seed: seeds.initialization)
        model = VariationalAutoencoder(config: modelConfig, rng: &initRNG)
        // The host's products in what this CPU runs (a GPU runs bf16 itself: no warning then).
        let precision = BF16.resolve(training.matrixPrecision)
        model.precision = precision.precision  // before the trainer makes the workers' replicas
        if let message = precision.message, device == .cpu { warnings.append(message) }
        if checkpoint == nil && modelConfig.outputBiasFromData { Self.setOutputBias(of: model, from: data.train) }
        optimizer = training.optimizerConfig.make(parameters: model.parameters, learningRate: training.learningRate)
        trainer = Trainer(
            model: model, optimizer: optimizer, rng: RandomGenerator(seed: seeds.noise), workers: workers,
            objective: training.trainingObjective, clipNorm: training.clipNorm, communicator: communicator, sharding: sharding,
            overlap: overlap)
        if training.noiseGenerator == .counter { trainer.counterNoise = CounterNoise(seed: seeds.noise) }
        loader = BatchLoader(
            dataset: data.train, batchSize: training.batchSize, shuffle: true, binarize: training.binarize,
            seed: seeds.data, conditionClasses: modelConfig.conditionClasses)
        if training.binarizationGenerator == .counter { loader.counterBinarization = CounterNoise(seed: seeds.data) }
        loader.rowPool = trainer.parallel.pool  // the batch workers make each batch's rows, a slice each, between steps
        state = TrainingState(
            epoch: 0, batchIndex: 0, step: 0, noiseRNG: trainer.rng.state, dataRNG: loader.rng.state,
            order: loader.currentOrder, partialLoss: LossBreakdown(), elapsed: 0, workers: workers,
            gemmThreads: parallelism.gemmThreads, ranks: communicator.size, device: device.description)
        metrics = MetricsFile(path: folder.metricsPath, latentDimension: modelConfig.allLatentDimensions)
        if let checkpoint {
            state = try TrainingCheckpoint.load(checkpoint, path: folder.checkpointPath, into: model, optimizer: optimizer, examples: data.train.count)
            trainer.rng = RandomGenerator(state: state.noiseRNG)!
            loader.rng = RandomGenerator(state: state.dataRNG)!
            loader.currentOrder = state.order
            trainer.step = state.step
            metrics = try MetricsFile(resuming: folder.metricsPath, latentDimension: modelConfig.allLatentDimensions, completedEpochs: state.epoch)
            if state.ranks != communicator.size {
                warnings.append("the run was trained by \(state.ranks) process\(state.ranks == 1 ? "" : "es") and this resume uses \(communicator.size): it continues exactly, but its numbers will differ from an uninterrupted run by rounding")
            }
            if state.device != device.description {
                let (before, now) = (state.device == "cpu" ? "the CPU" : state.device, device == .cpu ? "the CPU" : device.description)
                warnings.append("the run was trained on \(before) and this resume uses \(now): it continues exactly, but its numbers will differ from an uninterrupted run by rounding (resume with --device \(state.device) for identical numbers)")
                state.device = device.description
            }
            if state.workers != workers || state.gemmThreads != parallelism.gemmThreads {
                let recorded = Parallelism(workers: state.workers, gemmThreads: state.gemmThreads)
                warnings.append("the run used \(recorded.split) and this resume uses \(parallelism.split): the result will differ from an uninterrupted run by rounding (resume without --threads/--parallel for identical numbers)")
                state.workers = workers
                state.gemmThreads = parallelism.gemmThreads
            }
        }
        self.device = device
        if device != .cpu {
            // Last: the weights and the optimiser's state the GPU starts from are the host's,
            // the checkpoint's when resuming.
            let (step, summary) = try device.makeStep(for: model, precision: training.matrixPrecision, environment: ProcessInfo.processInfo.environment)
            try trainer.useDevice(step, data: data.train)  // the GPU keeps the training set
            loader.fillsImages = false  // and makes each batch there
            deviceSummary = summary
        }
    }

    /// A new run never writes into a folder that holds anything, unless it replaces the run
    /// there, and never into a run another process trains: throws the message that says so (call
    /// it before loading data to fail early).
    public static func checkCanCreate(_ folder: RunFolder, replacing: Bool) throws {
        if let writer = folder.writer {
            throw TrainingRunError("\(folder.path) is being trained by \(writer); a run has one writer at a time")
        }
        guard let entries = folder.occupants, !entries.isEmpty else {
            if Files.exists(folder.path) && !Files.isDirectory(folder.path) { throw TrainingRunError("\(folder.path) exists and is not a folder") }
            return
        }
        guard replacing else {
            throw TrainingRunError("\(folder.path) is not empty (it holds \(entries.prefix(3).joined(separator: ", "))\(entries.count > 3 ? ", …" : "")); choose another --out, continue it with --resume \(folder.path), or pass --force to replace its run")
        }
    }

    /// Refuses to start when the folder's file system cannot hold what the run writes: the
    /// checkpoint, the model and the best weights, each written beside its old copy.
    func checkFreeSpace() throws {
        let values = Double(model.parameterCount)
        let checkpoint = values * 4 * Double(1 + optimizer.stateSlots.count) + Double(data.train.count) * 8
        let needed = 2 * checkpoint + 2 * values * 4 * (data.validation == nil ? 1 : 2) + Double(1 << 20)
        if let free = Files.freeSpace(folder.path), Double(free) < needed {
            throw TrainingRunError("\(folder.path): \(free >> 20) MB free on its file system, and the run needs about \(Int(needed) >> 20) MB (checkpoint, model and best weights, each written beside its old copy)")
        }
    }

    private func writeStatus(_ state: RunStatus.State, message: String? = nil) throws {
        guard isWriter else { return }
        let previous = folder.status()
        var status = RunStatus(state: state, epoch: self.state.epoch, epochs: config.training.epochs, message: message)
        status.command = previous?.command ?? (isResumed ? nil : RunStatus.currentCommand)
        status.lastCommand = RunStatus.currentCommand
        status.machine = RunStatus.currentMachine
        status.started = previous?.started ?? ISO8601DateFormatter().string(from: Date())
        try folder.writeStatus(status)
    }

    /// The last decoder bias b_i = logit(clip(mean of pixel i over `train`, 0.001, 0.999)), so a
    /// new Bernoulli model starts out predicting the average image (Burda et al.'s code).
    static func setOutputBias(of model: VariationalAutoencoder, from train: ImageDataset) {
        guard let last = model.decoder.layers.last(where: { $0 is Linear }) as? Linear, train.count > 0 else { return }
        let n = train.exampleSize
        var sums = [Double](repeating: 0, count: n)
        var row = [Float](repeating: 0, count: n)
        for i in 0..<train.count {
            row.withUnsafeMutableBufferPointer { train.copyExample(i, to: $0.baseAddress!) }
            for j in 0..<n { sums[j] += Double(row[j]) }
        }
        for j in 0..<min(n, last.bias.value.count) {
            let mean = min(max(sums[j] / Double(train.count), 0.001), 0.999)
            last.bias.value[j] = Float(Foundation.log(mean / (1 - mean)))
        }
    }

    /// The data must fit the model: the images' shape, and labels in range for a conditional model.
    static func check(_ data: DataSplits, against model: ModelConfig) throws {
        if model.isConditional {
            guard data.train.labels != nil && data.test.labels != nil else { throw DataError("--conditional needs labels for the training and the test images") }
            guard model.conditionClasses >= 2 else { throw DataError("--conditional needs labels with at least two classes") }
        }
        try model.check(data.train, "training")
        if let validation = data.validation { try model.check(validation, "validation") }
        try model.check(data.test, "test")
    }

    /// Three lines naming the model, the data, the optimiser and schedule, and the objective.
    public var summary: [String] {
        let t = config.training
        return [
            "\(config.model.summary), \(config.model.likelihood.rawValue) likelihood, \(model.parameterCount) parameters; \(t.dataset)\(t.binarize ? " (binarised)" : ""): \(data.train.count) train\(data.validation.map { " / \($0.count) validation" } ?? "") / \(data.test.count) test images",
            "batch \(t.batchSize), \(t.optimizerConfig.summary) lr \(t.learningRate) (\(t.learningRateSchedule.summary)), seed \(t.seed) → \(folder.path)/",
            "objective: \(t.trainingObjective.summary)",
        ]
    }

    /// Batches per epoch.
    public var stepsPerEpoch: Int { loader.batchesPerEpoch }

    /// The learning rate of global step `step` (from 0).
    public func learningRate(atStep step: Int) -> Float {
        let training = config.training
        let steps = stepsPerEpoch
        return Float(training.learningRateSchedule.rate(
            base: Double(training.learningRate), epoch: step / steps, step: step, totalSteps: steps * training.epochs,
            reductions: state.selection.plateauReductions))
    }

    /// Whether the checkpoint says training is over (all epochs, or early stopping).
    public var isTrainingDone: Bool {
        if state.epoch >= config.training.epochs { return true }
        if let patience = config.training.earlyStopping, state.selection.epochsWithoutImprovement >= patience { return true }
        return false
    }

    /// Trains until the last epoch, early stopping or `stop`, telling `observer` as it goes. A
    /// run whose training is already over writes whatever outputs are missing (a run killed
    /// while drawing its pictures) and returns `.alreadyFinished`. An error leaves the status
    /// `failed` and the last checkpoint intact.
    public func train(observer: TrainingObserver? = nil, stop: StopRequest = StopRequest()) throws -> TrainingOutcome {
        do {
            let outcome = try trainEpochs(observer: observer, stop: stop)
            observer?.runEnded(self, outcome)
            return outcome
        } catch {
            try? writeStatus(.failed, message: "\(error)")
            throw error
        }
    }

    private func trainEpochs(observer: TrainingObserver?, stop: StopRequest) throws -> TrainingOutcome {
        let training = config.training
        guard !isTrainingDone else { return .alreadyFinished(epochs: state.epoch, completed: try completeOutputs()) }
        try writeStatus(.running)
        synchronize()
        observer?.runStarted(self, at: state)
        let steps = stepsPerEpoch
        let objective = training.trainingObjective
        var outcome = TrainingOutcome.finished(epochs: training.epochs)
        while state.epoch < training.epochs {
            // A stop that came before the first step, or during the last epoch's evaluation.
            if let signal = agreedStop(stop) {
                try saveCheckpoint(observer)
                try writeStatus(.stopped)
                return .interrupted(epoch: state.epoch + 1, step: state.batchIndex, stepsInEpoch: steps, signal: signal)
            }
            let epoch = state.epoch
            let startTime = monotonicSeconds() - state.elapsed
            let batches = state.batchIndex > 0 ? loader.resumeEpoch(atBatch: state.batchIndex, number: epoch) : loader.epoch(number: epoch)
            var imagesSeen = state.partialLoss.images
            var lastRead = monotonicSeconds()
            for batch in batches {
                let rate = learningRate(atStep: trainer.step)
                optimizer.learningRate = rate
                trainer.epochsDone = Double(epoch) + Double(state.batchIndex) / Double(steps)
                try reportingNonFiniteLoss { try trainer.enqueueStep(batch) }
                imagesSeen += batch.count
                state.batchIndex += 1
                state.step = trainer.step
                // The CPU's losses are at hand; the GPU's are read back (a wait) at the epoch's
                // first step and then every `lossReadInterval` seconds.
                let now = monotonicSeconds()
                if trainer.device == nil || state.partialLoss.images == 0 || now - lastRead >= Self.lossReadInterval {
                    try collectLosses()
                    lastRead = now
                }
                state.elapsed = now - startTime
                observer?.stepDone(self, StepReport(
                    epoch: epoch + 1, step: state.batchIndex, stepsInEpoch: steps, globalStep: trainer.step, imagesSeen: imagesSeen,
                    runningLoss: state.partialLoss.meanNegativeELBO, lossStep: lossStep, learningRate: rate, elapsed: state.elapsed))
                if let signal = agreedStop(stop) {
                    try saveCheckpoint(observer)
                    try writeStatus(.stopped)
                    return .interrupted(epoch: epoch + 1, step: state.batchIndex, stepsInEpoch: steps, signal: signal)
                }
                if training.checkpointInterval > 0 && trainer.step % training.checkpointInterval == 0 && state.batchIndex < steps {
                    try saveCheckpoint(observer)
                }
            }
            _ = try finishEpoch(seconds: monotonicSeconds() - startTime, klWeight: Double(objective.klWeight(afterEpochs: Double(epoch))), observer)
            try writeStatus(.running)
            if let patience = training.earlyStopping, state.selection.epochsWithoutImprovement >= patience {
                outcome = .stoppedEarly(epoch: epoch + 1, bestEpoch: state.selection.bestEpoch)
                break
            }
        }
        try writePictures()
        try writeStatus(.finished)
        return outcome
    }

    /// For a run whose training is over: writes the final weights and the pictures if they are
    /// missing (from the checkpoint's weights, which are the final ones) and marks the run
    /// finished; returns the files written.
    private func completeOutputs() throws -> [String] {
        guard isWriter else { return [] }
        var written: [String] = []
        if !Files.exists(folder.modelPath) {
            try Checkpoint.save(model, to: folder.modelPath, metadata: ["epoch": "\(state.epoch)"])
            written.append(folder.modelPath)
        }
        if !Files.exists(folder.reconstructionsPath) || !Files.exists(folder.samplesPath) {
            try writePictures()
            written += [folder.reconstructionsPath, folder.samplesPath]
        }
        try writeStatus(.finished)
        return written
    }

    /// Makes every rank start from rank 0's weights and optimiser state (they are equal already
    /// when all ranks built the run from the same seed or checkpoint; this makes sure).
    private func synchronize() {
        guard communicator.size > 1 else { return }
        let tensors = model.parameters.map(\.value) + optimizer.stateSlots.flatMap(\.tensors)
        for t in tensors { communicator.broadcast(UnsafeMutableRawBufferPointer(t.buffer), root: 0) }
    }

    /// A stop requested on any rank stops every rank after the same step (one small sum).
    private func agreedStop(_ stop: StopRequest) -> Int32? {
        guard communicator.size > 1 else { return stop.requested }
        var flag = Double(stop.requested ?? 0)
        withUnsafeMutablePointer(to: &flag) { communicator.sum(UnsafeMutableBufferPointer(start: $0, count: 1)) }
        return flag == 0 ? nil : stop.requested ?? SIGINT
    }

    /// Seconds between two read-backs of the GPU's losses during an epoch (progress updates).
    static let lossReadInterval = 0.25

    /// Adds the losses of the steps queued since the last call to the epoch's (on the GPU, one
    /// read-back); a non-finite one ends the run with the message that names its step.
    private func collectLosses() throws {
        try reportingNonFiniteLoss {
            try trainer.collectLosses(into: &state.partialLoss)
        }
        lossStep = trainer.step
    }

    /// Runs `body`, turning a `NonFiniteLossError` into the run's message: which epoch and
    /// step, what to try, and that the last checkpoint is intact.
    private func reportingNonFiniteLoss(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as NonFiniteLossError {
            // The failed step's place in this epoch: the epoch's steps so far end at trainer.step.
            let stepInEpoch = state.batchIndex - (trainer.step - error.step)
            let saved = Files.exists(folder.checkpointPath) ? "the last checkpoint in \(folder.path)/ is unchanged" : "nothing had been saved yet"
            throw TrainingRunError("epoch \(state.epoch + 1), step \(stepInEpoch): the loss became non-finite; \(NonFiniteLossError.hint) (\(saved))")
        }
    }

    /// Evaluates the epoch just trained, records it, saves the weights and the checkpoint.
    private func finishEpoch(seconds: Double, klWeight: Double, _ observer: TrainingObserver?) throws -> EpochSummary {
        try collectLosses()
        try trainer.synchronizeHost()  // the latent statistics and the files read the host's weights
        let epoch = state.epoch + 1
        // The −ELBO on the GPU when training runs there (its weights are the host's now).
        let validation = try validationShard?.evaluate(model, device: trainer.device)
        let evaluatesTest = config.training.evaluatesTest(afterEpoch: epoch)
        let test = evaluatesTest ? try testShard.evaluate(model, device: trainer.device) : nil
        let schedule = config.training.learningRateSchedule
        var isBest = false
        if let validation {
            isBest = state.selection.record(
                validation: validation.meanNegativeELBO, epoch: epoch, plateauPatience: schedule.kind == .plateau ? schedule.patience : nil)
        }
        let summary = EpochSummary(
            epoch: epoch, train: state.partialLoss, validation: validation, test: test, latent: evaluatesTest ? try testShard.latentStatistics(model, device: trainer.device) : nil,
            learningRate: learningRate(atStep: state.epoch * stepsPerEpoch), klWeight: klWeight, seconds: seconds,
            imagesPerSecond: Double(state.partialLoss.images) / seconds, isBest: isBest)
        if isWriter {
            if isBest { try Checkpoint.save(model, to: folder.bestModelPath, metadata: ["epoch": "\(epoch)"]) }
            try metrics.append(summary)
            try Checkpoint.save(model, to: folder.modelPath, metadata: ["epoch": "\(epoch)"])
            if config.training.snapshotEpochs?.contains(epoch) == true {
                try Files.createDirectory(folder.path + "/snapshots")
                try Checkpoint.save(model, to: folder.snapshotPath(epoch: epoch), metadata: ["epoch": "\(epoch)"])
            }
        }
        state.epoch = epoch
        state.batchIndex = 0
        state.partialLoss = LossBreakdown()
        state.elapsed = 0
        observer?.epochDone(self, summary)
        try saveCheckpoint(observer)
        return summary
    }

    private func saveCheckpoint(_ observer: TrainingObserver?) throws {
        try collectLosses()  // the checkpoint holds the epoch's loss so far
        try trainer.synchronizeHost()  // every rank: a collective call under a sharded update
        state.step = trainer.step
        state.noiseRNG = trainer.rng.state
        state.dataRNG = loader.rng.state
        state.order = loader.currentOrder
        guard isWriter else { return }
        try TrainingCheckpoint.save(model, optimizer: optimizer, state: state, runID: config.runID, to: folder.checkpointPath)
        observer?.checkpointWritten(self, path: folder.checkpointPath, state: state)
    }

    /// `samples.png` and `reconstructions.png` of the model as it is.
    public func writePictures() throws {
        try trainer.synchronizeHost()  // before the writer check: every rank calls it
        guard isWriter else { return }
        try PNG.write(Pictures.reconstructions(model, testSet: data.test, count: 32), to: folder.reconstructionsPath)
        try PNG.write(Pictures.runSamples(model, seed: config.training.seed), to: folder.samplesPath)
    }
}
