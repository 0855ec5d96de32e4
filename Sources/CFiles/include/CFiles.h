#ifndef CFILES_H
#define CFILES_H

/// Atomically exchanges the entries `a` and `b` (files or folders, same file system) with
/// renameat2(RENAME_EXCHANGE). Returns 0, or -1 with errno set.
int vae_exchange_paths(const char *a, const char *b);

#endif
