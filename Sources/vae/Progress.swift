#if canImport(Glibc)
import Glibc
#endif
import VAE

/// Reports training progress: a live bar on a terminal, a few plain lines otherwise.
struct ProgressReporter {
    let epochs: Int
    let interactive = isatty(STDOUT_FILENO) != 0
    private var lastDraw = 0.0
    private var lastPlainQuarter = 0

    init(epochs: Int) { self.epochs = epochs }

    mutating func update(epoch: Int, progress: StepProgress, elapsed: Double) {
        let rate = Double(progress.imagesSeen) / max(elapsed, 1e-9)
        let remaining = Double(progress.stepsInEpoch - progress.step) * elapsed / Double(progress.step)
        let text = "epoch \(epoch)/\(epochs) step \(progress.step)/\(progress.stepsInEpoch)  loss \(fixed(progress.runningLoss, 2))  \(Int(rate)) img/s  ETA \(clock(remaining))"
        if interactive {
            guard elapsed - lastDraw > 0.1 || progress.step == progress.stepsInEpoch else { return }
            lastDraw = elapsed
            let width = 24
            let filled = width * progress.step / max(progress.stepsInEpoch, 1)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            print("\r\u{1B}[2K[\(bar)] \(text)", terminator: "")
            fflush(stdout)
        } else {
            let quarter = 4 * progress.step / max(progress.stepsInEpoch, 1)
            if quarter > lastPlainQuarter && quarter < 4 {
                lastPlainQuarter = quarter
                print(text)
            }
        }
    }

    mutating func endEpoch() {
        if interactive { print("\r\u{1B}[2K", terminator: "") }
        lastPlainQuarter = 0
        lastDraw = 0
    }
}

/// `value` with `digits` decimals.
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(value) * scale).rounded() / scale
    let whole = Int(r)
    var frac = String(Int(((r - Double(whole)) * scale).rounded()))
    while frac.count < digits { frac = "0" + frac }
    return (value < 0 && r != 0 ? "-" : "") + "\(whole)" + (digits > 0 ? ".\(frac)" : "")
}

/// Seconds as m:ss.
func clock(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "-" }
    let s = Int(seconds.rounded())
    let ss = s % 60
    return "\(s / 60):\(ss < 10 ? "0" : "")\(ss)"
}

/// Monotonic seconds.
func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
