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

    /// metrics.csv's rows as dictionaries (a row without an epoch is left out). Fields are read
    /// with `strtod` over the bytes: a 3,000-epoch file parses in milliseconds.
    static func parseMetrics(_ text: String) -> [[String: Double]] {
        var text = text
        return text.withUTF8 { bytes -> [[String: Double]] in
            guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return [] }
            let header = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            var rows: [[String: Double]] = []
            let capacity = 64
            let field = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
            defer { field.deallocate() }
            var start = newline + 1
            while start < bytes.count {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                var row: [String: Double] = [:]
                row.reserveCapacity(header.count)
                var column = 0, fieldStart = start
                for i in start...end where i == end || bytes[i] == UInt8(ascii: ",") {
                    let length = i - fieldStart
                    if column < header.count, length > 0, length < capacity {
                        for k in 0..<length { field[k] = CChar(bitPattern: bytes[fieldStart + k]) }
                        field[length] = 0
                        var stop: UnsafeMutablePointer<CChar>?
                        let value = strtod(field, &stop)
                        if stop == field + length { row[header[column]] = value }
                    }
                    column += 1
                    fieldStart = i + 1
                }
                if row["epoch"] != nil { rows.append(row) }
                start = end + 1
            }
            return rows
        }
    }

    /// The run's name: its folder's last component.
    public var name: String { folder.path.split(separator: "/").last.map(String.init) ?? folder.path }

    /// (epoch, value) of a metrics column; with `maximumPoints`, at most that many, evenly spaced
    /// over the epochs that have a value (``Thinning/indices(count:maximum:)``).
    public func series(_ column: String, maximumPoints: Int? = nil) -> [(x: Double, y: Double)] {
        let all = metrics.compactMap { row in row[column].flatMap { v in row["epoch"].map { ($0, v) } } }
        guard let maximumPoints else { return all }
        return Thinning.indices(count: all.count, maximum: maximumPoints).map { all[$0] }
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
