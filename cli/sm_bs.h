/* sm_bs: `sendmail -bs`, SMTP on standard input and output (what Symfony Mailer,
 * Laravel and other frameworks call by default). Only the protocol lives here:
 * the envelope and the message are collected, and each message is handed to the
 * caller's deliver function when its data ends; its sysexits status becomes the
 * reply (common/reply: reply_sendmail). RFC 5321, RFC 1870, RFC 6152, RFC 2920. */
#ifndef RELAY25_SM_BS_H
#define RELAY25_SM_BS_H

#include <stddef.h>

struct conf;
struct sm_msg;

/* Delivers one message (m: recipients qualified, header section and body as
 * read; sender as given, "" for <>). Returns 0 or a sysexits code, with what
 * to tell the client in text (e.g. "Ok: queued as ...", or the reason). */
typedef int sm_bs_deliver_fn(void *arg, struct sm_msg *m, const char *sender, char *text,
                             size_t cap);

struct sm_bs_in {
    const struct conf *c;
    const char *origin; /* qualifies unqualified addresses */
    sm_bs_deliver_fn *deliver;
    void *arg;
};

/* Serves one SMTP session on fd 0 / fd 1 until QUIT or the end of input. Returns 0
 * when every message whose data ended was delivered (or queued), else the sysexits
 * code of the first that was not; EX_PROTOCOL when the input ended inside DATA or
 * after too many errors; EX_IOERR when the output cannot be written. */
int sm_bs_run(const struct sm_bs_in *in);

#endif
