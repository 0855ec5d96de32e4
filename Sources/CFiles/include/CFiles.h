#ifndef CFILES_H
#define CFILES_H

#include <signal.h>

/// Atomically exchanges the entries `a` and `b` (files or folders, same file system) with
/// renameat2(RENAME_EXCHANGE). Returns 0, or -1 with errno set.
int vae_exchange_paths(const char *a, const char *b);

/// Until `vae_take_stop_signals`: SIGINT or SIGTERM writes `interrupt_message` or
/// `terminate_message` (at most 255 bytes) to stderr and ends the process with exit code 128 +
/// the signal's number, rather than letting it die by the signal. Returns 0, or -1.
int vae_exit_on_stop_signals(const char *interrupt_message, const char *terminate_message);

/// Takes SIGINT and SIGTERM for the rest of the process: blocks them in the calling thread (and
/// so in every thread it starts later), installs one handler for both, and starts a watcher
/// thread that leaves them unblocked, so that the kernel delivers them there and never to a
/// thread running a JIT kernel whose stack pointer is elsewhere (see StopSignals.c). Until
/// `vae_arm_stop_signals`, a signal writes `interrupt_message` or `terminate_message` (at most
/// 255 bytes) to stderr and ends the process with 128 + the signal's number; afterwards it
/// stores the signal's number in `*flag`. Call it before starting other threads. Returns 0, or
/// -1 if it was called before or a step failed.
int vae_take_stop_signals(volatile sig_atomic_t *flag, const char *interrupt_message, const char *terminate_message);

/// From now on SIGINT and SIGTERM set the flag instead of ending the process.
void vae_arm_stop_signals(void);

#endif
