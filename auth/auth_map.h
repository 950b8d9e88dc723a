/* auth_map: who may relay and with which upstream credentials, by source IP. */
#ifndef RELAY25_AUTH_MAP_H
#define RELAY25_AUTH_MAP_H

#include <sys/socket.h>

struct conf;
struct conf_device;

/* 1 when sa lies in one of conf->allow. */
int auth_map_allowed(const struct conf *c, const struct sockaddr *sa);
/* The device whose `match` contains sa with the longest prefix (most specific wins;
 * ties go to the device listed first); else [device default]; else NULL. */
const struct conf_device *auth_map_lookup(const struct conf *c, const struct sockaddr *sa);

#endif
