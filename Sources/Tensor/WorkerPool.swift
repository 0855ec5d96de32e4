import CKernels
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Threads that run fork–join tasks with little latency.
///
/// A training step forks twice within about a millisecond, with short serial work between; a
/// thread that went to sleep takes tens of microseconds to wake (measured ≈ 75 µs per fork with
/// `DispatchQueue.concurrentPerform` here). Pool threads instead spin for `spinSeconds` after a
/// task, then park on a semaphore until the next one.
///
/// The helpers keep their data apart: the task counter the caller bumps, and each helper's
/// "done" and "parked" flags, sit on cache lines of their own (128 bytes apart, the pair of lines
/// Intel's prefetcher fetches together), so a helper finishing does not pull the line every
/// other helper spins on. Each helper is pinned to a CPU of its own — or, when each part runs a
/// team of `cpusPerPart` threads of its own (a batch worker's GEMM threads, which start from the
/// helper and inherit its mask), to that many CPUs of its own (``cpuSets(count:cpusPerPart:allowed:firstSiblings:caller:localRank:localSize:online:)``), the caller's own GEMM threads going to the set it keeps — where the
/// process's affinity mask has enough for every part; `VAE_PIN_WORKERS=0` leaves them to the
/// scheduler.
///
/// `run` is called from one thread at a time. The pool's threads stop when it is released.
public final class WorkerPool: @unchecked Sendable {
    /// Number of parallel parts a `run` executes (the caller's thread is part 0).
    public let count: Int
    /// The CPUs each helper (parts 1 … count − 1) is pinned to, `cpusPerPart` each; nil when
    /// they are not pinned.
    public let helperCPUSets: [[Int]]?
    /// The CPU each helper is pinned to, when each has one.
    public var helperCPUs: [Int]? { helperCPUSets.flatMap { sets in sets.allSatisfy { $0.count == 1 } ? sets.map { $0[0] } : nil } }
    private let core: Core
    private var threads: [pthread_t] = []

    /// Whether pools pin their helpers: unless `VAE_PIN_WORKERS=0`.
    public static var pinsWorkers: Bool { ProcessInfo.processInfo.environment["VAE_PIN_WORKERS"] != "0" }

    /// A pool of `count` parts; with `cpusPerPart` > 1 each part's thread starts a team of that
    /// many threads (its GEMM threads), so a pinned helper gets that many CPUs.
    public init(count: Int, cpusPerPart: Int = 1, spinSeconds: Double = 200e-6, pinned: Bool = WorkerPool.pinsWorkers) {
        precondition(count >= 1, "a pool needs at least one part")
        self.count = count
        let plan = pinned ? Self.plannedCPUSets(count: count, cpusPerPart: max(cpusPerPart, 1)) : nil
        helperCPUSets = plan?.helpers
        if cpusPerPart > 1 {
            // The caller's GEMM threads (its OpenMP team, which it started unpinned) onto the set
            // the caller keeps, away from the helpers' sets; unpinned, onto the whole mask again
            // (an earlier pool may have pinned them). Only the team's other threads: the caller
            // itself stays unpinned.
            let cpus = (plan?.caller ?? Self.allowedCPUs()).map(Int32.init)
            BLAS.onGEMMThreads { thread, _ in
                if thread > 0 { _ = cpus.withUnsafeBufferPointer { vae_pin_thread_to($0.baseAddress, Int32($0.count)) } }
            }
        }
        core = Core(helpers: count - 1, spinSeconds: spinSeconds)
        for index in 1..<max(count, 1) {
            let cpus = helperCPUSets.map { $0[index - 1].map(Int32.init) } ?? []
            let context = Unmanaged.passRetained(Context(core: core, index: index, cpus: cpus)).toOpaque()
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
                if !context.cpus.isEmpty { _ = context.cpus.withUnsafeBufferPointer { vae_pin_thread_to($0.baseAddress, Int32($0.count)) } }
                context.core.work(index: context.index)
                return nil
            }, context)
            precondition(status == 0, "cannot start a worker thread (error \(status))")
            threads.append(thread)
        }
    }

    deinit {
        core.shutDown()
        for thread in threads { pthread_join(thread, nil) }
    }

    /// Runs `body(0)` on the calling thread and `body(1)`, …, `body(count − 1)` on the pool's
    /// threads, and returns when all have finished.
    public func run(_ body: (Int) -> Void) {
        if count == 1 {
            body(0)
            return
        }
        withoutActuallyEscaping(body) { task in
            let generation = core.start(task)
            task(0)
            core.waitForHelpers(generation)
        }
    }

    /// This process's plan for a pool of `count` parts: ``cpuSets(count:cpusPerPart:allowed:firstSiblings:caller:localRank:localSize:online:)``
    /// on its affinity mask, the sysfs topology, the CPU the caller runs on and Open MPI's local
    /// rank.
    static func plannedCPUSets(count: Int, cpusPerPart: Int) -> (caller: [Int], helpers: [[Int]])? {
        guard count > 1 else { return nil }
        let allowed = allowedCPUs()
        let firstSiblings = Set(allowed.filter { vae_cpu_is_first_sibling(Int32($0)) != 0 })
        let environment = ProcessInfo.processInfo.environment
        return cpuSets(
            count: count, cpusPerPart: cpusPerPart, allowed: allowed, firstSiblings: firstSiblings, caller: Int(vae_current_cpu()),
            localRank: environment["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0,
            localSize: environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1, online: sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// The CPUs of this process's affinity mask.
    static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 4096)
        let n = Int(vae_affinity_cpus(&cpus, Int32(cpus.count)))
        return cpus.prefix(n).map(Int.init)
    }

    /// The CPUs of a pool of `count` parts, `cpusPerPart` each: the set the caller keeps (where
    /// its GEMM threads go) and those of helpers 1 … count − 1; nil (not pinned) when the
    /// `allowed` CPUs cannot give every part that many of its own.
    ///
    /// The candidates are one hardware thread per core first (`firstSiblings`, in order), then
    /// the second SMT threads. Where `localSize` ranks of a job share this mask and it holds
    /// `localSize × count × cpusPerPart` CPUs (`mpirun --bind-to none`), local rank r takes its
    /// share of the candidates in order; unbound ranks (a mask of all `online` CPUs) that need
    /// more than that are not pinned. The pool's CPUs are the first `count × cpusPerPart`
    /// candidates, taken `cpusPerPart` at a time as the parts' sets; the caller (part 0, never
    /// pinned: the threads it starts later, a GEMM library's, would inherit its mask) keeps the
    /// set holding the CPU it runs on (else the first), and the helpers take the others in order.
    public static func cpuSets(
        count: Int, cpusPerPart: Int = 1, allowed: [Int], firstSiblings: Set<Int>, caller: Int, localRank: Int, localSize: Int, online: Int
    ) -> (caller: [Int], helpers: [[Int]])? {
        guard count > 1, cpusPerPart >= 1 else { return nil }
        let total = count * cpusPerPart
        var candidates = allowed.filter { firstSiblings.contains($0) } + allowed.filter { !firstSiblings.contains($0) }
        if localSize > 1 && localRank >= 0 && localRank < localSize {
            if candidates.count >= localSize * total {
                candidates = Array(candidates[(localRank * total)..<((localRank + 1) * total)])
            } else if allowed.count >= online {
                return nil  // unbound ranks with more threads than the machine has CPUs: the scheduler spreads them better
            }
        }
        guard candidates.count >= total else { return nil }
        var sets = (0..<count).map { Array(candidates[($0 * cpusPerPart)..<(($0 + 1) * cpusPerPart)]) }
        let kept = sets.remove(at: sets.firstIndex { $0.contains(caller) } ?? 0)
        return (kept, sets)
    }

    private final class Context {
        let core: Core
        let index: Int
        let cpus: [Int32]
        init(core: Core, index: Int, cpus: [Int32]) {
            self.core = core
            self.index = index
            self.cpus = cpus
        }
    }

    /// The state shared with the threads.
    private final class Core: @unchecked Sendable {
        /// One atomic per 128-byte line: line 0 the task generation (written by the caller, read
        /// by every spinning helper), then per helper a line with its done flag (the generation
        /// it last finished) and its parked flag (1 while it is parked, or about to be).
        static let line = 128
        let lines: UnsafeMutableRawPointer
        let semaphores: UnsafeMutablePointer<sem_t>
        let helpers: Int
        let spinSeconds: Double
        var task: ((Int) -> Void)?
        static let stop = Int.min

        init(helpers: Int, spinSeconds: Double) {
            self.helpers = helpers
            self.spinSeconds = spinSeconds
            lines = .allocate(byteCount: Self.line * (1 + helpers), alignment: Self.line)
            semaphores = .allocate(capacity: max(helpers, 1))
            generationAtomic.initialize(to: Atomic(0))
            for i in 0..<helpers {
                done(i).initialize(to: Atomic(0))
                parked(i).initialize(to: Atomic(0))
                sem_init(semaphores + i, 0, 0)
            }
        }

        deinit {
            for i in 0..<helpers {
                sem_destroy(semaphores + i)
                _ = done(i).move()
                _ = parked(i).move()
            }
            _ = generationAtomic.move()
            lines.deallocate()
            semaphores.deallocate()
        }

        var generationAtomic: UnsafeMutablePointer<Atomic<Int>> { lines.assumingMemoryBound(to: Atomic<Int>.self) }
        func done(_ slot: Int) -> UnsafeMutablePointer<Atomic<Int>> {
            (lines + Self.line * (1 + slot)).assumingMemoryBound(to: Atomic<Int>.self)
        }
        func parked(_ slot: Int) -> UnsafeMutablePointer<Atomic<Int>> {
            (lines + Self.line * (1 + slot) + MemoryLayout<Atomic<Int>>.stride).assumingMemoryBound(to: Atomic<Int>.self)
        }

        /// Publishes `body` as the next task; returns its generation.
        func start(_ body: @escaping (Int) -> Void) -> Int {
            task = body
            let generation = generationAtomic.pointee.add(1, ordering: .sequentiallyConsistent).newValue
            wakeParked()
            return generation
        }

        func waitForHelpers(_ generation: Int) {
            for i in 0..<helpers {
                while done(i).pointee.load(ordering: .acquiring) != generation {}
            }
            task = nil
        }

        func shutDown() {
            generationAtomic.pointee.store(Self.stop, ordering: .sequentiallyConsistent)
            wakeParked()
        }

        private func wakeParked() {
            for i in 0..<helpers where parked(i).pointee.exchange(0, ordering: .sequentiallyConsistent) == 1 {
                sem_post(semaphores + i)
            }
        }

        /// A helper thread's loop: wait for a new generation, run its part, repeat.
        func work(index: Int) {
            let slot = index - 1
            var seen = 0
            while true {
                var spinStart = -1.0
                var spins = 0
                var current = generationAtomic.pointee.load(ordering: .acquiring)
                while current == seen {
                    spins &+= 1
                    if spins & 1023 == 0 {
                        let t = monotonicSeconds()
                        if spinStart < 0 {
                            spinStart = t
                        } else if t - spinStart > spinSeconds {
                            park(slot: slot, seen: seen)
                            spinStart = -1
                        }
                    }
                    current = generationAtomic.pointee.load(ordering: .acquiring)
                }
                if current == Self.stop { return }
                seen = current
                task?(index)
                done(slot).pointee.store(seen, ordering: .releasing)
            }
        }

        /// Sleeps until the generation moves past `seen` (or returns at once if it already has).
        private func park(slot: Int, seen: Int) {
            parked(slot).pointee.store(1, ordering: .sequentiallyConsistent)
            if generationAtomic.pointee.load(ordering: .sequentiallyConsistent) != seen {
                // A new task came; if the starter already took our flag it also posted: consume it.
                if parked(slot).pointee.exchange(0, ordering: .sequentiallyConsistent) == 1 { return }
            }
            while sem_wait(semaphores + slot) != 0 && errno == EINTR {}
        }
    }
}

/// Seconds on a monotonic clock (for durations: never goes back, unaffected by clock changes).
@inline(__always)
public func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
