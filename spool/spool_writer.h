/* spool_writer: a new message streamed from the loop into the spool (spool.h
 * has the layout): content to tmp/<qid>.msg, then on commit the .env, both
 * renamed into q/ (the .env last: its rename is the commit). File work runs in
 * libuv's thread pool (uv_queue_work): the loop never blocks. Commits are
 * grouped: a spool_group runs one batch at a time, and every message whose
 * commit starts while a batch is in flight joins the next one, so one job and
 * one directory fsync serve many messages. A message is reported committed only
 * after its data, its envelope and the directory are fsync'd. */
#ifndef RELAY25_SPOOL_WRITER_H
#define RELAY25_SPOOL_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "spool/spool_rec.h"

struct spool_writer;
struct spool_group;

struct spool_writer_cbs {
    /* Buffered data was written: more spool_writer_write() is welcome. */
    void (*on_drain)(void *arg);
    /* spool_writer_commit finished: err 0 = on disk for good; else a negative uv
     * error (UV_ENOSPC, UV_EIO, ...) and nothing is left behind. */
    void (*on_done)(void *arg, int err, uint64_t size);
};

/* Memory per message in flight: a buffer that grows with the content up to
 * SPOOL_WBUF (plus slack), and a second one of that size only while a large
 * body streams (one buffer is being written while the other fills). */
#define SPOOL_WBUF (64u * 1024u)

/* The commit queue of one loop; it serves every spool directory. NULL when out of memory. */
struct spool_group *spool_group_new(uv_loop_t *loop);
/* The owner is done with it: logs its counters now (event=commit_stats: batches,
 * messages, fsyncs, jobs) and goes once the last writer's job has returned. */
void spool_group_free(struct spool_group *g);

/* Starts the message <dir>/tmp/<qid>.msg; the file is created with the first
 * write that reaches the disk (a small message: by its commit). dir is copied. */
struct spool_writer *spool_writer_new(struct spool_group *g, const char *dir, uint64_t qid,
                                      const struct spool_writer_cbs *cbs, void *arg);
/* Appends content. Returns 1 when the caller should pause until on_drain, 0 to
 * go on, or a negative uv error (the writer failed; commit/abort still needed). */
int spool_writer_write(struct spool_writer *w, const char *data, size_t len);
/* Joins the next batch: the rest of the content and the .env written, both
 * fsync'd, renamed into q/, the directory fsync'd, then on_done. The writer
 * frees itself after on_done. */
void spool_writer_commit(struct spool_writer *w, const struct spool_env *env);
/* Drops the message: its files are removed (in the thread pool); no callback;
 * frees itself. */
void spool_writer_abort(struct spool_writer *w);
uint64_t spool_writer_written(const struct spool_writer *w);

#endif
