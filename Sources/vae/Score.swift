import ArgumentParser
import Datasets
import Files
import Foundation
import Reports
import Tensor
import Training
import VAE

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score every example under a trained model: log p(x), −ELBO, reconstruction, KL and the posterior mean.",
        discussion: """
            Writes one record per example (in the data's order) to --out: a .csv with the columns \
            index, label, log_px, neg_elbo, reconstruction, kl, mu_1 … mu_d, or a .npy structured \
            array with the same fields (mu as float32[d]). log p(x) is importance sampled with \
            --iw-samples draws from q(z|x); the −ELBO uses the analytic KL and one ε per example; \
            every example's draws are keyed to its index, so the figures do not depend on the \
            number of threads. All in nats.

            With labels and --anomaly-classes (or --anomaly-labels), it prints for each score how \
            well it separates those examples from the rest — AUROC and average precision, higher \
            scores meaning more anomalous (−log p(x), −ELBO, reconstruction NLL, KL) — and writes \
            OUT-histogram.svg with both groups' histograms. `vae train --classes 0,1,…` trains on a \
            subset of the classes, so "train on nine classes, detect the tenth" takes three commands.
            """)

    @Argument(help: ArgumentHelp("Run folder written by `vae train`.", valueName: "run")) var runFolder: String
    @Option(help: "Which of the run's sets to score: test (default), train or validation.") var split: SplitName = .test
    @Option(help: ArgumentHelp("Score your own images instead (.npy, .csv or a folder of .png, as `vae train --data`).", valueName: "path")) var data: String?
    @Option(help: ArgumentHelp("Labels for --data: a .npy array of whole numbers.", valueName: "file.npy")) var labels: String?
    @Option(help: "Importance samples per example for log p(x).") var iwSamples: Int = 1000
    @Option(help: "Seed of the importance samples and of ε.") var seed: UInt64 = 1
    @Option(help: ArgumentHelp("Where to write the scores: a .csv or a .npy file.", valueName: "file")) var out: String
    @Option(help: ArgumentHelp("Labels that count as anomalies, e.g. 9 or 8,9: prints AUROC and average precision of each score.", valueName: "labels")) var anomalyClasses: String?
    @Option(help: ArgumentHelp("A .npy of 0/1 per example marking the anomalies (instead of --anomaly-classes).", valueName: "file.npy")) var anomalyLabels: String?
    @Option(help: "Score only the first N examples.") var limit: Int?
    @Option(help: ArgumentHelp("Weights after this epoch (RUN/snapshots/) instead of the final ones.", valueName: "N")) var epoch: Int?
    @OptionGroup var threading: ThreadingOptions
    @OptionGroup var precision: PrecisionOptions
    @OptionGroup var devices: DeviceOptions

    enum SplitName: String, ExpressibleByArgument, CaseIterable { case test, train, validation }

    func validate() throws {
        guard (1...1_000_000).contains(iwSamples) else { throw ValidationError("--iw-samples must be between 1 and 1000000") }
        guard out.hasSuffix(".csv") || out.hasSuffix(".npy") else { throw ValidationError("--out must end in .csv or .npy") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let anomalyClasses, integerList(anomalyClasses)?.isEmpty != false { throw ValidationError("--anomaly-classes must be labels separated by commas, e.g. 9") }
        if anomalyClasses != nil && anomalyLabels != nil { throw ValidationError("give --anomaly-classes or --anomaly-labels, not both") }
        if labels != nil && data == nil { throw ValidationError("--labels goes with --data") }
        try threading.validate()
    }

    func run() throws {
        let workers = threading.parallelism.apply()
        let folder = RunFolder(path: runFolder)
        let (model, config) = try folder.loadModel(.final, epoch: epoch)
        // The host's products in what this CPU runs (said only when the CPU does the work).
        model.precision = devices.computeDevice == .cpu ? precision.resolved() : BF16.resolve(precision.precision).precision
        var dataset: ImageDataset
        if let data {
            dataset = try UserData.load(data, labels: labels, imageShape: config.model.inputShape)
            try config.model.check(dataset, "scored", hint: " (\(data) against the model of \(runFolder))")
        } else {
            switch split {
            case .test: dataset = try config.training.loadTestSet(for: config.model)
            case .train: dataset = try config.training.loadData().train
            case .validation:
                guard let validation = try config.training.loadData().validation else { throw CLIError("the run has no validation split (it was trained without --validation-split)") }
                dataset = validation
            }
        }
        if let limit { dataset = dataset.prefix(limit) }
        var anomalous: [Bool]?
        if let anomalyClasses {
            guard let labels = dataset.labels else { throw CLIError("--anomaly-classes needs labelled examples") }
            let set = Set(integerList(anomalyClasses) ?? [])
            anomalous = labels.map { set.contains($0) }
        } else if let anomalyLabels {
            let marks = try UserData.npyLabels(anomalyLabels)
            guard marks.count == dataset.count else { throw CLIError("\(anomalyLabels) holds \(marks.count) marks for \(dataset.count) examples") }
            guard marks.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw CLIError("\(anomalyLabels) must hold 0 or 1 for each example") }
            anomalous = marks.map { $0 == 1 }
        }

        // On the GPU when asked (found and set up before any work: a missing driver or library is
        // one line): log p(x), the −ELBO's terms and μ.
        var gpu: CUDAStep?
        if devices.computeDevice != .cpu {
            let (step, summary) = try devices.computeDevice.makeStep(for: model, precision: precision.precision, environment: ProcessInfo.processInfo.environment)
            gpu = step
            print("vae score: on \(summary)")
        }
        let start = monotonicSeconds()
        var bar = ProgressBar()
        let scores = try model.scores(dataset, samples: iwSamples, seed: seed, workers: workers, device: gpu) { done in
            bar.update(done: done, of: dataset.count, elapsed: monotonicSeconds() - start, text: "scoring \(done)/\(dataset.count) examples, K = \(iwSamples)")
        }
        bar.end()
        let labels = dataset.labels ?? [Int](repeating: -1, count: dataset.count)
        if out.hasSuffix(".npy") {
            try Files.writeAtomically(ExampleScore.npy(scores, labels: labels), to: out)
        } else {
            try Files.writeAtomically(ExampleScore.csv(scores, labels: labels), to: out)
        }
        let mean = scores.map(\.logLikelihood).reduce(0, +) / Double(max(scores.count, 1))
        print("wrote \(out): \(scores.count) examples, mean log p(x) \(fixed(mean, 2)) nats (K = \(iwSamples)), \(fixed(monotonicSeconds() - start, 1)) s")

        guard let anomalous else { return }
        let positives = anomalous.filter { $0 }.count
        guard positives > 0 && positives < anomalous.count else { throw CLIError("the anomalies must be some but not all of the \(anomalous.count) examples (\(positives) are)") }
        print("separating \(positives) anomalies from \(anomalous.count - positives) others (higher score = more anomalous):")
        let measures = ExampleScore.anomalyMeasures.map { ($0.name, scores.map($0.value)) }
        for (name, values) in measures {
            print("  \(name.padding(toLength: 20, withPad: " ", startingAt: 0)) AUROC \(fixed(Separation.auroc(values, positive: anomalous), 4))  average precision \(fixed(Separation.averagePrecision(values, positive: anomalous), 4))")
        }
        let histogram = String(out.dropLast(4)) + "-histogram.svg"
        try Files.writeAtomically(Histogram.anomalies(Array(measures.prefix(3)), anomalous: anomalous, subject: "\(runFolder.split(separator: "/").last ?? "")'s examples"), to: histogram)
        print("wrote \(histogram)")
    }
}
