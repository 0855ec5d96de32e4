import Foundation
import Tensor
import Training

/// The job this process belongs to: a plain process, or one rank of `mpirun -np N vae …`.
/// Rank 0 prints; the other ranks print nothing but an error only they have.
enum Job {
    /// Where a rank other than 0 writes an error that only it has (its real stderr).
    nonisolated(unsafe) static var errorOutput: Int32 = STDERR_FILENO

    /// Ranks other than 0 (as mpirun numbers them, before MPI is loaded) keep quiet.
    static func silenceOtherRanks() {
        guard let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"], rank != "0" else { return }
        errorOutput = dup(STDERR_FILENO)
        let null = open("/dev/null", O_WRONLY)
        dup2(null, STDOUT_FILENO)
        dup2(null, STDERR_FILENO)
        close(null)
    }

    /// Open MPI's communicator when started by mpirun (loaded now), else this process alone.
    static func communicator() throws -> Communicator {
        MPICommunicator.launchedByMPI ? try MPICommunicator() : SingleProcess()
    }

    /// After set-up: if any rank failed, the lowest failing one prints its error and every rank
    /// exits non-zero; otherwise the set-up's value.
    static func agree<T>(_ communicator: Communicator, _ setUp: () throws -> T) throws -> T {
        let result = Result(catching: setUp)
        guard communicator.size > 1 else { return try result.get() }
        var failed = false
        if case .failure = result { failed = true }
        guard let lowest = communicator.lowestFailingRank(failed: failed) else { return try result.get() }
        if communicator.rank == lowest, case .failure(let error) = result {
            _ = "Error: \(error)\n".withCString { write(errorOutput, $0, strlen($0)) }
        }
        finish(communicator)
        exit(1)
    }

    /// Ends MPI cleanly after a successful command.
    static func finish(_ communicator: Communicator) {
        (communicator as? MPICommunicator)?.finalize()
    }
}
