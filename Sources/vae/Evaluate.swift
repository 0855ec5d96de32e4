import ArgumentParser
import Datasets
import Foundation
import Tensor
import Training
import VAE

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Report a trained model's test-set −ELBO, its terms, latent usage and (with --iw-samples) log p(x).",
        discussion: """
            −ELBO, reconstruction and KL are in nats per image, with one ε per image drawn from a \
            fixed seed, so the same run always gives the same figures. `elbo` in the JSON output \
            is the negative ELBO, the figure training lowers.

            With --precision bf16 the networks' products take bf16 operands; log p(x) is then \
            estimated twice on the same images and samples, in bf16 and in FP32, and both are \
            reported with their difference (the FP32 figure is the one kept in the run folder).

            With --device cuda[:N] the work runs on the GPU: the −ELBO (each image's ε as on the \
            CPU), the latent statistics, and the importance sampling, with the same samples as on \
            the CPU (each image's own generator), decoded in large groups with the log-sum-exp on \
            the device.

            --iw-samples K estimates log p(x) per image by importance sampling, \
            log (1/K) Σ_k p(x|z_k) p(z_k)/q(z_k|x) with z_k ~ q(z|x) (the IWAE bound, which \
            approaches log p(x) as K grows), and reports its mean over the images with the \
            standard error of that mean, and the gap to the ELBO. K = 5000 is the usual figure \
            for papers; it takes a few minutes for 10,000 images.

            Active units are latent dimensions u with Cov_x(E_q[z_u]) > 0.01 (Burda et al.).
            """
    )

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run"))
    var runFolder: String

    @Option(help: "Which weights: final (model.safetensors) or best (best.safetensors, the best validation epoch of a run with --validation-split).")
    var weights: RunFolder.Weights = .final

    @Option(help: ArgumentHelp("Evaluate the weights kept after this epoch (RUN/snapshots/, written by --snapshot-epochs) instead.", valueName: "N"))
    var epoch: Int?

    @Option(help: "Importance samples per image for log p(x) (0: skip).")
    var iwSamples: Int = 0

    @Option(help: "Evaluate only the first N test images.")
    var limit: Int?

    @Option(help: "Seed of the importance samples.")
    var seed: UInt64 = 1

    @OptionGroup var threading: ThreadingOptions
    @OptionGroup var precision: PrecisionOptions
    @OptionGroup var devices: DeviceOptions

    @Flag(help: "Print one JSON object (keys elbo, reconstruction, kl, images, active_units, kl_per_dimension; with --iw-samples also log_px, log_px_stderr, iw_samples, gap; in bf16 also log_px_fp32, log_px_bf16_minus_fp32).")
    var json = false

    func validate() throws {
        guard iwSamples >= 0 && iwSamples <= 1_000_000 else { throw ValidationError("--iw-samples must be between 0 and 1000000") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        try threading.validate()
    }

    /// "final", "best" or "epoch N".
    var weightsName: String { epoch.map { "epoch \($0)" } ?? weights.rawValue }

    func run() throws {
        let parallelism = threading.parallelism
        let workers = parallelism.apply()
        let (model, config) = try RunFolder(path: runFolder).loadModel(weights, epoch: epoch)
        // The GPU first, so that a missing driver or library is said before any work.
        var gpu: CUDAStep?
        var deviceSummary: String?
        if devices.computeDevice != .cpu {
            let (step, summary) = try devices.computeDevice.makeStep(for: model, precision: precision.precision, environment: ProcessInfo.processInfo.environment)
            (gpu, deviceSummary) = (step, summary)
            if !json { print("vae eval: on \(summary)") }
        }
        // The host's products in what this CPU runs (said only when the CPU does the work).
        model.precision = gpu == nil ? precision.resolved() : BF16.resolve(precision.precision).precision
        var testSet = try config.training.loadTestSet(for: config.model)
        if let limit { testSet = testSet.prefix(limit) }
        let shard = DatasetShard(testSet, communicator: SingleProcess())
        let (loss, stats) = (try shard.evaluate(model, device: gpu), try shard.latentStatistics(model, device: gpu))

        var object: [String: Any] = [
            "elbo": loss.meanNegativeELBO, "reconstruction": loss.meanReconstruction,
            "kl": loss.meanKL, "images": loss.images, "dataset": config.training.dataset,
            "binarized": config.training.binarize, "active_units": stats.activeUnits(),
            "kl_per_dimension": stats.klPerDimension, "weights": weightsName,
        ]
        if let deviceSummary { object["device"] = deviceSummary }
        var lines = [
            "\(runFolder)\(epoch.map { " (weights after epoch \($0))" } ?? (weights == .best ? " (best weights)" : "")): \(loss.images) test images (\(config.training.dataset)\(config.training.binarize ? ", binarised" : ""))",
            "  −ELBO           \(fixed(loss.meanNegativeELBO, 3)) nats/image",
            "  reconstruction  \(fixed(loss.meanReconstruction, 3)) nats/image",
            "  KL              \(fixed(loss.meanKL, 3)) nats/image",
            "  active units    \(stats.activeUnits()) of \(model.latentDimension) (Cov_x E_q[z_u] > 0.01)",
            "  KL per dim      " + stats.klPerDimension.map { fixed($0, 2) }.joined(separator: " "),
        ]
        let d1 = model.latentDimension, d2 = model.config.upperLatentDimension
        if d2 > 0 {
            // Two stochastic layers: z₁'s dimensions, then z₂'s (see LatentStatistics).
            let (z1, z2) = (stats.dimensions(0..<d1), stats.dimensions(d1..<(d1 + d2)))
            object["active_units_z2"] = z2.activeUnits()
            object["active_units"] = z1.activeUnits()
            lines[4] = "  active units    z₁ \(z1.activeUnits()) of \(d1), z₂ \(z2.activeUnits()) of \(d2) (Cov_x E_q[z_u] > 0.01)"
            lines[5] = "  KL per dim z₁   " + z1.klPerDimension.map { fixed($0, 2) }.joined(separator: " ") + "  (against p(z₁|z₂ = μ₂))"
            lines.append("  KL per dim z₂   " + z2.klPerDimension.map { fixed($0, 2) }.joined(separator: " "))
        }
        if iwSamples > 0 {
            func estimateLogLikelihood(_ label: String) throws -> (estimate: LogLikelihoodEstimate, seconds: Double) {
                let start = monotonicSeconds()
                var bar = json ? nil : ProgressBar()
                let update = { (done: Int) -> Void in
                    bar?.update(done: done, of: testSet.count, elapsed: monotonicSeconds() - start, text: "log p(x)\(label): \(done)/\(testSet.count) images, K = \(iwSamples)")
                }
                let estimate = try gpu.map { try model.logLikelihood(testSet, samples: iwSamples, seed: seed, on: $0, progress: update) }
                    ?? model.logLikelihood(testSet, samples: iwSamples, seed: seed, workers: workers, progress: update)
                bar?.end()
                return (estimate, monotonicSeconds() - start)
            }
            // bf16 where the estimate runs (the GPU's tensor cores, or this CPU), then FP32 on the
            // same images and samples.
            let inBF16 = gpu == nil ? model.precision == .bf16 : precision.precision == .bf16
            let elboInBF16 = gpu == nil ? model.precision == .bf16 : precision.precision == .bf16
            let reduced = inBF16 ? try estimateLogLikelihood(" in bf16") : nil
            model.precision = .fp32
            gpu?.precision = .fp32
            let (estimate, seconds) = try estimateLogLikelihood(inBF16 ? " in FP32" : "")
            // The ELBO above was computed in the chosen precision: its gap is to that log p(x).
            let gap = (reduced?.estimate.mean ?? estimate.mean) + loss.meanNegativeELBO
            object["log_px"] = estimate.mean
            object["log_px_stderr"] = estimate.standardError
            object["iw_samples"] = iwSamples
            object["gap"] = gap
            object["iw_seconds"] = seconds
            // Kept in the run folder for its report (a read-only folder only loses that).
            do {
                try RunFolder(path: runFolder).writeLikelihood(LikelihoodRecord(
                    weights: weightsName, images: estimate.perImage.count, samples: iwSamples, logLikelihood: estimate.mean,
                    standardError: estimate.standardError, negativeELBO: loss.meanNegativeELBO, seconds: seconds,
                    date: ISO8601DateFormatter().string(from: Date())))
            } catch {
                printWarning("log p(x) not saved in the run folder: \(error)")
            }
            lines += [
                "  log p(x)        \(fixed(estimate.mean, 3)) ± \(fixed(estimate.standardError, 3)) nats/image\(inBF16 ? " in FP32" : "") (K = \(iwSamples) importance samples; ± is the standard error)",
                "  gap             \(fixed(gap, 3)) nats/image (log p(x) − ELBO\(reduced == nil ? "" : elboInBF16 ? ", both in bf16" : ", log p(x) in bf16"))",
                "                  \(fixed(seconds, 1)) s, \(Int(Double(estimate.perImage.count * iwSamples) / seconds)) samples/s",
            ]
            if let (bf16, bf16Seconds) = reduced {
                // The same images, seed and samples: the difference is the products' rounding alone.
                let meanAbsolute = bf16.meanAbsoluteDifference(from: estimate)
                object["log_px_fp32"] = estimate.mean
                object["log_px"] = bf16.mean
                object["log_px_stderr"] = bf16.standardError
                object["log_px_bf16_minus_fp32"] = bf16.mean - estimate.mean
                object["iw_seconds_bf16"] = bf16Seconds
                lines += [
                    "  log p(x) bf16   \(fixed(bf16.mean, 3)) ± \(fixed(bf16.standardError, 3)) nats/image on the same images and samples: \(fixed(bf16.mean - estimate.mean, 3)) from FP32 (per image \(fixed(meanAbsolute, 3)) on average)",
                    "                  \(fixed(bf16Seconds, 1)) s in bf16, \(Int(Double(bf16.perImage.count * iwSamples) / bf16Seconds)) samples/s",
                ]
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            lines.forEach { print($0) }
        }
    }
}
