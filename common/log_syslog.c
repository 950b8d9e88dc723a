/* log_syslog: the syslog(3) side of log.c, kept apart because <syslog.h>
 * defines LOG_DEBUG..LOG_ERR macros that would shadow relay25's level names. */
#include <stddef.h>
#include <syslog.h>

void log__syslog_open(void);
void log__syslog_close(void);
void log__syslog(int level, const char *line, size_t len);

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
