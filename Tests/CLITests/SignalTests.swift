import Foundation
import Testing
import TestSupport

// Ctrl-C and SIGTERM at any moment, the way users and schedulers stop training, and what a long
// or interrupted run must keep: exact resumes by default, readable logs, paths that work from
// anywhere, `vae --version`.

/// 28×28 images with labels: the decoder's input gradient is then a product with 784 terms and
/// an untransposed weight matrix, which oneDNN's JIT GEMM runs with its stack pointer in a heap
/// workspace — the code a signal used to corrupt.
func writeDigitLikeData(_ dir: String, count: Int = 512) throws {
    var pixels: [UInt8] = []
    pixels.reserveCapacity(count * 784)
    for k in 0..<count {
        for y in 0..<28 { for x in 0..<28 { pixels.append(UInt8((abs(x - 14 + k % 5) + abs(y - 14 - k % 3)) < 6 + k % 7 ? 230 : (x * y + k) % 40)) } }
    }
    try writeNPY(dir + "/images.npy", pixels, shape: [count, 28, 28])
    try writeNPY(dir + "/labels.npy", (0..<count).map { UInt8($0 % 10) }, shape: [count])
}

/// Starts `vae` in the background with its output collected (not a terminal).
func startCollecting(_ executable: String, _ arguments: [String]) throws -> (Process, Pipe) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    return (process, out)
}

/// Sends `signal` every millisecond for `milliseconds` (or until the process ends): the first
/// asks the run to stop, the others land wherever the process is meanwhile.
func signalTrain(_ process: Process, _ signal: Int32, milliseconds: Int = 25) {
    for _ in 0..<milliseconds where process.isRunning {
        kill(process.processIdentifier, signal)
        usleep(1000)
    }
}

/// SIGINT and SIGTERM, sent as a burst at a random moment — start-up, a step, a checkpoint
/// write, the epoch's evaluation and pictures, the final writes — in four kinds of model: every
/// exit is 130 or 143 (with the stop's line, or the line that says training had not begun),
/// never a signal death or a glibc abort; every run resumed without flags ends with the
/// uninterrupted run's weights, bit for bit. (Before the signals went to a thread of their own,
/// about one burst in five ended in "corrupted size vs. prev_size" or SIGSEGV.)
@Test(arguments: [
    ["--hidden", "32"],
    ["--arch", "conv", "--channels", "4,8"],
    ["--conditional", "--hidden", "32"],
    ["--likelihood", "gaussian-pixel", "--hidden", "32"],
])
func stopSignalsAtAnyMomentExitCleanlyAndResumeExactly(mode: [String]) throws {
    let dir = temporaryDirectory()
    try writeDigitLikeData(dir)
    let arguments = ["train", "--data", dir + "/images.npy", "--labels", dir + "/labels.npy", "--epochs", "3", "--batch-size", "32",
                     "--latent", "4", "--threads", "2", "--checkpoint-every", "5", "--seed", "3"] + mode
    let start = Date()
    let reference = try vae(arguments + ["--out", dir + "/whole"])
    let duration = Date().timeIntervalSince(start)
    #expect(reference.status == 0, "\(reference.stderr)")
    let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/whole/model.safetensors"))
    for attempt in 0..<3 {
        let run = "\(dir)/stopped-\(attempt)"
        let signal = attempt % 2 == 0 ? SIGINT : SIGTERM
        let (process, out) = try startCollecting(vaeBinary, arguments + ["--out", run])
        // From 0.1 s on (the dynamic loader, before any code of vae runs, takes ~20 ms here).
        usleep(UInt32(Double.random(in: 0.1..<max(duration * 1.1, 0.2)) * 1e6))
        signalTrain(process, signal)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let context = "\(mode) attempt \(attempt): \(text.suffix(300))"
        if process.terminationReason == .uncaughtSignal {
            Issue.record("died by signal \(process.terminationStatus): \(context)")
            continue
        }
        if process.terminationStatus == 0 {  // the burst came after the process had ended
            #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == expected, "\(context)")
            continue
        }
        #expect(process.terminationStatus == 128 + signal, "\(context)")
        let name = signal == SIGINT ? "SIGINT" : "SIGTERM"
        #expect(text.contains("stopped by \(name)") || text.contains("\(name) came while the run was finishing"), "\(context)")
        #expect(!text.contains("\r") && !text.contains("\u{1B}"), "\(context)")
        #expect(!text.contains("corrupted") && !text.contains("malloc"), "\(context)")
        if text.contains("before training began") {
            #expect(!FileManager.default.fileExists(atPath: run), "nothing is written before training begins: \(context)")
            continue
        }
        let resumed = try vae(["train", "--resume", run])
        #expect(resumed.status == 0, "\(context) → resume: \(resumed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == expected, "\(context)")
    }
}

/// The same under `mpirun -np 2`: mpirun passes the stop on to both ranks, which stop after the
/// same step; the job resumed under mpirun ends with the uninterrupted job's weights.
@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func stopSignalsUnderMPIExitCleanlyAndResumeExactly() throws {
    let dir = temporaryDirectory()
    try writeDigitLikeData(dir)
    let arguments = ["train", "--data", dir + "/images.npy", "--epochs", "3", "--batch-size", "32", "--latent", "4", "--threads", "1",
                     "--checkpoint-every", "5", "--seed", "3"]
    let start = Date()
    let reference = try mpirun(2, arguments + ["--out", dir + "/whole"])
    let duration = Date().timeIntervalSince(start)
    #expect(reference.status == 0, "\(reference.stderr)")
    #expect(!reference.stdout.contains("\r") && !reference.stdout.contains("\u{1B}"), "mpirun's log has no bar: \(reference.stdout)")
    let expected = try Data(contentsOf: URL(fileURLWithPath: dir + "/whole/model.safetensors"))
    for attempt in 0..<2 {
        let run = "\(dir)/stopped-\(attempt)"
        let (process, out) = try startCollecting(mpirunPath!, mpirunOptions(2) + [vaeBinary] + arguments + ["--out", run])
        usleep(UInt32(Double.random(in: (duration * 0.3)..<(duration * 0.9)) * 1e6))
        kill(process.processIdentifier, attempt == 0 ? SIGINT : SIGTERM)
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let context = "attempt \(attempt): \(text.suffix(400))"
        #expect(!text.contains("corrupted") && !text.contains("malloc") && !text.contains("Segmentation"), "\(context)")
        guard FileManager.default.fileExists(atPath: run + "/checkpoint.safetensors") else { continue }
        let resumed = try mpirun(2, ["train", "--resume", run])
        #expect(resumed.status == 0, "\(context) → resume: \(resumed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == expected, "\(context)")
    }
}

/// `--threads 1`, killed after its first checkpoint, resumed with no flags on a machine with
/// more cores: it continues with its own single worker and ends with the uninterrupted run's
/// weights bit for bit (the default would have been every core, and other sums).
@Test func resumeWithoutFlagsKeepsTheRunsWorkers() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "8", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                     "--threads", "1", "--checkpoint-every", "1"]
    let reference = try vae(arguments + ["--out", dir + "/whole"])
    #expect(reference.status == 0, "\(reference.stderr)")
    let run = dir + "/killed"
    let process = try startVAE(arguments + ["--out", run])
    waitFor(run + "/checkpoint.safetensors")
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let resumed = try vae(["train", "--resume", run])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stdout.contains("1 batch worker × 1 GEMM thread"), "\(resumed.stdout)")
    #expect(!resumed.stderr.contains("will differ"), "\(resumed.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/whole/model.safetensors")))
}

/// Progress into a file or pipe: plain lines, no carriage return, no escape sequence; `--progress
/// bar` draws the bar anyway (so the check above can fail), and `none` keeps only the epochs.
@Test func progressInAFileIsPlainLines() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--threads", "1"]
    for (style, bar) in [("auto", false), ("lines", false), ("none", false), ("bar", true)] {
        let result = try vae(arguments + ["--out", "\(dir)/\(style)", "--progress", style])
        #expect(result.status == 0, "\(result.stderr)")
        let drawn = result.stdout.contains("\r") || result.stdout.contains("\u{1B}")
        #expect(drawn == bar, "--progress \(style): \(result.stdout.debugDescription)")
        #expect(result.stdout.contains("epoch 2/2  train −ELBO"), "--progress \(style): \(result.stdout)")
    }
    let bad = try vae(arguments + ["--out", dir + "/bad", "--progress", "fancy"])
    #expect(bad.status != 0 && bad.stderr.contains("--progress"), "\(bad.stderr)")
}

/// `vae --version` names the release, the commit the binary was built from (checked against
/// git's own answer for this checkout) and the matrix library.
@Test func versionNamesTheCommitAndTheMatrixLibrary() throws {
    let result = try vae(["--version"])
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.hasPrefix("vae "), "\(result.stdout)")
    #expect(result.stdout.contains("oneDNN") || result.stdout.contains("OpenBLAS"), "\(result.stdout)")
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let git = try? run("/usr/bin/git", ["-C", root, "rev-parse", "--short=12", "HEAD"])
    if let git, git.status == 0 {
        let head = git.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(result.stdout.contains("commit \(head)"), "built from \(head)? \(result.stdout)")
    } else {
        #expect(result.stdout.contains("commit unknown"), "\(result.stdout)")
    }
}

/// A run started with relative data paths in one directory resumes from another; if its data
/// moved, the resume names the path and the config.json field that holds it.
@Test func relativeDataPathsResumeFromAnywhere() throws {
    let dir = temporaryDirectory()
    try FileManager.default.createDirectory(atPath: dir + "/work/data", withIntermediateDirectories: true)
    try writeTinyDataset(dir + "/work/data")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: vaeBinary)
    process.arguments = ["train", "--dataset", "mnist", "--data-dir", "data", "--epochs", "6", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                         "--threads", "1", "--checkpoint-every", "1", "--out", "run"]
    process.currentDirectoryURL = URL(fileURLWithPath: dir + "/work")
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    waitFor(dir + "/work/run/checkpoint.safetensors")
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let config = try String(contentsOfFile: dir + "/work/run/config.json", encoding: .utf8)
    #expect(config.contains("\"dataDirectory\" : \"\(dir.replacingOccurrences(of: "/", with: "\\/"))\\/work\\/data\""), "\(config)")
    try FileManager.default.moveItem(atPath: dir + "/work/data", toPath: dir + "/moved")
    let moved = try vae(["train", "--resume", dir + "/work/run"])
    expectRefused(moved, "the run's data is not there any more", "data moved")
    #expect(moved.stderr.contains("training.dataDirectory"), "\(moved.stderr)")
    try FileManager.default.moveItem(atPath: dir + "/moved", toPath: dir + "/work/data")
    let resumed = try vae(["train", "--resume", dir + "/work/run"])  // from the tests' directory, not dir/work
    #expect(resumed.status == 0, "\(resumed.stderr)")
}
