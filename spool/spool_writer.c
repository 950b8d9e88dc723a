/* spool_writer: streams a new message from the loop into the spool (layout in
 * spool.h) with a chain of uv_fs requests, one at a time: data is double-buffered
 * so the client keeps sending while the previous buffer is written, and the
 * commit fsyncs data, envelope and directory before it reports success. */
#include "spool/spool_writer.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/spool.h"

#define SPOOL_SLACK (16u * 1024u) /* room past SPOOL_WBUF: a write beyond it grows the buffer */

enum spool_writer_step {
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

struct spool_writer {
    uv_loop_t *loop;
    const struct spool_writer_cbs *cbs;
    void *arg;
    uv_fs_t req;
    int busy; /* a request is in flight */
    enum spool_writer_step step;
    uv_file fd; /* .msg, then .env, then the directory */
    int err;    /* first failure, sticky */
    int committing, aborted, want_drain;
    uint64_t written;
    char *fill, *flight; /* double buffer */
    size_t fill_len, flight_len;
    size_t fill_cap, flight_cap; /* SPOOL_WBUF + SPOOL_SLACK, or more after a large write */
    char *envtext;
    size_t envlen, envoff;
    char tmp_msg[4096], tmp_env[4096], q_msg[4096], q_env[4096], qdir[4096];
};

static void spool_writer_next(struct spool_writer *w);

static void spool_writer_finish(struct spool_writer *w)
{
    int err = w->err;
    uint64_t size = w->written;
    int notify = !w->aborted;
    const struct spool_writer_cbs *cbs = w->cbs;
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
static void spool_writer_cleanup(struct spool_writer *w)
{
    uv_fs_t r;

    /* a failure reported means nothing stays: a .msg already renamed into q/,
     * or (the directory could not be synced) the whole committed message */
    if (w->step >= W_OPEN_DIR && w->step <= W_FSYNC_DIR) {
        unlink(w->q_env);
    }
    if (w->step >= W_RENAME_ENV && w->step <= W_FSYNC_DIR) {
        unlink(w->q_msg);
    }
    w->step = W_CLEANUP;
    if (w->fd >= 0) {
        uv_fs_close(w->loop, &r, w->fd, NULL); /* close(2) of a regular file does not block */
        uv_fs_req_cleanup(&r);
        w->fd = -1;
    }
    unlink(w->tmp_msg);
    unlink(w->tmp_env);
    spool_writer_finish(w);
}

static void spool_writer_cb(uv_fs_t *req)
{
    struct spool_writer *w = req->data;
    ssize_t res = req->result;

    uv_fs_req_cleanup(req);
    w->busy = 0;
    if (w->step == W_CLOSE_MSG || w->step == W_CLOSE_ENV || w->step == W_CLOSE_DIR) {
        w->fd = -1; /* close(2) frees the descriptor even when it fails: never close it twice */
    }
    if (res < 0 && !w->err && w->step != W_CLOSE_DIR) {
        w->err = (int)res; /* closing the directory after its fsync cannot lose anything */
    }
    if (w->err) {
        if (w->committing || w->aborted) {
            spool_writer_cleanup(w);
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
            uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, spool_writer_cb);
            return;
        }
        w->flight_len = 0;
        break;
    case W_WRITE_ENV:
        w->envoff += (size_t)res;
        break;
    default:
        break;
    }
    spool_writer_next(w);
}

static void spool_writer_submit_fill(struct spool_writer *w)
{
    char *t = w->flight;
    size_t tcap = w->flight_cap;
    uv_buf_t b;

    w->flight = w->fill;
    w->flight_len = w->fill_len;
    w->flight_cap = w->fill_cap;
    w->fill = t;
    w->fill_cap = tcap;
    w->fill_len = 0;
    w->step = W_WRITE;
    w->busy = 1;
    b = uv_buf_init(w->flight, (unsigned)w->flight_len);
    uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, spool_writer_cb);
}

/* Decides the next request once the previous one completed. */
static void spool_writer_next(struct spool_writer *w)
{
    uv_buf_t b;

    if (w->aborted) {
        spool_writer_cleanup(w);
        return;
    }
    if (!w->committing) {
        w->step = W_IDLE;
        if (w->fill_len >= SPOOL_WBUF) {
            spool_writer_submit_fill(w);
        }
        if (w->want_drain && w->fill_len < SPOOL_WBUF) {
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
            spool_writer_submit_fill(w);
            return;
        }
        w->step = W_FSYNC_MSG;
        uv_fs_fsync(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_FSYNC_MSG:
        w->step = W_CLOSE_MSG;
        uv_fs_close(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_CLOSE_MSG:
        w->step = W_OPEN_ENV;
        uv_fs_open(w->loop, &w->req, w->tmp_env, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
                   spool_writer_cb);
        return;
    case W_OPEN_ENV:
    case W_WRITE_ENV:
        if (w->envoff < w->envlen) {
            w->step = W_WRITE_ENV;
            b = uv_buf_init(w->envtext + w->envoff, (unsigned)(w->envlen - w->envoff));
            uv_fs_write(w->loop, &w->req, w->fd, &b, 1, -1, spool_writer_cb);
            return;
        }
        w->step = W_FSYNC_ENV;
        uv_fs_fsync(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_FSYNC_ENV:
        w->step = W_CLOSE_ENV;
        uv_fs_close(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_CLOSE_ENV:
        w->step = W_RENAME_MSG;
        uv_fs_rename(w->loop, &w->req, w->tmp_msg, w->q_msg, spool_writer_cb);
        return;
    case W_RENAME_MSG:
        /* the .env rename is the commit point */
        w->step = W_RENAME_ENV;
        uv_fs_rename(w->loop, &w->req, w->tmp_env, w->q_env, spool_writer_cb);
        return;
    case W_RENAME_ENV:
        w->step = W_OPEN_DIR;
        uv_fs_open(w->loop, &w->req, w->qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
                   spool_writer_cb);
        return;
    case W_OPEN_DIR:
        w->step = W_FSYNC_DIR;
        uv_fs_fsync(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_FSYNC_DIR:
        w->step = W_CLOSE_DIR;
        uv_fs_close(w->loop, &w->req, w->fd, spool_writer_cb);
        return;
    case W_CLOSE_DIR:
        w->busy = 0;
        spool_writer_finish(w);
        return;
    case W_CLEANUP:
        break;
    }
    abort();
}

struct spool_writer *spool_writer_new(uv_loop_t *loop, const char *dir, uint64_t qid,
                                      const struct spool_writer_cbs *cbs, void *arg)
{
    struct spool_writer *w = calloc(1, sizeof(*w));

    if (!w) {
        return NULL;
    }
    w->fill = malloc(SPOOL_WBUF + SPOOL_SLACK);
    w->flight = malloc(SPOOL_WBUF + SPOOL_SLACK);
    if (!w->fill || !w->flight ||
        spool__path(w->tmp_msg, sizeof(w->tmp_msg), dir, "tmp", qid, ".msg") ||
        spool__path(w->tmp_env, sizeof(w->tmp_env), dir, "tmp", qid, ".env") ||
        spool__path(w->q_msg, sizeof(w->q_msg), dir, "q", qid, ".msg") ||
        spool__path(w->q_env, sizeof(w->q_env), dir, "q", qid, ".env") ||
        spool_area_path(w->qdir, sizeof(w->qdir), dir, SPOOL_AREA_Q) != 0) {
        free(w->fill);
        free(w->flight);
        free(w);
        return NULL;
    }
    w->fill_cap = w->flight_cap = SPOOL_WBUF + SPOOL_SLACK;
    w->loop = loop;
    w->cbs = cbs;
    w->arg = arg;
    w->fd = -1;
    w->req.data = w;
    w->step = W_OPEN;
    w->busy = 1;
    uv_fs_open(loop, &w->req, w->tmp_msg, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
               spool_writer_cb);
    return w;
}

int spool_writer_write(struct spool_writer *w, const char *data, size_t len)
{
    if (w->err) {
        return w->err;
    }
    if (len > w->fill_cap - w->fill_len) {
        /* one piece larger than the room left (a header section held for the
         * From: rewrite, bounded by max_header_size): the buffer grows for it */
        size_t ncap = w->fill_len + len;
        char *nb = ncap >= w->fill_len ? realloc(w->fill, ncap) : NULL;
        if (!nb) {
            return UV_ENOBUFS;
        }
        w->fill = nb;
        w->fill_cap = ncap;
    }
    memcpy(w->fill + w->fill_len, data, len);
    w->fill_len += len;
    if (w->fill_len < SPOOL_WBUF) {
        return 0;
    }
    if (!w->busy && w->step == W_IDLE) {
        spool_writer_submit_fill(w);
        return 0;
    }
    w->want_drain = 1;
    return 1;
}

void spool_writer_commit(struct spool_writer *w, const struct spool_env *env)
{
    w->committing = 1;
    if (!w->err && !(w->envtext = spool_env_format(env, &w->envlen))) {
        w->err = UV_ENOMEM;
    }
    if (w->busy) {
        return; /* the running request's callback continues the chain */
    }
    if (w->err) {
        spool_writer_cleanup(w);
        return;
    }
    spool_writer_next(w);
}

void spool_writer_abort(struct spool_writer *w)
{
    w->aborted = 1;
    if (!w->busy) {
        spool_writer_cleanup(w);
    }
}

uint64_t spool_writer_written(const struct spool_writer *w)
{
    return w->written + w->fill_len + w->flight_len;
}
