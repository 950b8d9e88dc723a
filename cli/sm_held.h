/* sm_held: messages `relay25 sendmail` keeps for its caller when it submits to a
 * relay25 daemon ([sendmail] submit) that cannot be reached and no spool it may
 * write can take them: they go to the caller's own held directory, in the spool's
 * format (spool/, committed with spool_commit_fd), and leave it only when sent.
 * `sendmail -q`, `relay25 queue --held flush` (and `list`, `show`, `delete`) work
 * on it. The directory: $RELAY25_HELD_DIR, else $XDG_STATE_HOME/relay25/held,
 * else ~/.local/state/relay25/held. Errors are sysexits codes. */
#ifndef RELAY25_SM_HELD_H
#define RELAY25_SM_HELD_H

#include <stddef.h>
#include <stdint.h>

struct sm_msg;

/* The caller's held directory into out. 0, or -1 when there is no home to put
 * it in (nor RELAY25_HELD_DIR) or the path does not fit. */
int sm_held_dir(char *out, size_t cap);

/* Keeps one message: the header section (m->hdr, then added, then the blank
 * line) and m's body, for sender and m's recipients. The directory is created
 * (0700) when missing. 0 with *qid, or EX_CANTCREAT / EX_IOERR with err. */
int sm_held_keep(const char *dir, const struct sm_msg *m, const char *sender, const char *added,
                 size_t addedlen, uint64_t *qid, char *err, size_t cap);

/* How many messages wait in dir (0 when it does not exist). */
size_t sm_held_count(const char *dir);

/* Sends one held message: m->fd holds the whole content (raw), m's recipients
 * and m->eightbit are set. 0, or a sysexits code with the reason in why. */
typedef int sm_held_send_fn(void *arg, struct sm_msg *m, const char *sender, char *why, size_t cap);

/* Sends the held messages (only qid when it is not 0), oldest first, stopping
 * at the first temporary failure. A sent message is removed; one refused for
 * good (EX_UNAVAILABLE, EX_NOUSER, EX_DATAERR) moves to <dir>/failed with the
 * reason. *sent and *failed count them. 0 when none is left waiting, else the
 * status of the one that stopped the run (EX_TEMPFAIL...), or 1 (qid not held). */
int sm_held_flush(const char *dir, uint64_t qid, sm_held_send_fn *send, void *arg, size_t *sent,
                  size_t *failed);

#endif
