/* fuzz_cmd: the inbound command-line parser (proxy/prx_cmd.h) on arbitrary
 * lines: verb and argument bounds, MAIL/RCPT paths with "FROM" and "TO" (RFC 5321
 * §4.1.2) into exact-size heap buffers, and ESMTP parameter lookup. A path that
 * parses must not carry control characters upstream (command injection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/prx_cmd.h"
#include "tests/fuzz/fuzz.h"

static const char *const verbs[] = {
    "",     "HELO", "EHLO", "MAIL", "RCPT",     "DATA", "RSET", "NOOP",
    "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH", "BDAT",
};

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* [p, p+n) lies inside [base, base+len). */
static int inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

static void check_params(const char *params, size_t plen)
{
    static const char *const names[] = {"SIZE", "BODY",  "SMTPUTF8", "AUTH",
                                        "RET",  "ENVID", "NOTIFY",   "ORCPT"};

    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        const char *val = NULL;
        size_t vallen = (size_t)-1;
        size_t nl = strlen(names[k]);

        if (!prx_cmd_param(params, plen, names[k], &val, &vallen))
            continue;
        FUZZ_CHECK(val != NULL && vallen != (size_t)-1);
        if (vallen == 0)
            continue;
        FUZZ_CHECK(inside(val, vallen, params, plen));
        /* The value follows "NAME=" and runs to a blank. */
        FUZZ_CHECK(val - params >= (ptrdiff_t)nl + 1 && val[-1] == '=');
        FUZZ_CHECK(strncasecmp(val - nl - 1, names[k], nl) == 0);
        FUZZ_CHECK(memchr(val, ' ', vallen) == NULL && memchr(val, '\t', vallen) == NULL);
    }
}

static void check_path(const char *arg, size_t arglen, const char *keyword, size_t small)
{
    char *addr = malloc(PRX_PATH_MAX); /* exact size: overruns hit ASan */
    char *tiny = malloc(small ? small : 1);
    const char *params = NULL, *p2 = NULL;
    size_t plen = (size_t)-1, p2len = (size_t)-1;
    int rc, rc2;

    FUZZ_CHECK(addr != NULL && tiny != NULL);
    rc = prx_cmd_path(arg, arglen, keyword, addr, PRX_PATH_MAX, &params, &plen);
    FUZZ_CHECK(rc == PRX_PATH_OK || rc == PRX_PATH_SYNTAX || rc == PRX_PATH_TOO_LONG);
    FUZZ_CHECK(params != NULL && plen != (size_t)-1);
    FUZZ_CHECK(memchr(addr, '\0', PRX_PATH_MAX) != NULL);
    if (rc != PRX_PATH_OK) {
        FUZZ_CHECK(plen == 0);
    } else {
        size_t alen = strlen(addr);
        size_t kl = strlen(keyword);

        FUZZ_CHECK(arglen > kl && strncasecmp(arg, keyword, kl) == 0 && arg[kl] == ':');
        /* Goes into "MAIL FROM:<addr>" upstream: no CR, LF, NUL or other controls. */
        for (size_t i = 0; i < alen; i++)
            FUZZ_CHECK((unsigned char)addr[i] >= 0x20 && addr[i] != 0x7f);
        FUZZ_CHECK(alen < PRX_PATH_MAX);
        if (alen > 0)
            FUZZ_CHECK(memmem(arg, arglen, addr, alen) != NULL);
        if (plen > 0) {
            FUZZ_CHECK(inside(params, plen, arg, arglen));
            FUZZ_CHECK(!is_blank(params[0]) && !is_blank(params[plen - 1]));
        }
        check_params(params, plen);
    }

    /* A small address buffer: same verdict, or TOO_LONG when the address does not fit. */
    rc2 = prx_cmd_path(arg, arglen, keyword, tiny, small, &p2, &p2len);
    if (small > 0)
        FUZZ_CHECK(memchr(tiny, '\0', small) != NULL);
    if (rc == PRX_PATH_OK) {
        size_t alen = strlen(addr);

        if (alen < small) {
            FUZZ_CHECK(rc2 == PRX_PATH_OK && strcmp(tiny, addr) == 0);
            FUZZ_CHECK(p2 == params && p2len == plen);
        } else {
            FUZZ_CHECK(rc2 == PRX_PATH_TOO_LONG);
        }
    } else {
        FUZZ_CHECK(rc2 == rc);
    }
    free(addr);
    free(tiny);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1); /* exact copy, not NUL-terminated */
    struct prx_cmd cmd;
    size_t small = size > 0 ? data[0] % 40 : 0;

    FUZZ_CHECK(line != NULL);
    if (size > 0)
        memcpy(line, data, size);

    FUZZ_CHECK(prx_cmd_parse(line, size, &cmd) == 0);
    FUZZ_CHECK(cmd.verb >= PRX_V_UNKNOWN && cmd.verb <= PRX_V_BDAT);
    if (cmd.verb == PRX_V_UNKNOWN) {
        FUZZ_CHECK(cmd.arglen == 0);
    } else {
        const char *v = verbs[cmd.verb];
        size_t vl = strlen(v);

        /* The verb ends at a blank or the end ("MAILFROM:" is unknown). */
        FUZZ_CHECK(size >= vl && strncasecmp(line, v, vl) == 0);
        FUZZ_CHECK(size == vl || is_blank(line[vl]));
        if (cmd.arglen > 0) {
            FUZZ_CHECK(inside(cmd.arg, cmd.arglen, line + vl, size - vl));
            FUZZ_CHECK(!is_blank(cmd.arg[0]) && !is_blank(cmd.arg[cmd.arglen - 1]));
        }
    }

    check_path(cmd.arg, cmd.arglen, "FROM", small);
    check_path(cmd.arg, cmd.arglen, "TO", small);
    /* The raw line too, so the fuzzer reaches the path parser without a verb. */
    check_path(line, size, "FROM", small);
    check_path(line, size, "TO", small);
    check_params(line, size);

    free(line);
    return 0;
}
