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
 *    it (one ranged GET); the neighbours are decoded and cached too. A reader going through a pack's
 *    small blobs in order gets the next window prefetched (see pr_fetcher_hit). A large blob is
 *    fetched in one GET with the blobs after it in its pack that are queued (read-ahead): a run.
 *  - Fetched blobs go to the disk cache through one writer thread and a bounded queue; when the
 *    disk is behind, entries are dropped rather than slowing the fetch down.
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
    unsigned max_background; /* queued read-aheads; 0: 64 */
    size_t run;          /* most bytes one GET of consecutive blobs spans; 0: 8 MiB; 1: one blob a GET */
    size_t disk_queue;   /* bytes waiting for the disk-cache writer before entries are dropped; 0: 16 MiB */
    bool preload_index;  /* load the index as the threads start, before any request needs it */
    size_t warm_heap;    /* after the preload, heap bytes the same thread touches once (0: none) */
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
/* Read-ahead of several blobs at once (no waiters, background), queued under one lock so that
 * consecutive blobs of a pack are fetched together. Stops when the background queue is full. */
int pr_fetcher_want_many(PrFetcher *f, const PrId *ids, size_t n);
/* Read-ahead of the blobs a reader will want next, in the order it will want them (a walk of the
 * files after the one it reads: cp -a, tar). Located in the index, grouped by pack into GETs of at
 * most 2 MiB spanning gaps of up to 256 KiB, queued in the background in the reader's order:
 * one GET per group wherever the blobs lie, instead of a window per pack the reader enters. Blobs
 * cached, in flight or not indexed are left out; a plan beyond 4096 waiting blobs is cut. keep[i]
 * (keep may be NULL): blob i goes to the disk cache when fetched, as the blobs reads wait for. */
int pr_fetcher_plan(PrFetcher *f, const PrId *ids, const bool *keep, size_t n);
/* A reader got value v from the memory cache: if the fetcher marked it (v->hint: a blob of a window
 * fetched ahead), starts the prefetch of the next window, once per window. Cheap when not marked. */
void pr_fetcher_hit(PrFetcher *f, PrCacheValue *v);
/* The decoded blob, waiting for it: from the memory cache, else fetched by this thread (or by the
 * fetch already in flight). *ret is a new reference. */
int pr_fetcher_get_sync(PrFetcher *f, const PrId *id, PrCacheValue **ret);
/* True once anything asked the repository's index (so a refresh knows to reload it). */
bool pr_fetcher_index_used(PrFetcher *f);

typedef struct PrFetcherStats {
    uint64_t plan_gets, store_gets, store_bytes, window_gets, run_gets, prefetches, disk_hits, disk_bad, errors, shared,
        disk_writes, disk_dropped;
} PrFetcherStats;
void pr_fetcher_stats(PrFetcher *f, PrFetcherStats *ret);
