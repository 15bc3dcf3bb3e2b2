/* SPDX-License-Identifier: MIT */
#include "backend/crypto.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "cache/util.h"

const PrScryptParams pr_scrypt_default = { .n = 32768, .r = 8, .p = 1 };

/* Key file layout (docs/format.md, "Key files"). */
#define KEYFILE_MAGIC "PRAFSKEY"
#define KEYFILE_MAGIC_LEN 8
#define KEYFILE_VERSION 1
#define KEYFILE_SALT_LEN 32
#define KEYFILE_HEADER_LEN (KEYFILE_MAGIC_LEN + 4 + 8 + 4 + 4 + KEYFILE_SALT_LEN) /* 60 */
#define KEYFILE_PLAIN_LEN (2 * 32)
#define KEYFILE_LEN (KEYFILE_HEADER_LEN + KEYFILE_PLAIN_LEN + PR_SEAL_OVERHEAD) /* 152 */

/* Limits accepted for scrypt parameters read from a key file. */
#define SCRYPT_MAX_N (UINT64_C(1) << 22)
#define SCRYPT_MAX_R 32
#define SCRYPT_MAX_P 16

/* EVP_{En,De}cryptUpdate take int lengths: feed big buffers in pieces of this size. */
#define EVP_STEP ((size_t)1 << 30)

static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm_cipher; /* never freed: lives as long as the process */

static void gcm_fetch(void) { gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL); }

static const EVP_CIPHER *gcm(void) {
    if (pthread_once(&gcm_once, gcm_fetch) != 0) return NULL;
    return gcm_cipher;
}

static void cipher_ctx_freep(EVP_CIPHER_CTX **p) { EVP_CIPHER_CTX_free(*p); }
#define _cleanup_cipher_ctx_ _cleanup_(cipher_ctx_freep)

int pr_random(void *buf, size_t len) {
    uint8_t *p = buf;
    while (len > 0) {
        size_t n = MIN(len, (size_t)INT_MAX);
        if (RAND_bytes(p, (int)n) != 1) return -EIO;
        p += n;
        len -= n;
    }
    return 0;
}

int pr_keys_generate(PrKeys *ret) {
    PrKeys k;
    int r = pr_random(&k, sizeof k);
    if (r >= 0) *ret = k;
    OPENSSL_cleanse(&k, sizeof k);
    return r;
}

void pr_sha256(const void *data, size_t len, uint8_t out[32]) {
    /* SHA256() only fails when the library cannot run at all; a wrong hash would corrupt the
     * repository, so there is nothing sane to continue with. */
    if (!SHA256(data, len, out)) {
        pr_log(PR_LOG_ERR, "SHA-256 failed");
        abort();
    }
}

/* HMAC() looks the digest and MAC implementations up and keys a fresh context on every call, a few
 * microseconds that count for 100,000 small files: each thread keeps one context keyed for the last
 * mac key it used and re-initialises it (same key) per blob. */
typedef struct MacCache {
    EVP_MAC_CTX *ctx;
    uint8_t key[32];
} MacCache;
static pthread_key_t mac_key;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_impl; /* never freed: lives as long as the process */
static void mac_cache_free(void *p) {
    MacCache *m = p;
    EVP_MAC_CTX_free(m->ctx);
    OPENSSL_cleanse(m, sizeof *m);
    free(m);
}
static void mac_init_once(void) {
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (pthread_key_create(&mac_key, mac_cache_free) != 0) {
        EVP_MAC_free(hmac_impl);
        hmac_impl = NULL;
    }
}

/* The calling thread's HMAC-SHA256 context keyed with key, ready for data; NULL if it cannot be had. */
static EVP_MAC_CTX *thread_mac(const uint8_t key[32]) {
    if (pthread_once(&mac_once, mac_init_once) != 0 || !hmac_impl) return NULL;
    MacCache *m = pthread_getspecific(mac_key);
    if (m && CRYPTO_memcmp(m->key, key, 32) == 0) return EVP_MAC_init(m->ctx, NULL, 0, NULL) == 1 ? m->ctx : NULL;
    if (!m) {
        if (!(m = calloc(1, sizeof *m))) return NULL;
        if (pthread_setspecific(mac_key, m) != 0) {
            free(m);
            return NULL;
        }
    }
    EVP_MAC_CTX_free(m->ctx);
    memset(m->key, 0, sizeof m->key);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    if (!(m->ctx = EVP_MAC_CTX_new(hmac_impl)) || EVP_MAC_init(m->ctx, key, 32, params) != 1) {
        EVP_MAC_CTX_free(m->ctx);
        m->ctx = NULL;
        return NULL;
    }
    memcpy(m->key, key, 32);
    return m->ctx;
}

void pr_blob_id(const PrKeys *keys, const void *data, size_t len, PrId *ret) {
    EVP_MAC_CTX *ctx = thread_mac(keys->mac);
    size_t out_len = 0;
    if (ctx && EVP_MAC_update(ctx, data, len) == 1 && EVP_MAC_final(ctx, ret->b, &out_len, PR_ID_LEN) == 1 &&
        out_len == PR_ID_LEN)
        return;
    unsigned hl = 0;
    /* no cached context (out of memory): the one-shot way. HMAC() with a NULL md-buffer is not
     * thread-safe; we always pass ret. */
    if (!HMAC(EVP_sha256(), keys->mac, sizeof keys->mac, data, len, ret->b, &hl) || hl != PR_ID_LEN) {
        pr_log(PR_LOG_ERR, "HMAC-SHA256 failed");
        abort();
    }
}

/* Feeds aad (out == NULL) or data through an initialised context, INT_MAX-safe. */
static int cipher_update(EVP_CIPHER_CTX *ctx, bool enc, uint8_t *out, const void *in, size_t len) {
    const uint8_t *p = in;
    while (len > 0) {
        size_t n = MIN(len, EVP_STEP);
        int outl = 0;
        int ok = enc ? EVP_EncryptUpdate(ctx, out, &outl, p, (int)n)
                     : EVP_DecryptUpdate(ctx, out, &outl, p, (int)n);
        if (ok != 1) return -EIO;
        if (out) {
            if ((size_t)outl != n) return -EIO; /* GCM is a stream mode: output == input */
            out += n;
        }
        p += n;
        len -= n;
    }
    return 0;
}

int pr_seal_parts(const PrKeys *keys, const void *aad, size_t aad_len, const void *head, size_t head_len,
                  const void *body, size_t body_len, uint8_t *out) {
    const EVP_CIPHER *cipher = gcm();
    if (!cipher) return -EIO;
    if (body_len > SIZE_MAX - PR_SEAL_OVERHEAD || head_len > SIZE_MAX - PR_SEAL_OVERHEAD - body_len) return -EIO;
    size_t len = head_len + body_len;

    uint8_t *nonce = out, *ct = out + PR_NONCE_LEN, *tag = out + PR_NONCE_LEN + len;
    int r = pr_random(nonce, PR_NONCE_LEN);
    if (r < 0) return r;

    _cleanup_cipher_ctx_ EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -ENOMEM;
    /* The default IV length of GCM is 12 bytes (PR_NONCE_LEN). */
    if (EVP_EncryptInit_ex2(ctx, cipher, keys->enc, nonce, NULL) != 1) return -EIO;
    if (aad_len > 0) {
        r = cipher_update(ctx, true, NULL, aad, aad_len);
        if (r < 0) return r;
    }
    /* GCM is a stream mode: the two parts encrypt exactly as their concatenation would */
    if (head_len > 0) {
        r = cipher_update(ctx, true, ct, head, head_len);
        if (r < 0) return r;
    }
    if (body_len > 0) {
        r = cipher_update(ctx, true, ct + head_len, body, body_len);
        if (r < 0) return r;
    }
    int outl = 0;
    if (EVP_EncryptFinal_ex(ctx, ct + len, &outl) != 1 || outl != 0) return -EIO;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, PR_TAG_LEN, tag) != 1) return -EIO;
    return 0;
}

int pr_seal(const PrKeys *keys, const void *aad, size_t aad_len, const void *plain, size_t len, uint8_t *out) {
    return pr_seal_parts(keys, aad, aad_len, NULL, 0, plain, len, out);
}

int pr_unseal_split(const PrKeys *keys, const void *aad, size_t aad_len, const void *sealed, size_t len, uint8_t *head,
                    size_t head_len, PrUnsealPick pick, void *userdata) {
    if (len < PR_SEAL_OVERHEAD || len - PR_SEAL_OVERHEAD < head_len) return -EBADMSG;

    const uint8_t *in = sealed;
    size_t plain_len = len - PR_SEAL_OVERHEAD, rest_len = plain_len - head_len;
    const uint8_t *nonce = in, *ct = in + PR_NONCE_LEN, *tag = in + PR_NONCE_LEN + plain_len;
    uint8_t tag_copy[PR_TAG_LEN];
    memcpy(tag_copy, tag, sizeof tag_copy); /* SET_TAG takes a non-const pointer */

    const EVP_CIPHER *cipher = gcm();
    if (!cipher) return -EIO;

    int r = -EBADMSG;
    uint8_t *rest = NULL;
    _cleanup_cipher_ctx_ EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -ENOMEM;
    if (EVP_DecryptInit_ex2(ctx, cipher, keys->enc, nonce, NULL) != 1) goto fail;
    if (aad_len > 0 && cipher_update(ctx, false, NULL, aad, aad_len) < 0) goto fail;
    if (head_len > 0 && cipher_update(ctx, false, head, ct, head_len) < 0) goto fail;
    if (pick) {
        r = pick(head, rest_len, &rest, userdata);
        if (r < 0) goto fail;
        r = -EBADMSG;
    }
    if (rest_len > 0 && (!rest || cipher_update(ctx, false, rest, ct + head_len, rest_len) < 0)) goto fail;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, PR_TAG_LEN, tag_copy) != 1) goto fail;
    int outl = 0;
    uint8_t dummy[16];
    if (EVP_DecryptFinal_ex(ctx, dummy, &outl) != 1 || outl != 0) goto fail;
    return 0;

fail:
    /* Whatever was decrypted is unauthenticated: never let the caller see it. */
    if (head_len > 0) OPENSSL_cleanse(head, head_len);
    if (rest && rest_len > 0) OPENSSL_cleanse(rest, rest_len);
    return r;
}

int pr_unseal(const PrKeys *keys, const void *aad, size_t aad_len, const void *sealed, size_t len, uint8_t *out,
              size_t *ret_len) {
    *ret_len = 0;
    if (len < PR_SEAL_OVERHEAD) return -EBADMSG;
    size_t plain_len = len - PR_SEAL_OVERHEAD;
    int r = pr_unseal_split(keys, aad, aad_len, sealed, len, out, plain_len, NULL, NULL); /* all of it as head */
    if (r < 0) return r;
    *ret_len = plain_len;
    return 0;
}

/* 0 if the parameters are within the limits a key file may ask for, -E2BIG if not. */
static int scrypt_params_check(uint64_t n, uint32_t r, uint32_t p) {
    if (n < 2 || n > SCRYPT_MAX_N || (n & (n - 1)) != 0) return -E2BIG;
    if (r < 1 || r > SCRYPT_MAX_R) return -E2BIG;
    if (p < 1 || p > SCRYPT_MAX_P) return -E2BIG;
    return 0;
}

static int derive_kek(const char *password, const uint8_t salt[KEYFILE_SALT_LEN], uint64_t n, uint32_t r,
                      uint32_t p, uint8_t kek[32]) {
    /* scrypt needs 128*r*(N+2) bytes for V and 128*r*p for B; add a little slack. Within the
     * checked limits this cannot overflow (at most 2^41 + a bit). */
    uint64_t maxmem = UINT64_C(128) * r * (n + 2 + p) + (UINT64_C(1) << 20);
    if (EVP_PBE_scrypt(password, strlen(password), salt, KEYFILE_SALT_LEN, n, r, p, maxmem, kek, 32) != 1)
        return -ENOMEM; /* parameters are checked, so the allocation is what fails */
    return 0;
}

int pr_keys_wrap(const PrKeys *keys, const char *password, const PrScryptParams *params, void **ret,
                 size_t *ret_len) {
    if (!keys || !password || !params || !ret || !ret_len) return -EINVAL;
    if (scrypt_params_check(params->n, params->r, params->p) < 0) return -EINVAL;

    _cleanup_free_ uint8_t *buf = malloc(KEYFILE_LEN);
    if (!buf) return -ENOMEM;

    uint8_t *h = buf;
    memcpy(h, KEYFILE_MAGIC, KEYFILE_MAGIC_LEN);
    pr_put_u32(h + 8, KEYFILE_VERSION);
    pr_put_u64(h + 12, params->n);
    pr_put_u32(h + 20, params->r);
    pr_put_u32(h + 24, params->p);
    uint8_t *salt = h + 28;
    int r = pr_random(salt, KEYFILE_SALT_LEN);
    if (r < 0) return r;

    PrKeys kek = {};
    uint8_t plain[KEYFILE_PLAIN_LEN];
    r = derive_kek(password, salt, params->n, params->r, params->p, kek.enc);
    if (r >= 0) {
        memcpy(plain, keys->enc, 32);
        memcpy(plain + 32, keys->mac, 32);
        r = pr_seal(&kek, buf, KEYFILE_HEADER_LEN, plain, sizeof plain, buf + KEYFILE_HEADER_LEN);
    }
    OPENSSL_cleanse(&kek, sizeof kek);
    OPENSSL_cleanse(plain, sizeof plain);
    if (r < 0) return r;

    *ret = TAKE_PTR(buf);
    *ret_len = KEYFILE_LEN;
    return 0;
}

int pr_keys_unwrap(const void *data, size_t len, const char *password, PrKeys *ret) {
    if (!data || !password || !ret) return -EINVAL;
    if (len != KEYFILE_LEN) return -EBADMSG;

    const uint8_t *h = data;
    if (memcmp(h, KEYFILE_MAGIC, KEYFILE_MAGIC_LEN) != 0) return -EBADMSG;
    if (pr_get_u32(h + 8) != KEYFILE_VERSION) return -EBADMSG;
    uint64_t n = pr_get_u64(h + 12);
    uint32_t sr = pr_get_u32(h + 20), sp = pr_get_u32(h + 24);
    int r = scrypt_params_check(n, sr, sp);
    if (r < 0) return r;

    PrKeys kek = {};
    uint8_t plain[KEYFILE_PLAIN_LEN];
    size_t plain_len = 0;
    r = derive_kek(password, h + 28, n, sr, sp, kek.enc);
    if (r >= 0) {
        r = pr_unseal(&kek, h, KEYFILE_HEADER_LEN, h + KEYFILE_HEADER_LEN, len - KEYFILE_HEADER_LEN, plain,
                      &plain_len);
        if (r == -EBADMSG) r = -EACCES; /* wrong password (or a tampered file: indistinguishable) */
        else if (r >= 0 && plain_len != sizeof plain) r = -EBADMSG;
    }
    if (r >= 0) {
        memcpy(ret->enc, plain, 32);
        memcpy(ret->mac, plain + 32, 32);
    }
    OPENSSL_cleanse(&kek, sizeof kek);
    OPENSSL_cleanse(plain, sizeof plain);
    return r < 0 ? r : 0;
}
