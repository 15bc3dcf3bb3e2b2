/* SPDX-License-Identifier: MIT */
#include "fs/tree.h"

#include <string.h>

#include "cache/util.h"

#define ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

static int add(size_t *acc, size_t n) {
    if (*acc > SIZE_MAX - n) return -EOVERFLOW;
    *acc += n;
    return 0;
}

int pr_flat_tree_new(const PrTree *t, PrCacheValue **ret) {
    size_t arrays = 0, bytes = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const PrNode *n = &t->nodes[i];
        int r = add(&arrays, ALIGN8((size_t)n->nxattrs * sizeof(PrXattr)));
        if (r >= 0) r = add(&arrays, ALIGN8((size_t)n->nchunks * sizeof(PrChunkRef)));
        if (r >= 0) r = add(&bytes, strlen(n->name) + 1);
        if (r >= 0 && n->target) r = add(&bytes, strlen(n->target) + 1);
        for (uint32_t x = 0; r >= 0 && x < n->nxattrs; x++) {
            r = add(&bytes, strlen(n->xattrs[x].name) + 1);
            if (r >= 0) r = add(&bytes, n->xattrs[x].len);
        }
        if (r < 0) return r;
    }
    size_t head = ALIGN8(sizeof(PrFlatTree));
    size_t nodes = (size_t)t->n * sizeof(PrNode);
    size_t total = head;
    if (add(&total, nodes) < 0 || add(&total, arrays) < 0 || add(&total, bytes) < 0) return -EOVERFLOW;
    PrCacheValue *v = pr_memcache_value_new(total);
    if (!v) return -ENOMEM;
    uint8_t *base = v->data;
    PrFlatTree *ft = (PrFlatTree *)(void *)base;
    ft->n = t->n;
    ft->nodes = (PrNode *)(void *)(base + head);
    uint8_t *ap = base + head + nodes;         /* arrays, 8-aligned pieces */
    char *bp = (char *)(base + head + nodes + arrays); /* strings and values */
    for (uint32_t i = 0; i < t->n; i++) {
        const PrNode *s = &t->nodes[i];
        PrNode *d = &ft->nodes[i];
        *d = *s;
        size_t l = strlen(s->name) + 1;
        d->name = memcpy(bp, s->name, l);
        bp += l;
        if (s->target) {
            l = strlen(s->target) + 1;
            d->target = memcpy(bp, s->target, l);
            bp += l;
        }
        d->xattrs = NULL;
        if (s->nxattrs) {
            d->xattrs = (PrXattr *)(void *)ap;
            ap += ALIGN8((size_t)s->nxattrs * sizeof(PrXattr));
            for (uint32_t x = 0; x < s->nxattrs; x++) {
                l = strlen(s->xattrs[x].name) + 1;
                d->xattrs[x].name = memcpy(bp, s->xattrs[x].name, l);
                bp += l;
                d->xattrs[x].len = s->xattrs[x].len;
                d->xattrs[x].value = (uint8_t *)bp;
                if (s->xattrs[x].len) memcpy(bp, s->xattrs[x].value, s->xattrs[x].len);
                bp += s->xattrs[x].len;
            }
        }
        d->chunks = NULL;
        if (s->nchunks) {
            d->chunks = (PrChunkRef *)(void *)ap;
            memcpy(d->chunks, s->chunks, (size_t)s->nchunks * sizeof(PrChunkRef));
            ap += ALIGN8((size_t)s->nchunks * sizeof(PrChunkRef));
        }
    }
    *ret = v;
    return 0;
}

ssize_t pr_flat_tree_find(const PrFlatTree *t, const char *name) {
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->nodes[mid].name, name);
        if (c == 0) return (ssize_t)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

void pr_flat_tree_key(const PrId *id, uint8_t key[32]) {
    memcpy(key, id->b, 32);
    /* blob ids are HMAC outputs: flipping bits gives a key no blob will have */
    key[0] ^= 0x5a;
    key[31] ^= 0xa5;
}

int pr_flat_tree_load(PrFetcher *f, PrMemCache *mc, const PrId *id, PrCacheValue **ret) {
    uint8_t key[32];
    pr_flat_tree_key(id, key);
    PrCacheValue *v = pr_memcache_get(mc, key);
    if (v) {
        *ret = v;
        return 0;
    }
    PrCacheValue *raw = NULL;
    int r = pr_fetcher_get_sync(f, id, &raw);
    if (r < 0) return r;
    r = pr_flat_tree_from_blob(mc, id, raw, ret);
    pr_memcache_value_unref(raw);
    return r;
}

int pr_flat_tree_from_blob(PrMemCache *mc, const PrId *id, PrCacheValue *raw, PrCacheValue **ret) {
    uint8_t key[32];
    pr_flat_tree_key(id, key);
    PrCacheValue *v = NULL;
    PrTree *t = NULL;
    int r = pr_tree_decode(raw->data, raw->len, &t);
    if (r < 0) {
        char hex[65];
        pr_hex(id->b, PR_ID_LEN, hex);
        return pr_log_errno(r, "tree %.16s is malformed", hex);
    }
    r = pr_flat_tree_new(t, &v);
    pr_tree_free(t);
    if (r < 0) return r;
    pr_memcache_put(mc, key, v);
    /* the blob's decoded form is what is used from now on: the blob goes last in line, behind the
     * tree blobs of directories not listed yet (a walk's tree window brought them together) */
    pr_memcache_demote(mc, id->b);
    *ret = v;
    return 0;
}

uint64_t pr_node_blocks(const PrNode *n) {
    uint64_t stored = 0;
    if (n->type == PR_NODE_FILE) {
        for (uint32_t i = 0; i < n->nchunks; i++)
            if (!pr_id_is_zero(&n->chunks[i].id)) stored += n->chunks[i].length;
    } else if (n->type == PR_NODE_DIR) {
        stored = n->size;
    }
    return (stored + 511) / 512;
}
