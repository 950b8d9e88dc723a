/* up_graph_msg: Graph's JSON answers read with cJSON (only the fields relay25
 * uses, copied out bounded and on one line) and the recipient search in a header
 * section through common/hdr. */
#include "upstream/up_graph_msg.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "common/hdr.h"

static void up_graph_copy(char *out, size_t cap, const cJSON *v)
{
    size_t o = 0;

    if (cap == 0) {
        return;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        for (const char *p = v->valuestring; *p && o + 1 < cap; p++) {
            unsigned char c = (unsigned char)*p;
            out[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        }
    }
    out[o] = '\0';
}

int up__graph_parse_error(const char *body, size_t len, char *code, size_t ccap, char *message,
                          size_t mcap, char *request_id, size_t rcap)
{
    cJSON *j, *e, *inner;

    up_graph_copy(code, ccap, NULL);
    up_graph_copy(message, mcap, NULL);
    up_graph_copy(request_id, rcap, NULL);
    if (!body || len == 0 || !(j = cJSON_ParseWithLength(body, len))) {
        return -1;
    }
    e = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (!cJSON_IsObject(e)) {
        cJSON_Delete(j);
        return -1;
    }
    up_graph_copy(code, ccap, cJSON_GetObjectItemCaseSensitive(e, "code"));
    up_graph_copy(message, mcap, cJSON_GetObjectItemCaseSensitive(e, "message"));
    inner = cJSON_GetObjectItemCaseSensitive(e, "innerError");
    if (!cJSON_IsObject(inner)) {
        inner = cJSON_GetObjectItemCaseSensitive(e, "innererror");
    }
    if (cJSON_IsObject(inner)) {
        up_graph_copy(request_id, rcap, cJSON_GetObjectItemCaseSensitive(inner, "request-id"));
    }
    cJSON_Delete(j);
    return 0;
}

/* RFC 5321 §4.1.2 local parts and domains: what may stand next to an address
 * without ending it. */
static int up_graph_addr_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c >= 0x80) || strchr(".!#$%&'*+/=?^_`{|}~-@", c) != NULL;
}

/* 1 when addr stands on its own (not inside a longer address) in v[0, n). */
static int up_graph_has_addr(const char *v, size_t n, const char *addr)
{
    size_t al = strlen(addr);

    if (al == 0 || al > n) {
        return 0;
    }
    for (size_t i = 0; i + al <= n; i++) {
        if (strncasecmp(v + i, addr, al) == 0 &&
            (i == 0 || !up_graph_addr_char((unsigned char)v[i - 1])) &&
            (i + al == n || !up_graph_addr_char((unsigned char)v[i + al]))) {
            return 1;
        }
    }
    return 0;
}

long up__graph_bcc(const char *h, size_t hlen, const char *const *rcpt, size_t nrcpt, char *out,
                   size_t cap)
{
    size_t o = 0, nmissing = 0;

    if (cap == 0) {
        return -1;
    }
    out[0] = '\0';
    for (size_t i = 0; i < nrcpt; i++) {
        size_t off = 0;
        struct hdr_field f;
        int found = 0;
        int r;

        while (!found && hdr_next(h, hlen, &off, &f)) {
            if (f.colon && (hdr_is(h, &f, "To") || hdr_is(h, &f, "Cc") || hdr_is(h, &f, "Bcc"))) {
                found = up_graph_has_addr(h + f.value, f.end - f.value, rcpt[i]);
            }
        }
        if (found) {
            continue;
        }
        /* folded after each address (RFC 5322 §2.2.3): no line grows past 998 */
        r = snprintf(out + o, cap - o, "%s%s", nmissing ? ",\r\n " : "Bcc: ", rcpt[i]);
        if (r < 0 || (size_t)r >= cap - o) {
            out[0] = '\0';
            return -1;
        }
        o += (size_t)r;
        nmissing++;
    }
    if (nmissing) {
        if (cap - o < 3) {
            out[0] = '\0';
            return -1;
        }
        memcpy(out + o, "\r\n", 3);
        o += 2;
    }
    return (long)o;
}
