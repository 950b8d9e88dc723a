/* sendmail: the sendmail(8) interface (`relay25 sendmail`, or called as sendmail):
 * options, the envelope sender, then one SMTP transaction (up_send) on a private uv
 * loop, to a relay25 daemon ([sendmail] submit; its spool through sm_queue when it
 * cannot be reached) or straight to the device's upstream. The message itself is
 * prepared by sm_msg. RFC 5321; sysexits.h. */
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/sm_bs.h"
#include "cli/sm_held.h"
#include "cli/sm_msg.h"
#include "cli/sm_queue.h"
#include "cli/sm_send.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"

enum sm_mode { SM_MODE_SEND, SM_MODE_LIST, SM_MODE_FLUSH, SM_MODE_SMTP };

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

static void sm_usage(FILE *f)
{
    fprintf(
        f,
        "usage: sendmail [-t] [-i] [-f sender] [-F name] [-v] [-C config] [-bm | -bp | -bs | -q] "
        "[--] [recipient ...]\n");
}

/* Printable text for stderr: control characters (an upstream could send terminal
 * escapes) become '?'. */

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
                } else if (strcmp(arg, "s") == 0) {
                    o->mode = SM_MODE_SMTP;
                } else {
                    sm_say("-b%s is not supported (only -bm, -bp and -bs)", arg);
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
    c = conf_load(path, 1 | CONF_LOAD_STRICT, err, sizeof(err));
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

/* ---- the daemon is down -------------------------------------------------------------- */

/* What every way of sending shares: the configuration, whose credentials, the
 * options. */
struct sm_ctx {
    const struct conf *c;
    const struct conf_device *dev;
    const struct sm_opts *o;
    int hold; /* keep what neither the daemon nor its spool takes (not for -bs) */
};

/* Submit mode and the daemon could not be reached: with a spool this process may
 * write, the message is committed there for the daemon (which is told to look
 * now if it runs), and that is a success. Otherwise 75, the message kept in the
 * caller's held directory (sm_held) when x->hold. text (may be NULL): the -bs
 * reply text. */
static int sm_fallback(const struct sm_ctx *x, struct sm_msg *m, const char *sender,
                       const char *added, size_t addedlen, const char *why, char *text, size_t cap)
{
    const struct conf *c = x->c;
    struct sm_queue_in in;
    char err[1200] = "", dir[4096];
    uint64_t qid = 0;
    int rc = EX_TEMPFAIL;

    if (!conf_spool_used(c)) {
        snprintf(err, sizeof(err), "no spool to queue it in");
    } else if (sm_queue_possible(c, err, sizeof(err)) == 0) {
        memset(&in, 0, sizeof(in));
        in.c = c;
        in.m = m;
        in.submit = c->submit;
        in.sender = sender;
        in.added = added;
        in.addedlen = addedlen;
        if ((rc = sm_queue_commit(&in, &qid, err, sizeof(err))) == 0) {
            if (x->o->verbose) {
                sm_say("committed to %s/q as %016llx", c->spool_dir, (unsigned long long)qid);
            }
            sm_say("%s; message queued as %016llx in %s: %s", why, (unsigned long long)qid,
                   c->spool_dir,
                   cli_queue_kick(c->spool_dir) ? "the running daemon delivers it now"
                                                : "the daemon delivers it when it starts");
            if (text) {
                snprintf(text, cap, "Ok: queued as %016llx", (unsigned long long)qid);
            }
            return 0;
        }
    }
    if (rc == EX_TEMPFAIL && x->hold) { /* not for the daemon's refusals */
        char kerr[1200] = "";
        if (sm_held_dir(dir, sizeof(dir)) != 0) {
            snprintf(kerr, sizeof(kerr),
                     "no home directory for held messages (set "
                     "RELAY25_HELD_DIR)");
        } else if (sm_held_keep(dir, m, sender, added, addedlen, &qid, kerr, sizeof(kerr)) == 0) {
            sm_say("%s; message not sent; kept as %016llx in %s: `relay25 sendmail -q` or "
                   "`relay25 queue --held flush` sends it once the daemon runs",
                   why, (unsigned long long)qid, dir);
            if (conf_spool_used(c)) {
                sm_say("not queued: %s", err);
            }
            return EX_TEMPFAIL;
        }
        sm_say("%s; message not sent", why);
        if (conf_spool_used(c)) {
            sm_say("not queued: %s", err);
        }
        sm_say("not kept: %s", kerr);
        return EX_TEMPFAIL;
    }
    sm_say("%s; message not sent", why);
    if (conf_spool_used(c)) {
        sm_say("not queued: %s", err);
    }
    return rc;
}

/* One prepared message (recipients, header section, body): the headers we add,
 * the transaction, and the fallback when the daemon cannot be reached. text
 * (may be NULL): what -bs tells its client. */
static int sm_deliver(const struct sm_ctx *x, struct sm_msg *m, const char *sender,
                      const char *from_hdr, char *text, size_t cap)
{
    char why[1200] = "";
    size_t addedlen = 0;
    char *added = sm_msg_added_headers(m, from_hdr, x->o->fullname, &addedlen);
    int rc;

    if (!added) {
        if (text) {
            snprintf(text, cap, "out of memory");
        }
        return EX_OSERR;
    }
    struct sm_send_in in = {.c = x->c,
                            .dev = x->dev,
                            .m = m,
                            .sender = sender,
                            .added = added,
                            .addedlen = addedlen,
                            .verbose = x->o->verbose,
                            .why = x->c->submit ? why : NULL,
                            .whycap = sizeof(why)};
    rc = sm_send_run(&in);
    if (rc == SM_UNREACHABLE) {
        rc = sm_fallback(x, m, sender, added, addedlen, why, text, cap);
    } else if (text) {
        snprintf(text, cap, "%s", rc == 0 ? "Ok: sent" : sm_last_said());
    }
    if (rc != 0 && text) {
        snprintf(text, cap, "%s", sm_last_said());
    }
    free(added);
    return rc;
}

/* ---- the command --------------------------------------------------------------------- */

/* [sendmail] origin, else the host name: the domain of unqualified addresses. */
static const char *sm_origin(const struct conf *c)
{
    return c->origin ? c->origin : c->hostname;
}

/* Envelope sender: -f, else $RELAY25_FROM, else the device's login when it is an
 * address, else login@origin. "" is the null sender (-f '<>'); an unqualified
 * one ("root") gets @origin, as Postfix's myorigin. */
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
        snprintf(out, cap, "%s@%s", login && *login ? login : "nobody", sm_origin(c));
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
    if (n > 0 && !memchr(f, '@', n)) {
        int w = snprintf(out, cap, "%.*s@%s", (int)n, f, sm_origin(c));
        if (w < 0 || (size_t)w >= cap || (size_t)w > SM_ADDR_MAX) {
            sm_say("sender address too long");
            return EX_DATAERR;
        }
        return 0;
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
    if (!(c = conf_load(path, CONF_LOAD_STRICT, err, sizeof(err)))) {
        sm_say("%s", err);
        return EX_CONFIG;
    }
    rc = cli_queue_list(c->spool_dir, 0, 0);
    conf_free(c);
    return rc;
}

/* -bs: one message of the SMTP session (sm_bs). */
static int sm_bs_deliver(void *arg, struct sm_msg *m, const char *sender, char *text, size_t cap)
{
    const struct sm_ctx *x = arg;
    char from_hdr[SM_ADDR_MAX + 1];

    snprintf(from_hdr, sizeof(from_hdr), "%s", sender);
    if (!*sender) { /* null sender: From: still names someone */
        struct sm_opts none;
        memset(&none, 0, sizeof(none));
        sm_sender(&none, x->c, x->dev, from_hdr, sizeof(from_hdr));
    }
    return sm_deliver(x, m, sender, from_hdr, text, cap);
}

/* -q and `queue --held flush`: one held message as it was kept. */
static int sm_held_send(void *arg, struct sm_msg *m, const char *sender, char *why, size_t cap)
{
    const struct sm_ctx *x = arg;
    struct sm_send_in in = {
        .c = x->c, .dev = x->dev, .m = m, .sender = sender, .raw = 1, .verbose = x->o->verbose};
    int rc = sm_send_run(&in);

    if (rc != 0) {
        snprintf(why, cap, "%s", sm_last_said());
    }
    return rc;
}

/* Sends the caller's held messages (all, or qid); the configuration is loaded
 * only when there is something to send. */
static int sm_flush_held(const char *conf_path, const struct conf *given, uint64_t qid, int verbose)
{
    struct sm_opts o;
    struct sm_ctx x;
    struct conf *c = NULL;
    char dir[4096];
    size_t sent = 0, failed = 0;
    int rc;

    if (sm_held_dir(dir, sizeof(dir)) != 0 || (!qid && sm_held_count(dir) == 0)) {
        if (verbose) {
            sm_say("no held messages");
        }
        return qid ? 1 : 0;
    }
    memset(&o, 0, sizeof(o));
    o.verbose = verbose;
    memset(&x, 0, sizeof(x));
    x.o = &o;
    if (!given && !(c = sm_load_conf(conf_path))) {
        return EX_CONFIG;
    }
    x.c = given ? given : c;
    x.dev = sm_device(x.c);
    if (!x.c->submit && !x.dev) {
        sm_say("no [device default] and no [sendmail] submit: cannot send the held messages");
        conf_free(c);
        return EX_CONFIG;
    }
    rc = sm_held_flush(dir, qid, sm_held_send, &x, &sent, &failed);
    if (sent || failed || rc) {
        sm_say("held messages in %s: %zu sent, %zu refused for good (kept in failed/), %zu "
               "waiting",
               dir, sent, failed, sm_held_count(dir));
    }
    if (rc == 1) {
        sm_say("message %016llx is not held in %s", (unsigned long long)qid, dir);
    }
    conf_free(c);
    return rc;
}

int cli_sendmail_flush_held(const struct conf *c, uint64_t qid)
{
    log_set_level(LOG_ERR);
    signal(SIGPIPE, SIG_IGN);
    return sm_flush_held(NULL, c, qid, 0);
}

int cli_sendmail(int argc, char **argv, int mailq)
{
    struct sm_opts o;
    struct sm_msg m;
    struct sm_ctx x;
    struct conf *c = NULL;
    const struct conf_device *dev = NULL;
    char sender[SM_ADDR_MAX + 1], from_hdr[SM_ADDR_MAX + 1];
    int rc;

    memset(&o, 0, sizeof(o));
    sm_msg_init(&m, NULL);
    if (!mailq && (rc = sm_parse_opts(argc, argv, &o)) != 0) {
        return rc;
    }
    for (int i = 1; mailq && i < argc; i++) { /* mailq [-C FILE] */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: mailq [-C config]\n");
            return 0;
        }
        if (strcmp(argv[i], "-C") == 0 && i + 1 < argc) {
            o.conf_path = argv[++i];
        }
    }
    if (mailq || o.mode == SM_MODE_LIST) {
        return sm_list_queue(o.conf_path);
    }
    if (o.mode == SM_MODE_FLUSH) { /* a queue run: ours is the held directory */
        log_set_level(o.verbose ? LOG_INFO : LOG_ERR);
        signal(SIGPIPE, SIG_IGN);
        return sm_flush_held(o.conf_path, NULL, 0, o.verbose);
    }
    if (o.mode != SM_MODE_SMTP && !o.extract && o.argi >= argc) {
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
    memset(&x, 0, sizeof(x));
    x.c = c;
    x.dev = dev;
    x.o = &o;
    x.hold = o.mode != SM_MODE_SMTP; /* an SMTP client is told 451 and keeps it itself */
    if (o.mode == SM_MODE_SMTP) {
        struct sm_bs_in in = {.c = c, .origin = sm_origin(c), .deliver = sm_bs_deliver, .arg = &x};
        rc = sm_bs_run(&in);
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
    m.hostname = sm_origin(c);
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
    rc = sm_deliver(&x, &m, sender, from_hdr, NULL, 0);
done:
    if (rc != 0 && m.err[0]) {
        sm_say("%s", m.err);
    }
    sm_msg_free(&m);
    conf_free(c);
    return rc;
}
