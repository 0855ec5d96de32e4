import Synchronization

/// A tally of the matrix products ``BLAS/sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:precision:library:)``
/// runs: how many there were, their arithmetic (2·m·n·k FLOP each: a multiply and an add per
/// term of every sum) and the wall time spent in them, summed over every thread that called it.
///
/// It answers "how much of a training step is matrix products, and how fast do they run in it?",
/// which a profile of the whole process cannot tell apart from the JIT'd code of the library.
/// Off by default: the products then pay one load of ``isOn``. `vae bench` turns it on for its
/// timed epochs. With several threads calling at once, ``seconds`` is the sum of their times
/// (CPU time in products, not wall time).
public enum ProductTally {
    /// Whether products are counted and timed. Set it between steps, not while workers run.
    nonisolated(unsafe) public static var isOn = false

    @usableFromInline static let products = Atomic<UInt64>(0)
    @usableFromInline static let arithmetic = Atomic<UInt64>(0)
    @usableFromInline static let nanoseconds = Atomic<UInt64>(0)

    /// Products counted since the last ``reset()``.
    public static var count: Int { Int(products.load(ordering: .relaxed)) }
    /// Their FLOPs, 2·m·n·k summed.
    public static var flops: Double { Double(arithmetic.load(ordering: .relaxed)) }
    /// Their wall time, summed over the calling threads.
    public static var seconds: Double { Double(nanoseconds.load(ordering: .relaxed)) / 1e9 }

    /// Sets the counts and times to zero.
    public static func reset() {
        products.store(0, ordering: .relaxed)
        arithmetic.store(0, ordering: .relaxed)
        nanoseconds.store(0, ordering: .relaxed)
    }

    /// Counts one m×k · k×n product that started at `start` (``monotonicSeconds()``) and has just ended.
    @usableFromInline static func record(m: Int, n: Int, k: Int, since start: Double) {
        let elapsed = max(0, monotonicSeconds() - start)
        products.add(1, ordering: .relaxed)
        arithmetic.add(2 * UInt64(m) * UInt64(n) * UInt64(k), ordering: .relaxed)
        nanoseconds.add(UInt64((elapsed * 1e9).rounded()), ordering: .relaxed)
    }
}
