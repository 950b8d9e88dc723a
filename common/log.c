/* log: one line per event on stderr in Postfix-like key=value form (or JSON,
 * or syslog). Lines are formatted into one buffer and written with a single
 * write(2) so lines from one process never interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* In log_syslog.c, which includes <syslog.h>: its LOG_* macros collide with ours. */
int log__syslog_available(void);
void log__syslog_open(void);
void log__syslog_close(void);
void log__syslog(int level, const char *line, size_t len);

static int log_level = LOG_INFO;
static int log_syslog;
static int log_json;
static int log_stamp; /* text lines on stderr start with the time (serve: log_timestamps) */

static const char *const log_names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level)
{
    log_level = level;
}

int log_set_output(int use_syslog, int json)
{
    int fallback = use_syslog && !log__syslog_available();

    if (fallback) {
        /* syslog(3) drops lines silently when nothing listens: a daemon that
         * logs nothing at all is worse than one that logs to stderr */
        use_syslog = 0;
    }
    if (use_syslog && !log_syslog) {
        log__syslog_open();
    } else if (!use_syslog && log_syslog) {
        log__syslog_close();
    }
    log_syslog = use_syslog;
    log_json = json;
    if (fallback) {
        log_warn(
            0, "relay25",
            "event=log_fallback log=syslog using=stderr reason=\"no syslog socket (/dev/log)\"");
        return -1;
    }
    return 0;
}

int log_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char end;

    /* systemd.exec(5): "<device>:<inode>" of the stream it connected */
    if (!e || sscanf(e, "%llu:%llu%c", &dev, &ino, &end) != 2 || fstat(STDERR_FILENO, &st) != 0) {
        return 0;
    }
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_timestamps(enum log_ts mode)
{
    log_stamp = mode == LOG_TS_YES || (mode == LOG_TS_AUTO && !log_stderr_is_journal());
}

/* Keys whose values are names or ids even when they look like numbers (a
 * device called "1", a user "1234", a qid of 16 decimal digits). */
static int log_text_key(const char *k, size_t kl)
{
    static const char *const keys[] = {"qid",   "id",    "user",    "login", "device", "route",
                                       "relay", "helo",  "name",    "from",  "to",     "client",
                                       "next",  "using", "version", "addr",  "host",   "mechanism"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strlen(keys[i]) == kl && memcmp(keys[i], k, kl) == 0) {
            return 1;
        }
    }
    return 0;
}

/* An integer JSON can carry exactly: no leading zero, at most 15 digits (below
 * 2^53, what a double holds: the consumer may parse it as one). */
static int log_is_int(const char *v, size_t len)
{
    size_t i = len > 0 && v[0] == '-';

    if (i == len || len - i > 15 || (v[i] == '0' && len - i > 1)) {
        return 0;
    }
    for (; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Appends s[0..len) JSON-escaped; returns the new length (stops before cap). */
static size_t log_json_str(char *out, size_t o, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            o += 4;
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* key=value / key="quoted \"text\"" pairs -> JSON members; words without '=' are
 * gathered in "msg". An unquoted integer becomes a JSON number (unless its key
 * names something, log_text_key); everything else is a string. */
static size_t log_to_json(const char *head, const char *body, char *out, size_t cap)
{
    size_t o = 0;
    const char *p = body;
    char msg[512];
    size_t ml = 0;

    o = (size_t)snprintf(out, cap, "{%s", head);
    while (*p && o + 16 < cap) {
        const char *k = p, *eq;
        while (*p && *p != ' ' && *p != '=') {
            p++;
        }
        if (*p != '=') { /* a plain word */
            if (ml + (size_t)(p - k) + 2 < sizeof(msg)) {
                if (ml) {
                    msg[ml++] = ' ';
                }
                memcpy(msg + ml, k, (size_t)(p - k));
                ml += (size_t)(p - k);
            }
            while (*p == ' ') {
                p++;
            }
            continue;
        }
        eq = p++;
        out[o++] = ',';
        out[o++] = '"';
        o = log_json_str(out, o, cap, k, (size_t)(eq - k));
        out[o++] = '"';
        out[o++] = ':';
        if (*p != '"') {
            const char *v = p;
            size_t vl = strcspn(v, " ");
            if (vl + 8 < cap - o && !log_text_key(k, (size_t)(eq - k)) && log_is_int(v, vl)) {
                memcpy(out + o, v, vl);
                o += vl;
                p += vl;
                while (*p == ' ') {
                    p++;
                }
                continue;
            }
        }
        out[o++] = '"';
        if (*p == '"') {
            p++;
            while (*p && *p != '"' && o + 8 < cap) {
                if (*p == '\\' && p[1]) {
                    p++;
                }
                o = log_json_str(out, o, cap, p, 1);
                p++;
            }
            if (*p == '"') {
                p++;
            }
        } else {
            const char *v = p;
            while (*p && *p != ' ') {
                p++;
            }
            o = log_json_str(out, o, cap, v, (size_t)(p - v));
        }
        out[o++] = '"';
        while (*p == ' ') {
            p++;
        }
    }
    if (ml && o + ml + 16 < cap) {
        memcpy(out + o, ",\"msg\":\"", 8);
        o += 8;
        o = log_json_str(out, o, cap, msg, ml);
        out[o++] = '"';
    }
    if (o + 2 < cap) {
        out[o++] = '}';
    }
    out[o] = '\0';
    return o;
}

int log_level_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcasecmp(s, log_names[i]) == 0) {
            return (int)i;
        }
    }
    if (strcasecmp(s, "err") == 0 || strcasecmp(s, "warning") == 0) {
        return strcasecmp(s, "err") == 0 ? LOG_ERR : LOG_WARN;
    }
    return -1;
}

void log_msg(int level, uint64_t sid, const char *module, const char *fmt, ...)
{
    char line[4096];
    size_t n;
    int r;
    va_list ap;

    if (level < log_level) {
        return;
    }
    if (level < LOG_DEBUG || level > LOG_ERR) {
        level = LOG_ERR;
    }
    n = 0;
    if (log_stamp && !log_json && !log_syslog) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        r = snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
        n += r < 0 ? 0 : (size_t)r;
    }
    r = snprintf(line + n, sizeof(line) - n, "%s %016llx %s ", log_names[level],
                 (unsigned long long)sid, module);
    n += r < 0 ? 0 : (size_t)r;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r < 0) {
        r = 0;
    }
    n += (size_t)r;
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2; /* truncated: keep the line a line */
    }
    if (log_json) {
        char head[160], js[4096];
        struct timespec ts;
        struct tm tm;
        char tbuf[40];
        size_t hl = strlen(log_names[level]) + 1 + 16 + 1 + strlen(module) + 1;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
        line[n] = '\0';
        snprintf(head, sizeof(head),
                 "\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"sid\":\"%016llx\",\"module\":\"%s\"",
                 tbuf, ts.tv_nsec / 1000000, log_names[level], (unsigned long long)sid, module);
        n = log_to_json(head, hl < n ? line + hl : "", js, sizeof(js) - 1);
        memcpy(line, js, n < sizeof(line) - 1 ? n : sizeof(line) - 2);
        n = n < sizeof(line) - 1 ? n : sizeof(line) - 2;
    }
    if (log_syslog) {
        log__syslog(level, line, n);
        return;
    }
    line[n++] = '\n';
    /* stderr may be a pipe shared with other writers: one write per line */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
}

uint64_t log_new_id(void)
{
    static uint64_t fallback = 0x9e3779b97f4a7c15ull;
    uint64_t id;

    if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
        fallback = fallback * 6364136223846793005ull + (uint64_t)getpid();
        id = fallback;
    }
    return id ? id : 1;
}

const char *log_quote(const char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    static const char hex[] = "0123456789abcdef";

    if (cap == 0) {
        return buf;
    }
    for (size_t i = 0; i < len && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c == '"' || c == '\\') ? 2 : (c < 0x20 || c == 0x7f) ? 4 : 1;
        if (o + need >= cap) {
            break;
        }
        if (need == 2) {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (need == 4) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}
