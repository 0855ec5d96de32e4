import Foundation
import Imaging
import Testing
import TestSupport

// Everything a user can do to a run folder — change its data, edit its config, interrupt it at
// any moment, run two writers, copy files between runs, write through links — ends in a clear
// line and a folder every command can read, never a crash, a hang or silent damage.

/// A .npy file of unsigned bytes with `shape`.
func writeNPY(_ path: String, _ values: [UInt8], shape: [Int], descr: String = "|u1") throws {
    var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", ")),), }".utf8)
    while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
    header.append(0x0A)
    try Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count), 0] + header + values).write(to: URL(fileURLWithPath: path))
}

/// Images of `side`×`side` with labels 0…9, as .npy files in `dir`.
func writeUserData(_ dir: String, count: Int = 60, side: Int = 8) throws {
    let pixels = (0..<(count * side * side)).map { UInt8(($0 * 7 + $0 / (side * side) * 31) % 256) }
    try writeNPY(dir + "/images.npy", pixels, shape: [count, side, side])
    try writeNPY(dir + "/labels.npy", (0..<count).map { UInt8($0 % 10) }, shape: [count])
}

func editConfig(_ run: String, _ edit: (inout [String: Any]) -> Void) throws {
    let url = URL(fileURLWithPath: run + "/config.json")
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    edit(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: url)
}

/// A non-zero exit and one line naming the problem (a malformed flag may add the parser's
/// usage hint after it).
func expectRefused(_ result: Output, _ message: String, _ context: String) {
    #expect(result.status != 0, "\(context): exited 0")
    let lines = result.stderr.split(separator: "\n")
    #expect(lines.first?.contains(message) == true, "\(context): \(result.stderr)")
    #expect(lines.dropFirst().allSatisfy { ["Usage:", "  See '", "Help:"].contains(where: $0.hasPrefix) || $0.trimmingCharacters(in: .whitespaces).isEmpty },
            "\(context): more than one message: \(result.stderr)")
    #expect(result.status < 128, "\(context): died of a signal (\(result.status))")
}

let readers: (String) -> [[String]] = { run in
    [["eval", run], ["reconstruct", run, "--out", run + "/../r.png"], ["encode", run, "--out", run + "/../l.npy"], ["traverse", run, "--out", run + "/../t.png"]]
}

@Test func dataChangedAfterTrainingIsRefusedNotFedToTheModel() throws {
    let dir = temporaryDirectory()
    try writeUserData(dir)
    let run = dir + "/run"
    let trained = try vae(["train", "--data", dir + "/images.npy", "--labels", dir + "/labels.npy", "--conditional", "--out", run] + smallTrainArguments.dropFirst(2))
    #expect(trained.status == 0, "\(trained.stderr)")
    // The images replaced by images of another size.
    try writeUserData(dir, side: 6)
    for arguments in readers(run) {
        expectRefused(try vae(arguments), "the test images are 1×6×6, the model expects 1×8×8 (the data behind the run changed since it was trained?)", "\(arguments)")
    }
    // The conditional run's labels dropped from config.json.
    try writeUserData(dir)
    try editConfig(run) { config in
        var training = config["training"] as! [String: Any]
        training["labelsPath"] = nil
        config["training"] = training
    }
    for arguments in readers(run) {
        expectRefused(try vae(arguments), "the test images have no labels, and the conditional model needs them", "\(arguments)")
    }
}

@Test func aClassFolderWithStrayImagesOnTopIsRefused() throws {
    let dir = temporaryDirectory()
    let shapes = dir + "/shapes"
    for (k, name) in ["circle", "square"].enumerated() {
        try FileManager.default.createDirectory(atPath: "\(shapes)/\(name)", withIntermediateDirectories: true)
        for i in 0..<4 {
            let image = Image(width: 8, height: 8, channels: 1, pixels: (0..<64).map { UInt8(($0 * (k + 2) + i) % 256) })
            try PNG.write(image, to: "\(shapes)/\(name)/\(i).png")
        }
    }
    let run = dir + "/run"
    let trained = try vae(["train", "--data", shapes, "--conditional", "--out", run, "--epochs", "1", "--hidden", "8", "--latent", "2", "--threads", "1"])
    #expect(trained.status == 0, "\(trained.stderr)")
    try PNG.write(Image(width: 8, height: 8, channels: 1, pixels: [UInt8](repeating: 9, count: 64)), to: shapes + "/stray.png")
    for arguments in readers(run) + [["train", "--data", shapes, "--out", dir + "/again"]] {
        expectRefused(try vae(arguments), "holds both .png files (stray.png) and class sub-folders of .png files", "\(arguments)")
    }
}

@Test func editedConfigValuesAreValidatedLikeFlags() throws {
    let (run, _) = try trainedRun()
    let original = try Data(contentsOf: URL(fileURLWithPath: run + "/config.json"))
    for (field, value, message) in [("batchSize", 0, "--batch-size must be between 1 and 65536"), ("epochs", -4, "--epochs must be at least 1")] {
        try original.write(to: URL(fileURLWithPath: run + "/config.json"))
        try editConfig(run) { config in
            var training = config["training"] as! [String: Any]
            training[field] = value
            config["training"] = training
        }
        for arguments in [["train", "--resume", run], ["eval", run], ["sample", run, "--out", run + "/../s.png"]] {
            expectRefused(try vae(arguments), "config.json: \(message)", "\(field) \(value) \(arguments)")
        }
    }
}

@Test func aFIFONamedLikeAnImageIsRefusedWithoutBlocking() throws {
    let dir = temporaryDirectory()
    let folder = dir + "/pngs"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try PNG.write(Image(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 9, count: 16)), to: folder + "/a.png")
    #expect(mkfifo(folder + "/b.png", 0o644) == 0)
    let process = try startVAE(["train", "--data", folder, "--out", dir + "/run"])
    var waited = 0
    while process.isRunning && waited < 200 {  // 10 s
        usleep(50_000)
        waited += 1
    }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    #expect(waited < 200, "vae train blocked on the FIFO")
    #expect(process.terminationStatus == 1)
    let result = try vae(["train", "--data", folder, "--out", dir + "/run2"])
    expectRefused(result, "b.png: not a regular file (a FIFO)", "fifo")
}

@Test func resumeCompletesARunKilledWhileDrawingItsPictures() throws {
    let (run, _) = try trainedRun()
    let samples = try Data(contentsOf: URL(fileURLWithPath: run + "/samples.png"))
    let reconstructions = try Data(contentsOf: URL(fileURLWithPath: run + "/reconstructions.png"))
    // What a kill after the last checkpoint leaves: no pictures, status still running.
    try FileManager.default.removeItem(atPath: run + "/samples.png")
    try FileManager.default.removeItem(atPath: run + "/reconstructions.png")
    try Data(#"{"epoch":2,"epochs":2,"state":"running"}"#.utf8).write(to: URL(fileURLWithPath: run + "/status.json"))
    let resumed = try vae(["train", "--resume", run])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stdout.contains("wrote what was missing"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/samples.png")) == samples)
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/reconstructions.png")) == reconstructions)
    let status = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/status.json"))) as! [String: Any]
    #expect(status["state"] as? String == "finished")
    let again = try vae(["train", "--resume", run])
    #expect(again.status == 0 && again.stdout.contains("nothing to resume"))
    // A folder whose first epoch never ended: the commands say what is missing and how to go on.
    try FileManager.default.removeItem(atPath: run + "/model.safetensors")
    try Data(#"{"epoch":0,"epochs":2,"state":"running"}"#.utf8).write(to: URL(fileURLWithPath: run + "/status.json"))
    expectRefused(try vae(["sample", run, "--out", run + "/../x.png"]), "model.safetensors: not written yet: the run is interrupted after 0 of 2 epochs (nobody is training it: continue with `vae train --resume", "missing model")
}

@Test func oneWriterPerRunFolderWhileReadersKeepWorking() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let run = dir + "/run"
    #expect(try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments).status == 0)
    let long = dir + "/long"
    let process = try startVAE(["train", "--data-dir", dir, "--out", long, "--dataset", "mnist", "--epochs", "100000", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--threads", "1"])
    defer {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    waitFor(long + "/model.safetensors")
    expectRefused(try vae(["train", "--resume", long]), "is being trained by process \(process.processIdentifier) on", "second writer")
    expectRefused(try vae(["train", "--data-dir", dir, "--dataset", "mnist", "--out", long, "--force"]), "is being trained by process \(process.processIdentifier)", "--force over a run in training")
    let reading = try vae(["eval", long, "--json"])
    #expect(reading.status == 0, "a reader was refused: \(reading.stderr)")
    // The lock dies with its holder: after a SIGKILL the run can be resumed.
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let resumed = try startVAE(["train", "--resume", long, "--threads", "1"])
    usleep(1_500_000)
    #expect(resumed.isRunning, "the resume after the holder died was refused (exit \(resumed.isRunning ? 0 : resumed.terminationStatus))")
    kill(resumed.processIdentifier, SIGKILL)
    resumed.waitUntilExit()
}

@Test func aCheckpointFromAnotherRunIsRefused() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let (a, b) = (dir + "/a", dir + "/b")
    for run in [a, b] { #expect(try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments).status == 0) }
    try FileManager.default.removeItem(atPath: a + "/checkpoint.safetensors")
    try FileManager.default.copyItem(atPath: b + "/checkpoint.safetensors", toPath: a + "/checkpoint.safetensors")
    expectRefused(try vae(["train", "--resume", a]), "checkpoint.safetensors: belongs to another run", "copied checkpoint")
}

@Test func writingThroughASymbolicLinkWritesItsTarget() throws {
    let (run, dir) = try trainedRun()
    let target = dir + "/target.png", link = dir + "/link.png"
    try Data("old".utf8).write(to: URL(fileURLWithPath: target))
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "target.png")
    let result = try vae(["sample", run, "--count", "4", "--out", link])
    #expect(result.status == 0, "\(result.stderr)")
    #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == "target.png", "the link was replaced")
    let image = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: target))))
    #expect(image.width == 2 * 9 + 1)
}

@Test func badValuesAreRefusedWithTheirRealProblem() throws {
    let (run, _) = try trainedRun()  // unconditional, d = 2
    let cases: [([String], String)] = [
        (["train", "--epochs", "-1"], "--epochs must be at least 1"),
        (["train", "--lr", "-1"], "--lr must be a positive number"),
        (["train", "--seed", "-5"], "The value '-5' is invalid for '--seed"),
        (["sample", run, "--count", "-5", "--out", run + "/../x.png"], "--count must be between 1 and 10000"),
        (["manifold", run, "--label", "3"], "holds an unconditional model: --label and --per-class need one trained with --conditional"),
        (["bench", "--hidden", "400,abc"], "--hidden must be positive integers"),
    ]
    for (arguments, message) in cases { expectRefused(try vae(arguments), message, "\(arguments)") }
}

@Test func booleanArraysAreZeroOrOneNotBytes() throws {
    let dir = temporaryDirectory()
    try writeNPY(dir + "/bits.npy", (0..<(40 * 16)).map { UInt8(($0 / 3) % 2) }, shape: [40, 4, 4], descr: "|b1")
    let run = dir + "/run"
    let trained = try vae(["train", "--data", dir + "/bits.npy", "--out", run, "--epochs", "1", "--hidden", "8", "--latent", "2", "--threads", "1"])
    #expect(trained.status == 0, "\(trained.stderr)")
    // The reconstruction picture's top row holds the originals: white (255) where a bit is set.
    let picture = try PNG.decode(Array(Data(contentsOf: URL(fileURLWithPath: run + "/reconstructions.png"))))
    let values = Set(picture.pixels)
    #expect(values.contains(255) && values.contains(0))
    try writeNPY(dir + "/bad.npy", [0, 2, 1, 1], shape: [1, 2, 2], descr: "|b1")
    expectRefused(try vae(["train", "--data", dir + "/bad.npy", "--out", dir + "/r2"]), "bool data holds bytes other than 0 and 1", "bad bool")
}

/// Whether this process may mount a small tmpfs (root on a machine that allows it).
let canMountTmpfs: Bool = {
    let dir = temporaryDirectory("mountProbe")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/mount")
    process.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { return false }
    umount(dir)
    return true
}()

@Test(.enabled(if: canMountTmpfs, "needs to mount a small tmpfs (root)"))
func aFullDiskIsFoundBeforeTheFirstEpoch() throws {
    let dir = temporaryDirectory()
    let small = dir + "/small"
    try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
    let mount = Process()
    mount.executableURL = URL(fileURLWithPath: "/bin/mount")
    mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small]
    try mount.run()
    mount.waitUntilExit()
    defer { umount(small) }
    // The default model's checkpoint (about 8 MB) cannot fit in 1 MB: refused at once.
    let start = Date()
    let result = try vae(["train", "--out", small + "/run", "--epochs", "1"])
    expectRefused(result, "MB free on its file system, and the run needs about", "full disk")
    #expect(Date().timeIntervalSince(start) < 30)
    // Nothing is left behind: the same command can go elsewhere, or here once there is room.
    #expect(!FileManager.default.fileExists(atPath: small + "/run"))
}

/// The files of a finished run that must not depend on interruptions: weights, best weights,
/// pictures, and metrics.csv without its clock columns (seconds, images/s).
func comparableFiles(_ run: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in ["model.safetensors", "best.safetensors", "samples.png", "reconstructions.png"] {
        out[name] = try? Data(contentsOf: URL(fileURLWithPath: "\(run)/\(name)"))
    }
    // status.json without when and by which command the run was started and resumed.
    if let data = try? Data(contentsOf: URL(fileURLWithPath: run + "/status.json")),
       var object = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
        for key in ["started", "command", "lastCommand"] { object[key] = nil }
        out["status.json"] = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
    let metrics = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n").map { row in
        row.split(separator: ",", omittingEmptySubsequences: false).enumerated().filter { ![12, 13].contains($0.offset) }.map(\.element).joined(separator: ",")
    }
    out["metrics.csv"] = Data(metrics.joined(separator: "\n").utf8)
    return out
}

/// Every reader either works or says in one line what is missing; none crashes.
func expectReadable(_ run: String, _ context: String) throws {
    for arguments in [["eval", run], ["sample", run, "--out", run + "/../s.png"], ["encode", run, "--out", run + "/../l.npy"]] {
        let result = try vae(arguments)
        #expect(result.status == 0 || result.status == 1, "\(context) \(arguments): exit \(result.status) \(result.stderr)")
        if result.status != 0 {
            #expect(result.stderr.contains("not written yet: the run is"), "\(context) \(arguments): \(result.stderr)")
        }
    }
}

func killAfter(_ arguments: [String], microseconds: UInt32) throws {
    let process = try startVAE(arguments)
    usleep(microseconds)
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
}

/// SIGKILL at any moment — at start, mid-epoch, while evaluating, while drawing the pictures, and
/// again during the resume — leaves a folder every command can read, and resuming ends with the
/// files of a run never interrupted.
@Test func killedAtAnyMomentAndResumedEndsIdentical() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["--dataset", "mnist", "--data-dir", dir, "--epochs", "6", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                     "--threads", "2", "--checkpoint-every", "2", "--validation-split", "0.25"]
    let reference = try vae(["train", "--out", dir + "/whole"] + arguments)
    #expect(reference.status == 0, "\(reference.stderr)")
    let expected = try comparableFiles(dir + "/whole")
    for (k, delay) in [UInt32(0), 30_000, 80_000, 150_000, 250_000, 400_000, 600_000, 900_000].enumerated() {
        let run = "\(dir)/killed-\(k)"
        try killAfter(["train", "--out", run] + arguments, microseconds: delay)
        guard FileManager.default.fileExists(atPath: run + "/checkpoint.safetensors") else {
            // Killed before its first checkpoint: nothing to resume, and a new run may start there.
            let again = try vae(["train", "--out", run, "--force"] + arguments)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try comparableFiles(run) == expected, "restarted after a kill at \(delay) µs")
            continue
        }
        try expectReadable(run, "killed at \(delay) µs")
        try killAfter(["train", "--resume", run], microseconds: delay / 2)  // and once more during the resume
        let resumed = try vae(["train", "--resume", run])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try comparableFiles(run) == expected, "killed at \(delay) µs, then during the resume")
    }
}

/// `--force` over a finished run, killed in its first moments: the folder holds either the old
/// run, whole, or the new one with its first checkpoint, never a mixture.
@Test func forceKilledInItsFirstMomentsLeavesOneWholeRun() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let run = dir + "/run"
    #expect(try vae(["train", "--data-dir", dir, "--out", run] + smallTrainArguments).status == 0)
    let oldModel = try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors"))
    func seed() throws -> Int? {
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/config.json"))) as! [String: Any]
        return (config["training"] as! [String: Any])["seed"] as? Int
    }
    var newRuns = 0
    // Kills at fixed moments, and the last one just after the new run has been swapped in.
    for delay in [UInt32(0), 5_000, 15_000, 30_000, 60_000, 120_000, .max] {
        let arguments = ["train", "--data-dir", dir, "--out", run, "--force", "--seed", "7"] + smallTrainArguments
        if delay == .max {
            let process = try startVAE(arguments)
            for _ in 0..<2000 where (try? seed()) != 7 { usleep(2_000) }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        } else {
            try killAfter(arguments, microseconds: delay)
        }
        if try seed() == 1 {
            #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == oldModel, "a kill at \(delay) µs damaged the old run")
            #expect(try vae(["eval", run]).status == 0)
        } else {
            // The new run: it has its first checkpoint and can be completed.
            #expect(try seed() == 7)
            newRuns += 1
            #expect(FileManager.default.fileExists(atPath: run + "/checkpoint.safetensors"), "kill at \(delay) µs: the new run has no checkpoint")
            try expectReadable(run, "force killed at \(delay) µs")
            let resumed = try vae(["train", "--resume", run])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            // Put the old run back for the next round.
            #expect(try vae(["train", "--data-dir", dir, "--out", run, "--force"] + smallTrainArguments).status == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == oldModel)
        }
        let stray = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".run.new-") }
        #expect(stray.count <= 1, "staging folders pile up: \(stray)")
    }
    #expect(newRuns > 0, "no kill came late enough to see the new run swapped in")
}
