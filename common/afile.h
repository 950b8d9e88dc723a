/* afile: whole-file reads and atomic rewrites with plain blocking POSIX calls,
 * for thread-pool work and short-lived commands (never on the loop). A rewrite
 * is a temporary file in the same directory (same file system, so the rename is
 * atomic), fsync'd, renamed over the target, and the directory fsync'd. */
#ifndef RELAY25_AFILE_H
#define RELAY25_AFILE_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* Atomically replaces (or creates) path with the n pieces of iov, mode `mode`;
 * owned by owner's uid/gid when owner is given and we run as root (so a daemon
 * running as its own user can read what a root command wrote). Temporary name:
 * "<path>.tmp-XXXXXX", removed on failure. Returns 0, or an errno value with
 * *step (if step) naming what failed: "create a temporary file", "chmod",
 * "chown", "write", "fsync", "close", "rename" or "sync the directory". A file
 * system that cannot fsync a directory (EINVAL) does not count as a failure. */
int afile_writev(const char *path, const struct iovec *iov, size_t n, mode_t mode,
                 const struct stat *owner, const char **step);
/* The same with one piece. */
int afile_write(const char *path, const void *data, size_t len, mode_t mode,
                const struct stat *owner, const char **step);

/* fsync of a directory (renames and unlinks in it are durable after it).
 * 0 or an errno value; EINVAL (not supported there) counts as 0. */
int afile_fsync_dir(const char *path);
/* The directory part of path ("." when it has none) synced. */
int afile_fsync_parent(const char *path);

/* The whole file, NUL-terminated; more than max bytes is EFBIG unless trunc_ok
 * (then the first max bytes). NULL with *err (an errno value) on failure. */
char *afile_read(const char *path, size_t max, int trunc_ok, size_t *len, int *err);

/* write(2) until done (EINTR retried). 0, or -1 with errno. */
int afile_write_all(int fd, const void *p, size_t len);

#endif
