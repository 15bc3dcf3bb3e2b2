/* SPDX-License-Identifier: MIT */
/* SigV4 against AWS's published vectors: the aws-sig-v4-test-suite (AKIDEXAMPLE, 20150830T123600Z,
 * us-east-1, service "service") and the worked examples of the S3 API reference ("Signature
 * Calculations for the Authorization Header", AKIAIOSFODNN7EXAMPLE, 20130524T000000Z). Each case
 * asserts the canonical request, the string to sign and the exact signature. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/sigv4.h"
#include "cache/util.h"

#define SUITE_DATE "20150830T123600Z"
#define SUITE_SCOPE "20150830/us-east-1/service/aws4_request"
#define SUITE_CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" SUITE_SCOPE ", "
#define EMPTY PR_SIGV4_EMPTY_SHA256
#define STS(hash) "AWS4-HMAC-SHA256\n" SUITE_DATE "\n" SUITE_SCOPE "\n" hash

static const PrSigV4Credentials suite_creds = {
    .access_key = "AKIDEXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "service",
};

#define MAXP 8
typedef struct SuiteCase {
    const char *name;
    const char *method;
    const char *path;
    PrSigV4Pair query[MAXP];
    PrSigV4Pair headers[MAXP];
    const char *body;
    const char *canonical;
    const char *sts;
    const char *authorization;
} SuiteCase;

#define HOST {"Host", "example.amazonaws.com"}
#define DATE {"X-Amz-Date", SUITE_DATE}
#define HDRS "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n\nhost;x-amz-date\n"
#define SESSION_TOKEN                                                                                         \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8" \
    "YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q" \
    "6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJab" \
    "IQwj2ICCR/oLxBA=="
#define UNRESERVED "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

static const SuiteCase suite[] = {
    {
        .name = "get-vanilla",
        .method = "GET",
        .path = "/",
        .headers = {HOST, DATE},
        .canonical = "GET\n/\n\n" HDRS EMPTY,
        .sts = STS("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    {
        .name = "get-vanilla-query-order-key-case",
        .method = "GET",
        .path = "/",
        .query = {{"Param2", "value2"}, {"Param1", "value1"}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\nParam1=value1&Param2=value2\n" HDRS EMPTY,
        .sts = STS("816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    {
        .name = "get-vanilla-query-order-key",
        .method = "GET",
        .path = "/",
        .query = {{"Param1", "value2"}, {"Param1", "Value1"}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\nParam1=Value1&Param1=value2\n" HDRS EMPTY,
        .sts = STS("704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    },
    {
        .name = "get-vanilla-query-order-value",
        .method = "GET",
        .path = "/",
        .query = {{"Param1", "value2"}, {"Param1", "value1"}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\nParam1=value1&Param1=value2\n" HDRS EMPTY,
        .sts = STS("c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    },
    {
        .name = "get-vanilla-query-unreserved",
        .method = "GET",
        .path = "/",
        .query = {{UNRESERVED, UNRESERVED}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\n" UNRESERVED "=" UNRESERVED "\n" HDRS EMPTY,
        .sts = STS("c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    {
        .name = "get-vanilla-utf8-query",
        .method = "GET",
        .path = "/",
        .query = {{"\xe1\x88\xb4", "bar"}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\n%E1%88%B4=bar\n" HDRS EMPTY,
        .sts = STS("eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    {
        .name = "get-vanilla-empty-query-key",
        .method = "GET",
        .path = "/",
        .query = {{"Param1", "value1"}},
        .headers = {HOST, DATE},
        .canonical = "GET\n/\nParam1=value1\n" HDRS EMPTY,
        .sts = STS("1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    },
    {
        .name = "get-unreserved",
        .method = "GET",
        .path = "/" UNRESERVED,
        .headers = {HOST, DATE},
        .canonical = "GET\n/" UNRESERVED "\n\n" HDRS EMPTY,
        .sts = STS("6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    {
        .name = "get-utf8",
        .method = "GET",
        .path = "/\xe1\x88\xb4",
        .headers = {HOST, DATE},
        .canonical = "GET\n/%E1%88%B4\n\n" HDRS EMPTY,
        .sts = STS("2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    {
        .name = "get-space",
        .method = "GET",
        .path = "/example space/",
        .headers = {HOST, DATE},
        .canonical = "GET\n/example%20space/\n\n" HDRS EMPTY,
        .sts = STS("63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    {
        .name = "get-header-value-trim",
        .method = "GET",
        .path = "/",
        .headers = {HOST, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}, DATE},
        .canonical = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
                     "x-amz-date:" SUITE_DATE "\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY,
        .sts = STS("a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7"),
        .authorization = SUITE_CRED "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
                                    "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    {
        .name = "get-header-value-order",
        .method = "GET",
        .path = "/",
        .headers = {HOST,
                    {"My-Header1", "value4"},
                    {"My-Header1", "value1"},
                    {"My-Header1", "value3"},
                    {"My-Header1", "value2"},
                    DATE},
        .canonical = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
                     "x-amz-date:" SUITE_DATE "\n\nhost;my-header1;x-amz-date\n" EMPTY,
        .sts = STS("31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86"),
        .authorization = SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
                                    "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    },
    {
        .name = "get-header-key-duplicate",
        .method = "GET",
        .path = "/",
        .headers = {HOST, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}, DATE},
        .canonical = "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
                     "x-amz-date:" SUITE_DATE "\n\nhost;my-header1;x-amz-date\n" EMPTY,
        .sts = STS("dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c"),
        .authorization = SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
                                    "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
    {
        .name = "post-vanilla",
        .method = "POST",
        .path = "/",
        .headers = {HOST, DATE},
        .canonical = "POST\n/\n\n" HDRS EMPTY,
        .sts = STS("553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    {
        .name = "post-vanilla-query",
        .method = "POST",
        .path = "/",
        .query = {{"Param1", "value1"}},
        .headers = {HOST, DATE},
        .canonical = "POST\n/\nParam1=value1\n" HDRS EMPTY,
        .sts = STS("9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date, "
                                    "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    {
        .name = "post-header-key-sort",
        .method = "POST",
        .path = "/",
        .headers = {HOST, {"My-Header1", "value1"}, DATE},
        .canonical = "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:" SUITE_DATE
                     "\n\nhost;my-header1;x-amz-date\n" EMPTY,
        .sts = STS("9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65"),
        .authorization = SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
                                    "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    },
    {
        .name = "post-header-value-case",
        .method = "POST",
        .path = "/",
        .headers = {HOST, {"My-Header1", "VALUE1"}, DATE},
        .canonical = "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:" SUITE_DATE
                     "\n\nhost;my-header1;x-amz-date\n" EMPTY,
        .sts = STS("d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93"),
        .authorization = SUITE_CRED "SignedHeaders=host;my-header1;x-amz-date, "
                                    "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    },
    {
        .name = "post-x-www-form-urlencoded",
        .method = "POST",
        .path = "/",
        .headers = {{"Content-Type", "application/x-www-form-urlencoded"}, HOST, DATE},
        .body = "Param1=value1",
        .canonical = "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                     "x-amz-date:" SUITE_DATE "\n\ncontent-type;host;x-amz-date\n"
                     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        .sts = STS("42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"),
        .authorization = SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, "
                                    "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    },
    {
        .name = "post-x-www-form-urlencoded-parameters",
        .method = "POST",
        .path = "/",
        .headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf8"}, HOST, DATE},
        .body = "Param1=value1",
        .canonical = "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
                     "host:example.amazonaws.com\nx-amz-date:" SUITE_DATE "\n\ncontent-type;host;x-amz-date\n"
                     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        .sts = STS("2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c"),
        .authorization = SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, "
                                    "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    },
    {
        .name = "post-sts-header-before",
        .method = "POST",
        .path = "/",
        .headers = {HOST, DATE, {"X-Amz-Security-Token", SESSION_TOKEN}},
        .canonical = "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:" SUITE_DATE
                     "\nx-amz-security-token:" SESSION_TOKEN "\n\nhost;x-amz-date;x-amz-security-token\n" EMPTY,
        .sts = STS("c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"),
        .authorization = SUITE_CRED "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                                    "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    },
};

static size_t count_pairs(const PrSigV4Pair *p) {
    size_t n = 0;
    while (n < MAXP && p[n].name) n++;
    return n;
}

static void test_suite(void **state) {
    (void)state;
    for (size_t i = 0; i < ELEMENTSOF(suite); i++) {
        const SuiteCase *c = &suite[i];
        print_message("  %s\n", c->name);
        char hash[65];
        pr_sigv4_sha256_hex(c->body, c->body ? strlen(c->body) : 0, hash);
        PrSigV4Request req = {
            .method = c->method,
            .path = c->path,
            .query = c->query,
            .n_query = count_pairs(c->query),
            .headers = c->headers,
            .n_headers = count_pairs(c->headers),
            .payload_hash = hash,
        };
        _cleanup_free_ char *canonical = NULL, *signed_headers = NULL, *sts = NULL, *auth = NULL;
        assert_int_equal(pr_sigv4_canonical_request(&req, &canonical, &signed_headers), 0);
        assert_string_equal(canonical, c->canonical);
        assert_int_equal(pr_sigv4_string_to_sign(SUITE_DATE, SUITE_SCOPE, canonical, &sts), 0);
        assert_string_equal(sts, c->sts);
        char sig[65];
        assert_int_equal(pr_sigv4_authorization(&suite_creds, SUITE_DATE, &req, &auth, sig), 0);
        assert_string_equal(auth, c->authorization);
        assert_non_null(strstr(c->authorization, sig));
        assert_non_null(strstr(c->authorization, signed_headers));
    }
}

static void test_signing_key(void **state) {
    (void)state;
    uint8_t key[32];
    char hex[65];
    /* The IAM guide's derivation example. */
    assert_int_equal(pr_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam",
                                          key),
                     0);
    pr_hex(key, 32, hex);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

/* The S3 API reference examples, signed end to end through pr_sigv4_sign() (payload hashing, dates,
 * the x-amz-* headers added). */
static const PrSigV4Credentials s3_creds = {
    .access_key = "AKIAIOSFODNN7EXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "s3",
};
#define S3_TIME ((time_t)1369353600) /* 2013-05-24T00:00:00Z */
#define S3_HOST {"Host", "examplebucket.s3.amazonaws.com"}
#define S3_SCOPE "20130524/us-east-1/s3/aws4_request"

static void check_s3(const char *method, const char *path, const PrSigV4Pair *query, size_t n_query,
                     const PrSigV4Pair *headers, size_t n_headers, const char *body, const char *canonical_hash,
                     const char *signed_headers, const char *signature) {
    PrSigV4Signed s;
    assert_int_equal(pr_sigv4_sign(&s3_creds, S3_TIME, method, path, query, n_query, headers, n_headers, body,
                                   body ? strlen(body) : 0, &s),
                     0);
    assert_string_equal(s.amz_date, "20130524T000000Z");
    assert_null(s.security_token);
    _cleanup_free_ char *expect = NULL;
    assert_true(asprintf(&expect,
                         "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/" S3_SCOPE
                         ", SignedHeaders=%s, Signature=%s",
                         signed_headers, signature) > 0);
    assert_string_equal(s.authorization, expect);

    /* With the payload's hash given instead of the payload: the same signature. */
    PrSigV4Signed h;
    char payload_hash[65];
    pr_sigv4_sha256_hex(body ? body : "", body ? strlen(body) : 0, payload_hash);
    assert_int_equal(pr_sigv4_sign_hashed(&s3_creds, S3_TIME, method, path, query, n_query, headers, n_headers,
                                          payload_hash, &h),
                     0);
    assert_string_equal(h.authorization, s.authorization);
    assert_string_equal(h.content_sha256, s.content_sha256);
    pr_sigv4_signed_done(&h);
    assert_int_equal(pr_sigv4_sign_hashed(&s3_creds, S3_TIME, method, path, query, n_query, headers, n_headers, "abc", &h),
                     -EINVAL);

    /* The same request through the step-by-step functions: canonical request hash as documented. */
    PrSigV4Pair all[8];
    size_t n = 0;
    for (size_t i = 0; i < n_headers; i++) all[n++] = headers[i];
    all[n++] = (PrSigV4Pair){"x-amz-content-sha256", s.content_sha256};
    all[n++] = (PrSigV4Pair){"x-amz-date", s.amz_date};
    PrSigV4Request req = {method, path, query, n_query, all, n, s.content_sha256};
    _cleanup_free_ char *canonical = NULL, *sts = NULL;
    assert_int_equal(pr_sigv4_canonical_request(&req, &canonical, NULL), 0);
    char hash[65];
    pr_sigv4_sha256_hex(canonical, strlen(canonical), hash);
    assert_string_equal(hash, canonical_hash);
    assert_int_equal(pr_sigv4_string_to_sign(s.amz_date, S3_SCOPE, canonical, &sts), 0);
    assert_non_null(strstr(sts, canonical_hash));
    pr_sigv4_signed_done(&s);
    assert_null(s.authorization);
}

static void test_s3_get_object(void **state) {
    (void)state;
    const PrSigV4Pair h[] = {S3_HOST, {"Range", "bytes=0-9"}};
    check_s3("GET", "/test.txt", NULL, 0, h, ELEMENTSOF(h), NULL,
             "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
             "host;range;x-amz-content-sha256;x-amz-date",
             "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    /* The documented canonical request, verbatim. */
    const PrSigV4Pair all[] = {S3_HOST, {"Range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
                               {"x-amz-date", "20130524T000000Z"}};
    PrSigV4Request req = {"GET", "/test.txt", NULL, 0, all, ELEMENTSOF(all), EMPTY};
    _cleanup_free_ char *canonical = NULL;
    assert_int_equal(pr_sigv4_canonical_request(&req, &canonical, NULL), 0);
    assert_string_equal(canonical, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                                   "x-amz-content-sha256:" EMPTY "\nx-amz-date:20130524T000000Z\n\n"
                                   "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY);
}

static void test_s3_put_object(void **state) {
    (void)state;
    const PrSigV4Pair h[] = {
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"}, S3_HOST, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    char hash[65];
    pr_sigv4_sha256_hex("Welcome to Amazon S3.", 21, hash);
    assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    /* The key is "test$file.text": '$' is encoded once, as %24. */
    check_s3("PUT", "/test$file.text", NULL, 0, h, ELEMENTSOF(h), "Welcome to Amazon S3.",
             "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
             "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
             "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_s3_get_bucket_lifecycle(void **state) {
    (void)state;
    const PrSigV4Pair h[] = {S3_HOST};
    const PrSigV4Pair q[] = {{"lifecycle", NULL}};
    check_s3("GET", "/", q, ELEMENTSOF(q), h, ELEMENTSOF(h), NULL,
             "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
             "host;x-amz-content-sha256;x-amz-date",
             "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_s3_list_objects(void **state) {
    (void)state;
    const PrSigV4Pair h[] = {S3_HOST};
    const PrSigV4Pair q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    check_s3("GET", "/", q, ELEMENTSOF(q), h, ELEMENTSOF(h), NULL,
             "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
             "host;x-amz-content-sha256;x-amz-date",
             "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_session_token(void **state) {
    (void)state;
    PrSigV4Credentials c = suite_creds;
    c.session_token = SESSION_TOKEN;
    const PrSigV4Pair h[] = {HOST};
    PrSigV4Signed s;
    assert_int_equal(pr_sigv4_sign(&c, 1440938160 /* 20150830T123600Z */, "POST", "/", NULL, 0, h, 1, NULL, 0, &s),
                     0);
    assert_string_equal(s.amz_date, SUITE_DATE);
    assert_string_equal(s.content_sha256, EMPTY);
    assert_string_equal(s.security_token, SESSION_TOKEN);
    /* Signed exactly like the suite's request that carries the token as a header. */
    const PrSigV4Pair all[] = {HOST, {"x-amz-content-sha256", EMPTY}, DATE, {"X-Amz-Security-Token", SESSION_TOKEN}};
    PrSigV4Request req = {"POST", "/", NULL, 0, all, ELEMENTSOF(all), EMPTY};
    _cleanup_free_ char *auth = NULL;
    assert_int_equal(pr_sigv4_authorization(&suite_creds, SUITE_DATE, &req, &auth, NULL), 0);
    assert_string_equal(s.authorization, auth);
    assert_non_null(strstr(auth, "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    pr_sigv4_signed_done(&s);
}

static void test_encoding(void **state) {
    (void)state;
    static const struct {
        const char *in;
        bool keep_slash;
        const char *out;
    } cases[] = {
        {"a b", false, "a%20b"},
        {"a+b", false, "a%2Bb"},
        {"100%", false, "100%25"},
        {"a/b", true, "a/b"},
        {"a/b", false, "a%2Fb"},
        {"A-z_0.9~", false, "A-z_0.9~"},
        {"=&?#$!'()*,;:@", true, "%3D%26%3F%23%24%21%27%28%29%2A%2C%3B%3A%40"},
        {"data/ab/\xc3\xa9", true, "data/ab/%C3%A9"},
        {"", true, ""},
    };
    for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
        _cleanup_free_ char *o = NULL;
        assert_int_equal(pr_sigv4_uri_encode(cases[i].in, cases[i].keep_slash, &o), 0);
        assert_string_equal(o, cases[i].out);
    }
    /* Query: sorted by name then value, spaces as %20 (never '+'), '/' encoded, bare names get "=". */
    const PrSigV4Pair q[] = {{"prefix", "data/a b"}, {"list-type", "2"}, {"continuation-token", "x+y/z="}, {"delete", NULL}};
    _cleanup_free_ char *cq = NULL;
    assert_int_equal(pr_sigv4_canonical_query(q, ELEMENTSOF(q), &cq), 0);
    assert_string_equal(cq, "continuation-token=x%2By%2Fz%3D&delete=&list-type=2&prefix=data%2Fa%20b");
    _cleanup_free_ char *empty = NULL;
    assert_int_equal(pr_sigv4_canonical_query(NULL, 0, &empty), 0);
    assert_string_equal(empty, "");

    char d[17];
    pr_sigv4_amz_date(1440938160, d);
    assert_string_equal(d, SUITE_DATE);
}

static void test_invalid(void **state) {
    (void)state;
    _cleanup_free_ char *c = NULL;
    const PrSigV4Pair bad_name[] = {{"Bad Name", "x"}};
    PrSigV4Request r = {"GET", "/", NULL, 0, bad_name, 1, EMPTY};
    assert_int_equal(pr_sigv4_canonical_request(&r, &c, NULL), -EINVAL);
    const PrSigV4Pair bad_value[] = {{"X-Injected", "a\r\nHost: evil"}};
    r.headers = bad_value;
    assert_int_equal(pr_sigv4_canonical_request(&r, &c, NULL), -EINVAL);
    r.headers = NULL;
    r.n_headers = 0;
    r.path = "relative";
    assert_int_equal(pr_sigv4_canonical_request(&r, &c, NULL), -EINVAL);
    r.path = "/";
    char *auth = NULL;
    assert_int_equal(pr_sigv4_authorization(&suite_creds, "2015-08-30", &r, &auth, NULL), -EINVAL);
    assert_null(auth);
    assert_null(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite),
        cmocka_unit_test(test_signing_key),
        cmocka_unit_test(test_s3_get_object),
        cmocka_unit_test(test_s3_put_object),
        cmocka_unit_test(test_s3_get_bucket_lifecycle),
        cmocka_unit_test(test_s3_list_objects),
        cmocka_unit_test(test_session_token),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
