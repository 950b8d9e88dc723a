/* up_exec: one child process and its stdout pipe. struct up_exec owns the
 * process handle, the pipe and the output buffer (wiped: it may be a token), and
 * frees itself once the owner's reference and both handles are gone. */
#include "upstream/up_exec.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define UP_EXEC_OUT_MAX (64u * 1024u)

struct up_exec {
    int refs;       /* the owner's (until cb or cancel) + process + pipe */
    up_exec_cb *cb; /* NULL once ended */
    void *arg;
    uv_process_t proc;
    uv_pipe_t pipe;
    unsigned running : 1, exited : 1, eof : 1, pipe_open : 1;
    int64_t status;
    int signal;
    char *out;
    size_t len, max;
};

static void up_exec_unref(struct up_exec *x)
{
    if (--x->refs > 0) {
        return;
    }
    if (x->out) {
        explicit_bzero(x->out, x->max + 1);
        free(x->out);
    }
    free(x);
}

static void up_exec_close_cb(uv_handle_t *h)
{
    up_exec_unref(h->data);
}

/* Stops what x still does; its handles' callbacks then only release it. */
static void up_exec_end(struct up_exec *x)
{
    x->cb = NULL;
    if (x->running) {
        /* the whole process group: a shell's children too (the exit callback
         * closes the handle) */
        if (uv_kill(-x->proc.pid, SIGKILL) != 0) {
            uv_process_kill(&x->proc, SIGKILL);
        }
    }
    if (x->pipe_open) {
        x->pipe_open = 0;
        uv_close((uv_handle_t *)&x->pipe, up_exec_close_cb);
    }
    up_exec_unref(x); /* the owner's reference */
}

void up_exec_cancel(struct up_exec *x)
{
    if (x && x->cb) {
        up_exec_end(x);
    }
}

static void up_exec_done(struct up_exec *x, const char *err)
{
    up_exec_cb *cb = x->cb;

    x->refs++; /* the output stays during the call */
    up_exec_end(x);
    cb(x->arg, x->status, x->signal, x->out, x->len, err);
    up_exec_unref(x);
}

static void up_exec_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    struct up_exec *x = p->data;

    x->running = 0;
    x->exited = 1;
    x->status = status;
    x->signal = term_signal;
    uv_close((uv_handle_t *)p, up_exec_close_cb);
    if (x->cb && x->eof) {
        up_exec_done(x, NULL);
    }
}

static void up_exec_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct up_exec *x = h->data;

    (void)suggested;
    buf->base = x->out + x->len;
    buf->len = x->max - x->len;
}

static void up_exec_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct up_exec *x = s->data;

    (void)buf;
    if (nread == UV_ENOBUFS) {
        if (x->cb) {
            char err[64];
            snprintf(err, sizeof(err), "printed more than %zu KiB", x->max / 1024u);
            up_exec_done(x, err);
        }
        return;
    }
    if (nread < 0) {
        uv_read_stop(s);
        x->eof = 1;
        if (x->cb && x->exited) {
            up_exec_done(x, NULL);
        }
        return;
    }
    x->len += (size_t)nread;
}

int up_exec_start(uv_loop_t *loop, char **argv, size_t out_max, up_exec_cb *cb, void *arg,
                  struct up_exec **out)
{
    struct up_exec *x = calloc(1, sizeof(*x));
    uv_process_options_t opt;
    uv_stdio_container_t io[3];
    int r;

    if (!x) {
        return UV_ENOMEM;
    }
    x->max = out_max ? out_max : UP_EXEC_OUT_MAX;
    if (!(x->out = malloc(x->max + 1))) {
        free(x);
        return UV_ENOMEM;
    }
    x->refs = 1;
    x->cb = cb;
    x->arg = arg;
    uv_pipe_init(loop, &x->pipe, 0);
    x->pipe.data = x;
    x->pipe_open = 1;
    x->refs++;
    memset(&opt, 0, sizeof(opt));
    memset(io, 0, sizeof(io));
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&x->pipe;
    io[2].flags = UV_INHERIT_FD; /* its complaints go where relay25 logs */
    io[2].data.fd = 2;
    opt.file = argv[0];
    opt.args = argv;
    opt.stdio = io;
    opt.stdio_count = 3;
    opt.exit_cb = up_exec_exit_cb;
    opt.flags = UV_PROCESS_DETACHED; /* its own session and process group, for the kill */
    x->proc.data = x;
    r = uv_spawn(loop, &x->proc, &opt);
    x->refs++; /* the process handle is closed even when uv_spawn failed */
    if (r < 0) {
        uv_close((uv_handle_t *)&x->proc, up_exec_close_cb);
        x->cb = NULL;
        up_exec_end(x);
        return r;
    }
    x->running = 1;
    r = uv_read_start((uv_stream_t *)&x->pipe, up_exec_alloc, up_exec_read);
    if (r < 0) {
        x->cb = NULL;
        up_exec_end(x); /* kills it; the exit callback closes the handle */
        return r;
    }
    *out = x;
    return 0;
}
