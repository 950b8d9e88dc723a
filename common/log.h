/* log: one line per event on stderr, Postfix-like:
 *   "<level> <sid> <module> key=value ..."
 * sid is a random 64-bit session id printed as %016llx. Callers never pass
 * passwords or AUTH payloads. */
#ifndef RELAY25_LOG_H
#define RELAY25_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERR };

void log_set_level(int level);
/* Where and how lines go: stderr (default) or syslog (facility mail), as
 * key=value text (default) or one JSON object per line. */
void log_set_output(int use_syslog, int json);
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
