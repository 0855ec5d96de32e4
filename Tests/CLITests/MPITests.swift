import Foundation
import Tensor
import Testing
import TestSupport

// `mpirun -np N vae train …` on loopback. As root mpirun needs --allow-run-as-root; in
// containers the shared-memory single-copy mechanism (CMA) is often not permitted, so it is
// turned off; --oversubscribe lets the tests start more ranks than there are cores.

let mpirunPath = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// mpirun's options for these tests, before the program.
func mpirunOptions(_ ranks: Int) -> [String] {
    // Its session folder and shared-memory segments under the tests' root, so that a job the
    // tests kill leaves nothing behind in /tmp or /dev/shm once the tests end — a folder for each
    // job: two jobs started at once in one folder race to make the same session folder there,
    // and the loser's mpirun fails ("A call to mkdir was unable to create … File exists").
    let folder = temporaryDirectory("mpirun")
    return ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none"]
        + ["--mca", "orte_tmpdir_base", folder, "--mca", "btl_vader_backing_directory", folder]
}

func mpirun(_ ranks: Int, _ arguments: [String]) throws -> Output {
    try run(mpirunPath ?? "/usr/bin/mpirun", mpirunOptions(ranks) + [vaeBinary] + arguments)
}

/// The F32 values of every tensor of a safetensors file, by name.
func tensors(_ path: String) throws -> [String: [Float]] {
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = bytes.prefix(8).withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self).littleEndian) }
    let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as! [String: Any]
    var out: [String: [Float]] = [:]
    for (name, entry) in header where name != "__metadata__" {
        let offsets = (entry as! [String: Any])["data_offsets"] as! [Int]
        out[name] = bytes.subdata(in: (8 + n + offsets[0])..<(8 + n + offsets[1])).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    return out
}

@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func mpiRanksTrainTheSameModel() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "2", "--threads", "1"]
    #expect(try vae(arguments + ["--out", dir + "/plain"]).status == 0)
    // One rank under mpirun is the plain process, bit for bit.
    let one = try mpirun(1, arguments + ["--out", dir + "/one"])
    #expect(one.status == 0, "\(one.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/one/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/plain/model.safetensors")))
    // Two ranks, each on half of every global batch of 16: the same model up to summation order.
    let two = try mpirun(2, arguments + ["--out", dir + "/two", "--check-replicas"])
    #expect(two.status == 0, "\(two.stderr)")
    // Identical weights on both ranks after the broadcast and after each of the 12 steps.
    #expect(two.stdout.contains("replica check: the weights were identical on all 2 ranks at all 13 checks"), "\(two.stdout)")
    #expect(two.stdout.contains("2 MPI ranks, each on 8–8 images of every batch of 16"))
    #expect(two.stdout.components(separatedBy: "epoch 2/2  train").count == 2, "only rank 0 prints: \(two.stdout)")
    // Rank 0 alone writes the event file and the report.
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/two/tensorboard").filter { $0.hasPrefix("events.out.tfevents.") }.count == 1)
    #expect(try String(contentsOfFile: dir + "/two/report.html", encoding: .utf8).contains("finished (2 of 2 epochs)"))
    let a = try tensors(dir + "/one/model.safetensors"), b = try tensors(dir + "/two/model.safetensors")
    #expect(a.keys.sorted() == b.keys.sorted())
    var largest: Float = 0
    for (name, values) in a { for (x, y) in zip(values, b[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-5, "2 ranks differ from 1 by \(largest) after 12 steps")  // measured: 1.5e-8
    // The checkpoint (written by rank 0) holds Adam's m and v as one process's, up to rounding.
    let stateOne = try tensors(dir + "/one/checkpoint.safetensors"), stateTwo = try tensors(dir + "/two/checkpoint.safetensors")
    let slots = stateOne.keys.filter { $0.hasPrefix("optimizer.") }
    #expect(slots.count == 16, "m and v of 8 tensors: \(slots)")
    for name in slots {
        let (x, y) = (stateOne[name]!, stateTwo[name]!)
        let worst = zip(x, y).map { abs($0 - $1) / max(abs($0), 1e-6) }.max() ?? 0
        #expect(worst < 1e-3, "\(name): 2 ranks' state differs from 1 process's by \(worst) (relative)")
    }
    // With gradient clipping (the global norm of the summed gradient): the same model.
    let clipped = arguments + ["--clip-norm", "0.05"]
    #expect(try vae(clipped + ["--out", dir + "/clip-one"]).status == 0)
    let clipTwo = try mpirun(2, clipped + ["--out", dir + "/clip-two"])
    #expect(clipTwo.status == 0, "\(clipTwo.stderr)")
    let p = try tensors(dir + "/clip-one/model.safetensors"), q = try tensors(dir + "/clip-two/model.safetensors")
    largest = 0
    for (name, values) in p { for (x, y) in zip(values, q[name]!) { largest = max(largest, abs(x - y)) } }
    #expect(largest < 1e-5, "clipped: 2 ranks differ from 1 by \(largest)")
    #expect(p != a, "the clipping changed the training")
    // Three ranks on a batch of 16 (6, 5 and 5 rows; the last batch of 0 rows on none; one
    // all-reduce and every rank updating every weight), four (the update sharded: each rank
    // updating a quarter of the 2,244 weights and their Adam state, the shards' bounds on
    // 16-element lines), and two sharded on request: still the same model, and the same weights
    // on every rank.
    // Two ranks with the update sharded anyway (auto shards from 4 ranks) must agree as well.
    for (ranks, extra) in [(2, ["--sharded-update", "always"]), (3, []), (4, [])] {
        let result = try mpirun(ranks, arguments + ["--out", dir + "/ranks\(ranks)", "--check-replicas"] + extra)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("replica check: the weights were identical on all \(ranks) ranks at all 13 checks"), "\(result.stdout)")
        let c = try tensors(dir + "/ranks\(ranks)/model.safetensors")
        largest = 0
        for (name, values) in a { for (x, y) in zip(values, c[name]!) { largest = max(largest, abs(x - y)) } }
        #expect(largest < 1e-5, "\(ranks) ranks differ from 1 by \(largest)")
        // The checkpoint's Adam state is whole (gathered from the ranks' shards).
        let state = try tensors(dir + "/ranks\(ranks)/checkpoint.safetensors")
        for name in slots {
            let worst = zip(stateOne[name]!, state[name]!).map { abs($0 - $1) / max(abs($0), 1e-6) }.max() ?? 0
            #expect(worst < 1e-3, "\(ranks) ranks: \(name) differs from 1 process's by \(worst) (relative)")
        }
    }
    // Evaluation is split across the ranks (image i's ε keyed to i) and summed: the same test
    // figures, up to the models' rounding differences and the order of summation.
    func testELBO(_ run: String) throws -> [Double] {
        let lines = try String(contentsOfFile: dir + "/\(run)/metrics.csv", encoding: .utf8).split(separator: "\n")
        let column = lines[0].split(separator: ",").firstIndex(of: "test_neg_elbo")!
        return lines.dropFirst().map { Double($0.split(separator: ",", omittingEmptySubsequences: false)[column])! }
    }
    let reference = try testELBO("one")
    for run in ["two", "ranks2", "ranks3", "ranks4"] {
        let figures = try testELBO(run)
        #expect(figures.count == 2)
        for (x, y) in zip(figures, reference) { #expect(abs(x - y) < 1e-4 * y, "\(run): test −ELBO \(figures) against \(reference)") }
    }
}

/// Gradients summed in buckets while the backward pass runs (`--overlap always`): a model of 2 × 270,000 weights
/// (hidden 4,096 on 8×8 images) makes two buckets, the decoder's last layer's started before the
/// rest of the backward pass. Two and three ranks on batches of 19 (the last batch of one row:
/// ranks without rows start the same sums of zeros) give one process's model within rounding,
/// with identical replicas.
@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func bucketedGradientSumsGiveOneProcesssModel() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "19", "--hidden", "4096", "--latent", "2",
                     "--threads", "1", "--progress", "none", "--no-tensorboard", "--no-report"]
    #expect(try vae(arguments + ["--out", dir + "/one"]).status == 0)
    let reference = try tensors(dir + "/one/model.safetensors")
    for ranks in [2, 3] {
        let result = try mpirun(ranks, arguments + ["--out", dir + "/ranks\(ranks)", "--check-replicas", "--overlap", "always"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("gradients summed in 2 buckets started during the backward pass"), "\(result.stdout)")
        #expect(result.stdout.contains("the weights were identical on all \(ranks) ranks at all 13 checks"), "\(result.stdout)")
        let model = try tensors(dir + "/ranks\(ranks)/model.safetensors")
        var largest: Float = 0
        for (name, values) in reference { for (x, y) in zip(values, model[name]!) { largest = max(largest, abs(x - y)) } }
        #expect(largest < 1e-5, "\(ranks) ranks differ from 1 by \(largest)")
    }
    // On one host, auto sums after the backward pass (MPI's shared-memory sums use the same cores).
    let auto = try mpirun(2, arguments + ["--out", dir + "/auto", "--epochs", "1"])
    #expect(auto.status == 0 && auto.stdout.contains("gradients summed by one all-reduce after the backward pass"), "\(auto.stdout)\(auto.stderr)")
}

@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func aBadInputUnderMPIGivesOneLineAndNoHang() throws {
    let dir = temporaryDirectory()
    let result = try mpirun(2, ["train", "--data", dir + "/missing.npy", "--out", dir + "/run"])
    #expect(result.status != 0)
    let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
    #expect(errors.count == 1, "one error line for the whole job: \(result.stderr)")
    #expect(errors.first?.contains("missing.npy: No such file or directory") == true, "\(result.stderr)")
}

/// The processes whose parent is `pid` (mpirun's ranks).
func children(of pid: Int32) -> [Int32] {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { entry -> Int32? in
        guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
    } ?? []
}

/// The whole job (sharding its update) killed with SIGKILL (mpirun and every rank) after a checkpoint, then resumed
/// under mpirun with as many ranks: the final weights of an uninterrupted 2-rank run, bit for bit.
@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func aKilledMPIJobResumesBitIdentical() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "40", "--batch-size", "16", "--hidden", "16", "--latent", "2",
                     "--threads", "1", "--checkpoint-every", "1", "--sharded-update", "always"]
    let whole = try mpirun(2, arguments + ["--out", dir + "/whole"])
    #expect(whole.status == 0, "\(whole.stderr)")
    let run = dir + "/killed"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: mpirunPath ?? "/usr/bin/mpirun")
    process.arguments = mpirunOptions(2) + [vaeBinary] + arguments + ["--out", run]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    waitFor(run + "/checkpoint.safetensors")
    usleep(150_000)
    let ranks = children(of: process.processIdentifier)
    for pid in ranks + [process.processIdentifier] { kill(pid, SIGKILL) }
    process.waitUntilExit()
    // The ranks are gone (and with them rank 0's lock on the run) before the resume starts.
    for _ in 0..<500 where ranks.contains(where: { FileManager.default.fileExists(atPath: "/proc/\($0)/stat") && !isZombie($0) }) { usleep(10_000) }
    let resumed = try mpirun(2, ["train", "--resume", run, "--threads", "1", "--sharded-update", "always"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/whole/model.safetensors")))
}

@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func benchUnderMPIReportsTheGradientSum() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let result = try mpirun(2, ["bench", "--dataset", "mnist", "--data-dir", dir, "--hidden", "16", "--latent", "2", "--batch-size", "16",
                                "--repeats", "1", "--threads", "1", "--json"])
    #expect(result.status == 0, "\(result.stderr)")
    let lines = result.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }
    #expect(lines.count == 1, "only rank 0 prints: \(result.stdout)")
    let json = try JSONSerialization.jsonObject(with: Data((lines.first ?? "{}").utf8)) as! [String: Any]
    #expect(json["ranks"] as? Int == 2)
    // 64·16 + 16 + 16·4 + 4 + 2·16 + 16 + 16·64 + 64 = 2244 parameters, 4 bytes each.
    #expect(json["allreduce_bytes_per_step"] as? Int == 4 * 2244)
    #expect((json["allreduce_ms_per_step"] as? Double).map { $0 > 0 } == true)
    // Each rank multiplies its half of every batch; the products counted are the two ranks'
    // together, the same per image as one process (see benchReportsEveryFigure).
    let expectedFLOPs: Double = 2 * (3 * 2144 - 1024)
    #expect(json["products_flops_per_image"] as? Double == expectedFLOPs, "\(String(describing: json["products_flops_per_image"]))")
}

/// Whether process `pid` has exited and waits to be reaped.
func isZombie(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
}

/// The two-stochastic-layer model under 2 ranks (ε₁ and ε₂ of the global batch drawn on every
/// rank, each rank on its rows): the weights of one process up to rounding, identical on the ranks.
@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func mpiRanksTrainTheTwoLayerModel() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "4",
                     "--stochastic-layers", "2", "--latent2", "2", "--hidden2", "8", "--iwae", "2", "--threads", "1"]
    let (two, weights, largest) = try trainOnOneAndTwoRanks(arguments, in: dir)
    #expect(weights.contains("encoder2.0.weight") && weights.contains("decoder2.2.bias"), "\(two.stdout)")
    #expect(largest < 1e-4, "2 ranks differ from 1 by \(largest) after 12 steps")  // measured: 4.3e-6 (IWAE K = 2)
}

/// bf16 products under 2 ranks: every rank rounds its own rows' operands, the summed gradient is
/// FP32, so the ranks keep identical weights, close to one process's bf16 run.
@Test(.enabled(if: mpirunPath != nil && BF16.isSupported, "needs Open MPI's mpirun and a CPU with AVX512_BF16"))
func mpiRanksTrainInBF16() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--batch-size", "16", "--hidden", "16", "--latent", "4",
                     "--precision", "bf16", "--threads", "1"]
    let (two, _, largest) = try trainOnOneAndTwoRanks(arguments, in: dir)
    #expect(two.stdout.contains(", bf16 matrix products"), "\(two.stdout)")
    // The weight gradient's bf16 product over 8 rows instead of 16 rounds its partial sums to the
    // same bf16 operands but adds them in another order: FP32 rounding, not bf16's.
    #expect(largest < 1e-4, "2 ranks differ from 1 by \(largest) after 12 steps")
}

/// Trains `arguments` under `mpirun -np 1` (DIR/one) and `-np 2` with the replica check (DIR/two);
/// expects both to succeed, the replicas identical at all 13 checks of a 12-step run, and the same
/// weight names. Returns the 2-rank output, those names, and the largest difference of a weight.
func trainOnOneAndTwoRanks(_ arguments: [String], in dir: String) throws -> (two: Output, weights: Set<String>, largest: Float) {
    let one = try mpirun(1, arguments + ["--out", dir + "/one"])
    #expect(one.status == 0, "\(one.stderr)")
    let two = try mpirun(2, arguments + ["--out", dir + "/two", "--check-replicas"])
    #expect(two.status == 0, "\(two.stderr)")
    #expect(two.stdout.contains("replica check: the weights were identical on all 2 ranks at all 13 checks"), "\(two.stdout)")
    let a = try tensors(dir + "/one/model.safetensors"), b = try tensors(dir + "/two/model.safetensors")
    #expect(a.keys.sorted() == b.keys.sorted())
    var largest: Float = 0
    for (name, values) in a { for (x, y) in zip(values, b[name] ?? []) { largest = max(largest, abs(x - y)) } }
    return (two, Set(a.keys), largest)
}

/// `--batch-per-rank B` (weak scaling): alone it is `--batch-size B`, bit for bit; under
/// `mpirun -np 2` the global batch is 2B, each rank trains on B images per step, and
/// `--lr-scaling linear` doubles the rate — both recorded in config.json, which a resume follows.
/// `--lr-scaling` without `--batch-per-rank` is refused.
@Test(.enabled(if: mpirunPath != nil, "needs Open MPI's mpirun (scripts/setup.sh installs it)"))
func batchPerRankGrowsTheGlobalBatchWithTheRanks() throws {
    let dir = temporaryDirectory()
    try writeTinyDataset(dir)
    let arguments = ["train", "--dataset", "mnist", "--data-dir", dir, "--epochs", "2", "--hidden", "16", "--latent", "2", "--threads", "1", "--lr", "0.001"]
    let perRank = try vae(arguments + ["--batch-per-rank", "8", "--out", dir + "/per-rank"])
    let plain = try vae(arguments + ["--batch-size", "8", "--out", dir + "/plain"])
    #expect(perRank.status == 0 && plain.status == 0, "\(perRank.stderr) \(plain.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/per-rank/model.safetensors")) == Data(contentsOf: URL(fileURLWithPath: dir + "/plain/model.safetensors")))

    let two = try mpirun(2, arguments + ["--batch-per-rank", "8", "--lr-scaling", "linear", "--out", dir + "/two"])
    #expect(two.status == 0, "\(two.stderr)")
    #expect(two.stdout.contains("2 MPI ranks, each on 8–8 images of every batch of 16"), "\(two.stdout)")
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/two/config.json"))) as? [String: Any]
    let training = config?["training"] as? [String: Any]
    #expect(training?["batchSize"] as? Int == 16)
    #expect(abs((training?["learningRate"] as? Double ?? 0) - 0.002) < 1e-9, "\(training?["learningRate"] ?? "none")")

    let refused = try vae(arguments + ["--lr-scaling", "linear", "--out", dir + "/refused"])
    #expect(refused.status != 0 && refused.stderr.contains("--batch-per-rank"), "\(refused.stderr)")
}
