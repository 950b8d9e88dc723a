/* test_tls_cert: the TLS certificate/key loader (common/tls_cert.c) on EC and RSA
 * pairs made with openssl at test time. */
#include "common/tls_cert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"

static int sh(const char *cmd)
{
    return system(cmd);
}

static void test_cert_load(void)
{
    char dir[] = "/tmp/relay25-test-cert-XXXXXX", cmd[1024], a[300], b[300], err[512];
    struct tls_cert *tc;

    if (!mkdtemp(dir)) {
        ASSERT_TRUE(0);
        return;
    }
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout ec.key -out ec.pem -days 2 -subj /CN=localhost >/dev/null 2>&1 && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.pem -days 2 "
             "-subj /CN=localhost >/dev/null 2>&1 && openssl rsa -in rsa.key -traditional "
             "-out rsa1.key >/dev/null 2>&1 && openssl genrsa -out rsa2.key 2048 >/dev/null 2>&1 "
             "&& echo junk > junk.pem",
             dir);
    if (sh(cmd) != 0) {
        fprintf(stderr, "openssl not available: certificate loader not tested\n");
        return;
    }
    snprintf(a, sizeof(a), "%s/ec.pem", dir);
    snprintf(b, sizeof(b), "%s/ec.key", dir);
    tc = tls_cert_load(a, b, err, sizeof(err));
    ASSERT_TRUE(tc != NULL);
    if (tc) {
        ASSERT_EQ(tc->key_type, BR_KEYTYPE_EC);
        ASSERT_EQ(tc->nchain, 1);
        tls_cert_free(tc);
    }
    snprintf(a, sizeof(a), "%s/rsa.pem", dir);
    snprintf(b, sizeof(b), "%s/rsa1.key", dir); /* "RSA PRIVATE KEY" (PKCS#1) */
    tc = tls_cert_load(a, b, err, sizeof(err));
    ASSERT_TRUE(tc != NULL);
    if (tc) {
        ASSERT_EQ(tc->key_type, BR_KEYTYPE_RSA);
        tls_cert_free(tc);
    }
    snprintf(b, sizeof(b), "%s/rsa2.key", dir); /* another key of the same size */
    ASSERT_TRUE(tls_cert_load(a, b, err, sizeof(err)) == NULL);
    ASSERT_TRUE(strstr(err, "does not belong") != NULL);
    snprintf(b, sizeof(b), "%s/ec.key", dir); /* key of another type */
    ASSERT_TRUE(tls_cert_load(a, b, err, sizeof(err)) == NULL);
    ASSERT_TRUE(strstr(err, "does not belong") != NULL);
    snprintf(b, sizeof(b), "%s/junk.pem", dir);
    ASSERT_TRUE(tls_cert_load(a, b, err, sizeof(err)) == NULL);
    ASSERT_TRUE(strstr(err, "no private key") != NULL);
    ASSERT_TRUE(tls_cert_load(b, b, err, sizeof(err)) == NULL);
    ASSERT_TRUE(strstr(err, "no certificate") != NULL);
    snprintf(b, sizeof(b), "%s/missing.pem", dir);
    ASSERT_TRUE(tls_cert_load(b, b, err, sizeof(err)) == NULL);
    ASSERT_TRUE(strstr(err, "cannot read") != NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    sh(cmd);
}

int main(void)
{
    test_cert_load();
    return CHECK_DONE();
}
