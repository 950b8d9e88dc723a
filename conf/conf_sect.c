/* conf_sect: section headers. A "[...]" line starts [relay], [sendmail], or a new
 * [upstream NAME], [device NAME] or [route NAME] record with its defaults; keys
 * that follow are applied to it by conf_keys. */
#include "conf/conf_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int conf__new_upstream(struct parse *p, const char *name, size_t len, int line)
{
    struct conf *c = p->c;
    struct conf_upstream *u;
    struct up_extra *x;

    x = conf__grow(p->ux, c->nupstreams, sizeof(*x));
    if (!x) {
        return conf__oom(p);
    }
    p->ux = x;
    u = conf__grow(c->upstreams, c->nupstreams, sizeof(*u));
    if (!u) {
        return conf__oom(p);
    }
    c->upstreams = u;
    u = &c->upstreams[c->nupstreams++];
    u->tls_verify = 1;
    u->max_connections = 4;
    u->line = line;
    u->name = strndup(name, len);
    if (!u->name) {
        return conf__oom(p);
    }
    p->sect = SECT_UPSTREAM;
    p->cur = c->nupstreams - 1;
    return 0;
}

int conf__new_device(struct parse *p, const char *name, size_t len, int line)
{
    struct conf *c = p->c;
    struct conf_device *d;
    struct dev_extra *x;

    x = conf__grow(p->dx, c->ndevices, sizeof(*x));
    if (!x) {
        return conf__oom(p);
    }
    p->dx = x;
    d = conf__grow(c->devices, c->ndevices, sizeof(*d));
    if (!d) {
        return conf__oom(p);
    }
    c->devices = d;
    d = &c->devices[c->ndevices++];
    d->line = line;
    d->name = strndup(name, len);
    if (!d->name) {
        return conf__oom(p);
    }
    d->is_default = strcmp(d->name, "default") == 0;
    p->sect = SECT_DEVICE;
    p->cur = c->ndevices - 1;
    return 0;
}

static int conf_new_route(struct parse *p, const char *name, size_t len, int line)
{
    struct conf *c = p->c;
    struct conf_route *r;
    struct dev_extra *x;

    x = conf__grow(p->rx, c->nroutes, sizeof(*x));
    if (!x) {
        return conf__oom(p);
    }
    p->rx = x;
    r = conf__grow(c->routes, c->nroutes, sizeof(*r));
    if (!r) {
        return conf__oom(p);
    }
    c->routes = r;
    r = &c->routes[c->nroutes++];
    r->line = line;
    r->cred.line = line;
    r->cred.name = strndup(name, len);
    if (!r->cred.name) {
        return conf__oom(p);
    }
    p->sect = SECT_ROUTE;
    p->cur = c->nroutes - 1;
    return 0;
}

/* A "[...]" line (text between the brackets): "relay", "sendmail", "upstream NAME",
 * "device NAME", "route NAME". */
int conf__section(struct parse *p, const char *text, size_t len)
{
    struct conf *c = p->c;
    const char *type, *name, *rest, *end = text + len;
    size_t tlen, nlen;

    memset(p->seen, 0, sizeof(p->seen));
    p->sect = SECT_NONE;
    if (len > INI_NAME_MAX) {
        conf__fail_at(p, conf__line(p, p->lineno),
                      "section header too long (inih keeps %d characters)", INI_NAME_MAX);
        return -1;
    }
    memcpy(p->section_raw, text, len);
    p->section_raw[len] = '\0';

    for (type = text; type < end && isspace((unsigned char)*type); type++) {
    }
    for (name = type; name < end && !isspace((unsigned char)*name); name++) {
    }
    tlen = (size_t)(name - type);
    for (; name < end && isspace((unsigned char)*name); name++) {
    }
    for (rest = name; rest < end && !isspace((unsigned char)*rest); rest++) {
    }
    nlen = (size_t)(rest - name);
    for (; rest < end && isspace((unsigned char)*rest); rest++) {
    }
    if (rest != end) {
        conf__fail_at(p, conf__line(p, p->lineno),
                      "bad section header '[%.*s]' (expected [relay], [upstream NAME], "
                      "[device NAME], [route NAME] or [sendmail])",
                      (int)len, text);
        return -1;
    }

    if ((tlen == 5 && memcmp(type, "relay", 5) == 0) ||
        (tlen == 8 && memcmp(type, "sendmail", 8) == 0)) {
        int is_relay = tlen == 5;
        int *first = is_relay ? &p->relay_line : &p->sendmail_line;

        if (nlen) {
            conf__fail_at(p, conf__line(p, p->lineno), "[%.*s] takes no name", (int)tlen, type);
            return -1;
        }
        if (*first) {
            conf__fail_at(p, conf__line(p, p->lineno),
                          "duplicate section [%.*s] (first on line %d)", (int)tlen, type, *first);
            return -1;
        }
        *first = p->lineno;
        p->sect = is_relay ? SECT_RELAY : SECT_SENDMAIL;
        return 0;
    }
    if ((tlen == 8 && memcmp(type, "upstream", 8) == 0) ||
        (tlen == 6 && memcmp(type, "device", 6) == 0)) {
        int is_up = tlen == 8;

        if (!nlen) {
            conf__fail_at(p, conf__line(p, p->lineno), "[%.*s] needs a name: [%.*s NAME]",
                          (int)tlen, type, (int)tlen, type);
            return -1;
        }
        if (!conf__valid_section_name(name, nlen)) {
            conf__fail_at(p, conf__line(p, p->lineno),
                          "bad name '%.*s' in [%.*s] (letters, digits, '.', '_', '-')", (int)nlen,
                          name, (int)tlen, type);
            return -1;
        }
        for (size_t i = 0; i < (is_up ? c->nupstreams : c->ndevices); i++) {
            const char *other = is_up ? c->upstreams[i].name : c->devices[i].name;
            int line = is_up ? c->upstreams[i].line : c->devices[i].line;

            if (strlen(other) == nlen && memcmp(other, name, nlen) == 0) {
                conf__fail_at(p, conf__line(p, p->lineno),
                              "duplicate section [%.*s %.*s] (first on line %d)", (int)tlen, type,
                              (int)nlen, name, line);
                return -1;
            }
        }
        return is_up ? conf__new_upstream(p, name, nlen, p->lineno)
                     : conf__new_device(p, name, nlen, p->lineno);
    }
    if (tlen == 5 && memcmp(type, "route", 5) == 0) {
        if (!nlen || !conf__valid_section_name(name, nlen)) {
            conf__fail_at(p, conf__line(p, p->lineno),
                          "[route] needs a name: [route NAME] (letters, digits, '.', '_', '-')");
            return -1;
        }
        for (size_t i = 0; i < c->nroutes; i++) {
            if (strlen(c->routes[i].cred.name) == nlen &&
                memcmp(c->routes[i].cred.name, name, nlen) == 0) {
                conf__fail_at(p, conf__line(p, p->lineno),
                              "duplicate section [route %.*s] (first on line %d)", (int)nlen, name,
                              c->routes[i].line);
                return -1;
            }
        }
        return conf_new_route(p, name, nlen, p->lineno);
    }
    {
        /* every kind, so a reader never wonders whether [route NAME] exists */
        static const char *const kinds[] = {"relay", "upstream", "device", "route", "sendmail"};
        char t[INI_NAME_MAX + 1], hint[64] = "";
        unsigned best = 3;

        memcpy(t, type, tlen);
        t[tlen] = '\0';
        for (size_t k = 0; p->strict && k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            unsigned d = conf__distance(t, kinds[k]);

            if (d < best) {
                best = d;
                snprintf(hint, sizeof(hint), "; did you mean [%s%s]?", kinds[k],
                         k == 0 || k == 4 ? "" : " NAME");
            }
        }
        conf__fail_at(p, conf__line(p, p->lineno),
                      "unknown section type '%.*s' (expected [relay], [upstream NAME], [device "
                      "NAME], [route NAME] or [sendmail])%s",
                      (int)tlen, type, hint);
    }
    return -1;
}
