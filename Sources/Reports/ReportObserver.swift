import Files
import Foundation
import Imaging
import Tensor
import Training

/// Keeps `RUN/report.html` current while a run trains, at a bounded cost: after an epoch that
/// has pictures (``Thinning/hasPictures(epoch:of:)``: every epoch of a run of up to 100) it saves
/// the prior samples (from the run's fixed z) to `RUN/timelapse/`, and it rewrites the report
/// atomically after an epoch when the time spent on the report so far is within ``budget`` of
/// the time since the run started — always after the last epoch, when the run starts and when it
/// ends. Only the run's writer (rank 0) writes.
public final class ReportObserver: TrainingObserver {
    /// Seconds spent (pictures included), for the record of what the report costs.
    public private(set) var seconds = 0.0
    public private(set) var error: Error?
    /// The share of the run's time the report may take (after the epochs it skips, it catches up).
    public let budget: Double
    private let pictures: EpochPictureCache
    private var started = monotonicSeconds()

    /// `pictures` may be shared with other observers (the TensorBoard log's), so that each
    /// epoch's pictures are drawn once.
    public init(pictures: EpochPictureCache = EpochPictureCache(), budget: Double = 0.01) {
        self.pictures = pictures
        self.budget = budget
    }

    public func runStarted(_ run: TrainingRun, at state: TrainingState) {
        started = monotonicSeconds()
        seconds = 0
        write(run)
    }

    public func epochDone(_ run: TrainingRun, _ summary: EpochSummary) {
        let epochs = run.config.training.epochs
        let pictured = Thinning.hasPictures(epoch: summary.epoch, of: epochs)
        let page = summary.epoch >= epochs || seconds <= budget * (monotonicSeconds() - started)
        guard pictured || page else { return }
        write(run, page: page) {
            guard pictured else { return }
            try Files.createDirectory(run.folder.timelapseDirectory)
            try Files.writeAtomically(try pictures.pictures(run).samples.png, to: run.folder.timelapsePath(epoch: summary.epoch), durable: false)
        }
    }

    public func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { write(run) }

    private func write(_ run: TrainingRun, page: Bool = true, before: () throws -> Void = {}) {
        guard run.isWriter, error == nil else { return }
        let start = monotonicSeconds()
        do {
            try before()
            if page { try HTMLReport.write(run.folder) }
        } catch {
            // The report is an extra: a failure stops it (said once), not the training.
            FileHandle.standardError.write(Data("vae: report.html no longer updated: \(error)\n".utf8))
            self.error = error
        }
        seconds += monotonicSeconds() - start
    }
}
