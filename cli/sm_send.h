/* sm_send: one SMTP transaction of `relay25 sendmail` on a private uv loop (up_send,
 * all recipients or none), to a relay25 daemon ([sendmail] submit, plain SMTP) or to
 * the device's upstream through a pool (failover included); and the command's
 * messages on stderr. RFC 5321; results are sysexits.h codes. */
#ifndef RELAY25_SM_SEND_H
#define RELAY25_SM_SEND_H

#include <stddef.h>

#define SM_NAME "relay25-sendmail"
/* sm_send_run: the daemon could not be reached before the transaction (why says how) */
#define SM_UNREACHABLE (-1)

struct conf;
struct conf_device;
struct sm_msg;

struct sm_send_in {
    const struct conf *c;
    const struct conf_device *dev; /* direct mode: whose upstream and login */
    struct sm_msg *m;
    const char *sender; /* "" for the null sender */
    const char *added;  /* header lines we add (CRLF lines), after the caller's */
    size_t addedlen;
    int raw;     /* m->fd holds the whole message, header section included */
    int verbose; /* -v: the dialogue on stderr */
    char *why;   /* submit mode: a failure to reach the daemon is described here */
    size_t whycap;
};

/* One transaction; 0, a sysexits code, or SM_UNREACHABLE (submit mode, in->why
 * set: nothing was sent and the daemon could not be reached). */
int sm_send_run(const struct sm_send_in *in);

/* "relay25-sendmail: TEXT" on stderr, control characters made '?'; the text is
 * also kept for sm_last_said (the -bs reply to a failed message). */
void sm_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *sm_last_said(void);
/* Control characters (an upstream could send terminal escapes) become '?'. */
const char *sm_clean(char *s);

#endif
