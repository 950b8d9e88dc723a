/* up_spool: the durable message store. One message is three files in
 * <spool_dir>/q/ named by its queue id (16 hex digits):
 *   <qid>.msg   the content (unstuffed, CRLF line ends, Received: line included)
 *   <qid>.env   the envelope and routing, written last: its rename is the commit
 *   <qid>.done  recipients finished so far, appended (one line each)
 * Messages that failed for good move to <spool_dir>/failed/ (bounce = keep),
 * with a <qid>.reason file. Temp files live in <spool_dir>/tmp/ and are removed
 * at startup, as is a .msg without its .env (never acknowledged).
 *
 * .env format: text lines "key value\n", in this order, "rcpt" repeated:
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
 *   rcpt <address>
 * .done format: "ok <address>\n" or "failed <address> <reply text>\n".
 *
 * Writes go through uv_fs_* (libuv's thread pool): the loop never blocks. A
 * message is committed only after its data, its envelope and the directory are
 * fsync'd. */
#ifndef RELAY25_UP_SPOOL_H
#define RELAY25_UP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define UP_SPOOL_ADDR_MAX 256

struct up_spool_env {
    uint64_t created;
    char device[128];
    char user[256];
    char route[128]; /* "" when the device's own upstream serves it */
    char client[64];
    char helo[256];
    char body[16]; /* "7BIT", "8BITMIME" or "" */
    char from[UP_SPOOL_ADDR_MAX];
    char (*rcpt)[UP_SPOOL_ADDR_MAX]; /* nrcpt entries, malloc'd */
    size_t nrcpt;
};

/* Parse a .env file's text. Returns 0, or -1 with a reason in err. env->rcpt is
 * malloc'd (free with up_spool_env_free). */
int up_spool_env_parse(const char *text, size_t len, struct up_spool_env *env, char *err,
                       size_t errlen);
/* Serialise; returns malloc'd text and its length, NULL on allocation failure. */
char *up_spool_env_format(const struct up_spool_env *env, size_t *len);
void up_spool_env_free(struct up_spool_env *env);
/* Recipients already finished according to a .done file's text: 1 if addr is listed. */
int up_spool_done_has(const char *text, size_t len, const char *addr);

/* Blocking file helpers for thread-pool work and the `queue` command (never on
 * the loop). up_spool_read: the whole file NUL-terminated; more than max bytes is
 * EFBIG unless trunc_ok (then the first max bytes); NULL with *err (errno) set.
 * up_spool_write_all: 0, or -1 with errno. */
char *up_spool_read(const char *path, size_t max, int trunc_ok, size_t *len, int *err);
int up_spool_write_all(int fd, const char *p, size_t len);

/* Paths: "<dir>/q/<qid>.env" etc. Returns 0 or -1 if it does not fit. */
int up_spool_path(char *out, size_t cap, const char *dir, const char *area, uint64_t qid,
                  const char *ext);
/* Creates <dir>, <dir>/q, <dir>/tmp, <dir>/failed (mode 0700) if missing,
 * removes stale temp files and uncommitted .msg files. Blocking: startup only. */
int up_spool_prepare(const char *dir, char *err, size_t errlen);

/* ---- streaming a new message to disk ---- */

struct up_spool_writer;

struct up_spool_writer_cbs {
    /* Buffered data was written: more up_spool_write() is welcome. */
    void (*on_drain)(void *arg);
    /* up_spool_commit finished: err 0 = on disk for good; else a negative uv
     * error (UV_ENOSPC, UV_EIO, ...) and nothing is left behind. */
    void (*on_done)(void *arg, int err, uint64_t size);
};

#define UP_SPOOL_WBUF (64u * 1024u)

/* Starts tmp/<qid>.msg. Errors (e.g. the disk) come later through on_done. */
struct up_spool_writer *up_spool_writer_new(uv_loop_t *loop, const char *dir, uint64_t qid,
                                            const struct up_spool_writer_cbs *cbs, void *arg);
/* Appends content. Returns 1 when the caller should pause until on_drain, 0 to
 * go on, or a negative uv error (the writer failed; commit/abort still needed). */
int up_spool_write(struct up_spool_writer *w, const char *data, size_t len);
/* Flushes, fsyncs, writes the .env, renames both into q/, fsyncs the directory,
 * then on_done. The writer frees itself after on_done. */
void up_spool_commit(struct up_spool_writer *w, const struct up_spool_env *env);
/* Drops the message: closes and unlinks the temp file; no callback; frees itself. */
void up_spool_abort(struct up_spool_writer *w);
uint64_t up_spool_written(const struct up_spool_writer *w);

#endif
