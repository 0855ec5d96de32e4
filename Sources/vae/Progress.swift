#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Tensor
import Training

/// How `vae train` shows progress (`--progress`).
enum ProgressStyle: String, ExpressibleByArgument, CaseIterable {
    /// A bar on a terminal; plain lines otherwise, and always under mpirun (whose ranks write
    /// to a pseudo-terminal even when the job's output goes to a file).
    case auto
    /// A bar redrawn in place (carriage returns and ANSI escapes).
    case bar
    /// A plain line every few seconds.
    case lines
    /// No step progress; the line after each epoch stays.
    case none

    /// The style `auto` stands for in this process.
    func resolved(underMPI: Bool) -> ProgressStyle {
        guard self == .auto else { return self }
        return isatty(STDOUT_FILENO) != 0 && !underMPI ? .bar : .lines
    }
}

/// Draws training progress from the run's reports: a live bar, or a plain line every few
/// seconds, and one line per epoch.
final class TrainingProgress: TrainingObserver {
    let epochs: Int
    private var bar: ProgressBar

    init(epochs: Int, style: ProgressStyle) {
        self.epochs = epochs
        bar = ProgressBar(style: style)
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
        print("epoch \(e.epoch)/\(epochs)  train −ELBO \(fixed(e.train.meanNegativeELBO, 2))\(validation)\(e.test.map { "  test −ELBO \(fixed($0.meanNegativeELBO, 2)) (reconstruction \(fixed($0.meanReconstruction, 2)) + KL \(fixed($0.meanKL, 2)))" } ?? "")  lr \(e.learningRate)  \(fixed(e.seconds, 2)) s  \(Int(e.imagesPerSecond)) img/s")
    }

    func runEnded(_ run: TrainingRun, _ outcome: TrainingOutcome) { bar.end() }
}

/// A progress bar with ETA redrawn on a terminal, or plain lines at most every
/// `lineInterval` seconds.
struct ProgressBar {
    let style: ProgressStyle
    var lineInterval = 5.0
    private var lastDraw = -1.0
    private var lastLine = monotonicSeconds()

    init(style: ProgressStyle = .auto) { self.style = style.resolved(underMPI: MPICommunicator.launchedByMPI) }

    mutating func update(done: Int, of total: Int, elapsed: Double, text: String) {
        let remaining = Double(total - done) * elapsed / Double(max(done, 1))
        let line = "\(text)  ETA \(clock(remaining))"
        switch style {
        case .bar:
            guard elapsed - lastDraw > 0.1 || done == total else { return }
            lastDraw = elapsed
            let width = 24
            let filled = width * done / max(total, 1)
            print("\r\u{1B}[2K[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "] " + line, terminator: "")
            fflush(stdout)
        case .lines, .auto:
            let now = monotonicSeconds()
            guard now - lastLine >= lineInterval, done < total else { return }
            lastLine = now
            print(line)
        case .none:
            break
        }
    }

    mutating func end() {
        if style == .bar && lastDraw >= 0 { print("\r\u{1B}[2K", terminator: "") }
        lastDraw = -1
    }
}
