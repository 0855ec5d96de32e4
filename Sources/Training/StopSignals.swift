import CFiles
#if canImport(Glibc)
import Glibc
#endif

/// SIGINT and SIGTERM as requests to stop a run, received where they cannot do harm.
///
/// A signal handler runs on whichever thread the kernel picks, on that thread's stack. oneDNN
/// 2.6's JIT-generated FP32 GEMM kernels point the stack pointer at a heap workspace while they
/// run (for every product whose inner dimension exceeds a few hundred), so a signal handled on a
/// thread inside one writes its frame into the heap — the glibc aborts ("corrupted size vs.
/// prev_size") that Ctrl-C used to cause. ``take(into:interruptLine:terminateLine:)`` therefore
/// blocks both signals in the calling thread, and so in every thread it starts afterwards (the
/// batch workers, OpenMP's threads), and leaves them to a watcher thread that computes nothing.
///
/// Two phases: until ``arm()``, a signal ends the process at once with 128 + its number, after
/// writing the given line (nothing has been written yet, so nothing is lost); after it, the
/// signal only sets the ``StopRequest``, which the run honours after its current step.
public enum StopSignals {
    nonisolated(unsafe) private static var request: StopRequest?

    /// Makes SIGINT and SIGTERM end the process with exit code 128 + the signal's number after
    /// writing the given line, instead of a death by the signal (a program's first call).
    public static func exitOnSignals(interruptLine: String, terminateLine: String) {
        _ = vae_exit_on_stop_signals(interruptLine + "\n", terminateLine + "\n")
    }

    /// Routes SIGINT and SIGTERM to `stop` for the rest of the process. Call it first, before
    /// any thread that computes is started. Throws if it was called before or a system call
    /// failed.
    public static func take(into stop: StopRequest, interruptLine: String, terminateLine: String) throws {
        guard request == nil else { throw TrainingRunError("the stop signals are already taken") }
        request = stop  // kept alive for the handler
        guard vae_take_stop_signals(stop.flag, interruptLine + "\n", terminateLine + "\n") == 0 else {
            throw TrainingRunError("cannot install the SIGINT/SIGTERM handler (errno \(errno))")
        }
    }

    /// From now on a signal sets the stop request instead of ending the process (call it before
    /// the first file of the run is written).
    public static func arm() { vae_arm_stop_signals() }
}
