/* auth_sasl: client-side SASL responses for upstream AUTH (RFC 4954): PLAIN
 * (RFC 4616 §2) and CRAM-MD5 (RFC 2195 §2, HMAC-MD5 from BearSSL), encoded with
 * common/base64. Pure functions; every temporary holding a secret is wiped. */
#include "auth/auth_sasl.h"

#include <string.h>

#include <bearssl.h>

#include "common/base64.h"

#define SASL_CHALLENGE_MAX 1024 /* decoded CRAM-MD5 challenge (a msg-id, RFC 2195 §2) */

size_t sasl_plain(const char *user, const char *pass, char *out, size_t outcap)
{
    struct b64_stream s;

    /* RFC 4616 §2: message = [authzid] NUL authcid NUL passwd; no authzid. */
    b64_stream_init(&s, out, outcap);
    b64_stream_write(&s, "", 1);
    b64_stream_write(&s, user, strlen(user));
    b64_stream_write(&s, "", 1);
    b64_stream_write(&s, pass, strlen(pass));
    return b64_stream_finish(&s);
}

size_t sasl_cram_md5(const char *user, const char *pass, const char *challenge_b64,
                     size_t challenge_len, char *out, size_t outcap)
{
    static const char hexdig[] = "0123456789abcdef";
    unsigned char challenge[SASL_CHALLENGE_MAX];
    unsigned char mac[16];
    char hex[2 * sizeof(mac)];
    br_hmac_key_context kc;
    br_hmac_context hc;
    struct b64_stream s;
    size_t clen, ret;

    clen = b64_decode(challenge_b64, challenge_len, challenge, sizeof(challenge));
    if (clen == (size_t)-1 || clen == 0)
        return (size_t)-1;

    /* RFC 2195 §2: digest = HMAC-MD5(key = password, text = challenge). */
    br_hmac_key_init(&kc, &br_md5_vtable, pass, strlen(pass));
    br_hmac_init(&hc, &kc, 0);
    br_hmac_update(&hc, challenge, clen);
    br_hmac_out(&hc, mac);
    for (size_t i = 0; i < sizeof(mac); i++) {
        /* RFC 2195 §2: lower-case hex. */
        hex[2 * i] = hexdig[mac[i] >> 4];
        hex[2 * i + 1] = hexdig[mac[i] & 0x0f];
    }

    b64_stream_init(&s, out, outcap);
    b64_stream_write(&s, user, strlen(user));
    b64_stream_write(&s, " ", 1);
    b64_stream_write(&s, hex, sizeof(hex));
    ret = b64_stream_finish(&s);

    explicit_bzero(&kc, sizeof(kc));
    explicit_bzero(&hc, sizeof(hc));
    explicit_bzero(mac, sizeof(mac));
    explicit_bzero(hex, sizeof(hex));
    explicit_bzero(challenge, sizeof(challenge));
    return ret;
}
