/* log: one line per event on stderr in Postfix-like key=value form. Lines are
 * formatted into one buffer and written with a single write(2) so lines from
 * one process never interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

static int log_level = LOG_INFO;

static const char *const log_names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level)
{
    log_level = level;
}

int log_enabled(int level)
{
    return level >= log_level;
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
    char line[2048];
    size_t n;
    int r;
    va_list ap;

    if (level < log_level) {
        return;
    }
    if (level < LOG_DEBUG || level > LOG_ERR) {
        level = LOG_ERR;
    }
    r = snprintf(line, sizeof(line), "%s %016llx %s ", log_names[level], (unsigned long long)sid,
                 module);
    n = r < 0 ? 0 : (size_t)r;
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
