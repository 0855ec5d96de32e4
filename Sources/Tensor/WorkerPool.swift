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
/// `run` is called from one thread at a time. The pool's threads stop when it is released.
public final class WorkerPool: @unchecked Sendable {
    /// Number of parallel parts a `run` executes (the caller's thread is part 0).
    public let count: Int
    private let core: Core
    private var threads: [pthread_t] = []

    public init(count: Int, spinSeconds: Double = 200e-6) {
        precondition(count >= 1, "a pool needs at least one part")
        self.count = count
        core = Core(helpers: count - 1, spinSeconds: spinSeconds)
        for index in 1..<max(count, 1) {
            let context = Unmanaged.passRetained(Context(core: core, index: index)).toOpaque()
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
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
            core.start(task)
            task(0)
            core.waitForHelpers()
        }
    }

    private final class Context {
        let core: Core
        let index: Int
        init(core: Core, index: Int) {
            self.core = core
            self.index = index
        }
    }

    /// The state shared with the threads.
    private final class Core: @unchecked Sendable {
        let generation = Atomic<Int>(0)
        let pending = Atomic<Int>(0)
        /// Per helper: 1 while it is parked (or about to be), 0 otherwise.
        let parked: UnsafeMutablePointer<Atomic<Int>>
        let semaphores: UnsafeMutablePointer<sem_t>
        let helpers: Int
        let spinSeconds: Double
        var task: ((Int) -> Void)?
        static let stop = Int.min

        init(helpers: Int, spinSeconds: Double) {
            self.helpers = helpers
            self.spinSeconds = spinSeconds
            parked = .allocate(capacity: max(helpers, 1))
            semaphores = .allocate(capacity: max(helpers, 1))
            for i in 0..<helpers {
                (parked + i).initialize(to: Atomic(0))
                sem_init(semaphores + i, 0, 0)
            }
        }

        deinit {
            for i in 0..<helpers { sem_destroy(semaphores + i) }
            parked.deinitialize(count: helpers)
            parked.deallocate()
            semaphores.deallocate()
        }

        func start(_ body: @escaping (Int) -> Void) {
            task = body
            pending.store(helpers, ordering: .sequentiallyConsistent)
            generation.add(1, ordering: .sequentiallyConsistent)
            wakeParked()
        }

        func waitForHelpers() {
            while pending.load(ordering: .acquiring) > 0 {}
            task = nil
        }

        func shutDown() {
            generation.store(Self.stop, ordering: .sequentiallyConsistent)
            wakeParked()
        }

        private func wakeParked() {
            for i in 0..<helpers where parked[i].exchange(0, ordering: .sequentiallyConsistent) == 1 {
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
                var current = generation.load(ordering: .acquiring)
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
                    current = generation.load(ordering: .acquiring)
                }
                if current == Self.stop { return }
                seen = current
                task?(index)
                pending.subtract(1, ordering: .releasing)
            }
        }

        /// Sleeps until the generation moves past `seen` (or returns at once if it already has).
        private func park(slot: Int, seen: Int) {
            parked[slot].store(1, ordering: .sequentiallyConsistent)
            if generation.load(ordering: .sequentiallyConsistent) != seen {
                // A new task came; if the starter already took our flag it also posted: consume it.
                if parked[slot].exchange(0, ordering: .sequentiallyConsistent) == 1 { return }
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
