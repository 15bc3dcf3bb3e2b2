/* SPDX-License-Identifier: MIT */
/* Memory cache of decoded blobs: bytes by 32-byte id, least recently used out first, bounded in
 * bytes. Values are shared, immutable and reference-counted: a value handed out stays valid until
 * its holder calls pr_memcache_value_unref, even if the cache evicted it meanwhile. Thread-safe. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PrMemCache PrMemCache;

typedef struct PrCacheValue {
    size_t len;
    atomic_uint hint; /* for the owner of the cache (the mount: a read of this value starts a prefetch);
                       * 0 in a new value, never looked at by the cache */
    uint8_t data[]; /* len bytes */
} PrCacheValue;

int pr_memcache_new(size_t max_bytes, PrMemCache **ret);
void pr_memcache_free(PrMemCache *c);

/* A new value of len bytes with one reference, to fill then insert. NULL on allocation failure. */
PrCacheValue *pr_memcache_value_new(size_t len);
PrCacheValue *pr_memcache_value_ref(PrCacheValue *v);
void pr_memcache_value_unref(PrCacheValue *v);

/* A new reference to the value under key, or NULL. */
PrCacheValue *pr_memcache_get(PrMemCache *c, const uint8_t key[32]);
/* Inserts (the cache takes its own reference; the caller keeps its one). A value larger than the
 * whole bound is not kept. Replaces nothing: if the key is present the old value stays. */
void pr_memcache_put(PrMemCache *c, const uint8_t key[32], PrCacheValue *v);
/* Moves the entry under key (if any) to the end of the line: the first to go when room is needed.
 * For a value its reader is done with (the kernel's page cache holds the bytes now), so that it does
 * not push out what was fetched ahead of the reader and is not read yet. */
void pr_memcache_demote(PrMemCache *c, const uint8_t key[32]);
/* Bytes currently held, and the number of entries. */
void pr_memcache_usage(PrMemCache *c, size_t *ret_bytes, size_t *ret_count);
