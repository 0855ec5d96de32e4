#if canImport(Glibc)
import Glibc
#endif
import Training

/// Draws training progress from the run's reports: a live bar on a terminal, a few plain lines
/// otherwise, and one line per epoch.
final class TrainingProgress: TrainingObserver {
    let epochs: Int
    private var bar: ProgressBar

    init(epochs: Int) {
        self.epochs = epochs
        bar = ProgressBar()
    }

    func stepDone(_ run: TrainingRun, _ p: StepReport) {
        let rate = Double(p.imagesSeen) / max(p.elapsed, 1e-9)
        bar.update(
            done: p.step, of: p.stepsInEpoch, elapsed: p.elapsed,
            text: "epoch \(p.epoch)/\(epochs) step \(p.step)/\(p.stepsInEpoch)  loss \(fixed(p.runningLoss, 2))  \(Int(rate)) img/s")
    }

    func epochDone(_ run: TrainingRun, _ e: EpochSummary) {
        bar.end()
        let validation = e.validation.map { "  validation −ELBO \(fixed($0.meanNegativeELBO, 2))\(e.isBest ? " (best)" : "")" } ?? ""
        print("epoch \(e.epoch)/\(epochs)  train −ELBO \(fixed(e.train.meanNegativeELBO, 2))\(validation)  test −ELBO \(fixed(e.test.meanNegativeELBO, 2)) (reconstruction \(fixed(e.test.meanReconstruction, 2)) + KL \(fixed(e.test.meanKL, 2)))  lr \(e.learningRate)  \(fixed(e.seconds, 2)) s  \(Int(e.imagesPerSecond)) img/s")
    }

    func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { bar.end() }
}

/// A progress bar with ETA on a terminal; plain lines at each quarter otherwise.
struct ProgressBar {
    let interactive = isatty(STDOUT_FILENO) != 0
    private var lastDraw = -1.0
    private var lastPlainQuarter = 0

    mutating func update(done: Int, of total: Int, elapsed: Double, text: String) {
        let remaining = Double(total - done) * elapsed / Double(max(done, 1))
        let line = "\(text)  ETA \(clock(remaining))"
        if interactive {
            guard elapsed - lastDraw > 0.1 || done == total else { return }
            lastDraw = elapsed
            let width = 24
            let filled = width * done / max(total, 1)
            print("\r\u{1B}[2K[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "] " + line, terminator: "")
            fflush(stdout)
        } else {
            let quarter = 4 * done / max(total, 1)
            if quarter > lastPlainQuarter && quarter < 4 {
                lastPlainQuarter = quarter
                print(line)
            }
        }
    }

    mutating func end() {
        if interactive && lastDraw >= 0 { print("\r\u{1B}[2K", terminator: "") }
        lastPlainQuarter = 0
        lastDraw = -1
    }
}
