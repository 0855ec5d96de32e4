import Foundation
import Imaging
import Testing
import TestSupport

// TensorBoard event files read back with TensorBoard's own reader (the `tensorboard` Python
// package), and the HTML report opened in headless Chromium with the network off. Both are
// installed by scripts/setup.sh.

let tensorboardPython: String? = {
    guard let result = try? run("/usr/bin/env", ["python3", "-c", "import tensorboard"]), result.status == 0 else { return nil }
    return "/usr/bin/env"
}()

let chromiumPath = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// Every scalar and image series of a TensorBoard log folder, through `EventAccumulator`:
/// {"scalars": {tag: [[step, value], …]}, "images": {tag: [[step, width, height], …]}}.
func readTensorBoard(_ logdir: String) throws -> [String: [String: [[Double]]]] {
    let script = """
        import json, sys
        import glob
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        ea = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'images': 0})
        ea.Reload()
        tags = ea.Tags()
        out = {'scalars': {t: [[e.step, e.value] for e in ea.Scalars(t)] for t in tags['scalars']},
               'images': {t: [[e.step, e.width, e.height] for e in ea.Images(t)] for t in tags['images']}}
        # Every event as written, without the accumulator's purge of steps that repeat.
        raw = {}
        for f in sorted(glob.glob(sys.argv[1] + '/events.out.tfevents.*')):
            for e in EventFileLoader(f).Load():
                for v in e.summary.value:
                    raw.setdefault(v.tag, []).append([e.step])
        out['raw'] = raw
        print(json.dumps(out))
        """
    let result = try run("/usr/bin/env", ["python3", "-c", script, logdir])
    #expect(result.status == 0, "TensorBoard's reader failed: \(result.stderr)")
    let line = result.stdout.split(separator: "\n").last.map(String.init) ?? "{}"
    return (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: [[Double]]]]) ?? [:]
}

/// metrics.csv as rows of column → value.
func metricsRows(_ run: String) throws -> [[String: Double]] {
    let lines = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n")
    let header = lines[0].split(separator: ",").map(String.init)
    return lines.dropFirst().map { line in
        var row: [String: Double] = [:]
        for (name, field) in zip(header, line.split(separator: ",", omittingEmptySubsequences: false)) { row[name] = Double(field) }
        return row
    }
}

/// A run killed with SIGKILL at an arbitrary moment and resumed: TensorBoard's reader sees one
/// history — every step once, in order, no gaps — whose epoch scalars are metrics.csv's, with
/// the pictures of every epoch; and the report shows every epoch once.
@Test(.enabled(if: tensorboardPython != nil, "needs the tensorboard Python package (scripts/setup.sh installs it)"))
func tensorBoardReadsAResumedRunAsOneHistory() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    // 96 images: 72 train (batch 12 → 6 steps per epoch) after the 25% validation split.
    // Checkpoints at the ends of epochs (every 6 steps) and the running loss every 10 steps: a
    // kill often leaves events past the last checkpoint, which the resumed run must not repeat.
    let arguments = ["train", "--data-dir", dir, "--dataset", "mnist", "--epochs", "20", "--batch-size", "12", "--hidden", "16", "--latent", "3",
                     "--threads", "1", "--validation-split", "0.25"]
    let epochs = 20
    let run = dir + "/run"
    let process = try startVAE(arguments + ["--out", run])
    waitFor(run + "/timelapse/samples-epoch-0004.png")
    usleep(UInt32.random(in: 0..<40_000))
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let resumed = try vae(["train", "--resume", run, "--threads", "1"])
    #expect(resumed.status == 0, "\(resumed.stderr)")

    let files = try FileManager.default.contentsOfDirectory(atPath: run + "/tensorboard")
    #expect(files.count == 1 && files[0].hasPrefix("events.out.tfevents."), "\(files)")
    let log = try readTensorBoard(run + "/tensorboard")
    let scalars = log["scalars"] ?? [:], images = log["images"] ?? [:]
    let rows = try metricsRows(run)
    #expect(rows.count == epochs)
    let steps = 6
    // The running loss every 10 steps: each step once, in order, in the file as written.
    let running = scalars["train/running_neg_elbo"]?.map { Int($0[0]) } ?? []
    #expect(running == Array(stride(from: 10, through: epochs * steps, by: 10)), "running-loss steps \(running)")
    for (tag, events) in log["raw"] ?? [:] {
        let written = events.map { Int($0[0]) }
        #expect(written == written.sorted() && Set(written).count == written.count, "\(tag) written at steps \(written)")
    }
    // The epoch scalars: one per epoch at its last step, equal to metrics.csv (float32 in the log).
    for (tag, column) in [("neg_elbo/test", "test_neg_elbo"), ("neg_elbo/validation", "validation_neg_elbo"), ("kl/train", "train_kl"),
                          ("learning_rate", "learning_rate"), ("active_units", "active_units"), ("kl_per_dimension/z2", "kl_dim_2")] {
        let series = scalars[tag] ?? []
        #expect(series.map { Int($0[0]) } == (1...epochs).map { $0 * steps }, "\(tag) steps \(series.map { $0[0] })")
        for (point, row) in zip(series, rows) {
            #expect(abs(point[1] - row[column]!) <= 1e-4 * max(1, abs(row[column]!)), "\(tag) \(point) against \(column) \(row[column]!)")
        }
    }
    // Pictures of every epoch, as large as the files the run wrote.
    let samples = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/timelapse/samples-epoch-0020.png"))))
    for tag in ["samples/prior", "reconstructions/test"] {
        #expect(images[tag]?.map { Int($0[0]) } == (1...epochs).map { $0 * steps }, "\(tag): \(images[tag] ?? [])")
    }
    #expect(images["samples/prior"]?.last.map { [Int($0[1]), Int($0[2])] } == [samples.width, samples.height])
    // The report: every epoch once, the run finished.
    let html = try String(contentsOfFile: run + "/report.html", encoding: .utf8)
    let data = try reportData(html)
    #expect(data["epochs"] as? Int == epochs)
    // The metrics the page carries (metrics.csv verbatim): every epoch once, in order.
    let csv = html.components(separatedBy: "<script type=\"text/csv\" id=\"metrics\">").last?.components(separatedBy: "</script>").first ?? ""
    let reported = csv.split(separator: "\n").dropFirst().map { Int($0.prefix { $0 != "," }) }
    #expect(reported == (1...epochs).map { $0 })
    #expect(data["state"] as? String == "finished")
    #expect(!html.contains("http-equiv=\"refresh\""), "a finished run's report does not reload itself")
}

/// The JSON a report carries in its `run-data` script element.
func reportData(_ html: String) throws -> [String: Any] {
    guard let start = html.range(of: "<script type=\"application/json\" id=\"run-data\">"),
          let end = html.range(of: "</script>", range: start.upperBound..<html.endIndex) else { return [:] }
    let json = html[start.upperBound..<end.lowerBound].replacingOccurrences(of: "<\\/", with: "</")
    let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
    return (object as? [String: Any]) ?? ["runs": object]
}

/// What headless Chromium saw of a page, with the network off: each chart and how many of its
/// lines have length (or cells are filled), each image and whether it decoded, every resource
/// requested, and every script error or console error.
func openInChromium(_ page: String, screenshot: String? = nil) throws -> [String: Any] {
    let html = try String(contentsOfFile: page, encoding: .utf8)
    let probe = """
        <script>
        window.__errors = [];
        window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
        const consoleError = console.error;
        console.error = (...a) => { window.__errors.push(a.join(' ')); consoleError(...a); };
        document.addEventListener('securitypolicyviolation', e => window.__errors.push('blocked ' + e.blockedURI));
        window.addEventListener('load', () => {
          const charts = [...document.querySelectorAll('svg.chart')].map(s => ({
            label: s.getAttribute('aria-label'),
            lines: [...s.querySelectorAll('path.series')].filter(p => p.getTotalLength() > 1).length,
            cells: s.querySelectorAll('rect[fill^="#"]').length }));
          const images = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));
          const resources = performance.getEntriesByType('resource').map(r => r.name);
          const pre = document.createElement('pre');
          pre.id = 'probe';
          pre.textContent = JSON.stringify({charts, images, resources, errors: window.__errors});
          document.body.appendChild(pre);
        });
        </script>
        """
    let probed = page + ".probe.html"
    try html.replacingOccurrences(of: "<head>", with: "<head>" + probe).write(toFile: probed, atomically: true, encoding: .utf8)
    let offline = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",
                   "--proxy-server=127.0.0.1:9", "--virtual-time-budget=10000"]
    let dom = try run(chromiumPath!, offline + ["--dump-dom", "file://" + probed])
    #expect(dom.status == 0, "chromium failed: \(dom.stderr)")
    if let screenshot {
        let shot = try run(chromiumPath!, offline + ["--hide-scrollbars", "--window-size=1280,2400", "--screenshot=" + screenshot, "file://" + page])
        #expect(shot.status == 0, "chromium failed: \(shot.stderr)")
    }
    guard let start = dom.stdout.range(of: "<pre id=\"probe\">"), let end = dom.stdout.range(of: "</pre>", range: start.upperBound..<dom.stdout.endIndex) else {
        Issue.record("the page's probe did not run: \(dom.stdout.prefix(400))")
        return [:]
    }
    let text = dom.stdout[start.upperBound..<end.lowerBound]
        .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&")
    return (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
}

/// Chromium's view of a page: every chart drew, every image decoded, nothing was fetched, no errors.
func expectRendered(_ seen: [String: Any], charts minimum: Int, images: Int, _ context: String) {
    let charts = seen["charts"] as? [[String: Any]] ?? []
    #expect(charts.count >= minimum, "\(context): \(charts.count) charts")
    for chart in charts {
        let drawn = (chart["lines"] as? Int ?? 0) + (chart["cells"] as? Int ?? 0)
        #expect(drawn > 0, "\(context): chart \(chart["label"] ?? "?") drew nothing")
    }
    let pictures = seen["images"] as? [[String: Any]] ?? []
    #expect(pictures.count >= images, "\(context): \(pictures.count) images")
    for picture in pictures { #expect(picture["ok"] as? Bool == true, "\(context): image \(picture["alt"] ?? "?") did not decode") }
    #expect((seen["resources"] as? [String])?.isEmpty == true, "\(context): requested \(seen["resources"] ?? [])")
    #expect((seen["errors"] as? [String])?.isEmpty == true, "\(context): errors \(seen["errors"] ?? [])")
}

/// The report of a run and the comparison of three runs (β = 0.5, 1, 4), rendered by headless
/// Chromium with the network off; the screenshot is a real picture, not a blank page.
@Test(.enabled(if: chromiumPath != nil, "needs Chromium (scripts/setup.sh installs it)"))
func reportsRenderInAHeadlessBrowser() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    var runs: [String] = []
    for beta in ["0.5", "1", "4"] {
        let run = dir + "/beta-" + beta
        let result = try vae(["train", "--data-dir", dir, "--out", run, "--beta", beta, "--validation-split", "0.25"] + smallTrainArguments + ["--epochs", "3"])
        #expect(result.status == 0, "\(result.stderr)")
        runs.append(run)
    }
    // An IS estimate recorded in the folder shows in the report.
    #expect(try vae(["eval", runs[1], "--iw-samples", "20", "--threads", "1"]).status == 0)
    let rewritten = try vae(["report", runs[1]])
    #expect(rewritten.status == 0 && rewritten.stdout.contains("report.html"), "\(rewritten.stderr)")
    let html = try String(contentsOfFile: runs[1] + "/report.html", encoding: .utf8)
    #expect(html.contains("log p(x)") && html.contains("K = 20 importance samples"))
    // Nothing in the page points outside it (the SVG namespace is a name, not a request).
    let external = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
    #expect(!external.contains("http://") && !external.contains("https://") && !external.contains("src=\"/") && !external.contains("@import"))

    let shot = dir + "/report.png"
    let seen = try openInChromium(runs[1] + "/report.html", screenshot: shot)
    // −ELBO, reconstruction, KL, objective (β ≠ 1 differs from −ELBO only for the other runs), learning rate, KL weight, active units, 2 speed, heat map.
    expectRendered(seen, charts: 9, images: 5, "report")
    let picture = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: shot))))
    #expect(picture.width == 1280 && picture.height == 2400)
    #expect(Set(picture.pixels).count > 20, "the screenshot is blank")

    let compare = dir + "/compare.html"
    let made = try vae(["report"] + runs + ["--out", compare])
    #expect(made.status == 0, "\(made.stderr)")
    let comparison = try String(contentsOfFile: compare, encoding: .utf8)
    // The setting that differs is marked; one that does not is not.
    #expect(comparison.range(of: "<tr class=\"differs\"><td>training.objective.beta</td>") != nil)
    #expect(comparison.range(of: "<tr class=\"differs\"><td>training.batchSize</td>") == nil && comparison.contains("<td>training.batchSize</td>"))
    expectRendered(try openInChromium(compare), charts: 6, images: 0, "comparison")
    // A folder that is not a run is refused in one line.
    let bad = try vae(["report", dir])
    #expect(bad.status != 0 && bad.stderr.contains("not a run folder"), "\(bad.stderr)")
}

/// Train on some classes, score the test set, separate the rest: the three commands of the
/// anomaly study, on the tiny set (labels 0–9; train on 0–7, the anomalies are 8 and 9).
@Test func scoreWritesEveryExampleAndSeparatesHeldOutClasses() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let run = dir + "/run"
    let trained = try vae(["train", "--data-dir", dir, "--out", run, "--classes", "0,1,2,3,4,5,6,7"] + smallTrainArguments)
    #expect(trained.status == 0, "\(trained.stderr)")
    // 96 training images labelled k mod 10: 78 of them have labels 0–7 (18 are 8 or 9).
    #expect(trained.stdout.contains("78 train / 40 test images"), "\(trained.stdout)")
    let csv = dir + "/scores.csv"
    let scored = try vae(["score", run, "--iw-samples", "8", "--anomaly-classes", "8,9", "--out", csv, "--threads", "1"])
    #expect(scored.status == 0, "\(scored.stderr)")
    let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
    #expect(lines.first == "index,label,log_px,neg_elbo,reconstruction,kl,mu_1,mu_2")
    #expect(lines.count == 41)
    // Each row: −ELBO = reconstruction + KL, and a finite log p(x).
    for line in lines.dropFirst() {
        let f = line.split(separator: ",").map { Double($0)! }
        #expect(abs(f[3] - (f[4] + f[5])) < 1e-6 * max(1, abs(f[3])) && f[2].isFinite)
    }
    #expect(scored.stdout.contains("separating 8 anomalies from 32 others"), "\(scored.stdout)")
    for name in ["−log p(x)", "−ELBO", "reconstruction NLL", "KL"] { #expect(scored.stdout.contains(name) && scored.stdout.contains("AUROC")) }
    let svg = try String(contentsOfFile: dir + "/scores-histogram.svg", encoding: .utf8)
    #expect(svg.contains("anomalies (8)") && svg.contains("others (32)"))
    // The same scores as NPY, and the same for another thread count.
    let npy = try vae(["score", run, "--iw-samples", "8", "--out", dir + "/scores.npy", "--threads", "2"])
    #expect(npy.status == 0, "\(npy.stderr)")
    let again = try vae(["score", run, "--iw-samples", "8", "--out", dir + "/again.csv", "--threads", "2"])
    #expect(again.status == 0, "\(again.stderr)")
    #expect(try String(contentsOfFile: dir + "/again.csv", encoding: .utf8) == String(contentsOfFile: csv, encoding: .utf8))
    // One clear line for what cannot work.
    let bad = try vae(["score", run, "--out", dir + "/x.txt"])
    #expect(bad.status != 0 && bad.stderr.contains("--out must end in .csv or .npy"))
    let none = try vae(["train", "--data-dir", dir, "--out", dir + "/none", "--classes", "42"] + smallTrainArguments)
    #expect(none.status != 0 && none.stderr.contains("no training image has a label in --classes 42"), "\(none.stderr)")
}
