/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "backend/crypto.h"
#include "cache/util.h"

static const PrScryptParams fast_scrypt = { .n = 1024, .r = 8, .p = 1 };

static void fixed_keys(PrKeys *k, uint8_t seed) {
    for (size_t i = 0; i < sizeof k->enc; i++) k->enc[i] = (uint8_t)(seed + i);
    for (size_t i = 0; i < sizeof k->mac; i++) k->mac[i] = (uint8_t)(seed * 7 + i);
}

static bool all_zero(const uint8_t *p, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (p[i]) return false;
    return true;
}

static void test_random(void **state) {
    (void)state;
    PrKeys a, b;
    assert_int_equal(pr_keys_generate(&a), 0);
    assert_int_equal(pr_keys_generate(&b), 0);
    assert_memory_not_equal(&a, &b, sizeof a);
    assert_memory_not_equal(a.enc, a.mac, sizeof a.enc);
    assert_int_equal(pr_random(NULL, 0), 0);
}

static void test_sha256(void **state) {
    (void)state;
    uint8_t out[32];
    char hex[65];
    pr_sha256("abc", 3, out);
    pr_hex(out, sizeof out, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    pr_sha256("", 0, out);
    pr_hex(out, sizeof out, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_blob_id(void **state) {
    (void)state;
    /* RFC 4231 test case 2; HMAC zero-pads short keys, so "Jefe" padded to 32 bytes is the same key. */
    PrKeys k = {};
    memcpy(k.mac, "Jefe", 4);
    memset(k.enc, 0xee, sizeof k.enc); /* must not matter */
    const char *msg = "what do ya want for nothing?";
    PrId id;
    char hex[2 * PR_ID_LEN + 1];
    pr_blob_id(&k, msg, strlen(msg), &id);
    pr_hex(id.b, sizeof id.b, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Deterministic, keyed. */
    PrId id2;
    pr_blob_id(&k, msg, strlen(msg), &id2);
    assert_memory_equal(&id, &id2, sizeof id);
    k.mac[31] = 1;
    pr_blob_id(&k, msg, strlen(msg), &id2);
    assert_memory_not_equal(&id, &id2, sizeof id);
    /* ids are computed with a per-thread context kept keyed between calls: switching keys back and
     * forth, and any length, must give what HMAC-SHA256 gives */
    uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 31 + 7);
    for (int round = 0; round < 3; round++) {
        k.mac[31] = (uint8_t)(round & 1);
        for (size_t len = 0; len <= sizeof big; len += len < 200 ? 67 : 34999) {
            uint8_t want[32];
            unsigned wl = 0;
            assert_non_null(HMAC(EVP_sha256(), k.mac, sizeof k.mac, big, len, want, &wl));
            pr_blob_id(&k, big, len, &id2);
            assert_memory_equal(id2.b, want, 32);
        }
    }
    k.mac[31] = 0;
    pr_blob_id(&k, msg, strlen(msg), &id2);
    assert_memory_equal(&id, &id2, sizeof id);
}

static void roundtrip(size_t len) {
    PrKeys k;
    fixed_keys(&k, 3);
    static const char aad[] = "blob aad";
    _cleanup_free_ uint8_t *plain = malloc(len + 1), *sealed = malloc(len + PR_SEAL_OVERHEAD),
                           *back = malloc(len + 1);
    assert_non_null(plain);
    assert_non_null(sealed);
    assert_non_null(back);
    for (size_t i = 0; i < len; i++) plain[i] = (uint8_t)(i * 131 + (i >> 9));

    assert_int_equal(pr_seal(&k, aad, sizeof aad, plain, len, sealed), 0);
    if (len >= 16) assert_memory_not_equal(sealed + PR_NONCE_LEN, plain, 16); /* it is encrypted */
    size_t out_len = 12345;
    assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, len + PR_SEAL_OVERHEAD, back, &out_len), 0);
    assert_int_equal(out_len, len);
    if (len > 0) assert_memory_equal(back, plain, len);

    /* No aad at all. */
    assert_int_equal(pr_seal(&k, NULL, 0, plain, len, sealed), 0);
    assert_int_equal(pr_unseal(&k, NULL, 0, sealed, len + PR_SEAL_OVERHEAD, back, &out_len), 0);
    assert_int_equal(out_len, len);
    if (len > 0) assert_memory_equal(back, plain, len);
}

/* pr_seal_parts seals head || body exactly as pr_seal seals the joined plaintext: pr_unseal opens
 * it and gets the concatenation back, whatever the split. */
static void test_seal_parts(void **state) {
    (void)state;
    PrKeys k;
    fixed_keys(&k, 4);
    static const char aad[] = "parts";
    uint8_t plain[1000], sealed[sizeof plain + PR_SEAL_OVERHEAD], back[sizeof plain];
    for (size_t i = 0; i < sizeof plain; i++) plain[i] = (uint8_t)(i * 7 + 3);
    size_t splits[] = {0, 1, 15, 16, 17, 999, 1000};
    for (size_t s = 0; s < sizeof splits / sizeof *splits; s++) {
        size_t h = splits[s];
        assert_int_equal(pr_seal_parts(&k, aad, sizeof aad, plain, h, plain + h, sizeof plain - h, sealed), 0);
        size_t out_len = 0;
        assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, sizeof sealed, back, &out_len), 0);
        assert_int_equal(out_len, sizeof plain);
        assert_memory_equal(back, plain, sizeof plain);
        sealed[PR_NONCE_LEN + h / 2] ^= 1;
        assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, sizeof sealed, back, &out_len), -EBADMSG);
    }
}

static void test_seal_roundtrip(void **state) {
    (void)state;
    roundtrip(0);
    roundtrip(1);
    roundtrip(1024 * 1024);
}

static void test_seal_fresh_nonce(void **state) {
    (void)state;
    PrKeys k;
    fixed_keys(&k, 5);
    const char plain[] = "the same plaintext twice";
    uint8_t a[sizeof plain + PR_SEAL_OVERHEAD], b[sizeof plain + PR_SEAL_OVERHEAD];
    assert_int_equal(pr_seal(&k, NULL, 0, plain, sizeof plain, a), 0);
    assert_int_equal(pr_seal(&k, NULL, 0, plain, sizeof plain, b), 0);
    assert_memory_not_equal(a, b, PR_NONCE_LEN);
    assert_memory_not_equal(a + PR_NONCE_LEN, b + PR_NONCE_LEN, sizeof plain);
}

#define SMALL 20

static void test_unseal_tamper(void **state) {
    (void)state;
    PrKeys k;
    fixed_keys(&k, 9);
    const uint8_t aad[] = { 1, 2, 3, 4, 5 };
    uint8_t plain[SMALL], sealed[SMALL + PR_SEAL_OVERHEAD], out[SMALL];
    size_t out_len;
    for (size_t i = 0; i < SMALL; i++) plain[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(pr_seal(&k, aad, sizeof aad, plain, SMALL, sealed), 0);

    /* Every single bit flip anywhere in the sealed buffer. */
    for (size_t bit = 0; bit < 8 * sizeof sealed; bit++) {
        sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(out, 0x55, sizeof out);
        out_len = 77;
        assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, sizeof sealed, out, &out_len), -EBADMSG);
        assert_true(all_zero(out, sizeof out));
        assert_int_equal(out_len, 0);
        sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* Still intact after all that. */
    assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, sizeof sealed, out, &out_len), 0);
    assert_memory_equal(out, plain, SMALL);

    /* Flipped aad, missing aad, longer aad. */
    uint8_t bad_aad[sizeof aad + 1];
    memcpy(bad_aad, aad, sizeof aad);
    bad_aad[sizeof aad] = 0;
    for (size_t bit = 0; bit < 8 * sizeof aad; bit++) {
        bad_aad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(out, 0x55, sizeof out);
        assert_int_equal(pr_unseal(&k, bad_aad, sizeof aad, sealed, sizeof sealed, out, &out_len), -EBADMSG);
        assert_true(all_zero(out, sizeof out));
        bad_aad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(pr_unseal(&k, NULL, 0, sealed, sizeof sealed, out, &out_len), -EBADMSG);
    assert_int_equal(pr_unseal(&k, bad_aad, sizeof bad_aad, sealed, sizeof sealed, out, &out_len), -EBADMSG);

    /* Truncated: by one byte, to exactly the overhead, below the overhead, empty. */
    for (size_t cut = 1; cut <= SMALL; cut++) {
        memset(out, 0x55, sizeof out);
        assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, sizeof sealed - cut, out, &out_len), -EBADMSG);
        assert_true(all_zero(out, SMALL - cut));
    }
    assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, PR_SEAL_OVERHEAD - 1, out, &out_len), -EBADMSG);
    assert_int_equal(pr_unseal(&k, aad, sizeof aad, sealed, 0, out, &out_len), -EBADMSG);

    /* Wrong key. */
    PrKeys other = k;
    other.enc[0] ^= 0x80;
    memset(out, 0x55, sizeof out);
    assert_int_equal(pr_unseal(&other, aad, sizeof aad, sealed, sizeof sealed, out, &out_len), -EBADMSG);
    assert_true(all_zero(out, sizeof out));
    /* The mac key plays no part in sealing. */
    other = k;
    other.mac[0] ^= 0x80;
    assert_int_equal(pr_unseal(&other, aad, sizeof aad, sealed, sizeof sealed, out, &out_len), 0);
}

static void test_empty_tamper(void **state) {
    (void)state;
    PrKeys k;
    fixed_keys(&k, 11);
    uint8_t sealed[PR_SEAL_OVERHEAD], out[1] = { 0x55 };
    size_t out_len;
    assert_int_equal(pr_seal(&k, "x", 1, NULL, 0, sealed), 0);
    assert_int_equal(pr_unseal(&k, "x", 1, sealed, sizeof sealed, out, &out_len), 0);
    assert_int_equal(out_len, 0);
    assert_int_equal(pr_unseal(&k, "y", 1, sealed, sizeof sealed, out, &out_len), -EBADMSG);
    sealed[PR_SEAL_OVERHEAD - 1] ^= 1;
    assert_int_equal(pr_unseal(&k, "x", 1, sealed, sizeof sealed, out, &out_len), -EBADMSG);
    assert_int_equal(out[0], 0x55); /* nothing to zero, nothing written */
}

static void test_keys_wrap(void **state) {
    (void)state;
    PrKeys k, back;
    assert_int_equal(pr_keys_generate(&k), 0);
    _cleanup_free_ void *file = NULL;
    size_t len = 0;
    assert_int_equal(pr_keys_wrap(&k, "correct horse", &fast_scrypt, &file, &len), 0);
    assert_int_equal(len, 152);
    const uint8_t *f = file;
    assert_memory_equal(f, "PRAFSKEY", 8);
    assert_int_equal(pr_get_u32(f + 8), 1);
    assert_int_equal(pr_get_u64(f + 12), 1024);
    assert_int_equal(pr_get_u32(f + 20), 8);
    assert_int_equal(pr_get_u32(f + 24), 1);

    memset(&back, 0, sizeof back);
    assert_int_equal(pr_keys_unwrap(file, len, "correct horse", &back), 0);
    assert_memory_equal(&back, &k, sizeof k);

    /* Wrong passwords. */
    assert_int_equal(pr_keys_unwrap(file, len, "correct horsf", &back), -EACCES);
    assert_int_equal(pr_keys_unwrap(file, len, "", &back), -EACCES);

    /* Two wraps of the same keys differ (fresh salt and nonce). */
    _cleanup_free_ void *file2 = NULL;
    size_t len2 = 0;
    assert_int_equal(pr_keys_wrap(&k, "correct horse", &fast_scrypt, &file2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_not_equal(file, file2, len);

    /* Empty password works both ways. */
    _cleanup_free_ void *file3 = NULL;
    size_t len3 = 0;
    assert_int_equal(pr_keys_wrap(&k, "", &fast_scrypt, &file3, &len3), 0);
    assert_int_equal(pr_keys_unwrap(file3, len3, "", &back), 0);
    assert_memory_equal(&back, &k, sizeof k);
}

static void test_keys_wrap_default(void **state) {
    (void)state;
    assert_int_equal(pr_scrypt_default.n, 32768);
    assert_int_equal(pr_scrypt_default.r, 8);
    assert_int_equal(pr_scrypt_default.p, 1);
    PrKeys k, back;
    fixed_keys(&k, 42);
    _cleanup_free_ void *file = NULL;
    size_t len = 0;
    assert_int_equal(pr_keys_wrap(&k, "pw", &pr_scrypt_default, &file, &len), 0);
    assert_int_equal(pr_keys_unwrap(file, len, "pw", &back), 0);
    assert_memory_equal(&back, &k, sizeof k);
}

static void test_keys_wrap_bad_params(void **state) {
    (void)state;
    PrKeys k;
    fixed_keys(&k, 1);
    void *file = NULL;
    size_t len = 0;
    const PrScryptParams bad[] = {
        { .n = 1000, .r = 8, .p = 1 },
        { .n = 1, .r = 8, .p = 1 },
        { .n = UINT64_C(1) << 23, .r = 8, .p = 1 },
        { .n = 1024, .r = 0, .p = 1 },
        { .n = 1024, .r = 33, .p = 1 },
        { .n = 1024, .r = 8, .p = 0 },
        { .n = 1024, .r = 8, .p = 17 },
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        assert_int_equal(pr_keys_wrap(&k, "pw", &bad[i], &file, &len), -EINVAL);
        assert_null(file);
    }
}

static void put_params(uint8_t *f, uint64_t n, uint32_t r, uint32_t p) {
    pr_put_u64(f + 12, n);
    pr_put_u32(f + 20, r);
    pr_put_u32(f + 24, p);
}

static void test_keys_unwrap_bad(void **state) {
    (void)state;
    PrKeys k, back;
    fixed_keys(&k, 2);
    _cleanup_free_ void *file = NULL;
    size_t len = 0;
    assert_int_equal(pr_keys_wrap(&k, "pw", &fast_scrypt, &file, &len), 0);
    uint8_t copy[152];
    assert_int_equal(len, sizeof copy);

    /* Garbage of the right length. */
    for (size_t i = 0; i < sizeof copy; i++) copy[i] = (uint8_t)(i * 37 + 1);
    assert_int_equal(pr_keys_unwrap(copy, sizeof copy, "pw", &back), -EBADMSG);

    /* Wrong lengths. */
    assert_int_equal(pr_keys_unwrap(file, 0, "pw", &back), -EBADMSG);
    assert_int_equal(pr_keys_unwrap(file, 59, "pw", &back), -EBADMSG);
    assert_int_equal(pr_keys_unwrap(file, len - 1, "pw", &back), -EBADMSG);
    _cleanup_free_ uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, file, len);
    longer[len] = 0;
    assert_int_equal(pr_keys_unwrap(longer, len + 1, "pw", &back), -EBADMSG);

    /* Magic, version. */
    memcpy(copy, file, len);
    copy[0] = 'p';
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EBADMSG);
    memcpy(copy, file, len);
    pr_put_u32(copy + 8, 2);
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EBADMSG);
    pr_put_u32(copy + 8, 0);
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EBADMSG);

    /* Parameters beyond the limits: refused before any work is done. */
    const struct {
        uint64_t n;
        uint32_t r, p;
    } huge[] = {
        { UINT64_C(1) << 23, 8, 1 }, { UINT64_MAX, 8, 1 }, { UINT64_C(1) << 63, 8, 1 },
        { 1000, 8, 1 },              { 0, 8, 1 },          { 1, 8, 1 },
        { 1024, 33, 1 },             { 1024, UINT32_MAX, 1 }, { 1024, 8, 17 },
        { 1024, 0, 1 },              { 1024, 8, 0 },
    };
    for (size_t i = 0; i < ELEMENTSOF(huge); i++) {
        memcpy(copy, file, len);
        put_params(copy, huge[i].n, huge[i].r, huge[i].p);
        assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -E2BIG);
    }

    /* Header fields are authenticated: changed but valid parameters or salt do not open it. */
    memcpy(copy, file, len);
    put_params(copy, 2048, 8, 1);
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EACCES);
    memcpy(copy, file, len);
    copy[28] ^= 1; /* salt */
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EACCES);
    memcpy(copy, file, len);
    copy[100] ^= 1; /* sealed keys */
    assert_int_equal(pr_keys_unwrap(copy, len, "pw", &back), -EACCES);

    /* The unmodified file still opens. */
    assert_int_equal(pr_keys_unwrap(file, len, "pw", &back), 0);
    assert_memory_equal(&back, &k, sizeof k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_blob_id),
        cmocka_unit_test(test_seal_roundtrip), cmocka_unit_test(test_seal_parts),
        cmocka_unit_test(test_seal_fresh_nonce),
        cmocka_unit_test(test_unseal_tamper),
        cmocka_unit_test(test_empty_tamper),
        cmocka_unit_test(test_keys_wrap),
        cmocka_unit_test(test_keys_wrap_default),
        cmocka_unit_test(test_keys_wrap_bad_params),
        cmocka_unit_test(test_keys_unwrap_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
