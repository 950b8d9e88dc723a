/* secret: reads upstream passwords from a file or the environment at startup.
 * Secrets are returned in malloc'd memory the caller wipes (explicit_bzero). */
#ifndef RELAY25_SECRET_H
#define RELAY25_SECRET_H

#include <stddef.h>

/* Reads the whole file, strips one trailing "\n" or "\r\n". Refuses empty secrets.
 * err never contains the secret. Returns malloc'd string or NULL. */
char *secret_file(const char *path, char *err, size_t errlen);
/* Value of environment variable name; NULL (with err) if unset or empty. */
char *secret_env(const char *name, char *err, size_t errlen);

#endif
