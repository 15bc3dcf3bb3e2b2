/* SPDX-License-Identifier: MIT */
/* The store: a flat namespace of immutable objects ("data/ab/abcd...", "index/...", "config").
 * Two implementations sit behind one function table: a local directory and S3. Unit tests may
 * plug in a fake by filling a PrStoreOps.
 *
 * Every operation is safe to call from several threads at once on the same PrStore.
 * Errors are -errno: -ENOENT for a missing object, -EACCES for refused credentials,
 * -EIO for a damaged transfer, -ETIMEDOUT/-ECONNREFUSED/-EHOSTUNREACH for an unreachable server. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct PrStore PrStore;

/* Called once per object by list(); key is the full key (prefix included), valid during the call.
 * A negative return stops the listing and is returned by list(). */
typedef int (*PrStoreListFn)(const char *key, uint64_t size, void *userdata);

typedef struct PrStoreOps {
    const char *kind; /* "local", "s3", "fake" */
    /* Reads len bytes at off (len == 0: up to the end). A range past the end is short, not an error.
     * *ret_data is malloc'ed (caller frees), *ret_len its length. */
    int (*get)(PrStore *s, const char *key, uint64_t off, size_t len, void **ret_data, size_t *ret_len);
    /* Stores the whole object atomically: a reader sees all of it or nothing. */
    int (*put)(PrStore *s, const char *key, const void *data, size_t len);
    /* As put, with the data's SHA-256 known to the caller (S3 signs it: no second pass over a
     * pack). May be NULL: put is used. */
    int (*put_hashed)(PrStore *s, const char *key, const void *data, size_t len, const uint8_t sha256[32]);
    /* Lists every object whose key starts with prefix, in no particular order. */
    int (*list)(PrStore *s, const char *prefix, PrStoreListFn fn, void *userdata);
    /* Deletes an object; deleting a missing object is not an error. */
    int (*del)(PrStore *s, const char *key);
    /* 0 and *ret_size if the object exists, -ENOENT if not. */
    int (*stat)(PrStore *s, const char *key, uint64_t *ret_size);
    /* Makes the store exist (directory, bucket); succeeds if it already does. */
    int (*create)(PrStore *s);
    void (*free)(PrStore *s);
} PrStoreOps;

/* Implementations embed this as their first member. */
struct PrStore {
    const PrStoreOps *ops;
    char *location; /* for messages: "/srv/backup" or "s3://bucket/prefix" */
};

typedef struct PrStoreOptions {
    const char *endpoint; /* S3 endpoint URL; NULL: AWS_ENDPOINT_URL, then AWS */
    const char *ca_cert;  /* CA bundle; NULL: AWS_CA_BUNDLE, then the system's */
} PrStoreOptions;

/* Opens "s3://bucket/prefix" or a local directory path. Does not touch the network or the disk
 * beyond parsing settings; a missing repository shows on the first operation. */
int pr_store_open(const char *location, const PrStoreOptions *opts, PrStore **ret);
/* NULL-safe. */
void pr_store_free(PrStore *s);
static inline void pr_store_freep(PrStore **s) { pr_store_free(*s); }

int pr_store_local_open(const char *path, PrStore **ret);
int pr_store_s3_open(const char *url, const PrStoreOptions *opts, PrStore **ret);

static inline int pr_store_get(PrStore *s, const char *key, uint64_t off, size_t len, void **ret_data,
                               size_t *ret_len) {
    return s->ops->get(s, key, off, len, ret_data, ret_len);
}
static inline int pr_store_put(PrStore *s, const char *key, const void *data, size_t len) {
    return s->ops->put(s, key, data, len);
}
static inline int pr_store_put_hashed(PrStore *s, const char *key, const void *data, size_t len,
                                      const uint8_t sha256[32]) {
    return s->ops->put_hashed ? s->ops->put_hashed(s, key, data, len, sha256) : s->ops->put(s, key, data, len);
}
static inline int pr_store_list(PrStore *s, const char *prefix, PrStoreListFn fn, void *ud) {
    return s->ops->list(s, prefix, fn, ud);
}
static inline int pr_store_del(PrStore *s, const char *key) { return s->ops->del(s, key); }
static inline int pr_store_stat(PrStore *s, const char *key, uint64_t *ret_size) {
    return s->ops->stat(s, key, ret_size);
}
static inline int pr_store_create(PrStore *s) { return s->ops->create(s); }
