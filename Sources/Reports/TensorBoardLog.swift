#if canImport(Glibc)
import Glibc
#endif
import Files
import Foundation
import Imaging
import Tensor
import Training
import VAE

/// Writes a run's TensorBoard event file, `RUN/tensorboard/events.out.tfevents.<time>.<host>`
/// (open it with `tensorboard --logdir RUN/tensorboard`, or a folder of runs):
///
/// - every `every` steps, `train/running_neg_elbo` (the epoch's −ELBO per image so far; on the
///   GPU, at the first read-back of the losses after each multiple of `every`);
/// - every epoch, at its last step: −ELBO, reconstruction and KL of train, validation and test
///   (`neg_elbo/test`, …), `train/objective`, `kl_weight`, `learning_rate`, `images_per_second`,
///   `seconds_per_epoch`, `active_units`, `kl_per_dimension/z01`, …; and two pictures:
///   `samples/prior` (decoded from the same z every epoch) and `reconstructions/test` — every
///   epoch of a run of up to 100 epochs, at spaced epochs in a longer one
///   (``Thinning/hasPictures(epoch:of:)``), so that the file does not grow by pictures forever.
///
/// Only the run's writer (rank 0) writes. A resumed run cuts the file after the checkpoint's
/// step and appends to it, so the history has no duplicates and no gaps.
public final class TensorBoardLog: TrainingObserver {
    public let every: Int
    private let pictures: EpochPictureCache
    private var file: EventFile?
    /// The step of the last `train/running_neg_elbo` written (or the step the run started at).
    private var lastLoggedStep = 0
    /// Seconds spent writing (pictures included), for the record of what the log costs.
    public private(set) var seconds = 0.0
    public private(set) var error: Error?

    /// `pictures` may be shared with other observers (the report's), so that each epoch's
    /// pictures are drawn once.
    public init(every: Int = 10, pictures: EpochPictureCache = EpochPictureCache()) {
        self.every = max(every, 1)
        self.pictures = pictures
    }

    /// `RUN/tensorboard`.
    public static func directory(_ folder: RunFolder) -> String { folder.path + "/tensorboard" }

    /// The run's event files, oldest first.
    public static func eventFiles(_ folder: RunFolder) -> [String] {
        let dir = directory(folder)
        return (Files.contents(ofDirectory: dir) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }.sorted().map { dir + "/" + $0 }
    }

    public func runStarted(_ run: TrainingRun, at state: TrainingState) {
        guard run.isWriter else { return }
        lastLoggedStep = state.step
        timed {
            let dir = Self.directory(run.folder)
            try Files.createDirectory(dir)
            if let last = Self.eventFiles(run.folder).last {
                try EventFile.truncate(last, keepingStepsUpTo: state.step)
                file = try EventFile(path: last)
            } else {
                var host = [CChar](repeating: 0, count: 256)
                gethostname(&host, host.count - 1)
                let name = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                file = try EventFile(path: "\(dir)/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(name.isEmpty ? "localhost" : name)")
            }
        }
    }

    public func stepDone(_ run: TrainingRun, _ progress: StepReport) {
        // At the first read-back of the running loss on or after each multiple of `every` (on the
        // CPU, which reads every step: exactly the multiples), at the step it counts up to.
        guard let file, progress.lossStep / every > lastLoggedStep / every, progress.runningLoss.isFinite else { return }
        lastLoggedStep = progress.lossStep
        timed { try file.scalars([("train/running_neg_elbo", progress.runningLoss)], step: progress.lossStep) }
    }

    public func epochDone(_ run: TrainingRun, _ e: EpochSummary) {
        guard let file else { return }
        let step = run.state.step
        timed {
            var values: [(String, Double)] = []
            for (split, loss) in [("train", e.train), ("validation", e.validation), ("test", e.test)] {
                guard let loss else { continue }
                values += [("neg_elbo/\(split)", loss.meanNegativeELBO), ("reconstruction/\(split)", loss.meanReconstruction), ("kl/\(split)", loss.meanKL)]
            }
            values += [
                ("train/objective", e.train.meanObjective), ("kl_weight", e.klWeight), ("learning_rate", Double(e.learningRate)),
                ("images_per_second", e.imagesPerSecond), ("seconds_per_epoch", e.seconds),
            ]
            if let latent = e.latent { values.append(("active_units", Double(latent.activeUnits()))) }
            let perDimension = e.latent?.klPerDimension ?? []
            let width = String(perDimension.count).count
            for (j, kl) in perDimension.enumerated() {
                let index = String(j + 1)
                values.append(("kl_per_dimension/z" + String(repeating: "0", count: max(0, width - index.count)) + index, kl))
            }
            try file.scalars(values, step: step)
            guard Thinning.hasPictures(epoch: e.epoch, of: run.config.training.epochs) else { return }
            for (tag, picture) in try pictures.pictures(run).all {
                try file.image(tag: tag, png: picture.png, width: picture.image.width, height: picture.image.height, channels: picture.image.channels, step: step)
            }
        }
    }

    private func timed(_ body: () throws -> Void) {
        let start = monotonicSeconds()
        do { try body() } catch {
            // The log is an extra: a failure stops the log (said once), not the training.
            if self.error == nil { FileHandle.standardError.write(Data("vae: TensorBoard log stopped: \(error)\n".utf8)) }
            self.error = error
            file = nil
        }
        seconds += monotonicSeconds() - start
    }
}

/// The pictures of a run's model as it is after an epoch, as images and PNG bytes: prior
/// samples from the run's fixed z (the same every epoch, so they form a timelapse) and the first
/// test images' reconstructions.
public struct EpochPictures {
    public let samples: (image: Image, png: [UInt8])
    public let reconstructions: (image: Image, png: [UInt8])

    public init(_ run: TrainingRun) throws {
        let s = Pictures.runSamples(run.model, seed: run.config.training.seed)
        let r = Pictures.reconstructions(run.model, testSet: run.data.test, count: 16)
        samples = (s, try PNG.encode(s))
        reconstructions = (r, try PNG.encode(r))
    }

    public var all: [(String, (image: Image, png: [UInt8]))] { [("samples/prior", samples), ("reconstructions/test", reconstructions)] }
}

/// The current epoch's ``EpochPictures``, drawn once for all the observers that share it.
public final class EpochPictureCache {
    private var step = -1
    private var cached: EpochPictures?

    public init() {}

    /// The pictures of the model at `run.state.step` (drawn on the first call at that step).
    public func pictures(_ run: TrainingRun) throws -> EpochPictures {
        if let cached, step == run.state.step { return cached }
        let drawn = try EpochPictures(run)
        (cached, step) = (drawn, run.state.step)
        return drawn
    }
}
