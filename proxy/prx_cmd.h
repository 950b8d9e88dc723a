/* prx_cmd: inbound SMTP command-line parser (RFC 5321 §4.1). Lenient where
 * legacy devices are sloppy and it is safe: lower-case verbs, "MAIL FROM: <a>",
 * "MAIL FROM:a@b" without angle brackets. */
#ifndef RELAY25_PRX_CMD_H
#define RELAY25_PRX_CMD_H

#include <stddef.h>

#define PRX_LINE_MAX 512 /* RFC 5321 §4.5.3.1.4, CRLF included */
#define PRX_PATH_MAX 256 /* RFC 5321 §4.5.3.1.3 */

enum prx_verb {
    PRX_V_UNKNOWN = 0,
    PRX_V_HELO,
    PRX_V_EHLO,
    PRX_V_MAIL,
    PRX_V_RCPT,
    PRX_V_DATA,
    PRX_V_RSET,
    PRX_V_NOOP,
    PRX_V_QUIT,
    PRX_V_VRFY,
    PRX_V_EXPN,
    PRX_V_HELP,
    PRX_V_STARTTLS,
    PRX_V_AUTH,
    PRX_V_BDAT,
};

struct prx_cmd {
    enum prx_verb verb;
    const char *arg; /* after the verb and its blanks, points into the line; "" if none */
    size_t arglen;   /* trailing blanks removed */
};

/* line excludes CRLF. Returns 0; verb is PRX_V_UNKNOWN for anything else
 * (including a verb glued to its argument such as "MAILFROM:"). */
int prx_cmd_parse(const char *line, size_t len, struct prx_cmd *out);

enum prx_path_err {
    PRX_PATH_OK = 0,
    PRX_PATH_SYNTAX = -1, /* missing "FROM:"/"TO:", unbalanced <>, blanks inside */
    PRX_PATH_TOO_LONG = -2,
};

/* Parse the argument of MAIL (keyword "FROM") or RCPT (keyword "TO").
 * Copies the address without angle brackets into addr (NUL-terminated, "" for <>),
 * and points *params at the ESMTP parameters that follow ("" if none).
 * Accepts "FROM:<a>", "FROM: <a>", "FROM:a", "from:<a> SIZE=10"; source routes
 * ("<@x,@y:a@b>") are reduced to the mailbox (RFC 5321 §4.1.2 says ignore them). */
int prx_cmd_path(const char *arg, size_t arglen, const char *keyword, char *addr, size_t addrsz,
                 const char **params, size_t *paramslen);

/* Find ESMTP parameter name (case-insensitive) in a params string, e.g. "SIZE".
 * Returns 1 and sets *val and *vallen ("" for a bare keyword) if present, else 0. */
int prx_cmd_param(const char *params, size_t len, const char *name, const char **val,
                  size_t *vallen);

#endif
