/* up_reply: incremental parser for upstream SMTP replies (RFC 5321 §4.2, §4.2.1
 * multi-line "ddd-"), bounded by UP_REPLY_LINE_MAX / UP_REPLY_MAX, plus the EHLO
 * capability scan (RFC 5321 §4.1.1.1, SIZE RFC 1870, AUTH RFC 4954 §3). */
#include "upstream/up_reply.h"

#include <string.h>
#include <strings.h>

/* p->overflow is the parser's sticky status: 0 while collecting a reply,
 * UP_REPLY_DONE once one is complete (the next feed starts afresh), or the
 * negative error that stopped it (upstream is broken; the caller closes). */

void up_reply_init(struct up_reply_parser *p)
{
    p->r.code = 0;
    p->r.nlines = 0;
    p->r.len = 0;
    p->r.text[0] = '\0';
    p->linelen = 0;
    p->overflow = 0;
}

/* One complete line (without CR/LF) in p->line: validate it, append it with CRLF.
 * Returns UP_REPLY_MORE, UP_REPLY_DONE or an error. */
static int up_reply_line(struct up_reply_parser *p, size_t len)
{
    const char *l = p->line;
    struct up_reply *r = &p->r;
    int code, final;

    if (len > UP_REPLY_LINE_MAX)
        return UP_REPLY_ERR_TOO_LONG;
    /* RFC 5321 §4.2: three digits, 2xx..5xx, then SP, "-" or the line end. */
    if (len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9')
        return UP_REPLY_ERR_SYNTAX;
    if (len > 3 && l[3] != ' ' && l[3] != '-')
        return UP_REPLY_ERR_SYNTAX;
    /* RFC 5321 §4.2 textstring has no CR or NUL: a line holding them could be
     * relayed as two replies, or cut short by a C string copy. */
    if (memchr(l, '\r', len) || memchr(l, '\0', len))
        return UP_REPLY_ERR_SYNTAX;
    code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    final = len == 3 || l[3] == ' ';
    /* RFC 5321 §4.2.1: every line of a multi-line reply carries the same code. */
    if (r->nlines > 0 && code != r->code)
        return UP_REPLY_ERR_SYNTAX;
    /* Keep room for CRLF and the NUL. */
    if (len + 2 >= UP_REPLY_MAX - r->len)
        return UP_REPLY_ERR_TOO_LONG;
    memcpy(r->text + r->len, l, len);
    r->len += len;
    r->text[r->len++] = '\r';
    r->text[r->len++] = '\n';
    r->text[r->len] = '\0';
    r->code = code;
    r->nlines++;
    return final ? UP_REPLY_DONE : UP_REPLY_MORE;
}

int up_reply_feed(struct up_reply_parser *p, const char *data, size_t len, size_t *consumed)
{
    size_t i = 0;
    int rc = UP_REPLY_MORE;

    *consumed = 0;
    if (p->overflow < 0)
        return p->overflow;
    if (p->overflow == UP_REPLY_DONE && len > 0)
        up_reply_init(p);

    while (i < len) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (data + i)) : len - i;

        /* Collect up to the LF; CR + UP_REPLY_LINE_MAX octets fit in line[]. */
        if (n > sizeof(p->line) - p->linelen) {
            rc = UP_REPLY_ERR_TOO_LONG;
            break;
        }
        memcpy(p->line + p->linelen, data + i, n);
        p->linelen += n;
        i += n;
        if (!nl)
            break;
        i++; /* the LF */
        n = p->linelen;
        /* CRLF or bare LF. */
        if (n > 0 && p->line[n - 1] == '\r')
            n--;
        p->linelen = 0;
        rc = up_reply_line(p, n);
        if (rc != UP_REPLY_MORE)
            break;
    }
    *consumed = i;
    if (rc != UP_REPLY_MORE)
        p->overflow = rc;
    return rc;
}

/* Copies the text of the line [s, s+len) (CRLF excluded) minus its "ddd" and
 * separator into out at *o, replacing control characters so that the result is
 * safe to log or to put in a reply of our own. */
static void up_reply_copy_text(const char *s, size_t len, char *out, size_t cap, size_t *o)
{
    for (size_t i = len > 4 ? 4 : len; i < len && *o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];

        out[*o] = s[i];
        if (c < 0x20 || c == 0x7f)
            out[*o] = ' ';
        (*o)++;
    }
}

static void up_reply_append(const char *s, char *out, size_t cap, size_t *o)
{
    for (; *s && *o + 1 < cap; s++)
        out[(*o)++] = *s;
}

/* Next line of r->text at *pos: sets *len (CRLF excluded), advances *pos. */
static int up_reply_next_line(const struct up_reply *r, size_t *pos, const char **s, size_t *len)
{
    const char *nl;

    if (*pos >= r->len)
        return 0;
    *s = r->text + *pos;
    nl = memchr(*s, '\n', r->len - *pos);
    if (!nl)
        nl = r->text + r->len;
    *len = (size_t)(nl - *s);
    if (*len > 0 && (*s)[*len - 1] == '\r')
        (*len)--;
    *pos = (size_t)(nl - r->text) + 1;
    return 1;
}

const char *up_reply_lastline(const struct up_reply *r, char *out, size_t cap)
{
    const char *s, *last = NULL;
    size_t pos = 0, len, lastlen = 0, o = 0;

    if (cap == 0)
        return out;
    while (up_reply_next_line(r, &pos, &s, &len)) {
        last = s;
        lastlen = len;
    }
    if (last)
        up_reply_copy_text(last, lastlen, out, cap, &o);
    out[o] = '\0';
    return out;
}

const char *up_reply_oneline(const struct up_reply *r, char *out, size_t cap)
{
    const char *s;
    size_t pos = 0, len, o = 0;
    int first = 1;

    if (cap == 0)
        return out;
    while (up_reply_next_line(r, &pos, &s, &len)) {
        if (!first)
            up_reply_append(" / ", out, cap, &o);
        up_reply_copy_text(s, len, out, cap, &o);
        first = 0;
    }
    out[o] = '\0';
    return out;
}

/* 1 when the word [s, s+len) equals kw, case-insensitively (RFC 5321 §2.4). */
static int up_word_is(const char *s, size_t len, const char *kw)
{
    return strlen(kw) == len && strncasecmp(s, kw, len) == 0;
}

static unsigned up_auth_mechs(const char *s, size_t len)
{
    static const struct {
        const char *name;
        unsigned bit;
    } mechs[] = {
        {"PLAIN", UP_AUTH_PLAIN},
        {"LOGIN", UP_AUTH_LOGIN},
        {"CRAM-MD5", UP_AUTH_CRAM_MD5},
        {"XOAUTH2", UP_AUTH_XOAUTH2},
        {"OAUTHBEARER", UP_AUTH_OAUTHBEARER},
    };
    unsigned bits = 0;
    size_t i = 0;

    while (i < len) {
        size_t start;

        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        start = i;
        while (i < len && s[i] != ' ' && s[i] != '\t')
            i++;
        for (size_t k = 0; k < sizeof(mechs) / sizeof(mechs[0]); k++)
            if (up_word_is(s + start, i - start, mechs[k].name))
                bits |= mechs[k].bit;
    }
    return bits;
}

/* RFC 1870 §3: SIZE [number]; 0 or absent means no fixed limit. Non-digits give
 * 0, an absurdly large value saturates. */
static unsigned long long up_size_value(const char *s, size_t len)
{
    unsigned long long v = 0;
    size_t i = 0;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == len)
        return 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');

        if (v > (~0ULL - d) / 10)
            return ~0ULL;
        v = v * 10 + d;
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i == len ? v : 0;
}

void up_reply_ehlo(const struct up_reply *r, struct up_ehlo *out)
{
    static const struct {
        const char *kw;
        unsigned bit;
    } exts[] = {
        {"STARTTLS", UP_EXT_STARTTLS}, {"PIPELINING", UP_EXT_PIPELINING},
        {"8BITMIME", UP_EXT_8BITMIME}, {"SMTPUTF8", UP_EXT_SMTPUTF8},
        {"DSN", UP_EXT_DSN},           {"ENHANCEDSTATUSCODES", UP_EXT_ENHANCEDSTATUSCODES},
    };
    const char *s;
    size_t pos = 0, len;

    out->ext = 0;
    out->auth = 0;
    out->size = 0;
    if (r->code != 250)
        return;
    /* RFC 5321 §4.1.1.1: the first line is the greeting, not a keyword. */
    if (!up_reply_next_line(r, &pos, &s, &len))
        return;
    while (up_reply_next_line(r, &pos, &s, &len)) {
        size_t kl;

        if (len <= 4)
            continue;
        s += 4;
        len -= 4;
        /* ehlo-keyword ends at a blank, or at "=" in the pre-RFC "AUTH=" form. */
        for (kl = 0; kl < len && s[kl] != ' ' && s[kl] != '\t' && s[kl] != '='; kl++)
            ;
        if (up_word_is(s, kl, "AUTH")) {
            out->ext |= UP_EXT_AUTH;
            out->auth |= up_auth_mechs(s + kl + (kl < len), len - kl - (kl < len));
            continue;
        }
        if (kl < len && s[kl] == '=')
            continue;
        if (up_word_is(s, kl, "SIZE")) {
            out->ext |= UP_EXT_SIZE;
            out->size = up_size_value(s + kl, len - kl);
            continue;
        }
        for (size_t k = 0; k < sizeof(exts) / sizeof(exts[0]); k++)
            if (up_word_is(s, kl, exts[k].kw))
                out->ext |= exts[k].bit;
    }
}
