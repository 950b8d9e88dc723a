/* conf_ref: reference counting of configuration snapshots, so sessions and
 * deliveries started before a reload finish on the configuration they began
 * with. Single-threaded (the loop). */
#include "conf/conf.h"

struct conf *conf_hold(struct conf *c)
{
    c->refs++;
    return c;
}

void conf_release(struct conf *c)
{
    if (!c) {
        return;
    }
    if (c->refs == 0) {
        conf_free(c);
        return;
    }
    c->refs--;
}
