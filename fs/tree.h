/* SPDX-License-Identifier: MIT */
/* Decoded trees as kept in the memory cache: one allocation holding the node array and everything
 * the nodes point to, so a cache value (reference-counted, freed with one free) can hold a whole
 * decoded directory and an inode can pin it while the kernel knows the entry. */
#pragma once

#include <sys/types.h>

#include "backend/format.h"
#include "cache/memcache.h"
#include "fs/fetch.h"

typedef struct PrFlatTree {
    uint32_t n;
    PrNode *nodes; /* sorted by name; pointers inside the same value */
} PrFlatTree;

static inline void pr_cache_value_unrefp(PrCacheValue **v) { pr_memcache_value_unref(*v); }
static inline const PrFlatTree *pr_flat_tree(const PrCacheValue *v) { return (const PrFlatTree *)(const void *)v->data; }
/* Whether n is one of t's nodes (compared as addresses), and which. */
static inline bool pr_flat_tree_holds(const PrFlatTree *t, const PrNode *n) {
    uintptr_t a = (uintptr_t)t->nodes, p = (uintptr_t)n;
    return p >= a && p < a + (uintptr_t)t->n * sizeof *t->nodes;
}
static inline uint32_t pr_flat_tree_index(const PrFlatTree *t, const PrNode *n) {
    return (uint32_t)(((uintptr_t)n - (uintptr_t)t->nodes) / sizeof *t->nodes);
}

/* Copies t into one new value (one reference). -ENOMEM, -EOVERFLOW. */
int pr_flat_tree_new(const PrTree *t, PrCacheValue **ret);
/* Binary search by name: the index, or -1. */
ssize_t pr_flat_tree_find(const PrFlatTree *t, const char *name);
/* The memory cache key of the decoded form of tree id (distinct from the blob's own key). */
void pr_flat_tree_key(const PrId *id, uint8_t key[32]);
/* The decoded tree id: from the memory cache, else fetched (waiting; shared with any concurrent
 * fetch of the same blob), decoded, flattened and cached. -EIO when it cannot be read, -EBADMSG when
 * it is malformed (both logged). */
int pr_flat_tree_load(PrFetcher *f, PrMemCache *mc, const PrId *id, PrCacheValue **ret);
/* The same from its blob raw (a reference the caller keeps), without any fetch. */
int pr_flat_tree_from_blob(PrMemCache *mc, const PrId *id, PrCacheValue *raw, PrCacheValue **ret);
/* Bytes of a file node that are stored (not holes), rounded up to 512-byte blocks. */
uint64_t pr_node_blocks(const PrNode *n);
