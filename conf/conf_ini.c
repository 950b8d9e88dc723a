/* conf_ini: reads the INI file with inih, through our own line reader so that
 * every message names the file and line, lines inih would split or truncate are
 * refused, and the stdio buffer that held inline passwords is wiped. */
#include "conf/conf_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

/* inih's ini_find_chars_or_comment(): first char of chars, or a ';' after a blank. */
static const char *conf_find_chars_or_comment(const char *s, const char *end, const char *chars)
{
    int was_space = 0;

    while (s < end && !strchr(chars, *s) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* Decides what inih will make of the line, with inih's own rules (ini_parse_stream),
 * so the handler knows its section and line. Returns -1 with an error for lines
 * inih would reject; the reader then hands inih a blank line and goes on. */
static int conf_classify(struct parse *p, const char *line, size_t len)
{
    const char *s = line, *end = line + len, *q;

    if (p->lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3; /* UTF-8 BOM (INI_ALLOW_BOM) */
    }
    while (end > s && isspace((unsigned char)end[-1])) {
        end--;
    }
    while (s < end && isspace((unsigned char)*s)) {
        s++;
    }
    if (s == end || *s == ';' || *s == '#') {
        p->kind = LINE_BLANK;
        return 0;
    }
    if (p->have_prev_name && s > line) {
        p->kind = LINE_CONT;
        return 0;
    }
    if (*s == '[') {
        q = conf_find_chars_or_comment(s + 1, end, "]");
        p->have_prev_name = 0;
        if (q == end || *q != ']') {
            conf__fail_at(p, conf__line(p, p->lineno), "missing ']' in section header");
            p->sect = SECT_NONE;
            p->skip_section = 1;
            return -1;
        }
        p->kind = LINE_SECTION;
        p->skip_section = 0;
        if (conf__section(p, s + 1, (size_t)(q - (s + 1))) != 0) {
            /* its keys would only repeat the error ("outside any section") */
            p->skip_section = 1;
            return -1;
        }
        return 0;
    }
    q = conf_find_chars_or_comment(s, end, "=:");
    if (q == end || (*q != '=' && *q != ':')) {
        /* The line is not quoted: it might be a stray password. */
        conf__fail_at(p, conf__line(p, p->lineno),
                      "syntax error: expected 'key = value', [section] or a ; comment");
        return -1;
    }
    while (q > s && isspace((unsigned char)q[-1])) {
        q--;
    }
    p->kind = LINE_KEY;
    p->have_prev_name = q > s;
    return 0;
}

/* ini_reader over p->fp: hands inih one whole physical line at a time, counts
 * lines, and refuses lines inih would silently split (longer than num - 2 bytes
 * before the newline) or truncate (NUL bytes): those stop the reading. A line
 * with another error is reported and replaced by a blank one, so the errors of
 * the lines after it are reported in the same run. */
static char *conf_reader(char *str, int num, void *stream)
{
    struct parse *p = stream;
    size_t max, n = 0;
    int ch = EOF;

    if (p->fatal || num < 3) {
        return NULL;
    }
    max = (size_t)num - 2;
    while ((ch = getc(p->fp)) != EOF && ch != '\n') {
        if (ch == '\0') {
            explicit_bzero(str, n);
            conf__fail_at(p, conf__line(p, p->lineno + 1), "NUL byte in line");
            p->fatal = 1;
            return NULL;
        }
        if (n == max) {
            explicit_bzero(str, n);
            conf__fail_at(p, conf__line(p, p->lineno + 1),
                          "line longer than %zu characters (inih reads at most %d bytes per "
                          "line, newline included)",
                          max, num - 1);
            p->fatal = 1;
            return NULL;
        }
        str[n++] = (char)ch;
    }
    if (ch == EOF) {
        if (ferror(p->fp)) {
            conf__fail_raw(p, "cannot read %s: %s", p->file, strerror(errno));
            p->fatal = 1;
            return NULL;
        }
        if (n == 0) {
            return NULL;
        }
    } else {
        str[n++] = '\n';
    }
    str[n] = '\0';
    p->lineno++;
    if (conf_classify(p, str, n) != 0) {
        explicit_bzero(str, n); /* the line may hold a stray password */
        str[0] = '\n';
        str[1] = '\0';
        p->kind = LINE_BLANK;
    }
    return str;
}

static int conf_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    const struct key_def *kd;
    size_t len = strlen(value);
    char label[96], hint[160];

    if (p->skip_section) {
        return 1;
    }
    if ((p->kind != LINE_KEY && p->kind != LINE_CONT) || strcmp(section, p->section_raw) != 0) {
        conf__fail_at(p, conf__line(p, p->lineno),
                      "internal error: relay25 and inih disagree about this line");
        return 0;
    }
    if (p->sect == SECT_NONE) {
        conf__fail_at(p, conf__line(p, p->lineno),
                      "key '%s' outside any section (start with [relay], [upstream NAME], "
                      "[device NAME], [route NAME] or [sendmail])",
                      name);
        return 0;
    }
    kd = conf__find_key(p->sect, name);
    if (!kd) {
        hint[0] = '\0';
        if (p->strict) {
            conf__key_hint(p->sect, name, hint, sizeof(hint));
        }
        conf__fail_at(p, conf__line(p, p->lineno), "unknown key '%s' in %s%s", name,
                      conf__label(p, label, sizeof(label)), hint);
        return 0;
    }
    if (p->kind == LINE_CONT) {
        if (!kd->list) {
            conf__fail_at(p, conf__line(p, p->lineno),
                          "'%s' takes one value; only lists (listen, allow, match, upstream, "
                          "proxy_from, allowed_senders, allowed_recipients) continue on indented "
                          "lines",
                          name);
            return 0;
        }
        /* inih 55 leaves inline comments in continuation lines; cut them as it does
         * on key lines (a ';' after a blank). */
        len = (size_t)(conf_find_chars_or_comment(value, value + len, "") - value);
    }
    return conf__apply(p, kd, value, len) == 0;
}

int conf__load_file(struct parse *p, const char *path)
{
    /* Our own stdio buffer, so inline passwords read through it can be wiped. */
    char iobuf[4096];
    struct stat st;
    FILE *fp;
    int r;

    fp = fopen(path, "re");
    if (!fp) {
        conf__fail_raw(p, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    setvbuf(fp, iobuf, _IOFBF, sizeof(iobuf));
    /* the file that is read, not the path again: an inline password in a file
     * others can read is warned about (conf.h exposed_line) */
    p->others_read = fstat(fileno(fp), &st) == 0 && (st.st_mode & S_IROTH);
    p->fp = fp;
    r = ini_parse_stream(conf_reader, p, conf_on_key, p);
    p->fp = NULL;
    fclose(fp);
    explicit_bzero(iobuf, sizeof(iobuf));
    if (r == -2) {
        return conf__oom(p);
    }
    if (r > 0 && (!p->failed || (p->fail_line > 0 && r < p->fail_line))) {
        /* The reader reports every line inih rejects, so this is a safety net. */
        conf__fail_at(p, conf__line(p, r), "syntax error");
    }
    return p->failed ? -1 : 0;
}
