/* test_hdr: the RFC 5322 header-field walker (common/hdr.c): fields with
 * continuation lines (§2.2.3), the empty line that ends the section (§2.1),
 * names compared without case, blanks before the colon (§4.5.8), LF-only lines,
 * a last field without a line end. */
#include "common/hdr.h"

#include <string.h>

#include "tests/check.h"

/* the field's value against a string literal */
#define VALUE_IS(h, f, lit) ASSERT_MEMEQ((h) + (f).value, (f).end - (f).value, lit, sizeof(lit) - 1)

static void test_fields(void)
{
    static const char h[] = "From: \"A\" <a@lan>\r\nSubject: one\r\n\ttwo\r\n  three\r\n"
                            "X-Empty:\r\n\r\nbody: not a field\r\n";
    size_t off = 0, len = sizeof(h) - 1;
    struct hdr_field f;

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_EQ(f.start, 0);
    ASSERT_EQ(f.name_len, 4);
    ASSERT_TRUE(f.colon);
    ASSERT_TRUE(hdr_is(h, &f, "from"));
    ASSERT_TRUE(hdr_is(h, &f, "FROM"));
    ASSERT_TRUE(!hdr_is(h, &f, "Fro"));
    VALUE_IS(h, f, " \"A\" <a@lan>\r\n");

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_TRUE(hdr_is(h, &f, "Subject"));
    /* both continuation lines belong to Subject */
    VALUE_IS(h, f, " one\r\n\ttwo\r\n  three\r\n");

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_TRUE(hdr_is(h, &f, "X-Empty"));
    ASSERT_EQ(f.end - f.value, 2);

    /* the empty line ends the section: the body is never walked */
    ASSERT_EQ(hdr_next(h, len, &off, &f), 0);
    ASSERT_EQ(hdr_next(h, len, &off, &f), 0);
}

static void test_odd_fields(void)
{
    static const char h[] = "From :x@lan\nFromage: cheese\nFrom x: y\nno colon here\nLast: end";
    size_t off = 0, len = sizeof(h) - 1;
    struct hdr_field f;

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1); /* obsolete syntax: blank before ':' */
    ASSERT_TRUE(hdr_is(h, &f, "From"));
    ASSERT_TRUE(f.colon);
    VALUE_IS(h, f, "x@lan\n");

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_TRUE(!hdr_is(h, &f, "From"));
    ASSERT_TRUE(hdr_is(h, &f, "Fromage"));

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1); /* a name followed by a word: not a field */
    ASSERT_TRUE(hdr_is(h, &f, "From"));
    ASSERT_TRUE(!f.colon);

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_TRUE(!f.colon);
    ASSERT_EQ(f.value, f.end); /* no ':' on its line */

    ASSERT_EQ(hdr_next(h, len, &off, &f), 1);
    ASSERT_TRUE(hdr_is(h, &f, "Last"));
    ASSERT_EQ(f.end, len);
    ASSERT_EQ(hdr_next(h, len, &off, &f), 0);
}

static void test_empty(void)
{
    size_t off = 0;
    struct hdr_field f;

    ASSERT_EQ(hdr_next("", 0, &off, &f), 0);
    ASSERT_EQ(hdr_next("\r\nbody", 6, &off, &f), 0);
    ASSERT_EQ(hdr_next("\nbody", 5, &off, &f), 0);
    ASSERT_EQ(off, 0);
}

int main(void)
{
    test_fields();
    test_odd_fields();
    test_empty();
    return CHECK_DONE();
}
