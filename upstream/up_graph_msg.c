/* up_graph_msg: Graph's JSON answers read with cJSON (only the fields relay25
 * uses, copied out bounded and on one line) and the recipient search in a header
 * section through common/hdr. */
#include "upstream/up_graph_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "common/base64.h"
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

/* ---- MIME structure (RFC 2045, RFC 2046 §5.1) ---------------------------------------- */

/* The value of parameter name in field value v[0, n) (RFC 2045 §5.1: quoted
 * string or token; folding is whitespace) into out. 1 found, 0 not. */
static int up_graph_param(const char *v, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);

    for (size_t i = 0; i + nl < n; i++) {
        size_t j, o = 0;

        if (strncasecmp(v + i, name, nl) != 0 || (i > 0 && !strchr("; \t\r\n", v[i - 1]))) {
            continue;
        }
        j = i + nl;
        while (j < n && (v[j] == ' ' || v[j] == '\t')) {
            j++;
        }
        if (j >= n || v[j] != '=') {
            continue;
        }
        j++;
        while (j < n && (v[j] == ' ' || v[j] == '\t')) {
            j++;
        }
        if (j < n && v[j] == '"') {
            for (j++; j < n && v[j] != '"' && o + 1 < cap; j++) {
                if (v[j] == '\\' && j + 1 < n) {
                    j++;
                }
                if (v[j] != '\r' && v[j] != '\n') {
                    out[o++] = v[j];
                }
            }
        } else {
            for (; j < n && !strchr("; \t\r\n", v[j]) && o + 1 < cap; j++) {
                out[o++] = v[j];
            }
        }
        out[o] = '\0';
        for (size_t k = 0; k < o; k++) {
            if ((unsigned char)out[k] < 0x20 || out[k] == 0x7f) {
                out[0] = '\0'; /* not a parameter value of RFC 2045's */
                return 0;
            }
        }
        return o > 0;
    }
    return 0;
}

/* The first field name in h[0, hlen) as its value's offsets; 1 found. */
static int up_graph_field(const char *h, size_t hlen, const char *name, size_t *v, size_t *end)
{
    size_t off = 0;
    struct hdr_field f;

    while (hdr_next(h, hlen, &off, &f)) {
        if (f.colon && hdr_is(h, &f, name)) {
            *v = f.value;
            *end = f.end;
            return 1;
        }
    }
    return 0;
}

int up__graph_boundary(const char *h, size_t hlen, char *out, size_t cap)
{
    size_t v, e;

    if (cap == 0) {
        return 0;
    }
    out[0] = '\0';
    if (!up_graph_field(h, hlen, "Content-Type", &v, &e)) {
        return 0;
    }
    while (v < e && (h[v] == ' ' || h[v] == '\t')) {
        v++;
    }
    if (e - v < 10 || strncasecmp(h + v, "multipart/", 10) != 0) {
        return 0;
    }
    /* RFC 2046 §5.1.1: 1 to 70 characters */
    if (!up_graph_param(h + v, e - v, "boundary", out, cap) || strlen(out) > 70) {
        out[0] = '\0';
        return 0;
    }
    return 1;
}

void up__graph_part(const char *h, size_t hlen, int *b64, char *name, size_t ncap, char *ctype,
                    size_t ccap)
{
    size_t v, e, o = 0;

    *b64 = 0;
    if (ncap) {
        name[0] = '\0';
    }
    if (ccap) {
        ctype[0] = '\0';
    }
    if (up_graph_field(h, hlen, "Content-Transfer-Encoding", &v, &e)) {
        while (v < e && (h[v] == ' ' || h[v] == '\t')) {
            v++;
        }
        *b64 = e - v >= 6 && strncasecmp(h + v, "base64", 6) == 0;
    }
    if (up_graph_field(h, hlen, "Content-Disposition", &v, &e)) {
        up_graph_param(h + v, e - v, "filename", name, ncap);
    }
    if (up_graph_field(h, hlen, "Content-Type", &v, &e)) {
        if (ncap && !name[0]) {
            up_graph_param(h + v, e - v, "name", name, ncap);
        }
        while (v < e && (h[v] == ' ' || h[v] == '\t')) {
            v++;
        }
        for (; v < e && !strchr("; \t\r\n", h[v]) && o + 1 < ccap; v++) {
            ctype[o++] = h[v];
        }
        if (ccap) {
            ctype[o] = '\0';
        }
    }
    /* control characters have no place in a JSON name */
    for (size_t i = 0; i < ncap && name[i]; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            name[i] = '_';
        }
    }
}

int up__graph_json_str(const char *body, size_t len, const char *member, char *out, size_t cap)
{
    cJSON *j, *v;
    int r = -1;

    if (cap == 0) {
        return -1;
    }
    out[0] = '\0';
    if (!body || len == 0 || !(j = cJSON_ParseWithLength(body, len))) {
        return -1;
    }
    v = cJSON_GetObjectItemCaseSensitive(j, member);
    if (cJSON_IsString(v) && v->valuestring && strlen(v->valuestring) < cap &&
        !strpbrk(v->valuestring, "\r\n")) {
        memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
        r = 0;
    }
    cJSON_Delete(j);
    return r;
}

char *up__graph_upload_body(const char *name, const char *ctype, unsigned long long size)
{
    cJSON *root = cJSON_CreateObject(), *item = cJSON_CreateObject();
    char *out = NULL;

    if (root && item && cJSON_AddStringToObject(item, "attachmentType", "file") &&
        cJSON_AddStringToObject(item, "name", name) &&
        cJSON_AddNumberToObject(item, "size", (double)size) &&
        (!ctype[0] || cJSON_AddStringToObject(item, "contentType", ctype))) {
        cJSON_AddItemToObject(root, "AttachmentItem", item);
        item = NULL;
        out = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(item);
    cJSON_Delete(root);
    return out;
}

int up__graph_jwt_roles(const char *jwt, char *out, size_t cap)
{
    const char *p = jwt ? strchr(jwt, '.') : NULL, *e;
    char *b64 = NULL, *json = NULL;
    size_t n, o = 0, dl;
    cJSON *j = NULL, *roles, *r;
    int found = -1;

    if (cap == 0) {
        return -1;
    }
    out[0] = '\0';
    if (!p || !(e = strchr(p + 1, '.'))) {
        return -1;
    }
    n = (size_t)(e - p - 1);
    /* RFC 7515 §2: base64url without padding; back to RFC 4648 §4 for the decoder */
    if (n == 0 || n > 64 * 1024 || !(b64 = malloc(n + 4)) || !(json = malloc(n + 4))) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[1 + i];
        b64[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    while (n % 4) {
        b64[n++] = '=';
    }
    dl = b64_decode(b64, n, json, n);
    if (dl == (size_t)-1 || !(j = cJSON_ParseWithLength(json, dl))) {
        goto out;
    }
    roles = cJSON_GetObjectItemCaseSensitive(j, "roles");
    if (!cJSON_IsArray(roles)) {
        goto out;
    }
    found = 0;
    cJSON_ArrayForEach(r, roles)
    {
        int k;
        if (!cJSON_IsString(r) || !r->valuestring) {
            continue;
        }
        found |= strcmp(r->valuestring, "Mail.Send") == 0;
        k = snprintf(out + o, cap - o, "%s%s", o ? "," : "", r->valuestring);
        if (k > 0 && (size_t)k < cap - o) {
            o += (size_t)k;
        } else {
            out[o] = '\0';
        }
    }
    for (size_t i = 0; i < o; i++) {
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
            out[i] = ' ';
        }
    }
out:
    cJSON_Delete(j);
    free(b64);
    free(json);
    return found;
}
