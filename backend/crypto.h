/* SPDX-License-Identifier: MIT */
/* Cryptography of the repository format (docs/format.md):
 *  - blob ids: HMAC-SHA256(mac key, plaintext)
 *  - sealing: AES-256-GCM, random 96-bit nonce; sealed = nonce(12) || ciphertext || tag(16)
 *  - master keys wrapped by a key derived from the password with scrypt
 * Every function is thread-safe; none keeps state between calls. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define PR_ID_LEN 32
#define PR_NONCE_LEN 12
#define PR_TAG_LEN 16
#define PR_SEAL_OVERHEAD (PR_NONCE_LEN + PR_TAG_LEN)

typedef struct PrId {
    uint8_t b[PR_ID_LEN];
} PrId;

typedef struct PrKeys {
    uint8_t enc[32]; /* AES-256-GCM key for blobs, trailers, indexes, manifests */
    uint8_t mac[32]; /* HMAC-SHA256 key for blob ids */
} PrKeys;

typedef struct PrScryptParams {
    uint64_t n; /* CPU/memory cost, a power of two */
    uint32_t r, p;
} PrScryptParams;

/* Parameters written by init: N=2^15, r=8, p=1 (32 MiB, ~0.1 s). */
extern const PrScryptParams pr_scrypt_default;

/* Cryptographically strong random bytes; 0 or -EIO. */
int pr_random(void *buf, size_t len);
/* Fresh random master keys. */
int pr_keys_generate(PrKeys *ret);

void pr_sha256(const void *data, size_t len, uint8_t out[32]);
/* Blob id: HMAC-SHA256(keys->mac, data). */
void pr_blob_id(const PrKeys *keys, const void *data, size_t len, PrId *ret);

/* Encrypts len bytes of plaintext into out, which has room for len + PR_SEAL_OVERHEAD bytes.
 * aad (may be NULL when aad_len is 0) is authenticated, not stored. Returns 0 or -EIO. */
int pr_seal(const PrKeys *keys, const void *aad, size_t aad_len, const void *plain, size_t len, uint8_t *out);
/* pr_seal of the plaintext head || body, without the caller joining them first (a blob's flag byte
 * and its payload). The result is the same as pr_seal of the concatenation. */
int pr_seal_parts(const PrKeys *keys, const void *aad, size_t aad_len, const void *head, size_t head_len,
                  const void *body, size_t body_len, uint8_t *out);
/* Reverse of pr_seal. out has room for len - PR_SEAL_OVERHEAD bytes; *ret_len receives that length.
 * -EBADMSG if the input is shorter than the overhead or does not authenticate (tampered, wrong key,
 * wrong aad). Never writes unauthenticated plaintext to the caller: out is zeroed on failure. */
int pr_unseal(const PrKeys *keys, const void *aad, size_t aad_len, const void *sealed, size_t len, uint8_t *out,
              size_t *ret_len);

/* Picks where the plaintext after its first head_len bytes goes, having seen them: *ret_out gets
 * room for rest_len bytes. A negative return stops the unseal with that error. */
typedef int (*PrUnsealPick)(const uint8_t *head, size_t rest_len, uint8_t **ret_out, void *userdata);
/* pr_unseal in two parts, so that the bulk of a blob is decrypted straight where it belongs: the
 * first head_len bytes of the plaintext go to head, the rest where pick says. On any failure both
 * are zeroed (whatever was decrypted is unauthenticated). -EBADMSG if the plaintext is shorter
 * than head_len. */
int pr_unseal_split(const PrKeys *keys, const void *aad, size_t aad_len, const void *sealed, size_t len, uint8_t *head,
                    size_t head_len, PrUnsealPick pick, void *userdata);

/* The body of keys/<id>: wraps keys under a key derived from password (scrypt with a fresh
 * salt). *ret is malloc'ed. */
int pr_keys_wrap(const PrKeys *keys, const char *password, const PrScryptParams *params, void **ret,
                 size_t *ret_len);
/* -EACCES if the password does not open it, -EBADMSG if the data is not a key file,
 * -E2BIG if its scrypt parameters exceed the sane limits (N > 2^22, r > 32, p > 16). */
int pr_keys_unwrap(const void *data, size_t len, const char *password, PrKeys *ret);
