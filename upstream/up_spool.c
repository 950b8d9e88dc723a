/* up_spool: durable message files (see the header for the layout). The writer
 * is a chain of uv_fs requests, one at a time: data is double-buffered so the
 * client keeps sending while the previous buffer is written, and the commit
 * fsyncs data, envelope and directory before it reports success. */
#include "upstream/up_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP_SPOOL_SLACK (16u * 1024u) /* largest single up_spool_write */

int up_spool_path(char *out, size_t cap, const char *dir, const char *area, uint64_t qid,
                  const char *ext)
{
    int n = snprintf(out, cap, "%s/%s/%016" PRIx64 "%s", dir, area, qid, ext);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* ---- envelope ---- */

static int up_spool_field(const char *v, size_t vl, char *out, size_t cap)
{
    if (vl >= cap) {
        return -1;
    }
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 0;
}

int up_spool_env_parse(const char *text, size_t len, struct up_spool_env *env, char *err,
                       size_t errlen)
{
    const char *p = text, *end = text + len;
    int version = 0;
    size_t cap = 0;

    memset(env, 0, sizeof(*env));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *sp, *v;
        size_t kl, vl;
        int r = 0;

        if (!nl) {
            snprintf(err, errlen, "truncated envelope");
            goto fail;
        }
        sp = memchr(p, ' ', (size_t)(nl - p));
        kl = sp ? (size_t)(sp - p) : (size_t)(nl - p);
        v = sp ? sp + 1 : nl;
        vl = (size_t)(nl - v);
        if (kl == 13 && memcmp(p, "relay25-spool", 13) == 0) {
            version = atoi(v);
        } else if (kl == 7 && memcmp(p, "created", 7) == 0) {
            env->created = strtoull(v, NULL, 10);
        } else if (kl == 6 && memcmp(p, "device", 6) == 0) {
            r = up_spool_field(v, vl, env->device, sizeof(env->device));
        } else if (kl == 4 && memcmp(p, "user", 4) == 0) {
            r = up_spool_field(v, vl, env->user, sizeof(env->user));
        } else if (kl == 5 && memcmp(p, "route", 5) == 0) {
            r = up_spool_field(v, vl, env->route, sizeof(env->route));
        } else if (kl == 6 && memcmp(p, "client", 6) == 0) {
            r = up_spool_field(v, vl, env->client, sizeof(env->client));
        } else if (kl == 4 && memcmp(p, "helo", 4) == 0) {
            r = up_spool_field(v, vl, env->helo, sizeof(env->helo));
        } else if (kl == 4 && memcmp(p, "body", 4) == 0) {
            r = up_spool_field(v, vl, env->body, sizeof(env->body));
        } else if (kl == 4 && memcmp(p, "from", 4) == 0) {
            r = up_spool_field(v, vl, env->from, sizeof(env->from));
        } else if (kl == 4 && memcmp(p, "rcpt", 4) == 0) {
            if (env->nrcpt == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                void *n = realloc(env->rcpt, ncap * sizeof(*env->rcpt));
                if (!n) {
                    snprintf(err, errlen, "out of memory");
                    goto fail;
                }
                env->rcpt = n;
                cap = ncap;
            }
            r = up_spool_field(v, vl, env->rcpt[env->nrcpt], UP_SPOOL_ADDR_MAX);
            env->nrcpt += r == 0;
        }
        if (r != 0) {
            snprintf(err, errlen, "field %.*s too long", (int)kl, p);
            goto fail;
        }
        p = nl + 1;
    }
    if (version != 1 || env->nrcpt == 0 || !env->device[0]) {
        snprintf(err, errlen, "not a relay25 spool envelope (version %d, %zu recipients)", version,
                 env->nrcpt);
        goto fail;
    }
    if (strcmp(env->helo, "-") == 0) {
        env->helo[0] = '\0';
    }
    if (strcmp(env->body, "-") == 0) {
        env->body[0] = '\0';
    }
    return 0;
fail:
    up_spool_env_free(env);
    return -1;
}

char *up_spool_env_format(const struct up_spool_env *env, size_t *len)
{
    size_t cap = 1024 + env->nrcpt * (UP_SPOOL_ADDR_MAX + 8), o;
    char *out = malloc(cap);
    int n;

    if (!out) {
        return NULL;
    }
    n = snprintf(out, cap,
                 "relay25-spool 1\ncreated %" PRIu64 "\ndevice %s\nuser %s\n%s%s%sclient %s\n"
                 "helo %s\nbody %s\nfrom %s\n",
                 env->created, env->device, env->user, env->route[0] ? "route " : "", env->route,
                 env->route[0] ? "\n" : "", env->client, env->helo[0] ? env->helo : "-",
                 env->body[0] ? env->body : "-", env->from);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return NULL;
    }
    o = (size_t)n;
    for (size_t i = 0; i < env->nrcpt; i++) {
        n = snprintf(out + o, cap - o, "rcpt %s\n", env->rcpt[i]);
        if (n < 0 || (size_t)n >= cap - o) {
            free(out);
            return NULL;
        }
        o += (size_t)n;
    }
    *len = o;
    return out;
}

void up_spool_env_free(struct up_spool_env *env)
{
    free(env->rcpt);
    env->rcpt = NULL;
    env->nrcpt = 0;
}

int up_spool_done_has(const char *text, size_t len, const char *addr)
{
    const char *p = text, *end = text + len;
    size_t al = strlen(addr);

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *a;
        if (!nl) {
            break; /* a torn last line (crash while appending) counts as not done */
        }
        a = memchr(p, ' ', (size_t)(nl - p));
        if (a) {
            const char *ae;
            a++;
            ae = memchr(a, ' ', (size_t)(nl - a));
            if (!ae) {
                ae = nl;
            }
            if ((size_t)(ae - a) == al && memcmp(a, addr, al) == 0) {
                return 1;
            }
        }
        p = nl + 1;
    }
    return 0;
}

/* ---- blocking helpers (thread pool, the queue command) ---- */

/* A whole file, NUL-terminated; more than max bytes is EFBIG unless trunc_ok
 * (then the first max bytes). NULL with *err set on failure. */
char *up_spool_read(const char *path, size_t max, int trunc_ok, size_t *len, int *err)
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
                if (trunc_ok) {
                    break;
                }
                *err = EFBIG;
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

int up_spool_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- startup ---- */

static int up_spool_mkdir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int up_spool_prepare(const char *dir, char *err, size_t errlen)
{
    static const char *const areas[] = {"q", "tmp", "failed"};
    char path[4096];
    DIR *d;
    struct dirent *de;

    if (up_spool_mkdir(dir, err, errlen) != 0) {
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, areas[i]);
        if (up_spool_mkdir(path, err, errlen) != 0) {
            return -1;
        }
    }
    /* tmp/: never acknowledged */
    snprintf(path, sizeof(path), "%s/tmp", dir);
    if ((d = opendir(path))) {
        while ((de = readdir(d))) {
            if (de->d_name[0] != '.') {
                unlinkat(dirfd(d), de->d_name, 0);
            }
        }
        closedir(d);
    }
    /* q/: a .msg without its .env was renamed before a crash, before the commit */
    snprintf(path, sizeof(path), "%s/q", dir);
    if (!(d = opendir(path))) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char env[300];
        if (l != 20 || strcmp(de->d_name + 16, ".msg") != 0) {
            continue;
        }
        snprintf(env, sizeof(env), "%.16s.env", de->d_name);
        if (faccessat(dirfd(d), env, F_OK, 0) != 0) {
            unlinkat(dirfd(d), de->d_name, 0);
        }
    }
    closedir(d);
    return 0;
}

/* ---- writer ---- */

enum up_spool_step {
    W_OPEN,
    W_IDLE,
    W_WRITE,
    W_FSYNC_MSG,
    W_CLOSE_MSG,
    W_OPEN_ENV,
    W_WRITE_ENV,
    W_FSYNC_ENV,
    W_CLOSE_ENV,
    W_RENAME_MSG,
    W_RENAME_ENV,
    W_OPEN_DIR,
    W_FSYNC_DIR,
    W_CLOSE_DIR,
    W_CLEANUP, /* failure/abort: closing and unlinking */
};

struct up_spool_writer {
    uv_loop_t *loop;
    const struct up_spool_writer_cbs *cbs;
    void *arg;
    uv_fs_t req;
    int busy; /* a request is in flight */
    enum up_spool_step step;
    uv_file fd; /* .msg, then .env, then the directory */
    int err;    /* first failure, sticky */
    int committing, aborted, want_drain;
    uint64_t written;
    char *fill, *flight; /* double buffer */
    size_t fill_len, flight_len;
    char *envtext;
    size_t envlen, envoff;
    char tmp_msg[4096], tmp_env[4096], q_msg[4096], q_env[4096], qdir[4096];
};

static void up_spool_next(struct up_spool_writer *w);

static void up_spool_finish(struct up_spool_writer *w)
{
    int err = w->err;
    uint64_t size = w->written;
    int notify = !w->aborted;
    const struct up_spool_writer_cbs *cbs = w->cbs;
    void *arg = w->arg;

    free(w->fill);
    free(w->flight);
    free(w->envtext);
    free(w);
    if (notify && cbs->on_done) {
        cbs->on_done(arg, err, size);
    }
}

/* Failure or abort: close what is open, unlink the temp files, report. */
static void up_spool_cleanup(struct up_spool_writer *w)
{
    uv_fs_t r;

    w->step = W_CLEANUP;
    if (w->fd >= 0) {
        uv_fs_close(w->loop, &r, w->fd, NULL); /* close(2) of a regular file does not block */
        uv_fs_req_cleanup(&r);
        w->fd = -1;
    }
    unlink(w->tmp_msg);
    unlink(w->tmp_env);
    up_spool_finish(w);
}

static void up_spool_cb(uv_fs_t *req)
{
    struct up_spool_writer *w = req->data;
    ssize_t res = req->result;

    uv_fs_req_cleanup(req);
    w->busy = 0;
    if (res < 0 && !w->err && w->step != W_CLOSE_DIR) {
        w->err = (int)res; /* closing the directory after its fsync cannot lose anything */
    }
    if (w->err) {
        if (w->committing || w->aborted) {
            up_spool_cleanup(w);
        } else if (w->want_drain && w->cbs->on_drain) {
            w->want_drain = 0;
            w->cbs->on_drain(w->arg); /* the caller sees the error on its next write */
        }
        return;
    }
    switch (w->step) {
    case W_OPEN:
    case W_OPEN_ENV:
    case W_OPEN_DIR:
        w->fd = (uv_file)res;
        break;
    case W_WRITE:
        w->written += (uint64_t)res;
        if ((size_t)res < w->flight_len) { /* short write: the rest again */
            uv_buf_t b;
            memmove(w->flight, w->flight + res, w->flight_len - (size_t)res);
            w->flight_len -= (size_t)res;
            w->busy = 1;
            b = uv_buf_init(w->flight, (unsigned)w->flight_len);
            uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, up_spool_cb);
            return;
        }
        w->flight_len = 0;
        break;
    case W_WRITE_ENV:
        w->envoff += (size_t)res;
        break;
    case W_CLOSE_MSG:
    case W_CLOSE_ENV:
    case W_CLOSE_DIR:
        w->fd = -1;
        break;
    default:
        break;
    }
    up_spool_next(w);
}

static void up_spool_submit_fill(struct up_spool_writer *w)
{
    char *t = w->flight;
    uv_buf_t b;

    w->flight = w->fill;
    w->flight_len = w->fill_len;
    w->fill = t;
    w->fill_len = 0;
    w->step = W_WRITE;
    w->busy = 1;
    b = uv_buf_init(w->flight, (unsigned)w->flight_len);
    uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, up_spool_cb);
}

/* Decides the next request once the previous one completed. */
static void up_spool_next(struct up_spool_writer *w)
{
    uv_buf_t b;

    if (w->aborted) {
        up_spool_cleanup(w);
        return;
    }
    if (!w->committing) {
        w->step = W_IDLE;
        if (w->fill_len >= UP_SPOOL_WBUF) {
            up_spool_submit_fill(w);
        }
        if (w->want_drain && w->fill_len < UP_SPOOL_WBUF) {
            w->want_drain = 0;
            if (w->cbs->on_drain) {
                w->cbs->on_drain(w->arg);
            }
        }
        return;
    }
    w->busy = 1;
    switch (w->step) {
    case W_OPEN:
    case W_IDLE:
    case W_WRITE:
        if (w->fill_len > 0) {
            w->busy = 0;
            up_spool_submit_fill(w);
            return;
        }
        w->step = W_FSYNC_MSG;
        uv_fs_fsync(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_FSYNC_MSG:
        w->step = W_CLOSE_MSG;
        uv_fs_close(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_CLOSE_MSG:
        w->step = W_OPEN_ENV;
        uv_fs_open(w->loop, &w->req, w->tmp_env, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
                   up_spool_cb);
        return;
    case W_OPEN_ENV:
    case W_WRITE_ENV:
        if (w->envoff < w->envlen) {
            w->step = W_WRITE_ENV;
            b = uv_buf_init(w->envtext + w->envoff, (unsigned)(w->envlen - w->envoff));
            uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, up_spool_cb);
            return;
        }
        w->step = W_FSYNC_ENV;
        uv_fs_fsync(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_FSYNC_ENV:
        w->step = W_CLOSE_ENV;
        uv_fs_close(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_CLOSE_ENV:
        w->step = W_RENAME_MSG;
        uv_fs_rename(w->loop, &w->req, w->tmp_msg, w->q_msg, up_spool_cb);
        return;
    case W_RENAME_MSG:
        /* the .env rename is the commit point */
        w->step = W_RENAME_ENV;
        uv_fs_rename(w->loop, &w->req, w->tmp_env, w->q_env, up_spool_cb);
        return;
    case W_RENAME_ENV:
        w->step = W_OPEN_DIR;
        uv_fs_open(w->loop, &w->req, w->qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0, up_spool_cb);
        return;
    case W_OPEN_DIR:
        w->step = W_FSYNC_DIR;
        uv_fs_fsync(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_FSYNC_DIR:
        w->step = W_CLOSE_DIR;
        uv_fs_close(w->loop, &w->req, w->fd, up_spool_cb);
        return;
    case W_CLOSE_DIR:
        w->busy = 0;
        up_spool_finish(w);
        return;
    case W_CLEANUP:
        break;
    }
    abort();
}

struct up_spool_writer *up_spool_writer_new(uv_loop_t *loop, const char *dir, uint64_t qid,
                                            const struct up_spool_writer_cbs *cbs, void *arg)
{
    struct up_spool_writer *w = calloc(1, sizeof(*w));

    if (!w) {
        return NULL;
    }
    w->fill = malloc(UP_SPOOL_WBUF + UP_SPOOL_SLACK);
    w->flight = malloc(UP_SPOOL_WBUF + UP_SPOOL_SLACK);
    if (!w->fill || !w->flight || up_spool_path(w->tmp_msg, 4096, dir, "tmp", qid, ".msg") ||
        up_spool_path(w->tmp_env, 4096, dir, "tmp", qid, ".env") ||
        up_spool_path(w->q_msg, 4096, dir, "q", qid, ".msg") ||
        up_spool_path(w->q_env, 4096, dir, "q", qid, ".env") ||
        snprintf(w->qdir, sizeof(w->qdir), "%s/q", dir) >= (int)sizeof(w->qdir)) {
        free(w->fill);
        free(w->flight);
        free(w);
        return NULL;
    }
    w->loop = loop;
    w->cbs = cbs;
    w->arg = arg;
    w->fd = -1;
    w->req.data = w;
    w->step = W_OPEN;
    w->busy = 1;
    uv_fs_open(loop, &w->req, w->tmp_msg, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
               up_spool_cb);
    return w;
}

int up_spool_write(struct up_spool_writer *w, const char *data, size_t len)
{
    if (w->err) {
        return w->err;
    }
    if (len > UP_SPOOL_WBUF + UP_SPOOL_SLACK - w->fill_len) {
        return UV_ENOBUFS; /* the caller ignored a pause */
    }
    memcpy(w->fill + w->fill_len, data, len);
    w->fill_len += len;
    if (w->fill_len < UP_SPOOL_WBUF) {
        return 0;
    }
    if (!w->busy && w->step == W_IDLE) {
        up_spool_submit_fill(w);
        return 0;
    }
    w->want_drain = 1;
    return 1;
}

void up_spool_commit(struct up_spool_writer *w, const struct up_spool_env *env)
{
    w->committing = 1;
    if (!w->err && !(w->envtext = up_spool_env_format(env, &w->envlen))) {
        w->err = UV_ENOMEM;
    }
    if (w->busy) {
        return; /* the running request's callback continues the chain */
    }
    if (w->err) {
        up_spool_cleanup(w);
        return;
    }
    up_spool_next(w);
}

void up_spool_abort(struct up_spool_writer *w)
{
    w->aborted = 1;
    if (!w->busy) {
        up_spool_cleanup(w);
    }
}

uint64_t up_spool_written(const struct up_spool_writer *w)
{
    return w->written + w->fill_len + w->flight_len;
}
