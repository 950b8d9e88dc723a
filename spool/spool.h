/* spool: the durable message store; the only code that knows its layout. One
 * message is three files in <spool_dir>/q/ named by its queue id (16 hex digits):
 *   <qid>.msg   the content (unstuffed, CRLF line ends, Received: line included)
 *   <qid>.env   the envelope and routing, written last: its rename is the commit
 *   <qid>.done  recipients finished so far, appended (one record each)
 * Messages that failed for good move to <spool_dir>/failed/ (bounce = keep),
 * with a <qid>.reason file. <spool_dir>/defer/<qid> says why a queued message
 * waits: one spool_rec "defer" record per recipient the last attempt left
 * pending, replaced after each such attempt, removed with the message (a note
 * for `relay25 queue` and the attempt count; losing it loses no mail, and q/
 * and the .done keep exactly the files and records they always had). Temp files live in
 * <spool_dir>/tmp/ (new messages) or beside their target ("*.tmp-XXXXXX", common/afile) and are
 * removed at startup, as is a .msg without its .env (never committed). Record formats: spool_rec.h;
 * new messages from the loop: spool_writer.h.
 *
 * Every function here blocks (plain POSIX): thread-pool work, startup and the
 * `queue` and `sendmail` commands only, never the loop. Errors are errno values. */
#ifndef RELAY25_SPOOL_H
#define RELAY25_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "spool/spool_rec.h"

enum spool_area {
    SPOOL_AREA_Q,      /* q/: waiting for delivery */
    SPOOL_AREA_FAILED, /* failed/: failed for good, kept (bounce = keep) */
};

#define SPOOL_FILE_MAX (4u << 20) /* .env / .done / .reason larger than this are corrupt */

/* A fresh queue id: 64 random bits, never 0. Does not block. */
uint64_t spool_new_id(void);

/* "<dir>/q/<qid>.msg" or "<dir>/failed/<qid>.msg": the content, for a reader
 * that opens it itself (uv_fs_open on the loop). 0, or -1 if it does not fit. */
int spool_msg_path(char *out, size_t cap, const char *dir, enum spool_area area, uint64_t qid);
/* "<dir>/q" or "<dir>/failed". 0, or -1 if it does not fit. */
int spool_area_path(char *out, size_t cap, const char *dir, enum spool_area area);

/* Inside spool/ only: "<dir>/<area>/<qid><ext>", the id in lower-case hex. 0 or -1. */
int spool__path(char *out, size_t cap, const char *dir, const char *area, uint64_t qid,
                const char *ext);

/* Creates <dir>, <dir>/q, <dir>/tmp, <dir>/failed (mode 0700) if missing,
 * removes stale temp files and uncommitted .msg files. Startup only. */
int spool_prepare(const char *dir, char *err, size_t errlen);
/* The committed messages (those with a .env) of an area, ids sorted; sizes[i]
 * (when sizes is given) the .msg size or 0. A missing area holds none. Both
 * arrays malloc'd (NULL when n = 0). */
int spool_scan(const char *dir, enum spool_area area, uint64_t **ids, uint64_t **sizes, size_t *n);
/* fsync an area's directory (renames and unlinks in it become durable). */
int spool_sync(const char *dir, enum spool_area area);

/* One message as stored. */
struct spool_msg {
    uint64_t qid;
    enum spool_area area;
    struct spool_env env;
    uint64_t size;          /* of the .msg, 0 when unknown */
    unsigned char *verdict; /* enum spool_verdict per env.rcpt, from the .done */
    char **reply;           /* a failed recipient's reply (malloc'd), or NULL */
    char *reason;           /* failed/: the .reason's first line, or NULL */
    /* per env.rcpt: its latest defer record (all zero: none) */
    struct spool_defer *defer;
};

/* Loads envelope, .msg size, progress, (q/) deferrals and (failed/) reason. 0; ENOENT when the
 * .env is gone (delivered or deleted); EINVAL when it is no envelope; another
 * errno value when it cannot be read. On failure err says why, m->qid, m->area
 * and m->size are set, and m must still be freed. */
int spool_load(const char *dir, enum spool_area area, uint64_t qid, struct spool_msg *m, char *err,
               size_t errlen);
void spool_msg_free(struct spool_msg *m);
/* The first max bytes of the content, NUL-terminated (malloc'd), or NULL with *err. */
char *spool_msg_head(const char *dir, enum spool_area area, uint64_t qid, size_t max, size_t *len,
                     int *err);

/* Replaces defer/<qid> with text (spool_defer_format lines), creating defer/
 * when missing. 0 or an errno value. */
int spool_defer_write(const char *dir, uint64_t qid, const char *text, size_t len);
/* Removes defer/<qid> if there is one (spool_remove of q/ and spool_fail do). */
void spool_defer_drop(const char *dir, uint64_t qid);

/* Appends progress records to q/<qid>.done and fsyncs it (a recipient recorded
 * is never sent again, even after a crash). text: spool_done_format lines. */
int spool_done_append(const char *dir, uint64_t qid, const char *text, size_t len);

/* Commits a complete new message to q/ at once (content, then envelope, each
 * atomically; the .env is the commit). For small generated messages (bounces). */
int spool_commit(const char *dir, uint64_t qid, const char *msg, size_t msglen,
                 const struct spool_env *env);
/* Commits a new message from a short-lived command (`sendmail` when the daemon
 * cannot be reached), in spool_writer's order: tmp/<qid>.msg (the head pieces,
 * then body_fd from offset 0 to its end) fsync'd, tmp/<qid>.env fsync'd, both
 * renamed into q/ (the .env last: the commit), q/ fsync'd. q/ and tmp/ are
 * created (0700) when missing; dir must exist. When we run as root, new files
 * and directories get owner's uid/gid so the daemon can read them. On success
 * *size is the .msg size. An errno value on failure, err naming the step, and
 * nothing is left behind. */
int spool_commit_fd(const char *dir, uint64_t qid, const struct iovec *head, size_t nhead,
                    int body_fd, const struct spool_env *env, const struct stat *owner,
                    uint64_t *size, char *err, size_t errlen);
/* Moves q/<qid> to failed/ with a .reason (reason: its text, may be empty),
 * committed by the .env's arrival in failed/; q/ and failed/ synced. A crash on
 * the way leaves the message in q/, or in failed/ plus q/ leftovers startup removes. */
int spool_fail(const char *dir, uint64_t qid, const char *reason, size_t len, char *err,
               size_t errlen);
/* Puts failed/<qid> back into q/ with created = now: the .msg hard-linked, the
 * .done reduced to its "ok" records (the failed recipients are pending again),
 * the .env renamed in last; then failed/ loses it. New files get owner's uid/gid
 * when we run as root. EEXIST when q/ holds the id already, EINVAL when the
 * envelope is unreadable; err says why. The caller syncs both areas. */
int spool_requeue(const char *dir, uint64_t qid, uint64_t now, const struct stat *owner, char *err,
                  size_t errlen);
/* Removes one message's files, .env first: from then on it is gone for every
 * reader (a delivery already under way still finishes). 0, ENOENT when it was
 * gone already, or an errno value with err naming the file. The caller syncs. */
int spool_remove(const char *dir, enum spool_area area, uint64_t qid, char *err, size_t errlen);
/* ---- group commit (spool_writer's thread-pool work; blocking) ---- */

/* Appends to tmp/<qid>.msg, creating it (O_EXCL, 0600) when *fd < 0. 0 or an errno value. */
int spool_tmp_append(const char *dir, uint64_t qid, int *fd, const char *data, size_t len);
/* Drops a message being written: fd closed (when >= 0), its tmp/ files unlinked,
 * and its q/ files too when committed (.env first). */
void spool_tmp_drop(const char *dir, uint64_t qid, int fd, int committed);

/* One message of a batch: content so far in tmp/<qid>.msg (fd, or -1 when
 * nothing was written yet), tail the rest of it, envtext the formatted .env. */
struct spool_batch_item {
    const char *dir;
    uint64_t qid;
    int fd; /* closed by the batch */
    const char *tail;
    size_t tail_len;
    const char *envtext;
    size_t envlen;
    int err;     /* out: 0 = committed and durable; else an errno value, nothing left */
    int envfd;   /* inside the batch */
    int renamed; /* inside the batch: 1 .msg, 2 .env in q/ */
};
/* Group commit of n messages in spool_commit_fd's order, step by step over the
 * whole batch: all contents and envelopes written, then fsync'd (write-back of
 * all started first), then renamed into q/ (.env last), then one fsync of q/
 * per spool directory. Returns the fsync calls made. */
size_t spool_commit_batch(struct spool_batch_item *it, size_t n);
#endif
