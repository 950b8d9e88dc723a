/* log_syslog: the syslog(3) side of log.c, kept apart because <syslog.h>
 * defines LOG_DEBUG..LOG_ERR macros that would shadow relay25's level names. */
#include <paths.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

int log__syslog_available(void);
void log__syslog_open(void);
void log__syslog_close(void);
void log__syslog(int level, const char *line, size_t len);

/* Does anything listen on the syslog socket? glibc's syslog(3) tries a
 * datagram, then a stream connection to _PATH_LOG, and drops the line when
 * neither works; so do we, once, to know beforehand. */
int log__syslog_available(void)
{
    static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", _PATH_LOG);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0), ok;
        if (fd < 0) {
            continue;
        }
        ok = connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok) {
            return 1;
        }
    }
    return 0;
}

void log__syslog_open(void)
{
    openlog("relay25", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log__syslog_close(void)
{
    closelog();
}

void log__syslog(int level, const char *line, size_t len)
{
    /* relay25 levels: 0 debug, 1 info, 2 warn, 3 error */
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    syslog(prio[level < 0 || level > 3 ? 3 : level], "%.*s", (int)len, line);
}
