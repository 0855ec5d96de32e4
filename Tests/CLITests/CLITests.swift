import CZlib
import Foundation
import Imaging
import Testing
import Training
import Tensor
import TestSupport

/// The `vae` binary built beside the test bundle.
let vaeBinary: String = {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = dir.appendingPathComponent("vae").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "vae"
}()

struct Output {
    let status: Int32
    let stdout: String
    let stderr: String
}

func vae(_ arguments: [String], environment: [String: String] = [:], removing: [String] = []) throws -> Output {
    try run(vaeBinary, arguments, environment: environment, removing: removing)
}

/// Runs `executable` to its end and collects its exit status and output.
func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], removing: [String] = []) throws -> Output {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    // No cache unless a test names one: a test's runs neither read nor leave entries in the
    // user's cache (kernels, probes).
    let base = ProcessInfo.processInfo.environment.merging(["VAE_CACHE": "off"]) { $1 }
    process.environment = base.merging(environment) { $1 }.filter { !removing.contains($0.key) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Output(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
}

let smallTrainArguments = ["--dataset", "mnist", "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--threads", "1"]

/// Trains the tiny model once and returns its run folder.
func trainedRun() throws -> (run: String, data: String) {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let run = dir + "/run"
    let result = try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments)
    #expect(result.status == 0, "train failed: \(result.stderr)")
    return (run, dir)
}

@Test func trainWritesACompleteRunFolder() throws {
    let (run, _) = try trainedRun()
    for file in ["model.safetensors", "config.json", "metrics.csv", "reconstructions.png", "samples.png"] {
        #expect(FileManager.default.fileExists(atPath: "\(run)/\(file)"), "missing \(file)")
    }
    let metrics = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n")
    #expect(metrics.count == 3)
    #expect(metrics[0] == "epoch,train_neg_elbo,train_reconstruction,train_kl,train_objective,validation_neg_elbo,validation_reconstruction,validation_kl,test_neg_elbo,test_reconstruction,test_kl,learning_rate,seconds,images_per_second,kl_weight,active_units,kl_dim_1,kl_dim_2")
    let fields = metrics[2].split(separator: ",", omittingEmptySubsequences: false)
    #expect(fields[5...7].allSatisfy { $0.isEmpty })  // no validation split
    let row = fields.map { Double($0) ?? .nan }
    #expect(row.count == 18 && row[0] == 2)
    #expect(abs(row[8] - (row[9] + row[10])) < 1e-3)  // −ELBO = reconstruction + KL
    #expect(abs(row[10] - (row[16] + row[17])) < 2e-3)  // the KL is the sum of the per-dimension KLs
    #expect(row[11] == 1e-3)  // the learning rate
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/config.json"))) as! [String: Any]
    let model = config["model"] as! [String: Any]
    #expect(model["latentDimension"] as? Int == 2)
    #expect(model["inputShape"] as? [Int] == [1, 8, 8])
    // 64 samples of 8×8 in an 8×8 grid with 1-pixel borders: 73×73.
    let samples = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/samples.png"))))
    #expect(samples.width == 73 && samples.height == 73)
}

@Test func evalIsReproducibleAndMatchesTheLastEpoch() throws {
    let (run, _) = try trainedRun()
    let first = try vae(["eval", run, "--json"])
    let second = try vae(["eval", run, "--json"])
    #expect(first.status == 0 && first.stdout == second.stdout)
    let json = try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as! [String: Any]
    let elbo = json["elbo"] as! Double, recon = json["reconstruction"] as! Double, kl = json["kl"] as! Double
    #expect(json["images"] as? Int == 40)
    #expect(abs(elbo - (recon + kl)) < 1e-9 && kl > 0)
    // The same figure the last epoch wrote to metrics.csv.
    let lastRow = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n").last!.split(separator: ",", omittingEmptySubsequences: false)
    #expect(abs(Double(lastRow[8])! - elbo) < 1e-3)
    let text = try vae(["eval", run])
    #expect(text.stdout.contains("−ELBO") && text.stdout.contains("nats/image"))
}

@Test func evalEstimatesLogLikelihood() throws {
    let (run, _) = try trainedRun()
    let result = try vae(["eval", run, "--iw-samples", "50", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
    let logPx = json["log_px"] as! Double, elbo = json["elbo"] as! Double, stderr = json["log_px_stderr"] as! Double
    #expect(json["iw_samples"] as? Int == 50)
    #expect(logPx >= -elbo - 3 * stderr)  // log p(x) ≥ ELBO up to noise
    #expect(stderr > 0 && abs((json["gap"] as! Double) - (logPx + elbo)) < 1e-9)
    #expect((json["kl_per_dimension"] as? [Double])?.count == 2)
    #expect((json["active_units"] as? Int).map { $0 >= 0 && $0 <= 2 } == true)
}

@Test func trainingWithEachObjective() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    for (name, flags) in [("iwae", ["--iwae", "3"]), ("freebits", ["--free-bits", "0.5", "--beta", "2"]), ("warmup", ["--kl-warmup", "2", "--kl", "mc"])] {
        let result = try vae(["train", "--data-dir", dir, "--out", "\(dir)/\(name)"] + smallTrainArguments + flags)
        #expect(result.status == 0, "\(name): \(result.stderr)")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)/config.json"))) as! [String: Any]
        #expect((config["training"] as? [String: Any])?["objective"] != nil)
    }
    let warm = try String(contentsOfFile: "\(dir)/warmup/metrics.csv", encoding: .utf8).split(separator: "\n")
    #expect(warm[1].split(separator: ",", omittingEmptySubsequences: false)[14] == "0.0000" && warm[2].split(separator: ",", omittingEmptySubsequences: false)[14] == "0.5000")
}

@Test func sampleAndReconstructWritePictures() throws {
    let (run, dir) = try trainedRun()
    let s = try vae(["sample", run, "--count", "10", "--out", dir + "/s.png", "--seed", "3"])
    #expect(s.status == 0, "\(s.stderr)")
    let samples = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: dir + "/s.png"))))
    #expect(samples.width == 4 * 9 + 1 && samples.height == 3 * 9 + 1)  // 10 tiles, 4 columns
    let r = try vae(["reconstruct", run, "--count", "5", "--out", dir + "/r.png"])
    #expect(r.status == 0, "\(r.stderr)")
    let recon = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: dir + "/r.png"))))
    #expect(recon.width == 5 * 9 + 1 && recon.height == 2 * 9 + 1)  // originals over reconstructions
}

@Test func userErrorsGiveOneClearLineAndNonZeroExit() throws {
    let (run, dir) = try trainedRun()
    let modelPath = run + "/model.safetensors"
    let saved = try Data(contentsOf: URL(fileURLWithPath: modelPath))

    // Refuses to write into a run folder without --force; the model is untouched.
    let again = try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments)
    #expect(again.status != 0 && again.stderr.contains("is not empty"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: modelPath)) == saved)

    let cases: [([String], String)] = [
        (["eval", dir + "/absent"], "no such run folder"),
        (["train", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--likelihood", "poisson"], "The value 'poisson' is invalid for '--likelihood"),
        (["train", "--hidden", "400,x"], "--hidden must be positive integers"),
        (["train", "--dataset", "cifar"], "The value 'cifar' is invalid for '--dataset"),
        (["train", "--dataset", "mnist", "--data-dir", dir + "/absent", "--out", dir + "/r2"], "-idx3-ubyte.gz: no such file"),
        (["sample", run, "--count", "0", "--out", dir + "/x.png"], "--count must be between 1 and 10000"),
        (["sample", run, "--out", dir + "/no/such/dir/x.png"], "no/such/dir/x.png: cannot write"),
        (["train", "--no-such-flag"], "Unknown option '--no-such-flag'"),
        (["train", "--dataset", "mnist", "--data-dir", dir, "--out", dir + "/nan", "--lr", "1e30", "--batch-size", "16", "--hidden", "16"],
         "epoch 1, step 2: the loss became non-finite; lower --lr or check that the data lie in [0, 1]"),
        (["train", "--iwae", "5", "--beta", "2"], "cannot be combined with beta"),
        (["train", "--kl", "exact"], "Please provide one of 'analytic' and 'mc'"),
        (["eval", run, "--iw-samples=-1"], "--iw-samples must be between 0 and 1000000"),
    ]
    for (arguments, message) in cases {
        let result = try vae(arguments)
        #expect(result.status != 0, "\(arguments) exited 0")
        #expect(result.stderr.contains(message), "\(arguments): stderr was \(result.stderr)")
    }

    // A damaged checkpoint: truncated, then a wrong header length.
    try saved.prefix(100).write(to: URL(fileURLWithPath: modelPath))
    let truncated = try vae(["eval", run])
    #expect(truncated.status != 0 && truncated.stderr.contains("model.safetensors: truncated safetensors file"))
    let firstLine = truncated.stderr.split(separator: "\n").first ?? ""
    #expect(truncated.stderr.split(separator: "\n").filter { !$0.isEmpty }.count <= 2, "\(truncated.stderr)")
    #expect(firstLine.contains("model.safetensors"))

    // A config.json that is not JSON.
    try saved.write(to: URL(fileURLWithPath: modelPath))
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: run + "/config.json"))
    let badConfig = try vae(["sample", run, "--out", dir + "/y.png"])
    #expect(badConfig.status != 0 && badConfig.stderr.contains("config.json: not a swift-vae run configuration"))
}

/// `vae bench --peers` runs the peers' scripts of the bench's protocol with the same data and
/// device and reports the median of their epochs 2 on: here stand-in scripts (run by sh through
/// VAE_PYTHON) — PyTorch's prints its epochs and its arguments, JAX's fails as a missing module does.
@Test func benchRunsThePeersBesideItself() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let scripts = dir + "/peers"
    try FileManager.default.createDirectory(atPath: scripts, withIntermediateDirectories: true)
    try """
        echo "torch 9.9 (stand-in), cpu, default"
        echo "$@" > \(scripts)/pytorch-arguments.txt
        echo "epoch 1: 9.00 s, test −ELBO 200.00"
        echo "epoch 2: 2.00 s, test −ELBO 150.00"
        echo "epoch 3: 4.00 s, test −ELBO 140.00"
        """.write(toFile: scripts + "/pytorch_reference.py", atomically: true, encoding: .utf8)
    try """
        echo "Traceback (most recent call last):" >&2
        echo "ModuleNotFoundError: No module named 'jax'" >&2
        exit 1
        """.write(toFile: scripts + "/jax_reference.py", atomically: true, encoding: .utf8)
    let result = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--batch-size", "128", "--repeats", "1", "--threads", "1", "--json", "--peers"],
                         environment: ["VAE_PYTHON": "sh", "VAE_PEER_SCRIPTS": scripts])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
    #expect(json["peer_pytorch_eager_seconds_per_epoch"] as? Double == 3.0, "\(result.stdout)")
    #expect((json["peer_jax_jit_seconds_per_epoch"] as? String) == "not run: exit 1: ModuleNotFoundError: No module named 'jax'", "\(result.stdout)")
    let ours = json["train_seconds_per_epoch"] as? Double ?? 0
    #expect(abs((json["vs_fastest_peer"] as? Double ?? 0) - ours / 3.0) < 1e-9, "\(result.stdout)")
    let arguments = (try? String(contentsOfFile: scripts + "/pytorch-arguments.txt", encoding: .utf8)) ?? ""
    #expect(arguments.trimmingCharacters(in: .whitespacesAndNewlines) == "--protocol default --epochs 3 --device cpu --threads 1 --data-dir \(dir)", "\(arguments)")
}

/// The seconds per epoch in a peer's output: the median of epochs 2 on.
@Test func peerEpochsAreTheMedianFromTheSecond() {
    #expect(PeerReferences.steadySeconds("torch 2.11\nepoch 1: 9.50 s, x\nepoch 2: 1.25 s, y\nepoch 3: 1.75 s, z\nepoch 4: 1.5 s") == 1.5)
    #expect(PeerReferences.steadySeconds("epoch 1: 4.00 s") == 4.0)
    #expect(PeerReferences.steadySeconds("epoch 1: 9 s\nepoch 2: 1 s\nepoch 3: 2 s") == 1.5)
    #expect(PeerReferences.steadySeconds("no epochs here") == nil)
}

/// Where `vae bench --peers` finds the scripts: VAE_PEER_SCRIPTS when it holds them, else the
/// source tree's scripts/ above the running program (here the test binary in .build).
@Test func peerScriptsAreFoundAboveTheProgram() throws {
    let found = PeerReferences.scriptFolder(environment: [:], executable: "/proc/self/exe")
    #expect(found.map { FileManager.default.fileExists(atPath: $0 + "/pytorch_reference.py") && $0.hasSuffix("/scripts") } == true, "\(found ?? "nil")")
    let empty = temporaryDirectory()
    #expect(PeerReferences.scriptFolder(environment: ["VAE_PEER_SCRIPTS": empty], executable: "/proc/self/exe") == nil)
}

@Test func benchReportsEveryFigure() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let result = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--batch-size", "16", "--repeats", "1", "--threads", "2", "--json", "--peers"])
    #expect(result.status == 0, "\(result.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
    // A model the peers have no script for: said, not run.
    #expect((json["peers"] as? String)?.hasPrefix("not run: the peers implement the default model") == true, "\(String(describing: json["peers"]))")
    for key in ["train_seconds_per_epoch", "train_images_per_second", "train_gflops", "reconstruct_images_per_second",
                "generate_images_per_second", "iw_samples_per_second", "gemm_ceiling_gflops", "gemm_ceiling_one_thread_gflops", "peak_rss_mib", "fma_peak_gflops", "fma_peak_one_core_gflops",
                "train_fraction_of_peak"] {
        let value = json[key] as? Double
        #expect(value != nil && value! > 0, "\(key) = \(String(describing: json[key]))")
    }
    #expect(json["threads"] as? Int == 2)
    // The second worker's thread pinned to a CPU of this process's mask (not pinned on one core).
    let workerCPUs = json["worker_cpus"] as? String ?? ""
    if Parallel.coreCount >= 2 && ProcessInfo.processInfo.environment["VAE_PIN_WORKERS"] != "0" {
        #expect(Int(workerCPUs).map { $0 >= 0 } == true, "worker_cpus = \(workerCPUs)")
    } else {
        #expect(workerCPUs == "not pinned", "worker_cpus = \(workerCPUs)")
    }
    // The fraction is the effective rate over the probed peak (the probe's own figure is only
    // meaningful in a release build: the tests' C kernels are not optimised).
    let peak = json["fma_peak_gflops"] as? Double ?? 0, fraction = json["train_fraction_of_peak"] as? Double ?? 0
    #expect(abs(fraction - (json["train_gflops"] as? Double ?? 0) / peak) < 1e-9 * max(1, fraction))
    #expect(json["ranks"] as? Int == 1 && json["allreduce_bytes_per_step"] as? Int == 0)
    // The products the step actually ran, counted call by call in sgemm, against the count by
    // hand: layers 64→16, 16→4 (μ, log σ²), 2→16, 16→64 make 1024 + 64 + 32 + 1024 = 2144
    // multiply-adds per image forward; training runs them three times (forward, weight
    // gradients, input gradients) but not the first layer's input gradient: 2 · (3 · 2144 − 1024).
    let expectedFLOPs: Double = 2 * (3 * 2144 - 1024)
    #expect(json["products_flops_per_image"] as? Double == expectedFLOPs, "\(String(describing: json["products_flops_per_image"]))")
    for key in ["products_ms_per_step", "update_ms_per_step", "products_gflops", "products_fraction_of_peak"] {
        #expect((json[key] as? Double).map { $0 > 0 } == true, "\(key) = \(String(describing: json[key]))")
    }
    #expect((json["blas_kernel"] as? String)?.isEmpty == false)
    let library = json["gemm_library"] as? String ?? ""
    #expect(library.hasPrefix(ProcessInfo.processInfo.environment["VAE_GEMM"] == "openblas" ? "OpenBLAS kernel " : "oneDNN "), "\(library)")
    #expect(["avx512f", "avx2", "default"].contains(json["elementwise_isa"] as? String ?? ""))
    let table = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--repeats", "1", "--parallel", "blas", "--threads", "2"])
    #expect(table.status == 0 && table.stdout.contains("training s/epoch") && table.stdout.contains("threads (1 worker × 2 GEMM threads)"), "\(table.stdout)")
    #expect(table.stdout.contains("\nhow the split was chosen") && table.stdout.contains("  given (--threads)\n"), "\(table.stdout)")
    // Without --threads the bench first times the splits of the cores (more than one core: some
    // to choose from), and its JSON keeps the probe's line (the scaling check's table shows it).
    if Parallel.coreCount > 1 {
        #expect(table.stderr.contains("threads auto") == false)
        let auto = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--repeats", "1", "--json"])
        let choice = (try JSONSerialization.jsonObject(with: Data(auto.stdout.utf8)) as? [String: Any])?["split_choice"] as? String ?? ""
        #expect(choice.hasPrefix("threads auto: ") && choice.contains("(chosen of 1×1 ") && choice.contains("; probed in "), "\(auto.stdout)")
        #expect(try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--repeats", "1"]).stderr.contains("vae bench: threads auto: "))
    }
    let variants = try vae(["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--repeats", "1", "--iwae", "3", "--conditional"])
    #expect(variants.status == 0 && variants.stdout.contains("conditional MLP VAE") && variants.stdout.contains("IWAE K = 3"), "\(variants.stderr)")
}

@Test func slowKernelPinningIsReported() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let isAVX512 = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains(" avx512f") ?? false
    let pinned = try vae(["train", "--data-dir", dir, "--out", dir + "/run"] + smallTrainArguments, environment: ["OPENBLAS_CORETYPE": "Haswell", "VAE_GEMM": "openblas"])
    #expect(pinned.status == 0)
    #expect(pinned.stdout.hasPrefix("vae train: OpenBLAS kernel Haswell"))  // the first line names the kernel
    #expect(pinned.stderr.contains("OPENBLAS_CORETYPE=Haswell") == isAVX512)
}

/// oneDNN runs the products unless `VAE_GEMM` says openblas; the first line of `vae train` names
/// the library, and a value naming no library is refused in one line before anything runs.
@Test func theMatrixLibraryIsNamedAndChosen() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let plain = try vae(["train", "--data-dir", dir, "--out", dir + "/a"] + smallTrainArguments, removing: ["VAE_GEMM"])
    #expect(plain.status == 0, "\(plain.stderr)")
    #expect(plain.stdout.hasPrefix("vae train: oneDNN "), "\(plain.stdout.prefix(120))")
    let chosen = try vae(["train", "--data-dir", dir, "--out", dir + "/b"] + smallTrainArguments, environment: ["VAE_GEMM": "openblas"])
    #expect(chosen.status == 0 && chosen.stdout.hasPrefix("vae train: OpenBLAS kernel "), "\(chosen.stdout.prefix(120))")
    let bad = try vae(["train", "--data-dir", dir, "--out", dir + "/c"] + smallTrainArguments, environment: ["VAE_GEMM": "mkl"])
    #expect(bad.status != 0)
    #expect(bad.stderr.trimmingCharacters(in: .whitespacesAndNewlines) == "Error: VAE_GEMM=mkl names no matrix library: use onednn (the default) or openblas", "\(bad.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir + "/c"))
}

/// Unpinned, `vae` runs the widest OpenBLAS kernel the CPU has, even where OpenBLAS does not
/// know the CPU's model (it then starts itself again with `OPENBLAS_CORETYPE` set).
@Test func unpinnedRunsTheWidestKernel() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let result = try vae(["train", "--data-dir", dir, "--out", dir + "/run"] + smallTrainArguments, environment: ["VAE_GEMM": "openblas"], removing: ["OPENBLAS_CORETYPE", "VAE_OPENBLAS_DETECTED"])
    #expect(result.status == 0, "\(result.stderr)")
    let firstLine = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
    let kernel = firstLine.replacingOccurrences(of: "vae train: OpenBLAS kernel ", with: "").split(separator: ",").first.map(String.init) ?? ""
    let isa = try #require(BLAS.VectorISA(openBLASKernel: kernel), "first line: \(firstLine)")
    #expect(isa == BLAS.cpuISA, "OpenBLAS runs \(kernel) on a CPU with \(BLAS.cpuISA)")
    #expect(!result.stderr.contains("warning"))
}

/// `--precision bf16`: the first line says so where the CPU has AVX512_BF16, and config.json
/// records it; elsewhere one line says it runs FP32. A bad value is refused.
@Test func trainTakesThePrecision() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let result = try vae(["train", "--data-dir", dir, "--out", dir + "/run", "--precision", "bf16"] + smallTrainArguments)
    #expect(result.status == 0, "\(result.stderr)")
    if BF16.isSupported {
        #expect(result.stdout.split(separator: "\n").first?.hasSuffix(", bf16 matrix products") == true, "\(result.stdout)")
        #expect(try String(contentsOfFile: dir + "/run/config.json", encoding: .utf8).contains("\"precision\" : \"bf16\""))
    } else {
        #expect(result.stderr.contains("this CPU has no AVX512_BF16: running in FP32"))
    }
    let bad = try vae(["train", "--data-dir", dir, "--out", dir + "/bad", "--precision", "fp16"] + smallTrainArguments)
    #expect(bad.status != 0 && bad.stderr.contains("precision"))
}

/// `vae eval --precision bf16 --iw-samples K` estimates log p(x) in bf16 and in FP32 on the same
/// images and samples: the FP32 figure is exactly the one a plain FP32 eval gives, and the bf16
/// one differs from it, by little. The other commands take the flag.
@Test(.enabled(if: BF16.isSupported, "needs a CPU with AVX512_BF16"))
func evalInBF16ReportsItsDistanceFromFP32() throws {
    let (run, _) = try trainedRun()
    func json(_ extra: [String]) throws -> [String: Any] {
        let result = try vae(["eval", run, "--iw-samples", "20", "--json", "--threads", "1"] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
    }
    let fp32 = try json([]), bf16 = try json(["--precision", "bf16"])
    let plain = try #require(fp32["log_px"] as? Double)
    let reference = try #require(bf16["log_px_fp32"] as? Double)
    let difference = try #require(bf16["log_px_bf16_minus_fp32"] as? Double)
    #expect(reference == plain)
    #expect(difference != 0 && abs(difference) < 0.01 * abs(plain), "bf16 − FP32 = \(difference) of \(plain)")
    #expect(abs((bf16["log_px"] as? Double ?? 0) - plain - difference) < 1e-9)
    for arguments in [["sample", run, "--out", run + "/s16.png"], ["reconstruct", run, "--out", run + "/r16.png"]] {
        let result = try vae(arguments + ["--precision", "bf16"])
        #expect(result.status == 0 && FileManager.default.fileExists(atPath: arguments[3]), "\(arguments[0]): \(result.stderr)")
    }
}

@Test func latentToolsWritePicturesAndData() throws {
    let (run, dir) = try trainedRun()  // d = 2
    for (arguments, file) in [
        (["interpolate", run, "--from", "0", "--to", "3", "--steps", "5", "--spherical"], "interpolation.png"),
        (["manifold", run, "--grid", "6"], "manifold.png"),
        (["traverse", run, "--image", "2", "--steps", "4"], "traverse.png"),
        (["scatter", run], "scatter.png"),
        (["encode", run], "latents.npy"),
    ] {
        let result = try vae(arguments)
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(run)/\(file)"), "\(file) missing")
    }
    let interpolation = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/interpolation.png"))))
    #expect(interpolation.width == 7 * 9 + 1 && interpolation.height == 10)  // image, 5 steps, image
    let manifold = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/manifold.png"))))
    #expect(manifold.width == 6 * 9 + 1 && manifold.height == 6 * 9 + 1)
    let traverse = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/traverse.png"))))
    #expect(traverse.width == 5 * 9 + 1 && traverse.height == 2 * 9 + 1)  // 2 dimensions × (image + 4)
    let npy = try Data(contentsOf: URL(fileURLWithPath: run + "/latents.npy"))
    #expect(npy.count > 40 * (2 * 4 + 2 * 4 + 8))
    // Errors: an image that does not exist; a manifold of a model whose latent is not 2-D.
    let bad = try vae(["interpolate", run, "--from", "0", "--to", "999"])
    #expect(bad.status != 0 && bad.stderr.contains("image 999 does not exist: the test set has images 0…39"))
    let wide = dir + "/wide"
    _ = try vae(["train", "--data-dir", dir, "--out", wide, "--dataset", "mnist", "--epochs", "1", "--hidden", "8", "--latent", "3", "--threads", "1"])
    let notTwo = try vae(["manifold", wide])
    #expect(notTwo.status != 0 && notTwo.stderr.contains("manifold needs a 2-D latent space, and this model has 3 dimensions"))
    let pca = try vae(["scatter", wide])
    #expect(pca.status == 0 && pca.stdout.contains("principal components"))
}

@Test func convolutionalAndConditionalModelsFromTheCLI() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)  // 8×8 images: two conv layers take them to 2×2
    let conv = dir + "/conv"
    let trained = try vae(["train", "--data-dir", dir, "--out", conv, "--arch", "conv", "--channels", "4,8", "--conditional"] + smallTrainArguments)
    #expect(trained.status == 0, "\(trained.stderr)")
    #expect(trained.stdout.contains("\nconditional conv VAE 1×8×8 → channels 4,8"))
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: conv + "/config.json"))) as! [String: Any]
    let model = config["model"] as! [String: Any]
    #expect(model["architecture"] as? String == "conv" && model["channels"] as? [Int] == [4, 8] && model["conditionClasses"] as? Int == 10)
    // Every command rebuilds the model from the run folder alone.
    let perClass = try vae(["sample", conv, "--per-class", "3", "--out", dir + "/pc.png"])
    #expect(perClass.status == 0, "\(perClass.stderr)")
    let grid = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: dir + "/pc.png"))))
    #expect(grid.width == 3 * 9 + 1 && grid.height == 10 * 9 + 1)  // one row per class
    for arguments in [["eval", conv, "--iw-samples", "5"], ["sample", conv, "--label", "3", "--out", dir + "/l3.png"],
                      ["reconstruct", conv, "--out", dir + "/r.png"], ["traverse", conv], ["scatter", conv], ["encode", conv]] {
        let result = try vae(arguments)
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
    }
    let badLabel = try vae(["sample", conv, "--label", "12", "--out", dir + "/x.png"])
    #expect(badLabel.status != 0 && badLabel.stderr.contains("--label 12 is not a class of this model (0…9)"))
    let (plain, _) = try trainedRun()
    let unconditional = try vae(["sample", plain, "--label", "1", "--out", dir + "/y.png"])
    #expect(unconditional.status != 0 && unconditional.stderr.contains("holds an unconditional model"))
    let oddSize = try vae(["train", "--data-dir", dir, "--out", dir + "/odd", "--arch", "conv", "--channels", "4,8,8,8"] + smallTrainArguments)
    #expect(oddSize.status != 0 && oddSize.stderr.contains("must be divisible by 16"))
}

/// Starts `vae` in the background.
func startVAE(_ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: vaeBinary)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

/// Waits (up to 20 s) until `path` exists.
func waitFor(_ path: String) {
    for _ in 0..<4000 where !FileManager.default.fileExists(atPath: path) { usleep(5000) }
}

let resumeArguments = ["--dataset", "mnist", "--epochs", "12", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--threads", "2", "--checkpoint-every", "1"]

/// SIGKILL at whatever moment after the first checkpoint, then `--resume` (and SIGINT, which
/// saves and exits 130): the final weights are those of a run never interrupted, also with SGD,
/// the plateau schedule, a validation split and early stopping.
@Test(arguments: [
    [String](),
    ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.3", "--validation-split", "0.25", "--lr-schedule", "plateau",
     "--plateau-patience", "1", "--early-stopping", "3"],
])
func killedAndResumedRunsEndBitIdentical(extra: [String]) throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = resumeArguments + extra
    let reference = try vae(["train", "--data-dir", dir, "--out", dir + "/whole"] + arguments)
    #expect(reference.status == 0, "\(reference.stderr)")
    let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/whole/model.safetensors"))
    let expectedBest = try? Data(contentsOf: URL(fileURLWithPath: dir + "/whole/best.safetensors"))
    #expect((expectedBest != nil) == !extra.isEmpty)
    if !extra.isEmpty { #expect(reference.stdout.contains("stopped early after epoch")) }
    let expectedRows = try String(contentsOfFile: dir + "/whole/metrics.csv", encoding: .utf8).split(separator: "\n").count

    let run = dir + "/killed"
    let process = try startVAE(["train", "--data-dir", dir, "--out", run] + arguments)
    waitFor(run + "/checkpoint.safetensors")
    usleep(20_000)
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let resumed = try vae(["train", "--resume", run, "--threads", "2"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == expected)
    let resumedBest = try? Data(contentsOf: URL(fileURLWithPath: run + "/best.safetensors"))
    #expect(resumedBest == expectedBest)
    let rows = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n")
    #expect(rows.count == expectedRows && rows.dropFirst().map { $0.prefix { $0 != "," } } == (1..<expectedRows).map { Substring("\($0)") })

    // SIGINT: the step finishes, a checkpoint is written, the exit code says so, and resuming matches.
    let interrupted = dir + "/interrupted"
    let second = try startVAE(["train", "--data-dir", dir, "--out", interrupted] + arguments)
    waitFor(interrupted + "/checkpoint.safetensors")
    kill(second.processIdentifier, SIGINT)
    second.waitUntilExit()
    #expect(second.terminationStatus == 130 || second.terminationStatus == 0)  // 0 if it had already finished
    let again = try vae(["train", "--resume", interrupted, "--threads", "2"])
    #expect(again.status == 0, "\(again.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: interrupted + "/model.safetensors")) == expected)
}

@Test func validationSplitBestWeightsAndScheduleFlags() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let run = dir + "/run"
    let trained = try vae(["train", "--data-dir", dir, "--out", run, "--validation-split", "0.25", "--lr-schedule", "step", "--lr-milestones", "1",
                           "--lr-gamma", "0.5", "--optimizer", "adamw"] + smallTrainArguments)
    #expect(trained.status == 0, "\(trained.stderr)")
    #expect(trained.stdout.contains("72 train / 24 validation / 40 test images") && trained.stdout.contains("AdamW"))
    let rows = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
    #expect(rows[1][11] == "0.001" && rows[2][11] == "0.0005")  // the step schedule, epoch by epoch
    let best = try vae(["eval", run, "--weights", "best", "--json"])
    #expect(best.status == 0, "\(best.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(best.stdout.utf8)) as! [String: Any]
    #expect(json["weights"] as? String == "best" && json["images"] as? Int == 40)
    let (plain, _) = try trainedRun()
    let none = try vae(["eval", plain, "--weights", "best"])
    #expect(none.status != 0 && none.stderr.contains("best.safetensors: no best weights: the run has no validation split"))
    let cases: [([String], String)] = [
        (["train", "--lr-schedule", "plateau"], "--lr-schedule plateau watches the validation −ELBO: it needs --validation-split"),
        (["train", "--early-stopping", "3"], "--early-stopping watches the validation −ELBO: it needs --validation-split"),
        (["train", "--lr-schedule", "step"], "--lr-schedule step needs --lr-milestones"),
        (["train", "--weight-decay", "0.1"], "--weight-decay needs --optimizer adamw (decoupled) or sgd (L2)"),
        (["train", "--clip-norm", "0"], "--clip-norm must be a positive number"),
        (["train", "--latent", "5000"], "--latent must be between 1 and 4096"),
        (["bench", "--hidden", "400,abc"], "--hidden must be positive integers"),
        (["bench", "--latent", "5000"], "--latent must be between 1 and 4096"),
    ]
    for (arguments, message) in cases {
        let result = try vae(arguments)
        #expect(result.status != 0, "\(arguments) exited 0")
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
    }
}

@Test func resumeAndOutputFolderErrors() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let noRun = try vae(["train", "--resume", dir + "/nothing"])
    #expect(noRun.status != 0 && noRun.stderr.contains("nothing: no such run folder"))
    let run = dir + "/run"
    #expect(try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments).status == 0)
    let before = try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors"))
    // A damaged checkpoint is refused with one line naming it; nothing else changes.
    let checkpoint = run + "/checkpoint.safetensors"
    let saved = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
    try saved.prefix(saved.count / 2).write(to: URL(fileURLWithPath: checkpoint))
    let damaged = try vae(["train", "--resume", run])
    #expect(damaged.status != 0 && damaged.stderr.contains("checkpoint.safetensors: invalid tensor") && damaged.stderr.contains("past the"), "\(damaged.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == before)
    // A finished run has nothing to resume.
    try saved.write(to: URL(fileURLWithPath: checkpoint))
    let finished = try vae(["train", "--resume", run])
    #expect(finished.status == 0 && finished.stdout.contains("has finished all 2 epochs"))
    // --force replaces a run; a stray file also makes a folder non-empty.
    let other = dir + "/other"
    try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
    try Data("notes".utf8).write(to: URL(fileURLWithPath: other + "/notes.txt"))
    let refused = try vae(["train", "--data-dir", dir, "--out", other] + smallTrainArguments)
    #expect(refused.status != 0 && refused.stderr.contains("is not empty (it holds notes.txt)"))
    let forced = try vae(["train", "--data-dir", dir, "--out", run, "--force"] + smallTrainArguments)
    #expect(forced.status == 0, "\(forced.stderr)")
}

/// Every file of a folder (and of its sub-folders) and its bytes.
func snapshot(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "\(dir)/\(name)", isDirectory: &isDirectory), isDirectory.boolValue {
            for (inner, data) in try snapshot("\(dir)/\(name)") { out["\(name)/\(inner)"] = data }
        } else {
            out[name] = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)"))
        }
    }
    return out
}

@Test func hostileInputGivesOneLineAndChangesNothing() throws {
    let (run, dir) = try trainedRun()
    let before = try snapshot(run)
    func npyFile(_ name: String, descr: String, shape: String, data: [UInt8]) throws -> String {
        var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        let path = "\(dir)/\(name)"
        try Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count), 0] + header + data).write(to: URL(fileURLWithPath: path))
        return path
    }
    let nan = try npyFile("nan.npy", descr: "<f4", shape: "(2, 2)", data: [0, 0, 0xC0, 0x7F] + [UInt8](repeating: 0, count: 12))
    let short = try npyFile("short.npy", descr: "<f4", shape: "(9, 9)", data: [0, 0, 0, 0])
    let csv = "\(dir)/bad.csv"
    try Data("1,2\n3,four\n".utf8).write(to: URL(fileURLWithPath: csv))
    let pngs = "\(dir)/pngs"
    try FileManager.default.createDirectory(atPath: pngs, withIntermediateDirectories: true)
    try Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).write(to: URL(fileURLWithPath: pngs + "/broken.png"))
    let badIDX = "\(dir)/badidx"
    try FileManager.default.createDirectory(atPath: badIDX, withIntermediateDirectories: true)
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        try Data([0, 0, 8, 3, 0, 0, 0, 9]).write(to: URL(fileURLWithPath: "\(badIDX)/\(name)"))
    }
    let cases: [([String], String)] = [
        (["train", "--data", nan, "--out", dir + "/n1"], "nan.npy: holds NaN or infinite values"),
        (["train", "--data", short, "--out", dir + "/n2"], "short.npy: shape [9, 9] needs more data"),
        (["train", "--data", csv, "--out", dir + "/n3"], "bad.csv: row 2, column 2: 'four' is not a number"),
        (["train", "--data", pngs, "--out", dir + "/n4"], "broken.png: not a readable PNG"),
        (["train", "--dataset", "mnist", "--data-dir", badIDX, "--out", dir + "/n5"], "-images-idx3-ubyte: truncated IDX file"),
        (["train", "--data", nan, "--out", run], "is not empty"),
    ]
    for (arguments, message) in cases {
        let result = try vae(arguments)
        #expect(result.status != 0, "\(arguments) exited 0")
        #expect(result.stderr.contains(message), "\(arguments): \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count <= 3, "more than one message: \(result.stderr)")
    }
    #expect(try snapshot(run) == before, "a failed command changed the run folder")

    // A model file whose tensors overlap.
    let modelPath = run + "/model.safetensors"
    let header = #"{"__metadata__":{"config":"{}"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
    try Data(withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init) + Array(header.utf8) + [UInt8](repeating: 0, count: 8))
        .write(to: URL(fileURLWithPath: modelPath))
    let overlapping = try vae(["eval", run])
    #expect(overlapping.status != 0 && overlapping.stderr.contains("model.safetensors: invalid tensor 'b': data overlaps another tensor"))
    // The weights of another model (latent 3 instead of 2).
    let other = dir + "/other"
    #expect(try vae(["train", "--data-dir", dir, "--out", other, "--dataset", "mnist", "--epochs", "1", "--hidden", "16", "--latent", "3"]).status == 0)
    try FileManager.default.removeItem(atPath: modelPath)
    try FileManager.default.copyItem(atPath: other + "/model.safetensors", toPath: modelPath)
    let mismatched = try vae(["sample", run, "--out", dir + "/s.png"])
    #expect(mismatched.status != 0 && mismatched.stderr.contains("model.safetensors: model configuration differs from"))
    // A config.json describing an absurd model is refused before anything is allocated.
    var config = try JSONSerialization.jsonObject(with: before["config.json"]!) as! [String: Any]
    var model = config["model"] as! [String: Any]
    model["hiddenSizes"] = [65536, 65536]
    model["inputShape"] = [1, 4096, 4096]
    config["model"] = model
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: run + "/config.json"))
    let absurd = try vae(["eval", run])
    #expect(absurd.status != 0 && absurd.stderr.contains("config.json: the model would have"))
}

@Test func helpExplainsEveryOption() throws {
    let top = try vae(["--help"])
    for command in ["train", "eval", "sample", "reconstruct", "interpolate", "manifold", "traverse", "scatter", "encode", "bench"] {
        #expect(top.stdout.contains(command))
    }
    let train = try vae(["train", "--help"])
    for option in ["--dataset", "--data-dir", "--epochs", "--batch-size", "--latent", "--hidden", "--lr", "--seed", "--likelihood", "--sigma", "--binarize", "--out", "--force", "--threads", "--parallel", "--activation", "--beta", "--kl-warmup", "--free-bits", "--iwae", "--kl", "--arch", "--channels", "--upsampling", "--conditional", "--resume", "--checkpoint-every"] {
        #expect(train.stdout.contains(option), "train --help lacks \(option)")
    }
    #expect(train.stdout.contains("nats") || train.stdout.contains("Bernoulli"))
}

/// Every command's options read as prose: no run of spaces inside an option's description (a
/// help string whose lines were joined without `\` keeps each line's indentation — `--threads`
/// read "under each split         of the cores").
@Test func helpTextHasNoStrayRunsOfSpaces() throws {
    for command in ["train", "eval", "sample", "reconstruct", "interpolate", "manifold", "traverse", "scatter", "encode", "score", "report", "bench", "devices"] {
        let help = try vae([command, "--help"])
        #expect(help.status == 0, "\(command): \(help.stderr)")
        let options = help.stdout.components(separatedBy: "OPTIONS:").dropFirst().joined()
        #expect(!options.isEmpty, "\(command) --help has no options")
        for line in options.split(separator: "\n") where line.count > 26 {
            // The description column starts at 26; before it, the option's name and padding.
            let description = line.dropFirst(26)
            #expect(!description.contains("   "), "\(command) --help: \(line)")
        }
    }
}

/// `vae train` without --threads times the splits of its cores and trains on the fastest (the
/// line that says so names the split the run then uses), and a cache keeps what it timed; under `taskset -c 0` it has one core
/// and nothing to choose; `--threads auto` is the same as no flag, and `--threads many` is refused.
@Test func trainChoosesItsSplitOfTheCores() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "1", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--progress", "none"]
    let auto = try vae(arguments + ["--out", dir + "/auto", "--threads", "auto"])
    #expect(auto.status == 0, "\(auto.stderr)")
    let used = auto.stdout.split(separator: "\n").first { $0.hasPrefix("vae train: oneDNN") || $0.hasPrefix("vae train: OpenBLAS") }.map { $0.split(separator: ", ").last.map(String.init) ?? "" }
    if Parallel.coreCount > 1 {
        let chosen = auto.stdout.split(separator: "\n").first { $0.hasPrefix("threads auto: ") }
        #expect(chosen != nil, "\(auto.stdout)")
        if let chosen, let used { #expect(chosen.dropFirst("threads auto: ".count).hasPrefix(used + " (chosen of "), "\(chosen) / \(used)") }
        // With a cache, the next run of the same model reads the split and its figures back.
        let cache = ["VAE_CACHE": dir + "/cache", "VAE_PROBE_BUSY_LIMIT": "1"]  // the tests run side by side
        func probeLine(_ name: String) throws -> String {
            let output = try vae(arguments + ["--out", dir + "/" + name], environment: cache)
            #expect(output.status == 0, "\(output.stderr)")
            return output.stdout.split(separator: "\n").first { $0.hasPrefix("threads auto: ") }.map(String.init) ?? ""
        }
        let probed = try probeLine("probed"), kept = try probeLine("kept")
        #expect(probed.hasSuffix(" s)") && !probed.contains("kept in"), "\(probed)")
        #expect(kept.hasPrefix(probed.dropLast() + " on 20") && kept.hasSuffix(" and kept in \(dir)/cache/probes, VAE_CACHE=off to probe again)"), "\(kept)")
    }
    if FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") {
        let one = try run("/usr/bin/taskset", ["-c", "0", vaeBinary] + arguments + ["--out", dir + "/one"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(!one.stdout.contains("threads auto"), "\(one.stdout)")
        #expect(one.stdout.contains(", 1 batch worker × 1 GEMM thread"), "\(one.stdout)")
    }
    let bad = try vae(arguments + ["--out", dir + "/bad", "--threads", "many"])
    #expect(bad.status != 0 && bad.stderr.contains("--threads"), "\(bad.stderr)")
    let odd = try vae(arguments + ["--out", dir + "/odd", "--threads", "3", "--gemm-threads", "2"])
    #expect(odd.status != 0 && odd.stderr.contains("--gemm-threads 2 needs --threads N, a multiple of it"), "\(odd.stderr)")
    // A mix: 2 batch workers whose products each use 2 threads trains one core's model up to
    // rounding; a resume without flags keeps the mix (the checkpoint records both numbers).
    let mix = try vae(arguments + ["--out", dir + "/mix", "--threads", "4", "--gemm-threads", "2", "--epochs", "2"])
    #expect(mix.status == 0 && mix.stdout.contains(", 2 batch workers × 2 GEMM threads"), "\(mix.stdout)\(mix.stderr)")
    #expect(try vae(arguments + ["--out", dir + "/serial", "--threads", "1", "--epochs", "2"]).status == 0)
    let a = try tensors(dir + "/mix/model.safetensors"), b = try tensors(dir + "/serial/model.safetensors")
    var largest: Float = 0
    for (name, values) in a { for (x, y) in zip(values, b[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-5, "2 × 2 differs from 1 × 1 by \(largest)")
    let header = try String(contentsOfFile: dir + "/mix/checkpoint.safetensors", encoding: .isoLatin1).prefix(20_000)
    #expect(header.contains("\"workers\":\"2\"") && header.contains("\"gemm_threads\":\"2\""), "\(header.prefix(600))")
}

/// One batch worker whose products run on 2 threads splits its layers' passes over them too (the
/// bias broadcast and the ReLU by rows, the bias gradients and the ReLU's mask by columns, the
/// likelihood's rows), for
/// layers of ≥ 16,384 values (here 96 × 256, the 16 × 16 images' decoder output among them, a
/// layer without ReLU): it trains what one thread trains, up to the products' rounding. A slice
/// left out or shifted leaves a bias, a ReLU or a gradient wrong.
@Test func oneWorkersLayerPassesSplitOverItsGEMMThreads() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir, side: 16)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "3", "--batch-size", "96", "--hidden", "256,256", "--latent", "4", "--progress", "none"]
    let team = try vae(arguments + ["--out", dir + "/team", "--threads", "2", "--gemm-threads", "2"])
    #expect(team.status == 0 && team.stdout.contains(", 1 worker × 2 GEMM threads"), "\(team.stdout)\(team.stderr)")
    #expect(try vae(arguments + ["--out", dir + "/serial", "--threads", "1"]).status == 0)
    let a = try tensors(dir + "/team/model.safetensors"), b = try tensors(dir + "/serial/model.safetensors")
    var largest: Float = 0
    for (name, values) in a { for (x, y) in zip(values, b[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-5, "1 × 2 differs from 1 × 1 by \(largest)")
}
