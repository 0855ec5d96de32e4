import Files
import Foundation

/// Where a run stands, kept in `RUN/status.json` and rewritten atomically as it changes. A run
/// killed outright leaves `running` behind with nobody holding its lock: readers report it as
/// interrupted.
public struct RunStatus: Codable, Equatable, Sendable {
    public enum State: String, Codable, Sendable {
        /// Training (or was, if no process holds the run's lock any more: interrupted).
        case running
        /// Training is over and every output is written (all epochs, or early stopping).
        case finished
        /// Stopped on request after a checkpoint; `vae train --resume` continues it.
        case stopped
        /// Ended by an error (`message`); the last checkpoint is intact.
        case failed
    }

    public var state: State
    /// Epochs done, of `epochs`.
    public var epoch: Int
    public var epochs: Int
    public var message: String?
    /// The command line that started the run (kept when it is resumed), and the one that
    /// trains it now.
    public var command: String?
    public var lastCommand: String?
    /// The machine that trains it now: CPU model, cores and host name.
    public var machine: String?
    /// When the run was created (ISO 8601).
    public var started: String?

    public init(state: State, epoch: Int, epochs: Int, message: String? = nil) {
        self.state = state
        self.epoch = epoch
        self.epochs = epochs
        self.message = message
    }

    /// This process's command line, with arguments that need it quoted for a shell.
    public static var currentCommand: String {
        CommandLine.arguments.map { a in
            a.isEmpty || a.contains(where: { " \"'$\\|&;<>()*?[]#~`".contains($0) }) ? "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'" : a
        }.joined(separator: " ")
    }

    /// "AMD EPYC 9R14, 2 cores, host vm" (from /proc/cpuinfo where there is one).
    public static var currentMachine: String {
        "\(currentCPU), \(ProcessInfo.processInfo.activeProcessorCount) cores, host \(ProcessInfo.processInfo.hostName)"
    }

    /// The CPU's model name, "AMD EPYC 9R14" (from /proc/cpuinfo; "unknown CPU" without one).
    public static var currentCPU: String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        return cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    }
}

extension RunFolder {
    /// `RUN/status.json`.
    public var statusPath: String { "\(path)/status.json" }
    /// `RUN/.lock`: held (flock) by the one process that trains the run.
    public var lockPath: String { "\(path)/.lock" }

    /// The recorded status (nil for runs written before status files existed, or none yet).
    public func status() -> RunStatus? {
        guard let bytes = try? Files.read(statusPath, limit: 1 << 16) else { return nil }
        return try? JSONDecoder().decode(RunStatus.self, from: Data(bytes))
    }

    func writeStatus(_ status: RunStatus) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Files.writeAtomically(Array(try encoder.encode(status)) + [10], to: statusPath)
    }

    /// Who trains the run now ("process 123 on host, since …"), or nil if nobody does.
    public var writer: String? { FileLock.holder(of: lockPath) }

    /// One line on the run's state, e.g. "finished (10 of 10 epochs)" or "interrupted after 3 of
    /// 10 epochs (nobody is training it: continue with `vae train --resume RUN`)".
    public var stateDescription: String {
        guard let status = status() else { return Files.exists(modelPath) ? "written before run states were recorded" : "no run state recorded" }
        let progress = "\(status.epoch) of \(status.epochs) epochs"
        switch status.state {
        case .running:
            if let writer { return "training, \(progress) done (\(writer))" }
            return "interrupted after \(progress) (nobody is training it: continue with `vae train --resume \(path)`)"
        case .finished: return "finished (\(progress))"
        case .stopped: return "stopped after \(progress) (continue with `vae train --resume \(path)`)"
        case .failed: return "failed after \(progress): \(status.message ?? "unknown error")"
        }
    }

    /// A hidden folder beside this one, `.NAME<suffix>` (where a replacing run is built).
    func sibling(_ suffix: String) -> RunFolder {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return RunFolder(path: "./.\(trimmed)\(suffix)") }
        let parent = trimmed[..<slash]
        return RunFolder(path: "\(parent)/.\(trimmed[trimmed.index(after: slash)...])\(suffix)")
    }

    /// Entries that make a folder hold a run (or anything else): everything but a lock file
    /// left by a run killed before it wrote anything.
    var occupants: [String]? {
        Files.contents(ofDirectory: path).map { $0.filter { $0 != ".lock" } }
    }
}

/// A new random run id (16 hex digits): recorded in `config.json` and in every training
/// checkpoint, so that a checkpoint copied in from another run is refused.
func newRunID() -> String {
    var g = SystemRandomNumberGenerator()
    return String(format: "%016llx", g.next() as UInt64)
}

/// Who holds a run's lock, for a second writer's message.
func lockHolderDescription() -> String {
    var name = [CChar](repeating: 0, count: 256)
    gethostname(&name, 255)
    let host = String(cString: name)
    let formatter = ISO8601DateFormatter()
    return "process \(getpid()) on \(host), since \(formatter.string(from: Date()))"
}
