/// Splitting work across cores (the threads themselves are a ``WorkerPool``).
public enum Parallel {
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
