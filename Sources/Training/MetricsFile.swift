import Files
import Foundation
import VAE

/// `metrics.csv`: one row per epoch. The first row a process adds rewrites the file atomically
/// (the header and the rows a resumed run keeps); later rows are appended, so that an epoch's
/// cost does not grow with the rows before it. Losses are nats per image; the validation columns
/// are empty for a run without a validation split.
public struct MetricsFile {
    public let path: String
    private var lines: [String]
    private var isWhole = false
    private let latentDimension: Int

    public static func columns(latentDimension: Int) -> [String] {
        ["epoch", "train_neg_elbo", "train_reconstruction", "train_kl", "train_objective",
         "validation_neg_elbo", "validation_reconstruction", "validation_kl",
         "test_neg_elbo", "test_reconstruction", "test_kl", "learning_rate", "seconds", "images_per_second",
         "kl_weight", "active_units"] + (1...max(latentDimension, 1)).map { "kl_dim_\($0)" }
    }

    public init(path: String, latentDimension: Int) {
        self.path = path
        self.latentDimension = max(latentDimension, 1)
        lines = [Self.columns(latentDimension: latentDimension).joined(separator: ",")]
    }

    /// Continues the file of an interrupted run, keeping the rows of its `completedEpochs` epochs.
    public init(resuming path: String, latentDimension: Int, completedEpochs: Int) throws {
        self.init(path: path, latentDimension: latentDimension)
        guard Files.exists(path) else { return }
        let text = String(decoding: try Files.read(path, limit: 1 << 26), as: UTF8.self)
        let all = text.split(separator: "\n")
        let rows = all.dropFirst().filter { row in
            guard let epoch = Int(row.prefix { $0 != "," }) else { return false }
            return epoch <= completedEpochs
        }
        // Rows written under other columns (an older version's file) are moved to these columns
        // by name; a column the old file lacks stays empty.
        let columns = Self.columns(latentDimension: latentDimension)
        let old = all.first.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? columns
        let position = Dictionary(old.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        lines += rows.map { row in
            guard old != columns else { return String(row) }
            let fields = row.split(separator: ",", omittingEmptySubsequences: false)
            return columns.map { name in position[name].flatMap { $0 < fields.count ? String(fields[$0]) : nil } ?? "" }.joined(separator: ",")
        }
    }

    public mutating func append(_ e: EpochSummary) throws {
        func terms(_ l: LossBreakdown?) -> [String] {
            guard let l else { return ["", "", ""] }
            return [l.meanNegativeELBO, l.meanReconstruction, l.meanKL].map { fixed($0, 4) }
        }
        let train = [e.train.meanNegativeELBO, e.train.meanReconstruction, e.train.meanKL, e.train.meanObjective].map { fixed($0, 4) }
        let latent = e.latent.map { ["\($0.activeUnits())"] + $0.klPerDimension.map { fixed($0, 4) } }
            ?? Array(repeating: "", count: 1 + latentDimension)
        let tail = ["\(e.learningRate)", fixed(e.seconds, 3), fixed(e.imagesPerSecond, 0), fixed(e.klWeight, 4)] + latent
        let row = (["\(e.epoch)"] + train + terms(e.validation) + terms(e.test) + tail).joined(separator: ",")
        lines.append(row)
        if isWhole, Files.exists(path) {
            try Files.append(row + "\n", to: path)
        } else {
            try Files.writeAtomically(lines.joined(separator: "\n") + "\n", to: path)
            isWhole = true
        }
    }
}

/// `value` with `digits` decimals.
public func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "\(value)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let r = (abs(value) * scale).rounded() / scale
    let whole = Int(r)
    var frac = String(Int(((r - Double(whole)) * scale).rounded()))
    while frac.count < digits { frac = "0" + frac }
    return (value < 0 && r != 0 ? "-" : "") + "\(whole)" + (digits > 0 ? ".\(frac)" : "")
}

/// Seconds as m:ss, or h:mm:ss from an hour on ("-" if not finite).
public func clock(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "-" }
    let s = Int(seconds.rounded())
    func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return s >= 3600 ? "\(s / 3600):\(two(s / 60 % 60)):\(two(s % 60))" : "\(s / 60):\(two(s % 60))"
}
