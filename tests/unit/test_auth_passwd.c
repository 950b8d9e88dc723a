/* test_auth_passwd: inbound AUTH pieces: PLAIN response decoding (RFC 4616),
 * crypt(3) hashes made and checked, and the checks' budget in the thread pool
 * (auth/auth_passwd.c): at most max_running, a FIFO queue, UV_EBUSY beyond it. */
#include "auth/auth_passwd.h"

#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

static void test_plain_decode(void)
{
    char login[16], pass[16];

    ASSERT_EQ(auth_plain_decode("\0alice\0secret", 13, login, sizeof(login), pass, sizeof(pass)),
              0);
    ASSERT_STREQ(login, "alice");
    ASSERT_STREQ(pass, "secret");
    /* authzid equal to the login is accepted, another identity is not */
    ASSERT_EQ(auth_plain_decode("alice\0alice\0pw", 14, login, sizeof(login), pass, sizeof(pass)),
              0);
    ASSERT_EQ(auth_plain_decode("bob\0alice\0pw", 12, login, sizeof(login), pass, sizeof(pass)),
              -1);
    ASSERT_EQ(auth_plain_decode("\0alice", 6, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0\0pw", 4, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0a\0p\0w", 6, login, sizeof(login), pass, sizeof(pass)), -1);
    ASSERT_EQ(auth_plain_decode("\0a-very-long-login-name\0p", 25, login, sizeof(login), pass,
                                sizeof(pass)),
              -1);
    /* empty password: decoded, and then simply wrong */
    ASSERT_EQ(auth_plain_decode("\0a\0", 3, login, sizeof(login), pass, sizeof(pass)), 0);
    ASSERT_STREQ(pass, "");
}

static void test_hash(void)
{
    char *h = auth_passwd_hash("correct horse");
    char *h2 = auth_passwd_hash("correct horse");

    ASSERT_TRUE(h != NULL && h2 != NULL);
    ASSERT_TRUE(strncmp(h, "$y$", 3) == 0);
    ASSERT_TRUE(strcmp(h, h2) != 0); /* salted */
    ASSERT_EQ(auth_passwd_check(h, "correct horse"), 1);
    ASSERT_EQ(auth_passwd_check(h, "correct horsE"), 0);
    ASSERT_EQ(auth_passwd_check(h, ""), 0);
    ASSERT_EQ(auth_passwd_check("*", "x"), 0);
    ASSERT_EQ(auth_passwd_check(NULL, "x"), 0);
    free(h);
    free(h2);
}

/* One verify request's record: its result and when its callback ran. */
struct sched_req {
    int result;
    int order; /* 1.. in callback order; 0: not yet */
    int live;  /* what the live callback answers */
    int asked; /* the live callback ran */
};

static int sched_calls;

static void sched_done(void *arg, int result)
{
    struct sched_req *r = arg;

    ASSERT_EQ(r->order, 0); /* exactly once */
    r->result = result;
    r->order = ++sched_calls;
}

static int sched_live(void *arg)
{
    struct sched_req *r = arg;

    r->asked = 1;
    return r->live;
}

static void test_sched(void)
{
    uv_loop_t loop;
    struct auth_passwd_sched *q;
    struct sched_req r[7];
    char *h = auth_passwd_hash("right");

    ASSERT_TRUE(h != NULL);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 7; i++) {
        r[i].live = 1;
    }
    r[3].live = 0; /* its session went away while it waited */
    ASSERT_EQ(uv_loop_init(&loop), 0);
    q = auth_passwd_sched_new(&loop, 2, 3);
    ASSERT_TRUE(q != NULL);
    /* 0 and 1 run, 2..4 wait, 5 finds the queue full */
    ASSERT_EQ(auth_passwd_verify(q, h, "right", sched_done, sched_live, &r[0]), 0);
    ASSERT_EQ(auth_passwd_verify(q, h, "wrong", sched_done, sched_live, &r[1]), 0);
    ASSERT_EQ(auth_passwd_verify(q, NULL, "right", sched_done, sched_live, &r[2]), 0);
    ASSERT_EQ(auth_passwd_verify(q, h, "right", sched_done, sched_live, &r[3]), 0);
    ASSERT_EQ(auth_passwd_verify(q, h, "right", sched_done, NULL, &r[4]), 0);
    ASSERT_EQ(auth_passwd_verify(q, h, "right", sched_done, sched_live, &r[5]), UV_EBUSY);
    ASSERT_EQ(sched_calls, 0);             /* never called back from inside the call */
    ASSERT_EQ(r[0].asked + r[1].asked, 0); /* started at once: nothing to ask */
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(sched_calls, 5);
    ASSERT_EQ(r[0].result, AUTH_PASSWD_OK);
    ASSERT_EQ(r[1].result, AUTH_PASSWD_BAD);
    ASSERT_EQ(r[2].result, AUTH_PASSWD_BAD); /* unknown login */
    ASSERT_EQ(r[3].result, AUTH_PASSWD_SKIPPED);
    ASSERT_EQ(r[4].result, AUTH_PASSWD_OK);
    ASSERT_EQ(r[5].order, 0);
    ASSERT_EQ(r[2].asked, 1);
    ASSERT_EQ(r[3].asked, 1);
    /* the waiting ones are taken in order: 3 is skipped before 4 can finish */
    ASSERT_TRUE(r[3].order < r[4].order);
    /* the queue has room again */
    ASSERT_EQ(auth_passwd_verify(q, h, "right", sched_done, sched_live, &r[6]), 0);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(r[6].result, AUTH_PASSWD_OK);
    /* a password over AUTH_PASSWD_MAX is refused before it is queued */
    {
        char big[AUTH_PASSWD_MAX + 2];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ASSERT_EQ(auth_passwd_verify(q, h, big, sched_done, NULL, &r[5]), UV_EINVAL);
    }
    auth_passwd_sched_free(q);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    free(h);
}

int main(void)
{
    test_plain_decode();
    test_hash();
    test_sched();
    return CHECK_DONE();
}
