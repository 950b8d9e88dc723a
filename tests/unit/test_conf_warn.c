/* test_conf_warn: configurations that load with a warning (conf/conf_warn.c): a
 * listener other hosts reach with a loopback-only allow, allow wider than the private
 * ranges, secret files readable by others or another group or unreadable by the user
 * relay25 drops to, unknown RELAY25_* variables, log = syslog without a syslog socket;
 * and the configurations that must not warn. */
#include "conf/conf.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/check.h"

#define CONF "warn.conf"
#define UP "[upstream up]\nhost = smtp.example.net\n"

static char tmpdir[256];

static struct conf *load(const char *text)
{
    char err[1024] = "";
    struct conf *c;
    FILE *f = fopen(CONF, "w");

    ASSERT_TRUE(f != NULL);
    if (!f) {
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    chmod(CONF, 0644);
    c = conf_load(CONF, CONF_LOAD_STRICT, err, sizeof(err));
    ASSERT_TRUE(c != NULL);
    if (!c) {
        fprintf(stderr, "  load: %s\n", err);
    }
    return c;
}

/* The warning containing part, on line (-1: any line); NULL if none. */
static const struct conf_warning *find(const struct conf *c, const char *part, int line)
{
    for (size_t i = 0; c && i < c->nwarnings; i++) {
        if (strstr(c->warnings[i].text, part) && (line < 0 || c->warnings[i].line == line)) {
            return &c->warnings[i];
        }
    }
    return NULL;
}

static void expect(int line_of_test, const struct conf *c, const char *part, int line, int want)
{
    int got = find(c, part, line) != NULL;

    ASSERT_EQ(got, want);
    if (got != want) {
        fprintf(stderr, "  test line %d: warning \"%s\" (line %d) %s; warnings:\n", line_of_test,
                part, line, want ? "missing" : "unexpected");
        for (size_t i = 0; c && i < c->nwarnings; i++) {
            fprintf(stderr, "    %d: %s\n", c->warnings[i].line, c->warnings[i].text);
        }
    }
}
#define EXPECT_WARN(c, part, line) expect(__LINE__, c, part, line, 1)
#define EXPECT_NO_WARN(c, part) expect(__LINE__, c, part, -1, 0)

static void test_listen_allow(void)
{
    struct conf *c;

    c = load("[relay]\nlisten = 0.0.0.0:2525\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_WARN(c,
                "listen = 0.0.0.0:2525 takes connections from other hosts, but allow (not set: "
                "loopback only) admits only this host: every other client gets 554",
                2);
    conf_free(c);
    c = load("[relay]\nlisten = [::]:2525\nallow = 127.0.0.1/32, ::1\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_WARN(c, "listen = [::]:2525 takes connections from other hosts, but allow admits", 2);
    conf_free(c);
    c = load("[relay]\nlisten = 0.0.0.0:2525\nallow = 192.168.1.0/24\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_NO_WARN(c, "takes connections from other hosts");
    EXPECT_NO_WARN(c, "beyond the private ranges");
    conf_free(c);
    c = load("[relay]\nlisten = 127.0.0.1:2525\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    ASSERT_EQ(c ? c->nwarnings : 99, 0);
    conf_free(c);

    c = load("[relay]\nlisten = 0.0.0.0:25\nallow = 192.168.0.0/16\n  0.0.0.0/0\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_WARN(c, "allow = 0.0.0.0/0 reaches beyond the private ranges", 3);
    EXPECT_NO_WARN(c, "allow = 192.168.0.0/16");
    conf_free(c);
    c = load("[relay]\nallow = ::/0\n" UP "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_WARN(c, "allow = ::/0 reaches beyond the private ranges", 2);
    conf_free(c);
    /* an office's own public range, and every private range, are fine */
    c = load("[relay]\nallow = 203.0.113.0/24, 10.0.0.0/8, 172.16.0.0/12, 100.64.0.0/10, "
             "fd00::/8, 2001:db8:1::/48\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_NO_WARN(c, "beyond the private ranges");
    conf_free(c);
    c = load("[relay]\nallow = 198.51.0.0/16\n" UP
             "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    EXPECT_WARN(c, "allow = 198.51.0.0/16 reaches beyond", 2);
    conf_free(c);
}

static void test_secrets(void)
{
    char text[1024], pw[300];
    struct conf *c;
    const struct passwd *nobody = getpwnam("nobody");

    snprintf(pw, sizeof(pw), "%s/pw", tmpdir);
    {
        FILE *f = fopen(pw, "w");
        ASSERT_TRUE(f != NULL);
        if (f) {
            fputs("secret\n", f);
            fclose(f);
        }
    }
    snprintf(text, sizeof(text),
             "[relay]\nuser = %s\n" UP "[device default]\nuser = a@b.c\npassword_file = %s\n",
             nobody ? "nobody" : "root", pw);

    chmod(pw, 0644);
    c = load(text);
    EXPECT_WARN(c, "password_file ", 7);
    EXPECT_WARN(c, "is readable by every user (mode 0644): chmod o-r", 7);
    conf_free(c);

    /* group-readable by a group that is not the drop user's */
    if (geteuid() == 0 && chown(pw, 0, 0) == 0) {
        chmod(pw, 0640);
        c = load(text);
        EXPECT_WARN(c, "is readable by group", 7);
        EXPECT_NO_WARN(c, "readable by every user");
        conf_free(c);
    }

    /* root-owned 0600: fine for root, unreadable for the user relay25 drops to */
    chmod(pw, 0600);
    c = load(text);
    EXPECT_NO_WARN(c, "is readable by");
    if (geteuid() == 0 && nobody) {
        EXPECT_WARN(c,
                    "is not readable by user nobody, which relay25 runs as after start: the "
                    "next reload (SIGHUP) will fail; chgrp ",
                    7);
    } else {
        EXPECT_NO_WARN(c, "is not readable by user");
    }
    conf_free(c);

    /* given to the drop user's group: no warning at all */
    if (geteuid() == 0 && nobody && chown(pw, 0, nobody->pw_gid) == 0) {
        chmod(pw, 0640);
        c = load(text);
        ASSERT_EQ(c ? c->nwarnings : 99, 0);
        conf_free(c);
    }
    unlink(pw);
}

static void test_env(void)
{
    struct conf *c;

    setenv("RELAY25_LISTNE", "0.0.0.0:25", 1);
    setenv("RELAY25_USER_FILE", "/run/secrets/user", 1); /* the entrypoint's _FILE form */
    setenv("RELAY25_PRINTER_PW", "x", 1);                /* named by password_env */
    setenv("RELAY25_CA_FILE", "/etc/ssl/ca.pem", 1);
    c = load(UP "[device default]\nuser = a@b.c\npassword_env = RELAY25_PRINTER_PW\n");
    EXPECT_WARN(c,
                "RELAY25_LISTNE is not a relay25 variable and is ignored (did you mean "
                "RELAY25_LISTEN?)",
                0);
    EXPECT_NO_WARN(c, "RELAY25_USER_FILE");
    EXPECT_NO_WARN(c, "RELAY25_PRINTER_PW");
    EXPECT_NO_WARN(c, "RELAY25_CA_FILE");
    conf_free(c);
    setenv("RELAY25_FROBNICATE", "1", 1);
    c = load(UP "[device default]\nuser = a@b.c\npassword_env = RELAY25_PRINTER_PW\n");
    EXPECT_WARN(c, "RELAY25_FROBNICATE is not a relay25 variable and is ignored", 0);
    EXPECT_NO_WARN(c, "RELAY25_FROBNICATE is not a relay25 variable and is ignored (did you mean");
    conf_free(c);
    unsetenv("RELAY25_LISTNE");
    unsetenv("RELAY25_USER_FILE");
    unsetenv("RELAY25_PRINTER_PW");
    unsetenv("RELAY25_CA_FILE");
    unsetenv("RELAY25_FROBNICATE");
}

/* What the test itself finds on /dev/log decides what conf must say. */
static int syslog_listening(void)
{
    struct sockaddr_un sa;
    int ok = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/dev/log");
    for (int type = 0; type < 2 && !ok; type++) {
        int fd = socket(AF_UNIX, type ? SOCK_STREAM : SOCK_DGRAM, 0);
        ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0) {
            close(fd);
        }
    }
    return ok;
}

static void test_syslog(void)
{
    struct conf *c =
        load("[relay]\nlog = syslog\n" UP "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    int up = syslog_listening();

    ASSERT_EQ(c ? c->log_syslog : -1, 1); /* what the file says stays */
    ASSERT_EQ(c ? c->syslog_unavailable : -1, !up);
    if (up) {
        EXPECT_NO_WARN(c, "log = syslog");
    } else {
        EXPECT_WARN(c,
                    "log = syslog, but nothing listens on /dev/log (no syslog daemon): relay25 "
                    "logs to stderr instead",
                    2);
    }
    conf_free(c);
    c = load("[relay]\nlog = stderr\n" UP "[device default]\nuser = a@b.c\npassword_env = HOME\n");
    ASSERT_EQ(c ? c->syslog_unavailable : -1, 0);
    EXPECT_NO_WARN(c, "log = syslog");
    conf_free(c);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    int n = snprintf(tmpdir, sizeof(tmpdir), "%s/relay25-warn-XXXXXX", t && *t ? t : "/tmp");

    if (n < 0 || (size_t)n >= sizeof(tmpdir) || !mkdtemp(tmpdir) || chdir(tmpdir) != 0) {
        perror("test_conf_warn: temp dir");
        return 1;
    }
    /* the drop-user checks need the temp dir searchable by that user */
    chmod(tmpdir, 0755);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "RELAY25_", 8) == 0) {
            char name[128];
            size_t len = strcspn(*e, "=");

            if (len < sizeof(name)) {
                memcpy(name, *e, len);
                name[len] = '\0';
                unsetenv(name);
                e = environ - 1; /* the array changed */
            }
        }
    }
    test_listen_allow();
    test_secrets();
    test_env();
    test_syslog();
    unlink(CONF);
    if (chdir("/") == 0) {
        rmdir(tmpdir);
    }
    return CHECK_DONE();
}
