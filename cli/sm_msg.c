/* sm_msg: the message `relay25 sendmail` submits, prepared from standard input:
 * line ends made CRLF, the header section kept in memory (for -t and Bcc removal)
 * and the body in an unlinked temporary file, the recipients parsed from
 * arguments and To:/Cc:/Bcc: (RFC 5322 §3.4), and From:/Date:/Message-ID: added
 * when missing (RFC 5322 §3.6). No SMTP here. */
#include "cli/sm_msg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/hdr.h"
#include "common/log.h"

#define SMM_HEADER_MAX ((size_t)256 * 1024) /* header section kept in memory for -t and Bcc */
#define SMM_CHUNK ((size_t)64 * 1024)       /* stdin reads and body writes to the temp file */
#define SMM_NAME_MAX 200                    /* -F display name, bytes kept */

/* stdin -> header buffer + body file, normalising line ends to CRLF. */
struct smm_reader {
    struct sm_msg *m;
    int in_header;   /* still inside the header section */
    int first;       /* no line completed yet */
    int sol;         /* at the start of an input line */
    int cr;          /* a CR was read and its line end not yet written */
    int dot;         /* a "." at the start of a line is held back (not -i) */
    int ignore_dots; /* -i: a lone "." line is content */
    int smtp;        /* SMTP DATA (-bs): a leading dot of a longer line is removed */
    int done;        /* the lone "." line ended the input */
    int done_cr;     /* ... by its CR: a LF after it belongs to that line */
    size_t lstart;   /* start of the current line in m->hdr */
    char *wbuf;      /* body bytes waiting for write(2) */
    size_t wlen;
    int err; /* sysexits code, 0 while fine */
};

static void smm_fail(struct sm_msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first error, for the caller to print. */
static void smm_fail(struct sm_msg *m, const char *fmt, ...)
{
    va_list ap;

    if (m->err[0]) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof(m->err), fmt, ap);
    va_end(ap);
}

void sm_msg_init(struct sm_msg *m, const char *hostname)
{
    memset(m, 0, sizeof(*m));
    m->hostname = hostname;
    m->fd = -1;
}

void sm_msg_free(struct sm_msg *m)
{
    for (size_t i = 0; i < m->nrcpt; i++) {
        free(m->rcpt[i]);
    }
    free(m->rcpt);
    free(m->hdr);
    if (m->fd >= 0) {
        close(m->fd);
    }
    m->rcpt = NULL;
    m->hdr = NULL;
    m->nrcpt = 0;
    m->fd = -1;
}

/* ---- addresses ----------------------------------------------------------------------- */

static int smm_add_rcpt(struct sm_msg *m, const char *a, size_t n);

int sm_msg_add_rcpt(struct sm_msg *m, const char *a, size_t n)
{
    return smm_add_rcpt(m, a, n);
}

/* Vets one address and adds it (deduplicated) to the recipients; a bare local
 * part is qualified with the host name, as sendmail does. 0 or EX_DATAERR. */
static int smm_add_rcpt(struct sm_msg *m, const char *a, size_t n)
{
    char buf[SM_ADDR_MAX + 1];
    size_t len;

    if (n > SM_ADDR_MAX) {
        smm_fail(m, "address too long (more than %d characters): %.60s...", SM_ADDR_MAX, a);
        return EX_DATAERR;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)a[i];
        if (ch < 0x21 || ch == 0x7f || ch == '<' || ch == '>') {
            if (ch == ' ' && memchr(a, '"', n)) {
                continue; /* "john smith"@example.com */
            }
            smm_fail(m, "bad recipient address '%.*s'", (int)n, a);
            return EX_DATAERR;
        }
    }
    if (memchr(a, '@', n)) {
        memcpy(buf, a, n);
        len = n;
    } else {
        int w = snprintf(buf, sizeof(buf), "%.*s@%s", (int)n, a, m->hostname);
        if (w < 0 || (size_t)w >= sizeof(buf)) {
            smm_fail(m, "address too long: %.*s@%s", (int)n, a, m->hostname);
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

struct smm_addr {
    char text[SM_ADDR_MAX + 1]; /* bare addr-spec, or the display name before '<' */
    size_t tlen;
    int tlong;     /* text overflowed (fine for a display name) */
    int ws_inside; /* blanks between words of the text */
    int ws;        /* a blank is pending */
    char ang[SM_ADDR_MAX + 1];
    size_t alen;
    int have_ang;
};

static void smm_addr_raw(struct smm_addr *a, char c)
{
    if (a->tlen < SM_ADDR_MAX) {
        a->text[a->tlen++] = c;
    } else {
        a->tlong = 1;
    }
}

static void smm_addr_put(struct smm_addr *a, char c)
{
    if (a->ws) {
        a->ws = 0;
        a->ws_inside = 1;
    }
    smm_addr_raw(a, c);
}

/* One mailbox of a list is complete (at ',', ';' or the end). */
static int smm_addr_finish(struct sm_msg *m, struct smm_addr *a, const char *what)
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
            smm_fail(m, "%s: address too long", what);
            return EX_DATAERR;
        }
        if (a->ws_inside) {
            smm_fail(m, "%s: '%.*s' is not an address (write Name <address>)", what, (int)n, s);
            return EX_DATAERR;
        }
    }
    if (n > 0) { /* "<>" and "undisclosed-recipients:;" name nobody */
        rc = smm_add_rcpt(m, s, n);
    }
    memset(a, 0, sizeof(*a));
    return rc;
}

/* Adds every address of an RFC 5322 §3.4 address-list: display names, quoted
 * strings, comments, groups and route addresses; folding blanks are blanks.
 * what names the source for messages ("To: header"). 0 or a sysexits code. */
int sm_msg_addrlist(struct sm_msg *m, const char *s, size_t n, const char *what)
{
    struct smm_addr a;
    int rc;

    memset(&a, 0, sizeof(a));
    for (size_t i = 0; i <= n; i++) {
        char c = ',';

        if (i < n) {
            c = s[i];
        }

        switch (c) {
        case '"':
            smm_addr_put(&a, c);
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    smm_addr_raw(&a, s[i++]);
                }
                if (s[i] != '\r' && s[i] != '\n') {
                    smm_addr_raw(&a, s[i]);
                }
            }
            if (i >= n) {
                smm_fail(m, "%s: unterminated quoted string", what);
                return EX_DATAERR;
            }
            smm_addr_put(&a, c);
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
                smm_fail(m, "%s: unterminated comment", what);
                return EX_DATAERR;
            }
            i--;
            a.ws = a.tlen > 0;
            break;
        }
        case '<':
            if (a.have_ang) {
                smm_fail(m, "%s: two <addresses> in one mailbox", what);
                return EX_DATAERR;
            }
            for (i++; i < n && s[i] != '>'; i++) {
                if (s[i] == '\r' || s[i] == '\n') {
                    continue;
                }
                if (a.alen >= SM_ADDR_MAX) {
                    smm_fail(m, "%s: address too long", what);
                    return EX_DATAERR;
                }
                a.ang[a.alen++] = s[i];
            }
            if (i >= n) {
                smm_fail(m, "%s: '<' without '>'", what);
                return EX_DATAERR;
            }
            a.have_ang = 1;
            break;
        case '>':
            smm_fail(m, "%s: '>' without '<'", what);
            return EX_DATAERR;
        case ':':
            if (!a.have_ang) { /* group: "friends: a@x, b@y;" the name is not an address */
                memset(&a, 0, sizeof(a));
            }
            break;
        case ',':
        case ';':
            if ((rc = smm_addr_finish(m, &a, what)) != 0) {
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
            smm_addr_put(&a, c);
            break;
        }
    }
    return 0;
}

/* ---- reading the message ------------------------------------------------------------- */

static int smm_write_all(struct sm_msg *m, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(m->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            smm_fail(m, "cannot write the temporary file: %s", strerror(e));
            return e == ENOSPC || e == EDQUOT ? EX_TEMPFAIL : EX_IOERR;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void smm_body_put(struct smm_reader *r, const char *p, size_t n)
{
    if (r->err) {
        return;
    }
    if (r->wlen + n > SMM_CHUNK) {
        r->err = smm_write_all(r->m, r->wbuf, r->wlen);
        r->wlen = 0;
        if (r->err) {
            return;
        }
    }
    if (n > SMM_CHUNK) {
        r->err = smm_write_all(r->m, p, n);
    } else {
        memcpy(r->wbuf + r->wlen, p, n);
        r->wlen += n;
    }
    r->m->bodylen += n;
}

static void smm_put(struct smm_reader *r, char c)
{
    struct sm_msg *m = r->m;

    if (!r->in_header) {
        smm_body_put(r, &c, 1);
        return;
    }
    if (m->hdrlen + 2 >= SMM_HEADER_MAX) {
        if (!r->err) {
            smm_fail(m, "the header section is larger than %zu KiB", SMM_HEADER_MAX / 1024);
            r->err = EX_DATAERR;
        }
        return;
    }
    m->hdr[m->hdrlen++] = c;
}

/* RFC 5322 §2.2 field name: printable ASCII but ':', then ':' (obsolete syntax
 * allows blanks before the colon). */
static int smm_is_field(const char *s, size_t n)
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
static void smm_eol(struct smm_reader *r)
{
    struct sm_msg *m = r->m;
    const char *line;
    size_t len;

    if (!r->in_header) {
        smm_body_put(r, "\r\n", 2);
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
    } else if (((line[0] == ' ' || line[0] == '\t') && r->lstart > 0) || smm_is_field(line, len)) {
        m->hdr[m->hdrlen++] = '\r'; /* a field, or the continuation of a folded one */
        m->hdr[m->hdrlen++] = '\n';
    } else {
        /* Not a header: the header section ended without its blank line, and
         * this line is the first of the body (sendmail inserts the blank). */
        r->in_header = 0;
        m->hdrlen = r->lstart;
        smm_body_put(r, line, len);
        smm_body_put(r, "\r\n", 2);
    }
    r->first = 0;
    r->lstart = m->hdrlen;
}

/* One input byte: line ends become CRLF (bare LF and bare CR alike), a lone "."
 * line ends the input unless -i. */
static void smm_feed(struct smm_reader *r, char c)
{
    if (r->dot) {
        r->dot = 0;
        if (c == '\n' || c == '\r') {
            r->done = 1;
            r->done_cr = c == '\r';
            return;
        }
        if (!r->smtp) { /* RFC 5321 §4.5.2: the client doubled it */
            smm_put(r, '.');
        }
    }
    if (r->cr) {
        r->cr = 0;
        smm_eol(r);
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
        smm_eol(r);
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
    smm_put(r, c);
}

static int smm_tmpfile(void)
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

void sm_in_init(struct sm_in *in, int fd)
{
    in->fd = fd;
    in->pos = in->len = 0;
    in->eof = 0;
    in->err = 0;
}

/* More input into in->buf once it is used up; 0 at the end (or an error, in
 * in->err), else the bytes available. */
static size_t sm_in_fill(struct sm_in *in)
{
    if (in->pos < in->len) {
        return in->len - in->pos;
    }
    in->pos = in->len = 0;
    while (!in->eof) {
        ssize_t n = read(in->fd, in->buf, sizeof(in->buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            in->eof = 1;
            in->err = n < 0 ? errno : 0;
            break;
        }
        in->len = (size_t)n;
        break;
    }
    return in->len;
}

int sm_in_line(struct sm_in *in, char *line, size_t cap, size_t *len)
{
    size_t n = 0;
    int toolong = 0;

    while (sm_in_fill(in) > 0) {
        char c = in->buf[in->pos++];
        if (c == '\n') {
            if (n > 0 && line[n - 1] == '\r') {
                n--;
            }
            line[n] = '\0';
            *len = n;
            return toolong ? -1 : 1;
        }
        if (n + 1 < cap) {
            line[n++] = c;
        } else {
            toolong = 1;
        }
    }
    line[n] = '\0';
    *len = n;
    return n > 0 ? (toolong ? -1 : 1) : 0; /* a last line without its end counts */
}

int sm_msg_read_in(struct sm_msg *m, struct sm_in *in, int ignore_dots, int smtp, int *ended)
{
    struct smm_reader r;
    int rc = 0;

    memset(&r, 0, sizeof(r));
    r.m = m;
    r.in_header = r.first = r.sol = 1;
    r.ignore_dots = ignore_dots;
    r.smtp = smtp;
    r.wbuf = malloc(SMM_CHUNK);
    m->hdr = malloc(SMM_HEADER_MAX);
    m->fd = smm_tmpfile();
    if (!r.wbuf || !m->hdr) {
        rc = EX_OSERR;
        goto done;
    }
    if (m->fd < 0) {
        smm_fail(m, "cannot create a temporary file: %s", strerror(errno));
        rc = EX_CANTCREAT;
        goto done;
    }
    /* SMTP: an error goes on reading to the end of the data, to stay in step */
    while (!r.done && (!r.err || smtp) && sm_in_fill(in) > 0) {
        while (in->pos < in->len && !r.done) {
            smm_feed(&r, in->buf[in->pos++]);
        }
    }
    if (in->err) {
        smm_fail(m, "cannot read the message from standard input: %s", strerror(in->err));
        rc = EX_IOERR;
        goto done;
    }
    if (r.done_cr && sm_in_fill(in) > 0 && in->buf[in->pos] == '\n') {
        in->pos++;
    }
    if (ended) {
        *ended = r.done;
    }
    if (!r.done) { /* end of input: finish the last line */
        if (r.dot) {
            smm_put(&r, '.');
            r.sol = 0;
        }
        if (r.cr || !r.sol) {
            smm_eol(&r);
        }
    }
    if (r.in_header && r.lstart != m->hdrlen) {
        m->hdrlen = r.lstart;
    }
    if (!r.err && r.wlen) {
        r.err = smm_write_all(m, r.wbuf, r.wlen);
    }
    rc = r.err;
done:
    free(r.wbuf);
    return rc;
}

/* stdin -> m. 0 or a sysexits code (the reason is printed). */
int sm_msg_read(struct sm_msg *m, int ignore_dots)
{
    struct sm_in *in = malloc(sizeof(*in));
    int rc;

    if (!in) {
        return EX_OSERR;
    }
    sm_in_init(in, 0);
    rc = sm_msg_read_in(m, in, ignore_dots, 0, NULL);
    free(in);
    return rc;
}

/* ---- header section ------------------------------------------------------------------ */

/* -t: recipients from To:, Cc: and Bcc:. */
int sm_msg_extract(struct sm_msg *m)
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
            rc = sm_msg_addrlist(m, m->hdr + f.value, f.end - f.value, what);
            if (rc) {
                return rc;
            }
        }
    }
    return 0;
}

/* Bcc: (and Resent-Bcc:) never leave: the other recipients must not see them. */
void sm_msg_remove_bcc(struct sm_msg *m)
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

static int smm_has_field(const struct sm_msg *m, const char *name)
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
static void smm_display_name(const char *name, char *out, size_t cap)
{
    char clean[SMM_NAME_MAX + 1];
    size_t n = 0;
    int special = 0, nonascii = 0;

    for (const char *p = name; *p && n < SMM_NAME_MAX; p++) {
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
        char b[4 * (SMM_NAME_MAX / 3 + 1) + 1];
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
char *sm_msg_added_headers(const struct sm_msg *m, const char *from_hdr, const char *fullname,
                           size_t *len)
{
    char from[SM_ADDR_MAX + 4 * SMM_NAME_MAX + 32], date[64], msgid[SM_ADDR_MAX + 64];
    char *out = malloc(sizeof(from) + sizeof(date) + sizeof(msgid) + 64);
    size_t o = 0;
    time_t now = time(NULL);
    struct tm tm;

    if (!out) {
        return NULL;
    }
    out[0] = '\0';
    if (!smm_has_field(m, "From")) {
        const char *addr = from_hdr;
        if (fullname && *fullname) {
            char dn[4 * SMM_NAME_MAX + 16];
            smm_display_name(fullname, dn, sizeof(dn));
            snprintf(from, sizeof(from), "From: %s <%s>\r\n", dn, addr);
        } else {
            snprintf(from, sizeof(from), "From: %s\r\n", addr);
        }
        memcpy(out + o, from, strlen(from));
        o += strlen(from);
    }
    if (!smm_has_field(m, "Date")) {
        localtime_r(&now, &tm);
        /* RFC 5322 §3.3; the C locale gives English day and month names */
        strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S %z\r\n", &tm);
        memcpy(out + o, date, strlen(date));
        o += strlen(date);
    }
    if (!smm_has_field(m, "Message-ID")) {
        snprintf(msgid, sizeof(msgid), "Message-ID: <%016llx.%llx@%s>\r\n",
                 (unsigned long long)log_new_id(), (unsigned long long)now, m->hostname);
        memcpy(out + o, msgid, strlen(msgid));
        o += strlen(msgid);
    }
    out[o] = '\0';
    *len = o;
    return out;
}
