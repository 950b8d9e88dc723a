/* up_send: drives one transaction (envelope, then a body from memory and a file)
 * over a ready up_session, for the queue and sendmail's direct mode. It owns the
 * session's callbacks, the file reads (uv_fs, so the daemon's loop never blocks)
 * and the dot-stuffing encoder until it hands the session back in on_done.
 * RFC 5321 §3.3 and §4.5.2, RFC 2920 (PIPELINING). */
#include "upstream/up_send.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common/data.h"
#include "common/reply.h"

#define UPS_READ ((size_t)32 * 1024)   /* file bytes read per step (the queue runs 64 at once) */
#define UPS_SMALL ((size_t)4096)       /* the least read buffer, for a small file */
#define UPS_HIWAT ((size_t)256 * 1024) /* upstream backlog that pauses reading */

struct up_send {
    struct up_send_req req;
    struct up_session *ups; /* NULL once it closed */
    enum up_send_step step;
    int piped;       /* RFC 2920: the envelope went in one flight */
    size_t ircpt;    /* the RCPT whose reply is due next */
    size_t accepted; /* RCPTs accepted */
    size_t refused;  /* RCPTs refused */
    int err;         /* enum relay_err once the session failed or was cut */
    int file_err;    /* uv error reading the body */
    char detail[300];
    char where[300];
    uv_fs_t fs;
    uv_file fd;
    int own_fd;    /* opened here from req.path: closed here */
    uint64_t off;  /* next file offset */
    uint64_t size; /* content bytes queued */
    int reading;   /* a uv_fs request is in flight: the end waits for it */
    int waiting;   /* paused until on_drain */
    int ending;    /* over: on_done as soon as nothing is in flight */
    struct data_enc enc;
    char *rbuf, *ebuf;
    size_t cap; /* rbuf's size: UPS_READ, or less for a small file of known size */
};

static const struct up_cbs ups_cbs;
static void ups_read_next(struct up_send *t);

const char *up_send_strstep(enum up_send_step step)
{
    switch (step) {
    case UP_SEND_MAIL:
        return "mail";
    case UP_SEND_RCPT:
        return "rcpt";
    case UP_SEND_DATA:
        return "data";
    case UP_SEND_BODY:
        return "body";
    case UP_SEND_DOT:
        return "dot";
    }
    abort();
}

static void ups_sent(struct up_send *t, enum up_send_step step, size_t i)
{
    if (t->req.cbs->on_sent) {
        t->req.cbs->on_sent(t->req.arg, step, i);
    }
}

/* The end: the session goes back to the caller (idle, or closing so that its
 * on_close reaches the caller), then on_done, then t is freed. */
static void ups_finish(struct up_send *t, const struct up_reply *r)
{
    struct up_send_result res;

    if (t->fd >= 0 && t->own_fd) {
        uv_fs_t c;
        uv_fs_close(t->req.loop, &c, t->fd, NULL); /* close(2) of a regular file */
        uv_fs_req_cleanup(&c);
    }
    memset(&res, 0, sizeof(res));
    if (t->ups) {
        if (!up_idle(t->ups)) {
            up_close(t->ups); /* replies still due (or mid-DATA): nothing to reuse */
        }
        up_session_rebind(t->ups, t->req.session_cbs, t->req.session_arg, t->req.sid);
        res.session = up_idle(t->ups) ? t->ups : NULL;
    }
    res.step = t->step;
    res.err = t->err;
    res.file_err = t->file_err;
    res.reply = t->err || t->file_err ? NULL : r;
    res.detail = t->detail;
    res.where = t->where;
    res.accepted = t->accepted;
    res.size = t->size;
    t->req.cbs->on_done(t->req.arg, &res);
    free(t->rbuf);
    free(t->ebuf);
    free(t);
}

/* A failure of ours (a call refused, the file): close the session without
 * QUIT, so upstream discards a partial message, and end once nothing is in flight. */
static void ups_abort(struct up_send *t, int err, int file_err, const char *detail)
{
    if (!t->err && !t->file_err) {
        t->err = err;
        t->file_err = file_err;
        snprintf(t->detail, sizeof(t->detail), "%s", detail);
    }
    if (t->ups) {
        up_close(t->ups);
    }
    t->ending = 1;
    if (!t->reading) {
        ups_finish(t, NULL);
    }
}

/* r from an up_* call: < 0 means it had no effect and nothing will answer it
 * (up_session.h). Returns r. */
static int ups_check(struct up_send *t, int r)
{
    if (r < 0) {
        ups_abort(t, RELAY_E_PROTOCOL, 0, "session not ready");
    }
    return r;
}

static const char *ups_rcpt_params(const struct up_send *t, size_t i)
{
    return t->req.rcpt_params ? t->req.rcpt_params[i] : NULL;
}

static void ups_send_rcpt(struct up_send *t)
{
    ups_sent(t, UP_SEND_RCPT, t->ircpt);
    ups_check(t, up_rcpt(t->ups, t->req.rcpt[t->ircpt], ups_rcpt_params(t, t->ircpt)));
}

/* Encodes and queues content in pieces that fit ebuf. 0, or t ended. */
static int ups_body_out(struct up_send *t, const char *p, size_t n)
{
    t->size += n;
    while (n > 0) {
        size_t k = n < t->cap ? n : t->cap;
        if (ups_check(t, up_body(t->ups, t->ebuf, data_enc_feed(&t->enc, p, k, t->ebuf))) < 0) {
            return -1;
        }
        p += k;
        n -= k;
    }
    return 0;
}

/* 354: the content in memory, then the file. */
static void ups_start_body(struct up_send *t)
{
    t->step = UP_SEND_BODY;
    data_enc_init(&t->enc);
    for (size_t i = 0; i < t->req.nhead; i++) {
        if (ups_body_out(t, t->req.head[i].base, t->req.head[i].len) != 0) {
            return;
        }
    }
    ups_read_next(t);
}

static void ups_end_body(struct up_send *t)
{
    size_t n = data_enc_finish(&t->enc, t->ebuf);

    if (ups_check(t, up_body(t->ups, t->ebuf, n)) < 0) {
        return;
    }
    ups_sent(t, UP_SEND_DOT, 0);
    t->step = UP_SEND_DOT;
    ups_check(t, up_data_end(t->ups));
}

static void ups_on_fs(uv_fs_t *req)
{
    struct up_send *t = req->data;
    ssize_t r = req->result;
    int was_open = req->fs_type == UV_FS_OPEN;

    uv_fs_req_cleanup(req);
    t->reading = 0;
    if (was_open && r >= 0) {
        t->fd = (uv_file)r;
        t->own_fd = 1;
    }
    if (t->ending) { /* the session failed or was cut meanwhile */
        ups_finish(t, NULL);
        return;
    }
    if (r < 0) {
        ups_abort(t, 0, (int)r, uv_strerror((int)r));
        return;
    }
    if (was_open) {
        ups_read_next(t);
        return;
    }
    if (r == 0) {
        ups_end_body(t);
        return;
    }
    t->off += (uint64_t)r;
    if (ups_body_out(t, t->rbuf, (size_t)r) != 0) {
        return;
    }
    if (t->req.size && t->off >= t->req.size) {
        ups_end_body(t); /* all of it: no round trip through the pool to read nothing */
        return;
    }
    if (up_pending(t->ups) > UPS_HIWAT) {
        t->waiting = 1; /* ups_on_drain continues */
        return;
    }
    ups_read_next(t);
}

static void ups_read_next(struct up_send *t)
{
    uv_buf_t b;
    int r;

    t->fs.data = t;
    if (t->fd < 0) {
        r = uv_fs_open(t->req.loop, &t->fs, t->req.path, O_RDONLY | O_CLOEXEC, 0, ups_on_fs);
    } else {
        b = uv_buf_init(t->rbuf, (unsigned)t->cap);
        r = uv_fs_read(t->req.loop, &t->fs, t->fd, &b, 1, (int64_t)t->off, ups_on_fs);
    }
    if (r < 0) {
        ups_abort(t, 0, r, uv_strerror(r));
        return;
    }
    t->reading = 1;
}

/* Every RCPT reply is in: DATA when the policy allows, else the end. */
static void ups_rcpts_done(struct up_send *t)
{
    int go = t->req.all_or_none ? t->refused == 0 && t->accepted > 0 : t->accepted > 0;

    if (!go) {
        ups_finish(t, NULL);
        return;
    }
    t->step = UP_SEND_DATA;
    ups_sent(t, UP_SEND_DATA, 0);
    ups_check(t, up_data(t->ups));
}

static void ups_on_reply(void *arg, const struct up_reply *r)
{
    struct up_send *t = arg;
    int ok = r->code >= 200 && r->code < 300;

    switch (t->step) {
    case UP_SEND_MAIL:
        t->req.cbs->on_reply(t->req.arg, UP_SEND_MAIL, 0, r);
        if (!ok) {
            ups_finish(t, r); /* pipelined RCPT replies still due: the session closes */
            return;
        }
        t->step = UP_SEND_RCPT;
        t->ircpt = 0;
        if (!t->piped) {
            ups_send_rcpt(t);
        }
        return;
    case UP_SEND_RCPT:
        t->req.cbs->on_reply(t->req.arg, UP_SEND_RCPT, t->ircpt, r);
        if (ok) {
            t->accepted++;
        } else {
            t->refused++;
        }
        if (++t->ircpt < t->req.nrcpt) {
            if (!t->piped) {
                ups_send_rcpt(t);
            }
            return;
        }
        if (t->piped && !t->req.all_or_none) {
            t->step = UP_SEND_DATA; /* DATA went with the RCPTs */
            return;
        }
        ups_rcpts_done(t);
        return;
    case UP_SEND_DATA:
        t->req.cbs->on_reply(t->req.arg, UP_SEND_DATA, 0, r);
        if (r->code == 354 && t->accepted == 0) {
            /* pipelined, every RCPT refused, 354 even so (RFC 2920 §3.1): no
             * body; closing makes upstream drop the transaction */
            up_close(t->ups);
        }
        if (r->code != 354 || t->accepted == 0) {
            ups_finish(t, r);
            return;
        }
        ups_start_body(t);
        return;
    case UP_SEND_DOT:
        t->req.cbs->on_reply(t->req.arg, UP_SEND_DOT, 0, r);
        ups_finish(t, r);
        return;
    case UP_SEND_BODY: /* up_session fails on a reply here: never called */
        return;
    }
    abort();
}

static void ups_on_fail(void *arg, int err, const char *detail, int pending)
{
    struct up_send *t = arg;
    (void)pending;

    if (!t->err && !t->file_err) {
        t->err = err;
        snprintf(t->detail, sizeof(t->detail), "%s", detail ? detail : "");
    }
    t->ending = 1;
    if (!t->reading) {
        ups_finish(t, NULL);
    }
}

static void ups_on_drain(void *arg)
{
    struct up_send *t = arg;

    if (t->waiting && t->step == UP_SEND_BODY && !t->reading && !t->ending) {
        t->waiting = 0;
        ups_read_next(t);
    }
}

/* The session closed before the end was reported (up_send_abort, or a call
 * refused inside up_send_start); the caller still hears on_close. */
static void ups_on_close(void *arg)
{
    struct up_send *t = arg;
    const struct up_cbs *cbs = t->req.session_cbs;
    void *cbarg = t->req.session_arg;

    t->ups = NULL;
    if (!t->err && !t->file_err) {
        t->err = RELAY_E_LOST;
        snprintf(t->detail, sizeof(t->detail), "connection closed");
    }
    t->ending = 1;
    if (!t->reading) {
        ups_finish(t, NULL);
    }
    if (cbs->on_close) {
        cbs->on_close(cbarg);
    }
}

/* Sessions come ready: never called. */
static void ups_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    (void)arg, (void)err, (void)r, (void)detail;
}

static const struct up_cbs ups_cbs = {
    .on_ready = ups_on_ready,
    .on_reply = ups_on_reply,
    .on_fail = ups_on_fail,
    .on_drain = ups_on_drain,
    .on_close = ups_on_close,
};

/* RFC 2920: MAIL, every RCPT (and DATA unless all_or_none waits for the RCPT
 * replies) in one write; the replies come back in order. 0, or nothing was sent. */
static int ups_send_envelope(struct up_send *t)
{
    struct up_session *u = t->ups;
    int r;

    up_cork(u);
    ups_sent(t, UP_SEND_MAIL, 0);
    if (up_mail(u, t->req.from, t->req.params) < 0) {
        up_uncork(u);
        return -1;
    }
    r = 0;
    for (size_t i = 0; r >= 0 && i < t->req.nrcpt; i++) {
        ups_sent(t, UP_SEND_RCPT, i);
        r = up_rcpt(u, t->req.rcpt[i], ups_rcpt_params(t, i));
    }
    if (r >= 0 && !t->req.all_or_none) {
        ups_sent(t, UP_SEND_DATA, 0);
        r = up_data(u);
    }
    if (r >= 0) {
        r = up_uncork(u);
    }
    if (r < 0) {
        /* MAIL is out, so its reply may come: close, and end from ups_on_close
         * (never from inside this call) */
        up_close(u);
        t->err = RELAY_E_PROTOCOL;
        snprintf(t->detail, sizeof(t->detail), "pipelined command refused");
    }
    return 0;
}

struct up_send *up_send_start(struct up_session *s, const struct up_send_req *req)
{
    struct up_send *t;

    if (!up_idle(s) || req->nrcpt == 0 || !(t = calloc(1, sizeof(*t)))) {
        return NULL;
    }
    t->req = *req;
    t->ups = s;
    t->fd = req->fd;
    t->step = UP_SEND_MAIL;
    t->piped = (up_ext(s) & UP_EXT_PIPELINING) != 0;
    snprintf(t->where, sizeof(t->where), "%s", up_where(s));
    t->cap = UPS_READ;
    if (req->size && req->size < UPS_READ) {
        t->cap = req->size < UPS_SMALL ? UPS_SMALL : (size_t)req->size;
    }
    t->rbuf = malloc(t->cap);
    t->ebuf = malloc(2 * t->cap + 8);
    if (!t->rbuf || !t->ebuf) {
        goto fail;
    }
    up_session_rebind(s, &ups_cbs, t, req->sid);
    if (t->piped) {
        if (ups_send_envelope(t) < 0) {
            goto fail_rebind;
        }
        return t;
    }
    ups_sent(t, UP_SEND_MAIL, 0);
    if (up_mail(s, req->from, req->params) < 0) {
        goto fail_rebind;
    }
    return t;
fail_rebind:
    up_session_rebind(s, req->session_cbs, req->session_arg, req->sid);
fail:
    free(t->rbuf);
    free(t->ebuf);
    free(t);
    return NULL;
}

void up_send_abort(struct up_send *t)
{
    if (t->ups && !t->ending) {
        if (!t->err && !t->file_err) {
            t->err = RELAY_E_LOST;
            snprintf(t->detail, sizeof(t->detail), "transaction cut");
        }
        up_close(t->ups); /* ups_on_close ends it */
    }
}
