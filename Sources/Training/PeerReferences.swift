import Foundation

/// The same protocols written in PyTorch and JAX (`scripts/pytorch_reference.py`,
/// `scripts/jax_reference.py`): `vae bench --peers` runs them on the same data and device, so
/// that a speed claim stands beside the peers' figures from the same machine and sitting.
///
/// A script trains for a few epochs and prints `epoch N: S s, …` per epoch; the peer's figure is
/// the median of epochs 2 on (the first compiles or warms up), as `vae bench` times after a
/// warm-up epoch. A peer that is not installed (the script cannot import its framework), fails or
/// runs past its time says so instead of a figure.
public enum PeerReferences {
    /// The protocols the scripts implement (their `--protocol`): the README's default MLP, the
    /// conv reference model, and the IWAE paper's.
    public enum Recipe: String, CaseIterable, Sendable {
        case standard = "default"
        case conv
        case iwaePaper = "iwae-paper"
    }

    /// One peer's run.
    public struct Result: Sendable {
        /// "PyTorch eager" or "JAX jit".
        public let peer: String
        /// Its script's first line (the framework's version and device), if it printed one.
        public let banner: String?
        /// Seconds per epoch: the median of epochs 2 on; nil when the run gave none.
        public let secondsPerEpoch: Double?
        /// Why there is no figure.
        public let failure: String?
    }

    /// The folder with the two scripts: `VAE_PEER_SCRIPTS`, else `share/swift-vae/peers` (a
    /// bundle of `scripts/package.sh`) or `scripts` (the source tree) in a folder above the
    /// executable; nil if none has them.
    public static func scriptFolder(environment: [String: String], executable: String) -> String? {
        let files = ["pytorch_reference.py", "jax_reference.py"]
        func holdsScripts(_ folder: String) -> Bool { files.allSatisfy { FileManager.default.fileExists(atPath: folder + "/" + $0) } }
        if let folder = environment["VAE_PEER_SCRIPTS"] { return holdsScripts(folder) ? folder : nil }
        var folder = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            for candidate in ["share/swift-vae/peers", "scripts"] where holdsScripts(folder.appendingPathComponent(candidate).path) {
                return folder.appendingPathComponent(candidate).path
            }
            folder.deleteLastPathComponent()
        }
        return nil
    }

    /// The seconds per epoch in a script's output: the median of the `epoch N: S s` lines with
    /// N ≥ 2 (all of them if only epoch 1 ran); nil if there are none.
    public static func steadySeconds(_ output: String) -> Double? {
        let pattern = #/epoch (\d+): ([0-9.]+) s/#
        let epochs = output.split(separator: "\n").compactMap { line -> (Int, Double)? in
            guard let match = line.firstMatch(of: pattern), let n = Int(match.1), let s = Double(match.2) else { return nil }
            return (n, s)
        }
        let steady = epochs.contains { $0.0 >= 2 } ? epochs.filter { $0.0 >= 2 } : epochs
        let sorted = steady.map { $0.1 }.sorted()
        guard !sorted.isEmpty else { return nil }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// Runs PyTorch's (eager) and JAX's (jit) script for `recipe`, `epochs` epochs each, on the
    /// GPU with `gpu` (else the CPU with `threads` threads), on the IDX files in `dataDirectory`
    /// (nil: the scripts' own default), with `python` (`VAE_PYTHON`, else python3 on the PATH).
    /// Each run stops after `timeout` seconds.
    public static func run(
        _ recipe: Recipe, scripts: String, dataDirectory: String?, gpu: Bool, threads: Int, epochs: Int = 3, timeout: Double = 300,
        environment: [String: String]
    ) -> [Result] {
        let python = environment["VAE_PYTHON"] ?? "python3"
        let data = dataDirectory.map { ["--data-dir", $0] } ?? []
        let runs: [(String, [String])] = [
            ("PyTorch eager", [scripts + "/pytorch_reference.py", "--protocol", recipe.rawValue, "--epochs", "\(epochs)", "--device", gpu ? "cuda" : "cpu"]
                + (gpu ? [] : ["--threads", "\(threads)"]) + data),
            ("JAX jit", [scripts + "/jax_reference.py", "\(epochs)", "--protocol", recipe.rawValue, "--device", gpu ? "gpu" : "cpu"] + data),
        ]
        return runs.map { peer, arguments in
            let (status, output) = runProcess(python, arguments, timeout: timeout, environment: environment)
            let banner = output.split(separator: "\n").first.map(String.init).flatMap { $0.hasPrefix("epoch ") ? nil : $0 }
            if let seconds = steadySeconds(output), status == 0 {
                return Result(peer: peer, banner: banner, secondsPerEpoch: seconds, failure: nil)
            }
            let last = output.split(separator: "\n").last.map(String.init) ?? "no output"
            let why = status == nil ? "ran past \(Int(timeout)) s" : "exit \(status!): \(last)"
            return Result(peer: peer, banner: nil, secondsPerEpoch: nil, failure: why)
        }
    }

    /// Runs `executable` (looked up on the PATH) with `arguments`, its output (both streams) into
    /// a file; the exit status (nil when it was stopped after `timeout` seconds) and the output.
    static func runProcess(_ executable: String, _ arguments: [String], timeout: Double, environment: [String: String]) -> (Int32?, String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("vae-peer-\(UUID().uuidString).txt")
        guard FileManager.default.createFile(atPath: log.path, contents: nil), let handle = try? FileHandle(forWritingTo: log) else {
            return (-1, "cannot write \(log.path)")
        }
        defer { try? FileManager.default.removeItem(at: log) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        process.environment = environment
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "\(executable) cannot be started: \(error.localizedDescription)") }
        let start = Date()
        while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(50_000) }
        var stopped = false
        if process.isRunning {
            process.terminate()
            stopped = true
        }
        process.waitUntilExit()
        try? handle.close()
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return (stopped ? nil : process.terminationStatus, output)
    }
}
