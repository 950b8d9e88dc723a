/* test_spool: the spool module (spool/spool_rec.c, spool/spool.c): .env parse and
 * format (round trip, the longest fields, rejects), .done records (one parser:
 * later line wins, torn line, replies), and the store in a temporary directory:
 * prepare's clean-up, commit, scan, load, progress, move to failed, requeue,
 * remove; a command's commit from a file (spool_commit_fd); group commit
 * (spool_commit_batch). */
#include "spool/spool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/afile.h"
#include "tests/check.h"

static const char ENV1[] = "relay25-spool 1\ncreated 1764700000\ndevice scanner\n"
                           "user scan@example.org\nclient 192.0.2.10\nhelo -\nbody 8BITMIME\n"
                           "from s@example.org\nrcpt a@x\nrcpt b@x\nrcpt c@x\n";

#define TEXT(s) s, sizeof(s) - 1

static void test_env_parse(void)
{
    struct spool_env e;
    char err[200];
    char *t;
    size_t len;

    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_EQ(e.created, 1764700000);
    ASSERT_STREQ(e.device, "scanner");
    ASSERT_STREQ(e.user, "scan@example.org");
    ASSERT_STREQ(e.route, "");
    ASSERT_STREQ(e.helo, ""); /* "-" */
    ASSERT_STREQ(e.body, "8BITMIME");
    ASSERT_EQ(e.nrcpt, 3);
    ASSERT_STREQ(e.rcpt[2], "c@x");
    t = spool_env_format(&e, &len);
    ASSERT_TRUE(t != NULL);
    ASSERT_MEMEQ(t, len, ENV1, strlen(ENV1)); /* the format is unchanged */
    free(t);
    spool_env_free(&e);

    ASSERT_EQ(spool_env_parse(TEXT("relay25-spool 2\ndevice d\nrcpt a\n"), &e, err, sizeof(err)),
              -1);
    ASSERT_TRUE(strstr(err, "version 2") != NULL);
    ASSERT_EQ(spool_env_parse(TEXT("relay25-spool 1\ndevice d\nrcpt a"), &e, err, sizeof(err)), -1);
    ASSERT_STREQ(err, "truncated envelope");
    ASSERT_EQ(spool_env_parse(TEXT("relay25-spool 1\ndevice d\0x\nrcpt a\n"), &e, err, sizeof(err)),
              -1); /* a NUL would not survive formatting */
    ASSERT_EQ(spool_env_parse(TEXT("relay25-spool 1\ndevice d\nnew-key v\nrcpt a\n"), &e, err,
                              sizeof(err)),
              0); /* unknown keys are ignored */
    spool_env_free(&e);
}

/* The DSN and SMTPUTF8 keys (RFC 3461, RFC 6531): written only when the
 * transaction had them, read back, and an older file without them reads as a
 * message without DSN parameters (ENV1 above). */
static void test_env_dsn(void)
{
    static const char env2[] = "relay25-spool 1\ncreated 1\ndevice d\nuser u\nclient c\n"
                               "helo -\nbody -\nfrom s@x\nret HDRS\nenvid a+2Bb\nsmtputf8 1\n"
                               "rcpt a@x\nrcptdsn NOTIFY=SUCCESS ORCPT=rfc822;a@x\nrcpt b@x\n"
                               "rcpt c@x\nrcptdsn NOTIFY=NEVER\n";
    struct spool_env e;
    char err[200];
    char *t;
    size_t len;

    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_STREQ(e.ret, "");
    ASSERT_STREQ(e.envid, "");
    ASSERT_EQ(e.smtputf8, 0);
    ASSERT_TRUE(e.rdsn == NULL);
    spool_env_free(&e);

    ASSERT_EQ(spool_env_parse(env2, strlen(env2), &e, err, sizeof(err)), 0);
    ASSERT_STREQ(e.ret, "HDRS");
    ASSERT_STREQ(e.envid, "a+2Bb");
    ASSERT_EQ(e.smtputf8, 1);
    ASSERT_EQ(e.nrcpt, 3);
    ASSERT_TRUE(e.rdsn != NULL);
    if (e.rdsn) {
        ASSERT_STREQ(e.rdsn[0], "NOTIFY=SUCCESS ORCPT=rfc822;a@x");
        ASSERT_TRUE(e.rdsn[1] == NULL);
        ASSERT_STREQ(e.rdsn[2], "NOTIFY=NEVER");
    }
    t = spool_env_format(&e, &len);
    ASSERT_TRUE(t != NULL);
    ASSERT_MEMEQ(t, len, env2, strlen(env2));
    free(t);
    spool_env_free(&e);

    /* many recipients: the per-recipient list grows with them */
    {
        char big[8192];
        size_t o = (size_t)snprintf(big, sizeof(big), "relay25-spool 1\ndevice d\n");
        for (int i = 0; i < 40; i++) {
            o += (size_t)snprintf(big + o, sizeof(big) - o, "rcpt r%d@x\n%s", i,
                                  i % 3 == 0 ? "rcptdsn NOTIFY=FAILURE\n" : "");
        }
        ASSERT_EQ(spool_env_parse(big, o, &e, err, sizeof(err)), 0);
        ASSERT_EQ(e.nrcpt, 40);
        ASSERT_TRUE(e.rdsn != NULL && e.rdsn[39] != NULL && e.rdsn[38] == NULL);
        spool_env_free(&e);
    }
}

/* Every field at its longest still formats (and parses back). */
static void test_env_longest(void)
{
    struct spool_env e, b;
    char rcpt[2][SPOOL_ADDR_MAX], err[200], *t;
    size_t len;

    memset(&e, 0, sizeof(e));
    e.created = UINT64_MAX;
    memset(e.device, 'd', sizeof(e.device) - 1);
    memset(e.user, 'u', sizeof(e.user) - 1);
    memset(e.route, 'r', sizeof(e.route) - 1);
    memset(e.client, 'c', sizeof(e.client) - 1);
    memset(e.helo, 'h', sizeof(e.helo) - 1);
    memset(e.body, 'b', sizeof(e.body) - 1);
    memset(e.from, 'f', sizeof(e.from) - 1);
    memset(rcpt, 'x', sizeof(rcpt));
    rcpt[0][SPOOL_ADDR_MAX - 1] = rcpt[1][SPOOL_ADDR_MAX - 1] = '\0';
    e.rcpt = rcpt;
    e.nrcpt = 2;
    t = spool_env_format(&e, &len);
    ASSERT_TRUE(t != NULL);
    if (t) {
        ASSERT_EQ(spool_env_parse(t, len, &b, err, sizeof(err)), 0);
        ASSERT_TRUE(b.created == UINT64_MAX);
        ASSERT_STREQ(b.helo, e.helo);
        ASSERT_STREQ(b.rcpt[1], rcpt[1]);
        spool_env_free(&b);
    }
    free(t);
}

static void test_done(void)
{
    static const char done[] = "failed a@x 451 temporary\nok a@x\n"
                               "failed b@x 550 5.1.1 unknown\nbogus c@x\nfailed c@x\nok c@xx\n"
                               "ok b@x torn";
    struct spool_env e;
    unsigned char v[3] = {0};
    char *r[3] = {0}, err[200], line[64];
    const char *p = done;
    struct spool_done_rec rec;
    int n = 0;

    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_EQ(spool_done_apply(done, strlen(done), &e, v, r), 0);
    ASSERT_EQ(v[0], SPOOL_OK); /* the later line wins */
    ASSERT_TRUE(r[0] == NULL);
    ASSERT_EQ(v[1], SPOOL_FAILED); /* the torn "ok b@x" does not count */
    ASSERT_STREQ(r[1], "550 5.1.1 unknown");
    ASSERT_EQ(v[2], SPOOL_FAILED); /* no reply; "ok c@xx" is another address */
    ASSERT_TRUE(r[2] == NULL);
    for (int i = 0; i < 3; i++) {
        free(r[i]);
    }
    spool_env_free(&e);
    while (spool_done_next(&p, done + strlen(done), &rec)) {
        n++;
    }
    ASSERT_EQ(n, 5); /* "bogus" and the torn line are no records */

    ASSERT_EQ(spool_done_format(line, sizeof(line), SPOOL_OK, "a@x", "ignored"), 7);
    ASSERT_STREQ(line, "ok a@x\n");
    ASSERT_EQ(spool_done_format(line, sizeof(line), SPOOL_FAILED, "b@x", "550 no\r\nmore"), 18);
    ASSERT_STREQ(line, "failed b@x 550 no\n");
    ASSERT_EQ(spool_done_format(line, 8, SPOOL_FAILED, "b@x", "550 no"), 0);
    ASSERT_EQ(spool_done_format(line, sizeof(line), SPOOL_PENDING, "b@x", NULL), 0);
}

/* defer records: the latest per recipient, no verdict, numbers first so an
 * address with a quoted blank still parses; old readers skip them. */
static void test_done_defer(void)
{
    static const char env[] = "relay25-spool 1\ncreated 1\ndevice scanner\nuser u@x\n"
                              "client 192.0.2.10\nhelo -\nbody -\nfrom s@x\n"
                              "rcpt a@x\nrcpt \"jane q\"@x\nrcpt c@x\n";
    static const char done[] = "defer 1 100 160 a@x 421 4.3.2 busy\n"
                               "defer 2 160 280 a@x 451 4.7.1 greylisted\n"
                               "defer 1 100 160 \"jane q\"@x 452 4.2.2 full\n"
                               "defer x 1 2 c@x no number\n"
                               "defer 3 1 2\n"
                               "ok \"jane q\"@x\n"
                               "defer 9 9 9 c@x torn";
    struct spool_env e;
    struct spool_defer d[3];
    unsigned char v[3] = {0};
    char *r[3] = {0}, err[200], line[128];

    memset(d, 0, sizeof(d));
    ASSERT_EQ(spool_env_parse(env, strlen(env), &e, err, sizeof(err)), 0);
    ASSERT_EQ(spool_done_apply(done, strlen(done), &e, v, r), 0);
    ASSERT_EQ(v[0], SPOOL_PENDING); /* a defer record is no verdict */
    ASSERT_EQ(v[1], SPOOL_OK);
    ASSERT_EQ(v[2], SPOOL_PENDING);
    ASSERT_EQ(spool_done_deferrals(done, strlen(done), &e, d), 0);
    ASSERT_EQ(d[0].attempts, 2); /* the later record wins */
    ASSERT_EQ(d[0].last, 160);
    ASSERT_EQ(d[0].next_retry, 280);
    ASSERT_STREQ(d[0].reply, "451 4.7.1 greylisted");
    ASSERT_EQ(d[1].attempts, 1);
    ASSERT_STREQ(d[1].reply, "452 4.2.2 full");
    ASSERT_EQ(d[2].attempts, 0); /* malformed and torn records do not count */
    ASSERT_TRUE(d[2].reply == NULL);
    ASSERT_EQ(spool_defer_format(line, sizeof(line), "\"jane q\"@x", &d[1]), 42);
    ASSERT_STREQ(line, "defer 1 100 160 \"jane q\"@x 452 4.2.2 full\n");
    ASSERT_EQ(spool_defer_format(line, 42, "\"jane q\"@x", &d[1]), 0);
    for (int i = 0; i < 3; i++) {
        free(r[i]);
        free(d[i].reply);
    }
    spool_env_free(&e);
}

/* RFC 5321 §4.1.2: a quoted local part may hold blanks; its records must still
 * name it, or a delivered recipient would be sent again at the next attempt. */
static void test_done_quoted_blank(void)
{
    static const char env[] = "relay25-spool 1\ncreated 1\ndevice scanner\nuser u@x\n"
                              "client 192.0.2.10\nhelo -\nbody -\nfrom s@x\n"
                              "rcpt \"john doe\"@x\nrcpt \"jane q\"@x\nrcpt john@x\n";
    static const char done[] = "ok \"john doe\"@x\nfailed \"jane q\"@x 550 5.1.1 no such user\n";
    struct spool_env e;
    unsigned char v[3] = {0};
    char *r[3] = {0}, err[200];

    ASSERT_EQ(spool_env_parse(env, strlen(env), &e, err, sizeof(err)), 0);
    ASSERT_EQ(e.nrcpt, 3);
    ASSERT_EQ(spool_done_apply(done, strlen(done), &e, v, r), 0);
    ASSERT_EQ(v[0], SPOOL_OK);
    ASSERT_EQ(v[1], SPOOL_FAILED);
    ASSERT_STREQ(r[1], "550 5.1.1 no such user");
    ASSERT_EQ(v[2], SPOOL_PENDING);
    for (int i = 0; i < 3; i++) {
        free(r[i]);
    }
    spool_env_free(&e);
}

static int exists(const char *dir, const char *area, uint64_t qid, const char *ext)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s/%016" PRIx64 "%s", dir, area, qid, ext);
    return access(p, F_OK) == 0;
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    ASSERT_EQ(afile_write(p, text, strlen(text), 0600, NULL, NULL), 0);
}

static void test_store(void)
{
    char dir[] = "/tmp/test_spool-XXXXXX", err[600], cmd[600];
    struct spool_env e;
    struct spool_msg m;
    uint64_t qid = 0x0123456789abcdefull, *ids, *sizes;
    size_t n;
    const char *msg = "Subject: t\r\n\r\nbody\r\n";
    struct stat st;

    ASSERT_TRUE(mkdtemp(dir) != NULL);
    ASSERT_EQ(spool_prepare(dir, err, sizeof(err)), 0);
    /* leftovers startup removes: tmp/, temp files, parts without their .env */
    put(dir, "tmp/00000000000000aa.msg", "x");
    put(dir, "q/00000000000000bb.msg", "uncommitted");
    put(dir, "q/00000000000000bb.done", "ok a@x\n");
    put(dir, "q/00000000000000cc.env.tmp-abcdef", "x");
    put(dir, "failed/00000000000000dd.msg", "linked, never committed");
    ASSERT_EQ(spool_prepare(dir, err, sizeof(err)), 0);
    ASSERT_EQ(spool_scan(dir, SPOOL_AREA_Q, &ids, NULL, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_TRUE(!exists(dir, "tmp", 0xaa, ".msg") && !exists(dir, "q", 0xbb, ".msg"));
    ASSERT_TRUE(!exists(dir, "q", 0xbb, ".done") && !exists(dir, "failed", 0xdd, ".msg"));
    snprintf(cmd, sizeof(cmd), "%s/q/00000000000000cc.env.tmp-abcdef", dir);
    ASSERT_TRUE(access(cmd, F_OK) != 0);

    /* commit, scan, load */
    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_EQ(spool_commit(dir, qid, msg, strlen(msg), &e), 0);
    spool_env_free(&e);
    ASSERT_EQ(spool_scan(dir, SPOOL_AREA_Q, &ids, &sizes, &n), 0);
    ASSERT_EQ(n, 1);
    if (n == 1) {
        ASSERT_TRUE(ids[0] == qid);
        ASSERT_EQ(sizes[0], strlen(msg));
    }
    free(ids);
    free(sizes);
    ASSERT_EQ(spool_done_append(dir, qid, "ok a@x\n", 7), 0);
    ASSERT_EQ(spool_done_append(dir, qid, "failed b@x 550 no\n", 18), 0);
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, qid, &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.size, strlen(msg));
    ASSERT_EQ(m.env.nrcpt, 3);
    ASSERT_EQ(m.verdict[0], SPOOL_OK);
    ASSERT_EQ(m.verdict[1], SPOOL_FAILED);
    ASSERT_STREQ(m.reply[1], "550 no");
    ASSERT_EQ(m.verdict[2], SPOOL_PENDING);
    ASSERT_EQ(m.defer[2].attempts, 0); /* no defer/ note yet */
    spool_msg_free(&m);

    /* the deferral note: defer/<qid>, replaced whole, read by spool_load */
    ASSERT_EQ(spool_defer_write(dir, qid, "defer 1 10 20 c@x 421 busy\n", 27), 0);
    ASSERT_EQ(spool_defer_write(dir, qid, "defer 2 30 90 c@x 451 later\n", 28), 0);
    ASSERT_TRUE(exists(dir, "defer", qid, ""));
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, qid, &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.verdict[2], SPOOL_PENDING);
    ASSERT_EQ(m.defer[2].attempts, 2);
    ASSERT_EQ(m.defer[2].next_retry, 90);
    ASSERT_STREQ(m.defer[2].reply, "451 later");
    ASSERT_EQ(m.defer[0].attempts, 0);
    spool_msg_free(&m);
    /* startup keeps the note of a queued message, drops an orphan */
    put(dir, "defer/00000000000000ee", "defer 1 1 2 x@y 421 x\n");
    ASSERT_EQ(spool_prepare(dir, err, sizeof(err)), 0);
    ASSERT_TRUE(exists(dir, "defer", qid, "") && !exists(dir, "defer", 0xee, ""));

    /* to failed/ with a reason; load it there */
    ASSERT_EQ(spool_fail(dir, qid, "<b@x>: 550 no\n", 14, err, sizeof(err)), 0);
    ASSERT_TRUE(!exists(dir, "q", qid, ".env") && !exists(dir, "q", qid, ".msg"));
    ASSERT_TRUE(!exists(dir, "q", qid, ".done"));
    ASSERT_TRUE(exists(dir, "failed", qid, ".env") && exists(dir, "failed", qid, ".msg"));
    ASSERT_TRUE(exists(dir, "failed", qid, ".done") && exists(dir, "failed", qid, ".reason"));
    ASSERT_TRUE(!exists(dir, "defer", qid, "")); /* the note goes with the queued message */
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_FAILED, qid, &m, err, sizeof(err)), 0);
    ASSERT_STREQ(m.reason, "<b@x>: 550 no");
    ASSERT_EQ(m.verdict[1], SPOOL_FAILED);
    spool_msg_free(&m);

    /* requeue: only the ok records stay, created is now */
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT_EQ(spool_requeue(dir, qid, 1800000000u, &st, err, sizeof(err)), 0);
    ASSERT_TRUE(!exists(dir, "failed", qid, ".env") && !exists(dir, "failed", qid, ".msg"));
    ASSERT_TRUE(!exists(dir, "failed", qid, ".reason"));
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, qid, &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.env.created, 1800000000u);
    ASSERT_EQ(m.verdict[0], SPOOL_OK);
    ASSERT_EQ(m.verdict[1], SPOOL_PENDING);
    ASSERT_EQ(m.size, strlen(msg));
    spool_msg_free(&m);
    ASSERT_EQ(spool_requeue(dir, qid, 1, &st, err, sizeof(err)), EEXIST); /* queued already */

    /* remove (its note too) */
    ASSERT_EQ(spool_defer_write(dir, qid, "defer 1 1 2 b@x 421 x\n", 22), 0);
    ASSERT_EQ(spool_remove(dir, SPOOL_AREA_Q, qid, err, sizeof(err)), 0);
    ASSERT_TRUE(!exists(dir, "defer", qid, ""));
    ASSERT_EQ(spool_remove(dir, SPOOL_AREA_Q, qid, err, sizeof(err)), ENOENT);
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, qid, &m, err, sizeof(err)), ENOENT);
    spool_msg_free(&m);
    ASSERT_EQ(spool_requeue(dir, qid, 1, &st, err, sizeof(err)), ENOENT); /* nothing failed */
    ASSERT_EQ(spool_sync(dir, SPOOL_AREA_Q), 0);
    ASSERT_TRUE(spool_new_id() != 0);

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* sendmail's commit: head pieces plus a body file into a spool whose q/ and
 * tmp/ do not exist yet; loadable; nothing left in tmp/; a failure leaves nothing. */
static void test_commit_fd(void)
{
    char dir[] = "/tmp/test_spool-XXXXXX", body[] = "/tmp/test_spool-body-XXXXXX";
    char err[600], cmd[600], path[700], *text;
    struct spool_env e;
    struct spool_msg m;
    struct iovec head[2] = {{.iov_base = "Received: x\r\n", .iov_len = 13},
                            {.iov_base = "Subject: t\r\n\r\n", .iov_len = 14}};
    uint64_t qid = 0x00000000000000eeull, size = 0, *ids;
    size_t n, len;
    struct stat st;
    int fd, e2;

    ASSERT_TRUE(mkdtemp(dir) != NULL);
    ASSERT_TRUE((fd = mkstemp(body)) >= 0);
    unlink(body);
    ASSERT_EQ(afile_write_all(fd, TEXT("line\r\n.dot\r\n")), 0); /* offset at the end */
    if (geteuid() == 0) { /* root (sendmail run by cron): files go to the spool's owner */
        ASSERT_EQ(chown(dir, 65534, 65534), 0);
    }
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_EQ(spool_commit_fd(dir, qid, head, 2, fd, &e, &st, &size, err, sizeof(err)), 0);
    ASSERT_EQ(size, 13 + 14 + 12);
    ASSERT_TRUE(exists(dir, "q", qid, ".env") && exists(dir, "q", qid, ".msg"));
    ASSERT_TRUE(!exists(dir, "tmp", qid, ".env") && !exists(dir, "tmp", qid, ".msg"));
    ASSERT_EQ(spool_scan(dir, SPOOL_AREA_Q, &ids, NULL, &n), 0);
    ASSERT_EQ(n, 1);
    free(ids);
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, qid, &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.size, 39);
    ASSERT_STREQ(m.env.device, "scanner");
    ASSERT_EQ(m.env.nrcpt, 3);
    spool_msg_free(&m);
    snprintf(path, sizeof(path), "%s/q/%016" PRIx64 ".msg", dir, qid);
    text = afile_read(path, 1000, 0, &len, &e2);
    ASSERT_TRUE(text != NULL);
    if (text) {
        ASSERT_STREQ(text, "Received: x\r\nSubject: t\r\n\r\nline\r\n.dot\r\n");
        free(text);
    }
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_uid, geteuid() == 0 ? 65534u : geteuid());
    snprintf(path, sizeof(path), "%s/q/%016" PRIx64 ".env", dir, qid);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_uid, geteuid() == 0 ? 65534u : geteuid());
    snprintf(path, sizeof(path), "%s/tmp", dir);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_uid, geteuid() == 0 ? 65534u : geteuid());
    ASSERT_EQ(st.st_mode & 0777, 0700);
    /* the spool directory itself must exist: nothing is created or left */
    snprintf(path, sizeof(path), "%s/missing", dir);
    ASSERT_EQ(spool_commit_fd(path, qid + 1, head, 2, fd, &e, NULL, &size, err, sizeof(err)),
              ENOENT);
    ASSERT_TRUE(access(path, F_OK) != 0);
    spool_env_free(&e);
    close(fd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* Group commit: the committed messages readable in q/ with their content, the
 * failed ones (no tmp/, an envelope already there) leave nothing behind, one
 * fsync of q/ for the batch; a drop of a committed message removes it. */
static void test_commit_batch(void)
{
    char dir[] = "/tmp/test_spool-XXXXXX", err[600], cmd[600], path[700], *text, *envtext;
    char missing[700];
    struct spool_batch_item it[4];
    struct spool_env e;
    struct spool_msg m;
    uint64_t *ids;
    size_t n, len, envlen;
    int fd = -1, e2;

    ASSERT_TRUE(mkdtemp(dir) != NULL);
    ASSERT_EQ(spool_prepare(dir, err, sizeof(err)), 0);
    snprintf(missing, sizeof(missing), "%s/nothere", dir);
    ASSERT_EQ(spool_env_parse(ENV1, strlen(ENV1), &e, err, sizeof(err)), 0);
    ASSERT_TRUE((envtext = spool_env_format(&e, &envlen)) != NULL);
    /* 0xa1: streamed before (a descriptor open), the rest in the batch */
    ASSERT_EQ(spool_tmp_append(dir, 0xa1, &fd, TEXT("Subject: a\r\n")), 0);
    ASSERT_TRUE(fd >= 0);
    /* 0xa4: its tmp/ envelope exists already (O_EXCL fails) */
    snprintf(path, sizeof(path), "%s/tmp/00000000000000a4.env", dir);
    ASSERT_EQ(afile_write(path, "x", 1, 0600, NULL, NULL), 0);
    memset(it, 0, sizeof(it));
    for (size_t i = 0; i < 4; i++) {
        it[i].dir = dir;
        it[i].qid = 0xa1 + i;
        it[i].fd = -1;
        it[i].tail = "\r\nbody\r\n";
        it[i].tail_len = 8;
        it[i].envtext = envtext;
        it[i].envlen = envlen;
    }
    it[0].fd = fd;
    it[2].dir = missing; /* no tmp/ there */
    ASSERT_EQ(spool_commit_batch(it, 4), 2 * 2 + 1);
    ASSERT_EQ(it[0].err, 0);
    ASSERT_EQ(it[1].err, 0);
    ASSERT_EQ(it[2].err, ENOENT);
    ASSERT_EQ(it[3].err, EEXIST);
    ASSERT_EQ(spool_scan(dir, SPOOL_AREA_Q, &ids, NULL, &n), 0);
    ASSERT_EQ(n, 2);
    if (n == 2) {
        ASSERT_EQ(ids[0], 0xa1);
        ASSERT_EQ(ids[1], 0xa2);
    }
    free(ids);
    ASSERT_TRUE(!exists(dir, "tmp", 0xa1, ".msg") && !exists(dir, "tmp", 0xa1, ".env"));
    ASSERT_TRUE(!exists(dir, "tmp", 0xa4, ".msg") && !exists(dir, "tmp", 0xa4, ".env"));
    ASSERT_TRUE(!exists(dir, "q", 0xa4, ".msg") && !exists(dir, "q", 0xa4, ".env"));
    ASSERT_TRUE(access(missing, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/q/00000000000000a1.msg", dir);
    text = afile_read(path, 1000, 0, &len, &e2);
    ASSERT_TRUE(text != NULL);
    if (text) {
        ASSERT_STREQ(text, "Subject: a\r\n\r\nbody\r\n");
        free(text);
    }
    ASSERT_EQ(spool_load(dir, SPOOL_AREA_Q, 0xa2, &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.size, 8);
    ASSERT_EQ(m.env.nrcpt, 3);
    spool_msg_free(&m);
    /* an aborted writer whose batch committed it: gone again, .env and .msg */
    spool_tmp_drop(dir, 0xa2, -1, 1);
    ASSERT_TRUE(!exists(dir, "q", 0xa2, ".msg") && !exists(dir, "q", 0xa2, ".env"));
    ASSERT_TRUE(exists(dir, "q", 0xa1, ".env"));
    free(envtext);
    spool_env_free(&e);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

int main(void)
{
    test_env_parse();
    test_env_dsn();
    test_env_longest();
    test_done();
    test_done_quoted_blank();
    test_done_defer();
    test_store();
    test_commit_fd();
    test_commit_batch();
    return CHECK_DONE();
}
