import ArgumentParser
import Foundation
import Tensor
import Reports
import Training
import VAE

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE and write its run folder (weights, config, metrics, pictures).",
        discussion: """
            Defaults are the classic MLP VAE (784 → 400 → 20 → 400 → 784, ReLU, \
            Bernoulli likelihood on logits, Adam 1e-3, batch 128, 10 epochs) on \
            Fashion-MNIST.

            After each epoch the test-set −ELBO (and, with --validation-split, the validation \
            −ELBO) is computed (one ε per image from a fixed seed) and a row is added to \
            RUN/metrics.csv. At the end RUN/ holds model.safetensors, config.json, metrics.csv, \
            reconstructions.png and samples.png; with a validation split also best.safetensors, \
            the weights of the best validation epoch (`vae eval RUN --weights best`). Model \
            selection never looks at the test set.

            Likelihoods, and which fits which data:
              bernoulli        pixel = coin with probability sigmoid(output): binary
                               data (--binarize), or grey values in [0, 1] as the
                               classic cross-entropy (not a normalised density).
              gaussian         regression loss with a fixed σ (--sigma): continuous
                               values; a smaller σ weighs reconstruction more.
              gaussian-shared  one σ learned with the model (starts at --sigma).
              gaussian-pixel   a σ per pixel from the decoder (floored at 0.01): the
                               most flexible; rewards tiny σ on constant pixels.
            Gaussian figures are densities and can be positive; do not compare them \
            with Bernoulli figures.

            Objectives: the ELBO (default), β-VAE (--beta), KL warm-up (--kl-warmup), \
            free bits (--free-bits), the IWAE bound (--iwae K), and an analytic or \
            sampled KL (--kl).

            Learning-rate schedules (--lr-schedule): constant; step (×--lr-gamma after each of \
            --lr-milestones epochs); cosine (from --lr to --lr-min over the run, per step); \
            plateau (×--plateau-factor after --plateau-patience epochs without a better \
            validation −ELBO); iwae (Burda et al. 2015: stage i = 1…8 lasts 3^(i−1) epochs at \
            1e-4·round(10^(1−(i−1)/7), 1), scaled by --lr/1e-3). --lr-warmup adds a linear \
            warm-up to any of them. --early-stopping N ends the run after N epochs without a \
            better validation −ELBO.
            """
    )

    @OptionGroup var data: DataOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var objective: ObjectiveOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var threading: ThreadingOptions
    @OptionGroup var precision: PrecisionOptions

    @Option(help: ArgumentHelp("Run folder to write.", valueName: "run"))
    var out: String = "runs/default"

    @Flag(help: "Write into a run folder that is not empty (its model and checkpoint are replaced).")
    var force = false

    @Option(help: ArgumentHelp("Continue the interrupted run in this folder exactly where its last checkpoint left it (its config.json decides everything else).", valueName: "run"))
    var resume: String?

    @Option(help: ArgumentHelp("Start from a published protocol's settings; flags after it override them. iwae-paper: Burda et al. (2015), one stochastic layer on dynamically binarised MNIST — 784-200-200-50 tanh MLPs, batch 20, Adam ε 1e-4, the 8-stage iwae schedule over 3,280 epochs, Glorot weights, output bias from the data, sampled KL, snapshots after each stage (needs --data-dir with MNIST).", valueName: "name"))
    var preset: String?

    @Option(help: ArgumentHelp("How to show progress: auto (a bar on a terminal; otherwise, and under mpirun, a plain line every few seconds), bar, lines, or none (only the line after each epoch). Under mpirun only rank 0 prints.", valueName: "style"))
    var progress: ProgressStyle = .auto

    @Flag(help: "Do not write TensorBoard event files (RUN/tensorboard/).")
    var noTensorboard = false

    @Flag(help: "Do not keep RUN/report.html and RUN/timelapse/ current after every epoch (`vae report RUN` writes the report at any time).")
    var noReport = false

    @Flag(help: "Under mpirun: check after the start and after every step that every rank holds the same weights (hashes compared; costs a pass over the weights per step), and say so at the end.")
    var checkReplicas = false

    @OptionGroup var devices: DeviceOptions

    @Option(help: ArgumentHelp("Under mpirun: auto (from 4 ranks), always or never share the optimiser's update out among the ranks (ZeRO stage 1: gradients reduce-scattered, each rank updating its shard, weights all-gathered) instead of every rank updating every weight after one all-reduce.", valueName: "when"))
    var shardedUpdate: ShardedUpdate.Policy = .auto

    @Option(help: ArgumentHelp("Under mpirun: auto (when the ranks span several hosts), always or never sum the gradients in buckets while the backward pass runs (non-blocking all-reduces, the last layers' first) instead of with one all-reduce after it.", valueName: "when"))
    var overlap: GradientBuckets.Policy = .auto

    var computeDevice: ComputeDevice { devices.computeDevice }

    func run() throws {
        // First, before any thread that computes exists: SIGINT and SIGTERM go to a watcher
        // thread (StopSignals says why); until the run's folder is touched they end the process.
        let stop = StopRequest()
        try StopSignals.take(
            into: stop, interruptLine: "vae train: stopped by SIGINT before training began; nothing was written",
            terminateLine: "vae train: stopped by SIGTERM before training began; nothing was written")
        let communicator = try Job.communicator()
        let plan = try Job.agree(communicator) { try planRun(communicator) }
        // Every rank has its data: the probe's steps may exchange gradients across the ranks.
        // A GPU run's steps need no CPU split (one host thread feeds the GPU): nothing to probe.
        let parallelism = try plan.map { plan in
            computeDevice == .cpu ? try threading.chosen(config: plan.config, train: plan.data.train, communicator: communicator) { print($0) } : .batch(workers: 1)
        }
        let run = try Job.agree(communicator) { try makeRun(plan, parallelism: parallelism, communicator) }
        run.warnings.forEach(printWarning)
        let config = run.config.training, folder = run.folder.path
        if run.isTrainingDone, case let .alreadyFinished(epochs, completed) = try run.train() {
            print(completed.isEmpty
                ? "\(folder) has finished all \(epochs) epochs; nothing to resume"
                : "\(folder) had finished training (\(epochs) epochs); wrote what was missing: \(completed.joined(separator: ", "))")
            Job.finish(communicator)
            try exitIfStopped(stop)
            return
        }
        if run.isResumed {
            print("vae train: resuming \(folder) at epoch \(run.state.epoch + 1), step \(run.state.batchIndex) of the epoch (\(run.state.step) steps done)")
        }
        if let gpu = run.deviceSummary {
            let graphs = run.trainer.device?.graphs.map { $0.chained ? "each one CUDA graph, a chain (VAE_CUDA_GRAPHS=chain)" : "each one CUDA graph" }
                ?? "launched kernel by kernel (VAE_CUDA_GRAPHS=0)"
            print("vae train: training steps on \(gpu), \(graphs); the evaluations' −ELBO and latent statistics there too")
        }
        print("vae train: \(run.parallelism.summary)" + (run.model.precision == .bf16 ? ", bf16 matrix products" : "") + (communicator.size > 1
            ? "; \(communicator.size) MPI ranks, each on \(config.batchSize / communicator.size)–\((config.batchSize + communicator.size - 1) / communicator.size) images of every batch of \(config.batchSize); \(run.trainer.gradientExchange ?? "")" : ""))
        run.summary.forEach { print($0) }
        KernelCheck.warnIfSlow()

        let progressObserver = TrainingProgress(epochs: config.epochs, style: progress)
        let replicas = checkReplicas ? ReplicaCheck() : nil
        let pictures = EpochPictureCache()
        let tensorboard = noTensorboard ? nil : TensorBoardLog(pictures: pictures)
        let report = noReport ? nil : ReportObserver(pictures: pictures)
        let observers: [TrainingObserver?] = [progressObserver, tensorboard, report, replicas]
        let start = monotonicSeconds()
        let outcome = try run.train(observer: ObserverGroup(observers.compactMap { $0 }), stop: stop)
        let seconds = monotonicSeconds() - start
        if let reason = run.trainer.device?.graphs?.disabledReason {
            printWarning("the GPU refused CUDA graphs (\(reason)): its steps were launched kernel by kernel (same numbers, more host time)")
        }
        if run.isWriter, tensorboard != nil || report != nil {
            let spent = (tensorboard?.seconds ?? 0) + (report?.seconds ?? 0)
            print("TensorBoard log \(fixed(tensorboard?.seconds ?? 0, 2)) s + report \(fixed(report?.seconds ?? 0, 2)) s = \(fixed(100 * spent / max(seconds, 1e-9), 2))% of the \(fixed(seconds, 1)) s run (\(run.folder.path)/report.html, tensorboard --logdir \(run.folder.path)/tensorboard)")
        }
        if let replicas {
            if let mismatch = replicas.firstMismatch {
                throw TrainingRunError("the ranks' weights differ after step \(mismatch.step) (hashes \(mismatch.hashes.map { String($0, radix: 16) }.joined(separator: ", ")))")
            }
            print("replica check: the weights were identical on all \(communicator.size) ranks at all \(replicas.checks) checks (the start and every step)")
        }
        switch outcome {
        case let .interrupted(epoch, step, steps, signal):
            print("vae train: stopped by \(signal == SIGINT ? "SIGINT" : "SIGTERM") at epoch \(epoch), step \(step) of \(steps); checkpoint saved")
            print("continue with: vae train --resume \(folder)")
            Job.finish(communicator)
            throw ExitCode(128 + signal)
        case let .stoppedEarly(epoch, best):
            print("stopped early after epoch \(epoch): no better validation −ELBO for \(config.earlyStopping ?? 0) epochs (best: epoch \(best), \(run.folder.bestModelPath))")
        case .finished, .alreadyFinished:
            break
        }
        print("wrote \(run.folder.modelPath), \(run.folder.metricsPath), \(run.folder.reconstructionsPath), \(run.folder.samplesPath)")
        Job.finish(communicator)
        try exitIfStopped(stop)
    }

    /// A signal that came while the run wrote its last files (they are complete): the exit code
    /// still says the process was interrupted, as a shell expects.
    private func exitIfStopped(_ stop: StopRequest) throws {
        guard let signal = stop.requested else { return }
        print("vae train: \(signal == SIGINT ? "SIGINT" : "SIGTERM") came while the run was finishing; it finished")
        throw ExitCode(128 + signal)
    }
}

extension Train {
    /// What a new run will be: its configuration and data (nil for `--resume`).
    struct Plan {
        let config: RunConfig
        let data: DataSplits
    }

    /// Reads the flags and loads the data of a new run; checks that its folder can be written.
    func planRun(_ communicator: Communicator) throws -> Plan? {
        if resume != nil { return nil }
        var trainingConfig = try training.config(data: data, objective: objective.objective, ranks: communicator.size)
        if precision.precision == .bf16 { trainingConfig.precision = .bf16 }  // FP32 stays unwritten in config.json
        if communicator.rank == 0 { try TrainingRun.checkCanCreate(RunFolder(path: out), replacing: force) }
        let splits = try trainingConfig.loadData()
        let modelConfig = try model.config(inputShape: splits.inputShape, classes: splits.classCount)
        return Plan(config: RunConfig(model: modelConfig, training: trainingConfig), data: splits)
    }

    /// A new run from its plan on `parallelism`, or the run of `--resume`.
    func makeRun(_ plan: Plan?, parallelism: Parallelism?, _ communicator: Communicator) throws -> TrainingRun {
        guard let plan, let parallelism else {
            StopSignals.arm()
            return try TrainingRun(
                resuming: RunFolder(path: resume!), parallelism: threading.requestedParallelism, communicator: communicator, device: computeDevice,
                sharding: shardedUpdate, overlap: overlap)
        }
        StopSignals.arm()  // the folder is written from here on: a signal becomes a stop request
        return try TrainingRun(
            creating: RunFolder(path: out), config: plan.config, data: plan.data, parallelism: parallelism, replacing: force, communicator: communicator,
            device: computeDevice, sharding: shardedUpdate, overlap: overlap)
    }
}

extension ShardedUpdate.Policy: ExpressibleByArgument {}
extension GradientBuckets.Policy: ExpressibleByArgument {}
