import Foundation
import Tensor
import Training

/// The job this process belongs to: a plain process, or one rank of `mpirun -np N vae …`.
/// Rank 0 prints; the other ranks print nothing but an error only they have.
enum Job {
    /// This process's rank as `mpirun` gave it (before MPI is loaded), 0 without mpirun.
    static let launchRank = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") ?? 0

    /// Where a rank other than 0 writes an error that only it has (its real stderr).
    nonisolated(unsafe) static var errorOutput: Int32 = STDERR_FILENO

    /// Ranks other than 0 keep quiet: their output would repeat rank 0's.
    static func silenceOtherRanks() {
        guard launchRank != 0 else { return }
        errorOutput = dup(STDERR_FILENO)
        let null = open("/dev/null", O_WRONLY)
        dup2(null, STDOUT_FILENO)
        dup2(null, STDERR_FILENO)
        close(null)
    }

    /// The job's communicator: Open MPI's when started by mpirun (loaded now), else this process alone.
    static func communicator() throws -> Communicator {
        MPICommunicator.launchedByMPI ? try MPICommunicator() : SingleProcess()
    }

    /// Every rank reaches this after its set-up, failed or not: if any failed, the lowest failing
    /// rank reports its error (one line for the whole job) and every rank exits non-zero, so no
    /// rank is left waiting for the others.
    static func agree<T>(_ communicator: Communicator, _ result: Result<T, Error>) throws -> T {
        guard communicator.size > 1 else { return try result.get() }
        // Each rank marks its own slot if it failed; one sum tells every rank who failed.
        var offers = [Double](repeating: 0, count: communicator.size)
        if !result.isSuccess { offers[communicator.rank] = 1 }
        offers.withUnsafeMutableBufferPointer { communicator.sum($0) }
        guard let lowest = offers.firstIndex(where: { $0 > 0 }) else { return try result.get() }
        if communicator.rank == lowest, case .failure(let error) = result {
            let line = "Error: \(error)\n"
            _ = line.withCString { write(errorOutput, $0, strlen($0)) }
        }
        (communicator as? MPICommunicator)?.finalize()
        exit(1)
    }

    /// Ends MPI cleanly after a successful command.
    static func finish(_ communicator: Communicator) {
        (communicator as? MPICommunicator)?.finalize()
    }
}

extension Result {
    var isSuccess: Bool {
        if case .success = self { return true }
        return false
    }
}
