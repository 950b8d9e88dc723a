/* spool_rec: the text records of a spooled message, pure functions with no I/O
 * (fuzzed by tests/fuzz/fuzz_spool.c). spool.h describes the files.
 *
 * .env: text lines "key value\n", in this order, "rcpt" repeated:
 *   relay25-spool 1
 *   created <unix seconds>
 *   device <device section name>
 *   user <upstream login at acceptance>
 *   route <[route NAME] chosen at MAIL>   (only when a route applies: its upstream
 *                                          and credentials replace the device's)
 *   client <ip>
 *   helo <name or ->
 *   body <7BIT|8BITMIME|->
 *   from <address, empty for the null sender>
 *   ret <FULL|HDRS>           (only with MAIL RET=, RFC 3461 §4.3)
 *   envid <xtext>             (only with MAIL ENVID=, RFC 3461 §4.4, as received)
 *   smtputf8 1                (only with MAIL SMTPUTF8, RFC 6531)
 *   rcpt <address>
 *   rcptdsn <NOTIFY=.. ORCPT=..> (only after a rcpt whose RCPT had them, as received)
 * Unknown keys are ignored (a newer writer may add some); files without the
 * DSN keys (older ones) read as messages without DSN parameters.
 *
 * .done (progress, appended): "ok <address>\n" or "failed <address> <reply>\n".
 * A torn last line (a crash while appending) does not count; for an address
 * listed twice the later line wins.
 *
 * defer/<qid> (why it waits, replaced after each attempt that left recipients
 * pending): "defer <attempts> <attempt unix time> <next retry unix time>
 * <address> <reply>\n" per pending recipient. The numbers come first: an
 * address may hold a quoted blank, so it and the reply take the rest of the
 * line as in "failed". The same reader parses both files; a defer record
 * changes no verdict. */
#ifndef RELAY25_SPOOL_REC_H
#define RELAY25_SPOOL_REC_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_ADDR_MAX 256

struct spool_env {
    uint64_t created;
    char device[128];
    char user[256];
    char route[128]; /* "" when the device's own upstream serves it */
    char client[64];
    char helo[256];
    char body[16]; /* "7BIT", "8BITMIME" or "" */
    char from[SPOOL_ADDR_MAX];
    char (*rcpt)[SPOOL_ADDR_MAX]; /* nrcpt entries, malloc'd */
    size_t nrcpt;
    char ret[8];     /* "FULL", "HDRS" or "" */
    char envid[104]; /* xtext (at most 100 octets) or "" */
    int smtputf8;
    /* per rcpt: its RCPT's DSN parameters ("NOTIFY=.. ORCPT=..", malloc'd) or
     * NULL; rdsn itself NULL when none has any. spool_env_free frees it. */
    char **rdsn;
};

/* Parse a .env file's text. Returns 0, or -1 with a reason in err. env->rcpt is
 * malloc'd (free with spool_env_free). */
int spool_env_parse(const char *text, size_t len, struct spool_env *env, char *err, size_t errlen);
/* Serialise; returns malloc'd text and its length, NULL on allocation failure. */
char *spool_env_format(const struct spool_env *env, size_t *len);
void spool_env_free(struct spool_env *env);
/* env->rcpt from n addresses (each cut at SPOOL_ADDR_MAX - 1 bytes), replacing
 * any; 0, or -1 when out of memory. */
int spool_env_set_rcpt(struct spool_env *env, char *const *rcpt, size_t n);

/* ---- progress records (.done) ---- */

enum spool_verdict {
    SPOOL_PENDING = 0,
    SPOOL_OK,
    SPOOL_FAILED,
    SPOOL_DEFERRED, /* a record kind only: the recipient stays SPOOL_PENDING */
};

struct spool_done_rec {
    enum spool_verdict verdict; /* SPOOL_OK, SPOOL_FAILED or SPOOL_DEFERRED */
    const char *addr;           /* not NUL-terminated: addr_len bytes */
    size_t addr_len;
    const char *reply; /* failed, deferred: the upstream reply (reply_len bytes, maybe 0) */
    size_t reply_len;
    /* deferred only (else 0): */
    uint32_t attempts;   /* delivery attempts that included the recipient so far */
    uint64_t last;       /* unix time of the attempt that deferred it */
    uint64_t next_retry; /* unix time the daemon planned the next attempt for */
};

/* Why a pending recipient waits: its latest defer record (all 0 / NULL: none). */
struct spool_defer {
    uint32_t attempts;
    uint64_t last;
    uint64_t next_retry;
    char *reply; /* malloc'd, or NULL */
};

/* The next complete record of a .done text from *p (advanced past it; lines
 * that are no record are skipped). 1 with rec filled, 0 at the end. */
int spool_done_next(const char **p, const char *end, struct spool_done_rec *rec);

/* One record line into out ("ok ADDR\n", "failed ADDR REPLY\n"; the reply is cut
 * at its first CR or LF). Returns its length, or 0 if it does not fit in cap. */
size_t spool_done_format(char *out, size_t cap, enum spool_verdict v, const char *addr,
                         const char *reply);

/* One defer record line into out; 0 if it does not fit in cap (reply cut as above). */
size_t spool_defer_format(char *out, size_t cap, const char *addr, const struct spool_defer *d);

/* The verdicts of a .done text for env's recipients: verdict[i] (enum
 * spool_verdict, left alone for an unlisted one) and, when reply is given, the
 * reply of a failed one in reply[i] (malloc'd, replacing what was there; NULL
 * when the record has none). Returns 0, or -1 when out of memory. */
int spool_done_apply(const char *text, size_t len, const struct spool_env *env,
                     unsigned char *verdict, char **reply);
/* The latest defer record of a .done text per env recipient into defer[i] (its
 * reply malloc'd, replacing what was there). 0, or -1 when out of memory. */
int spool_done_deferrals(const char *text, size_t len, const struct spool_env *env,
                         struct spool_defer *defer);
/* Frees the replies of n entries and the array. */
void spool_defer_free(struct spool_defer *d, size_t n);

#endif
