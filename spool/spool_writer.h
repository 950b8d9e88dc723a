/* spool_writer: a new message streamed from the loop into the spool (spool.h
 * has the layout): content to tmp/<qid>.msg, then on commit the .env, both
 * renamed into q/ (the .env last: its rename is the commit). Writes go through
 * uv_fs_* (libuv's thread pool): the loop never blocks. A message is committed
 * only after its data, its envelope and the directory are fsync'd. */
#ifndef RELAY25_SPOOL_WRITER_H
#define RELAY25_SPOOL_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "spool/spool_rec.h"

struct spool_writer;

struct spool_writer_cbs {
    /* Buffered data was written: more spool_writer_write() is welcome. */
    void (*on_drain)(void *arg);
    /* spool_writer_commit finished: err 0 = on disk for good; else a negative uv
     * error (UV_ENOSPC, UV_EIO, ...) and nothing is left behind. */
    void (*on_done)(void *arg, int err, uint64_t size);
};

#define SPOOL_WBUF (64u * 1024u)

/* Starts tmp/<qid>.msg. Errors (e.g. the disk) come later through on_done. */
struct spool_writer *spool_writer_new(uv_loop_t *loop, const char *dir, uint64_t qid,
                                      const struct spool_writer_cbs *cbs, void *arg);
/* Appends content. Returns 1 when the caller should pause until on_drain, 0 to
 * go on, or a negative uv error (the writer failed; commit/abort still needed). */
int spool_writer_write(struct spool_writer *w, const char *data, size_t len);
/* Flushes, fsyncs, writes the .env, renames both into q/, fsyncs the directory,
 * then on_done. The writer frees itself after on_done. */
void spool_writer_commit(struct spool_writer *w, const struct spool_env *env);
/* Drops the message: closes and unlinks the temp file; no callback; frees itself. */
void spool_writer_abort(struct spool_writer *w);
uint64_t spool_writer_written(const struct spool_writer *w);

#endif
