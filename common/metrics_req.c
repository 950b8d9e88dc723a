/* metrics_req: the request head of a metrics scrape, decided without I/O: which
 * method (GET/HEAD), which path (/metrics or /), which HTTP version (1.x), and a
 * syntax check strict enough that nothing odd gets a 200 (RFC 9112 §2-§5). */
#include "common/metrics_req.h"

#include <string.h>

/* RFC 9110 §5.6.2 tchar */
static int req_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
        return 1;
    }
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* The line starting at p ends before a '\n' at or after p: returns the length of
 * its content (without CR LF) and sets *next past the '\n'; -1 if no '\n' yet. */
static long req_line(const char *d, size_t p, size_t n, size_t *next)
{
    size_t e = p;

    while (e < n && d[e] != '\n') {
        e++;
    }
    if (e == n) {
        return -1;
    }
    *next = e + 1;
    if (e > p && d[e - 1] == '\r') {
        e--;
    }
    return (long)(e - p);
}

static int req_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static int req_casestart(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);

    if (n < k) {
        return 0;
    }
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != lit[i]) {
            return 0;
        }
    }
    return 1;
}

/* request-line = method SP request-target SP HTTP-version (§3). Returns the code
 * the request earns so far (200/404/405, 400, 505); *head set for HEAD. */
static int req_request_line(const char *s, size_t n, int *head)
{
    size_t m = 0, t, te, pe;
    const char *path;
    size_t plen;

    while (m < n && req_tchar((unsigned char)s[m])) {
        m++;
    }
    if (m == 0 || m == n || s[m] != ' ') {
        return 400;
    }
    t = m + 1;
    te = t;
    /* request-target: visible ASCII only (no CTL, no SP, no octet >= 0x80) */
    while (te < n && s[te] > ' ' && s[te] < 0x7f) {
        te++;
    }
    if (te == t || te == n || s[te] != ' ') {
        return 400;
    }
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (§2.3) */
    if (n - te - 1 != 8 || memcmp(s + te + 1, "HTTP/", 5) != 0 || s[te + 6] < '0' ||
        s[te + 6] > '9' || s[te + 7] != '.' || s[te + 8] < '0' || s[te + 8] > '9') {
        return 400;
    }
    *head = req_is(s, m, "HEAD");
    if (s[te + 6] != '1') {
        return 505;
    }
    path = s + t;
    plen = te - t;
    if (path[0] != '/') {
        /* absolute-form (§3.2.2): a server must accept it; the path follows the authority */
        size_t skip;
        if (req_casestart(path, plen, "http://")) {
            skip = 7;
        } else if (req_casestart(path, plen, "https://")) {
            skip = 8;
        } else {
            return 400;
        }
        path += skip;
        plen -= skip;
        while (plen > 0 && path[0] != '/' && path[0] != '?') {
            path++;
            plen--;
        }
        if (plen == 0 || path[0] == '?') {
            path = "/";
            plen = 1;
        }
    }
    for (pe = 0; pe < plen && path[pe] != '?'; pe++) {
    }
    if (!req_is(path, pe, "/metrics") && !req_is(path, pe, "/")) {
        return 404;
    }
    if (!req_is(s, m, "GET") && !*head) {
        return 405;
    }
    return 200;
}

/* field-line = field-name ":" OWS field-value OWS (§5): a token right before the
 * colon (no whitespace, §5.1), no CTL but HTAB anywhere, no obs-fold (§5.2). */
static int req_field_line(const char *s, size_t n)
{
    size_t k = 0;

    while (k < n && req_tchar((unsigned char)s[k])) {
        k++;
    }
    if (k == 0 || k == n || s[k] != ':') {
        return 0;
    }
    for (size_t i = k + 1; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < ' ' && ch != '\t') || ch == 0x7f) {
            return 0;
        }
    }
    return 1;
}

int metrics_req_parse(const char *data, size_t len, struct metrics_req *out)
{
    size_t n = len < METRICS_REQ_MAX ? len : METRICS_REQ_MAX;
    size_t p = 0, next;
    long ll;
    int code, head = 0;

    /* §2.2: empty lines before the request line are ignored */
    while ((ll = req_line(data, p, n, &next)) == 0) {
        p = next;
    }
    if (ll < 0) {
        goto more;
    }
    code = req_request_line(data + p, (size_t)ll, &head);
    p = next;
    if (code == 400) {
        goto done;
    }
    while ((ll = req_line(data, p, n, &next)) > 0) {
        if (!req_field_line(data + p, (size_t)ll)) {
            code = 400;
            goto done;
        }
        p = next;
    }
    if (ll < 0) {
        goto more;
    }
done:
    out->code = code;
    out->head_only = head;
    return METRICS_REQ_DONE;
more:
    if (n < METRICS_REQ_MAX) {
        return METRICS_REQ_MORE;
    }
    out->code = 431;
    out->head_only = head;
    return METRICS_REQ_DONE;
}
