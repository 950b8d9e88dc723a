/* sendmail: the sendmail(8) interface (`relay25 sendmail`, or called as sendmail).
 * Owns one message: stdin -> unlinked temp file (only the header section in memory),
 * then one SMTP transaction on a private uv loop, to a relay25 daemon ([sendmail]
 * submit) or straight to the device's upstream. RFC 5321, RFC 5322; sysexits.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cli/cli.h"
#include "common/base64.h"
#include "common/hdr.h"
#include "common/log.h"
#include "common/reply.h"
#include "conf/conf.h"
#include "upstream/up_oauth.h"
#include "upstream/up_pool.h"
#include "upstream/up_send.h"
#include "upstream/up_session.h"

#define SM_NAME "relay25-sendmail"
#define SM_HEADER_MAX ((size_t)256 * 1024) /* header section kept in memory for -t and Bcc */
#define SM_ADDR_MAX 256                    /* RFC 5321 §4.5.3.1.3: a path is 256 octets */
#define SM_CHUNK ((size_t)64 * 1024)       /* stdin reads and body writes to the temp file */
#define SM_NAME_MAX 200                    /* -F display name, bytes kept */
#define SM_POOL_IDLE 1                     /* seconds; the one session is not given back */

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

struct sm_msg {
    const char *hostname; /* qualifies bare local parts */
    char *hdr;            /* header section: CRLF lines, no blank line at the end */
    size_t hdrlen;
    int fd; /* the body (CRLF lines, not yet dot-stuffed), unlinked */
    uint64_t bodylen;
    int eightbit;
    char **rcpt;
    size_t nrcpt, rcptcap;
};

/* stdin -> header buffer + body file, normalising line ends to CRLF. */
struct sm_reader {
    struct sm_msg *m;
    int in_header;   /* still inside the header section */
    int first;       /* no line completed yet */
    int sol;         /* at the start of an input line */
    int cr;          /* a CR was read and its line end not yet written */
    int dot;         /* a "." at the start of a line is held back (not -i) */
    int ignore_dots; /* -i: a lone "." line is content */
    int done;        /* the lone "." line ended the input */
    size_t lstart;   /* start of the current line in m->hdr */
    char *wbuf;      /* body bytes waiting for write(2) */
    size_t wlen;
    int err; /* sysexits code, 0 while fine */
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
    int rc;           /* exit status */
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

/* ---- addresses ----------------------------------------------------------------------- */

/* Vets one address and adds it (deduplicated) to the recipients; a bare local
 * part is qualified with the host name, as sendmail does. 0 or EX_DATAERR. */
static int sm_add_rcpt(struct sm_msg *m, const char *a, size_t n)
{
    char buf[SM_ADDR_MAX + 1];
    size_t len;

    if (n > SM_ADDR_MAX) {
        sm_say("address too long (more than %d characters): %.60s...", SM_ADDR_MAX, a);
        return EX_DATAERR;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch < 0x21 || ch == 0x7f || ch == '<' || ch == '>') {
            if (ch == ' ' && memchr(a, '"', n)) {
                continue; /* "john smith"@example.com */
            }
            sm_say("bad recipient address '%.*s'", (int)n, a);
            return EX_DATAERR;
        }
    }
    if (memchr(a, '@', n)) {
        memcpy(buf, a, n);
        len = n;
    } else {
        int w = snprintf(buf, sizeof(buf), "%.*s@%s", (int)n, a, m->hostname);
        if (w < 0 || (size_t)w >= sizeof(buf)) {
            sm_say("address too long: %.*s@%s", (int)n, a, m->hostname);
            return EX_DATAERR;
        }
        len = (size_t)w;
    }
    buf[len] = '\0';
    for (size_t i = 0; i < m->nrcpt; i++) {
        if (strcasecmp(m->rcpt[i], buf) == 0) {
            return 0;
        }
    }
    if (m->nrcpt == m->rcptcap) {
        size_t cap = m->rcptcap ? 2 * m->rcptcap : 16;
        char **v = realloc(m->rcpt, cap * sizeof(*v));
        if (!v) {
            return EX_OSERR;
        }
        m->rcpt = v;
        m->rcptcap = cap;
    }
    if (!(m->rcpt[m->nrcpt] = strdup(buf))) {
        return EX_OSERR;
    }
    m->nrcpt++;
    return 0;
}

struct sm_addr {
    char text[SM_ADDR_MAX + 1]; /* bare addr-spec, or the display name before '<' */
    size_t tlen;
    int tlong;     /* text overflowed (fine for a display name) */
    int ws_inside; /* blanks between words of the text */
    int ws;        /* a blank is pending */
    char ang[SM_ADDR_MAX + 1];
    size_t alen;
    int have_ang;
};

static void sm_addr_raw(struct sm_addr *a, char c)
{
    if (a->tlen < SM_ADDR_MAX) {
        a->text[a->tlen++] = c;
    } else {
        a->tlong = 1;
    }
}

static void sm_addr_put(struct sm_addr *a, char c)
{
    if (a->ws) {
        a->ws = 0;
        a->ws_inside = 1;
    }
    sm_addr_raw(a, c);
}

/* One mailbox of a list is complete (at ',', ';' or the end). */
static int sm_addr_finish(struct sm_msg *m, struct sm_addr *a, const char *what)
{
    const char *s;
    size_t n;
    int rc = 0;

    if (a->have_ang) {
        s = a->ang;
        n = a->alen;
        if (n > 0 && s[0] == '@') { /* RFC 5322 §4.4 obsolete route: "<@a,@b:user@c>" */
            const char *colon = memchr(s, ':', n);
            if (colon) {
                n -= (size_t)(colon + 1 - s);
                s = colon + 1;
            }
        }
        while (n > 0 && isspace((unsigned char)*s)) {
            s++;
            n--;
        }
        while (n > 0 && isspace((unsigned char)s[n - 1])) {
            n--;
        }
    } else {
        s = a->text;
        n = a->tlen;
        if (a->tlong) {
            sm_say("%s: address too long", what);
            return EX_DATAERR;
        }
        if (a->ws_inside) {
            sm_say("%s: '%.*s' is not an address (write Name <address>)", what, (int)n, s);
            return EX_DATAERR;
        }
    }
    if (n > 0) { /* "<>" and "undisclosed-recipients:;" name nobody */
        rc = sm_add_rcpt(m, s, n);
    }
    memset(a, 0, sizeof(*a));
    return rc;
}

/* Adds every address of an RFC 5322 §3.4 address-list: display names, quoted
 * strings, comments, groups and route addresses; folding blanks are blanks.
 * what names the source for messages ("To: header"). 0 or a sysexits code. */
static int sm_parse_addrlist(struct sm_msg *m, const char *s, size_t n, const char *what)
{
    struct sm_addr a;
    int rc;

    memset(&a, 0, sizeof(a));
    for (size_t i = 0; i <= n; i++) {
        char c = ',';

        if (i < n) {
            c = s[i];
        }

        switch (c) {
        case '"':
            sm_addr_put(&a, c);
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    sm_addr_raw(&a, s[i++]);
                }
                if (s[i] != '\r' && s[i] != '\n') {
                    sm_addr_raw(&a, s[i]);
                }
            }
            if (i >= n) {
                sm_say("%s: unterminated quoted string", what);
                return EX_DATAERR;
            }
            sm_addr_put(&a, c);
            break;
        case '(': {
            int depth = 1;
            for (i++; i < n && depth > 0; i++) {
                if (s[i] == '\\') {
                    i++;
                } else if (s[i] == '(') {
                    depth++;
                } else if (s[i] == ')') {
                    depth--;
                }
            }
            if (depth > 0) {
                sm_say("%s: unterminated comment", what);
                return EX_DATAERR;
            }
            i--;
            a.ws = a.tlen > 0;
            break;
        }
        case '<':
            if (a.have_ang) {
                sm_say("%s: two <addresses> in one mailbox", what);
                return EX_DATAERR;
            }
            for (i++; i < n && s[i] != '>'; i++) {
                if (s[i] == '\r' || s[i] == '\n') {
                    continue;
                }
                if (a.alen >= SM_ADDR_MAX) {
                    sm_say("%s: address too long", what);
                    return EX_DATAERR;
                }
                a.ang[a.alen++] = s[i];
            }
            if (i >= n) {
                sm_say("%s: '<' without '>'", what);
                return EX_DATAERR;
            }
            a.have_ang = 1;
            break;
        case '>':
            sm_say("%s: '>' without '<'", what);
            return EX_DATAERR;
        case ':':
            if (!a.have_ang) { /* group: "friends: a@x, b@y;" the name is not an address */
                memset(&a, 0, sizeof(a));
            }
            break;
        case ',':
        case ';':
            if ((rc = sm_addr_finish(m, &a, what)) != 0) {
                return rc;
            }
            break;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            a.ws = a.tlen > 0;
            break;
        default:
            sm_addr_put(&a, c);
            break;
        }
    }
    return 0;
}

/* ---- reading the message ------------------------------------------------------------- */

static int sm_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            sm_say("cannot write the temporary file: %s", strerror(errno));
            return errno == ENOSPC || errno == EDQUOT ? EX_TEMPFAIL : EX_IOERR;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void sm_body_put(struct sm_reader *r, const char *p, size_t n)
{
    if (r->err) {
        return;
    }
    if (r->wlen + n > SM_CHUNK) {
        r->err = sm_write_all(r->m->fd, r->wbuf, r->wlen);
        r->wlen = 0;
        if (r->err) {
            return;
        }
    }
    if (n > SM_CHUNK) {
        r->err = sm_write_all(r->m->fd, p, n);
    } else {
        memcpy(r->wbuf + r->wlen, p, n);
        r->wlen += n;
    }
    r->m->bodylen += n;
}

static void sm_put(struct sm_reader *r, char c)
{
    struct sm_msg *m = r->m;

    if (!r->in_header) {
        sm_body_put(r, &c, 1);
        return;
    }
    if (m->hdrlen + 2 >= SM_HEADER_MAX) {
        if (!r->err) {
            sm_say("the header section is larger than %zu KiB", SM_HEADER_MAX / 1024);
            r->err = EX_DATAERR;
        }
        return;
    }
    m->hdr[m->hdrlen++] = c;
}

/* RFC 5322 §2.2 field name: printable ASCII but ':', then ':' (obsolete syntax
 * allows blanks before the colon). */
static int sm_is_field(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && s[i] > 0x20 && s[i] < 0x7f && s[i] != ':') {
        i++;
    }
    if (i == 0) {
        return 0;
    }
    while (i < n && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    return i < n && s[i] == ':';
}

/* A line ended: in the header section, decide what the line was. */
static void sm_eol(struct sm_reader *r)
{
    struct sm_msg *m = r->m;
    const char *line;
    size_t len;

    if (!r->in_header) {
        sm_body_put(r, "\r\n", 2);
        return;
    }
    if (r->err) {
        return;
    }
    line = m->hdr + r->lstart;
    len = m->hdrlen - r->lstart;
    if (len == 0) { /* the blank line: the body follows */
        r->in_header = 0;
    } else if (r->first && len >= 5 && memcmp(line, "From ", 5) == 0) {
        m->hdrlen = r->lstart; /* mbox "From " line, dropped like Postfix's sendmail does */
    } else if (((line[0] == ' ' || line[0] == '\t') && r->lstart > 0) || sm_is_field(line, len)) {
        m->hdr[m->hdrlen++] = '\r'; /* a field, or the continuation of a folded one */
        m->hdr[m->hdrlen++] = '\n';
    } else {
        /* Not a header: the header section ended without its blank line, and
         * this line is the first of the body (sendmail inserts the blank). */
        r->in_header = 0;
        m->hdrlen = r->lstart;
        sm_body_put(r, line, len);
        sm_body_put(r, "\r\n", 2);
    }
    r->first = 0;
    r->lstart = m->hdrlen;
}

/* One input byte: line ends become CRLF (bare LF and bare CR alike), a lone "."
 * line ends the input unless -i. */
static void sm_feed(struct sm_reader *r, char c)
{
    if (r->dot) {
        r->dot = 0;
        if (c == '\n' || c == '\r') {
            r->done = 1;
            return;
        }
        sm_put(r, '.');
    }
    if (r->cr) {
        r->cr = 0;
        sm_eol(r);
        r->sol = 1;
        if (c == '\n') {
            return;
        }
    }
    if (c == '\r') {
        r->cr = 1;
        return;
    }
    if (c == '\n') {
        sm_eol(r);
        r->sol = 1;
        return;
    }
    if (r->sol && c == '.' && !r->ignore_dots) {
        r->dot = 1;
        r->sol = 0;
        return;
    }
    r->sol = 0;
    if ((unsigned char)c >= 0x80) {
        r->m->eightbit = 1;
    }
    sm_put(r, c);
}

static int sm_tmpfile(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    int fd;

    if (!dir || !*dir) {
        dir = "/tmp";
    }
    fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        return fd;
    }
    /* file systems without O_TMPFILE */
    if (snprintf(path, sizeof(path), "%s/relay25-sendmail.XXXXXX", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path);
    }
    return fd;
}

/* stdin -> m. 0 or a sysexits code (the reason is printed). */
static int sm_read_message(struct sm_msg *m, int ignore_dots)
{
    struct sm_reader r;
    char *in = malloc(SM_CHUNK);
    int rc = 0;

    memset(&r, 0, sizeof(r));
    r.m = m;
    r.in_header = r.first = r.sol = 1;
    r.ignore_dots = ignore_dots;
    r.wbuf = malloc(SM_CHUNK);
    m->hdr = malloc(SM_HEADER_MAX);
    m->fd = sm_tmpfile();
    if (!in || !r.wbuf || !m->hdr) {
        rc = EX_OSERR;
        goto done;
    }
    if (m->fd < 0) {
        sm_say("cannot create a temporary file: %s", strerror(errno));
        rc = EX_CANTCREAT;
        goto done;
    }
    while (!r.done && !r.err) {
        ssize_t n = read(0, in, SM_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            sm_say("cannot read the message from standard input: %s", strerror(errno));
            rc = EX_IOERR;
            goto done;
        }
        if (n == 0) {
            break;
        }
        for (ssize_t i = 0; i < n && !r.done; i++) {
            sm_feed(&r, in[i]);
        }
    }
    if (!r.done) { /* end of input: finish the last line */
        if (r.dot) {
            sm_put(&r, '.');
            r.sol = 0;
        }
        if (r.cr || !r.sol) {
            sm_eol(&r);
        }
    }
    if (r.in_header && r.lstart != m->hdrlen) {
        m->hdrlen = r.lstart;
    }
    if (!r.err && r.wlen) {
        r.err = sm_write_all(m->fd, r.wbuf, r.wlen);
    }
    rc = r.err;
done:
    free(in);
    free(r.wbuf);
    return rc;
}

/* ---- header section ------------------------------------------------------------------ */

/* -t: recipients from To:, Cc: and Bcc:. */
static int sm_extract(struct sm_msg *m)
{
    static const char *const names[] = {"To", "Cc", "Bcc"};
    struct hdr_field f;
    size_t off = 0;
    int rc;

    while (hdr_next(m->hdr, m->hdrlen, &off, &f)) {
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            char what[32];
            if (!hdr_is(m->hdr, &f, names[k])) {
                continue;
            }
            snprintf(what, sizeof(what), "%s: header", names[k]);
            rc = sm_parse_addrlist(m, m->hdr + f.value, f.end - f.value, what);
            if (rc) {
                return rc;
            }
        }
    }
    return 0;
}

/* Bcc: (and Resent-Bcc:) never leave: the other recipients must not see them. */
static void sm_remove_bcc(struct sm_msg *m)
{
    struct hdr_field f;
    size_t off = 0;

    while (hdr_next(m->hdr, m->hdrlen, &off, &f)) {
        if (hdr_is(m->hdr, &f, "Bcc") || hdr_is(m->hdr, &f, "Resent-Bcc")) {
            memmove(m->hdr + f.start, m->hdr + f.end, m->hdrlen - f.end);
            m->hdrlen -= f.end - f.start;
            off = f.start;
        }
    }
}

static int sm_has_field(const struct sm_msg *m, const char *name)
{
    struct hdr_field f;
    size_t off = 0;

    while (hdr_next(m->hdr, m->hdrlen, &off, &f)) {
        if (hdr_is(m->hdr, &f, name)) {
            return 1;
        }
    }
    return 0;
}

/* The -F name as an RFC 5322 display name: atoms as they are, a quoted string
 * when it holds specials, RFC 2047 base64 when it is not ASCII. */
static void sm_display_name(const char *name, char *out, size_t cap)
{
    char clean[SM_NAME_MAX + 1];
    size_t n = 0;
    int special = 0, nonascii = 0;

    for (const char *p = name; *p && n < SM_NAME_MAX; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            continue;
        }
        special |= strchr("()<>[]:;@\\,.\"", c) != NULL;
        nonascii |= c >= 0x80;
        clean[n++] = (char)c;
    }
    clean[n] = '\0';
    if (nonascii) {
        char b[4 * (SM_NAME_MAX / 3 + 1) + 1];
        b64_encode(clean, n, b, sizeof(b));
        snprintf(out, cap, "=?UTF-8?B?%s?=", b);
    } else if (special) {
        size_t o = 0;
        out[o++] = '"';
        for (size_t i = 0; i < n && o + 3 < cap; i++) {
            if (clean[i] == '"' || clean[i] == '\\') {
                out[o++] = '\\';
            }
            out[o++] = clean[i];
        }
        out[o++] = '"';
        out[o] = '\0';
    } else {
        snprintf(out, cap, "%s", clean);
    }
}

/* From:, Date: and Message-ID: when the message has none (RFC 5322 §3.6 wants
 * From and Date; sendmail adds them). Returns a malloc'd block of CRLF lines. */
static char *sm_added_headers(const struct sm_msg *m, const char *from_hdr, const char *fullname,
                              size_t *len)
{
    char from[SM_ADDR_MAX + 4 * SM_NAME_MAX + 32], date[64], msgid[SM_ADDR_MAX + 64];
    char *out = malloc(sizeof(from) + sizeof(date) + sizeof(msgid) + 64);
    size_t o = 0;
    time_t now = time(NULL);
    struct tm tm;

    if (!out) {
        return NULL;
    }
    out[0] = '\0';
    if (!sm_has_field(m, "From")) {
        const char *addr = from_hdr;
        if (fullname && *fullname) {
            char dn[4 * SM_NAME_MAX + 16];
            sm_display_name(fullname, dn, sizeof(dn));
            snprintf(from, sizeof(from), "From: %s <%s>\r\n", dn, addr);
        } else {
            snprintf(from, sizeof(from), "From: %s\r\n", addr);
        }
        memcpy(out + o, from, strlen(from));
        o += strlen(from);
    }
    if (!sm_has_field(m, "Date")) {
        localtime_r(&now, &tm);
        /* RFC 5322 §3.3; the C locale gives English day and month names */
        strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S %z\r\n", &tm);
        memcpy(out + o, date, strlen(date));
        o += strlen(date);
    }
    if (!sm_has_field(m, "Message-ID")) {
        snprintf(msgid, sizeof(msgid), "Message-ID: <%016llx.%llx@%s>\r\n",
                 (unsigned long long)log_new_id(), (unsigned long long)now, m->hostname);
        memcpy(out + o, msgid, strlen(msgid));
        o += strlen(msgid);
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* ---- SMTP ---------------------------------------------------------------------------- */

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
    (void)r;

    if (err != 0) {
        char buf[900];
        reply_upstream_reason(buf, sizeof(buf), err, s->where, detail);
        sm_say("%s %s; message not sent", s->label, buf);
        s->rc = EX_TEMPFAIL;
        sm_enter_state(s, SM_STATE_DONE);
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

static int sm_send(const struct conf *c, const struct conf_device *dev, const struct sm_opts *o,
                   struct sm_msg *m, const char *sender, const char *added, size_t addedlen)
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
        return cli_queue_list(RELAY25_DEFAULT_SPOOL_DIR, 0, 0);
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
    memset(&m, 0, sizeof(m));
    m.fd = -1;
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
        if ((rc = sm_parse_addrlist(&m, argv[i], strlen(argv[i]), "recipient argument")) != 0) {
            goto done;
        }
    }
    if ((rc = sm_read_message(&m, o.ignore_dots)) != 0) {
        goto done;
    }
    if (o.extract && (rc = sm_extract(&m)) != 0) {
        goto done;
    }
    if (m.nrcpt == 0) {
        sm_say("no recipients%s", o.extract ? " (no addresses in To:, Cc: or Bcc:)" : "");
        rc = EX_DATAERR;
        goto done;
    }
    sm_remove_bcc(&m);
    if (!(added = sm_added_headers(&m, from_hdr, o.fullname, &addedlen))) {
        rc = EX_OSERR;
        goto done;
    }
    rc = sm_send(c, dev, &o, &m, sender, added, addedlen);
done:
    free(added);
    for (size_t i = 0; i < m.nrcpt; i++) {
        free(m.rcpt[i]);
    }
    free(m.rcpt);
    free(m.hdr);
    if (m.fd >= 0) {
        close(m.fd);
    }
    conf_free(c);
    return rc;
}
