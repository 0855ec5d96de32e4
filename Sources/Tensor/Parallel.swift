import CKernels
/// Splitting work across cores (the threads themselves are a ``WorkerPool``).
public enum Parallel {
    /// The `part`-th of `parts` near-equal contiguous slices of 0..<count.
    @inlinable
    public static func slice(_ part: Int, of parts: Int, count: Int) -> Range<Int> {
        (count * part / parts)..<(count * (part + 1) / parts)
    }

    /// The `part`-th of `parts` contiguous slices of 0..<count whose inner boundaries are
    /// multiples of `multiple` (16 floats: a 64-byte cache line), so that threads writing
    /// neighbouring slices of a line-aligned buffer never share a line; near equal, some empty
    /// when `count` is small.
    @inlinable
    public static func slice(_ part: Int, of parts: Int, count: Int, multipleOf multiple: Int) -> Range<Int> {
        func boundary(_ p: Int) -> Int { p >= parts ? count : count * p / parts / multiple * multiple }
        return boundary(part)..<boundary(part + 1)
    }

    /// Number of CPU cores this process may use: its affinity mask's (so `taskset -c 0`, a
    /// container's cpuset or mpirun's `--bind-to core` count), not every core online.
    public static var coreCount: Int { Int(vae_affinity_cores()) }
}
