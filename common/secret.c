/* secret: reads an upstream password from a file (docker/systemd secrets) or
 * an environment variable at startup. Every buffer that held the secret is wiped
 * with explicit_bzero; error messages name the source, never the secret. */
#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX 4096 /* a password file is one line; refuse anything bigger */

char *secret_file(const char *path, char *err, size_t errlen)
{
    char buf[SECRET_MAX + 1];
    size_t len = 0;
    struct stat st;
    char *out = NULL;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    /* A FIFO or device could block startup or never end. */
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s: not a regular file", path);
        goto fail;
    }
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    if (len > SECRET_MAX) {
        snprintf(err, errlen, "password file %s is larger than %d bytes", path, SECRET_MAX);
        goto fail;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r') {
            len--;
        }
    }
    if (len == 0) {
        snprintf(err, errlen, "password file %s is empty", path);
        goto fail;
    }
    if (memchr(buf, '\0', len)) {
        snprintf(err, errlen, "password file %s contains a NUL byte", path);
        goto fail;
    }
    out = malloc(len + 1);
    if (!out) {
        snprintf(err, errlen, "out of memory reading %s", path);
        goto fail;
    }
    memcpy(out, buf, len);
    out[len] = '\0';
fail:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return out;
}

char *secret_env(const char *name, char *err, size_t errlen)
{
    const char *v = getenv(name);
    char *out;

    if (!v) {
        snprintf(err, errlen, "environment variable %s is not set", name);
        return NULL;
    }
    if (!*v) {
        snprintf(err, errlen, "environment variable %s is empty", name);
        return NULL;
    }
    out = strdup(v);
    if (!out) {
        snprintf(err, errlen, "out of memory reading %s", name);
    }
    return out;
}
