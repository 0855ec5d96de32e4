import Files
import Foundation
import Training

/// The self-contained HTML report of a run (`RUN/report.html`) and the comparison of several
/// runs: one file with no network use at all — charts are inline SVG, pictures data URIs, the
/// style sheet inline, no scripts but inert data for other tools: `run-data` (JSON: the run's
/// folder, state and log p(x)) and `metrics` (the run's metrics.csv, verbatim).
public enum HTMLReport {
    /// At most this many timelapse frames are shown (evenly spaced, first and last included).
    public static let maximumFrames = 24

    /// The report of one run.
    public static func run(_ run: RunData) -> String {
        var body = ""
        let status = run.status
        let stateText = run.folder.stateDescription
        body += "<header><h1>\(escape(run.name))</h1><p class=\"state \(escape(status?.state.rawValue ?? "unknown"))\">\(escape(stateText))</p></header>"

        // The run.
        var facts: [(String, String)] = []
        if let c = run.config {
            let t = c.training
            facts += [
                ("model", "\(c.model.summary), \(c.model.activation.rawValue), \(Int(c.model.parameterCount)) parameters"),
                ("likelihood", c.model.likelihood.rawValue + (c.model.likelihood == .bernoulli ? "" : " (σ \(c.model.gaussianSigma))")),
                ("objective", t.trainingObjective.summary),
                ("data", t.dataset + (t.binarize ? " (dynamically binarised)" : "") + (t.validationFraction > 0 ? ", \(label(t.validationFraction * 100))% held out for validation" : "")),
                ("training", "\(t.epochs) epochs, batch \(t.batchSize), \(t.optimizerConfig.summary) lr \(t.learningRate) (\(t.learningRateSchedule.summary))"),
                ("seed", "\(t.seed)"),
            ]
        }
        if let command = status?.command { facts.append(("command", command)) }
        if let last = status?.lastCommand, last != status?.command { facts.append(("last resumed by", last)) }
        if let machine = status?.machine { facts.append(("machine", machine)) }
        if let started = status?.started { facts.append(("started", started)) }
        facts.append(("status", stateText))
        if !run.metrics.isEmpty {
            let seconds = run.trainingSeconds
            let ips = run.metrics.compactMap { $0["images_per_second"] }
            facts.append(("training time", "\(clock(seconds)) over \(run.metrics.count) epochs (\(label(seconds / Double(run.metrics.count))) s per epoch, \(label(ips.reduce(0, +) / Double(max(ips.count, 1)))) images/s)"))
        }
        body += "<section><h2>The run</h2>" + table(facts) + "</section>"

        // Key figures.
        if let last = run.metrics.last(where: { $0["test_neg_elbo"] != nil }) ?? run.metrics.last {  // the last epoch evaluated on the test set
            var figures: [(String, String)] = [("test −ELBO after epoch \(Int(last["epoch"] ?? 0))", nats(last["test_neg_elbo"]))]
            if let r = last["test_reconstruction"], let k = last["test_kl"] { figures.append(("of which", "reconstruction \(nats(r)) + KL \(nats(k))")) }
            if let best = run.metrics.filter({ $0["validation_neg_elbo"] != nil }).min(by: { $0["validation_neg_elbo"]! < $1["validation_neg_elbo"]! }) {
                figures.append(("best validation −ELBO", "\(nats(best["validation_neg_elbo"])) (epoch \(Int(best["epoch"] ?? 0)))"))
            }
            if let u = last["active_units"] { figures.append(("active units", "\(Int(u)) of \(run.klDimensions.count)")) }
            if let l = run.likelihood {
                figures.append(("log p(x)", "\(nats(l.logLikelihood)) ± \(nats(l.standardError)) nats per image (K = \(l.samples) importance samples, \(l.images) test images, \(l.weights) weights; ± is the standard error)"))
                figures.append(("gap to the ELBO", "\(nats(l.gap)) nats per image (log p(x) − ELBO on the same images)"))
            }
            body += "<section><h2>Results</h2>" + table(figures) + "</section>"
        }

        // Curves.
        let splits = [("train", false), ("validation", true), ("test", false)]
        let points = Thinning.maximumPoints  // a 3,000-epoch run draws as many as a 400-epoch one
        func curves(_ quantity: String, _ title: String, _ yLabel: String) -> String {
            LineChart(title: title, xLabel: "epoch", yLabel: yLabel, series: splits.map { LineChart.Series($0.0, run.series("\($0.0)_\(quantity)", maximumPoints: points), dashed: $0.1) }).svg
        }
        var charts = [
            curves("neg_elbo", "−ELBO", "nats per image"),
            curves("reconstruction", "Reconstruction −log p(x|z)", "nats per image"),
            curves("kl", "KL(q(z|x) ‖ p(z))", "nats per image"),
            LineChart(title: "Learning rate", xLabel: "epoch", yLabel: "learning rate", series: [.init("learning rate", run.series("learning_rate", maximumPoints: points))]).svg,
            LineChart(title: "KL weight (β, warm-up)", xLabel: "epoch", yLabel: "weight", series: [.init("KL weight", run.series("kl_weight", maximumPoints: points))], logarithmic: false).svg,
            LineChart(title: "Active units", xLabel: "epoch", yLabel: "dimensions", series: [.init("active units", run.series("active_units", maximumPoints: points))], logarithmic: false).svg,
            LineChart(title: "Speed: seconds per epoch", xLabel: "epoch", yLabel: "seconds", series: [.init("seconds per epoch", run.series("seconds", maximumPoints: points))], logarithmic: false).svg,
            LineChart(title: "Speed: images per second", xLabel: "epoch", yLabel: "images/s", series: [.init("images/s", run.series("images_per_second", maximumPoints: points))], logarithmic: false).svg,
        ]
        if run.metrics.contains(where: { row in
            guard let objective = row["train_objective"], let elbo = row["train_neg_elbo"] else { return false }
            return abs(objective - elbo) > 1e-6
        }) {
            charts.insert(LineChart(title: "Minimised objective (train)", xLabel: "epoch", yLabel: "nats per image", series: [.init("objective", run.series("train_objective", maximumPoints: points))]).svg, at: 1)
        }
        body += "<section><h2>Training curves</h2><div class=\"charts\">" + charts.joined() + "</div></section>"

        // The latent space.
        let dims = run.klDimensions
        if !dims.isEmpty {
            let evaluated = run.metrics.filter { $0[dims[0]] != nil }  // epochs with test statistics (see --test-every)
            let rows = Thinning.indices(count: evaluated.count, maximum: Thinning.maximumHeatMapColumns).map { evaluated[$0] }
            let epochs = rows.compactMap { $0["epoch"] }
            let values = dims.map { d in rows.map { $0[d] ?? .nan } }
            let map = HeatMap(title: "KL per latent dimension, test set", rowLabels: dims.map { "z" + $0.dropFirst("kl_dim_".count) }, columns: epochs, values: values, unit: "nats")
            body += "<section><h2>Latent dimensions</h2><div class=\"charts\">" + map.svg + "</div></section>"
        }

        // Pictures.
        var pictures = ""
        let frames = timelapseFrames(run)
        if !frames.isEmpty {
            pictures += "<h3>Prior samples after each epoch (the same z every epoch)</h3><div class=\"timelapse\">"
            for (epoch, uri) in frames { pictures += "<figure><img src=\"\(uri)\" alt=\"samples after epoch \(epoch)\"><figcaption>epoch \(epoch)</figcaption></figure>" }
            pictures += "</div>"
        }
        for (title, path) in [("Samples of the final model", run.folder.samplesPath), ("Test images (rows of originals) and their reconstructions", run.folder.reconstructionsPath)] {
            if let uri = dataURI(path) { pictures += "<h3>\(escape(title))</h3><img class=\"picture\" src=\"\(uri)\" alt=\"\(escape(title))\">" }
        }
        if !pictures.isEmpty { body += "<section><h2>Pictures</h2>" + pictures + "</section>" }

        body += "<section><h2>All settings (config.json)</h2>" + table(run.settings.map { ($0.key, $0.value) }) + "</section>"
        body += "<script type=\"application/json\" id=\"run-data\">" + json(run) + "</script>"
        body += "<script type=\"text/csv\" id=\"metrics\">" + inert(run.metricsText) + "</script>"
        return page(title: "\(run.name) — swift-vae report", live: run.isLive, body: body)
    }

    /// Several runs side by side: their curves overlaid, their settings in one table with the
    /// ones that differ marked.
    public static func compare(_ runs: [RunData]) -> String {
        var body = "<header><h1>Comparison of \(runs.count) runs</h1><p>" + runs.map { escape($0.folder.path) }.joined(separator: " · ") + "</p></header>"
        var results: [[String]] = [["run", "state", "epochs", "final test −ELBO", "best validation −ELBO", "log p(x)", "training time"]]
        for r in runs {
            let last = r.metrics.last(where: { $0["test_neg_elbo"] != nil }) ?? r.metrics.last
            let best = r.metrics.compactMap { $0["validation_neg_elbo"] }.min()
            results.append([
                r.name, r.folder.stateDescription, "\(r.metrics.count)", nats(last?["test_neg_elbo"]), best.map { nats($0) } ?? "–",
                r.likelihood.map { "\(nats($0.logLikelihood)) ± \(nats($0.standardError)) (K = \($0.samples))" } ?? "–", clock(r.trainingSeconds),
            ])
        }
        body += "<section><h2>Results</h2>" + grid(results, marked: []) + "</section>"
        func overlay(_ column: String, _ title: String, _ unit: String) -> String {
            LineChart(title: title, xLabel: "epoch", yLabel: unit, series: runs.map { .init($0.name, $0.series(column, maximumPoints: Thinning.maximumPoints)) }).svg
        }
        let charts = [
            overlay("test_neg_elbo", "Test −ELBO", "nats per image"), overlay("train_neg_elbo", "Train −ELBO", "nats per image"),
            overlay("test_reconstruction", "Test reconstruction", "nats per image"), overlay("test_kl", "Test KL", "nats per image"),
            overlay("active_units", "Active units", "dimensions"), overlay("learning_rate", "Learning rate", "learning rate"),
        ]
        body += "<section><h2>Curves</h2><div class=\"charts\">" + charts.joined() + "</div></section>"
        // Settings: every key any run has; rows whose values differ are marked.
        var keys: [String] = []
        for r in runs { for s in r.settings where !keys.contains(s.key) { keys.append(s.key) } }
        keys.sort()
        var rows: [[String]] = [["setting"] + runs.map(\.name)]
        var marked: Set<Int> = []
        for key in keys where key != "runID" {
            let values = runs.map { r in r.settings.first { $0.key == key }?.value ?? "–" }
            if Set(values).count > 1 { marked.insert(rows.count) }
            rows.append([key] + values)
        }
        body += "<section><h2>Settings</h2><p>Rows marked <span class=\"differs\">like this</span> differ between the runs.</p>" + grid(rows, marked: marked) + "</section>"
        let data = "[" + runs.map { json($0) }.joined(separator: ",") + "]"
        body += "<script type=\"application/json\" id=\"run-data\">" + data + "</script>"
        for r in runs { body += "<script type=\"text/csv\" class=\"metrics\" data-run=\"\(escape(r.folder.path))\">" + inert(r.metricsText) + "</script>" }
        return page(title: "swift-vae: comparison of \(runs.count) runs", live: runs.contains { $0.isLive }, body: body)
    }

    /// Writes `RUN/report.html` (atomically: a reader never sees half a page; not forced to the
    /// disk, since `vae report` can always write it again).
    public static func write(_ folder: RunFolder) throws {
        try Files.writeAtomically(run(try RunData(folder)), to: folder.reportPath, durable: false)
    }

    // MARK: - Pieces

    static func timelapseFrames(_ run: RunData) -> [(Int, String)] {
        let epochs = run.metrics.compactMap { $0["epoch"].map { Int($0) } }.filter { Files.exists(run.folder.timelapsePath(epoch: $0)) }
        guard !epochs.isEmpty else { return [] }
        let chosen = Thinning.indices(count: epochs.count, maximum: maximumFrames).map { epochs[$0] }
        return chosen.compactMap { e in dataURI(run.folder.timelapsePath(epoch: e)).map { (e, $0) } }
    }

    static func dataURI(_ path: String) -> String? {
        guard let bytes = try? Files.read(path, limit: 1 << 26) else { return nil }
        return "data:image/png;base64," + Data(bytes).base64EncodedString()
    }

    static func nats(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "–" }

    static func table(_ rows: [(String, String)]) -> String {
        "<table class=\"facts\">" + rows.map { "<tr><th>\(escape($0.0))</th><td>\(escape($0.1))</td></tr>" }.joined() + "</table>"
    }

    static func grid(_ rows: [[String]], marked: Set<Int>) -> String {
        var out = "<table class=\"grid\">"
        for (i, row) in rows.enumerated() {
            let cell = i == 0 ? "th" : "td"
            out += "<tr\(marked.contains(i) ? " class=\"differs\"" : "")>" + row.map { "<\(cell)>\(escape($0))</\(cell)>" }.joined() + "</tr>"
        }
        return out + "</table>"
    }

    /// The run's folder, state and log p(x) as JSON, safe inside a script element.
    static func json(_ run: RunData) -> String {
        var object: [String: Any] = ["run": run.folder.path, "state": run.status?.state.rawValue ?? "unknown", "epochs": run.metrics.count]
        if let l = run.likelihood { object["log_px"] = ["mean": l.logLikelihood, "stderr": l.standardError, "samples": l.samples, "gap": l.gap] }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return inert(String(decoding: data, as: UTF8.self))
    }

    /// Text that cannot end the script element it is in.
    static func inert(_ text: String) -> String {
        text.utf8.contains(UInt8(ascii: "<")) ? text.replacingOccurrences(of: "</", with: "<\\/") : text  // metrics.csv has none: no pass over megabytes
    }

    static func page(title: String, live: Bool, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="generator" content="swift-vae">
        \(live ? "<meta http-equiv=\"refresh\" content=\"15\">" : "")
        <title>\(escape(title))</title>
        <style>
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1b1b1b; margin: 0 auto; padding: 16px 24px 48px; max-width: 1240px; background: #fff; }
        h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 14px; margin: 16px 0 8px; }
        .state { display: inline-block; margin: 0; padding: 2px 10px; border-radius: 10px; background: #eee; }
        .state.running { background: #dbeafe; } .state.finished { background: #dcfce7; } .state.stopped, .state.failed { background: #fee2e2; }
        table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 3px 12px 3px 0; }
        table.facts th { color: #555; font-weight: normal; white-space: nowrap; } table.facts td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; word-break: break-all; }
        table.grid td, table.grid th { border-bottom: 1px solid #eee; padding: 3px 14px 3px 4px; font-size: 13px; }
        tr.differs td, span.differs { background: #fff3c4; font-weight: 600; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px 20px; }
        svg.chart { background: #fff; font-family: system-ui, "DejaVu Sans", sans-serif; }
        svg .title { font-size: 13px; font-weight: 600; fill: #222; } svg .tick { font-size: 11px; fill: #444; } svg .axislabel { font-size: 12px; fill: #333; } svg .note { font-size: 13px; fill: #888; }
        svg .frame { fill: none; stroke: #bbb; } svg .grid { stroke: #eee; } svg .axis { stroke: #999; } svg .legend { fill: #fff; fill-opacity: 0.85; stroke: #ccc; }
        .timelapse { display: flex; flex-wrap: wrap; gap: 8px; } figure { margin: 0; } figcaption { font-size: 11px; color: #555; text-align: center; }
        .timelapse img { width: 168px; image-rendering: pixelated; border: 1px solid #ddd; } img.picture { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
        </style></head>
        <body>
        \(body)
        <footer><p style="color:#777;font-size:12px;margin-top:32px">Written by swift-vae\(live ? "; this page reloads itself every 15 s while the run trains" : "").</p></footer>
        </body></html>

        """
    }
}
