/* prx_cmd: parse inbound SMTP command lines (RFC 5321 §4.1.1), MAIL/RCPT paths
 * (RFC 5321 §4.1.2) and ESMTP parameters (RFC 5321 §4.1.2 esmtp-param). Pure and
 * allocation-free; results point into the caller's line. */
#include "proxy/prx_cmd.h"

#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    size_t len;
    enum prx_verb verb;
} prx_verbs[] = {
    {"HELO", 4, PRX_V_HELO}, {"EHLO", 4, PRX_V_EHLO}, {"MAIL", 4, PRX_V_MAIL},
    {"RCPT", 4, PRX_V_RCPT}, {"DATA", 4, PRX_V_DATA}, {"RSET", 4, PRX_V_RSET},
    {"NOOP", 4, PRX_V_NOOP}, {"QUIT", 4, PRX_V_QUIT}, {"VRFY", 4, PRX_V_VRFY},
    {"EXPN", 4, PRX_V_EXPN}, {"HELP", 4, PRX_V_HELP}, {"STARTTLS", 8, PRX_V_STARTTLS},
    {"AUTH", 4, PRX_V_AUTH}, {"BDAT", 4, PRX_V_BDAT},
};

/* SP per RFC 5321 §4.1.1; HT tolerated because legacy devices send it. */
static int prx_blank(char c)
{
    return c == ' ' || c == '\t';
}

static size_t prx_skip_blanks(const char *s, size_t i, size_t len)
{
    while (i < len && prx_blank(s[i]))
        i++;
    return i;
}

static size_t prx_trim_right(const char *s, size_t len)
{
    while (len > 0 && prx_blank(s[len - 1]))
        len--;
    return len;
}

int prx_cmd_parse(const char *line, size_t len, struct prx_cmd *out)
{
    out->verb = PRX_V_UNKNOWN;
    out->arg = "";
    out->arglen = 0;

    for (size_t k = 0; k < sizeof(prx_verbs) / sizeof(prx_verbs[0]); k++) {
        size_t vl = prx_verbs[k].len;
        size_t i;

        /* The verb ends at a blank or the end of the line ("MAILFROM:" is unknown). */
        if (len < vl || (len > vl && !prx_blank(line[vl])) ||
            strncasecmp(line, prx_verbs[k].name, vl) != 0)
            continue;
        out->verb = prx_verbs[k].verb;
        i = prx_skip_blanks(line, vl, len);
        if (i < len) {
            out->arg = line + i;
            out->arglen = prx_trim_right(line + i, len - i);
        }
        break;
    }
    return 0;
}

/* Length of the bracketed path starting at s[0] == '<' up to and including the
 * matching '>', or 0 if it is malformed: '<' or blanks outside a quoted string,
 * an unterminated quote, or no '>'. RFC 5321 §4.1.2 Quoted-string permits blanks. */
static size_t prx_path_end(const char *s, size_t len)
{
    int quoted = 0;

    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
        if (quoted) {
            if (c == '\\') {
                if (++i == len || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                    return 0;
            } else if (c == '"') {
                quoted = 0;
            }
            continue;
        }
        if (c == '"')
            quoted = 1;
        else if (c == '>')
            return i + 1;
        else if (c == '<' || c == ' ')
            return 0;
    }
    return 0;
}

/* Unbracketed address: up to the first blank; no brackets, no controls, quotes
 * must balance (blanks inside them belong to the address). Returns its length
 * and sets *bad on a syntax error. */
static size_t prx_bare_end(const char *s, size_t len, int *bad)
{
    int quoted = 0;
    size_t i;

    *bad = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!quoted && prx_blank((char)c))
            break;
        if (c < 0x20 || c == 0x7f || (!quoted && (c == '<' || c == '>'))) {
            *bad = 1;
            return i;
        }
        if (c == '\\' && quoted) {
            if (++i == len || (unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
                *bad = 1;
                return i;
            }
        } else if (c == '"') {
            quoted = !quoted;
        }
    }
    if (quoted)
        *bad = 1;
    return i;
}

/* Skips an RFC 5321 §4.1.2 A-d-l source route ("@a,@b:") at the start of a path.
 * Returns the offset of the mailbox, or (size_t)-1 if the route is malformed. */
static size_t prx_skip_route(const char *s, size_t len)
{
    size_t i = 0;

    if (len == 0 || s[0] != '@')
        return 0;
    for (;;) {
        size_t start;

        if (i == len || s[i] != '@')
            return (size_t)-1;
        start = ++i;
        /* A domain, possibly an address literal "[...]" holding colons. */
        while (i < len && s[i] != ',' && s[i] != ':') {
            if (s[i] == '[') {
                while (i < len && s[i] != ']')
                    i++;
                if (i == len)
                    return (size_t)-1;
            } else if (s[i] == '@' || s[i] == '"') {
                return (size_t)-1;
            }
            i++;
        }
        if (i == start || i == len)
            return (size_t)-1;
        if (s[i++] == ':')
            return i;
    }
}

int prx_cmd_path(const char *arg, size_t arglen, const char *keyword, char *addr, size_t addrsz,
                 const char **params, size_t *paramslen)
{
    size_t kl = strlen(keyword);
    size_t i, alen, pathend;
    const char *a;

    if (addrsz > 0)
        addr[0] = '\0';
    *params = "";
    *paramslen = 0;
    arglen = prx_trim_right(arg, arglen);

    /* RFC 5321 §4.1.1.2: "FROM:" / "TO:", keyword case-insensitive. */
    if (arglen <= kl || strncasecmp(arg, keyword, kl) != 0 || arg[kl] != ':')
        return PRX_PATH_SYNTAX;
    i = prx_skip_blanks(arg, kl + 1, arglen);
    if (i == arglen)
        return PRX_PATH_SYNTAX;

    if (arg[i] == '<') {
        size_t inner, route;

        pathend = prx_path_end(arg + i, arglen - i);
        if (pathend == 0)
            return PRX_PATH_SYNTAX;
        inner = pathend - 2;
        route = prx_skip_route(arg + i + 1, inner);
        /* A route must be followed by a mailbox ("<@a:>" is not a path). */
        if (route == (size_t)-1 || (route > 0 && route == inner))
            return PRX_PATH_SYNTAX;
        a = arg + i + 1 + route;
        alen = inner - route;
        pathend += i;
    } else {
        int bad;

        alen = prx_bare_end(arg + i, arglen - i, &bad);
        if (bad)
            return PRX_PATH_SYNTAX;
        a = arg + i;
        pathend = i + alen;
    }

    /* The path is followed by the end or by blanks then parameters ("<a>x" is bad). */
    if (pathend < arglen && !prx_blank(arg[pathend]))
        return PRX_PATH_SYNTAX;
    if (alen > PRX_PATH_MAX - 1 || addrsz == 0 || alen > addrsz - 1)
        return PRX_PATH_TOO_LONG;
    memcpy(addr, a, alen);
    addr[alen] = '\0';

    i = prx_skip_blanks(arg, pathend, arglen);
    if (i < arglen) {
        *params = arg + i;
        *paramslen = arglen - i;
    }
    return PRX_PATH_OK;
}

int prx_cmd_param(const char *params, size_t len, const char *name, const char **val,
                  size_t *vallen)
{
    size_t nl = strlen(name);
    size_t i = 0;

    while (i < len) {
        size_t start, end, keyend;

        i = prx_skip_blanks(params, i, len);
        if (i == len)
            break;
        start = i;
        while (i < len && !prx_blank(params[i]))
            i++;
        end = i;
        keyend = start;
        while (keyend < end && params[keyend] != '=')
            keyend++;
        /* RFC 5321 §4.1.2: esmtp-keyword, case-insensitive. */
        if (keyend - start != nl || strncasecmp(params + start, name, nl) != 0)
            continue;
        if (keyend == end) {
            *val = "";
            *vallen = 0;
        } else {
            *val = params + keyend + 1;
            *vallen = end - keyend - 1;
        }
        return 1;
    }
    return 0;
}
