/* log: one line per event on stderr, Postfix-like:
 *   "[<UTC time> ]<level> <sid> <module> key=value ..."
 * sid is a random 64-bit session id printed as %016llx (a spooled message's
 * delivery logs under its qid). Callers never pass passwords or AUTH payloads.
 * JSON output types integer values as numbers. */
#ifndef RELAY25_LOG_H
#define RELAY25_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERR };

void log_set_level(int level);
/* Where and how lines go: stderr (default) or syslog (facility mail), as
 * key=value text (default) or one JSON object per line. Without a syslog socket
 * to talk to, lines go to stderr with a warning: returns -1 then, else 0. */
int log_set_output(int use_syslog, int json);

enum log_ts {
    LOG_TS_AUTO = 0, /* on, unless stderr is the journal (it stamps lines itself) */
    LOG_TS_YES,
    LOG_TS_NO,
};
/* Text lines on stderr start with an RFC 3339 UTC time ("2026-12-03T19:18:13.123Z")
 * or not; syslog and JSON lines are unaffected (they carry their own time). */
void log_set_timestamps(enum log_ts mode);
/* 1 when stderr is the systemd journal's stream ($JOURNAL_STREAM names its
 * device and inode). */
int log_stderr_is_journal(void);
/* Parses "debug", "info", "warn", "error"; -1 if unknown. */
int log_level_parse(const char *s);
void log_msg(int level, uint64_t sid, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Fresh random id for a session or message. */
uint64_t log_new_id(void);
/* Copy s into buf as the inside of a "..." value: quotes, backslashes and control
 * characters escaped, truncated to fit. Returns buf. */
const char *log_quote(const char *s, size_t len, char *buf, size_t cap);

#define log_debug(sid, mod, ...) log_msg(LOG_DEBUG, sid, mod, __VA_ARGS__)
#define log_info(sid, mod, ...) log_msg(LOG_INFO, sid, mod, __VA_ARGS__)
#define log_warn(sid, mod, ...) log_msg(LOG_WARN, sid, mod, __VA_ARGS__)
#define log_err(sid, mod, ...) log_msg(LOG_ERR, sid, mod, __VA_ARGS__)

#endif
