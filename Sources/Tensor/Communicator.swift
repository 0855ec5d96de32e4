/// The processes of one training job and how they combine values: each process (rank) computes
/// on its slice of every batch, and the gradients are summed across all of them before the
/// update. A plain process is a job of one (``SingleProcess``); `mpirun` starts a job of several
/// (the `Training` module's MPI communicator).
public protocol Communicator: AnyObject {
    /// This process's index, 0 ..< `size`.
    var rank: Int { get }
    /// Processes in the job.
    var size: Int { get }
    /// Replaces `values` on every rank by their elementwise sum over all ranks (one call for the
    /// whole buffer).
    func sum(_ values: UnsafeMutableBufferPointer<Float>)
    func sum(_ values: UnsafeMutableBufferPointer<Double>)
    /// Copies rank `root`'s bytes into every other rank's `bytes`.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int)
    /// Sums `values` over all ranks but keeps only this rank's shard of the sum (a
    /// reduce-scatter): afterwards elements `shards.range(rank)` hold Σ_ranks values, the others
    /// are unspecified. Moves half the data of a full sum per rank.
    func sumShard(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards)
    /// Copies every rank's shard of `values` (elements `shards.range(rank)` on that rank) into
    /// the same elements on every other rank (an all-gather, in place).
    func gatherShards(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards)
    /// Ranks of the job on this host (all of them unless the job spans several hosts).
    var ranksOnThisHost: Int { get }
    /// A non-blocking sum: see the defaults in the extension below.
    func startSum(_ values: UnsafeMutableBufferPointer<Float>)
    func progressSums()
    func waitForSums()
}

extension Communicator {
    /// Starts summing `values` over all ranks in place, as `sum(_:)`
    /// does, without waiting for it: `values` must stay untouched until ``waitForSums()``. Every
    /// rank starts the same sums (sizes) in the same order. Here, by default, the sum is done at
    /// once; a communicator with non-blocking collectives (MPI) overrides it.
    public var ranksOnThisHost: Int { size }
    public func startSum(_ values: UnsafeMutableBufferPointer<Float>) { sum(values) }
    /// Lets the started sums advance (MPI moves non-blocking collectives on only inside its calls).
    public func progressSums() {}
    /// Returns when every started sum is done.
    public func waitForSums() {}
}

/// How `count` elements are shared out among `parts` owners (ranks): contiguous shards in owner
/// order, near-equal, with every boundary on a multiple of `alignment` elements (16 floats = one
/// 64-byte cache line, so no two owners write the same line).
public struct Shards: Equatable, Sendable {
    /// Elements of each owner's shard.
    public let counts: [Int]
    /// Where each owner's shard starts.
    public let offsets: [Int]

    public init(count: Int, parts: Int, alignment: Int = 16) {
        precondition(count >= 0 && parts >= 1 && alignment >= 1)
        let blocks = (count + alignment - 1) / alignment
        let bounds = (0...parts).map { min(count, blocks * $0 / parts * alignment) }
        offsets = Array(bounds.dropLast())
        counts = zip(bounds.dropFirst(), bounds).map { $0 - $1 }
    }

    /// Explicit shards (contiguous, in owner order, starting at 0).
    public init(counts: [Int]) {
        self.counts = counts
        var next = 0
        offsets = counts.map { c in defer { next += c }; return next }
    }

    /// Elements in all shards together.
    public var count: Int { (offsets.last ?? 0) + (counts.last ?? 0) }

    /// Owner `part`'s elements.
    public func range(_ part: Int) -> Range<Int> { offsets[part]..<(offsets[part] + counts[part]) }

    /// The shards of the elements `window` alone, counted from `window`'s start: owner p gets
    /// `window ∩ range(p)` (how a tensor that is a stretch of a sharded flat buffer is shared out).
    public func restricted(to window: Range<Int>) -> Shards {
        Shards(counts: counts.indices.map { range($0).clamped(to: window).count })
    }
}

/// A job of one process: sums and broadcasts leave the values as they are.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) {}
    public func sumShard(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
    public func gatherShards(_ values: UnsafeMutableBufferPointer<Float>, shards: Shards) {}
}
