import Datasets
import Files
import Foundation
import NN
import Tensor
import Testing
import TestSupport
@testable import Training
@testable import VAE

/// A tiny run on the 8×8 test data set: 96 training images (some held out), batch 16.
func tinyConfig(_ dir: String, epochs: Int = 4, modify: (inout TrainingConfig) -> Void = { _ in }) -> RunConfig {
    var training = TrainingConfig(dataset: .mnist, dataDirectory: dir, epochs: epochs, batchSize: 16, checkpointEvery: 1)
    modify(&training)
    return RunConfig(model: ModelConfig(inputShape: [1, 8, 8], hiddenSizes: [16], latentDimension: 2), training: training)
}

/// Records every event, and can act at a given step.
final class Recorder: TrainingObserver {
    var events: [String] = []
    var summaries: [EpochSummary] = []
    var onStep: (TrainingRun, StepReport) -> Void = { _, _ in }
    func runStarted(_ run: TrainingRun, at state: TrainingState) { events.append("start \(state.step)") }
    func stepDone(_ run: TrainingRun, _ p: StepReport) {
        events.append("step")
        onStep(run, p)
    }
    func epochDone(_ run: TrainingRun, _ e: EpochSummary) {
        events.append("epoch \(e.epoch)")
        summaries.append(e)
    }
    func checkpointWritten(_ run: TrainingRun, path: String, state: TrainingState) { events.append("checkpoint") }
    func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { events.append("end \(outcome)") }
}

/// The files a finished run folder holds, without metrics.csv's timing columns.
func finalFiles(_ folder: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: folder).sorted() {
        var data = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)"))
        if name == "metrics.csv" {
            // Drop seconds and images/s (columns 13 and 14): the only figures that depend on the clock.
            let rows = String(decoding: data, as: UTF8.self).split(separator: "\n").map { row in
                row.split(separator: ",", omittingEmptySubsequences: false).enumerated().filter { ![12, 13].contains($0.offset) }.map(\.element).joined(separator: ",")
            }
            data = Data(rows.joined(separator: "\n").utf8)
        }
        if name == "checkpoint.safetensors" || name == ".lock" { continue }  // elapsed seconds; the last writer's process id
        if name == "status.json" {  // when the run was started
            var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            object["started"] = nil
            data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        }
        if name == "config.json" {  // each new run has its own run id
            var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            object["runID"] = nil
            data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        }
        out[name] = data
    }
    return out
}

func copyFolder(_ from: String, to: String) throws {
    try? FileManager.default.removeItem(atPath: to)
    try FileManager.default.copyItem(atPath: from, toPath: to)
}

/// Stopping a run at any step (as a kill would: the folder as it was then, checkpoint and all)
/// and resuming it in the library ends with the same files as a run never interrupted, for
/// each optimiser, schedule and early stopping.
@Test(arguments: [
    ("adam, cosine with warm-up", { (t: inout TrainingConfig) in t.schedule = LearningRateSchedule(.cosine, warmupSteps: 5, minimum: 1e-4) }),
    ("sgd with momentum, plateau, early stopping", { (t: inout TrainingConfig) in
        t.optimizer = OptimizerConfig(kind: .sgd, momentum: 0.9)
        t.learningRate = 0.3
        t.validationSplit = 0.25
        t.schedule = LearningRateSchedule(.plateau, patience: 1, factor: 0.5)
        t.earlyStopping = 3
        t.epochs = 12
    }),
    ("adamw, step, clipping, validation", { (t: inout TrainingConfig) in
        t.optimizer = OptimizerConfig(kind: .adamw, weightDecay: 0.05)
        t.schedule = LearningRateSchedule(.step, milestones: [2], gamma: 0.3)
        t.clipNorm = 5
        t.validationSplit = 0.25
    }),
    // bf16 products (FP32 where the CPU lacks AVX512_BF16): resumes exactly in its precision.
    ("bf16 products, adam", { (t: inout TrainingConfig) in t.precision = .bf16 }),
    // A run made before counter-based noise (no `noise` in its config): its sequential generator's state resumes.
    ("sequential noise", { (t: inout TrainingConfig) in t.noise = nil }),
    // Dynamic binarisation by counters (new runs), and by the loader's saved generator (older runs).
    ("counter binarisation", { (t: inout TrainingConfig) in t.binarize = true }),
    ("sequential binarisation", { (t: inout TrainingConfig) in
        t.binarize = true
        t.binarization = nil
    }),
] as [(String, (inout TrainingConfig) -> Void)])
func stoppedAndResumedRunsEndIdentical(name: String, modify: (inout TrainingConfig) -> Void) throws {
    let dir = temporaryDirectory("resume-\(name.prefix(4))")
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, modify: modify)

    // The uninterrupted run, copying its folder at a few moments as a SIGKILL would leave it.
    let killSteps = [1, 6, 7, 13, 17, 20]
    let whole = RunFolder(path: dir + "/whole")
    let recorder = Recorder()
    recorder.onStep = { run, p in
        if killSteps.contains(p.globalStep) { try? copyFolder(whole.path, to: "\(dir)/killed-\(p.globalStep)") }
    }
    let outcome = try TrainingRun(creating: whole, config: config, parallelism: .batch(workers: 2)).train(observer: recorder)
    let expected = try finalFiles(whole.path)
    #expect(expected["samples.png"] != nil && expected["reconstructions.png"] != nil)
    if config.training.earlyStopping != nil {
        guard case .stoppedEarly = outcome else { Issue.record("\(name): expected early stopping, got \(outcome)"); return }
    } else {
        #expect(outcome == .finished(epochs: config.training.epochs))
    }

    for step in killSteps {
        let folder = RunFolder(path: "\(dir)/killed-\(step)")
        guard Files.exists(folder.checkpointPath) else { continue }
        let resumed = try TrainingRun(resuming: folder, parallelism: .batch(workers: 2))
        #expect(resumed.state.step <= step)
        _ = try resumed.train()
        #expect(try finalFiles(folder.path) == expected, "\(name): killed after step \(step)")
    }

    // A stop request ends the run with a checkpoint after that step; resuming finishes it.
    let stopped = RunFolder(path: dir + "/stopped")
    let stop = StopRequest()
    let asker = Recorder()
    asker.onStep = { _, p in if p.globalStep == 9 { stop.request(signal: SIGTERM) } }
    do {
        let first = try TrainingRun(creating: stopped, config: config, parallelism: .batch(workers: 2))
        let interrupted = try first.train(observer: asker, stop: stop)
        let steps = first.stepsPerEpoch
        #expect(interrupted == .interrupted(epoch: 8 / steps + 1, step: 9 - (8 / steps) * steps, stepsInEpoch: steps, signal: SIGTERM))
        #expect(asker.events.last == "end \(interrupted)" && asker.events.dropLast().last == "checkpoint")
        #expect(stopped.status()?.state == .stopped)
        // One writer: the run is locked while this process has it open.
        #expect(throws: TrainingRunError.self) { try TrainingRun(resuming: stopped) }
    }
    do {
        _ = try TrainingRun(resuming: stopped, parallelism: .batch(workers: 2)).train()
    }
    #expect(try finalFiles(stopped.path) == expected, "\(name): stopped by request")
    #expect(stopped.status()?.state == .finished)
    // A finished run has nothing left to do.
    let finished = try TrainingRun(resuming: stopped)
    let epochs = finished.state.epoch
    #expect(try finished.train() == .alreadyFinished(epochs: epochs, completed: []))
}

@Test func validationSplitSelectsTheBestEpochWithoutTheTestSet() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, epochs: 5) { $0.validationSplit = 0.25 }
    let data = try config.training.loadData()
    // 96 training images: 24 held out, disjoint from the 72 trained on; the test set is untouched.
    guard let validation = data.validation else { Issue.record("no validation set"); return }
    #expect(validation.count == 24 && data.train.count == 72 && data.test.count == 40)
    let again = try config.training.loadData()
    #expect(again.validation?.pixels == validation.pixels && again.train.labels == data.train.labels)

    let folder = RunFolder(path: dir + "/run")
    let recorder = Recorder()
    _ = try TrainingRun(creating: folder, config: config, data: data, parallelism: .batch(workers: 1)).train(observer: recorder)
    let best = recorder.summaries.min { $0.validation!.meanNegativeELBO < $1.validation!.meanNegativeELBO }!
    #expect(recorder.summaries.filter(\.isBest).last?.epoch == best.epoch)
    // best.safetensors holds that epoch's weights: its validation −ELBO is the recorded one.
    let (model, _) = try folder.loadModel(.best)
    #expect(abs(model.evaluate(validation).meanNegativeELBO - best.validation!.meanNegativeELBO) < 1e-9)
    let (last, _) = try folder.loadModel(.final)
    #expect(abs(last.evaluate(data.test).meanNegativeELBO - recorder.summaries.last!.test!.meanNegativeELBO) < 1e-9)
    // Each row of metrics.csv has the validation figures.
    let rows = try String(contentsOfFile: folder.metricsPath, encoding: .utf8).split(separator: "\n").dropFirst()
    #expect(rows.count == 5 && rows.allSatisfy { Double($0.split(separator: ",", omittingEmptySubsequences: false)[5]) != nil })
}

@Test func validationExamplesAreNotTrainedOn() {
    // Label each image by its index: the held-out labels and the trained labels never meet.
    let n = 50
    let images = ImageDataset(pixels: (0..<(n * 4)).map { UInt8($0 % 251) }, labels: Array(0..<n), shape: [1, 2, 2])
    let split = UserData.split(images, testFraction: 0.2, seed: RunSeeds(1).validationSplit)
    #expect(Set(split.train.labels!).isDisjoint(with: Set(split.test.labels!)) && split.train.count + split.test.count == n)
}

@Test func earlyStoppingEndsTheRunNormally() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    // A learning rate so small that nothing improves after the first epochs; patience 2.
    let config = tinyConfig(dir, epochs: 50) {
        $0.validationSplit = 0.25
        $0.earlyStopping = 2
        $0.optimizer = OptimizerConfig(kind: .sgd)
        $0.learningRate = 1e-9
    }
    let folder = RunFolder(path: dir + "/run")
    let recorder = Recorder()
    let outcome = try TrainingRun(creating: folder, config: config, parallelism: .batch(workers: 1)).train(observer: recorder)
    guard case let .stoppedEarly(epoch, bestEpoch) = outcome else { Issue.record("\(outcome)"); return }
    #expect(epoch < 50 && epoch - bestEpoch == 2)
    #expect(recorder.summaries.count == epoch)
    for file in ["model.safetensors", "best.safetensors", "samples.png", "reconstructions.png", "metrics.csv"] {
        #expect(Files.exists("\(folder.path)/\(file)"), "\(file)")
    }
}

@Test func observerSeesEveryStepEpochAndCheckpoint() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, epochs: 2) { $0.checkpointEvery = 4 }
    let recorder = Recorder()
    let run = try TrainingRun(creating: RunFolder(path: dir + "/run"), config: config, parallelism: .batch(workers: 1))
    _ = try run.train(observer: recorder)
    // 96 images / 16 = 6 steps per epoch; a mid-epoch checkpoint at global step 4 (epoch 1) and
    // at step 8 (epoch 2, its 2nd step), and one after each epoch, which comes after the epoch's
    // report (so that what observers write of an epoch is covered by its checkpoint).
    let one = ["step", "step", "step", "step", "checkpoint", "step", "step", "epoch 1", "checkpoint"]
    let two = ["step", "step", "checkpoint", "step", "step", "step", "step", "epoch 2", "checkpoint"]
    #expect(recorder.events == ["start 0"] + one + two + ["end finished(epochs: 2)"])
}

@Test func gradientClippingScalesTheUpdateToTheNorm() throws {
    var rng = RandomGenerator(seed: 1)
    let model = VariationalAutoencoder(config: ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [5], latentDimension: 2), rng: &rng)
    let x = Tensor(shape: [4, 1, 2, 3], values: (0..<24).map { Float($0 % 5) / 4 })
    let before = model.parameters.map { $0.value.toArray() }
    // SGD with η = 1: the update is minus the (clipped) gradient; its global norm must be 0.5.
    let trainer = Trainer(
        model: model, optimizer: SGD(parameters: model.parameters, learningRate: 1), rng: RandomGenerator(seed: 2), workers: 2, clipNorm: 0.5)
    _ = try trainer.trainStep(x)
    var squares = 0.0
    for (p, old) in zip(model.parameters, before) {
        for (a, b) in zip(p.value.toArray(), old) { squares += Double(a - b) * Double(a - b) }
    }
    #expect(abs(squares.squareRoot() - 0.5) < 1e-4)
}

@Test func optimizersSaveAndRestoreTheirState() throws {
    let rng = RandomGenerator(seed: 1)
    let config = ModelConfig(inputShape: [1, 2, 3], hiddenSizes: [5], latentDimension: 2)
    let x = Tensor(shape: [4, 1, 2, 3], values: (0..<24).map { Float($0 % 5) / 4 })
    for kind in OptimizerConfig.Kind.allCases {
        let settings = OptimizerConfig(kind: kind, momentum: kind == .sgd ? 0.9 : 0)
        func fresh() -> (VariationalAutoencoder, Optimizer, Trainer) {
            var r = RandomGenerator(seed: 3)
            let m = VariationalAutoencoder(config: config, rng: &r)
            let o = settings.make(parameters: m.parameters, learningRate: 0.01)
            return (m, o, Trainer(model: m, optimizer: o, rng: RandomGenerator(seed: 4)))
        }
        let (model, optimizer, trainer) = fresh()
        for _ in 0..<3 { _ = try trainer.trainStep(x) }
        let path = temporaryDirectory("opt-\(kind)") + "/c.safetensors"
        let state = TrainingState(epoch: 0, batchIndex: 3, step: 3, noiseRNG: trainer.rng.state, dataRNG: rng.state, order: [0, 1], partialLoss: LossBreakdown(), elapsed: 0, workers: 1)
        try TrainingCheckpoint.save(model, optimizer: optimizer, state: state, to: path)
        let (copy, copyOptimizer, copyTrainer) = fresh()
        let loaded = try TrainingCheckpoint.load(path, into: copy, optimizer: copyOptimizer, examples: 2)
        #expect(loaded == state && copyOptimizer.stepCount == 3)
        copyTrainer.rng = RandomGenerator(state: loaded.noiseRNG)!
        _ = try trainer.trainStep(x)
        _ = try copyTrainer.trainStep(x)
        #expect(model.parameters.map { $0.value.toArray() } == copy.parameters.map { $0.value.toArray() }, "\(kind)")
        #expect(optimizer.stateSlots.map(\.name) == (kind == .sgd ? ["momentum"] : ["m", "v"]))
    }
}

/// A run folder from before the validation and learning-rate columns: resuming it moves its
/// rows to the new columns by name.
@Test func resumedMetricsOfAnOlderLayoutKeepTheirValuesByName() throws {
    let path = temporaryDirectory() + "/metrics.csv"
    let old = """
        epoch,train_neg_elbo,train_reconstruction,train_kl,train_objective,test_neg_elbo,test_reconstruction,test_kl,seconds,images_per_second,kl_weight,active_units,kl_dim_1,kl_dim_2
        1,50.0,40.0,10.0,50.0,49.0,39.0,10.0,0.5,1000,1.0000,2,4.0,6.0
        2,45.0,36.0,9.0,45.0,44.0,35.0,9.0,0.5,1000,1.0000,2,4.5,4.5

        """
    try Files.writeAtomically(old, to: path)
    // Epoch 1 was completed; epoch 2 is trained again and appended.
    var resumed = try MetricsFile(resuming: path, latentDimension: 2, completedEpochs: 1)
    let summary = EpochSummary(
        epoch: 2, train: LossBreakdown(reconstruction: 30, kl: 5, images: 1), validation: nil, test: LossBreakdown(reconstruction: 29, kl: 5, images: 1),
        latent: LatentStatistics(klPerDimension: [2, 3], meanVariance: [1, 1], images: 1), learningRate: 1e-3, klWeight: 1, seconds: 1,
        imagesPerSecond: 1, isBest: false)
    try resumed.append(summary)
    let rows = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    #expect(rows[0] == MetricsFile.columns(latentDimension: 2))
    #expect(rows.count == 3)
    let one = Dictionary(uniqueKeysWithValues: zip(rows[0], rows[1]))
    #expect(one["epoch"] == "1" && one["test_neg_elbo"] == "49.0" && one["kl_dim_2"] == "6.0" && one["validation_neg_elbo"] == "" && one["learning_rate"] == "")
    #expect(rows[2][0] == "2" && rows[2].count == rows[0].count)
}

/// A bf16 run trains as well as its FP32 twin (same seed, data, ε): its test −ELBO per epoch
/// within 1% of the FP32 one, not identical to it, and config.json records the precision.
@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func bf16RunTracksItsFP32Twin() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    var curves: [[Double]] = []
    for precision in [MatrixPrecision.fp32, .bf16] {
        let config = tinyConfig(dir) { $0.precision = precision == .bf16 ? .bf16 : nil; $0.epochs = 6 }
        let folder = RunFolder(path: "\(dir)/\(precision.rawValue)")
        let run = try TrainingRun(creating: folder, config: config, parallelism: .batch(workers: 1))
        #expect(run.model.precision == precision)
        let recorder = Recorder()
        _ = try run.train(observer: recorder)
        let json = try String(contentsOfFile: folder.configPath, encoding: .utf8)
        #expect(json.contains("\"precision\"") == (precision == .bf16))
        curves.append(recorder.summaries.map { $0.test!.meanNegativeELBO })
    }
    #expect(curves[0].count == 6 && curves[1].count == 6)
    for (epoch, (fp32, bf16)) in zip(curves[0], curves[1]).enumerated() {
        #expect(abs(bf16 - fp32) <= 0.01 * abs(fp32), "epoch \(epoch + 1): bf16 \(bf16) vs FP32 \(fp32)")
    }
    #expect(curves[0] != curves[1])
}

/// `testEvery = 3` over 7 epochs: the test set is evaluated after epochs 1, 3, 6 and 7 only —
/// the other summaries have no test figures and their metrics rows leave the test, active-unit
/// and per-dimension cells empty — and the figures it does give equal an evaluation of that
/// epoch's weights (the run with every epoch evaluated trains the same weights).
@Test func testEveryEvaluatesTheTestSetAtItsEpochsOnly() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let sparse = tinyConfig(dir, epochs: 7) { $0.testEvery = 3 }
    let every = tinyConfig(dir, epochs: 7) { _ in }
    let data = try sparse.training.loadData()
    let recorders = (Recorder(), Recorder())
    _ = try TrainingRun(creating: RunFolder(path: dir + "/sparse"), config: sparse, data: data, parallelism: .batch(workers: 1)).train(observer: recorders.0)
    _ = try TrainingRun(creating: RunFolder(path: dir + "/every"), config: every, data: data, parallelism: .batch(workers: 1)).train(observer: recorders.1)
    let evaluated = recorders.0.summaries.filter { $0.test != nil }.map(\.epoch)
    #expect(evaluated == [1, 3, 6, 7])
    #expect(recorders.0.summaries.allSatisfy { ($0.latent != nil) == ($0.test != nil) })
    for (a, b) in zip(recorders.0.summaries, recorders.1.summaries) {
        #expect(a.train.meanNegativeELBO == b.train.meanNegativeELBO, "epoch \(a.epoch): the test evaluation changed training")
        if let test = a.test { #expect(test.meanNegativeELBO == b.test!.meanNegativeELBO) }
    }
    let rows = try String(contentsOfFile: dir + "/sparse/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        .map { $0.split(separator: ",", omittingEmptySubsequences: false) }
    #expect(rows.count == 7)
    for row in rows {
        let epoch = Int(row[0])!
        let empty = row[8...10].allSatisfy(\.isEmpty) && row[15...].allSatisfy(\.isEmpty)
        #expect(empty == !evaluated.contains(epoch), "epoch \(epoch): \(row)")
    }
}

/// New runs draw ε from the counter-based generator and say so in config.json; a config.json
/// without `noise` (a run made before it) trains with the sequential generator, as it did.
@Test func newRunsUseCounterNoiseAndOlderConfigsKeepTheSequentialGenerator() throws {
    let dir = temporaryDirectory("noise")
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, epochs: 1)
    #expect(config.training.noiseGenerator == .counter)
    let json = String(decoding: try JSONEncoder().encode(config.training), as: UTF8.self)
    #expect(json.contains("\"noise\":\"counter\""), "\(json)")
    // The same object without the key (removed from the parsed object: the encoder's key order
    // is not fixed, so the text need not have a comma before it).
    var object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    object["noise"] = nil
    let older = try JSONDecoder().decode(TrainingConfig.self, from: try JSONSerialization.data(withJSONObject: object))
    #expect(older.noise == nil && older.noiseGenerator == .sequential)
    var sequential = config
    sequential.training.noise = nil
    _ = try TrainingRun(creating: RunFolder(path: dir + "/counter"), config: config, parallelism: .batch(workers: 1)).train()
    _ = try TrainingRun(creating: RunFolder(path: dir + "/sequential"), config: sequential, parallelism: .batch(workers: 1)).train()
    let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/counter/model.safetensors"))
    let b = try Data(contentsOf: URL(fileURLWithPath: dir + "/sequential/model.safetensors"))
    #expect(a != b, "the two generators drew the same ε")
}
