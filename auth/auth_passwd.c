/* auth_passwd: PLAIN decoding and crypt(3) password checks for inbound AUTH.
 * The check runs in the thread pool (uv_queue_work) with crypt_r on its own
 * crypt_data, compares in constant time, and wipes the password copy. A
 * scheduler keeps at most max_running checks in the pool and a bounded FIFO
 * behind them, so guessing cannot take every worker from the spool. */
#include "auth/auth_passwd.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

struct auth_passwd_req {
    uv_work_t req;
    struct auth_passwd_sched *q;
    struct auth_passwd_req *next; /* in the queue */
    const char *hash;             /* NULL: unknown login */
    char pass[AUTH_PASSWD_MAX + 1];
    int ok;
    auth_passwd_done_cb *done;
    auth_passwd_live_cb *live;
    void *arg;
};

struct auth_passwd_sched {
    uv_loop_t *loop;
    unsigned running, max_running;
    size_t queued, max_queued;
    struct auth_passwd_req *head, *tail;
};

/* Checked for unknown logins, so they cost what a wrong password costs. */
static const char auth_passwd_dummy[] =
    "$y$j9T$/YHpOPWHvBmblbO5aGgtV.$ayaskaYiu5E5alPD/PrAaqBPdnLo6KVSvHzMAMVAsj2";

int auth_plain_decode(const char *in, size_t len, char *login, size_t lcap, char *pass, size_t pcap)
{
    const char *z1 = memchr(in, '\0', len), *z2, *end = in + len;
    size_t azl, ll, pl;

    if (!z1 || !(z2 = memchr(z1 + 1, '\0', (size_t)(end - z1 - 1)))) {
        return -1;
    }
    azl = (size_t)(z1 - in);
    ll = (size_t)(z2 - z1 - 1);
    pl = (size_t)(end - z2 - 1);
    if (ll == 0 || ll >= lcap || pl >= pcap || memchr(z2 + 1, '\0', pl)) {
        return -1;
    }
    /* RFC 4616 §2: acting as another identity is not offered */
    if (azl > 0 && (azl != ll || memcmp(in, z1 + 1, ll) != 0)) {
        return -1;
    }
    memcpy(login, z1 + 1, ll);
    login[ll] = '\0';
    memcpy(pass, z2 + 1, pl);
    pass[pl] = '\0';
    return 0;
}

int auth_passwd_check(const char *hash, const char *pass)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *h;
    size_t n;
    int ok = 0;

    if (!cd || !hash) {
        free(cd);
        return 0;
    }
    h = crypt_r(pass, hash, cd);
    n = strlen(hash);
    if (h && h[0] != '*' && strlen(h) == n) {
        unsigned char diff = 0;
        for (size_t i = 0; i < n; i++) {
            diff |= (unsigned char)(h[i] ^ hash[i]);
        }
        ok = diff == 0;
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ok;
}

static void auth_passwd_work(uv_work_t *req)
{
    struct auth_passwd_req *r = req->data;

    if (r->hash) {
        r->ok = auth_passwd_check(r->hash, r->pass);
    } else {
        (void)auth_passwd_check(auth_passwd_dummy, r->pass);
        r->ok = 0;
    }
    explicit_bzero(r->pass, sizeof(r->pass));
}

static void auth_passwd_after(uv_work_t *req, int status);

static void auth_passwd_finish(struct auth_passwd_req *r, int result)
{
    explicit_bzero(r->pass, sizeof(r->pass));
    r->done(r->arg, result);
    free(r);
}

/* Start queued checks while the budget allows; runs on the loop, never inside
 * auth_passwd_verify, so every done callback comes later than its call. */
static void auth_passwd_pump(struct auth_passwd_sched *q)
{
    while (q->running < q->max_running && q->head) {
        struct auth_passwd_req *r = q->head;
        q->head = r->next;
        if (!q->head) {
            q->tail = NULL;
        }
        q->queued--;
        if (r->live && !r->live(r->arg)) {
            auth_passwd_finish(r, AUTH_PASSWD_SKIPPED);
            continue;
        }
        if (uv_queue_work(q->loop, &r->req, auth_passwd_work, auth_passwd_after) != 0) {
            auth_passwd_finish(r, AUTH_PASSWD_BAD);
            continue;
        }
        q->running++;
    }
}

static void auth_passwd_after(uv_work_t *req, int status)
{
    struct auth_passwd_req *r = req->data;
    struct auth_passwd_sched *q = r->q;
    int ok = status == 0 && r->ok;

    q->running--;
    auth_passwd_pump(q); /* the next check starts before this one's reply is sent */
    auth_passwd_finish(r, ok ? AUTH_PASSWD_OK : AUTH_PASSWD_BAD);
}

struct auth_passwd_sched *auth_passwd_sched_new(uv_loop_t *loop, unsigned max_running,
                                                size_t max_queued)
{
    struct auth_passwd_sched *q = calloc(1, sizeof(*q));

    if (q) {
        q->loop = loop;
        q->max_running = max_running ? max_running : 1;
        q->max_queued = max_queued;
    }
    return q;
}

void auth_passwd_sched_free(struct auth_passwd_sched *q)
{
    free(q);
}

int auth_passwd_verify(struct auth_passwd_sched *q, const char *hash, const char *pass,
                       auth_passwd_done_cb *done, auth_passwd_live_cb *live, void *arg)
{
    struct auth_passwd_req *r;
    size_t pl = strlen(pass);
    int e;

    if (pl > AUTH_PASSWD_MAX) {
        return UV_EINVAL;
    }
    if (q->running >= q->max_running && q->queued >= q->max_queued) {
        return UV_EBUSY;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        return UV_ENOMEM;
    }
    r->req.data = r;
    r->q = q;
    r->hash = hash;
    memcpy(r->pass, pass, pl + 1);
    r->done = done;
    r->live = live;
    r->arg = arg;
    if (q->running >= q->max_running) {
        if (q->tail) {
            q->tail->next = r;
        } else {
            q->head = r;
        }
        q->tail = r;
        q->queued++;
        return 0;
    }
    if ((e = uv_queue_work(q->loop, &r->req, auth_passwd_work, auth_passwd_after)) != 0) {
        explicit_bzero(r->pass, sizeof(r->pass));
        free(r);
        return e;
    }
    q->running++;
    return 0;
}

char *auth_passwd_hash(const char *pass)
{
    char *salt = crypt_gensalt_ra("$y$", 0, NULL, 0);
    void *data = NULL;
    int size = 0;
    char *h, *out = NULL;

    if (!salt) {
        return NULL;
    }
    h = crypt_ra(pass, salt, &data, &size);
    if (h && h[0] == '$') {
        out = strdup(h);
    }
    if (data) {
        explicit_bzero(data, (size_t)size);
        free(data);
    }
    free(salt);
    return out;
}
