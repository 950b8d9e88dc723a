/* test_rewrite: the From: rewrite (proxy/prx_rewrite.c) over a header section:
 * display name kept, bare address replaced, folded value unfolded, Reply-To:
 * added only when the message has none, the envelope sender when From: names no
 * address, the section unchanged around the From: field, NULL without a From:. */
#include "proxy/prx_rewrite.h"

#include <stdlib.h>
#include <string.h>

#include "tests/check.h"

#define NEW "office@example.com"

/* Rewrites h and compares with want (NULL: no rewrite expected). */
static void check(const char *h, const char *orig_from, const char *want)
{
    size_t n = 0;
    char *out = prx_rewrite_from(h, strlen(h), NEW, orig_from, &n);

    if (!want) {
        ASSERT_TRUE(out == NULL);
    } else {
        ASSERT_TRUE(out != NULL);
        if (out) {
            ASSERT_MEMEQ(out, n, want, strlen(want));
        }
    }
    free(out);
}

static void test_display_name(void)
{
    check("Subject: hi\r\nFrom: \"Scanner\" <scan@lan>\r\nTo: a@b\r\n\r\n", "scan@lan",
          "Subject: hi\r\nFrom: \"Scanner\" <" NEW ">\r\nReply-To: <scan@lan>\r\nTo: a@b\r\n\r\n");
    /* a '<' inside the quoted display name is not the address */
    check("From: \"a <b>\" <scan@lan>\r\n", "",
          "From: \"a <b>\" <" NEW ">\r\nReply-To: <scan@lan>\r\n");
    check("From: <scan@lan>\r\n", "", "From: <" NEW ">\r\nReply-To: <scan@lan>\r\n");
}

static void test_folded(void)
{
    check("From: \"Scanner, 2nd floor\"\r\n\t<scan@lan>\r\nSubject: x\r\n", "",
          "From: \"Scanner, 2nd floor\" <" NEW ">\r\nReply-To: <scan@lan>\r\nSubject: x\r\n");
}

static void test_bare_address(void)
{
    check("From: scan@lan (the scanner)\r\n", "", "From: " NEW "\r\nReply-To: <scan@lan>\r\n");
    /* the message's own Reply-To: stays the only one */
    check("From: scan@lan\r\nReply-To: desk@example.org\r\n", "",
          "From: " NEW "\r\nReply-To: desk@example.org\r\n");
    check("reply-to : desk@example.org\r\nfrom:scan@lan\r\n", "",
          "reply-to : desk@example.org\r\nFrom: " NEW "\r\n");
}

static void test_no_address(void)
{
    /* From: names nobody: the envelope sender is the one to answer */
    check("From:\r\nSubject: x\r\n", "env@lan",
          "From: " NEW "\r\nReply-To: <env@lan>\r\nSubject: x\r\n");
    check("From:\r\n", "", "From: " NEW "\r\n");
}

static void test_first_from_only(void)
{
    check("From: a@lan\r\nFrom: b@lan\r\n", "",
          "From: " NEW "\r\nReply-To: <a@lan>\r\nFrom: b@lan\r\n");
    /* the body is not part of the section */
    check("Subject: x\r\n\r\nFrom: a@lan\r\n", "", NULL);
    check("Fromage: a@lan\r\nFrom x: y\r\n", "", NULL);
    check("", "", NULL);
}

int main(void)
{
    test_display_name();
    test_folded();
    test_bare_address();
    test_no_address();
    test_first_from_only();
    return CHECK_DONE();
}
