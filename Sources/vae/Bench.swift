import ArgumentParser
import CKernels
import Datasets
import Foundation
import NN
import Tensor
import Training
import VAE

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training and inference speed on the real data (the source of every speed claim).",
        discussion: """
            Trains the model for a warm-up epoch and then `--repeats` timed epochs (median \
            reported), times reconstruction (encoder + decoder) and generation (decoder) at batch \
            1000, and measures the machine's single-GEMM ceiling for comparison. Peak resident \
            memory is the whole bench process's. Effective GFLOP/s counts the matrix products \
            of a training step (forward, weight gradients, input gradients but the first layer's). \
            The timed epochs count and time every matrix product that goes through sgemm (all of \
            an MLP's; the convolutions' blocked kernels are not counted and fall in "the rest"), \
            which splits the step into products, the gradient sum and optimiser update, and the \
            rest, and gives the rate of the products within the step against the probed peak \
            (under mpirun: rank 0's; the FLOP per image are the ranks' together).
            """
    )

    /// Training flags a preset may set that `bench` does not take (it times the model, the data
    /// and the objective at `--batch-size`, with Adam and a constant rate).
    static let presetFlagsItLacks: Set<String> = [
        "--binarize", "--optimizer", "--adam-beta1", "--adam-beta2", "--adam-epsilon", "--lr", "--lr-schedule", "--epochs", "--snapshot-epochs", "--test-every",
    ]

    @OptionGroup var data: DataOptions
    @OptionGroup var model: ModelOptions
    @OptionGroup var objective: ObjectiveOptions
    @Option(help: "Training batch size.") var batchSize: Int = 128
    @Option(help: "Timed epochs (and inference repeats); the median is reported.") var repeats: Int = 3
    @OptionGroup var threading: ThreadingOptions
    @OptionGroup var precision: PrecisionOptions
    @Flag(help: "Print one JSON object instead of the table.") var json = false
    @Flag(help: "Also run PyTorch's and JAX's scripts of the same protocol (the default model, --arch conv or --preset iwae-paper) on the same data and device, 3 epochs each, and report their seconds per epoch beside ours (python3 with torch / jax; VAE_PYTHON picks the interpreter, VAE_PEER_SCRIPTS the scripts' folder).")
    var peers = false
    @Option(help: ArgumentHelp("Under mpirun: auto (from 4 ranks), always or never shard the optimiser's update (as `vae train --sharded-update`).", valueName: "when"))
    var shardedUpdate: ShardedUpdate.Policy = .auto

    @Option(help: ArgumentHelp("Under mpirun: auto (when the ranks span several hosts), always or never sum the gradients in buckets while the backward pass runs (non-blocking all-reduces, the last layers' first) instead of with one all-reduce after it.", valueName: "when"))
    var overlap: GradientBuckets.Policy = .auto
    @OptionGroup var devices: DeviceOptions

    func validate() throws {
        guard repeats >= 1 && repeats <= 100 else { throw ValidationError("--repeats must be between 1 and 100") }
    }

    func run() throws {
        let communicator = try Job.communicator()
        try Job.agree(communicator) { try measure(communicator) }
        Job.finish(communicator)
    }

    func measure(_ communicator: Communicator) throws {
        // The same flags, validation and data loading as `vae train`.
        var training = TrainingConfig(batchSize: batchSize, objective: objective.objective)
        data.apply(to: &training)
        try training.validate()
        let splits = try training.loadData()
        let config = try model.config(inputShape: splits.inputShape, classes: splits.classCount)
        try Limits.validate(batchSize: batchSize, samples: objective.iwae, model: config)
        let (train, test) = (splits.train, splits.test)
        if case let gpu = devices.computeDevice, gpu != .cpu {
            // The GPU runs bf16 products on its tensor cores, whatever this CPU does.
            training.precision = precision.precision
            return try measureOnGPU(gpu, config: config, training: training, splits: splits, communicator: communicator)
        }
        let resolvedPrecision = precision.resolved()
        if resolvedPrecision == .bf16 { training.precision = .bf16 }
        // --threads auto (the default) times the splits of the cores first, as `vae train` does.
        var probe: String?
        let parallelism = try threading.chosen(config: RunConfig(model: config, training: training), train: train, communicator: communicator) { line in
            probe = line
            if !json { FileHandle.standardError.write(Data("vae bench: \(line)\n".utf8)) }
        }
        let workers = parallelism.apply()
        let iwae = objective.iwae

        var rng = RandomGenerator(seed: 1)
        let model = VariationalAutoencoder(config: config, rng: &rng)
        model.precision = resolvedPrecision
        let trainer = Trainer(
            model: model, optimizer: Adam(parameters: model.parameters), rng: RandomGenerator(seed: 2), workers: workers,
            objective: training.trainingObjective, communicator: communicator, sharding: shardedUpdate, overlap: overlap)
        if training.noiseGenerator == .counter { trainer.counterNoise = CounterNoise(seed: 2) }  // as training draws ε
        let loader = BatchLoader(dataset: train, batchSize: batchSize, shuffle: true, seed: 3, conditionClasses: config.conditionClasses)
        loader.rowPool = trainer.parallel.pool  // as training makes its batches
        if !json { FileHandle.standardError.write(Data("vae bench: warm-up epoch, then \(repeats) timed…\n".utf8)) }

        _ = try trainer.trainEpoch(loader.epoch(), stepsInEpoch: loader.batchesPerEpoch)
        let (communicationBefore, updateBefore) = (trainer.communicationSeconds, trainer.updateSeconds)
        // The timed epochs count their matrix products, to split the step into products and the rest.
        ProductTally.reset()
        ProductTally.isOn = true
        let epochSeconds = try (0..<repeats).map { _ in
            try timed { _ = try trainer.trainEpoch(loader.epoch(), stepsInEpoch: loader.batchesPerEpoch) }
        }
        ProductTally.isOn = false
        let steps = Double(repeats * loader.batchesPerEpoch)
        let communicationPerStep = (trainer.communicationSeconds - communicationBefore) / steps
        let updatePerStep = (trainer.updateSeconds - updateBefore) / steps
        let stepSeconds = epochSeconds.reduce(0, +) / steps
        // The workers multiply at the same time: each one's products take the mean of their summed times.
        let productsPerStep = ProductTally.seconds / Double(max(workers, 1)) / steps
        let productGFLOPS = ProductTally.flops / steps / max(productsPerStep, 1e-12) / 1e9
        // Every rank multiplied its slice of each batch: the job's products are the ranks' sum.
        var jobProductFLOPs = [ProductTally.flops]
        jobProductFLOPs.withUnsafeMutableBufferPointer { communicator.sum($0) }

        // Inference at batch 1000 (or the whole test set if smaller), split across the workers.
        let inferenceBatch = min(1000, test.count)
        var testBatches = BatchLoader.evaluation(test, for: model, batchSize: inferenceBatch).epoch()
        let speed = inferenceSpeed(model, batch: testBatches.next()!, workers: workers, repeats: repeats)

        let flops = model.flopsPerImage
        let epoch = median(epochSeconds)
        let trainGFLOPS = flops.training * Double(train.count) / epoch / 1e9
        let ceiling = GEMMCeiling.measure(threads: parallelism.threads)
        let peak = FMAPeak.measure(threads: parallelism.threads)
        let bf16Peak = model.precision == .bf16 ? FMAPeak.measureBF16(threads: parallelism.threads) : (all: 0, one: 0)
        // The whole job's training rate against the peak of the cores this process uses, times the ranks.
        let jobPeak = peak.all * Double(communicator.size)
        // The products run on the bf16 dot-product units in bf16, on the FMA units in FP32.
        let productPeak = model.precision == .bf16 ? (name: "bf16 dot-product", gflops: bf16Peak.all) : (name: "FMA", gflops: peak.all)
        var results: [(String, String, Any)] = [
            ("model", "\(config.summary), batch \(batchSize)\(iwae > 1 ? ", IWAE K = \(iwae)" : "")", config.summary + (iwae > 1 ? ", IWAE K = \(iwae)" : "")),
            ("gemm_library", "FP32 matrix products (\(GEMMLibrary.variable)=onednn|openblas)", GEMMLibrary.summary),
            ("blas_kernel", "OpenBLAS kernel (\(KernelCheck.choice)\(GEMMLibrary.selected == .openBLAS ? "" : "; not in use"))", BLAS.coreName),
            ("elementwise_isa", "elementwise kernels", String(cString: vae_kernels_isa())),
            ("threads", "threads (\(parallelism.split))", parallelism.threads),
            ("split_choice", "how the split was chosen", probe ?? (threading.probes ? "nothing to probe (one core)" : "given (--threads)")),
            ("gemm_threads", "GEMM threads per batch worker", parallelism.gemmThreads),
            ("worker_cpus", "CPUs the batch workers' helper threads are pinned to, a set per worker with GEMM threads (VAE_PIN_WORKERS=0: none)",
             trainer.parallel.count == 1 ? "one worker"
                 : trainer.parallel.pool.helperCPUSets.map { $0.map { $0.map(String.init).joined(separator: ",") }.joined(separator: parallelism.gemmThreads > 1 ? " | " : ",") }
                     ?? "not pinned"),
            ("ranks", "MPI ranks (each on a slice of every batch)", communicator.size),
            ("gradient_exchange", "how the ranks combine gradients", trainer.gradientExchange ?? "one process"),
            ("allreduce_ms_per_step", "time in the exchange across ranks (starting and waiting), ms/step (mean)", 1000 * communicationPerStep),
            ("allreduce_bytes_per_step", "bytes summed across ranks per step", trainer.bytesSummedPerStep),
            ("compute_ms_per_step", "the step besides that exchange, ms/step (mean)", 1000 * (stepSeconds - communicationPerStep)),
            ("products_ms_per_step", "  of which matrix products (through sgemm), ms/step", 1000 * productsPerStep),
            ("update_ms_per_step", "  of which the workers' gradient sum + optimiser update (of this rank's shard), ms/step", 1000 * updatePerStep),
            ("other_ms_per_step", "  of which everything else (\(config.architecture == .conv ? "convolution kernels, " : "")elementwise, losses, data), ms/step",
             1000 * (stepSeconds - communicationPerStep - productsPerStep - updatePerStep)),
            ("products_flops_per_image", "matrix products' FLOP per training image (counted)", jobProductFLOPs[0] / (Double(repeats) * Double(train.count))),
            ("products_gflops", "matrix products GFLOP/s within the step", productGFLOPS),
            ("products_fraction_of_peak", "matrix products, fraction of the \(productPeak.name) peak", productGFLOPS / productPeak.gflops),
            ("train_seconds_per_epoch", "training s/epoch (median of \(repeats), \(train.count) images)", epoch),
            ("train_images_per_second", "training images/s", Double(train.count) / epoch),
            ("train_gflops", "training effective GFLOP/s", trainGFLOPS),
            ("reconstruct_images_per_second", "reconstruction images/s (batch \(inferenceBatch))", speed.reconstruct),
            ("generate_images_per_second", "generation images/s (batch \(inferenceBatch))", speed.generate),
            ("iw_samples_per_second", "importance-sampled log p(x), samples/s (K = 1000)", speed.iwSamples),
            ("gemm_ceiling_gflops", "GEMM ceiling GFLOP/s (1024³ sgemm, \(parallelism.threads) thread\(parallelism.threads == 1 ? "" : "s"))", ceiling.all),
            ("gemm_ceiling_one_thread_gflops", "GEMM ceiling GFLOP/s (1 thread)", ceiling.one),
            ("fma_peak_gflops", "FMA peak GFLOP/s (probed, \(parallelism.threads) core\(parallelism.threads == 1 ? "" : "s"))", peak.all),
            ("fma_peak_one_core_gflops", "FMA peak GFLOP/s (probed, 1 core)", peak.one),
            ("train_fraction_of_peak", "training step, fraction of the FMA peak", trainGFLOPS / jobPeak),
            ("precision", "matrix products", model.precision.rawValue),
            ("bf16_kernel", "bf16 products' kernel", BF16.kernelSummary),
            ("peak_rss_mib", "peak resident memory MiB", peakResidentMiB()),
        ]
        if model.precision == .bf16 {
            results.insert(("bf16_peak_gflops", "bf16 dot-product peak GFLOP/s (probed, \(parallelism.threads) core\(parallelism.threads == 1 ? "" : "s"))", bf16Peak.all), at: results.count - 1)
            results.insert(("train_fraction_of_bf16_peak", "training step, fraction of the bf16 peak", trainGFLOPS / (bf16Peak.all * Double(communicator.size))), at: results.count - 1)
        }
        results += peerRows(gpu: false, threads: parallelism.threads, seconds: median(epochSeconds), config: config, splits: splits, ranks: communicator.size)
        // With one thread the one-core rows repeat the rows above them (the JSON keeps both keys).
        try emit(results, omitting: parallelism.threads == 1 ? ["gemm_ceiling_one_thread_gflops", "fma_peak_one_core_gflops"] : [])
        if !json, let warning = BLAS.slowKernelWarning { print(warning) }
    }

    /// `--device cuda:N`: the same warm-up and timed epochs with every step on the GPU.
    private func measureOnGPU(
        _ gpu: ComputeDevice, config: ModelConfig, training: TrainingConfig, splits: DataSplits, communicator: Communicator
    ) throws {
        let train = splits.train
        guard communicator.size == 1 else { throw CUDAError("vae bench --device \(gpu): one process (no mpirun) for now") }
        var rng = RandomGenerator(seed: 1)
        let model = VariationalAutoencoder(config: config, rng: &rng)
        let trainer = Trainer(
            model: model, optimizer: Adam(parameters: model.parameters), rng: RandomGenerator(seed: 2), workers: 1, objective: training.trainingObjective)
        trainer.counterNoise = CounterNoise(seed: 2)
        let (step, summary) = try gpu.makeStep(for: model, precision: training.matrixPrecision, environment: ProcessInfo.processInfo.environment)
        try trainer.useDevice(step, data: train)
        let loader = BatchLoader(dataset: train, batchSize: batchSize, shuffle: true, seed: 3, conditionClasses: config.conditionClasses)
        loader.fillsImages = false  // the GPU makes each batch from the data set it holds
        if !json { FileHandle.standardError.write(Data("vae bench: \(summary); warm-up epoch, then \(repeats) timed…\n".utf8)) }
        _ = try trainer.trainEpoch(loader.epoch(), stepsInEpoch: loader.batchesPerEpoch)
        let (fusedBefore, convolutionsBefore, hostBefore) = (step.fusedProducts, step.cudnnConvolutions, step.hostTime)
        let epochSeconds = try (0..<repeats).map { _ in
            try timed { _ = try trainer.trainEpoch(loader.epoch(), stepsInEpoch: loader.batchesPerEpoch) }
        }
        let fusedPerStep = Double(step.fusedProducts - fusedBefore) / Double(repeats * loader.batchesPerEpoch)
        let convolutionsPerStep = Double(step.cudnnConvolutions - convolutionsBefore) / Double(repeats * loader.batchesPerEpoch)
        let epoch = median(epochSeconds)
        let hostPerStep = (step.hostTime.seconds - hostBefore.seconds) / Double(max(1, step.hostTime.steps - hostBefore.steps))
        let epilogues = step.cublas.lt == nil
            ? "off (\(ProcessInfo.processInfo.environment["VAE_CUDA_LT"] == "0" ? "VAE_CUDA_LT=0" : "no cuBLASLt"): a bias pass per layer)"
            : "cuBLASLt, \(fixed(fusedPerStep, 1)) products per step with their bias work (bias, ReLU, bias gradient\(step.usesReLUMasks ? ", ReLU masks" : "")) in the epilogue"
        let graphs = step.graphs.map { g in
            g.disabledReason.map { "off (\($0))" } ?? "each step one graph (\(g.built) built, \(g.launched) launched"
                + (g.shapeSummary.map { "; " + $0 } ?? "") + ")"
        } ?? "off (VAE_CUDA_GRAPHS=0)"
        // Where a step's device time goes: up to 50 more steps launched piece by piece with an
        // event after each (events go between launches, so not as graphs).
        let profile = StepProfile()
        step.profile = profile
        _ = try trainer.trainEpoch(loader.epoch().prefix(50), stepsInEpoch: loader.batchesPerEpoch)
        step.profile = nil
        let totals = try profile.totals()
        let parts = totals.perStep
        let memory = try step.context.memory()
        let gflops = model.flopsPerImage.training * Double(train.count) / epoch / 1e9
        var results: [(String, String, Any)] = [
            ("model", "model", "\(config.summary), batch \(batchSize)"),
            ("device", "device", summary),
            ("train_seconds_per_epoch", "training s/epoch (median of \(repeats), \(train.count) images)", epoch),
            ("train_images_per_second", "training images/s", Double(train.count) / epoch),
            ("step_ms", "ms per step (wall clock)", 1000 * epoch / Double(loader.batchesPerEpoch)),
            ("host_ms_per_step", "host time to queue a step, ms (record, graph launch)", 1000 * hostPerStep),
            ("cuda_graphs", "CUDA graphs", graphs),
            ("step_pieces", "a step's pieces (graph nodes): kernels + library calls (cuBLAS, cuBLASLt, cuDNN)",
             "\(step.recordedPieces.kernels) + \(step.recordedPieces.libraryCalls)"),
            ("bias_epilogues", "biases added in the products' epilogues", epilogues),
        ]
        if step.hasConvolutions {
            results.append(("convolutions", "convolutions",
                step.cudnn.map { convolutionsPerStep > 0 ? "cuDNN \($0.version), \(fixed(convolutionsPerStep, 1)) products per step" : "patch matrices (cuDNN \($0.version) unused: \($0.lastRefusal ?? "bf16 products"))" }
                    ?? "patch matrices (\(ProcessInfo.processInfo.environment["VAE_CUDA_CUDNN"] == "0" ? "VAE_CUDA_CUDNN=0" : "no cuDNN"))"))
        }
        results += [
            ("device_step_ms", "device time per step, ms (events, \(totals.steps) steps launched piece by piece)", parts.step),
            ("products_ms_per_step", "  of which matrix products (cuBLAS, cuBLASLt, cuDNN)", parts.products),
            ("update_ms_per_step", "  of which the update (clipping, optimiser)", parts.update),
            ("other_ms_per_step", "  of which everything else (kernels)", parts.step - parts.products - parts.update),
            ("kernels_ms_per_step", "  the largest pieces, ms per step",
             parts.pieces.prefix(8).map { "\($0.name) \(fixed($0.milliseconds, 4))" }.joined(separator: ", ")),
            ("train_gflops", "training effective GFLOP/s", gflops),
            ("gpu_memory_used_mib", "GPU memory in use, MiB (all processes)", (memory.total - memory.free) >> 20),
        ]
        if let peak = step.context.fp32PeakGFLOPS {
            results += [("gpu_fp32_peak_gflops", "the GPU's FP32 peak, GFLOP/s", peak), ("fraction_of_fp32_peak", "training, fraction of the FP32 peak", gflops / peak)]
        }
        results += peerRows(gpu: true, threads: 1, seconds: epoch, config: config, splits: splits, ranks: communicator.size)
        try emit(results)
    }

    /// The figures as one JSON object (`--json`) or a table of labelled lines, but for the keys in `omitting`.
    private func emit(_ results: [(key: String, label: String, value: Any)], omitting: Set<String> = []) throws {
        if json {
            var object: [String: Any] = [:]
            for (key, _, value) in results { object[key] = value }
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return
        }
        let width = results.map(\.label.count).max()!
        for (key, label, value) in results where !omitting.contains(key) {
            let text = (value as? Double).map { $0 >= 1000 ? "\(Int($0.rounded()))" : fixed($0, $0 < 10 ? 3 : 1) } ?? "\(value)"
            print(label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + text)
        }
    }

    /// With `--peers`: PyTorch's and JAX's scripts of the same protocol on the same data and
    /// device (`PeerReferences`), their seconds per epoch and ours against the fastest.
    private func peerRows(gpu: Bool, threads: Int, seconds: Double, config: ModelConfig, splits: DataSplits, ranks: Int) -> [(String, String, Any)] {
        guard peers else { return [] }
        func none(_ why: String) -> [(String, String, Any)] { [("peers", "peers (--peers)", why)] }
        guard ranks == 1 else { return none("not run: the peers run in one process (no mpirun)") }
        guard data.data == nil else { return none("not run: the peers train on the IDX data sets only") }
        guard let proto = peerProtocol(config: config, splits: splits) else {
            return none("not run: the peers implement the default model, --arch conv and --preset iwae-paper only, at their batch sizes and objectives")
        }
        let environment = ProcessInfo.processInfo.environment
        guard let scripts = PeerReferences.scriptFolder(environment: environment, executable: "/proc/self/exe") else {
            return none("not run: pytorch_reference.py and jax_reference.py not found (set VAE_PEER_SCRIPTS to their folder)")
        }
        if !json { FileHandle.standardError.write(Data("vae bench: running the peers (\(proto.rawValue) protocol, 3 epochs each)…\n".utf8)) }
        let results = PeerReferences.run(proto, scripts: scripts, dataDirectory: data.dataDir, gpu: gpu, threads: threads, environment: environment)
        var rows: [(String, String, Any)] = []
        for result in results {
            let key = "peer_" + result.peer.lowercased().replacingOccurrences(of: " ", with: "_") + "_seconds_per_epoch"
            let label = "\(result.peer) (\(result.banner ?? proto.rawValue)), s/epoch (epochs 2–3)"
            rows.append((key, label, result.secondsPerEpoch.map { $0 as Any } ?? "not run: \(result.failure ?? "?")"))
        }
        if let fastest = results.compactMap(\.secondsPerEpoch).min() {
            rows.append(("vs_fastest_peer", "our s/epoch over the fastest peer's", seconds / fastest))
        }
        return rows
    }

    /// The peers' protocol that this bench's model, batch size and objective are, if any: each
    /// protocol's flags parsed as `vae bench` would parse them, compared with these.
    private func peerProtocol(config: ModelConfig, splits: DataSplits) -> PeerReferences.Recipe? {
        PeerReferences.Recipe.allCases.first { proto in
            let flags: [String] = switch proto {
            case .standard: []
            case .conv: ["--arch", "conv"]
            case .iwaePaper: ["--preset", "iwae-paper"]
            }
            guard let expanded = try? Preset.expand(flags, dropping: Self.presetFlagsItLacks), let canonical = try? Bench.parse(expanded),
                  let canonicalConfig = try? canonical.model.config(inputShape: splits.inputShape, classes: splits.classCount) else { return false }
            return canonicalConfig == config && canonical.batchSize == batchSize && canonical.objective.objective == objective.objective
        }
    }
}
