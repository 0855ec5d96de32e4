import CKernels
/// Splitting work across cores (the threads themselves are a ``WorkerPool``).
public enum Parallel {
    /// The `part`-th of `parts` near-equal contiguous slices of 0..<count.
    @inlinable
    public static func slice(_ part: Int, of parts: Int, count: Int) -> Range<Int> {
        (count * part / parts)..<(count * (part + 1) / parts)
    }

    /// Number of CPU cores this process may use: its affinity mask's (so `taskset -c 0`, a
    /// container's cpuset or mpirun's `--bind-to core` count), not every core online.
    public static var coreCount: Int { Int(vae_affinity_cores()) }
}
