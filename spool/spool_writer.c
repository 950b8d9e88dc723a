/* spool_writer: streams a new message from the loop into the spool (layout in
 * spool.h) and commits it in a group: a large body is written in the thread
 * pool one SPOOL_WBUF at a time (double-buffered, so the client keeps sending),
 * a small one not at all until its commit; commits wait in the spool_group and
 * go to disk as one batch (spool_commit_batch) per thread-pool job. */
#include "spool/spool_writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "spool/spool.h"

#define SPOOL_SLACK (16u * 1024u) /* room past SPOOL_WBUF: a write beyond it grows the buffer */
#define SPOOL_WBUF_MIN 4096u      /* first size of a buffer; doubles up to SPOOL_WBUF + slack */
#define SPOOL_BATCH_MAX 256u      /* messages per batch: bounds one job's latency */

/* Counters of a group since it was made (logged at the end: tests and the bench read them). */
struct spool_group_stats {
    uint64_t batches; /* commit jobs */
    uint64_t commits; /* messages that went through a batch */
    uint64_t fsyncs;  /* fsync calls made by the batches */
    uint64_t jobs;    /* every thread-pool job: batches, streamed writes, drops */
    uint64_t max_batch;
};

struct spool_group {
    uv_loop_t *loop;
    uv_work_t work;
    struct spool_writer *wait, **wait_tail; /* committing, for the next batch */
    struct spool_writer *run;               /* the batch in flight, NULL when none */
    struct spool_batch_item *items;
    size_t nitems, cap;
    size_t nsync; /* fsyncs of the batch in flight */
    uint64_t started_ms;
    size_t live; /* writers not freed yet */
    int closing; /* spool_group_free was called: free when the last writer goes */
    struct spool_group_stats st;
};

struct spool_writer {
    struct spool_group *g;
    const struct spool_writer_cbs *cbs;
    void *arg;
    char *dir;
    uint64_t qid;
    uv_work_t work;
    struct spool_writer *next; /* in the group's wait or run list */
    int busy;                  /* a streamed write or the drop is in the thread pool */
    int fd;                    /* tmp/<qid>.msg once created */
    int err;                   /* first failure (uv error), sticky */
    int job_err;               /* the last job's errno value, read in its after-work */
    int committing, aborted, want_drain, committed;
    uint64_t written;
    char *fill, *flight; /* double buffer */
    size_t fill_len, flight_len;
    size_t fill_cap, flight_cap;
    char *envtext;
    size_t envlen;
};

static void spool_writer_next(struct spool_writer *w);
static void spool_group_start(struct spool_group *g);

static void spool_group_release(struct spool_group *g)
{
    if (--g->live == 0 && g->closing) {
        free(g->items);
        free(g);
    }
}

static void spool_writer_finish(struct spool_writer *w)
{
    int err = w->err;
    uint64_t size = w->written;
    int notify = !w->aborted;
    const struct spool_writer_cbs *cbs = w->cbs;
    void *arg = w->arg;
    struct spool_group *g = w->g;

    free(w->fill);
    free(w->flight);
    free(w->envtext);
    free(w->dir);
    free(w);
    if (notify && cbs->on_done) {
        cbs->on_done(arg, err, size);
    }
    spool_group_release(g);
}

/* ---- thread-pool jobs of one writer: a streamed write, the drop ---- */

static void spool_job_write(uv_work_t *req)
{
    struct spool_writer *w = req->data;
    w->job_err = spool_tmp_append(w->dir, w->qid, &w->fd, w->flight, w->flight_len);
}

static void spool_job_write_done(uv_work_t *req, int status)
{
    struct spool_writer *w = req->data;

    (void)status; /* never cancelled */
    w->busy = 0;
    if (w->job_err && !w->err) {
        w->err = -w->job_err; /* a uv error is the negative errno value */
    } else if (!w->job_err) {
        w->written += w->flight_len;
    }
    w->flight_len = 0;
    spool_writer_next(w);
}

static void spool_job_drop(uv_work_t *req)
{
    struct spool_writer *w = req->data;
    spool_tmp_drop(w->dir, w->qid, w->fd, w->committed);
    w->fd = -1;
}

static void spool_job_drop_done(uv_work_t *req, int status)
{
    (void)status;
    spool_writer_finish(req->data);
}

/* Failure or abort: the files go (in the thread pool), then on_done unless aborted. */
static void spool_writer_drop(struct spool_writer *w)
{
    w->busy = 1;
    w->g->st.jobs++;
    if (uv_queue_work(w->g->loop, &w->work, spool_job_drop, spool_job_drop_done) != 0) {
        spool_job_drop(&w->work); /* cannot happen with a valid loop; never leave files */
        w->busy = 0;
        spool_writer_finish(w);
    }
}

static void spool_writer_submit_fill(struct spool_writer *w)
{
    char *t = w->flight;
    size_t tcap = w->flight_cap;

    w->flight = w->fill;
    w->flight_len = w->fill_len;
    w->flight_cap = w->fill_cap;
    w->fill = t;
    w->fill_cap = tcap;
    w->fill_len = 0;
    w->busy = 1;
    w->g->st.jobs++;
    if (uv_queue_work(w->g->loop, &w->work, spool_job_write, spool_job_write_done) != 0) {
        w->job_err = EIO;
        spool_job_write_done(&w->work, 0);
    }
}

/* ---- the group: one batch in flight, the next one waiting ---- */

static void spool_job_batch(uv_work_t *req)
{
    struct spool_group *g = req->data;
    g->nsync = spool_commit_batch(g->items, g->nitems);
}

static void spool_job_batch_done(uv_work_t *req, int status)
{
    struct spool_group *g = req->data;
    struct spool_writer *w = g->run, *next;
    size_t i = 0, nok = 0, n = g->nitems;

    (void)status;
    g->st.fsyncs += g->nsync;
    for (; w; w = next, i++) {
        next = w->next;
        w->fd = -1; /* the batch closed it */
        if (g->items[i].err) {
            w->err = -g->items[i].err;
        } else {
            nok++;
            w->committed = 1;
            w->written += w->fill_len;
        }
    }
    log_debug(0, "spool", "event=commit_batch messages=%zu committed=%zu fsyncs=%zu ms=%llu", n,
              nok, g->nsync, (unsigned long long)(uv_now(g->loop) - g->started_ms));
    w = g->run;
    g->run = NULL;
    g->nitems = 0;
    g->live++; /* the callbacks below may free writers: the group stays until the end */
    for (; w; w = next) {
        next = w->next;
        if (w->aborted) {
            spool_writer_drop(w); /* committed meanwhile: removed again, .env first */
        } else {
            spool_writer_finish(w);
        }
    }
    spool_group_start(g); /* those that arrived meanwhile */
    spool_group_release(g);
}

/* Sends the waiting commits as one batch, unless one is in flight. */
static void spool_group_start(struct spool_group *g)
{
    struct spool_writer *w, **tail = &g->run;
    size_t n = 0;

    if (g->run || !g->wait) {
        return;
    }
    for (w = g->wait; w && n < SPOOL_BATCH_MAX; w = w->next) {
        n++;
    }
    if (n > g->cap) {
        struct spool_batch_item *ni = realloc(g->items, n * sizeof(*ni));
        if (!ni) {
            n = g->cap; /* a smaller batch now, the rest next */
        } else {
            g->items = ni;
            g->cap = n;
        }
    }
    if (n == 0) {
        /* not even one item: fail the oldest so the queue cannot stall */
        w = g->wait;
        if (!(g->wait = w->next)) {
            g->wait_tail = &g->wait;
        }
        w->err = UV_ENOMEM;
        spool_writer_drop(w);
        spool_group_start(g);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct spool_batch_item *it = &g->items[i];
        w = g->wait;
        g->wait = w->next;
        *tail = w;
        tail = &w->next;
        memset(it, 0, sizeof(*it));
        it->dir = w->dir;
        it->qid = w->qid;
        it->fd = w->fd;
        it->tail = w->fill;
        it->tail_len = w->fill_len;
        it->envtext = w->envtext;
        it->envlen = w->envlen;
    }
    *tail = NULL;
    if (!g->wait) {
        g->wait_tail = &g->wait;
    }
    g->nitems = n;
    g->st.batches++;
    g->st.jobs++;
    g->st.commits += n;
    if (n > g->st.max_batch) {
        g->st.max_batch = n;
    }
    g->started_ms = uv_now(g->loop);
    /* the crash test kills on this line: a batch in flight */
    log_debug(0, "spool", "event=commit_batch_start messages=%zu", n);
    if (uv_queue_work(g->loop, &g->work, spool_job_batch, spool_job_batch_done) != 0) {
        for (size_t i = 0; i < n; i++) {
            g->items[i].err = EIO;
            spool_tmp_drop(g->items[i].dir, g->items[i].qid, g->items[i].fd, 0);
        }
        spool_job_batch_done(&g->work, 0);
    }
}

static void spool_group_join(struct spool_group *g, struct spool_writer *w)
{
    w->next = NULL;
    *g->wait_tail = w;
    g->wait_tail = &w->next;
    spool_group_start(g);
}

struct spool_group *spool_group_new(uv_loop_t *loop)
{
    struct spool_group *g = calloc(1, sizeof(*g));

    if (!g) {
        return NULL;
    }
    g->loop = loop;
    g->work.data = g;
    g->wait_tail = &g->wait;
    g->live = 1; /* the owner's */
    return g;
}

void spool_group_free(struct spool_group *g)
{
    if (g) {
        log_info(0, "spool",
                 "event=commit_stats batches=%llu messages=%llu fsyncs=%llu jobs=%llu "
                 "largest_batch=%llu",
                 (unsigned long long)g->st.batches, (unsigned long long)g->st.commits,
                 (unsigned long long)g->st.fsyncs, (unsigned long long)g->st.jobs,
                 (unsigned long long)g->st.max_batch);
        g->closing = 1;
        spool_group_release(g);
    }
}

/* ---- a writer ---- */

/* Decides what comes next once no job of this writer is in flight. */
static void spool_writer_next(struct spool_writer *w)
{
    if (w->aborted) {
        spool_writer_drop(w);
        return;
    }
    if (w->committing) {
        if (w->err) {
            spool_writer_drop(w);
        } else {
            spool_group_join(w->g, w);
        }
        return;
    }
    if (!w->err && w->fill_len >= SPOOL_WBUF) {
        spool_writer_submit_fill(w);
    }
    if (w->want_drain && (w->err || w->fill_len < SPOOL_WBUF)) {
        w->want_drain = 0;
        if (w->cbs->on_drain) {
            w->cbs->on_drain(w->arg); /* an error shows on the caller's next write */
        }
    }
}

struct spool_writer *spool_writer_new(struct spool_group *g, const char *dir, uint64_t qid,
                                      const struct spool_writer_cbs *cbs, void *arg)
{
    struct spool_writer *w = calloc(1, sizeof(*w));

    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return NULL;
    }
    w->g = g;
    w->cbs = cbs;
    w->arg = arg;
    w->qid = qid;
    w->fd = -1;
    w->work.data = w;
    g->live++;
    return w;
}

int spool_writer_write(struct spool_writer *w, const char *data, size_t len)
{
    if (w->err) {
        return w->err;
    }
    if (len > w->fill_cap - w->fill_len) {
        /* grows by doubling to SPOOL_WBUF + slack; one piece larger than that (a
         * header section held for the From: rewrite, bounded by max_header_size)
         * grows it to fit */
        size_t need = w->fill_len + len, ncap = w->fill_cap ? w->fill_cap : SPOOL_WBUF_MIN;
        char *nb;
        while (ncap < need && ncap < SPOOL_WBUF + SPOOL_SLACK) {
            ncap *= 2;
        }
        if (ncap > SPOOL_WBUF + SPOOL_SLACK) {
            ncap = SPOOL_WBUF + SPOOL_SLACK;
        }
        if (ncap < need) {
            ncap = need;
        }
        if (need < w->fill_len || !(nb = realloc(w->fill, ncap))) {
            return UV_ENOBUFS;
        }
        w->fill = nb;
        w->fill_cap = ncap;
    }
    memcpy(w->fill + w->fill_len, data, len);
    w->fill_len += len;
    if (w->fill_len < SPOOL_WBUF) {
        return 0;
    }
    if (!w->busy) {
        spool_writer_submit_fill(w);
        return 0;
    }
    w->want_drain = 1;
    return 1;
}

void spool_writer_commit(struct spool_writer *w, const struct spool_env *env)
{
    w->committing = 1;
    if (!w->err && !(w->envtext = spool_env_format(env, &w->envlen))) {
        w->err = UV_ENOMEM;
    }
    if (!w->busy) {
        spool_writer_next(w); /* else the running job's after-work continues */
    }
}

void spool_writer_abort(struct spool_writer *w)
{
    struct spool_writer **p;

    w->aborted = 1;
    if (w->busy) {
        return; /* its after-work drops it */
    }
    /* waiting for a batch: leave the queue; in the batch in flight: dropped after it */
    for (p = &w->g->wait; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            if (!*p) {
                w->g->wait_tail = p;
            }
            spool_writer_drop(w);
            return;
        }
    }
    for (struct spool_writer *r = w->g->run; r; r = r->next) {
        if (r == w) {
            return;
        }
    }
    spool_writer_drop(w);
}

uint64_t spool_writer_written(const struct spool_writer *w)
{
    return w->written + w->fill_len + w->flight_len;
}
