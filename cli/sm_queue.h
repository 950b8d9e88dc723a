/* sm_queue: `relay25 sendmail`'s fallback when the relay25 daemon it submits to
 * ([sendmail] submit) cannot be reached: the message is committed to the daemon's
 * spool (spool/) as the daemon would have spooled it from a loopback client (the
 * device, sender rewrite, route, policy and Received: line of that submission),
 * and the daemon delivers it from there. Errors are sysexits codes. */
#ifndef RELAY25_SM_QUEUE_H
#define RELAY25_SM_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct sm_msg;

struct sm_queue_in {
    const struct conf *c;
    const struct sm_msg *m;
    const char *submit; /* [sendmail] submit: its address picks the client address */
    const char *sender; /* envelope sender as sendmail would send it ("" for <>) */
    const char *added;  /* the header lines sendmail adds (CRLF lines) */
    size_t addedlen;
};

/* May this process queue? The configuration keeps a spool (conf_spool_used),
 * spool_dir exists, and we are root or its owner (the daemon's user): anyone
 * else could not write it, or would leave files the daemon cannot read.
 * 0, or -1 with the reason in why. */
int sm_queue_possible(const struct conf *c, char *why, size_t cap);

/* Checks the submission as the daemon would (allow, device, allowed_senders,
 * allowed_recipients, max_recipients, sizes, max_spool_size; not the rate limits,
 * whose state lives in the daemon) and commits it. 0 with *qid; else a sysexits
 * code (EX_TEMPFAIL: not queued, try again; EX_UNAVAILABLE / EX_NOUSER: the
 * daemon would refuse it for good) with the reason in err. */
int sm_queue_commit(const struct sm_queue_in *in, uint64_t *qid, char *err, size_t cap);

#endif
