/* sendmail: the sendmail(8) interface (`relay25 sendmail`, or called as sendmail):
 * options, the envelope sender, then one SMTP transaction (up_send) on a private uv
 * loop, to a relay25 daemon ([sendmail] submit; its spool through sm_queue when it
 * cannot be reached) or straight to the device's upstream. The message itself is
 * prepared by sm_msg. RFC 5321; sysexits.h. */
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cli.h"
#include "cli/sm_msg.h"
#include "cli/sm_queue.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_send.h"
#include "upstream/up_session.h"

#define SM_NAME "relay25-sendmail"
#define SM_POOL_IDLE 1 /* seconds; the one session is not given back */
/* sm_send: the daemon could not be reached before the transaction (why says how) */
#define SM_UNREACHABLE (-1)

enum sm_mode { SM_MODE_SEND, SM_MODE_LIST, SM_MODE_FLUSH };

struct sm_opts {
    const char *conf_path; /* -C */
    const char *from;      /* -f / -r */
    const char *fullname;  /* -F */
    int extract;           /* -t */
    int ignore_dots;       /* -i, -oi */
    int verbose;           /* -v */
    enum sm_mode mode;
    int argi; /* first recipient argument */
};

enum sm_state {
    SM_STATE_CONNECT,
    SM_STATE_SEND, /* the transaction runs (up_send) */
    SM_STATE_DONE,
};

struct sm_send {
    uv_loop_t loop;
    struct up_session *up;
    struct up_acquire acq; /* direct mode: the session comes from a pool */
    const struct sm_opts *o;
    struct sm_msg *m;
    const char *sender;
    const char *added; /* headers we add (From/Date/Message-ID), CRLF lines */
    size_t addedlen;
    const char *label; /* "upstream" or "relay25 daemon" */
    const char *where;
    uint64_t sid;
    enum sm_state state;
    size_t refused4, refused5;
    char params[64];  /* MAIL parameters */
    uv_buf_t head[3]; /* header section, ours, the blank line */
    int rc;           /* exit status, or SM_UNREACHABLE */
    char *why;        /* submit mode: a failure before the transaction goes here */
    size_t whycap;
};

static void sm_usage(FILE *f)
{
    fprintf(f, "usage: sendmail [-t] [-i] [-f sender] [-F name] [-v] [-C config] [-bm | -bp | -q] "
               "[--] [recipient ...]\n");
}

/* Printable text for stderr: control characters (an upstream could send terminal
 * escapes) become '?'. */
static const char *sm_clean(char *s)
{
    for (char *p = s; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }
    return s;
}

static void sm_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sm_say(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, SM_NAME ": %s\n", sm_clean(line));
}

/* ---- options -------------------------------------------------------------------------- */

/* sendmail's command line, getopt style ("-ti", "-fADDR" or "-f ADDR"), with the
 * options msmtp, nullmailer and ssmtp accept; those without meaning here are
 * accepted and ignored. Returns 0 or EX_USAGE. */
static int sm_parse_opts(int argc, char **argv, struct sm_opts *o)
{
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (a[0] != '-' || a[1] == '\0') {
            break;
        }
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "--help") == 0) {
            sm_usage(stdout);
            exit(0);
        }
        for (const char *p = a + 1; *p;) {
            char c = *p++;
            const char *arg;

            switch (c) {
            case 't':
                o->extract = 1;
                continue;
            case 'i':
                o->ignore_dots = 1;
                continue;
            case 'v':
                o->verbose = 1;
                continue;
            case 'G': /* gateway submission */
            case 'U': /* initial user submission */
            case 'm': /* me too */
            case 'n': /* no aliasing */
                continue;
            case 'q': /* -q, -q30m, -qR...: a queue run; there is no queue */
                o->mode = SM_MODE_FLUSH;
                p = "";
                continue;
            case 'A':
            case 'B':
            case 'C':
            case 'F':
            case 'L':
            case 'N':
            case 'O':
            case 'R':
            case 'V':
            case 'X':
            case 'b':
            case 'f':
            case 'h':
            case 'o':
            case 'r':
                if (*p) {
                    arg = p;
                } else if (i + 1 < argc) {
                    arg = argv[++i];
                } else {
                    sm_say("option -%c needs an argument", c);
                    sm_usage(stderr);
                    return EX_USAGE;
                }
                p = "";
                break;
            default:
                sm_say("unknown option -%c", c);
                sm_usage(stderr);
                return EX_USAGE;
            }
            switch (c) {
            case 'C':
                o->conf_path = arg;
                break;
            case 'F':
                o->fullname = arg;
                break;
            case 'f':
            case 'r':
                o->from = arg;
                break;
            case 'o':
                if (arg[0] == 'i') { /* -oi; the other -o options (-oem, -odb...) do not apply */
                    o->ignore_dots = 1;
                }
                break;
            case 'b':
                if (strcmp(arg, "m") == 0) {
                    o->mode = SM_MODE_SEND;
                } else if (strcmp(arg, "p") == 0) {
                    o->mode = SM_MODE_LIST;
                } else {
                    sm_say("-b%s is not supported (only -bm and -bp)", arg);
                    sm_usage(stderr);
                    return EX_USAGE;
                }
                break;
            default: /* -A -B -L -N -O -R -V -X -h: DSN, logging, hop count: not applicable */
                break;
            }
        }
    }
    o->argi = i;
    return 0;
}

/* ---- configuration ------------------------------------------------------------------- */

/* -C FILE, else $RELAY25_CONFIG, else the default file if it exists, else the
 * RELAY25_* environment. */
static struct conf *sm_load_conf(const char *path)
{
    char err[1024];
    struct conf *c;

    if (!path) {
        const char *e = getenv("RELAY25_CONFIG");
        if (e && *e) {
            path = e;
        } else if (access(RELAY25_DEFAULT_CONFIG, F_OK) == 0) {
            path = RELAY25_DEFAULT_CONFIG;
        } else if (!getenv("RELAY25_UPSTREAM")) {
            sm_say(
                "no configuration: give -C FILE, set RELAY25_CONFIG, create " RELAY25_DEFAULT_CONFIG
                " or set RELAY25_UPSTREAM");
            return NULL;
        }
    }
    c = conf_load(path, 1, err, sizeof(err));
    if (!c) {
        sm_say("%s", err);
    }
    return c;
}

/* The credentials sendmail uses when it talks to the provider itself. */
static const struct conf_device *sm_device(const struct conf *c)
{
    for (size_t i = 0; i < c->ndevices; i++) {
        if (c->devices[i].is_default) {
            return &c->devices[i];
        }
    }
    return c->ndevices == 1 ? &c->devices[0] : NULL;
}

/* ---- SMTP ---------------------------------------------------------------------------- */

static void sm_enter_state(struct sm_send *s, enum sm_state st);

/* No session to run the transaction on. In submit mode the caller may still queue
 * the message (sm_queue), so the reason is kept for it rather than printed. */
static void sm_connect_failed(struct sm_send *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sm_connect_failed(struct sm_send *s, const char *fmt, ...)
{
    char line[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (s->why) {
        snprintf(s->why, s->whycap, "%s", line);
        s->rc = SM_UNREACHABLE;
    } else {
        sm_say("%s; message not sent", line);
        s->rc = EX_TEMPFAIL;
    }
    sm_enter_state(s, SM_STATE_DONE);
}

static const char *sm_strstate(enum sm_state st)
{
    switch (st) {
    case SM_STATE_CONNECT:
        return "connect";
    case SM_STATE_SEND:
        return "send";
    case SM_STATE_DONE:
        return "done";
    }
    abort();
}

static void sm_enter_state(struct sm_send *s, enum sm_state st)
{
    log_debug(s->sid, "sendmail", "state=%s->%s", sm_strstate(s->state), sm_strstate(st));
    s->state = st;
}

/* "250 2.0.0 Ok: queued" (all lines joined), cleaned for stderr. */
static const char *sm_reply(const struct up_reply *r, char *out, size_t cap)
{
    char line[700];
    snprintf(out, cap, "%d %s", r->code, up_reply_oneline(r, line, sizeof(line)));
    return sm_clean(out);
}

static int sm_code_rc(int code)
{
    return code >= 500 ? EX_UNAVAILABLE : EX_TEMPFAIL;
}

/* Done with the transaction: QUIT politely when the session is still there. */
static void sm_finish(struct sm_send *s, int rc)
{
    s->rc = rc;
    sm_enter_state(s, SM_STATE_DONE);
    if (s->up) {
        if (s->o->verbose) {
            sm_say(">>> QUIT");
        }
        up_quit(s->up);
    }
}

/* Message size before dot-stuffing: headers, ours, the blank line, the body. */
static uint64_t sm_size(const struct sm_send *s)
{
    return (uint64_t)s->m->hdrlen + (uint64_t)s->addedlen + 2u + s->m->bodylen;
}

/* -v: each command as up_send writes it. */
static void sm_on_sent(void *arg, enum up_send_step step, size_t i)
{
    struct sm_send *s = arg;

    if (!s->o->verbose) {
        return;
    }
    switch (step) {
    case UP_SEND_MAIL:
        sm_say(">>> MAIL FROM:<%s>%s%s", s->sender, *s->params ? " " : "", s->params);
        return;
    case UP_SEND_RCPT:
        sm_say(">>> RCPT TO:<%s>", s->m->rcpt[i]);
        return;
    case UP_SEND_DATA:
        sm_say(">>> DATA");
        return;
    case UP_SEND_DOT:
        sm_say(">>> (message, %llu bytes) .", (unsigned long long)sm_size(s));
        return;
    case UP_SEND_BODY:
        return;
    }
    abort();
}

static void sm_on_send_reply(void *arg, enum up_send_step step, size_t i, const struct up_reply *r)
{
    struct sm_send *s = arg;
    char text[800];

    sm_reply(r, text, sizeof(text));
    if (s->o->verbose) {
        sm_say("<<< %s", text);
    }
    if (step != UP_SEND_RCPT || (r->code >= 200 && r->code < 300)) {
        return;
    }
    if (r->code >= 500) {
        s->refused5++;
    } else {
        s->refused4++;
    }
    sm_say("recipient <%s> refused by %s: %s", s->m->rcpt[i], s->where, text);
}

static void sm_on_send_done(void *arg, const struct up_send_result *res)
{
    struct sm_send *s = arg;
    char text[800] = "";

    s->up = res->session;
    if (res->file_err) {
        sm_say("cannot read the temporary file: %s; message not sent", res->detail);
        s->rc = EX_IOERR;
        sm_enter_state(s, SM_STATE_DONE);
        return;
    }
    if (res->err) {
        char d[600];
        snprintf(d, sizeof(d), "%s", res->detail);
        sm_say("%s %s: %s in state %s; message not sent", s->label, s->where, sm_clean(d),
               up_send_strstep(res->step));
        s->rc = EX_TEMPFAIL;
        sm_enter_state(s, SM_STATE_DONE);
        return;
    }
    if (res->reply) {
        sm_reply(res->reply, text, sizeof(text));
    }
    switch (res->step) {
    case UP_SEND_MAIL:
        sm_say("sender <%s> refused by %s: %s; message not sent", s->sender, s->where, text);
        sm_finish(s, sm_code_rc(res->reply->code));
        return;
    case UP_SEND_RCPT:
        /* All or nothing: a non-zero exit then always means "not sent", so
         * the caller can retry or report without creating duplicates. */
        sm_say("%zu of %zu recipients refused; message not sent", s->refused4 + s->refused5,
               s->m->nrcpt);
        sm_finish(s, s->refused4 ? EX_TEMPFAIL : EX_NOUSER);
        return;
    case UP_SEND_DATA:
        sm_say("DATA refused by %s: %s; message not sent", s->where, text);
        sm_finish(s, sm_code_rc(res->reply->code));
        return;
    case UP_SEND_DOT:
        if (res->reply->code >= 200 && res->reply->code < 300) {
            if (s->o->verbose) {
                sm_say("sent to %zu recipient%s via %s: %s", res->accepted,
                       res->accepted == 1 ? "" : "s", s->where, text);
            }
            sm_finish(s, 0);
            return;
        }
        sm_say("message refused by %s: %s", s->where, text);
        sm_finish(s, sm_code_rc(res->reply->code));
        return;
    case UP_SEND_BODY: /* ends with an error only */
        return;
    }
    abort();
}

static const struct up_send_cbs sm_send_cbs = {
    .on_sent = sm_on_sent,
    .on_reply = sm_on_send_reply,
    .on_done = sm_on_send_done,
};

static const struct up_cbs sm_cbs;

/* Ready: the transaction, through up_send (all recipients or none). */
static void sm_on_ready(void *arg, int err, const struct up_reply *r, const char *detail)
{
    struct sm_send *s = arg;
    struct up_send_req t;
    size_t o = 0;

    if (err != 0) {
        char buf[900];
        reply_upstream_reason(buf, sizeof(buf), err, s->where, detail);
        if (r && r->code >= 500) { /* it answers and refuses us: nothing to queue for */
            sm_say("%s %s; message not sent", s->label, buf);
            s->rc = EX_TEMPFAIL;
            sm_enter_state(s, SM_STATE_DONE);
            return;
        }
        sm_connect_failed(s, "%s %s", s->label, buf);
        return;
    }
    if (s->o->verbose) {
        sm_say("<<< ready: %s %s", s->label, s->where);
    }
    s->params[0] = '\0';
    if (up_ext(s->up) & UP_EXT_SIZE) {
        o += (size_t)snprintf(s->params + o, sizeof(s->params) - o, "SIZE=%llu",
                              (unsigned long long)sm_size(s));
    }
    if (s->m->eightbit && (up_ext(s->up) & UP_EXT_8BITMIME)) {
        snprintf(s->params + o, sizeof(s->params) - o, "%sBODY=8BITMIME", o ? " " : "");
    }
    /* 354: the header section (ours added after the caller's), the blank line,
     * then the body from the file */
    s->head[0] = uv_buf_init(s->m->hdr, (unsigned)s->m->hdrlen);
    s->head[1] = uv_buf_init((char *)s->added, (unsigned)s->addedlen);
    s->head[2] = uv_buf_init("\r\n", 2);
    memset(&t, 0, sizeof(t));
    t.loop = &s->loop;
    t.from = s->sender;
    t.params = s->params;
    t.rcpt = (const char *const *)s->m->rcpt;
    t.nrcpt = s->m->nrcpt;
    t.all_or_none = 1;
    t.head = s->head;
    t.nhead = 3;
    t.fd = s->m->fd;
    t.session_cbs = &sm_cbs;
    t.session_arg = s;
    t.sid = s->sid;
    t.cbs = &sm_send_cbs;
    t.arg = s;
    sm_enter_state(s, SM_STATE_SEND);
    if (!up_send_start(s->up, &t)) { /* nothing was sent */
        sm_say("%s %s: session not ready in state mail; message not sent", s->label, s->where);
        s->rc = EX_TEMPFAIL;
        sm_enter_state(s, SM_STATE_DONE);
        up_close(s->up);
    }
}

/* Outside a transaction (up_send has the session during one): nothing is due. */
static void sm_on_reply(void *arg, const struct up_reply *r)
{
    (void)arg, (void)r;
}

static void sm_on_fail(void *arg, int err, const char *detail, int pending)
{
    struct sm_send *s = arg;
    char d[600];
    (void)err;
    (void)pending;

    if (s->state == SM_STATE_DONE) {
        return;
    }
    snprintf(d, sizeof(d), "%s", detail ? detail : "");
    if (s->state == SM_STATE_CONNECT) {
        sm_connect_failed(s, "%s %s: %s in state %s", s->label, s->where, d, sm_strstate(s->state));
        return;
    }
    sm_say("%s %s: %s in state %s; message not sent", s->label, s->where, sm_clean(d),
           sm_strstate(s->state));
    s->rc = EX_TEMPFAIL;
    sm_enter_state(s, SM_STATE_DONE);
}

static void sm_on_drain(void *arg)
{
    (void)arg;
}

static void sm_on_close(void *arg)
{
    struct sm_send *s = arg;
    s->up = NULL;
}

/* Direct mode: the pool's answer (after failover along the device's list). */
static void sm_on_acquired(struct up_acquire *req, struct up_session *up, int err,
                           const struct up_reply *r, const char *detail)
{
    struct sm_send *s = req->arg;

    s->up = up;
    s->where = req->where;
    sm_on_ready(s, err, r, detail);
}

static const struct up_cbs sm_cbs = {
    .on_ready = sm_on_ready,
    .on_reply = sm_on_reply,
    .on_fail = sm_on_fail,
    .on_drain = sm_on_drain,
    .on_close = sm_on_close,
};

/* host:port of [sendmail] submit into a stack upstream; 0 or -1. */
static int sm_submit_upstream(const char *submit, struct conf_upstream *u, char *host,
                              size_t hostcap)
{
    uint16_t port;

    if (cli__hostport(submit, 25, host, hostcap, &port) != 0) {
        return -1;
    }
    memset(u, 0, sizeof(*u));
    u->name = "submit";
    u->host = host;
    u->port = port;
    u->tls = CONF_TLS_STARTTLS; /* unused with local_plain */
    u->server_name = host;
    u->tls_verify = 1;
    return 0;
}

/* One transaction. why (submit mode only): where a failure to reach the daemon
 * is described instead of printed; SM_UNREACHABLE is then returned. */
static int sm_send(const struct conf *c, const struct conf_device *dev, const struct sm_opts *o,
                   struct sm_msg *m, const char *sender, const char *added, size_t addedlen,
                   char *why, size_t whycap)
{
    struct sm_send s;
    struct conf_upstream local;
    struct up_params p;
    struct up_pool *pool = NULL;
    char host[300], where[320];

    memset(&s, 0, sizeof(s));
    memset(&p, 0, sizeof(p));
    s.o = o;
    s.m = m;
    s.sender = sender;
    s.added = added;
    s.addedlen = addedlen;
    s.sid = log_new_id();
    s.rc = EX_TEMPFAIL;
    p.helo = c->hostname;
    p.sid = s.sid;
    p.connect_timeout = c->connect_timeout;
    p.command_timeout = c->command_timeout;
    p.data_timeout = c->data_timeout;
    if (c->submit) {
        if (sm_submit_upstream(c->submit, &local, host, sizeof(host)) != 0) {
            sm_say("%s: bad submit address '%s' (want host:port)",
                   c->path ? c->path : "environment", c->submit);
            return EX_CONFIG;
        }
        p.up = &local;
        p.local_plain = 1;
        s.label = "relay25 daemon";
        s.why = why;
        s.whycap = whycap;
    } else {
        p.up = dev->up;
        p.user = dev->user; /* for the message below: the pool sets up the session */
        s.label = "upstream";
    }
    up_where_of(p.up, where, sizeof(where));
    s.where = where;
    if (o->verbose) {
        if (p.local_plain) {
            sm_say("connecting to the relay25 daemon at %s (plain SMTP)", where);
        } else {
            sm_say("connecting to %s (%s, AUTH as %s)", where,
                   p.up->tls == CONF_TLS_IMPLICIT ? "implicit TLS" : "STARTTLS", p.user);
        }
    }
    uv_loop_init(&s.loop);
    sm_enter_state(&s, SM_STATE_CONNECT);
    if (p.local_plain) { /* a relay25 daemon, not a provider: no pool, no slots */
        s.up = up_session_new(&s.loop, &p, &sm_cbs, &s);
        if (!s.up) {
            s.rc = EX_OSERR;
        } else if (up_session_start(s.up) < 0) { /* no effect, no callback */
            sm_say("%s %s: session not ready in state %s; message not sent", s.label, s.where,
                   sm_strstate(s.state));
            sm_enter_state(&s, SM_STATE_DONE);
            up_close(s.up);
        }
    } else {
        p.oauth = up_oauth_new(&s.loop, dev); /* NULL unless auth = xoauth2 */
        pool = up_pool_new(&s.loop, SM_POOL_IDLE);
        s.acq.dev = dev;
        s.acq.conf = c;
        s.acq.oauth = p.oauth;
        s.acq.sid = s.sid;
        s.acq.wait_seconds = c->command_timeout;
        s.acq.cbs = &sm_cbs;
        s.acq.arg = &s;
        s.acq.on_done = sm_on_acquired;
        if (!pool || up_pool_acquire(pool, &s.acq) < 0) {
            s.rc = EX_OSERR;
        }
    }
    uv_run(&s.loop, UV_RUN_DEFAULT);
    if (pool) {
        up_pool_close(pool);
    }
    if (p.oauth) {
        up_oauth_free(p.oauth);
    }
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    return s.rc;
}

/* ---- the daemon is down -------------------------------------------------------------- */

/* Submit mode and the daemon could not be reached: with a spool this process may
 * write, the message is committed there for the daemon (which is told to look
 * now if it runs), and that is a success; otherwise 75 as before. */
static int sm_fallback(const struct conf *c, const struct sm_opts *o, struct sm_msg *m,
                       const char *sender, const char *added, size_t addedlen, const char *why)
{
    struct sm_queue_in in;
    char err[1200];
    uint64_t qid = 0;
    int rc;

    if (!conf_spool_used(c)) {
        sm_say("%s; message not sent", why);
        return EX_TEMPFAIL;
    }
    if (sm_queue_possible(c, err, sizeof(err)) != 0) {
        sm_say("%s; message not sent", why);
        sm_say("not queued: %s", err);
        return EX_TEMPFAIL;
    }
    memset(&in, 0, sizeof(in));
    in.c = c;
    in.m = m;
    in.submit = c->submit;
    in.sender = sender;
    in.added = added;
    in.addedlen = addedlen;
    if ((rc = sm_queue_commit(&in, &qid, err, sizeof(err))) != 0) {
        sm_say("%s; message not sent", why);
        sm_say("not queued: %s", err);
        return rc;
    }
    if (o->verbose) {
        sm_say("committed to %s/q as %016llx", c->spool_dir, (unsigned long long)qid);
    }
    sm_say("%s; message queued as %016llx in %s: %s", why, (unsigned long long)qid, c->spool_dir,
           cli_queue_kick(c->spool_dir) ? "the running daemon delivers it now"
                                        : "the daemon delivers it when it starts");
    return 0;
}

/* ---- the command --------------------------------------------------------------------- */

/* Envelope sender: -f, else $RELAY25_FROM, else the device's login when it is an
 * address, else login@hostname. "" is the null sender (-f '<>'). */
static int sm_sender(const struct sm_opts *o, const struct conf *c, const struct conf_device *dev,
                     char *out, size_t cap)
{
    const char *f = o->from;
    size_t n;

    if (!f) {
        f = getenv("RELAY25_FROM");
        if (f && !*f) {
            f = NULL;
        }
    }
    if (!f && dev && strchr(dev->user, '@')) {
        f = dev->user;
    }
    if (!f) {
        struct passwd *pw = getpwuid(getuid());
        const char *login = pw ? pw->pw_name : getenv("LOGNAME");
        snprintf(out, cap, "%s@%s", login && *login ? login : "nobody", c->hostname);
        return 0;
    }
    while (*f == ' ' || *f == '<') {
        f++;
    }
    n = strlen(f);
    while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == '>')) {
        n--;
    }
    if (n >= cap || n > SM_ADDR_MAX) {
        sm_say("sender address too long");
        return EX_DATAERR;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)f[i];
        if (ch < 0x21 || ch == 0x7f || ch == '<' || ch == '>') {
            sm_say("bad sender address '%.*s'", (int)n, f);
            return EX_DATAERR;
        }
    }
    memcpy(out, f, n);
    out[n] = '\0';
    return 0;
}

/* -bp / mailq: `relay25 queue list` of the configured spool (the configuration is
 * found as for sending, without loading CAs); with no configuration at all, the
 * default spool. */
static int sm_list_queue(const char *path)
{
    const char *e = getenv("RELAY25_CONFIG");
    char err[1024];
    struct conf *c;
    int rc;

    if (!path && e && *e) {
        path = e;
    } else if (!path && access(RELAY25_DEFAULT_CONFIG, F_OK) == 0) {
        path = RELAY25_DEFAULT_CONFIG;
    } else if (!path && !getenv("RELAY25_UPSTREAM")) {
        return cli_queue_list_unconfigured(RELAY25_DEFAULT_SPOOL_DIR);
    }
    if (!(c = conf_load(path, 0, err, sizeof(err)))) {
        sm_say("%s", err);
        return EX_CONFIG;
    }
    rc = cli_queue_list(c->spool_dir, 0, 0);
    conf_free(c);
    return rc;
}

int cli_sendmail(int argc, char **argv, int mailq)
{
    struct sm_opts o;
    struct sm_msg m;
    struct conf *c = NULL;
    const struct conf_device *dev = NULL;
    char sender[SM_ADDR_MAX + 1], from_hdr[SM_ADDR_MAX + 1];
    char *added = NULL;
    size_t addedlen = 0;
    int rc;

    memset(&o, 0, sizeof(o));
    sm_msg_init(&m, NULL);
    if (!mailq && (rc = sm_parse_opts(argc, argv, &o)) != 0) {
        return rc;
    }
    if (mailq || o.mode == SM_MODE_LIST) {
        return sm_list_queue(o.conf_path);
    }
    if (o.mode == SM_MODE_FLUSH) {
        return 0;
    }
    if (!o.extract && o.argi >= argc) {
        sm_say("no recipients (give addresses, or -t to read To:, Cc: and Bcc:)");
        sm_usage(stderr);
        return EX_DATAERR;
    }
    log_set_level(o.verbose ? LOG_INFO : LOG_ERR);
    signal(SIGPIPE, SIG_IGN);
    if (!(c = sm_load_conf(o.conf_path))) {
        return EX_CONFIG;
    }
    dev = sm_device(c);
    if (!c->submit && !dev) {
        sm_say("%s: no [device default] among %zu devices: sendmail does not know whose "
               "credentials to use (add [device default], or [sendmail] submit = host:port)",
               c->path ? c->path : "environment", c->ndevices);
        rc = EX_CONFIG;
        goto done;
    }
    if ((rc = sm_sender(&o, c, dev, sender, sizeof(sender))) != 0) {
        goto done;
    }
    snprintf(from_hdr, sizeof(from_hdr), "%s", sender);
    if (!*sender) { /* null sender: From: still names someone */
        struct sm_opts none;
        memset(&none, 0, sizeof(none));
        sm_sender(&none, c, dev, from_hdr, sizeof(from_hdr));
    }
    m.hostname = c->hostname;
    for (int i = o.argi; i < argc; i++) {
        for (const char *q = argv[i]; *q; q++) {
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                sm_say("bad recipient argument (control character): '%s'", argv[i]);
                rc = EX_DATAERR;
                goto done;
            }
        }
        if ((rc = sm_msg_addrlist(&m, argv[i], strlen(argv[i]), "recipient argument")) != 0) {
            goto done;
        }
    }
    if ((rc = sm_msg_read(&m, o.ignore_dots)) != 0) {
        goto done;
    }
    if (o.extract && (rc = sm_msg_extract(&m)) != 0) {
        goto done;
    }
    if (m.nrcpt == 0) {
        sm_say("no recipients%s", o.extract ? " (no addresses in To:, Cc: or Bcc:)" : "");
        rc = EX_DATAERR;
        goto done;
    }
    sm_msg_remove_bcc(&m);
    if (!(added = sm_msg_added_headers(&m, from_hdr, o.fullname, &addedlen))) {
        rc = EX_OSERR;
        goto done;
    }
    {
        char why[1200] = "";
        rc = sm_send(c, dev, &o, &m, sender, added, addedlen, c->submit ? why : NULL, sizeof(why));
        if (rc == SM_UNREACHABLE) {
            rc = sm_fallback(c, &o, &m, sender, added, addedlen, why);
        }
    }
done:
    if (rc != 0 && m.err[0]) {
        sm_say("%s", m.err);
    }
    free(added);
    sm_msg_free(&m);
    conf_free(c);
    return rc;
}
