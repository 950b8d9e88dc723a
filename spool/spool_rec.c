/* spool_rec: parse and format the spool's text records (.env envelope, .done
 * progress), see the header for the formats. No I/O: spool.c reads the files,
 * the fuzz target feeds arbitrary bytes. */
#include "spool/spool_rec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- envelope ---- */

static int spool_field(const char *v, size_t vl, char *out, size_t cap)
{
    if (vl >= cap || memchr(v, '\0', vl)) {
        return -1; /* a NUL would cut the value when it is written back */
    }
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 0;
}

/* Decimal digits after optional blanks, within [v, end); saturates. The text
 * need not be NUL-terminated, so no strtoull. */
static uint64_t spool_number(const char *v, const char *end)
{
    uint64_t n = 0;

    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    for (; v < end && *v >= '0' && *v <= '9'; v++) {
        unsigned d = (unsigned)(*v - '0');
        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
    }
    return n;
}

static int spool_key(const char *k, size_t kl, const char *name)
{
    return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

int spool_env_parse(const char *text, size_t len, struct spool_env *env, char *err, size_t errlen)
{
    const char *p = text, *end = text + len;
    uint64_t version = 0;
    size_t cap = 0;

    memset(env, 0, sizeof(*env));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *sp, *v;
        size_t kl, vl;
        int r = 0;

        if (!nl) {
            snprintf(err, errlen, "truncated envelope");
            goto fail;
        }
        sp = memchr(p, ' ', (size_t)(nl - p));
        kl = sp ? (size_t)(sp - p) : (size_t)(nl - p);
        v = sp ? sp + 1 : nl;
        vl = (size_t)(nl - v);
        if (spool_key(p, kl, "relay25-spool")) {
            version = spool_number(v, nl);
        } else if (spool_key(p, kl, "created")) {
            env->created = spool_number(v, nl);
        } else if (spool_key(p, kl, "device")) {
            r = spool_field(v, vl, env->device, sizeof(env->device));
        } else if (spool_key(p, kl, "user")) {
            r = spool_field(v, vl, env->user, sizeof(env->user));
        } else if (spool_key(p, kl, "route")) {
            r = spool_field(v, vl, env->route, sizeof(env->route));
        } else if (spool_key(p, kl, "client")) {
            r = spool_field(v, vl, env->client, sizeof(env->client));
        } else if (spool_key(p, kl, "helo")) {
            r = spool_field(v, vl, env->helo, sizeof(env->helo));
        } else if (spool_key(p, kl, "body")) {
            r = spool_field(v, vl, env->body, sizeof(env->body));
        } else if (spool_key(p, kl, "from")) {
            r = spool_field(v, vl, env->from, sizeof(env->from));
        } else if (spool_key(p, kl, "ret")) {
            r = spool_field(v, vl, env->ret, sizeof(env->ret));
        } else if (spool_key(p, kl, "envid")) {
            r = spool_field(v, vl, env->envid, sizeof(env->envid));
        } else if (spool_key(p, kl, "smtputf8")) {
            env->smtputf8 = spool_number(v, nl) != 0;
        } else if (spool_key(p, kl, "rcpt")) {
            if (env->nrcpt == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                void *n = realloc(env->rcpt, ncap * sizeof(*env->rcpt));
                if (!n) {
                    snprintf(err, errlen, "out of memory");
                    goto fail;
                }
                env->rcpt = n;
                if (env->rdsn) {
                    if (!(n = realloc(env->rdsn, ncap * sizeof(*env->rdsn)))) {
                        snprintf(err, errlen, "out of memory");
                        goto fail;
                    }
                    env->rdsn = n;
                    memset(env->rdsn + cap, 0, (ncap - cap) * sizeof(*env->rdsn));
                }
                cap = ncap;
            }
            r = spool_field(v, vl, env->rcpt[env->nrcpt], SPOOL_ADDR_MAX);
            env->nrcpt += r == 0;
        } else if (spool_key(p, kl, "rcptdsn") && env->nrcpt > 0) {
            /* the parameters of the rcpt line before it */
            if (!env->rdsn && !(env->rdsn = calloc(cap, sizeof(*env->rdsn)))) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            free(env->rdsn[env->nrcpt - 1]);
            env->rdsn[env->nrcpt - 1] = NULL;
            if (memchr(v, '\0', vl) || !(env->rdsn[env->nrcpt - 1] = strndup(v, vl))) {
                r = -1;
            }
        }
        if (r != 0) {
            snprintf(err, errlen, "field %.*s too long or not text", (int)kl, p);
            goto fail;
        }
        p = nl + 1;
    }
    if (version != 1 || env->nrcpt == 0 || !env->device[0]) {
        snprintf(err, errlen, "not a relay25 spool envelope (version %" PRIu64 ", %zu recipients)",
                 version, env->nrcpt);
        goto fail;
    }
    if (strcmp(env->helo, "-") == 0) {
        env->helo[0] = '\0';
    }
    if (strcmp(env->body, "-") == 0) {
        env->body[0] = '\0';
    }
    return 0;
fail:
    spool_env_free(env);
    return -1;
}

char *spool_env_format(const struct spool_env *env, size_t *len)
{
    /* every fixed field at its longest, the keys, and the rcpt lines */
    size_t cap = sizeof(*env) + 256 + env->nrcpt * (SPOOL_ADDR_MAX + 8), o;
    char *out;
    int n;

    for (size_t i = 0; env->rdsn && i < env->nrcpt; i++) {
        cap += env->rdsn[i] ? strlen(env->rdsn[i]) + 10 : 0;
    }
    if (!(out = malloc(cap))) {
        return NULL;
    }
    n = snprintf(out, cap,
                 "relay25-spool 1\ncreated %" PRIu64 "\ndevice %s\nuser %s\n%s%s%sclient %s\n"
                 "helo %s\nbody %s\nfrom %s\n%s%s%s%s%s%s%s",
                 env->created, env->device, env->user, env->route[0] ? "route " : "", env->route,
                 env->route[0] ? "\n" : "", env->client, env->helo[0] ? env->helo : "-",
                 env->body[0] ? env->body : "-", env->from, env->ret[0] ? "ret " : "", env->ret,
                 env->ret[0] ? "\n" : "", env->envid[0] ? "envid " : "", env->envid,
                 env->envid[0] ? "\n" : "", env->smtputf8 ? "smtputf8 1\n" : "");
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return NULL;
    }
    o = (size_t)n;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const char *d = env->rdsn ? env->rdsn[i] : NULL;
        n = snprintf(out + o, cap - o, "rcpt %s\n%s%s%s", env->rcpt[i], d ? "rcptdsn " : "",
                     d ? d : "", d ? "\n" : "");
        if (n < 0 || (size_t)n >= cap - o) {
            free(out);
            return NULL;
        }
        o += (size_t)n;
    }
    *len = o;
    return out;
}

void spool_env_free(struct spool_env *env)
{
    for (size_t i = 0; env->rdsn && i < env->nrcpt; i++) {
        free(env->rdsn[i]);
    }
    free(env->rdsn);
    env->rdsn = NULL;
    free(env->rcpt);
    env->rcpt = NULL;
    env->nrcpt = 0;
}

/* ---- progress ---- */

/* A decimal number of at least one digit followed by a blank, from *p within
 * [*p, nl): 1 with *p past the blank, 0 when the text is not that. Saturates. */
static int spool_rec_number(const char **p, const char *nl, uint64_t *out)
{
    const char *q = *p;

    if (q >= nl || *q < '0' || *q > '9') {
        return 0;
    }
    while (q < nl && *q >= '0' && *q <= '9') {
        q++;
    }
    if (q >= nl || *q != ' ') {
        return 0;
    }
    *out = spool_number(*p, q);
    *p = q + 1;
    return 1;
}

int spool_done_next(const char **pp, const char *end, struct spool_done_rec *rec)
{
    const char *p = *pp;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *sp, *a, *ae;
        uint64_t n[3] = {0, 0, 0};
        enum spool_verdict v;

        if (!nl) {
            break; /* a torn last line (crash while appending) counts as not done */
        }
        sp = memchr(p, ' ', (size_t)(nl - p));
        a = sp ? sp + 1 : nl;
        if (sp && sp - p == 2 && memcmp(p, "ok", 2) == 0) {
            v = SPOOL_OK;
        } else if (sp && sp - p == 6 && memcmp(p, "failed", 6) == 0) {
            v = SPOOL_FAILED;
        } else if (sp && sp - p == 5 && memcmp(p, "defer", 5) == 0 &&
                   spool_rec_number(&a, nl, &n[0]) && spool_rec_number(&a, nl, &n[1]) &&
                   spool_rec_number(&a, nl, &n[2])) {
            v = SPOOL_DEFERRED;
        } else {
            p = nl + 1;
            continue;
        }
        ae = memchr(a, ' ', (size_t)(nl - a));
        if (!ae) {
            ae = nl;
        }
        memset(rec, 0, sizeof(*rec));
        rec->verdict = v;
        rec->addr = a;
        rec->addr_len = (size_t)(ae - a);
        rec->reply = v != SPOOL_OK && ae < nl ? ae + 1 : NULL;
        rec->reply_len = rec->reply ? (size_t)(nl - ae - 1) : 0;
        if (v == SPOOL_DEFERRED) {
            rec->attempts = n[0] > UINT32_MAX ? UINT32_MAX : (uint32_t)n[0];
            rec->last = n[1];
            rec->next_retry = n[2];
        }
        *pp = nl + 1;
        return 1;
    }
    *pp = end;
    return 0;
}

size_t spool_done_format(char *out, size_t cap, enum spool_verdict v, const char *addr,
                         const char *reply)
{
    int n;

    if (v == SPOOL_OK || (v == SPOOL_FAILED && !reply)) {
        n = snprintf(out, cap, "%s %s\n", v == SPOOL_OK ? "ok" : "failed", addr);
    } else if (v == SPOOL_FAILED) {
        n = snprintf(out, cap, "failed %s %.*s\n", addr, (int)strcspn(reply, "\r\n"), reply);
    } else {
        return 0;
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t spool_defer_format(char *out, size_t cap, const char *addr, const struct spool_defer *d)
{
    const char *reply = d->reply ? d->reply : "";
    int n = snprintf(out, cap, "defer %" PRIu32 " %" PRIu64 " %" PRIu64 " %s%s%.*s\n", d->attempts,
                     d->last, d->next_retry, addr, d->reply ? " " : "", (int)strcspn(reply, "\r\n"),
                     reply);

    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Does record r (its line ending at eol) name recipient a? Then 1, with the
 * record's reply for a in *rp / *rl (NULL / 0: none). */
static int spool_rec_match(const struct spool_done_rec *r, const char *eol, const char *a,
                           const char **rp, size_t *rl)
{
    size_t al = strlen(a);

    *rp = r->reply;
    *rl = r->reply_len;
    if (al == r->addr_len && memcmp(a, r->addr, al) == 0) {
        return 1;
    }
    /* RFC 5321 §4.1.2: a quoted local part may hold blanks, which end the
     * record's address: then the line starts with it */
    if (!memchr(a, ' ', al) || al > (size_t)(eol - r->addr) || memcmp(a, r->addr, al) != 0 ||
        (r->addr + al < eol && r->addr[al] != ' ')) {
        return 0;
    }
    *rp = r->verdict != SPOOL_OK && r->addr + al < eol ? r->addr + al + 1 : NULL;
    *rl = *rp ? (size_t)(eol - *rp) : 0;
    return 1;
}

int spool_done_apply(const char *text, size_t len, const struct spool_env *env,
                     unsigned char *verdict, char **reply)
{
    const char *p = text, *end = text + len;
    struct spool_done_rec r;

    while (spool_done_next(&p, end, &r)) {
        const char *eol = p - 1; /* the record's '\n' */
        if (r.verdict == SPOOL_DEFERRED) {
            continue; /* no verdict: spool_done_deferrals */
        }
        for (size_t i = 0; i < env->nrcpt; i++) {
            const char *rp;
            size_t rl;
            if (!spool_rec_match(&r, eol, env->rcpt[i], &rp, &rl)) {
                continue;
            }
            verdict[i] = (unsigned char)r.verdict;
            if (!reply) {
                continue;
            }
            free(reply[i]);
            reply[i] = NULL;
            if (rp && !(reply[i] = strndup(rp, rl))) {
                return -1;
            }
        }
    }
    return 0;
}

int spool_env_set_rcpt(struct spool_env *env, char *const *rcpt, size_t n)
{
    free(env->rcpt);
    env->nrcpt = 0;
    if (!(env->rcpt = calloc(n ? n : 1, sizeof(*env->rcpt)))) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(env->rcpt[i], sizeof(env->rcpt[i]), "%s", rcpt[i]);
    }
    env->nrcpt = n;
    return 0;
}
int spool_done_deferrals(const char *text, size_t len, const struct spool_env *env,
                         struct spool_defer *defer)
{
    const char *p = text, *end = text + len;
    struct spool_done_rec r;

    while (spool_done_next(&p, end, &r)) {
        const char *eol = p - 1;
        if (r.verdict != SPOOL_DEFERRED) {
            continue;
        }
        for (size_t i = 0; i < env->nrcpt; i++) {
            const char *rp;
            size_t rl;
            if (!spool_rec_match(&r, eol, env->rcpt[i], &rp, &rl)) {
                continue;
            }
            free(defer[i].reply);
            defer[i].reply = NULL;
            defer[i].attempts = r.attempts;
            defer[i].last = r.last;
            defer[i].next_retry = r.next_retry;
            if (rp && !(defer[i].reply = strndup(rp, rl))) {
                return -1;
            }
        }
    }
    return 0;
}

void spool_defer_free(struct spool_defer *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++) {
        free(d[i].reply);
    }
    free(d);
}
