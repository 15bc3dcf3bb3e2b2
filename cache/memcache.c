/* SPDX-License-Identifier: MIT */
#include "cache/memcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache/util.h"

typedef struct ValueHdr {
    atomic_size_t refs;
    PrCacheValue v;
} ValueHdr;

typedef struct Entry {
    uint8_t key[32];
    PrCacheValue *value;
    struct Entry *prev, *next; /* LRU list, most recent at head */
    struct Entry *hnext;       /* hash chain */
} Entry;

struct PrMemCache {
    pthread_mutex_t lock;
    size_t max_bytes, bytes, count;
    Entry **buckets;
    size_t nbuckets; /* power of two */
    Entry *head, *tail;
};

static ValueHdr *hdr(PrCacheValue *v) { return (ValueHdr *)((uint8_t *)v - offsetof(ValueHdr, v)); }

PrCacheValue *pr_memcache_value_new(size_t len) {
    ValueHdr *h = malloc(sizeof *h + len);
    if (!h) return NULL;
    atomic_init(&h->refs, 1);
    h->v.len = len;
    atomic_init(&h->v.hint, 0);
    return &h->v;
}

PrCacheValue *pr_memcache_value_ref(PrCacheValue *v) {
    if (v) atomic_fetch_add(&hdr(v)->refs, 1);
    return v;
}

void pr_memcache_value_unref(PrCacheValue *v) {
    if (v && atomic_fetch_sub(&hdr(v)->refs, 1) == 1) free(hdr(v));
}

int pr_memcache_new(size_t max_bytes, PrMemCache **ret) {
    PrMemCache *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->lock, NULL);
    *ret = c;
    return 0;
}

void pr_memcache_free(PrMemCache *c) {
    if (!c) return;
    for (Entry *e = c->head, *n; e; e = n) {
        n = e->next;
        pr_memcache_value_unref(e->value);
        free(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static size_t bucket(const PrMemCache *c, const uint8_t key[32]) {
    uint64_t h;
    memcpy(&h, key, sizeof h); /* keys are hashes already */
    return (size_t)h & (c->nbuckets - 1);
}

static Entry *find(PrMemCache *c, const uint8_t key[32]) {
    for (Entry *e = c->buckets[bucket(c, key)]; e; e = e->hnext)
        if (memcmp(e->key, key, 32) == 0) return e;
    return NULL;
}

static void lru_unlink(PrMemCache *c, Entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(PrMemCache *c, Entry *e) {
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static void evict(PrMemCache *c, Entry *e) {
    Entry **pp = &c->buckets[bucket(c, e->key)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= e->value->len;
    c->count--;
    pr_memcache_value_unref(e->value);
    free(e);
}

static void grow(PrMemCache *c) {
    size_t nb = c->nbuckets * 2;
    Entry **b = calloc(nb, sizeof *b);
    if (!b) return; /* longer chains, still correct */
    for (Entry *e = c->head; e; e = e->next) {
        uint64_t h;
        memcpy(&h, e->key, sizeof h);
        size_t i = (size_t)h & (nb - 1);
        e->hnext = b[i];
        b[i] = e;
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
}

PrCacheValue *pr_memcache_get(PrMemCache *c, const uint8_t key[32]) {
    pthread_mutex_lock(&c->lock);
    Entry *e = find(c, key);
    PrCacheValue *v = NULL;
    if (e) {
        lru_unlink(c, e);
        lru_push_front(c, e);
        v = pr_memcache_value_ref(e->value);
    }
    pthread_mutex_unlock(&c->lock);
    return v;
}

void pr_memcache_put(PrMemCache *c, const uint8_t key[32], PrCacheValue *v) {
    if (!v || v->len > c->max_bytes) return;
    pthread_mutex_lock(&c->lock);
    if (!find(c, key)) {
        Entry *e = calloc(1, sizeof *e);
        if (e) {
            while (c->tail && c->bytes + v->len > c->max_bytes) evict(c, c->tail);
            memcpy(e->key, key, 32);
            e->value = pr_memcache_value_ref(v);
            size_t b = bucket(c, key);
            e->hnext = c->buckets[b];
            c->buckets[b] = e;
            lru_push_front(c, e);
            c->bytes += v->len;
            c->count++;
            if (c->count > c->nbuckets) grow(c);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

void pr_memcache_demote(PrMemCache *c, const uint8_t key[32]) {
    pthread_mutex_lock(&c->lock);
    Entry *e = find(c, key);
    if (e && e != c->tail) {
        lru_unlink(c, e);
        e->prev = c->tail;
        c->tail->next = e;
        c->tail = e;
    }
    pthread_mutex_unlock(&c->lock);
}

void pr_memcache_usage(PrMemCache *c, size_t *ret_bytes, size_t *ret_count) {
    pthread_mutex_lock(&c->lock);
    if (ret_bytes) *ret_bytes = c->bytes;
    if (ret_count) *ret_count = c->count;
    pthread_mutex_unlock(&c->lock);
}
