/* conf_value: pure parsers and validators for configuration values: numbers,
 * sizes, durations, rates, booleans, host:port, names, address patterns, https
 * URLs (RFC 3986 §3) and command lines. No parse state, no I/O. */
#include "conf/conf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_HTTPS_PORT 443
#define CONF_MAX_ARGS 64 /* words of oauth_token_command */

/* Decimal digits only, no sign or blanks, at most max. */
int conf__parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s) {
        return -1;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        /* the digit itself first: max - digit must not wrap when max < 9 */
        if ((uint64_t)(*s - '0') > max || v > (max - (uint64_t)(*s - '0')) / 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Durations: "90" or "90s", "15m", "12h", "3d" (lower case, no blanks), 1 to max seconds. */
int conf__parse_duration(const char *s, unsigned max, unsigned *out)
{
    static const struct {
        char suffix;
        unsigned seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    char digits[16];
    size_t n = strlen(s);
    unsigned mult = 1;
    uint64_t v;

    if (n > 0 && !isdigit((unsigned char)s[n - 1])) {
        mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (s[n - 1] == units[i].suffix) {
                mult = units[i].seconds;
            }
        }
        if (mult == 0) {
            return -1;
        }
        n--;
    }
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (conf__parse_uint(digits, max / mult, &v) != 0 || v == 0) {
        return -1;
    }
    *out = (unsigned)v * mult;
    return 0;
}

int conf__parse_bool(const char *s)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            return 1;
        }
        if (strcasecmp(s, no[i]) == 0) {
            return 0;
        }
    }
    return -1;
}

/* Host names, hostname, server_name: printable, no blanks (they go into SMTP lines). */
int conf__valid_name(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > CONF_NAME_MAX) {
        return 0;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= ' ' || ch == 0x7f) {
            return 0;
        }
    }
    return 1;
}

int conf__valid_section_name(const char *s, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-') {
            return 0;
        }
    }
    return 1;
}

int conf__valid_env_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s)) {
        return 0;
    }
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s) && *s != '_') {
            return 0;
        }
    }
    return 1;
}

/* Why item is not a valid policy pattern, or NULL. Only the forms conf_patterns_match
 * understands are accepted, so a typo cannot become a pattern that never matches.
 * Quoted local parts containing '@' or blanks (RFC 5321 §4.1.2) are not supported. */
const char *conf__bad_pattern(const char *item, int senders)
{
    const char *at = strchr(item, '@');
    const char *dom = at ? at + 1 : item;

    if (strcmp(item, "<>") == 0) {
        return senders ? NULL : "the null sender <> belongs in allowed_senders";
    }
    for (const char *s = item; *s; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch < ' ' || ch == 0x7f) {
            return "control character";
        }
        if (ch == '<' || ch == '>') {
            return "write a@b without angle brackets; <> alone is the null sender";
        }
    }
    if (at && strchr(at + 1, '@')) {
        return "more than one '@'";
    }
    if (!*dom) {
        return "no domain after '@'";
    }
    if (*dom == '.' || dom[strlen(dom) - 1] == '.' || strstr(dom, "..")) {
        return "bad domain";
    }
    return NULL;
}

/* No control characters: values end up in an HTTP request. */
int conf__valid_text(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < ' ' || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* "https://host[:port][/path][?query]" (RFC 3986 §3) into o->host, o->port and
 * o->path. Returns NULL, or why the URL is refused. */
const char *conf__parse_url(const char *url, struct conf_oauth *o)
{
    const char *a, *e, *h, *he, *port = NULL, *q;
    uint64_t v = CONF_HTTPS_PORT;
    size_t plen;

    if (strncasecmp(url, "https://", 8) != 0) {
        return strncasecmp(url, "http://", 7) == 0
                   ? "plain http would expose the secrets; use https://"
                   : "expected https://host/path";
    }
    if (!conf__valid_text(url) || strpbrk(url, " \t")) {
        return "blank or control character";
    }
    a = url + 8;
    e = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(e - a))) {
        return "no user@ before the host";
    }
    if (*a == '[') {
        struct in6_addr a6;
        char v6[INET6_ADDRSTRLEN];

        h = a + 1;
        he = memchr(h, ']', (size_t)(e - h));
        if (!he || (size_t)(he - h) >= sizeof(v6)) {
            return "bad IPv6 address";
        }
        memcpy(v6, h, (size_t)(he - h));
        v6[he - h] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1) {
            return "bad IPv6 address";
        }
        if (he + 1 < e) {
            if (he[1] != ':') {
                return "bad host";
            }
            port = he + 2;
        }
    } else {
        h = a;
        he = memchr(a, ':', (size_t)(e - a));
        if (he) {
            port = he + 1;
        } else {
            he = e;
        }
    }
    if (he == h || (size_t)(he - h) > CONF_NAME_MAX) {
        return "no host";
    }
    if (port) {
        char digits[8];
        size_t n = (size_t)(e - port);

        if (n == 0 || n >= sizeof(digits)) {
            return "bad port";
        }
        memcpy(digits, port, n);
        digits[n] = '\0';
        if (conf__parse_uint(digits, 65535, &v) != 0 || v == 0) {
            return "bad port";
        }
    }
    q = e + strcspn(e, "#"); /* the fragment is not sent (RFC 3986 §3.5) */
    plen = (size_t)(q - e);
    o->host = strndup(h, (size_t)(he - h));
    o->path = malloc(plen + 2);
    if (!o->host || !o->path) {
        return NULL; /* the caller sees the missing copy */
    }
    o->port = (uint16_t)v;
    snprintf(o->path, plen + 2, "%s%.*s", *e == '/' ? "" : "/", (int)plen, e);
    return NULL;
}

void conf__free_argv(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++) {
        free(argv[i]);
    }
    free(argv);
}

/* Words of a command line: blanks separate, '...' and "..." quote, a backslash
 * escapes the next character (not inside '...'). No shell: no variables, globs or
 * pipes. Returns NULL with *out set, or why the line is refused. */
const char *conf__split_words(const char *s, char ***out)
{
    char **argv = calloc(CONF_MAX_ARGS + 1, sizeof(*argv));
    size_t n = 0, cap = strlen(s) + 1;
    const char *why = NULL;

    *out = NULL;
    if (!argv) {
        return "out of memory";
    }
    while (!why) {
        char *w, quote = 0;
        size_t wl = 0;

        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (!*s) {
            break;
        }
        if (n == CONF_MAX_ARGS) {
            why = "too many words";
            break;
        }
        if (!(w = malloc(cap))) {
            why = "out of memory";
            break;
        }
        argv[n++] = w;
        for (; *s && (quote || (*s != ' ' && *s != '\t')); s++) {
            if (quote && *s == quote) {
                quote = 0;
            } else if (!quote && (*s == '\'' || *s == '"')) {
                quote = *s;
            } else if (*s == '\\' && quote != '\'') {
                if (!s[1]) {
                    why = "backslash at the end";
                    break;
                }
                w[wl++] = *++s;
            } else {
                w[wl++] = *s;
            }
        }
        w[wl] = '\0';
        if (quote && !why) {
            why = "unterminated quote";
        }
    }
    if (!why && n == 0) {
        why = "empty command";
    }
    if (!why && argv[0][0] != '/') {
        why = "give the program's absolute path";
    }
    if (why) {
        conf__free_argv(argv);
        return why;
    }
    *out = argv;
    return NULL;
}

int conf_parse_rate(const char *s, struct conf_rate *out)
{
    static const struct {
        const char *unit;
        unsigned seconds;
    } units[] = {{"second", 1}, {"minute", 60}, {"hour", 3600}, {"day", 86400}};
    const char *slash = strchr(s, '/');
    char digits[16];
    uint64_t v;
    size_t n;

    if (strcmp(s, "0") == 0 || strcmp(s, "unlimited") == 0) {
        out->count = 0;
        out->per_seconds = 0;
        return 0;
    }
    if (!slash) {
        return -1;
    }
    n = (size_t)(slash - s);
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    /* "0/minute" would read as "never"; a count of 0 is spelled "0" or "unlimited" */
    if (conf__parse_uint(digits, CONF_MAX_COUNT, &v) != 0 || v == 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(slash + 1, units[i].unit) == 0) {
            out->count = (unsigned)v;
            out->per_seconds = units[i].seconds;
            return 0;
        }
    }
    return -1;
}

int conf_parse_size(const char *s, uint64_t *out)
{
    char digits[24];
    size_t n = strlen(s);
    unsigned shift = 0;
    uint64_t v;

    if (n > 0) {
        switch (s[n - 1]) {
        case 'K':
        case 'k':
            shift = 10;
            break;
        case 'M':
        case 'm':
            shift = 20;
            break;
        case 'G':
        case 'g':
            shift = 30;
            break;
        default:
            break;
        }
    }
    if (shift) {
        n--;
    }
    if (n == 0 || n >= sizeof(digits)) {
        return -1;
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (conf__parse_uint(digits, UINT64_MAX >> shift, &v) != 0) {
        return -1;
    }
    *out = v << shift;
    return 0;
}

int conf_parse_hostport(const char *s, uint16_t defport, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    char addr[INET6_ADDRSTRLEN];
    const char *a = s, *e, *port = NULL;
    int v6;
    uint64_t pv = defport;

    if (*s == '[') {
        a = s + 1;
        e = strchr(a, ']');
        if (!e || (e[1] && e[1] != ':')) {
            return -1;
        }
        if (e[1] == ':') {
            port = e + 2;
        }
        v6 = 1;
    } else {
        const char *colon = strchr(s, ':');

        if (colon && strchr(colon + 1, ':')) {
            e = s + strlen(s); /* bare IPv6 address, default port */
            v6 = 1;
        } else {
            e = colon ? colon : s + strlen(s);
            port = colon ? colon + 1 : NULL;
            v6 = 0;
        }
    }
    if (e == a || (size_t)(e - a) >= sizeof(addr)) {
        return -1;
    }
    memcpy(addr, a, (size_t)(e - a));
    addr[e - a] = '\0';
    if (port && conf__parse_uint(port, 65535, &pv) != 0) {
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1) {
            return -1;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pv);
        *len = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1) {
            return -1;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pv);
        *len = sizeof(*sin);
    }
    return 0;
}

/* Levenshtein distance, capped at 9 (only small distances matter for "did you mean");
 * names longer than 63 characters count as far from everything. */
unsigned conf__distance(const char *a, const char *b)
{
    unsigned row[64];
    size_t la = strlen(a), lb = strlen(b);

    if (la > 63 || lb > 63) {
        return 9;
    }
    for (size_t j = 0; j <= lb; j++) {
        row[j] = (unsigned)j;
    }
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0];

        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            diag = up;
            row[j] = best;
        }
    }
    return row[lb] > 9 ? 9 : row[lb];
}
