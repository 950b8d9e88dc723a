/* fuzz_spool: the spool record parsers (spool/spool_rec.h) on arbitrary bytes,
 * read both as a .env and as a .done. Checks: no crash or overread; a parsed
 * envelope formats to text that parses to the same envelope and formats to the
 * same bytes again; each .done record lies inside its line; the verdicts of a
 * .done, written back with spool_done_format, parse to the same verdicts and
 * replies (cut at CR/LF as the writer cuts them), and its defer records,
 * written back with spool_defer_format, to the same deferrals; the formatters
 * never write past cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/spool_rec.h"
#include "tests/fuzz/fuzz.h"

#define MAX_RCPT 64

static void same_env(const struct spool_env *a, const struct spool_env *b)
{
    FUZZ_CHECK(a->created == b->created);
    FUZZ_CHECK(strcmp(a->device, b->device) == 0);
    FUZZ_CHECK(strcmp(a->user, b->user) == 0);
    FUZZ_CHECK(strcmp(a->route, b->route) == 0);
    FUZZ_CHECK(strcmp(a->client, b->client) == 0);
    FUZZ_CHECK(strcmp(a->helo, b->helo) == 0);
    FUZZ_CHECK(strcmp(a->body, b->body) == 0);
    FUZZ_CHECK(strcmp(a->from, b->from) == 0);
    FUZZ_CHECK(a->nrcpt == b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        FUZZ_CHECK(strcmp(a->rcpt[i], b->rcpt[i]) == 0);
    }
    FUZZ_CHECK(strcmp(a->ret, b->ret) == 0 && strcmp(a->envid, b->envid) == 0);
    FUZZ_CHECK(a->smtputf8 == b->smtputf8);
    for (size_t i = 0; i < a->nrcpt; i++) {
        const char *x = a->rdsn ? a->rdsn[i] : NULL, *y = b->rdsn ? b->rdsn[i] : NULL;
        FUZZ_CHECK((x == NULL) == (y == NULL) && (!x || strcmp(x, y) == 0));
    }
}

static void check_env(const char *text, size_t len)
{
    struct spool_env e1, e2;
    char err[256];
    char *t1, *t2;
    size_t l1, l2;

    if (spool_env_parse(text, len, &e1, err, sizeof(err)) != 0) {
        FUZZ_CHECK(e1.rcpt == NULL && e1.nrcpt == 0);
        FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        return;
    }
    FUZZ_CHECK(e1.nrcpt > 0 && e1.device[0]);
    t1 = spool_env_format(&e1, &l1);
    FUZZ_CHECK(t1 != NULL);
    FUZZ_CHECK(spool_env_parse(t1, l1, &e2, err, sizeof(err)) == 0);
    same_env(&e1, &e2);
    t2 = spool_env_format(&e2, &l2);
    FUZZ_CHECK(t2 != NULL && l1 == l2 && memcmp(t1, t2, l1) == 0);
    free(t1);
    free(t2);
    spool_env_free(&e1);
    spool_env_free(&e2);
}

static void free_replies(char **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i]);
        r[i] = NULL;
    }
}

static int has_defer(const struct spool_defer *d)
{
    return d->attempts || d->last || d->next_retry || d->reply;
}

/* The deferrals of a .done, written back as defer records, read the same. */
static void check_deferrals(const char *text, size_t len, const struct spool_env *env)
{
    struct spool_defer *d1 = calloc(MAX_RCPT, sizeof(*d1)), *d2 = calloc(MAX_RCPT, sizeof(*d2));
    char *out;
    size_t cap = 1, o = 0;

    FUZZ_CHECK(d1 != NULL && d2 != NULL);
    FUZZ_CHECK(spool_done_deferrals(text, len, env, d1) == 0);
    for (size_t i = 0; i < env->nrcpt; i++) {
        cap += SPOOL_ADDR_MAX + 80 + (d1[i].reply ? strlen(d1[i].reply) : 0);
    }
    out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    for (size_t i = 0; i < env->nrcpt; i++) {
        size_t n;
        char *tight;
        if (!has_defer(&d1[i])) {
            continue;
        }
        n = spool_defer_format(out + o, cap - o, env->rcpt[i], &d1[i]);
        FUZZ_CHECK(n > 0 && out[o + n - 1] == '\n');
        tight = malloc(n);
        FUZZ_CHECK(tight != NULL);
        FUZZ_CHECK(spool_defer_format(tight, n, env->rcpt[i], &d1[i]) == 0);
        free(tight);
        o += n;
    }
    FUZZ_CHECK(spool_done_deferrals(out, o, env, d2) == 0);
    for (size_t i = 0; i < env->nrcpt; i++) {
        FUZZ_CHECK(d1[i].attempts == d2[i].attempts && d1[i].last == d2[i].last &&
                   d1[i].next_retry == d2[i].next_retry);
        FUZZ_CHECK((d1[i].reply == NULL) == (d2[i].reply == NULL));
        if (d1[i].reply) {
            size_t cut = strcspn(d1[i].reply, "\r\n");
            FUZZ_CHECK(strlen(d2[i].reply) == cut && memcmp(d1[i].reply, d2[i].reply, cut) == 0);
        }
    }
    free(out);
    spool_defer_free(d1, MAX_RCPT);
    spool_defer_free(d2, MAX_RCPT);
}

static void check_done(const char *text, size_t len)
{
    static char rcpt[MAX_RCPT][SPOOL_ADDR_MAX];
    struct spool_env env;
    struct spool_done_rec r;
    unsigned char v1[MAX_RCPT] = {0}, v2[MAX_RCPT] = {0};
    char *r1[MAX_RCPT] = {0}, *r2[MAX_RCPT] = {0};
    const char *p = text, *end = text + len;
    char *out;
    size_t cap, o = 0;

    memset(&env, 0, sizeof(env));
    env.rcpt = rcpt;
    /* the records: inside their line, and their addresses become the recipients */
    while (spool_done_next(&p, end, &r)) {
        FUZZ_CHECK(r.verdict == SPOOL_OK || r.verdict == SPOOL_FAILED ||
                   r.verdict == SPOOL_DEFERRED);
        FUZZ_CHECK(r.verdict == SPOOL_DEFERRED ||
                   (r.attempts == 0 && r.last == 0 && r.next_retry == 0));
        FUZZ_CHECK(r.addr >= text && r.addr + r.addr_len <= end);
        FUZZ_CHECK(!memchr(r.addr, ' ', r.addr_len) && !memchr(r.addr, '\n', r.addr_len));
        FUZZ_CHECK(r.verdict != SPOOL_OK || r.reply == NULL);
        if (r.reply) {
            FUZZ_CHECK(r.reply >= text && r.reply + r.reply_len < end);
            FUZZ_CHECK(!memchr(r.reply, '\n', r.reply_len) && r.reply[r.reply_len] == '\n');
        }
        FUZZ_CHECK(p > r.addr && p <= end && p[-1] == '\n');
        if (env.nrcpt < MAX_RCPT && r.addr_len < SPOOL_ADDR_MAX &&
            !memchr(r.addr, '\0', r.addr_len)) {
            memcpy(rcpt[env.nrcpt], r.addr, r.addr_len);
            rcpt[env.nrcpt++][r.addr_len] = '\0';
        }
    }
    FUZZ_CHECK(p == end);

    FUZZ_CHECK(spool_done_apply(text, len, &env, v1, r1) == 0);
    cap = 1;
    for (size_t i = 0; i < env.nrcpt; i++) {
        cap += SPOOL_ADDR_MAX + 16 + (r1[i] ? strlen(r1[i]) : 0);
    }
    out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    for (size_t i = 0; i < env.nrcpt; i++) {
        size_t n;
        FUZZ_CHECK(v1[i] == SPOOL_PENDING || v1[i] == SPOOL_OK || v1[i] == SPOOL_FAILED);
        FUZZ_CHECK(v1[i] == SPOOL_FAILED || r1[i] == NULL);
        if (v1[i] == SPOOL_PENDING) {
            continue;
        }
        n = spool_done_format(out + o, cap - o, (enum spool_verdict)v1[i], rcpt[i], r1[i]);
        FUZZ_CHECK(n > 0 && out[o + n - 1] == '\n');
        /* exactly n + 1 bytes are needed: one less must be refused, untouched */
        {
            char *tight = malloc(n);
            FUZZ_CHECK(tight != NULL);
            FUZZ_CHECK(spool_done_format(tight, n, (enum spool_verdict)v1[i], rcpt[i], r1[i]) == 0);
            free(tight);
        }
        o += n;
    }
    FUZZ_CHECK(spool_done_apply(out, o, &env, v2, r2) == 0);
    for (size_t i = 0; i < env.nrcpt; i++) {
        FUZZ_CHECK(v1[i] == v2[i]);
        FUZZ_CHECK((r1[i] == NULL) == (r2[i] == NULL));
        if (r1[i]) {
            size_t cut = strcspn(r1[i], "\r\n");
            FUZZ_CHECK(strlen(r2[i]) == cut && memcmp(r1[i], r2[i], cut) == 0);
        }
    }
    free(out);
    free_replies(r1, env.nrcpt);
    free_replies(r2, env.nrcpt);
    check_deferrals(text, len, &env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    /* an exact-size copy: any read past the text hits ASan */
    char *text = malloc(len ? len : 1);

    FUZZ_CHECK(text != NULL);
    memcpy(text, data, len);
    check_env(text, len);
    check_done(text, len);
    free(text);
    return 0;
}
