/* SPDX-License-Identifier: MIT */
/* Blob fetching for the mount: a small pool of threads that bring decoded blobs into the memory
 * cache, so that FUSE workers never wait on the network for file data.
 *
 *  - One fetch per blob at a time: a request for a blob already queued or being fetched attaches to
 *    that fetch (the in-flight table); every waiter gets the same result.
 *  - Two queues: urgent (a read or lookup is waiting) before background (read-ahead). A read-ahead
 *    request is dropped when the background queue is full.
 *  - Sources in order: memory cache, disk cache (stored form, verified by the decode: a bad entry is
 *    deleted and fetched again), the store. A small blob is fetched with a window of its pack around
 *    it (one ranged GET); the neighbours are decoded and cached too.
 *  - Failures are not remembered: the next request tries again. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "backend/repo.h"
#include "cache/diskcache.h"
#include "cache/memcache.h"

typedef struct PrFetcher PrFetcher;
typedef struct PrFetchWaiter PrFetchWaiter;

/* Called once per waiter, from the thread that completed the fetch (no lock held). err is 0 and v a
 * borrowed value (take a reference to keep it), or err < 0 and v NULL. */
typedef void (*PrFetchFn)(PrFetchWaiter *w, int err, PrCacheValue *v);
struct PrFetchWaiter {
    PrFetchFn fn;
    PrFetchWaiter *next; /* the fetcher's */
};

typedef struct PrFetcherOptions {
    unsigned threads;    /* 0: 4 */
    size_t small_blob;   /* stored length up to which a miss fetches a window; 0: 256 KiB */
    size_t window;       /* bytes of pack fetched around a small blob; 0: 4 MiB; 1: no window */
    unsigned max_background; /* queued read-aheads; 0: 32 */
} PrFetcherOptions;

/* repo, mc and dc (may be NULL: no disk cache) are borrowed and must outlive the fetcher. */
int pr_fetcher_new(PrRepo *repo, PrMemCache *mc, PrDiskCache *dc, const PrFetcherOptions *o, PrFetcher **ret);
/* Starts the threads (after a fork, so that they live in the daemon). */
int pr_fetcher_start(PrFetcher *f);
/* Stops taking requests, lets the threads finish their current fetch, joins them, and completes the
 * waiters of every fetch never started with -ESHUTDOWN. */
void pr_fetcher_stop(PrFetcher *f);
/* Stops if needed, then frees. NULL-safe. */
void pr_fetcher_free(PrFetcher *f);

/* Asks for blob id. With a waiter: w->fn is called exactly once, later (possibly before this returns,
 * from this thread, never with a lock held) and 0 is returned; or an error is returned (-ESHUTDOWN,
 * -ENOMEM) and w->fn is never called. Without a waiter (read-ahead): fetches it into the caches
 * unless cached, in flight or the background queue is full. urgent moves an already queued fetch
 * ahead. */
int pr_fetcher_want(PrFetcher *f, const PrId *id, bool urgent, PrFetchWaiter *w);
/* The decoded blob, waiting for it: from the memory cache, else fetched by this thread (or by the
 * fetch already in flight). *ret is a new reference. */
int pr_fetcher_get_sync(PrFetcher *f, const PrId *id, PrCacheValue **ret);
/* True once anything asked the repository's index (so a refresh knows to reload it). */
bool pr_fetcher_index_used(PrFetcher *f);

typedef struct PrFetcherStats {
    uint64_t store_gets, store_bytes, window_gets, disk_hits, disk_bad, errors, shared;
} PrFetcherStats;
void pr_fetcher_stats(PrFetcher *f, PrFetcherStats *ret);
