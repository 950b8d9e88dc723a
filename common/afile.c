/* afile: whole-file reads and atomic rewrites (see the header). One writer for
 * every file relay25 rewrites: refresh tokens, spool bounces and reasons, the
 * files `queue retry-failed` puts back. */
#include "common/afile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int afile_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;

    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int afile_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;

    if (fd < 0) {
        return errno;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        e = errno;
    }
    close(fd);
    return e;
}

int afile_fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int e;

    if (!slash) {
        return afile_fsync_dir(".");
    }
    /* "/x" lives in "/" */
    if (!(dir = strndup(path, slash == path ? 1 : (size_t)(slash - path)))) {
        return ENOMEM;
    }
    e = afile_fsync_dir(dir);
    free(dir);
    return e;
}

int afile_writev(const char *path, const struct iovec *iov, size_t n, mode_t mode,
                 const struct stat *owner, const char **step)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof(".tmp-XXXXXX"));
    const char *failed = NULL;
    int fd, e = 0;

    if (!tmp) {
        failed = "allocate";
        e = ENOMEM;
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp-XXXXXX", sizeof(".tmp-XXXXXX"));
    if ((fd = mkstemp(tmp)) < 0) { /* O_EXCL, mode 0600 */
        failed = "create a temporary file";
        e = errno;
        goto out;
    }
    if (fchmod(fd, mode) != 0) {
        failed = "chmod";
    } else if (owner && geteuid() == 0 && fchown(fd, owner->st_uid, owner->st_gid) != 0) {
        failed = "chown";
    }
    for (size_t i = 0; !failed && i < n; i++) {
        if (afile_write_all(fd, iov[i].iov_base, iov[i].iov_len) != 0) {
            failed = "write";
        }
    }
    if (!failed && fsync(fd) != 0) {
        failed = "fsync";
    }
    if (failed) {
        e = errno;
    }
    if (close(fd) != 0 && !failed) {
        failed = "close";
        e = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = "rename";
        e = errno;
    }
    if (failed) {
        unlink(tmp);
        goto out;
    }
    if ((e = afile_fsync_parent(path)) != 0) {
        failed = "sync the directory";
    }
out:
    free(tmp);
    if (step) {
        *step = failed;
    }
    return failed ? (e ? e : EIO) : 0;
}

int afile_write(const char *path, const void *data, size_t len, mode_t mode,
                const struct stat *owner, const char **step)
{
    struct iovec v = {.iov_base = (void *)data, .iov_len = len};

    return afile_writev(path, &v, 1, mode, owner, step);
}

char *afile_read(const char *path, size_t max, int trunc_ok, size_t *len, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t n = 0, cap = 0;

    *len = 0;
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    for (;;) {
        ssize_t r;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;
            if (cap >= max) {
                char more;
                ssize_t m;
                if (trunc_ok) {
                    break;
                }
                /* exactly max bytes is fine: only a byte past them is too many */
                while ((m = read(fd, &more, 1)) < 0 && errno == EINTR) {
                }
                if (m == 0) {
                    break;
                }
                *err = m < 0 ? errno : EFBIG;
                goto fail;
            }
            if (ncap > max) {
                ncap = max;
            }
            if (!(nb = realloc(buf, ncap + 1))) {
                *err = ENOMEM;
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            *err = errno;
            goto fail;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (!buf && !(buf = malloc(1))) {
        *err = ENOMEM;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    *err = 0;
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}
