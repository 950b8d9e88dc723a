/* test_prx_cmd: inbound command parsing (proxy/prx_cmd.c): verbs and arguments,
 * MAIL/RCPT paths (null path, source routes, quoted local parts, syntax and
 * length errors) and ESMTP parameter lookup. RFC 5321 §4.1.1, §4.1.2. */
#include "proxy/prx_cmd.h"

#include <string.h>

#include "tests/check.h"

static enum prx_verb verb(const char *line)
{
    struct prx_cmd c;

    ASSERT_EQ(prx_cmd_parse(line, strlen(line), &c), 0);
    return c.verb;
}

/* Parses line, checks verb and the argument text. */
static void check_cmd(const char *line, enum prx_verb v, const char *arg)
{
    struct prx_cmd c;

    ASSERT_EQ(prx_cmd_parse(line, strlen(line), &c), 0);
    ASSERT_EQ(c.verb, v);
    ASSERT_MEMEQ(c.arg, c.arglen, arg, strlen(arg));
}

static void test_verbs(void)
{
    static const struct {
        const char *s;
        enum prx_verb v;
    } all[] = {
        {"HELO", PRX_V_HELO}, {"EHLO", PRX_V_EHLO}, {"MAIL", PRX_V_MAIL},
        {"RCPT", PRX_V_RCPT}, {"DATA", PRX_V_DATA}, {"RSET", PRX_V_RSET},
        {"NOOP", PRX_V_NOOP}, {"QUIT", PRX_V_QUIT}, {"VRFY", PRX_V_VRFY},
        {"EXPN", PRX_V_EXPN}, {"HELP", PRX_V_HELP}, {"STARTTLS", PRX_V_STARTTLS},
        {"AUTH", PRX_V_AUTH}, {"BDAT", PRX_V_BDAT},
    };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ASSERT_EQ(verb(all[i].s), all[i].v);

    /* Case-insensitive. */
    ASSERT_EQ(verb("ehlo"), PRX_V_EHLO);
    ASSERT_EQ(verb("StartTLS"), PRX_V_STARTTLS);
    ASSERT_EQ(verb("quit"), PRX_V_QUIT);

    /* Verb glued to something else, prefixes, leading blanks, empty. */
    ASSERT_EQ(verb("MAILFROM:<a@b>"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("DATAX"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("STARTTLSX"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("STARTTL"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("STAR"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("QUI"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb(" QUIT"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb(""), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("XCLIENT ADDR=1.2.3.4"), PRX_V_UNKNOWN);
    ASSERT_EQ(verb("DATA:"), PRX_V_UNKNOWN);

    /* Arguments: blanks after the verb skipped, trailing blanks removed. */
    check_cmd("EHLO client.example", PRX_V_EHLO, "client.example");
    check_cmd("ehlo   client.example  ", PRX_V_EHLO, "client.example");
    check_cmd("EHLO\tclient.example\t", PRX_V_EHLO, "client.example");
    check_cmd("MAIL FROM:<a@b> SIZE=10", PRX_V_MAIL, "FROM:<a@b> SIZE=10");
    check_cmd("DATA", PRX_V_DATA, "");
    check_cmd("DATA ", PRX_V_DATA, "");
    check_cmd("DATA \t ", PRX_V_DATA, "");
    check_cmd("NOOP hello world", PRX_V_NOOP, "hello world");
    check_cmd("AUTH PLAIN AHRpbQB0aW0=", PRX_V_AUTH, "PLAIN AHRpbQB0aW0=");
    check_cmd("BDAT 100 LAST", PRX_V_BDAT, "100 LAST");

    /* Only len bytes are looked at (the line is not NUL-terminated). */
    {
        struct prx_cmd c;

        ASSERT_EQ(prx_cmd_parse("QUITTER", 4, &c), 0);
        ASSERT_EQ(c.verb, PRX_V_QUIT);
        ASSERT_EQ(c.arglen, 0);
        ASSERT_STREQ(c.arg, "");
        ASSERT_EQ(prx_cmd_parse("HELO a.b XYZ", 8, &c), 0);
        ASSERT_EQ(c.verb, PRX_V_HELO);
        ASSERT_MEMEQ(c.arg, c.arglen, "a.b", 3);
    }
}

/* Runs prx_cmd_path with a PRX_PATH_MAX buffer; returns its result. */
static int path(const char *arg, const char *kw, char *addr, const char **params, size_t *plen)
{
    return prx_cmd_path(arg, strlen(arg), kw, addr, PRX_PATH_MAX, params, plen);
}

static void check_path(const char *arg, const char *kw, const char *want_addr,
                       const char *want_params)
{
    char addr[PRX_PATH_MAX];
    const char *params = NULL;
    size_t plen = 99;
    int rc = path(arg, kw, addr, &params, &plen);

    if (rc != PRX_PATH_OK)
        fprintf(stderr, "rejected \"%s\"\n", arg);
    ASSERT_EQ(rc, PRX_PATH_OK);
    ASSERT_STREQ(addr, want_addr);
    ASSERT_MEMEQ(params, plen, want_params, strlen(want_params));
}

static void check_path_err(const char *arg, const char *kw, int err)
{
    char addr[PRX_PATH_MAX];
    const char *params;
    size_t plen;
    int rc = path(arg, kw, addr, &params, &plen);

    if (rc != err)
        fprintf(stderr, "\"%s\" gave %d\n", arg, rc);
    ASSERT_EQ(rc, err);
}

static void test_path(void)
{
    char addr[PRX_PATH_MAX + 8], arg[PRX_PATH_MAX + 32];
    const char *params;
    size_t plen;

    check_path("FROM:<a@b.example>", "FROM", "a@b.example", "");
    check_path("FROM: <a@b.example>", "FROM", "a@b.example", "");
    check_path("FROM:\t <a@b.example>", "FROM", "a@b.example", "");
    check_path("from:<a@b>", "FROM", "a@b", "");
    check_path("From:<a@b>", "from", "a@b", "");
    check_path("FROM:a@b", "FROM", "a@b", "");
    check_path("FROM: a@b SIZE=10", "FROM", "a@b", "SIZE=10");
    check_path("FROM:<a@b> SIZE=10", "FROM", "a@b", "SIZE=10");
    check_path("FROM:<a@b>   SIZE=10 BODY=8BITMIME  ", "FROM", "a@b", "SIZE=10 BODY=8BITMIME");
    check_path("FROM:<a@b>\tSIZE=10", "FROM", "a@b", "SIZE=10");
    check_path("FROM:<>", "FROM", "", "");
    check_path("FROM:<> SIZE=0", "FROM", "", "SIZE=0");
    check_path("FROM: <>", "FROM", "", "");
    check_path("TO:<postmaster>", "TO", "postmaster", "");
    check_path("to:<u@d> NOTIFY=NEVER", "TO", "u@d", "NOTIFY=NEVER");
    check_path("TO:<a@[192.0.2.1]>", "TO", "a@[192.0.2.1]", "");
    check_path("TO:<a@[IPv6:2001:db8::1]>", "TO", "a@[IPv6:2001:db8::1]", "");
    check_path("TO:<\xc3\xa9@d.example>", "TO", "\xc3\xa9@d.example", "");

    /* Source routes are dropped (RFC 5321 §4.1.2, Appendix C). */
    check_path("TO:<@a,@b:u@d>", "TO", "u@d", "");
    check_path("TO:<@a:u@d>", "TO", "u@d", "");
    check_path("TO:<@[IPv6:::1],@b.example:u@d> X=1", "TO", "u@d", "X=1");

    /* Quoted local parts: blanks and specials inside the quotes. */
    check_path("TO:<\"a b\"@x>", "TO", "\"a b\"@x", "");
    check_path("TO:<\"a>b<c\"@x> P", "TO", "\"a>b<c\"@x", "P");
    check_path("TO:<\"a\\\" b\"@x>", "TO", "\"a\\\" b\"@x", "");
    check_path("TO:\"a b\"@x SIZE=1", "TO", "\"a b\"@x", "SIZE=1");

    /* Syntax errors. */
    check_path_err("FROM<a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM <a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:   ", "FROM", PRX_PATH_SYNTAX);
    check_path_err("", "FROM", PRX_PATH_SYNTAX);
    check_path_err("TO:<a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROMX:<a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a@b", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<<a@b>>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a@b>>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a @b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:< a@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a@b >", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a\t@b>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a@b>x", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<a@b>SIZE=1", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:<\"a b@x>", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:\"a b@x", "FROM", PRX_PATH_SYNTAX);
    check_path_err("FROM:a<b@x", "FROM", PRX_PATH_SYNTAX);
    check_path_err("TO:<@a:>", "TO", PRX_PATH_SYNTAX);
    check_path_err("TO:<@:u@d>", "TO", PRX_PATH_SYNTAX);
    check_path_err("TO:<@a,u@d>", "TO", PRX_PATH_SYNTAX);
    check_path_err("TO:<@a,:u@d>", "TO", PRX_PATH_SYNTAX);
    check_path_err("TO:<@[::1:u@d>", "TO", PRX_PATH_SYNTAX);
    /* Control characters (a NUL would truncate the copied address). */
    {
        char addr2[PRX_PATH_MAX];

        ASSERT_EQ(prx_cmd_path("TO:<a\0b@x>", 10, "TO", addr2, sizeof(addr2), &params, &plen),
                  PRX_PATH_SYNTAX);
        ASSERT_EQ(prx_cmd_path("TO:a\0b@x", 8, "TO", addr2, sizeof(addr2), &params, &plen),
                  PRX_PATH_SYNTAX);
        check_path_err("TO:<a\rb@x>", "TO", PRX_PATH_SYNTAX);
        check_path_err("TO:<a\x7f@x>", "TO", PRX_PATH_SYNTAX);
    }

    /* Only arglen bytes are read. */
    ASSERT_EQ(prx_cmd_path("FROM:<a@b>XYZ", 10, "FROM", addr, sizeof(addr), &params, &plen),
              PRX_PATH_OK);
    ASSERT_STREQ(addr, "a@b");
    ASSERT_EQ(plen, 0);

    /* Lengths: PRX_PATH_MAX - 1 octets fit, one more is too long; so is addrsz. */
    memcpy(arg, "TO:<", 4);
    memset(arg + 4, 'a', PRX_PATH_MAX - 1);
    memcpy(arg + 4 + PRX_PATH_MAX - 1, ">", 2);
    ASSERT_EQ(prx_cmd_path(arg, strlen(arg), "TO", addr, sizeof(addr), &params, &plen),
              PRX_PATH_OK);
    ASSERT_EQ(strlen(addr), PRX_PATH_MAX - 1);
    memset(arg + 4, 'a', PRX_PATH_MAX);
    memcpy(arg + 4 + PRX_PATH_MAX, ">", 2);
    ASSERT_EQ(prx_cmd_path(arg, strlen(arg), "TO", addr, sizeof(addr), &params, &plen),
              PRX_PATH_TOO_LONG);
    /* The same without brackets. */
    ASSERT_EQ(prx_cmd_path(arg + 4, PRX_PATH_MAX, "TO", addr, sizeof(addr), &params, &plen),
              PRX_PATH_SYNTAX); /* no "TO:" */
    memcpy(arg + 1, "TO:", 3);
    ASSERT_EQ(prx_cmd_path(arg + 1, 3 + PRX_PATH_MAX, "TO", addr, sizeof(addr), &params, &plen),
              PRX_PATH_TOO_LONG);
    ASSERT_EQ(prx_cmd_path(arg + 1, 3 + PRX_PATH_MAX - 1, "TO", addr, sizeof(addr), &params, &plen),
              PRX_PATH_OK);

    ASSERT_EQ(prx_cmd_path("TO:<abcd>", 9, "TO", addr, 5, &params, &plen), PRX_PATH_OK);
    ASSERT_STREQ(addr, "abcd");
    ASSERT_EQ(prx_cmd_path("TO:<abcde>", 10, "TO", addr, 5, &params, &plen), PRX_PATH_TOO_LONG);
    ASSERT_EQ(prx_cmd_path("TO:<>", 5, "TO", addr, 1, &params, &plen), PRX_PATH_OK);
    ASSERT_STREQ(addr, "");
    ASSERT_EQ(prx_cmd_path("TO:<a>", 6, "TO", addr, 0, &params, &plen), PRX_PATH_TOO_LONG);
}

static void check_param(const char *params, const char *name, int found, const char *val)
{
    const char *v = NULL;
    size_t vl = 99;

    ASSERT_EQ(prx_cmd_param(params, strlen(params), name, &v, &vl), found);
    if (found)
        ASSERT_MEMEQ(v, vl, val, strlen(val));
}

static void test_param(void)
{
    const char *p = "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159";

    check_param(p, "SIZE", 1, "1000");
    check_param(p, "size", 1, "1000");
    check_param(p, "BODY", 1, "8BITMIME");
    check_param(p, "SMTPUTF8", 1, "");
    check_param(p, "ENVID", 1, "QQ314159");
    check_param(p, "RET", 1, "HDRS");
    check_param(p, "AUTH", 0, NULL);
    check_param(p, "SIZ", 0, NULL);
    check_param(p, "SIZE=1000", 0, NULL);
    check_param(p, "SMTPUTF", 0, NULL);
    check_param("", "SIZE", 0, NULL);
    check_param("   ", "SIZE", 0, NULL);
    check_param("SIZE=", "SIZE", 1, "");
    check_param("  size=42  ", "SIZE", 1, "42");
    check_param("A=1\tB=2", "B", 1, "2");
    check_param("SIZEX=1 SIZE=2", "SIZE", 1, "2");
    check_param("XSIZE=1", "SIZE", 0, NULL);
    check_param("AUTH=<>", "AUTH", 1, "<>");
    check_param("A=b=c", "A", 1, "b=c");

    /* Only len bytes are read. */
    {
        const char *v;
        size_t vl;

        ASSERT_EQ(prx_cmd_param("SIZE=10 BODY=7BIT", 7, "BODY", &v, &vl), 0);
        ASSERT_EQ(prx_cmd_param("SIZE=10 BODY=7BIT", 6, "SIZE", &v, &vl), 1);
        ASSERT_MEMEQ(v, vl, "1", 1);
    }

    /* From a full command line through the three functions. */
    {
        const char *line = "mail from:<@relay:bob@example.org> size=2048 body=8bitmime";
        struct prx_cmd c;
        char addr[PRX_PATH_MAX];
        const char *params, *v;
        size_t plen, vl;

        ASSERT_EQ(prx_cmd_parse(line, strlen(line), &c), 0);
        ASSERT_EQ(c.verb, PRX_V_MAIL);
        ASSERT_EQ(prx_cmd_path(c.arg, c.arglen, "FROM", addr, sizeof(addr), &params, &plen),
                  PRX_PATH_OK);
        ASSERT_STREQ(addr, "bob@example.org");
        ASSERT_EQ(prx_cmd_param(params, plen, "SIZE", &v, &vl), 1);
        ASSERT_MEMEQ(v, vl, "2048", 4);
        ASSERT_EQ(prx_cmd_param(params, plen, "BODY", &v, &vl), 1);
        ASSERT_MEMEQ(v, vl, "8bitmime", 8);
    }
}

int main(void)
{
    test_verbs();
    test_path();
    test_param();
    return CHECK_DONE();
}
