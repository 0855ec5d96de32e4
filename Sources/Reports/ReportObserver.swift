import Files
import Foundation
import Imaging
import Tensor
import Training

/// Keeps `RUN/report.html` current while a run trains: after every epoch it saves the epoch's
/// prior samples (from the run's fixed z) to `RUN/timelapse/` and rewrites the report
/// atomically; also when the run starts and when it ends. Only the run's writer (rank 0) writes.
public final class ReportObserver: TrainingObserver {
    /// Seconds spent (pictures included), for the record of what the report costs.
    public private(set) var seconds = 0.0
    public private(set) var error: Error?
    private let pictures: EpochPictureCache

    /// `pictures` may be shared with other observers (the TensorBoard log's), so that each
    /// epoch's pictures are drawn once.
    public init(pictures: EpochPictureCache = EpochPictureCache()) { self.pictures = pictures }

    public func runStarted(_ run: TrainingRun, at state: TrainingState) { write(run) }

    public func epochDone(_ run: TrainingRun, _ summary: EpochSummary) {
        write(run) {
            try Files.createDirectory(run.folder.timelapseDirectory)
            try Files.writeAtomically(try pictures.pictures(run).samples.png, to: run.folder.timelapsePath(epoch: summary.epoch), durable: false)
        }
    }

    public func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { write(run) }

    private func write(_ run: TrainingRun, before: () throws -> Void = {}) {
        guard run.isWriter, error == nil else { return }
        let start = monotonicSeconds()
        do {
            try before()
            try HTMLReport.write(run.folder)
        } catch {
            // The report is an extra: a failure stops it (said once), not the training.
            FileHandle.standardError.write(Data("vae: report.html no longer updated: \(error)\n".utf8))
            self.error = error
        }
        seconds += monotonicSeconds() - start
    }
}
