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
}

/// A job of one process: sums and broadcasts leave the values as they are.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) {}
}
