/* SPDX-License-Identifier: MIT */
#include "fs/fetch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cache/util.h"

#define NBUCKETS 256

typedef struct Job {
    PrId id;
    bool urgent, running, queued;
    PrFetchWaiter *waiters;
    struct Job *hnext;         /* in-flight table chain */
    struct Job *qprev, *qnext; /* queue links while queued */
} Job;

typedef struct Queue {
    Job *head, *tail;
    size_t n;
} Queue;

struct PrFetcher {
    PrRepo *repo;
    PrMemCache *mc;
    PrDiskCache *dc;
    PrFetcherOptions o;

    pthread_mutex_t lock;
    pthread_cond_t work;
    Job *table[NBUCKETS];
    Queue urgent, background;
    bool stopping;
    pthread_t *threads;
    unsigned nthreads; /* started */

    atomic_bool index_used;
    atomic_uint_fast64_t store_gets, store_bytes, window_gets, disk_hits, disk_bad, errors, shared;
};

static size_t bucket(const PrId *id) {
    uint32_t h;
    memcpy(&h, id->b, sizeof h);
    return h % NBUCKETS;
}

static Job *table_find(PrFetcher *f, const PrId *id) {
    for (Job *j = f->table[bucket(id)]; j; j = j->hnext)
        if (memcmp(j->id.b, id->b, PR_ID_LEN) == 0) return j;
    return NULL;
}

static void table_remove(PrFetcher *f, Job *j) {
    Job **pp = &f->table[bucket(&j->id)];
    while (*pp && *pp != j) pp = &(*pp)->hnext;
    if (*pp) *pp = j->hnext;
}

static void queue_push(Queue *q, Job *j) {
    j->qnext = NULL;
    j->qprev = q->tail;
    if (q->tail) q->tail->qnext = j;
    else q->head = j;
    q->tail = j;
    q->n++;
    j->queued = true;
}

static void queue_remove(Queue *q, Job *j) {
    if (j->qprev) j->qprev->qnext = j->qnext;
    else q->head = j->qnext;
    if (j->qnext) j->qnext->qprev = j->qprev;
    else q->tail = j->qprev;
    j->qprev = j->qnext = NULL;
    q->n--;
    j->queued = false;
}

static Queue *queue_of(PrFetcher *f, Job *j) { return j->urgent ? &f->urgent : &f->background; }

/* ---- fetching one blob ---- */

static int decode_value(PrFetcher *f, const PrId *id, const void *stored, size_t len, uint32_t raw_len,
                        PrCacheValue **ret) {
    PrCacheValue *v = pr_memcache_value_new(raw_len);
    if (!v) return -ENOMEM;
    int r = pr_blob_decode_into(pr_repo_keys(f->repo), id, stored, len, raw_len, v->data);
    if (r < 0) {
        pr_memcache_value_unref(v);
        return r;
    }
    *ret = v;
    return 0;
}

static void log_damaged(const PrId *id, const PrBlobLoc *loc, int r) {
    char hex[65], key[PR_PACK_KEY_MAX];
    pr_hex(id->b, PR_ID_LEN, hex);
    pr_pack_key(&loc->pack, key);
    pr_log_errno(r, "%s is damaged: blob %.16s at offset %u does not decode", key, hex, loc->ref.offset);
}

static int fetch_single(PrFetcher *f, const PrId *id, const PrBlobLoc *loc, PrCacheValue **ret) {
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&loc->pack, key);
    _cleanup_free_ void *stored = NULL;
    size_t slen = 0;
    atomic_fetch_add(&f->store_gets, 1);
    int r = pr_store_get(pr_repo_store(f->repo), key, loc->ref.offset, loc->ref.length, &stored, &slen);
    if (r < 0) return pr_log_errno(r, "cannot read %s (offset %u, %u bytes)", key, loc->ref.offset, loc->ref.length);
    atomic_fetch_add(&f->store_bytes, slen);
    if (slen != loc->ref.length) {
        pr_log(PR_LOG_ERR, "%s is truncated: blob at offset %u needs %u bytes, got %zu", key, loc->ref.offset,
               loc->ref.length, slen);
        return -EBADMSG;
    }
    PrCacheValue *v = NULL;
    r = decode_value(f, id, stored, slen, loc->ref.raw_length, &v);
    if (r < 0) {
        if (r != -ENOMEM) log_damaged(id, loc, r);
        return r;
    }
    if (f->dc) (void)pr_diskcache_put(f->dc, id->b, stored, slen);
    pr_memcache_put(f->mc, id->b, v);
    *ret = v;
    return 0;
}

static bool cached(PrFetcher *f, const PrId *id) {
    PrCacheValue *v = pr_memcache_get(f->mc, id->b);
    pr_memcache_value_unref(v);
    return v != NULL;
}

/* One GET of the stretch of the pack around a small blob; every blob in it is decoded and cached. */
static int fetch_window(PrFetcher *f, const PrId *id, const PrBlobLoc *loc, PrCacheValue **ret) {
    _cleanup_free_ PrBlobRef *refs = NULL;
    uint32_t n = 0;
    if (pr_repo_pack_blobs(f->repo, &loc->pack, &refs, &n) < 0) return fetch_single(f, id, loc, ret);
    uint32_t lo = 0, hi = n, t = n;
    while (lo < hi) { /* sorted by offset */
        uint32_t mid = lo + (hi - lo) / 2;
        if (refs[mid].offset == loc->ref.offset) {
            t = mid;
            break;
        }
        if (refs[mid].offset < loc->ref.offset) lo = mid + 1;
        else hi = mid;
    }
    if (t == n || memcmp(refs[t].id.b, id->b, PR_ID_LEN) != 0) return fetch_single(f, id, loc, ret);
    /* grow both ways while the stored span and the decoded total stay within the window (blobs that
     * compress well are small stored but not decoded: the decoded bound keeps memory in check) */
    uint64_t start = refs[t].offset, end = start + refs[t].length, raw = refs[t].raw_length;
    lo = hi = t;
    bool up = true, down = true; /* a side stops at a big blob, at the bound, or at a cached blob */
    while (up || down) {
        if (up) {
            up = hi + 1 < n && refs[hi + 1].length <= f->o.small_blob && raw + refs[hi + 1].raw_length <= f->o.window &&
                 MAX(end, (uint64_t)refs[hi + 1].offset + refs[hi + 1].length) - start <= f->o.window &&
                 !cached(f, &refs[hi + 1].id);
            if (up) {
                hi++;
                end = MAX(end, (uint64_t)refs[hi].offset + refs[hi].length);
                raw += refs[hi].raw_length;
            }
        }
        if (down) {
            down = lo > 0 && refs[lo - 1].length <= f->o.small_blob && raw + refs[lo - 1].raw_length <= f->o.window &&
                   end - refs[lo - 1].offset <= f->o.window && !cached(f, &refs[lo - 1].id);
            if (down) {
                lo--;
                start = MIN(start, (uint64_t)refs[lo].offset);
                raw += refs[lo].raw_length;
            }
        }
    }
    if (lo == hi) return fetch_single(f, id, loc, ret);

    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&loc->pack, key);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t got = 0;
    atomic_fetch_add(&f->store_gets, 1);
    atomic_fetch_add(&f->window_gets, 1);
    int r = pr_store_get(pr_repo_store(f->repo), key, start, (size_t)(end - start), (void **)&buf, &got);
    if (r < 0) return pr_log_errno(r, "cannot read %s (offset %llu, %llu bytes)", key, (unsigned long long)start,
                                   (unsigned long long)(end - start));
    atomic_fetch_add(&f->store_bytes, got);
    PrCacheValue *result = NULL;
    int result_err = -EBADMSG;
    for (uint32_t i = lo; i <= hi; i++) {
        const PrBlobRef *b = &refs[i];
        uint64_t off = b->offset - start;
        if (off + b->length > got) { /* a short pack: only what arrived */
            if (i == t)
                pr_log(PR_LOG_ERR, "%s is truncated: blob at offset %u needs %u bytes", key, b->offset, b->length);
            continue;
        }
        if (i != t && cached(f, &b->id)) continue;
        PrCacheValue *v = NULL;
        r = decode_value(f, &b->id, buf + off, b->length, b->raw_length, &v);
        if (r < 0) {
            if (i == t) {
                result_err = r;
                if (r != -ENOMEM) log_damaged(id, loc, r);
            } else {
                char hex[65];
                pr_hex(b->id.b, PR_ID_LEN, hex);
                pr_debug("%s: neighbour blob %.16s does not decode (%d); skipped", key, hex, r);
            }
            continue;
        }
        if (f->dc) (void)pr_diskcache_put(f->dc, b->id.b, buf + off, b->length);
        pr_memcache_put(f->mc, b->id.b, v);
        if (i == t) result = v;
        else pr_memcache_value_unref(v);
    }
    if (!result) return result_err;
    *ret = result;
    return 0;
}

static int fetch_blob(PrFetcher *f, const PrId *id, PrCacheValue **ret) {
    PrCacheValue *v = pr_memcache_get(f->mc, id->b);
    if (v) {
        *ret = v;
        return 0;
    }
    atomic_store(&f->index_used, true);
    PrBlobLoc loc;
    int r = pr_repo_find_blob(f->repo, id, &loc);
    if (r < 0) {
        char hex[65];
        pr_hex(id->b, PR_ID_LEN, hex);
        if (r == -ENOENT) {
            pr_log(PR_LOG_ERR, "blob %s is not in the index of %s", hex, pr_repo_store(f->repo)->location);
            return -EIO;
        }
        return pr_log_errno(r, "cannot look up blob %.16s in the index", hex);
    }
    if (f->dc) {
        _cleanup_free_ void *stored = NULL;
        size_t slen = 0;
        r = pr_diskcache_get(f->dc, id->b, loc.ref.length, &stored, &slen);
        if (r >= 0) {
            r = slen == loc.ref.length ? decode_value(f, id, stored, slen, loc.ref.raw_length, &v) : -EBADMSG;
            if (r >= 0) {
                atomic_fetch_add(&f->disk_hits, 1);
                pr_memcache_put(f->mc, id->b, v);
                *ret = v;
                return 0;
            }
            if (r == -ENOMEM) return r;
            /* torn write, bit rot, another repository's key: drop it and fetch again */
            atomic_fetch_add(&f->disk_bad, 1);
            char hex[65];
            pr_hex(id->b, PR_ID_LEN, hex);
            pr_log(PR_LOG_WARN, "disk cache entry %.16s does not verify; fetching it again", hex);
            (void)pr_diskcache_remove(f->dc, id->b);
        }
    }
    if (f->o.window > 1 && loc.ref.length <= f->o.small_blob) return fetch_window(f, id, &loc, ret);
    return fetch_single(f, id, &loc, ret);
}

/* Runs job j (marked running, in the table) in this thread and completes its waiters. */
static void run_job(PrFetcher *f, Job *j) {
    PrCacheValue *v = NULL;
    double t0 = pr_now();
    int r = fetch_blob(f, &j->id, &v);
    if (pr_log_get_level() >= PR_LOG_DEBUG) {
        char hex[65];
        pr_hex(j->id.b, PR_ID_LEN, hex);
        pr_debug("fetch %.16s%s: %s in %.1f ms", hex, j->urgent ? " (urgent)" : "", r < 0 ? strerror(-r) : "ok",
                 (pr_now() - t0) * 1e3);
    }
    if (r < 0) atomic_fetch_add(&f->errors, 1);
    pthread_mutex_lock(&f->lock);
    table_remove(f, j);
    PrFetchWaiter *w = j->waiters;
    j->waiters = NULL;
    pthread_mutex_unlock(&f->lock);
    while (w) {
        PrFetchWaiter *next = w->next;
        w->fn(w, r, r < 0 ? NULL : v);
        w = next;
    }
    pr_memcache_value_unref(v);
    free(j);
}

static void *worker(void *arg) {
    PrFetcher *f = arg;
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->stopping && !f->urgent.head && !f->background.head) pthread_cond_wait(&f->work, &f->lock);
        if (f->stopping) break;
        Job *j = f->urgent.head ? f->urgent.head : f->background.head;
        queue_remove(queue_of(f, j), j);
        j->running = true;
        pthread_mutex_unlock(&f->lock);
        run_job(f, j);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- the interface ---- */

int pr_fetcher_new(PrRepo *repo, PrMemCache *mc, PrDiskCache *dc, const PrFetcherOptions *o, PrFetcher **ret) {
    PrFetcher *f = calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->repo = repo;
    f->mc = mc;
    f->dc = dc;
    if (o) f->o = *o;
    if (!f->o.threads) f->o.threads = 4;
    if (!f->o.small_blob) f->o.small_blob = 256u << 10;
    if (!f->o.window) f->o.window = 4u << 20;
    if (!f->o.max_background) f->o.max_background = 32;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->work, NULL);
    *ret = f;
    return 0;
}

int pr_fetcher_start(PrFetcher *f) {
    f->threads = calloc(f->o.threads, sizeof *f->threads);
    if (!f->threads) return -ENOMEM;
    for (unsigned i = 0; i < f->o.threads; i++) {
        int r = pthread_create(&f->threads[i], NULL, worker, f);
        if (r != 0) {
            if (f->nthreads) return 0; /* fewer threads: still works */
            return -r;
        }
        f->nthreads++;
    }
    return 0;
}

void pr_fetcher_stop(PrFetcher *f) {
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_broadcast(&f->work);
    pthread_mutex_unlock(&f->lock);
    for (unsigned i = 0; i < f->nthreads; i++) pthread_join(f->threads[i], NULL);
    f->nthreads = 0;
    /* fetches never started: their waiters get an answer */
    for (;;) {
        pthread_mutex_lock(&f->lock);
        Job *j = f->urgent.head ? f->urgent.head : f->background.head;
        if (j) {
            queue_remove(queue_of(f, j), j);
            table_remove(f, j);
        }
        pthread_mutex_unlock(&f->lock);
        if (!j) break;
        for (PrFetchWaiter *w = j->waiters, *next; w; w = next) {
            next = w->next;
            w->fn(w, -ESHUTDOWN, NULL);
        }
        free(j);
    }
}

void pr_fetcher_free(PrFetcher *f) {
    if (!f) return;
    pr_fetcher_stop(f);
    free(f->threads);
    pthread_cond_destroy(&f->work);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

int pr_fetcher_want(PrFetcher *f, const PrId *id, bool urgent, PrFetchWaiter *w) {
    if (!w) {
        PrCacheValue *v = pr_memcache_get(f->mc, id->b);
        if (v) {
            pr_memcache_value_unref(v);
            return 0;
        }
    }
    pthread_mutex_lock(&f->lock);
    if (f->stopping) {
        pthread_mutex_unlock(&f->lock);
        return -ESHUTDOWN;
    }
    Job *j = table_find(f, id);
    if (j) {
        if (w) {
            atomic_fetch_add(&f->shared, 1);
            w->next = j->waiters;
            j->waiters = w;
        }
        if (urgent && j->queued && !j->urgent) {
            queue_remove(&f->background, j);
            j->urgent = true;
            queue_push(&f->urgent, j);
        }
        pthread_mutex_unlock(&f->lock);
        return 0;
    }
    if (!w && !urgent && f->background.n >= f->o.max_background) {
        pthread_mutex_unlock(&f->lock);
        return 0; /* read-ahead is a hint */
    }
    j = calloc(1, sizeof *j);
    if (!j) {
        pthread_mutex_unlock(&f->lock);
        return -ENOMEM;
    }
    j->id = *id;
    j->urgent = urgent;
    if (w) {
        w->next = NULL;
        j->waiters = w;
    }
    size_t b = bucket(id);
    j->hnext = f->table[b];
    f->table[b] = j;
    queue_push(queue_of(f, j), j);
    pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

typedef struct SyncWaiter {
    PrFetchWaiter w; /* first */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int err;
    PrCacheValue *v;
} SyncWaiter;

static void sync_done(PrFetchWaiter *w, int err, PrCacheValue *v) {
    SyncWaiter *s = (SyncWaiter *)w;
    pthread_mutex_lock(&s->lock);
    s->err = err;
    s->v = pr_memcache_value_ref(v);
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int pr_fetcher_get_sync(PrFetcher *f, const PrId *id, PrCacheValue **ret) {
    PrCacheValue *v = pr_memcache_get(f->mc, id->b);
    if (v) {
        *ret = v;
        return 0;
    }
    SyncWaiter s = {.w.fn = sync_done};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    Job *mine = NULL;
    int r = 0;
    pthread_mutex_lock(&f->lock);
    Job *j = table_find(f, id);
    if (j && j->running) { /* someone is on it: wait for them */
        atomic_fetch_add(&f->shared, 1);
        s.w.next = j->waiters;
        j->waiters = &s.w;
    } else if (j) { /* queued: take it over rather than wait for a thread */
        queue_remove(queue_of(f, j), j);
        j->running = true;
        s.w.next = j->waiters;
        j->waiters = &s.w;
        mine = j;
    } else if ((mine = calloc(1, sizeof *mine))) {
        mine->id = *id;
        mine->running = true;
        mine->waiters = &s.w;
        size_t b = bucket(id);
        mine->hnext = f->table[b];
        f->table[b] = mine;
    } else {
        r = -ENOMEM;
    }
    pthread_mutex_unlock(&f->lock);
    if (r >= 0) {
        if (mine) run_job(f, mine); /* completes s too */
        pthread_mutex_lock(&s.lock);
        while (!s.done) pthread_cond_wait(&s.cond, &s.lock);
        pthread_mutex_unlock(&s.lock);
        r = s.err;
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    if (r < 0) return r;
    *ret = s.v;
    return 0;
}

bool pr_fetcher_index_used(PrFetcher *f) { return atomic_load(&f->index_used); }

void pr_fetcher_stats(PrFetcher *f, PrFetcherStats *ret) {
    *ret = (PrFetcherStats){
        .store_gets = atomic_load(&f->store_gets),
        .store_bytes = atomic_load(&f->store_bytes),
        .window_gets = atomic_load(&f->window_gets),
        .disk_hits = atomic_load(&f->disk_hits),
        .disk_bad = atomic_load(&f->disk_bad),
        .errors = atomic_load(&f->errors),
        .shared = atomic_load(&f->shared),
    };
}
