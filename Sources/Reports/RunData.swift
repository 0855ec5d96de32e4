import Files
import Foundation
import Training

extension RunFolder {
    /// `RUN/report.html`.
    public var reportPath: String { "\(path)/report.html" }
    /// `RUN/timelapse/`: the prior samples from the run's fixed z after each epoch.
    public var timelapseDirectory: String { "\(path)/timelapse" }
    public func timelapsePath(epoch: Int) -> String {
        let n = String(epoch)
        return "\(timelapseDirectory)/samples-epoch-\(String(repeating: "0", count: max(0, 4 - n.count)) + n).png"
    }
}

/// Everything a report shows of one run folder, read from its files (config.json, metrics.csv,
/// status.json, log-likelihood.json, the pictures): works for any run folder, old ones too.
public struct RunData {
    public let folder: RunFolder
    public let config: RunConfig?
    /// config.json flattened to (key path, value), sorted by key.
    public let settings: [(key: String, value: String)]
    /// metrics.csv: one dictionary per epoch (empty cells left out), and the file's text.
    public let metrics: [[String: Double]]
    public let metricsText: String
    public let status: RunStatus?
    public let likelihood: LikelihoodRecord?

    public init(_ folder: RunFolder) throws {
        guard Files.isDirectory(folder.path) else { throw FileError(path: folder.path, reason: "no such run folder") }
        guard Files.exists(folder.configPath) || Files.exists(folder.metricsPath) else {
            throw FileError(path: folder.path, reason: "not a run folder (no config.json or metrics.csv)")
        }
        self.folder = folder
        config = try? folder.readConfig()
        if let bytes = try? Files.read(folder.configPath, limit: 1 << 22),
           let object = try? JSONSerialization.jsonObject(with: Data(bytes)) {
            var flat: [(String, String)] = []
            func walk(_ value: Any, _ key: String) {
                if let d = value as? [String: Any] {
                    for (k, v) in d { walk(v, key.isEmpty ? k : key + "." + k) }
                } else if let a = value as? [Any], !a.contains(where: { $0 is [String: Any] }) {
                    flat.append((key, a.map { "\($0)" }.joined(separator: ", ")))
                } else if let a = value as? [Any] {
                    for (i, v) in a.enumerated() { walk(v, "\(key)[\(i)]") }
                } else if value is NSNull {
                    flat.append((key, "–"))
                } else {
                    flat.append((key, "\(value)"))
                }
            }
            walk(object, "")
            settings = flat.sorted { $0.0 < $1.0 }
        } else {
            settings = []
        }
        metricsText = (try? Files.read(folder.metricsPath, limit: 1 << 28)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        metrics = Self.parseMetrics(metricsText)
        status = folder.status()
        likelihood = folder.likelihood()
    }

    static func parseMetrics(_ text: String) -> [[String: Double]] {
        let lines = text.split(separator: "\n")
        guard let header = lines.first?.split(separator: ",", omittingEmptySubsequences: false).map(String.init) else { return [] }
        return lines.dropFirst().compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            var row: [String: Double] = [:]
            for (name, field) in zip(header, fields) { if let v = Double(field) { row[name] = v } }
            return row["epoch"] == nil ? nil : row
        }
    }

    /// The run's name: its folder's last component.
    public var name: String { folder.path.split(separator: "/").last.map(String.init) ?? folder.path }

    /// (epoch, value) of a metrics column.
    public func series(_ column: String) -> [(x: Double, y: Double)] {
        metrics.compactMap { row in row[column].flatMap { v in row["epoch"].map { ($0, v) } } }
    }

    /// The latent dimension's KL columns present, in order.
    public var klDimensions: [String] {
        guard let first = metrics.first else { return [] }
        return (1...max(first.keys.count, 1)).map { "kl_dim_\($0)" }.prefix { first[$0] != nil }.map { $0 }
    }

    /// Whether the run is being trained now (status running and its lock held).
    public var isLive: Bool { status?.state == .running && folder.writer != nil }

    /// Seconds of training, summed over the epochs recorded.
    public var trainingSeconds: Double { metrics.compactMap { $0["seconds"] }.reduce(0, +) }
}
