import Dispatch

/// Fork–join parallelism over a fixed number of workers.
public enum Parallel {
    /// Runs `body(0)`, …, `body(count − 1)` concurrently (the caller's thread takes part) and
    /// returns when all have finished. Which thread runs which index varies; what each index
    /// computes does not, so results stay deterministic.
    public static func run(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 {
            body(0)
            return
        }
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
    }

    /// The `part`-th of `parts` near-equal contiguous slices of 0..<count.
    @inlinable
    public static func slice(_ part: Int, of parts: Int, count: Int) -> Range<Int> {
        (count * part / parts)..<(count * (part + 1) / parts)
    }

    /// Number of CPU cores this process may use.
    public static var coreCount: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif
