import CKernels
import Foundation
import Tensor
import Testing

@Test(arguments: [1, 2, 3])
func everyPartRunsOncePerRunAndItsWritesAreVisible(count: Int) {
    let pool = WorkerPool(count: count)
    let slots = UnsafeMutableBufferPointer<Int>.allocate(capacity: count * 16)
    defer { slots.deallocate() }
    slots.initialize(repeating: 0)
    for round in 1...2000 {
        pool.run { part in slots[part * 16] += round }
        for part in 0..<count { #expect(slots[part * 16] == round * (round + 1) / 2) }
        if slots[0] != round * (round + 1) / 2 { break }
    }
}

@Test func parkedThreadsWakeForTheNextTask() {
    // A spin time of zero makes helpers park at once; sleeping between runs parks them for sure.
    let pool = WorkerPool(count: 3, spinSeconds: 0)
    var results = [Int](repeating: 0, count: 3)
    results.withUnsafeMutableBufferPointer { out in
        for round in 1...20 {
            if round % 4 == 0 { usleep(2000) }
            pool.run { part in out[part] = round * 10 + part }
            #expect(Array(out) == [round * 10, round * 10 + 1, round * 10 + 2])
        }
    }
}

@Test func poolsShutDownWhenReleased() {
    // Creating and dropping many pools must neither hang nor leave threads running tasks.
    for _ in 0..<50 {
        let pool = WorkerPool(count: 2)
        let box = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        box.initialize(repeating: 0, count: 2)
        pool.run { box[$0] = 1 }
        #expect(box[0] == 1 && box[1] == 1)
        box.deallocate()
    }
}

/// Each rank's (or worker's) rows of a batch, `Parallel.slice`: disjoint, in order, covering
/// every row once, for any number of parts (including more parts than rows).
@Test func slicesCoverEveryRowOnce() {
    for rows in [0, 1, 2, 7, 16, 128, 129] {
        for parts in 1...9 {
            let slices = (0..<parts).map { Parallel.slice($0, of: parts, count: rows) }
            #expect(slices.flatMap { Array($0) } == Array(0..<rows), "\(rows) rows in \(parts) parts")
            // On whole cache lines: the same cover, every inner boundary a multiple of 16.
            let lines = (0..<parts).map { Parallel.slice($0, of: parts, count: rows, multipleOf: 16) }
            #expect(lines.flatMap { Array($0) } == Array(0..<rows), "\(rows) values in \(parts) line-aligned parts")
            #expect(lines.dropLast().allSatisfy { $0.upperBound % 16 == 0 }, "\(lines)")
        }
    }
    // Near equal where the lines allow: 1,000 values in 4 parts of 240–264 (250 each, boundaries rounded down to lines).
    #expect((0..<4).map { Parallel.slice($0, of: 4, count: 1000, multipleOf: 16).count } == [240, 256, 240, 264])
}

/// The helpers' CPUs of `WorkerPool.cpuSets`' plan, one per part.
func helperCPUs(count: Int, allowed: [Int], firstSiblings: Set<Int>, caller: Int, localRank: Int, localSize: Int, online: Int) -> [Int]? {
    WorkerPool.cpuSets(count: count, allowed: allowed, firstSiblings: firstSiblings, caller: caller, localRank: localRank, localSize: localSize, online: online)?
        .helpers.map { $0[0] }
}

/// The helpers' CPU sets of `WorkerPool.cpuSets`' plan.
func helperCPUSets(
    count: Int, cpusPerPart: Int, allowed: [Int], firstSiblings: Set<Int>, caller: Int, localRank: Int, localSize: Int, online: Int
) -> [[Int]]? {
    WorkerPool.cpuSets(
        count: count, cpusPerPart: cpusPerPart, allowed: allowed, firstSiblings: firstSiblings, caller: caller, localRank: localRank,
        localSize: localSize, online: online
    )?.helpers
}

/// Which CPU each helper gets, from a mask, the SMT topology, the caller's CPU and Open MPI's
/// local rank — worked out by hand for each case.
@Test func helpersArePlannedOnePerCoreAwayFromTheCaller() {
    let two = [0, 1]
    #expect(helperCPUs(count: 2, allowed: two, firstSiblings: [0, 1], caller: 0, localRank: 0, localSize: 1, online: 64) == [1])
    #expect(helperCPUs(count: 2, allowed: two, firstSiblings: [0, 1], caller: 1, localRank: 0, localSize: 1, online: 64) == [0])
    #expect(helperCPUs(count: 1, allowed: two, firstSiblings: [0, 1], caller: 0, localRank: 0, localSize: 1, online: 64) == nil)
    #expect(helperCPUs(count: 3, allowed: two, firstSiblings: [0, 1], caller: 0, localRank: 0, localSize: 1, online: 64) == nil, "more parts than CPUs: not pinned")
    // 4 cores with 2 threads each, numbered as Linux does (siblings 4–7): one per core first.
    let smt = Array(0..<8), first: Set = [0, 1, 2, 3]
    #expect(helperCPUs(count: 4, allowed: smt, firstSiblings: first, caller: 2, localRank: 0, localSize: 1, online: 64) == [0, 1, 3])
    #expect(helperCPUs(count: 6, allowed: smt, firstSiblings: first, caller: 7, localRank: 0, localSize: 1, online: 64) == [1, 2, 3, 4, 5])
    // A mask of scattered CPUs (taskset -c 3,5,9).
    #expect(helperCPUs(count: 3, allowed: [3, 5, 9], firstSiblings: [3, 5, 9], caller: 0, localRank: 0, localSize: 1, online: 64) == [5, 9])
    // Two ranks sharing 16 CPUs (mpirun --bind-to none), 8 threads each: rank 1 takes 8…15.
    let sixteen = Array(0..<16)
    #expect(helperCPUs(count: 8, allowed: sixteen, firstSiblings: Set(sixteen), caller: 3, localRank: 1, localSize: 2, online: 16) == Array(9..<16))
    #expect(helperCPUs(count: 8, allowed: sixteen, firstSiblings: Set(sixteen), caller: 0, localRank: 0, localSize: 2, online: 16) == Array(1..<8))
    // Four unbound ranks of 8 threads on 16 CPUs: more threads than CPUs, so none pinned.
    #expect(helperCPUs(count: 8, allowed: sixteen, firstSiblings: Set(sixteen), caller: 0, localRank: 2, localSize: 4, online: 16) == nil)
    // Two ranks bound to 4 CPUs each (--map-by slot:PE=4): each pins within its own mask.
    #expect(helperCPUs(count: 4, allowed: [4, 5, 6, 7], firstSiblings: [4, 5, 6, 7], caller: 5, localRank: 1, localSize: 2, online: 16) == [4, 6, 7])
}

/// Parts that each run a team of threads (a batch worker and its GEMM threads, which inherit its
/// mask) get that many CPUs each, consecutive candidates, the caller keeping the set it runs in —
/// worked out by hand for each case.
@Test func helpersWithGEMMThreadsGetACPUForEachThread() {
    let sixteen = Array(0..<16), all = Set(0..<16)
    // 4 workers × 4 GEMM threads on 16 cores, the caller on CPU 5: it keeps 4…7.
    #expect(helperCPUSets(count: 4, cpusPerPart: 4, allowed: sixteen, firstSiblings: all, caller: 5, localRank: 0, localSize: 1, online: 16)
        == [[0, 1, 2, 3], [8, 9, 10, 11], [12, 13, 14, 15]])
    // The set the caller keeps, where its own GEMM threads go.
    #expect(WorkerPool.cpuSets(count: 4, cpusPerPart: 4, allowed: sixteen, firstSiblings: all, caller: 5, localRank: 0, localSize: 1, online: 16)?.caller
        == [4, 5, 6, 7])
    #expect(WorkerPool.cpuSets(count: 2, cpusPerPart: 4, allowed: sixteen, firstSiblings: all, caller: 3, localRank: 1, localSize: 2, online: 16)?.caller
        == [8, 9, 10, 11], "a caller outside its rank's share keeps the share's first set")
    // 4 cores with 2 threads each (siblings 4–7): 2 × 2 takes the four cores, not their siblings.
    #expect(helperCPUSets(count: 2, cpusPerPart: 2, allowed: Array(0..<8), firstSiblings: [0, 1, 2, 3], caller: 0, localRank: 0, localSize: 1, online: 8)
        == [[2, 3]])
    // Two ranks sharing 16 CPUs (--bind-to none), 2 × 4 each: rank 1 takes 8…15, its caller elsewhere.
    #expect(helperCPUSets(count: 2, cpusPerPart: 4, allowed: sixteen, firstSiblings: all, caller: 3, localRank: 1, localSize: 2, online: 16)
        == [[12, 13, 14, 15]])
    // Not enough CPUs for every thread: none pinned (3 × 2 on 4; four unbound ranks of 2 × 4 on 16).
    #expect(helperCPUSets(count: 3, cpusPerPart: 2, allowed: [0, 1, 2, 3], firstSiblings: [0, 1, 2, 3], caller: 0, localRank: 0, localSize: 1, online: 4) == nil)
    #expect(helperCPUSets(count: 2, cpusPerPart: 4, allowed: sixteen, firstSiblings: all, caller: 0, localRank: 2, localSize: 4, online: 16) == nil)
    // One CPU per part is the plain plan.
    #expect(helperCPUSets(count: 4, cpusPerPart: 1, allowed: Array(0..<8), firstSiblings: [0, 1, 2, 3], caller: 2, localRank: 0, localSize: 1, online: 64)
        == [[0], [1], [3]])
}

/// A pinned helper that runs a team (2 CPUs per part): its thread's mask is its planned set, so
/// the team it starts can spread over both.
@Test(.enabled(if: Parallel.coreCount >= 4, "needs four CPUs"))
func pinnedHelpersWithTeamsRunOnTheirOwnCPUs() {
    let pool = WorkerPool(count: 2, cpusPerPart: 2, pinned: true)
    var masks = [[Int]](repeating: [], count: 2)
    masks.withUnsafeMutableBufferPointer { out in
        pool.run { part in
            var cpus = [Int32](repeating: 0, count: 1024)
            let n = Int(vae_thread_cpus(&cpus, Int32(cpus.count)))
            out[part] = cpus.prefix(n).map(Int.init)
        }
    }
    #expect(pool.helperCPUSets?.count == 1 && masks[1] == pool.helperCPUSets![0].sorted(), "helper 1 runs on \(masks[1]), planned \(pool.helperCPUSets ?? [])")
    #expect(masks[1].count == 2)
}

/// The threads themselves: a pinned pool's helpers each run on the one CPU planned for them (the
/// kernel's own affinity mask of the thread), the caller's mask untouched; an unpinned pool's
/// helpers keep the process's mask.
@Test(.enabled(if: Parallel.coreCount >= 2, "needs two CPUs"))
func pinnedHelpersRunOnTheirOwnCPU() {
    func threadCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let n = Int(vae_thread_cpus(&cpus, Int32(cpus.count)))
        return cpus.prefix(n).map(Int.init)
    }
    let before = threadCPUs()
    let process = (0..<1024).filter { before.contains($0) }
    for pinned in [true, false] {
        let pool = WorkerPool(count: 2, pinned: pinned)
        var masks = [[Int]](repeating: [], count: 2)
        masks.withUnsafeMutableBufferPointer { out in pool.run { part in out[part] = threadCPUs() } }
        #expect(masks[0] == process, "the caller's mask changed")
        if pinned {
            #expect(pool.helperCPUs != nil && masks[1] == pool.helperCPUs!, "helper 1 runs on \(masks[1]), planned \(pool.helperCPUs ?? [])")
            #expect(process.contains(masks[1].first ?? -1))
        } else {
            #expect(pool.helperCPUs == nil && masks[1] == process)
        }
    }
}
