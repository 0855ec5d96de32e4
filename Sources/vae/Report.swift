import ArgumentParser
import Files
import Foundation
import Reports
import Tensor
import Training

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run's self-contained HTML report, or compare several runs in one page.",
        discussion: """
            With one run folder, writes RUN/report.html (what `vae train` keeps current after \
            every epoch): the run's settings, machine and state, the −ELBO, reconstruction and KL \
            curves of train, validation and test, learning rate, KL weight, active units, the KL of \
            each latent dimension over the epochs, the prior samples of every epoch (the same z), \
            the final pictures, speed, and log p(x) if `vae eval --iw-samples` was run on it. \
            Works for any run folder, old ones included.

            With several run folders, writes one page (--out, default compare.html) that overlays \
            their curves and sets their settings side by side, marking the ones that differ.

            The page needs nothing but a browser: charts are inline SVG, pictures are embedded, \
            and it loads nothing from the network.
            """
    )

    @Argument(help: ArgumentHelp("Run folders written by `vae train`.", valueName: "run"))
    var runs: [String]

    @Option(help: ArgumentHelp("Where to write the page (default: RUN/report.html for one run, compare.html for several).", valueName: "file.html"))
    var out: String?

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give at least one run folder") }
    }

    func run() throws {
        let start = monotonicSeconds()
        var bar = runs.count > 3 ? ProgressBar() : nil
        var data: [RunData] = []
        for (i, path) in runs.enumerated() {
            data.append(try RunData(RunFolder(path: path)))
            bar?.update(done: i + 1, of: runs.count, elapsed: monotonicSeconds() - start, text: "read \(i + 1)/\(runs.count) runs")
        }
        bar?.end()
        let target = out ?? (runs.count == 1 ? data[0].folder.reportPath : "compare.html")
        let html = runs.count == 1 ? HTMLReport.run(data[0]) : HTMLReport.compare(data)
        try Files.writeAtomically(html, to: target)
        print("wrote \(target) (\(html.utf8.count / 1024) KiB)")
    }
}
