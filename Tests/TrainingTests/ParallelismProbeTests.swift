import Datasets
import Foundation
import Tensor
import Testing
import TestSupport
@testable import Training

/// The splits a probe times: batch workers in powers of two up to the cores, the mixes whose
/// product is the cores, and one worker with every core on the products; none with more
/// workers than rows; `--parallel` keeps to one family.
@Test func probeCandidatesCoverTheSplitsOfTheCores() {
    func names(_ ps: [Parallelism]) -> [String] { ps.map { "\($0.workers)x\($0.gemmThreads)" } }
    #expect(names(ParallelismProbe.candidates(cores: 1, batchSize: 128)) == ["1x1"])
    #expect(names(ParallelismProbe.candidates(cores: 2, batchSize: 128)) == ["1x1", "2x1", "1x2"])
    #expect(names(ParallelismProbe.candidates(cores: 16, batchSize: 128))
            == ["1x1", "2x1", "4x1", "8x1", "16x1", "2x8", "4x4", "8x2", "1x2", "1x4", "1x8", "1x16"])
    #expect(names(ParallelismProbe.candidates(cores: 6, batchSize: 128)) == ["1x1", "2x1", "4x1", "6x1", "2x3", "1x2", "1x4", "1x6"])
    #expect(names(ParallelismProbe.candidates(cores: 16, batchSize: 3)) == ["1x1", "2x1", "2x8", "1x2", "1x4", "1x8", "1x16"])
    #expect(names(ParallelismProbe.candidates(cores: 4, batchSize: 128, mode: .batch)) == ["1x1", "2x1", "4x1"])
    #expect(names(ParallelismProbe.candidates(cores: 4, batchSize: 128, mode: .blas)) == ["1x1", "1x2", "1x4"])
}

/// The probe times every candidate on a scratch model and returns one of them; a run created
/// afterwards with that split is bit for bit the run created without a probe before it.
@Test func probingLeavesTheRunAsItWouldBe() throws {
    let dir = temporaryDirectory("probe")
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, epochs: 1)
    let data = try config.training.loadData()
    // Batch splits only: the GEMM thread count is the process's, and other tests run alongside.
    let candidates = [Parallelism.batch(workers: 1), .batch(workers: 2), .batch(workers: 3)]
    let result = try ParallelismProbe.fastest(config: config, train: data.train, candidates: candidates, steps: 2, warmup: 1)
    #expect(result.trials.map(\.parallelism) == candidates)
    #expect(result.trials.allSatisfy { $0.secondsPerStep > 0 && $0.secondsPerStep.isFinite })
    #expect(candidates.contains(result.best))
    #expect(candidates[ParallelismProbe.choice(result.trials.map(\.secondsPerStep))] == result.best)
    #expect(result.summary.hasPrefix(result.best.split + " (chosen of 1×1 "), "\(result.summary)")
    // One candidate: nothing to time.
    #expect(try ParallelismProbe.fastest(config: config, train: data.train, candidates: [.batch(workers: 2)]).trials.isEmpty)
    _ = try TrainingRun(creating: RunFolder(path: dir + "/after"), config: config, data: data, parallelism: result.best).train()
    _ = try TrainingRun(creating: RunFolder(path: dir + "/alone"), config: config, data: data, parallelism: result.best).train()
    #expect(try finalFiles(dir + "/after") == finalFiles(dir + "/alone"))
}

/// The split chosen is the first (fewest batch workers) within 2% of the fastest: the fastest
/// when it stands out, the earlier of two that time alike (3.57 against 3.56 ms), so that the
/// same command does not flip between them run to run.
@Test func theProbeChoosesTheFirstSplitWithinTheMarginOfTheFastest() {
    #expect(ParallelismProbe.tieMargin == 0.02)
    #expect(ParallelismProbe.choice([5.32, 3.57, 3.56]) == 1)
    #expect(ParallelismProbe.choice([3.10, 1.92, 1.50]) == 2)
    #expect(ParallelismProbe.choice([1.00, 1.019, 0.5]) == 2)
    #expect(ParallelismProbe.choice([1.00, 1.019]) == 0)
    #expect(ParallelismProbe.choice([1.00, 0.975]) == 1)  // 2.5% faster: chosen
    #expect(ParallelismProbe.choice([2.0, 1.0, 1.015]) == 1)
    #expect(ParallelismProbe.choice([2.0, 1.015, 1.0]) == 1)
    #expect(ParallelismProbe.choice([7.0]) == 0)
    #expect(ParallelismProbe.choice([]) == 0)
}

/// The second pass times the contenders — those within 10% of the fastest first pass, when
/// there are two or more — and a candidate stops after three timed steps when their median is
/// more than 25% behind the fastest so far.
@Test func theProbeRetimesOnlyTheContendersAndDropsTheClearlySlower() {
    #expect(ParallelismProbe.retimeMargin == 0.10 && ParallelismProbe.dropMargin == 0.25)
    #expect(ParallelismProbe.contenders([5.08, 3.16, 3.37]) == [1, 2])
    #expect(ParallelismProbe.contenders([5.08, 3.16, 3.47]) == [1, 2])   // 3.476 is the edge
    #expect(ParallelismProbe.contenders([5.08, 3.16, 3.50]) == [])       // one contender: no second pass
    #expect(ParallelismProbe.contenders([1.0, 1.0, 1.05, 2.0]) == [0, 1, 2])
    #expect(ParallelismProbe.contenders([2.0, .infinity, 1.0]) == [])
    #expect(ParallelismProbe.contenders([]) == [])
    #expect(!ParallelismProbe.dropsEarly(typical: 9.0, steps: 2, fastest: 1.0))     // two steps say little
    #expect(ParallelismProbe.dropsEarly(typical: 1.26, steps: 3, fastest: 1.0))
    #expect(!ParallelismProbe.dropsEarly(typical: 1.24, steps: 3, fastest: 1.0))
    #expect(!ParallelismProbe.dropsEarly(typical: 5.0, steps: 6, fastest: .infinity))  // nothing timed yet
}

/// With a cache the first probe stores its figures and the next one reads them back — the same
/// split and figures, said to be kept — without timing; other candidates, another model or
/// batch size, or `VAE_CACHE=off` probe again.
@Test func aProbeIsKeptAndReadBack() throws {
    let dir = temporaryDirectory("probe-cache")
    try writeTinyDataset(dir)
    let config = tinyConfig(dir, epochs: 1)
    let data = try config.training.loadData()
    // Kept whatever else runs meanwhile (the tests run side by side).
    let cache = try #require(ProbeCache(environment: ["VAE_CACHE": dir + "/cache", "VAE_PROBE_BUSY_LIMIT": "1"]))
    #expect(cache.folder.directory == dir + "/cache/probes")
    let candidates = [Parallelism.batch(workers: 1), .batch(workers: 2)]
    func probe(_ config: RunConfig, _ candidates: [Parallelism], cache: ProbeCache?) throws -> ParallelismProbe.Result {
        try ParallelismProbe.fastest(config: config, train: data.train, candidates: candidates, steps: 2, warmup: 1, cache: cache)
    }
    let first = try probe(config, candidates, cache: cache)
    #expect(first.reused == nil)
    #expect(try FileManager.default.contentsOfDirectory(atPath: cache.folder.directory).count == 1)
    let second = try probe(config, candidates, cache: cache)
    #expect(second.reused?.folder == cache.folder.directory)
    #expect(second.trials == first.trials && second.best == first.best && second.seconds == first.seconds)
    #expect(second.summary.contains("probed in \(String(format: "%.2f", first.seconds)) s on 20"), "\(second.summary)")
    #expect(second.summary.hasSuffix("kept in \(cache.folder.directory), VAE_CACHE=off to probe again)"), "\(second.summary)")

    var wider = config
    wider.training.batchSize = 8
    var deeper = config
    deeper.model.hiddenSizes = [16, 16]
    for (other, otherCandidates) in [(wider, candidates), (deeper, candidates), (config, candidates + [.blas(threads: 2)])] {
        #expect(try probe(other, otherCandidates, cache: cache).reused == nil)
    }
    #expect(try FileManager.default.contentsOfDirectory(atPath: cache.folder.directory).count == 4)
    #expect(try probe(config, candidates, cache: nil).reused == nil)

    // A probe that other work shared the machine with is not kept (here: any share at all; a
    // probe this short may also pass within one of /proc/stat's ticks, and is not kept either).
    let busy = try #require(ProbeCache(environment: ["VAE_CACHE": dir + "/busy", "VAE_PROBE_BUSY_LIMIT": "-1"]))
    let refused = try probe(config, candidates, cache: busy)
    #expect(refused.notKept?.hasPrefix("not kept: ") == true, "\(refused.summary)")
    #expect(refused.summary.hasSuffix("; \(refused.notKept ?? ""))"), "\(refused.summary)")
    #expect(!FileManager.default.fileExists(atPath: busy.folder.directory))
    #expect(try probe(config, candidates, cache: busy).reused == nil)
}

/// A probe is kept when other processes took at most the limit of the machine's CPU time while
/// it ran (0.2 unless `VAE_PROBE_BUSY_LIMIT` says otherwise), and not when the load is unknown
/// — unless the limit is 1, which keeps every probe.
@Test func aProbeIsKeptOnlyWhenItHadTheMachineToItself() throws {
    let cache = try #require(ProbeCache(environment: ["VAE_CACHE": "/c"]))
    #expect(cache.busyLimit == 0.2)
    #expect(cache.refusal(othersShare: 0) == nil && cache.refusal(othersShare: 0.2) == nil)
    #expect(cache.refusal(othersShare: 0.354) == "not kept: other work took 35% of the CPU time meanwhile (VAE_PROBE_BUSY_LIMIT 0.2)")
    #expect(cache.refusal(othersShare: nil) == "not kept: the machine's load could not be measured (/proc/stat)")
    #expect(ProbeCache(environment: ["VAE_CACHE": "/c", "VAE_PROBE_BUSY_LIMIT": "0.5"])?.busyLimit == 0.5)
    let any = try #require(ProbeCache(environment: ["VAE_CACHE": "/c", "VAE_PROBE_BUSY_LIMIT": "1"]))
    #expect(any.refusal(othersShare: nil) == nil && any.refusal(othersShare: 1) == nil)
    for bad in ["", "half", "nan", "inf"] { #expect(ProbeCache(environment: ["VAE_CACHE": "/c", "VAE_PROBE_BUSY_LIMIT": bad])?.busyLimit == 0.2, "\(bad)") }
}

/// The machine's busy and total time from `/proc/stat`'s `cpu` line (steal counted busy, iowait
/// idle); the others' share is the machine's busy time less this process's over the total, kept
/// within 0…1; the readings of this machine move with this process's own work.
@Test func machineUseSeparatesThisProcessFromTheOthers() throws {
    let line = "cpu  239275 121 20811 210111 2053 7 399 660 40 0"
    let times = try #require(MachineUse.times(cpuLine: line))
    #expect(times.busy == 239275 + 121 + 20811 + 7 + 399 + 660)
    #expect(times.total == times.busy + 210111 + 2053)
    #expect(MachineUse.times(cpuLine: "cpu 1 2 3") == nil && MachineUse.times(cpuLine: "cpu 1 2 3 4 5 6 x 8") == nil)
    let start = MachineUse(busy: 100, total: 400, own: 10)
    #expect(MachineUse(busy: 150, total: 600, own: 40).othersShare(since: start) == 0.1)   // 50 busy, 30 ours, of 200
    #expect(MachineUse(busy: 130, total: 600, own: 50).othersShare(since: start) == 0)     // ticks coarser than rusage
    #expect(MachineUse(busy: 500, total: 600, own: 10).othersShare(since: start) == 1)
    #expect(MachineUse(busy: 100, total: 400, own: 10).othersShare(since: start) == nil)

    // Spin until this process has used 0.05 s more CPU by the kernel's own clock (not 0.05 s of
    // wall time: beside the other tests this thread gets only a share of a core).
    func processCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
    let before = try #require(MachineUse.now())
    let spin = processCPUSeconds(), wall = monotonicSeconds()
    var x = 0.0
    while processCPUSeconds() - spin < 0.05 && monotonicSeconds() - wall < 30 { x += 1 }
    let spun = processCPUSeconds() - spin
    let after = try #require(MachineUse.now())
    #expect(x > 0 && spun >= 0.05 && after.own - before.own >= spun - 0.005, "\(after.own - before.own) s of CPU by getrusage, \(spun) s by the process clock")
    #expect(after.total > before.total && after.busy >= before.busy)
    let share = try #require(after.othersShare(since: before))
    #expect(share >= 0 && share <= 1)
}

/// An entry is read back only whole and for exactly its candidates; an unreadable one, or one
/// with a time that is not finite and positive, is passed over (and probed again); a result
/// without finite times is not stored.
@Test func theProbeCacheReadsOnlySoundEntries() throws {
    let dir = temporaryDirectory("probe-cache-entries")
    let cache = try #require(ProbeCache(environment: ["VAE_CACHE": dir]))
    let candidates = [Parallelism.batch(workers: 1), .batch(workers: 2), .blas(threads: 2)]
    let trials = zip(candidates, [5.0e-3, 3.16e-3, 3.2e-3]).map { ParallelismProbe.Trial(parallelism: $0, secondsPerStep: $1) }
    #expect(cache.store(ParallelismProbe.Result(best: candidates[1], trials: trials, seconds: 0.2), "k"))
    let read = try #require(cache.result("k", candidates: candidates))
    #expect(read.trials == trials && read.best == candidates[1] && read.seconds == 0.2)
    #expect(cache.result("k", candidates: Array(candidates.prefix(2))) == nil)
    #expect(cache.result("k", candidates: [candidates[0], candidates[2], candidates[1]]) == nil)
    #expect(cache.result("other", candidates: candidates) == nil)
    // The choice is made again from the figures by the probe's own rule.
    let stored = try String(contentsOfFile: cache.path("k"), encoding: .utf8)
    try stored.replacingOccurrences(of: "0.00316", with: "0.00416").write(toFile: cache.path("k"), atomically: true, encoding: .utf8)
    #expect(cache.result("k", candidates: candidates)?.best == candidates[2])
    for bad in [stored.replacingOccurrences(of: "0.00316", with: "-0.00316"), stored.replacingOccurrences(of: "0.00316", with: "0"),
                String(stored.dropLast(5)), "", "{}"] {
        try bad.write(toFile: cache.path("k"), atomically: true, encoding: .utf8)
        #expect(cache.result("k", candidates: candidates) == nil, "\(bad)")
    }
    let failed = [ParallelismProbe.Trial(parallelism: candidates[0], secondsPerStep: .infinity)] + trials.dropFirst()
    #expect(!cache.store(ParallelismProbe.Result(best: candidates[1], trials: failed, seconds: 0.2), "f"))
    #expect(!FileManager.default.fileExists(atPath: cache.path("f")))
}

/// Under mpirun every rank gets its share of the machine, not every core: the affinity mask,
/// at most the online cores over the ranks on the host (the environment is read elsewhere; the
/// rule is checked here without changing this process's environment, which other tests read).
@Test func ranksOnOneHostShareItsCores() {
    let mask = Parallel.coreCount
    #expect(mask >= 1 && mask <= Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    #expect(Parallelism.availableCores(mask: 16, online: 16, localRanks: nil) == 16)
    #expect(Parallelism.availableCores(mask: 16, online: 16, localRanks: 1) == 16)
    #expect(Parallelism.availableCores(mask: 16, online: 16, localRanks: 4) == 4)     // unbound ranks
    #expect(Parallelism.availableCores(mask: 1, online: 16, localRanks: 16) == 1)     // --bind-to core
    #expect(Parallelism.availableCores(mask: 4, online: 16, localRanks: 4) == 4)      // 4 cores each
    #expect(Parallelism.availableCores(mask: 8, online: 16, localRanks: 16) == 1)     // bound to a socket of 8
    #expect(Parallelism.availableCores(mask: 2, online: 2, localRanks: 1000) == 1)
    #expect(Parallelism.availableCores == mask)  // a plain process (the tests run without mpirun)
}

