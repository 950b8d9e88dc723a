/* queue: `relay25 queue`, the operator's view of the durable spool: list, show,
 * delete and re-queue messages through spool/ (blocking calls: a short-lived
 * command, not the daemon), and ask a running daemon to retry now (SIGUSR1 to the
 * PID in <spool_dir>/relay25.pid). Presentation only: text cleaned for the
 * terminal, columns, JSON through Debian's cJSON. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli/cli.h"
#include "cli/sm_held.h"
#include "common/afile.h"
#include "conf/conf.h"
#include "spool/spool.h"

#define Q_HEAD_MAX (64u * 1024u) /* bytes of a .msg read for `show` */
#define Q_HEAD_LINES 20          /* header lines `show` prints */
#define Q_ID_MIN 6               /* shortest queue id prefix accepted */
#define Q_PIDFILE "relay25.pid"
#define Q_NOT_FOUND 1 /* exit status: no such message */

/* list columns: id, age, size, rcpt, device (then sender and reason share the rest) */
#define Q_W_AGE 6
#define Q_W_SIZE 6
#define Q_W_RCPT 5
#define Q_W_DEV 10
#define Q_W_FIXED (16 + 1 + Q_W_AGE + 1 + Q_W_SIZE + 1 + Q_W_RCPT + 1 + Q_W_DEV + 1)
#define Q_W_FROM_MIN 24 /* sender column with --failed when nothing is cut */

struct q_msg {
    uint64_t qid;
    int failed; /* in failed/ rather than q/ */
    int env_ok; /* env parsed; else env_err says why */
    char env_err[256];
    struct spool_env env;
    uint64_t size;         /* of the .msg */
    unsigned char *rstate; /* enum spool_verdict per env.rcpt */
    char **rreply;         /* the failure reply per recipient, or NULL */
    /* per recipient: why it waits (the daemon's latest defer record), or zeroes */
    struct spool_defer *defer;
    size_t npending;
    char *reason; /* failed/: first line of the .reason, or NULL */
};

static void q_usage(FILE *f)
{
    fprintf(f,
            "usage: relay25 queue [-c FILE] [--json] list [--failed]\n"
            "       relay25 queue [-c FILE] [--json] show ID\n"
            "       relay25 queue [-c FILE] flush [ID]\n"
            "       relay25 queue [-c FILE] delete ID | delete [--failed] --all\n"
            "       relay25 queue [-c FILE] retry-failed\n"
            "ID: a queue id (16 hex digits) or a unique prefix of at least %d.\n"
            "--held: the messages `relay25 sendmail` kept for you when neither the daemon nor\n"
            "its spool could take them (list, show, delete; flush sends them).\n",
            Q_ID_MIN);
}

static int q_errno_rc(int e)
{
    return e == EACCES || e == EPERM ? EX_NOPERM : EX_IOERR;
}

static const char *q_area(int failed)
{
    return failed ? "failed" : "q";
}

static enum spool_area q_spool_area(int failed)
{
    return failed ? SPOOL_AREA_FAILED : SPOOL_AREA_Q;
}

static void q_idstr(uint64_t qid, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, qid);
}

/* ---- text ---------------------------------------------------------------------------- */

/* In place: invalid UTF-8, C0/C1 controls and DEL become '?', a tab a blank (an
 * address or an upstream reply could carry terminal escapes; cJSON then gets
 * valid UTF-8). The text never grows. */
static char *q_clean(char *str)
{
    unsigned char *r = (unsigned char *)str, *w = r;

    while (*r) {
        unsigned c = *r;
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        size_t i;

        for (i = 1; i < n && (r[i] & 0xc0) == 0x80; i++) {
            cp = (cp << 6) | (r[i] & 0x3f);
        }
        if (n == 0 || i < n || cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *w++ = '?'; /* a bad byte: resynchronise on the next one */
            r++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            *w++ = cp == '\t' ? ' ' : '?';
            r += n;
            continue;
        }
        memmove(w, r, n);
        w += n;
        r += n;
    }
    *w = '\0';
    return str;
}

/* Writes s in at most max characters (0: no limit; a cut ends in '~'), padded
 * with blanks to pad characters. */
static void q_put(const char *s, size_t max, size_t pad)
{
    size_t chars = 0, i;

    for (i = 0; s[i]; i++) {
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    if (max > 0 && chars > max) {
        size_t k = 0;
        for (i = 0; s[i]; i++) {
            if (((unsigned char)s[i] & 0xc0) != 0x80) {
                if (k == max - 1) {
                    break;
                }
                k++;
            }
        }
        fwrite(s, 1, i, stdout);
        putchar('~');
        chars = max;
    } else {
        fputs(s, stdout);
    }
    for (; chars < pad; chars++) {
        putchar(' ');
    }
}

static const char *q_age(uint64_t s, char *buf, size_t cap)
{
    if (s < 60) {
        snprintf(buf, cap, "%us", (unsigned)s);
    } else if (s < 3600) {
        snprintf(buf, cap, "%um", (unsigned)(s / 60));
    } else if (s < 86400) {
        snprintf(buf, cap, "%uh%um", (unsigned)(s / 3600), (unsigned)(s % 3600 / 60));
    } else {
        snprintf(buf, cap, "%" PRIu64 "d%uh", s / 86400, (unsigned)(s % 86400 / 3600));
    }
    return buf;
}

/* "812", "9.6K", "12K", "3.4M" */
static const char *q_size_short(uint64_t n, char *buf, size_t cap)
{
    static const char units[] = "KMGT";
    double v = (double)n / 1024;
    int u = 0;

    if (n < 1024) {
        snprintf(buf, cap, "%" PRIu64, n);
        return buf;
    }
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    if (v < 10) {
        snprintf(buf, cap, "%.1f%c", v, units[u]);
    } else {
        snprintf(buf, cap, "%.0f%c", v, units[u]);
    }
    return buf;
}

/* "812 bytes", "12 KiB", "3.4 MiB" */
static const char *q_size_long(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n / 1024;
    int u = 0;

    if (n < 1024) {
        snprintf(buf, cap, "%" PRIu64 " byte%s", n, n == 1 ? "" : "s");
        return buf;
    }
    while (v >= 1024 && u < 3) {
        v /= 1024;
        u++;
    }
    if (v < 10) {
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    } else {
        snprintf(buf, cap, "%.0f %s", v, units[u]);
    }
    return buf;
}

static const char *q_rstate_name(unsigned char st)
{
    return st == SPOOL_OK ? "ok" : st == SPOOL_FAILED ? "failed" : "pending";
}

/* A pending recipient the daemon has tried is "deferred" (its defer record says
 * why); one not tried yet stays "pending". */
static int q_deferred(const struct q_msg *m, size_t i)
{
    return m->rstate[i] == SPOOL_PENDING && m->defer[i].attempts > 0;
}

static const char *q_state(const struct q_msg *m, size_t i)
{
    return q_deferred(m, i) ? "deferred" : q_rstate_name(m->rstate[i]);
}

/* "in 4m", "due" (the time has passed: the daemon is late, stopped or busy) */
static const char *q_next_in(uint64_t next, uint64_t now, char *buf, size_t cap)
{
    char age[24];

    if (next <= now) {
        snprintf(buf, cap, "due");
    } else {
        snprintf(buf, cap, "in %s", q_age(next - now, age, sizeof(age)));
    }
    return buf;
}

/* ---- reading the spool ---------------------------------------------------------------- */

/* Queue ids of the committed messages of an area, sorted. 0 or an errno value. */
static int q_scan(const char *spool, int failed, uint64_t **ids, size_t *n)
{
    return spool_scan(spool, q_spool_area(failed), ids, NULL, n);
}

static void q_msg_free(struct q_msg *m)
{
    for (size_t i = 0; m->rreply && i < m->env.nrcpt; i++) {
        free(m->rreply[i]);
    }
    free(m->rreply);
    spool_defer_free(m->defer, m->env.nrcpt);
    free(m->rstate);
    free(m->reason);
    spool_env_free(&m->env);
    memset(m, 0, sizeof(*m));
}

/* One message for display (every text cleaned). 0; ENOENT when it went away
 * meanwhile (delivered or deleted); another errno value when its envelope cannot
 * be read (then m holds the id, the reason in env_err, and must still be freed). */
static int q_load(const char *spool, uint64_t qid, int failed, struct q_msg *m)
{
    struct spool_msg sm;
    int err;

    memset(m, 0, sizeof(*m));
    m->qid = qid;
    m->failed = failed;
    err = spool_load(spool, q_spool_area(failed), qid, &sm, m->env_err, sizeof(m->env_err));
    m->size = sm.size;
    if (err != 0) {
        spool_msg_free(&sm);
        q_clean(m->env_err);
        return err;
    }
    m->env_ok = 1;
    m->env = sm.env;
    m->rstate = sm.verdict;
    m->rreply = sm.reply;
    m->defer = sm.defer;
    m->reason = sm.reason;
    q_clean(m->env.device);
    q_clean(m->env.user);
    q_clean(m->env.route);
    q_clean(m->env.client);
    q_clean(m->env.helo);
    q_clean(m->env.body);
    q_clean(m->env.from);
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        q_clean(m->env.rcpt[i]);
        if (m->rreply[i]) {
            q_clean(m->rreply[i]);
        }
        if (m->defer[i].reply) {
            q_clean(m->defer[i].reply);
        }
        m->npending += m->rstate[i] == SPOOL_PENDING;
    }
    if (m->reason) {
        q_clean(m->reason);
    }
    return 0;
}

static int q_cmp_msg(const void *a, const void *b)
{
    const struct q_msg *x = a, *y = b;
    if (x->env.created != y->env.created) {
        return x->env.created < y->env.created ? -1 : 1;
    }
    return x->qid < y->qid ? -1 : x->qid > y->qid;
}

/* Every message of an area, oldest first. 0 or an exit status (printed). */
static int q_load_area(const char *spool, int failed, struct q_msg **out, size_t *nout)
{
    uint64_t *ids;
    size_t n, k = 0;
    struct q_msg *v;
    int err;

    *out = NULL;
    *nout = 0;
    if ((err = q_scan(spool, failed, &ids, &n)) != 0) {
        fprintf(stderr, "relay25: cannot read %s/%s: %s\n", spool, q_area(failed), strerror(err));
        return q_errno_rc(err);
    }
    if (n == 0) {
        return 0;
    }
    if (!(v = calloc(n, sizeof(*v)))) {
        free(ids);
        fprintf(stderr, "relay25: out of memory\n");
        return EX_OSERR;
    }
    for (size_t i = 0; i < n; i++) {
        if (q_load(spool, ids[i], failed, &v[k]) == ENOENT) {
            q_msg_free(&v[k]); /* delivered or deleted since the scan */
            continue;
        }
        k++;
    }
    free(ids);
    qsort(v, k, sizeof(*v), q_cmp_msg);
    *out = v;
    *nout = k;
    return 0;
}

static void q_free_all(struct q_msg *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        q_msg_free(&v[i]);
    }
    free(v);
}

/* The message an id or a unique prefix of one names: in q/, then (also_failed)
 * in failed/. 0, or an exit status with the reason printed. */
static int q_find(const char *spool, const char *arg, int also_failed, uint64_t *qid, int *failed)
{
    char prefix[17], id[17];
    size_t plen = arg ? strlen(arg) : 0, matches = 0;
    uint64_t seen[4];

    if (!arg) {
        q_usage(stderr);
        return EX_USAGE;
    }
    if (plen < Q_ID_MIN || plen > 16 || strspn(arg, "0123456789abcdefABCDEF") != plen) {
        fprintf(stderr, "relay25: bad queue id '%s' (16 hex digits, or at least %d of them)\n", arg,
                Q_ID_MIN);
        return EX_USAGE;
    }
    for (size_t i = 0; i <= plen; i++) {
        prefix[i] = arg[i] >= 'A' && arg[i] <= 'F' ? (char)(arg[i] - 'A' + 'a') : arg[i];
    }
    for (int f = 0; f <= also_failed; f++) {
        uint64_t *ids;
        size_t n;
        int err = q_scan(spool, f, &ids, &n);

        if (err != 0) {
            fprintf(stderr, "relay25: cannot read %s/%s: %s\n", spool, q_area(f), strerror(err));
            return q_errno_rc(err);
        }
        for (size_t i = 0; i < n; i++) {
            q_idstr(ids[i], id);
            if (memcmp(id, prefix, plen) != 0) {
                continue;
            }
            if (matches == 0) {
                *qid = ids[i];
                *failed = f;
            }
            if (matches < sizeof(seen) / sizeof(seen[0])) {
                seen[matches] = ids[i];
            }
            matches++;
        }
        free(ids);
    }
    if (matches == 0) {
        fprintf(stderr, "relay25: no message %s in %s/q%s\n", arg, spool,
                also_failed ? " or failed" : "");
        return Q_NOT_FOUND;
    }
    if (matches > 1) {
        fprintf(stderr, "relay25: queue id %s is ambiguous:", arg);
        for (size_t i = 0; i < matches && i < sizeof(seen) / sizeof(seen[0]); i++) {
            q_idstr(seen[i], id);
            fprintf(stderr, " %s", id);
        }
        fprintf(stderr, "%s\n", matches > sizeof(seen) / sizeof(seen[0]) ? " ..." : "");
        return EX_USAGE;
    }
    return 0;
}

/* ---- the daemon ------------------------------------------------------------------------ */

/* A pid file outlives a crash (and the spool a reboot), and SIGUSR1 ends most
 * programs: where /proc tells, the process must have been started as relay25. */
static int q_is_relay25(pid_t pid)
{
    char path[64], *argv0, *base;
    size_t len;
    int err, ok;

    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    if (!(argv0 = afile_read(path, 4096, 1, &len, &err))) {
        return 1; /* no /proc (or not ours to read): kill(2) decides */
    }
    base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    ok = strcmp(base, "relay25") == 0;
    free(argv0);
    return ok;
}

/* The running daemon's pid from <spool>/relay25.pid into *pid, 0 when none runs
 * (no file, or a stale one). 0, or an exit status (printed). */
static int q_daemon(const char *spool, pid_t *pid)
{
    char path[4096], *text, *end;
    size_t len;
    long v;
    int err;

    *pid = 0;
    if (snprintf(path, sizeof(path), "%s/" Q_PIDFILE, spool) >= (int)sizeof(path)) {
        fprintf(stderr, "relay25: %s: %s\n", spool, strerror(ENAMETOOLONG));
        return EX_IOERR;
    }
    if (!(text = afile_read(path, 64, 1, &len, &err))) {
        if (err == ENOENT) {
            return 0;
        }
        fprintf(stderr, "relay25: cannot read %s: %s\n", path, strerror(err));
        return q_errno_rc(err);
    }
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || v <= 1 || (*end && *end != '\n' && *end != ' ')) {
        fprintf(stderr, "relay25: %s does not hold a process id; ignored\n", path);
        free(text);
        return 0;
    }
    free(text);
    /* EPERM: it exists but is not ours to signal; kill(SIGUSR1) reports that */
    if (kill((pid_t)v, 0) != 0 && errno != EPERM) {
        return 0;
    }
    if (!q_is_relay25((pid_t)v)) {
        fprintf(stderr, "relay25: %s is stale: process %ld is another program\n", path, v);
        return 0;
    }
    *pid = (pid_t)v;
    return 0;
}

/* SIGUSR1: the daemon rescans the spool and retries every message now. */
static int q_signal(const char *spool)
{
    pid_t pid;
    int rc = q_daemon(spool, &pid);

    if (rc != 0) {
        return rc;
    }
    if (pid == 0) {
        printf("no running relay25: messages will be retried when it starts (no live daemon's "
               "pid in %s/" Q_PIDFILE ")\n",
               spool);
        return 0;
    }
    if (kill(pid, SIGUSR1) != 0) {
        int e = errno;
        fprintf(stderr, "relay25: cannot signal relay25 (pid %ld): %s\n", (long)pid, strerror(e));
        return q_errno_rc(e);
    }
    printf("relay25 (pid %ld) is retrying the queue now\n", (long)pid);
    return 0;
}

int cli_queue_kick(const char *spool_dir)
{
    char path[4096], *text, *end;
    size_t len;
    long v;
    int err;

    if (snprintf(path, sizeof(path), "%s/" Q_PIDFILE, spool_dir) >= (int)sizeof(path) ||
        !(text = afile_read(path, 64, 1, &len, &err))) {
        return 0;
    }
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text) {
        v = 0;
    }
    free(text);
    if (v <= 1 || !q_is_relay25((pid_t)v)) {
        return 0;
    }
    return kill((pid_t)v, SIGUSR1) == 0;
}

/* ---- list ------------------------------------------------------------------------------ */

/* Terminal columns, 0 when stdout is not a terminal (then nothing is cut). */
static size_t q_columns(void)
{
    struct winsize ws;

    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        return ws.ws_col < Q_W_FIXED + 20 ? Q_W_FIXED + 20 : ws.ws_col;
    }
    return 0;
}

static uint64_t q_now(void)
{
    time_t t = time(NULL);
    return t > 0 ? (uint64_t)t : 0;
}

static uint64_t q_age_of(const struct q_msg *m, uint64_t now)
{
    return m->env_ok && now > m->env.created ? now - m->env.created : 0;
}

/* Widths of the sender and reason columns: what the terminal leaves, or (not a
 * terminal) no limit. */
struct q_cols {
    size_t cut;        /* 0: nothing is cut */
    size_t from_max;   /* sender: at most (0: no limit) */
    size_t from_pad;   /* sender: padded to, when a reason follows */
    size_t reason_max; /* --failed: reason at most (0: no limit) */
};

static void q_cols_init(struct q_cols *w, int failed)
{
    size_t cols = q_columns(), rest = cols > Q_W_FIXED ? cols - Q_W_FIXED : 0;

    memset(w, 0, sizeof(*w));
    w->cut = cols;
    w->from_max = rest;
    w->from_pad = Q_W_FROM_MIN;
    if (failed && rest > 0) {
        w->from_max = w->from_pad = rest * 2 / 5;
        w->reason_max = rest - w->from_max - 1;
    }
}

static void q_list_line(const struct q_msg *m, int failed, uint64_t now, const struct q_cols *w)
{
    char id[17], age[24], size[24], rc[48], from[SPOOL_ADDR_MAX + 3];

    q_idstr(m->qid, id);
    if (m->env_ok) {
        q_age(q_age_of(m, now), age, sizeof(age));
        snprintf(rc, sizeof(rc), "%zu/%zu", m->npending, m->env.nrcpt);
        snprintf(from, sizeof(from), "%s", m->env.from[0] ? m->env.from : "<>");
    } else {
        snprintf(age, sizeof(age), "?");
        snprintf(rc, sizeof(rc), "?");
    }
    printf("%s %*s %*s %*s ", id, Q_W_AGE, age, Q_W_SIZE, q_size_short(m->size, size, sizeof(size)),
           Q_W_RCPT, rc);
    q_put(m->env_ok ? m->env.device : "?", w->cut ? Q_W_DEV : 0, Q_W_DEV);
    putchar(' ');
    if (!m->env_ok) {
        printf("(unreadable: %s)", m->env_err);
    } else if (failed) {
        q_put(from, w->from_max, w->from_pad);
        putchar(' ');
        q_put(m->reason ? m->reason : "-", w->reason_max, 0);
    } else {
        q_put(from, w->from_max, 0);
    }
    putchar('\n');
    /* why the message waits, per deferred recipient (as Postfix's mailq) */
    for (size_t i = 0; m->env_ok && !failed && i < m->env.nrcpt; i++) {
        const struct spool_defer *d = &m->defer[i];
        char line[SPOOL_ADDR_MAX + 1200], next[32];

        if (!q_deferred(m, i)) {
            continue;
        }
        snprintf(line, sizeof(line), "  deferred %s (%" PRIu32 " attempt%s, next retry %s): %s",
                 m->env.rcpt[i], d->attempts, d->attempts == 1 ? "" : "s",
                 q_next_in(d->next_retry, now, next, sizeof(next)), d->reply ? d->reply : "-");
        q_put(line, w->cut, 0);
        putchar('\n');
    }
}

static int q_list_text(const char *spool, const struct q_msg *v, size_t n, int failed)
{
    uint64_t now = q_now(), bytes = 0;
    struct q_cols w;
    char total[32];
    uint64_t *fids;
    size_t nfailed;

    if (n == 0) {
        puts(failed ? "No failed messages" : "Mail queue is empty");
    } else {
        q_cols_init(&w, failed);
        printf("%-16s %*s %*s %*s ", "Queue ID", Q_W_AGE, "Age", Q_W_SIZE, "Size", Q_W_RCPT,
               "Rcpt");
        q_put("Device", 0, Q_W_DEV);
        putchar(' ');
        if (failed) {
            q_put("Sender", 0, w.from_pad);
            puts(" Reason");
        } else {
            puts("Sender");
        }
        for (size_t i = 0; i < n; i++) {
            q_list_line(&v[i], failed, now, &w);
            bytes += v[i].size;
        }
        printf("%zu %smessage%s, %s\n", n, failed ? "failed " : "", n == 1 ? "" : "s",
               q_size_long(bytes, total, sizeof(total)));
    }
    /* point at failed/ from the queue listing: those are never retried alone */
    if (!failed && q_scan(spool, 1, &fids, &nfailed) == 0) {
        if (nfailed > 0) {
            printf("(%zu failed message%s: relay25 queue list --failed)\n", nfailed,
                   nfailed == 1 ? "" : "s");
        }
        free(fids);
    }
    return 0;
}

#define Q_JSON_STR(o, k, v) (cJSON_AddStringToObject((o), (k), (v)) != NULL)
#define Q_JSON_NUM(o, k, v) (cJSON_AddNumberToObject((o), (k), (double)(v)) != NULL)

/* Message-wide: the most attempts of a recipient, and the next retry and last
 * error of the deferred ones (null when none is deferred). */
static int q_json_summary(cJSON *o, const struct q_msg *m, uint64_t now)
{
    uint32_t attempts = 0;
    uint64_t next = 0, last = 0;
    const char *err = NULL;

    for (size_t i = 0; i < m->env.nrcpt; i++) {
        const struct spool_defer *d = &m->defer[i];
        attempts = d->attempts > attempts ? d->attempts : attempts;
        if (!q_deferred(m, i)) {
            continue;
        }
        if (!next || d->next_retry < next) {
            next = d->next_retry;
        }
        if (!err || d->last >= last) {
            last = d->last;
            err = d->reply ? d->reply : "";
        }
    }
    if (!Q_JSON_NUM(o, "attempts", attempts)) {
        return 0;
    }
    if (!err) {
        return cJSON_AddNullToObject(o, "next_retry") && cJSON_AddNullToObject(o, "last_error");
    }
    return Q_JSON_NUM(o, "next_retry", next) &&
           Q_JSON_NUM(o, "next_retry_seconds", next > now ? next - now : 0) &&
           Q_JSON_STR(o, "last_error", err);
}

/* One message as a JSON object (see README "Queue"); NULL when out of memory. */
static cJSON *q_json_msg(const struct q_msg *m, uint64_t now)
{
    cJSON *o = cJSON_CreateObject(), *arr;
    char id[17];
    int ok;

    if (!o) {
        return NULL;
    }
    q_idstr(m->qid, id);
    ok = Q_JSON_STR(o, "qid", id) && Q_JSON_STR(o, "area", m->failed ? "failed" : "queue");
    if (!m->env_ok) {
        ok = ok && Q_JSON_NUM(o, "size", m->size) && Q_JSON_STR(o, "error", m->env_err);
        goto out;
    }
    ok = ok && Q_JSON_NUM(o, "created", m->env.created) &&
         Q_JSON_NUM(o, "age_seconds", q_age_of(m, now)) && Q_JSON_NUM(o, "size", m->size) &&
         Q_JSON_STR(o, "from", m->env.from) && Q_JSON_STR(o, "device", m->env.device) &&
         Q_JSON_STR(o, "user", m->env.user) && Q_JSON_STR(o, "client", m->env.client) &&
         Q_JSON_STR(o, "helo", m->env.helo) && Q_JSON_STR(o, "body", m->env.body);
    arr = ok ? cJSON_AddArrayToObject(o, "rcpt") : NULL;
    ok = arr != NULL;
    for (size_t i = 0; ok && i < m->env.nrcpt; i++) {
        cJSON *r = cJSON_CreateObject();
        if (!r || !cJSON_AddItemToArray(arr, r)) {
            cJSON_Delete(r);
            ok = 0;
            break;
        }
        ok = Q_JSON_STR(r, "address", m->env.rcpt[i]) && Q_JSON_STR(r, "status", q_state(m, i)) &&
             (!m->rreply[i] || Q_JSON_STR(r, "reply", m->rreply[i]));
        if (ok && m->defer[i].attempts > 0) {
            const struct spool_defer *d = &m->defer[i];
            ok = Q_JSON_NUM(r, "attempts", d->attempts) && Q_JSON_NUM(r, "last_attempt", d->last) &&
                 (!q_deferred(m, i) || (Q_JSON_NUM(r, "next_retry", d->next_retry) &&
                                        Q_JSON_NUM(r, "next_retry_seconds",
                                                   d->next_retry > now ? d->next_retry - now : 0) &&
                                        (!d->reply || Q_JSON_STR(r, "reply", d->reply))));
        }
    }
    ok = ok && q_json_summary(o, m, now);
    ok = ok && (m->reason ? Q_JSON_STR(o, "reason", m->reason)
                          : cJSON_AddNullToObject(o, "reason") != NULL);
out:
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int q_json_print(cJSON *j)
{
    char *s = j ? cJSON_Print(j) : NULL;

    cJSON_Delete(j);
    if (!s) {
        fprintf(stderr, "relay25: out of memory\n");
        return EX_OSERR;
    }
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

static int q_list_json(const struct q_msg *v, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    uint64_t now = q_now();

    for (size_t i = 0; arr && i < n; i++) {
        cJSON *o = q_json_msg(&v[i], now);
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    return q_json_print(arr);
}

int cli_queue_list(const char *spool_dir, int failed, int json)
{
    struct q_msg *v;
    size_t n;
    int rc = q_load_area(spool_dir, failed, &v, &n);

    if (rc != 0) {
        return rc;
    }
    rc = json ? q_list_json(v, n) : q_list_text(spool_dir, v, n, failed);
    q_free_all(v, n);
    return rc;
}

/* ---- show ------------------------------------------------------------------------------ */

/* The first Q_HEAD_LINES header lines of the .msg, each cleaned, into lines[]
 * (malloc'd); *more when the header section goes on. Returns the count. */
static size_t q_head(const char *spool, const struct q_msg *m, char **lines, int *more)
{
    char *text;
    size_t len, n = 0;
    int err;

    *more = 0;
    if (!(text = spool_msg_head(spool, q_spool_area(m->failed), m->qid, Q_HEAD_MAX, &len, &err))) {
        return 0;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (l > 0 && p[l - 1] == '\r') {
            l--;
        }
        if (l == 0) {
            break; /* end of the header section */
        }
        if (n == Q_HEAD_LINES) {
            *more = 1;
            break;
        }
        if (!(lines[n] = strndup(p, l))) {
            break;
        }
        q_clean(lines[n++]);
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    free(text);
    return n;
}

static const char *q_when(uint64_t unix_time, char *buf, size_t cap)
{
    time_t t = (time_t)unix_time;
    struct tm tm;

    snprintf(buf, cap, "?");
    if (localtime_r(&t, &tm)) {
        strftime(buf, cap, "%Y-%m-%d %H:%M:%S %z", &tm);
    }
    return buf;
}

/* "           3 attempts, last 19:20:01 (2m ago), next retry 19:30:12 (in 8m)" */
static void q_show_attempts(const struct q_msg *m, size_t i, uint64_t now)
{
    const struct spool_defer *d = &m->defer[i];
    char last[64], ago[24], next[64], in[32];

    printf("           %" PRIu32 " attempt%s, last %s (%s ago)", d->attempts,
           d->attempts == 1 ? "" : "s", q_when(d->last, last, sizeof(last)),
           q_age(now > d->last ? now - d->last : 0, ago, sizeof(ago)));
    if (q_deferred(m, i)) {
        printf(", next retry %s (%s)", q_when(d->next_retry, next, sizeof(next)),
               q_next_in(d->next_retry, now, in, sizeof(in)));
    }
    putchar('\n');
}

static void q_show_text(const struct q_msg *m, char **lines, size_t nlines, int more)
{
    uint64_t now = q_now();
    char id[17], when[64] = "?", age[24], size[32];
    time_t t;
    struct tm tm;

    q_idstr(m->qid, id);
    printf("Queue ID:  %s (%s)\n", id, m->failed ? "failed" : "queued");
    if (!m->env_ok) {
        printf("Envelope:  unreadable: %s\n", m->env_err);
    } else {
        t = (time_t)m->env.created;
        if (localtime_r(&t, &tm)) {
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm);
        }
        printf("Created:   %s (%s ago)\n", when, q_age(q_age_of(m, q_now()), age, sizeof(age)));
        printf("Size:      %" PRIu64 " bytes (%s)\n", m->size,
               q_size_long(m->size, size, sizeof(size)));
        printf("Device:    %s\n", m->env.device);
        printf("User:      %s\n", m->env.user);
        if (m->env.route[0]) {
            printf("Route:     %s\n", m->env.route);
        }
        printf("Client:    %s\n", m->env.client);
        printf("HELO:      %s\n", m->env.helo[0] ? m->env.helo : "-");
        printf("Body:      %s\n", m->env.body[0] ? m->env.body : "-");
        printf("From:      <%s>\n", m->env.from);
        if (m->failed) {
            printf("Reason:    %s\n", m->reason ? m->reason : "-");
        }
        printf("Recipients (%zu pending of %zu):\n", m->npending, m->env.nrcpt);
        for (size_t i = 0; i < m->env.nrcpt; i++) {
            const struct spool_defer *d = &m->defer[i];
            const char *why = q_deferred(m, i) ? d->reply : m->rreply[i];
            printf("  %-8s %s%s%s\n", q_state(m, i), m->env.rcpt[i], why ? "  " : "",
                   why ? why : "");
            if (d->attempts > 0) {
                q_show_attempts(m, i, now);
            }
        }
    }
    printf("Headers:\n");
    for (size_t i = 0; i < nlines; i++) {
        printf("  %s\n", lines[i]);
    }
    if (more) {
        printf("  ...\n");
    }
}

static int q_show(const char *spool, const char *arg, int json)
{
    struct q_msg m;
    uint64_t qid;
    int failed, rc;
    char *lines[Q_HEAD_LINES];
    size_t nlines;
    int more;

    if ((rc = q_find(spool, arg, 1, &qid, &failed)) != 0) {
        return rc;
    }
    if (q_load(spool, qid, failed, &m) == ENOENT) {
        fprintf(stderr, "relay25: message %s is gone (delivered or deleted meanwhile)\n", arg);
        q_msg_free(&m);
        return Q_NOT_FOUND;
    }
    nlines = q_head(spool, &m, lines, &more);
    if (json) {
        cJSON *o = q_json_msg(&m, q_now()), *h = NULL;
        if (o && (h = cJSON_AddArrayToObject(o, "headers"))) {
            for (size_t i = 0; i < nlines; i++) {
                cJSON *s = cJSON_CreateString(lines[i]);
                if (!s || !cJSON_AddItemToArray(h, s)) {
                    cJSON_Delete(s);
                    h = NULL;
                    break;
                }
            }
        }
        if (!h) {
            cJSON_Delete(o);
            o = NULL;
        }
        rc = q_json_print(o);
    } else {
        q_show_text(&m, lines, nlines, more);
    }
    for (size_t i = 0; i < nlines; i++) {
        free(lines[i]);
    }
    q_msg_free(&m);
    return rc;
}

/* ---- flush, delete, retry-failed ------------------------------------------------------- */

static int q_flush(const char *spool, const char *arg)
{
    uint64_t qid;
    int failed, rc;

    if (arg) {
        if ((rc = q_find(spool, arg, 1, &qid, &failed)) != 0) {
            return rc;
        }
        if (failed) {
            fprintf(stderr,
                    "relay25: message %s failed for good (in %s/failed): use `relay25 queue "
                    "retry-failed` to queue it again\n",
                    arg, spool);
            return Q_NOT_FOUND;
        }
    }
    return q_signal(spool);
}

/* Removes one message's files (spool_remove). 0, ENOENT when it was already
 * gone, or an errno value (printed). The caller syncs the directory. */
static int q_remove(const char *spool, uint64_t qid, int failed)
{
    char err[4400];
    int e = spool_remove(spool, q_spool_area(failed), qid, err, sizeof(err));

    if (e != 0 && e != ENOENT) {
        fprintf(stderr, "relay25: %s\n", err);
    }
    return e;
}

static int q_sync_area(const char *spool, int failed)
{
    int err;

    if ((err = spool_sync(spool, q_spool_area(failed))) != 0 && err != ENOENT) {
        fprintf(stderr, "relay25: cannot sync %s/%s: %s\n", spool, q_area(failed), strerror(err));
        return q_errno_rc(err);
    }
    return 0;
}

static int q_delete(const char *spool, const char *arg, int all, int failed)
{
    uint64_t qid, *ids;
    size_t n, done = 0;
    int err, rc = 0;

    if (!all) {
        char id[17];
        if ((rc = q_find(spool, arg, 1, &qid, &failed)) != 0) {
            return rc;
        }
        q_idstr(qid, id);
        err = q_remove(spool, qid, failed);
        if (err == ENOENT) {
            fprintf(stderr, "relay25: message %s is gone (delivered or deleted meanwhile)\n", id);
            return Q_NOT_FOUND;
        }
        rc = q_sync_area(spool, failed);
        if (err != 0) {
            return q_errno_rc(err);
        }
        printf("deleted %s\n", id);
        return rc;
    }
    if ((err = q_scan(spool, failed, &ids, &n)) != 0) {
        fprintf(stderr, "relay25: cannot read %s/%s: %s\n", spool, q_area(failed), strerror(err));
        return q_errno_rc(err);
    }
    for (size_t i = 0; i < n; i++) {
        err = q_remove(spool, ids[i], failed);
        if (err == 0) {
            done++;
        } else if (err != ENOENT) {
            rc = q_errno_rc(err);
        }
    }
    free(ids);
    if (n > 0) {
        int src = q_sync_area(spool, failed);
        rc = rc ? rc : src;
    }
    printf("deleted %zu %smessage%s\n", done, failed ? "failed " : "", done == 1 ? "" : "s");
    return rc;
}

static int q_retry_failed(const char *spool)
{
    uint64_t *ids;
    size_t n, moved = 0;
    struct stat owner;
    char err[4400], id[17];
    int e, rc = 0;

    if ((e = q_scan(spool, 1, &ids, &n)) != 0) {
        fprintf(stderr, "relay25: cannot read %s/failed: %s\n", spool, strerror(e));
        return q_errno_rc(e);
    }
    if (n == 0) {
        printf("No failed messages\n");
        return 0;
    }
    /* new files belong to whoever owns the spool (the daemon's user) */
    if (stat(spool, &owner) != 0) {
        e = errno;
        fprintf(stderr, "relay25: cannot stat %s: %s\n", spool, strerror(e));
        free(ids);
        return q_errno_rc(e);
    }
    for (size_t i = 0; i < n; i++) {
        q_idstr(ids[i], id);
        e = spool_requeue(spool, ids[i], q_now(), &owner, err, sizeof(err));
        if (e != 0) {
            fprintf(stderr, "relay25: %s not queued again: %s\n", id, q_clean(err));
            rc = e == EINVAL || e == EEXIST ? EX_DATAERR : q_errno_rc(e);
            continue;
        }
        printf("queued again: %s\n", id);
        moved++;
    }
    free(ids);
    if ((e = q_sync_area(spool, 0)) != 0 || (e = q_sync_area(spool, 1)) != 0) {
        rc = rc ? rc : e;
    }
    printf("%zu failed message%s queued again\n", moved, moved == 1 ? "" : "s");
    if (moved > 0) {
        e = q_signal(spool);
        rc = rc ? rc : e;
    }
    return rc;
}

/* ---- the command ----------------------------------------------------------------------- */

#define Q_NO_SPOOL                                                                                 \
    "no spool configured (mode = passthrough and no on_upstream_failure = queue, in [relay] "      \
    "and every device)"

/* The configuration keeps no spool, so no daemon of it queues anything: say so
 * rather than "empty" or "no running relay25" (a passthrough daemon writes no
 * pid file). A spool_dir left from an earlier configuration is still shown.
 * Returns an exit status, or -1 to go on as usual. */
static int q_no_spool(const char *spool, const char *cmd, int json)
{
    int exists = access(spool, F_OK) == 0;

    if (strcmp(cmd, "flush") == 0) {
        printf("%s: a passthrough relay25 keeps no queue, nothing to flush\n", Q_NO_SPOOL);
        return 0;
    }
    if (strcmp(cmd, "list") == 0 && !exists) {
        if (json) {
            fprintf(stderr, "relay25: %s\n", Q_NO_SPOOL);
            printf("[]\n");
        } else {
            printf("%s: nothing is queued\n", Q_NO_SPOOL);
        }
        return 0;
    }
    fprintf(stderr, "relay25: %s; showing what %s holds\n", Q_NO_SPOOL, spool);
    return -1;
}

int cli_queue_list_unconfigured(const char *spool_dir)
{
    /* the listing stays on stdout as always ("Mail queue is empty" for scripts);
     * stderr says there is no configuration behind it */
    if (access(spool_dir, F_OK) != 0) {
        fprintf(stderr,
                "relay25: no relay25 configuration (no RELAY25_CONFIG, no %s, no "
                "RELAY25_UPSTREAM) and no spool in %s: nothing is queued\n",
                RELAY25_DEFAULT_CONFIG, spool_dir);
    } else {
        fprintf(stderr, "relay25: no relay25 configuration found; listing the default spool %s\n",
                spool_dir);
    }
    return cli_queue_list(spool_dir, 0, 0);
}

/* Which arguments each subcommand takes (see q_usage). */
static int q_args_ok(const char *cmd, const char *arg, int all, int failed)
{
    if (strcmp(cmd, "list") == 0) {
        return !arg && !all;
    }
    if (strcmp(cmd, "show") == 0) {
        return arg && !all && !failed;
    }
    if (strcmp(cmd, "flush") == 0) {
        return !all && !failed;
    }
    if (strcmp(cmd, "delete") == 0) {
        return (arg != NULL) != all && (!failed || all);
    }
    if (strcmp(cmd, "retry-failed") == 0) {
        return !arg && !all && !failed;
    }
    return 0;
}

int cli_queue(int argc, char **argv)
{
    const char *path = NULL, *cmd = NULL, *arg = NULL;
    int json = 0, failed = 0, all = 0, held = 0, rc;
    struct conf *c;
    char helddir[4096];
    const char *spool;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "relay25 queue: %s needs a file\n", a);
                q_usage(stderr);
                return EX_USAGE;
            }
            path = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--failed") == 0) {
            failed = 1;
        } else if (strcmp(a, "--all") == 0) {
            all = 1;
        } else if (strcmp(a, "--held") == 0) {
            held = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            q_usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            fprintf(stderr, "relay25 queue: unknown option '%s'\n", a);
            q_usage(stderr);
            return EX_USAGE;
        } else if (!cmd) {
            cmd = a;
        } else if (!arg) {
            arg = a;
        } else {
            fprintf(stderr, "relay25 queue: unexpected argument '%s'\n", a);
            q_usage(stderr);
            return EX_USAGE;
        }
    }
    if (!cmd) {
        fprintf(stderr, "relay25 queue: the command is missing (list, show, flush, delete or "
                        "retry-failed)\n");
        q_usage(stderr);
        return EX_USAGE;
    }
    if (!q_args_ok(cmd, arg, all, failed)) {
        if (strcmp(cmd, "list") && strcmp(cmd, "show") && strcmp(cmd, "flush") &&
            strcmp(cmd, "delete") && strcmp(cmd, "retry-failed")) {
            fprintf(stderr, "relay25 queue: unknown command '%s'\n", cmd);
        } else if (strcmp(cmd, "show") == 0 && !arg) {
            fprintf(stderr, "relay25 queue: show needs an ID\n");
        } else if (strcmp(cmd, "delete") == 0 && !arg && !all) {
            fprintf(stderr, "relay25 queue: delete needs an ID (or --all)\n");
        } else {
            fprintf(stderr, "relay25 queue: bad arguments for '%s'\n", cmd);
        }
        q_usage(stderr);
        return EX_USAGE;
    }
    if (!(c = cli_load_conf(path, 0))) {
        return EX_CONFIG;
    }
    spool = c->spool_dir;
    if (sm_held_dir(helddir, sizeof(helddir)) != 0) {
        helddir[0] = '\0';
    }
    if (held) {
        if (!helddir[0]) {
            fprintf(stderr, "relay25 queue: no held directory (no home; set RELAY25_HELD_DIR)\n");
            conf_free(c);
            return EX_USAGE;
        }
        spool = helddir;
    } else if (!conf_spool_used(c) && (rc = q_no_spool(c->spool_dir, cmd, json)) >= 0) {
        if (helddir[0] && sm_held_count(helddir) > 0) {
            fprintf(stderr,
                    "relay25 queue: %zu message(s) held for you by sendmail in %s: `relay25 "
                    "queue --held list`\n",
                    sm_held_count(helddir), helddir);
        }
        conf_free(c);
        return rc;
    }
    if (held && strcmp(cmd, "flush") == 0) {
        uint64_t qid = 0;
        int f = 0;
        rc = arg ? q_find(spool, arg, 0, &qid, &f) : 0;
        if (rc == 0) {
            rc = cli_sendmail_flush_held(c, qid);
        }
    } else if (strcmp(cmd, "list") == 0) {
        rc = cli_queue_list(spool, failed, json);
        if (!held && helddir[0] && sm_held_count(helddir) > 0) {
            fprintf(stderr,
                    "relay25 queue: %zu message(s) held for you by sendmail in %s: `relay25 "
                    "queue --held list`\n",
                    sm_held_count(helddir), helddir);
        }
    } else if (strcmp(cmd, "show") == 0) {
        rc = q_show(spool, arg, json);
    } else if (strcmp(cmd, "flush") == 0) {
        rc = q_flush(spool, arg);
    } else if (strcmp(cmd, "delete") == 0) {
        rc = q_delete(spool, arg, all, failed);
    } else {
        rc = q_retry_failed(spool);
    }
    conf_free(c);
    return rc;
}
