/* SPDX-License-Identifier: MIT */
#include "fs/fetch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cache/util.h"

#define NBUCKETS 256
#define NTRIGGERS 64       /* prefetch triggers remembered (one per prefetched window) */
#define RUN_GAP (64u << 10) /* bytes between two blobs of a run that are fetched and thrown away */
#define PLAN_GAP (256u << 10) /* the same between two blobs of a planned group */
#define PLAN_JOBS_MAX 4096    /* planned blobs waiting at most (a plan is dropped beyond) */
/* bytes of a planned GET at most. The reader waits for a whole GET (an 8 MiB GET took 220-300 ms on
 * a loaded machine, 2 MiB ~40), but a plan is asked for well ahead of the reader, and each GET costs
 * the server: with 8 MiB instead of 2, a `cp -a` of 100,000 files took 3 s less of the S3 server's
 * CPU (on the same 2 vCPUs as the copy) and 18.3 s instead of 20.6 (medians of 13 interleaved pairs);
 * a copy of one directory of 100 files took the same 40-60 ms. */
#define PLAN_GROUP_MAX (8u << 20)

typedef struct Job {
    PrId id;
    bool urgent, running, queued;
    PrFetchWaiter *waiters;
    struct Job *hnext;         /* in-flight table chain */
    struct Job *qprev, *qnext; /* queue links while queued */
    struct Job *rnext;         /* taken into another job's GET (a run) */
    uint32_t ri;               /* ... as that pack's blob ri */
    /* planned blobs (pr_fetcher_plan) come in groups, one GET each: the first is queued (the
     * leader), the others follow it (gnext, in pack order), marked running, and point at it */
    bool planned;
    bool keep;                 /* planned: goes to the disk cache even if nobody waited for it */
    PrBlobLoc loc;             /* planned: where the blob is */
    struct Job *leader;        /* a follower's leader */
    struct Job *gnext;
} Job;

/* A GET body, shared by the disk-cache entries cut from it until the writer is done with them. */
typedef struct SharedBuf {
    atomic_uint refs;
    uint8_t *data;
} SharedBuf;

typedef struct DiskItem {
    struct DiskItem *next;
    PrId id;
    SharedBuf *buf;
    size_t off, len;
} DiskItem;

/* When the reader reaches a window fetched ahead of it (a read finds one of its blobs in the memory
 * cache, marked with the trigger's seq as hint), the window starting at blob `next` of the same pack
 * is fetched in the background. */
typedef struct Trigger {
    PrId next;
    unsigned seq; /* 0: unused */
} Trigger;

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
    Trigger triggers[NTRIGGERS]; /* under lock; by seq % NTRIGGERS */
    unsigned trigger_seq;

    /* the disk-cache writer: fetch threads queue what they fetched, one thread writes it */
    pthread_mutex_t dlock;
    pthread_mutex_t reload_lock;       /* refetch_moved: one index reload at a time */
    atomic_uint index_gen;             /* index reloads done by refetch_moved */
    pthread_cond_t dwork;
    DiskItem *dhead, *dtail;
    size_t dbytes;
    bool dstop, dstarted;
    pthread_t dthread;

    size_t planned; /* planned jobs in the table; under lock */

    atomic_bool index_used;
    atomic_bool preload; /* the index is still to be loaded ahead of the first request */
    atomic_bool reading; /* file data was asked for: a read began (ends warm_heap) */
    atomic_uint_fast64_t plan_gets, store_gets, store_bytes, window_gets, run_gets, prefetches, disk_hits, disk_bad, errors,
        shared, disk_writes, disk_dropped;
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

static void table_insert(PrFetcher *f, Job *j) {
    size_t b = bucket(&j->id);
    j->hnext = f->table[b];
    f->table[b] = j;
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

/* Somebody waits for j: if it is queued in the background (itself, or the group it follows), it goes
 * to the urgent queue. Under lock. */
static void promote(PrFetcher *f, Job *j) {
    Job *q = j->leader ? j->leader : j;
    if (q->queued && !q->urgent) {
        queue_remove(&f->background, q);
        q->urgent = true;
        queue_push(&f->urgent, q);
    }
}

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

static SharedBuf *sb_new(uint8_t *data) {
    SharedBuf *b = malloc(sizeof *b);
    if (!b) return NULL;
    atomic_init(&b->refs, 1);
    b->data = data;
    return b;
}

static void sb_unref(SharedBuf *b) {
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    free(b->data);
    free(b);
}

/* Hands stored bytes to the disk-cache writer. Never blocks on the disk: when the writer is behind by
 * more than disk_queue bytes the entry is dropped (it is a cache; the next miss fetches again). */
static void disk_put(PrFetcher *f, const PrId *id, SharedBuf *b, size_t off, size_t len) {
    if (!f->dc) return;
    pthread_mutex_lock(&f->dlock);
    if (!f->dstarted || f->dstop) { /* no writer thread (not started, or stopping): write here */
        pthread_mutex_unlock(&f->dlock);
        atomic_fetch_add(&f->disk_writes, 1);
        (void)pr_diskcache_put(f->dc, id->b, b->data + off, len);
        return;
    }
    DiskItem *it = f->dbytes + len <= f->o.disk_queue ? malloc(sizeof *it) : NULL;
    if (!it) {
        pthread_mutex_unlock(&f->dlock);
        atomic_fetch_add(&f->disk_dropped, 1);
        return;
    }
    *it = (DiskItem){.id = *id, .buf = b, .off = off, .len = len};
    atomic_fetch_add(&b->refs, 1);
    if (f->dtail) f->dtail->next = it;
    else f->dhead = it;
    f->dtail = it;
    f->dbytes += len;
    pthread_cond_signal(&f->dwork);
    pthread_mutex_unlock(&f->dlock);
}

static void *disk_writer(void *arg) {
    PrFetcher *f = arg;
    /* Lowest CPU priority (Linux: per thread): on a busy machine the readers and fetch threads go
     * first, and what the writer cannot keep up with is dropped from its queue. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
    pthread_mutex_lock(&f->dlock);
    for (;;) {
        while (!f->dstop && !f->dhead) pthread_cond_wait(&f->dwork, &f->dlock);
        DiskItem *it = f->dhead;
        if (!it) break; /* stopping, and everything queued is written */
        f->dhead = it->next;
        if (!f->dhead) f->dtail = NULL;
        pthread_mutex_unlock(&f->dlock);
        (void)pr_diskcache_put(f->dc, it->id.b, it->buf->data + it->off, it->len);
        atomic_fetch_add(&f->disk_writes, 1);
        pthread_mutex_lock(&f->dlock);
        f->dbytes -= it->len; /* counted until written: the buffer is held until then */
        sb_unref(it->buf);
        free(it);
    }
    pthread_mutex_unlock(&f->dlock);
    return NULL;
}

static int fetch_blob(PrFetcher *f, const PrId *id, bool urgent, PrCacheValue **ret);

/* A pack that is not there (-ENOENT: 404, or no file) was removed since the index was read: a prune
 * repacked the blobs still used into new packs, published an index naming those, deleted the old
 * index files and only then the packs. So the index is read again (once for every fetch that failed
 * so at the same time: not when another thread read it after this failure was seen) and the blob
 * fetched from where it is now. A mount outlives prunes (an auditor's, a nightly forget --prune):
 * without this its reads failed with EIO until it was mounted again. Once per fetch (a retry that
 * fails the same way is final, and logged here). */
static _Thread_local bool refetching;

/* The final word on a blob whose pack is not in the store, with the pack's name. */
static void log_pack_gone(PrFetcher *f, const PrId *id) {
    char hex[65], key[PR_PACK_KEY_MAX] = "?";
    PrBlobLoc loc;
    pr_hex(id->b, PR_ID_LEN, hex);
    if (pr_repo_find_blob(f->repo, id, &loc) >= 0) pr_pack_key(&loc.pack, key);
    pr_log(PR_LOG_ERR, "cannot read blob %.16s: %s is not in %s, and the index read again names no other pack", hex, key,
           pr_repo_store(f->repo)->location);
}

static int refetch_moved(PrFetcher *f, const PrId *id, bool urgent, PrCacheValue **ret) {
    unsigned gen = atomic_load(&f->index_gen);
    pthread_mutex_lock(&f->reload_lock);
    int r = 0;
    if (atomic_load(&f->index_gen) == gen) {
        r = pr_repo_load_index(f->repo, true);
        if (r >= 0) {
            atomic_fetch_add(&f->index_gen, 1);
            pr_log(PR_LOG_INFO, "a pack is no longer in %s (a prune may have repacked its blobs): index read again",
                   pr_repo_store(f->repo)->location);
        }
    }
    pthread_mutex_unlock(&f->reload_lock);
    if (r < 0) {
        char hex[65];
        pr_hex(id->b, PR_ID_LEN, hex);
        return pr_log_errno(r, "blob %.16s: its pack is gone, and the index cannot be read again", hex);
    }
    refetching = true;
    r = fetch_blob(f, id, urgent, ret);
    refetching = false;
    if (r == -ENOENT) log_pack_gone(f, id);
    return r;
}

/* Answers every waiter of job j (taken off the queue, marked running) and frees it. */
static void complete_job(PrFetcher *f, Job *j, int r, PrCacheValue *v) {
    PrCacheValue *again = NULL;
    bool wanted = false;
    if (r == -ENOENT) {
        pthread_mutex_lock(&f->lock);
        wanted = !f->stopping && (j->waiters || j->keep);
        pthread_mutex_unlock(&f->lock);
    }
    if (wanted && !refetching) {
        r = refetch_moved(f, &j->id, j->urgent, &again);
        v = again;
    } else if (wanted) {
        log_pack_gone(f, &j->id); /* a blob brought along by a retry: the index was read again already */
    }
    if (r < 0) atomic_fetch_add(&f->errors, 1);
    pthread_mutex_lock(&f->lock);
    table_remove(f, j);
    if (j->planned) f->planned--;
    PrFetchWaiter *w = j->waiters;
    j->waiters = NULL;
    pthread_mutex_unlock(&f->lock);
    while (w) {
        PrFetchWaiter *next = w->next;
        w->fn(w, r, r < 0 ? NULL : v);
        w = next;
    }
    pr_memcache_value_unref(again);
    free(j);
}

/* Index of the blob at loc in refs (sorted by offset), or n. */
static uint32_t find_ref(const PrBlobRef *refs, uint32_t n, const PrId *id, const PrBlobLoc *loc) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (refs[mid].offset == loc->ref.offset) return memcmp(refs[mid].id.b, id->b, PR_ID_LEN) == 0 ? mid : n;
        if (refs[mid].offset < loc->ref.offset) lo = mid + 1;
        else hi = mid;
    }
    return n;
}

/* One ranged GET of pack `key`, counted; the body in a shared buffer (*ret_b, its length *ret_got).
 * A failure is logged with the pack's key and the range. */
static int get_range(PrFetcher *f, const char *key, uint64_t start, uint64_t end, SharedBuf **ret_b, size_t *ret_got) {
    uint8_t *data = NULL;
    size_t got = 0;
    atomic_fetch_add(&f->store_gets, 1);
    int r = pr_store_get(pr_repo_store(f->repo), key, start, (size_t)(end - start), (void **)&data, &got);
    if (r == -ENOENT) { /* removed by a prune: see refetch_moved, which says so if it matters */
        pr_debug("%s is gone", key);
        return r;
    }
    if (r < 0)
        return pr_log_errno(r, "cannot read %s (offset %llu, %llu bytes)", key, (unsigned long long)start,
                            (unsigned long long)(end - start));
    atomic_fetch_add(&f->store_bytes, got);
    SharedBuf *b = sb_new(data);
    if (!b) {
        free(data);
        return -ENOMEM;
    }
    *ret_b = b;
    *ret_got = got;
    return 0;
}

/* Decodes one stored blob of a GET body and caches it: in memory, and on disk (through the writer)
 * when `asked` (a blob somebody asked for, not a neighbour brought along in its window). A short
 * body or a blob that does not decode is -EBADMSG, logged with the pack's key when asked or `wanted`
 * (planned for a reader: it is about to need it), else only skipped. */
static int take_blob(PrFetcher *f, const PrId *id, const char *key, SharedBuf *b, size_t got, uint64_t off,
                     const PrBlobRef *ref, bool asked, bool wanted, PrCacheValue **ret) {
    if (off + ref->length > got) {
        if (asked || wanted)
            pr_log_blob_truncated(key, ref->offset, ref->length);
        return -EBADMSG;
    }
    PrCacheValue *v = NULL;
    int r = decode_value(f, id, b->data + off, ref->length, ref->raw_length, &v);
    if (r < 0) {
        if ((asked || wanted) && r != -ENOMEM) pr_log_blob_damaged(key, id, ref->offset, r);
        return r;
    }
    /* The disk cache keeps what was asked for: every chunk of a file read (large files' chunks come
     * singly or in runs, all asked for), not the neighbours a window brings along. Those come back a
     * window per GET; writing each to a cache file of its own cost more than that (cp -a of 10,000
     * small files: 10,857 cache files created, on a core the copy needs; a cold find of 100,000
     * entries: 1,013 tree files, a quarter of its time). A neighbour read later is a memory hit. */
    if (asked) disk_put(f, id, b, (size_t)off, ref->length);
    pr_memcache_put(f->mc, id->b, v);
    *ret = v;
    return 0;
}

/* One GET for the blob at loc and the blobs right after it in its pack that are queued for fetching
 * (a sequential reader's read-ahead: the chunks of a large file follow each other in its packs), up
 * to o.run bytes: a few multi-MiB requests instead of one per chunk, less work for the server. The
 * jobs taken along are answered here; the blob asked for is returned. */
static int fetch_run(PrFetcher *f, const PrId *id, const PrBlobLoc *loc, PrCacheValue **ret) {
    _cleanup_free_ PrBlobRef *refs = NULL;
    uint32_t n = 0;
    Job *taken = NULL, **tail = &taken;
    uint64_t start = loc->ref.offset, end = start + loc->ref.length;
    if (f->o.run > loc->ref.length && pr_repo_pack_blobs(f->repo, &loc->pack, &refs, &n) >= 0) {
        uint32_t t = find_ref(refs, n, id, loc);
        pthread_mutex_lock(&f->lock);
        for (uint32_t i = t + 1; i < n && !f->stopping; i++) {
            const PrBlobRef *b = &refs[i];
            if (b->offset < end || b->offset - end > RUN_GAP || (uint64_t)b->offset + b->length - start > f->o.run) break;
            Job *k = table_find(f, &b->id);
            if (!k || !k->queued || k->planned) break; /* a planned leader brings its group */
            queue_remove(queue_of(f, k), k);
            k->running = true;
            k->ri = i;
            k->rnext = NULL;
            *tail = k;
            tail = &k->rnext;
            end = (uint64_t)b->offset + b->length;
        }
        pthread_mutex_unlock(&f->lock);
    }
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&loc->pack, key);
    if (taken) atomic_fetch_add(&f->run_gets, 1);
    SharedBuf *b = NULL;
    size_t got = 0;
    int r = get_range(f, key, start, end, &b, &got);
    PrCacheValue *result = NULL;
    if (r >= 0) {
        r = take_blob(f, id, key, b, got, 0, &loc->ref, true, false, &result);
    }
    for (Job *k = taken, *next; k; k = next) {
        next = k->rnext;
        PrCacheValue *v = NULL;
        int kr = r;
        if (b) {
            kr = take_blob(f, &k->id, key, b, got, refs[k->ri].offset - start, &refs[k->ri], true, false, &v);
        }
        complete_job(f, k, kr, v);
        pr_memcache_value_unref(v);
    }
    sb_unref(b);
    if (r < 0) return r;
    *ret = result;
    return 0;
}

static bool cached(PrFetcher *f, const PrId *id) {
    PrCacheValue *v = pr_memcache_get(f->mc, id->b);
    pr_memcache_value_unref(v);
    return v != NULL;
}

/* One GET of the stretch of the pack around a small blob; every blob in it is decoded and cached.
 * A reader going through the pack in order (`cp -a`, `tar` of a directory of small files) gets the
 * next window fetched before it gets there: at once when it had to wait for this one and the blob
 * before it in the pack was cached (it came from there), else when it reaches this window. */
static int fetch_window(PrFetcher *f, const PrId *id, const PrBlobLoc *loc, bool urgent, PrCacheValue **ret) {
    _cleanup_free_ PrBlobRef *refs = NULL;
    uint32_t n = 0;
    if (pr_repo_pack_blobs(f->repo, &loc->pack, &refs, &n) < 0) return fetch_run(f, id, loc, ret);
    uint32_t t = find_ref(refs, n, id, loc);
    if (t == n) return fetch_run(f, id, loc, ret);
    /* grow both ways while the stored span and the decoded total stay within the window (blobs that
     * compress well are small stored but not decoded: the decoded bound keeps memory in check) */
    uint64_t start = refs[t].offset, end = start + refs[t].length, raw = refs[t].raw_length;
    uint32_t lo = t, hi = t;
    /* a side stops at a big blob, at the bound, or at a cached blob. A window fetched ahead of a
     * reader (in the background) starts at the blob asked for, so that it never overlaps the
     * window before it, still in flight; and it is three times the size, so that the reader has
     * more to read than the next GET takes (cp -a reads ~4 MiB of small files in about the time a
     * 4 MiB GET takes here: it waited at every window). */
    uint64_t window = urgent ? f->o.window : 3 * (uint64_t)f->o.window;
    /* Trees are small and dense in their packs, and a walk (find, ls -R, cp -a) needs them all:
     * 16 MiB of them at a time (the trees of ~100,000 entries in one GET) */
    if (loc->ref.type == PR_BLOB_TREE) window = MAX(window, (uint64_t)16 << 20);
    bool up = true, down = urgent;
    while (up || down) {
        if (up) {
            up = hi + 1 < n && refs[hi + 1].length <= f->o.small_blob && raw + refs[hi + 1].raw_length <= window &&
                 MAX(end, (uint64_t)refs[hi + 1].offset + refs[hi + 1].length) - start <= window &&
                 !cached(f, &refs[hi + 1].id);
            if (up) {
                hi++;
                end = MAX(end, (uint64_t)refs[hi].offset + refs[hi].length);
                raw += refs[hi].raw_length;
            }
        }
        if (down) {
            down = lo > 0 && refs[lo - 1].length <= f->o.small_blob && raw + refs[lo - 1].raw_length <= window &&
                   end - refs[lo - 1].offset <= window && !cached(f, &refs[lo - 1].id);
            if (down) {
                lo--;
                start = MIN(start, (uint64_t)refs[lo].offset);
                raw += refs[lo].raw_length;
            }
        }
    }
    if (lo == hi) return fetch_run(f, id, loc, ret);

    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&loc->pack, key);
    atomic_fetch_add(&f->window_gets, 1);
    SharedBuf *b = NULL;
    size_t got = 0;
    int r = get_range(f, key, start, end, &b, &got);
    if (r < 0) return r;
    /* a reader coming back to this pack (the window stopped at a blob it got before) reads it in order */
    bool in_order = lo > 0 && cached(f, &refs[lo - 1].id);
    uint32_t nx = hi + 1;
    unsigned seq = 0;
    if (!urgent && nx < n && refs[nx].length <= f->o.small_blob) {
        pthread_mutex_lock(&f->lock);
        seq = ++f->trigger_seq ? f->trigger_seq : ++f->trigger_seq;
        f->triggers[seq % NTRIGGERS] = (Trigger){.next = refs[nx].id, .seq = seq};
        pthread_mutex_unlock(&f->lock);
    }
    PrCacheValue *result = NULL;
    int result_err = -EBADMSG;
    for (uint32_t i = lo; i <= hi; i++) {
        const PrBlobRef *ref = &refs[i];
        uint64_t off = ref->offset - start;
        if (off + ref->length > got) { /* a short pack: only what arrived */
            if (i == t)
                pr_log_blob_truncated(key, ref->offset, ref->length);
            continue;
        }
        if (i != t && cached(f, &ref->id)) continue;
        PrCacheValue *v = NULL;
        r = take_blob(f, &ref->id, key, b, got, off, ref, i == t, false, &v);
        if (r < 0) {
            if (i == t) {
                result_err = r;
            } else {
                char hex[65];
                pr_hex(ref->id.b, PR_ID_LEN, hex);
                pr_debug("%s: neighbour blob %.16s does not decode (%d); skipped", key, hex, r);
            }
            continue;
        }
        if (seq) atomic_store(&v->hint, seq);
        if (i == t) result = v;
        else pr_memcache_value_unref(v);
    }
    sb_unref(b);
    pr_debug("%s: window of blobs %u..%u of %u for blob %u (%llu bytes)%s", key, lo, hi, n, t,
             (unsigned long long)(end - start), urgent ? (in_order ? ", reader in order" : ", urgent") : "");
    if (!result) return result_err;
    if (urgent && in_order && nx < n && refs[nx].length <= f->o.small_blob && !cached(f, &refs[nx].id)) {
        atomic_fetch_add(&f->prefetches, 1);
        (void)pr_fetcher_want(f, &refs[nx].id, false, NULL);
    }
    *ret = result;
    return 0;
}

/* The blob at loc from the disk cache, decoded and put in the memory cache: 0 and *ret, or -ENOENT
 * (not there, or there but bad: dropped, fetch it again), or -ENOMEM. */
static int from_disk(PrFetcher *f, const PrId *id, const PrBlobLoc *loc, PrCacheValue **ret) {
    if (!f->dc) return -ENOENT;
    _cleanup_free_ void *stored = NULL;
    size_t slen = 0;
    PrCacheValue *v = NULL;
    int r = pr_diskcache_get(f->dc, id->b, loc->ref.length, &stored, &slen);
    if (r < 0) return -ENOENT;
    r = slen == loc->ref.length ? decode_value(f, id, stored, slen, loc->ref.raw_length, &v) : -EBADMSG;
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
    return -ENOENT;
}

static int fetch_blob(PrFetcher *f, const PrId *id, bool urgent, PrCacheValue **ret) {
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
    r = from_disk(f, id, &loc, ret);
    if (r >= 0 || r == -ENOMEM) return r;
    if (f->o.window > 1 && loc.ref.length <= f->o.small_blob) return fetch_window(f, id, &loc, urgent, ret);
    return fetch_run(f, id, &loc, ret);
}

/* A planned group in one GET: the leader's blob to the end of the last follower's; every blob is
 * decoded, cached in memory (on disk when somebody waited for it or it is marked keep — a chunk of a
 * file of several, as a sequential read's runs are; a small file is read from memory once, as a
 * window's neighbours are: see take_blob) and its waiters answered. */
static void run_group(PrFetcher *f, Job *lead) {
    /* what the disk cache holds (read before, the server may be away) is taken from there; the GET
     * spans the rest */
    size_t n = 0;
    for (Job *k = lead; k; k = k->gnext) n++;
    _cleanup_free_ PrCacheValue **disk = calloc(n, sizeof *disk);
    uint64_t start = UINT64_MAX, end = 0;
    size_t i = 0;
    for (Job *k = lead; k; k = k->gnext, i++) {
        if (disk && from_disk(f, &k->id, &k->loc, &disk[i]) >= 0) continue;
        start = MIN(start, (uint64_t)k->loc.ref.offset);
        end = MAX(end, (uint64_t)k->loc.ref.offset + k->loc.ref.length);
    }
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&lead->loc.pack, key);
    double t0 = pr_now();
    SharedBuf *b = NULL;
    size_t got = 0;
    int r = 0;
    if (end > start) {
        atomic_fetch_add(&f->plan_gets, 1);
        r = get_range(f, key, start, end, &b, &got);
    } else {
        start = end = 0; /* all from the disk cache */
    }
    pr_debug("%s: planned group of %llu bytes at %llu%s in %.1f ms", key, (unsigned long long)(end - start),
             (unsigned long long)start, lead->urgent ? " (urgent)" : "", (pr_now() - t0) * 1e3);
    /* followers first: while one is in the table, its leader is not freed (want reads it) */
    Job *k = lead->gnext ? lead->gnext : lead;
    i = lead->gnext ? 1 : 0;
    while (k) {
        Job *next = k == lead ? NULL : (k->gnext ? k->gnext : lead);
        size_t ki = i;
        i = k->gnext ? i + 1 : 0;
        int kr = r;
        PrCacheValue *v = disk ? disk[ki] : NULL;
        if (v) {
            kr = 0;
        } else if (b) {
            pthread_mutex_lock(&f->lock);
            bool asked = k->waiters != NULL || k->keep;
            pthread_mutex_unlock(&f->lock);
            kr = take_blob(f, &k->id, key, b, got, k->loc.ref.offset - start, &k->loc.ref, asked, true, &v);
        }
        complete_job(f, k, kr, v);
        pr_memcache_value_unref(v);
        k = next;
    }
    sb_unref(b);
}

/* Runs job j (marked running, in the table) in this thread and completes its waiters. */
static void run_job(PrFetcher *f, Job *j) {
    if (j->planned) return run_group(f, j);
    PrCacheValue *v = NULL;
    double t0 = pr_now();
    int r = fetch_blob(f, &j->id, j->urgent, &v); /* urgent is fixed once running */
    if (pr_log_get_level() >= PR_LOG_DEBUG) {
        char hex[65];
        pr_hex(j->id.b, PR_ID_LEN, hex);
        pr_debug("fetch %.16s%s: %s in %.1f ms", hex, j->urgent ? " (urgent)" : "", r < 0 ? strerror(-r) : "ok",
                 (pr_now() - t0) * 1e3);
    }
    complete_job(f, j, r, v);
    pr_memcache_value_unref(v);
}

/* Touches up to n bytes of fresh heap and gives them back to the allocator, which keeps them (the
 * mount does not trim its heap below 256 MiB, see pr_fs_run). A page the process has never touched
 * costs a fault, and on this kind of VM the zeroing of a fresh 2 MiB page took ~4 ms: a cold `cat`
 * of 512 MiB faulted in ~90 MiB of heap (the memory cache filling, the GETs in flight), 15 % of the
 * mount's CPU, taken from the S3 server on the same two vCPUs. Done as the mount starts, the first
 * large read finds its memory ready (the mount's CPU for that `cat` -9 to -13 %, 6 interleaved
 * pairs). It stops as soon as file data is asked for (browsing trees does not stop it): the pieces
 * it holds would push a reader's allocations above them (a read started with the mount peaked at
 * twice the heap), and its faults would be in that reader's way. Pieces of 32 MiB: below the mmap
 * threshold, and few allocations under the one arena's lock (1 MiB pieces faulted in a page under
 * it 96 times, delaying a first read by ~0.15 s). */
static void warm_heap(PrFetcher *f, size_t n) {
    enum { PIECE = 32u << 20, STEP = 2u << 20 };
    void *v[8] = {0};
    size_t got = 0;
    size_t want = MIN(n / PIECE, sizeof v / sizeof *v);
    while (got < want && !atomic_load(&f->reading) && (v[got] = malloc(PIECE))) {
        volatile uint8_t *p = v[got++];
        for (size_t off = 0; off < PIECE && (off % STEP || !atomic_load(&f->reading)); off += 4096) p[off] = 0;
    }
    for (size_t i = 0; i < got; i++) free(v[i]);
    if (atomic_load(&f->reading))
        pr_debug("heap warm-up stopped after at most %zu MiB: a read began", got * (PIECE >> 20));
    else
        pr_debug("heap warmed: %zu MiB touched", got * (PIECE >> 20));
}

static void note_reading(PrFetcher *f) {
    if (!atomic_load_explicit(&f->reading, memory_order_relaxed)) atomic_store(&f->reading, true);
}

static void *worker(void *arg) {
    PrFetcher *f = arg;
    /* One thread loads the index as the mount starts: the first read of a file would otherwise wait
     * for it (100-150 ms for 100,000 files on loopback S3, most of a first byte's time). Marked used
     * first, so that a snapshot added meanwhile has its index files read again. A failure is logged
     * here and retried by the first request that needs the index. */
    if (atomic_exchange(&f->preload, false)) {
        atomic_store(&f->index_used, true);
        (void)pr_repo_prepare_index(f->repo);
        warm_heap(f, f->o.warm_heap);
    }
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
    if (!f->o.max_background) f->o.max_background = 64;
    if (!f->o.run) f->o.run = 8u << 20;
    if (!f->o.disk_queue) f->o.disk_queue = 16u << 20;
    atomic_init(&f->preload, f->o.preload_index);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->work, NULL);
    pthread_mutex_init(&f->dlock, NULL);
    pthread_mutex_init(&f->reload_lock, NULL);
    pthread_cond_init(&f->dwork, NULL);
    *ret = f;
    return 0;
}

int pr_fetcher_start(PrFetcher *f) {
    f->threads = calloc(f->o.threads, sizeof *f->threads);
    if (!f->threads) return -ENOMEM;
    /* without the writer thread, fetch threads write the disk cache themselves */
    if (f->dc && pthread_create(&f->dthread, NULL, disk_writer, f) == 0) f->dstarted = true;
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
        for (Job *k = j->gnext, *knext; k; k = knext) { /* a planned group's followers */
            knext = k->gnext;
            complete_job(f, k, -ESHUTDOWN, NULL);
        }
        for (PrFetchWaiter *w = j->waiters, *next; w; w = next) {
            next = w->next;
            w->fn(w, -ESHUTDOWN, NULL);
        }
        free(j);
    }
    /* last, as fetch threads queue for it: the writer writes what is queued (a bounded amount) */
    pthread_mutex_lock(&f->dlock);
    bool join = f->dstarted && !f->dstop;
    f->dstop = true;
    pthread_cond_signal(&f->dwork);
    pthread_mutex_unlock(&f->dlock);
    if (join) pthread_join(f->dthread, NULL);
}

void pr_fetcher_free(PrFetcher *f) {
    if (!f) return;
    pr_fetcher_stop(f);
    free(f->threads);
    pthread_cond_destroy(&f->work);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->dwork);
    pthread_mutex_destroy(&f->dlock);
    pthread_mutex_destroy(&f->reload_lock);
    free(f);
}

int pr_fetcher_want(PrFetcher *f, const PrId *id, bool urgent, PrFetchWaiter *w) {
    if (w && urgent) note_reading(f); /* a READ waits (trees come through get_sync or unwaited) */
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
        if (urgent) promote(f, j);
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
    table_insert(f, j);
    queue_push(queue_of(f, j), j);
    pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

int pr_fetcher_want_many(PrFetcher *f, const PrId *ids, size_t n) {
    note_reading(f);
    pthread_mutex_lock(&f->lock);
    int r = f->stopping ? -ESHUTDOWN : 0;
    size_t added = 0;
    for (size_t i = 0; i < n && r >= 0 && f->background.n < f->o.max_background; i++) {
        if (table_find(f, &ids[i])) continue;
        PrCacheValue *v = pr_memcache_get(f->mc, ids[i].b);
        if (v) {
            pr_memcache_value_unref(v);
            continue;
        }
        Job *j = calloc(1, sizeof *j);
        if (!j) {
            r = -ENOMEM;
            break;
        }
        j->id = ids[i];
        table_insert(f, j);
        queue_push(&f->background, j);
        added++;
    }
    if (added > 1) pthread_cond_broadcast(&f->work);
    else if (added) pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->lock);
    return r;
}

typedef struct PlanItem {
    PrId id;
    PrBlobLoc loc;
    uint32_t order; /* place in the reader's order */
    bool keep;
} PlanItem;

static int cmp_plan_loc(const void *a, const void *b) {
    const PlanItem *x = a, *y = b;
    int c = memcmp(x->loc.pack.b, y->loc.pack.b, PR_ID_LEN);
    if (c) return c;
    return x->loc.ref.offset < y->loc.ref.offset ? -1 : x->loc.ref.offset > y->loc.ref.offset;
}

typedef struct PlanGroup {
    uint32_t first, n; /* items[first .. first + n) */
    uint32_t order;    /* the earliest the reader needs one of them */
} PlanGroup;

static int cmp_plan_group(const void *a, const void *b) {
    const PlanGroup *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

int pr_fetcher_plan(PrFetcher *f, const PrId *ids, const bool *keep, size_t n) {
    note_reading(f);
    if (!n) return 0;
    _cleanup_free_ PlanItem *items = malloc(sizeof *items * n);
    _cleanup_free_ PlanGroup *groups = malloc(sizeof *groups * n);
    if (!items || !groups) return -ENOMEM;
    size_t m = 0;
    atomic_store(&f->index_used, true);
    for (size_t i = 0; i < n; i++) {
        if (cached(f, &ids[i])) continue;
        items[m] = (PlanItem){.id = ids[i], .order = (uint32_t)i, .keep = keep && keep[i]};
        if (pr_repo_find_blob(f->repo, &ids[i], &items[m].loc) < 0) continue; /* a read will say why */
        m++;
    }
    if (!m) return 0;
    qsort(items, m, sizeof *items, cmp_plan_loc);
    /* groups: blobs of one pack close enough to come in one GET of at most o.run bytes */
    size_t ng = 0;
    for (size_t i = 0; i < m;) {
        uint64_t start = items[i].loc.ref.offset, end = start + items[i].loc.ref.length;
        PlanGroup g = {.first = (uint32_t)i, .n = 1, .order = items[i].order};
        size_t k = i + 1;
        for (; k < m; k++) {
            const PlanItem *it = &items[k];
            uint64_t e = (uint64_t)it->loc.ref.offset + it->loc.ref.length;
            if (memcmp(it->loc.pack.b, items[i].loc.pack.b, PR_ID_LEN) != 0 || it->loc.ref.offset < end ||
                it->loc.ref.offset - end > PLAN_GAP || e - start > PLAN_GROUP_MAX)
                break;
            end = e;
            g.order = MIN(g.order, it->order);
            g.n++;
        }
        groups[ng++] = g;
        i = k;
    }
    qsort(groups, ng, sizeof *groups, cmp_plan_group); /* in the order the reader needs them */

    pthread_mutex_lock(&f->lock);
    int r = f->stopping ? -ESHUTDOWN : 0;
    size_t added = 0;
    for (size_t g = 0; g < ng && r >= 0 && f->planned + groups[g].n <= PLAN_JOBS_MAX; g++) {
        Job *lead = NULL, *last = NULL;
        for (uint32_t i = groups[g].first; i < groups[g].first + groups[g].n; i++) {
            if (table_find(f, &items[i].id)) continue; /* asked already: fetched on its own */
            Job *j = calloc(1, sizeof *j);
            if (!j) {
                r = -ENOMEM;
                break;
            }
            j->id = items[i].id;
            j->loc = items[i].loc;
            j->planned = true;
            j->keep = items[i].keep;
            table_insert(f, j);
            f->planned++;
            if (!lead) {
                lead = j;
            } else {
                j->running = true; /* fetched by its leader */
                j->leader = lead;
                last->gnext = j;
            }
            last = j;
        }
        if (lead) {
            queue_push(&f->background, lead);
            added++;
        }
    }
    if (added > 1) pthread_cond_broadcast(&f->work);
    else if (added) pthread_cond_signal(&f->work);
    pthread_mutex_unlock(&f->lock);
    return r;
}

void pr_fetcher_hit(PrFetcher *f, PrCacheValue *v) {
    if (!atomic_load_explicit(&v->hint, memory_order_relaxed)) return;
    unsigned seq = atomic_exchange(&v->hint, 0);
    if (!seq) return;
    PrId next;
    bool found = false;
    pthread_mutex_lock(&f->lock);
    Trigger *t = &f->triggers[seq % NTRIGGERS];
    if (t->seq == seq) { /* the first read in that window, and the trigger not reused since */
        next = t->next;
        t->seq = 0;
        found = true;
    }
    pthread_mutex_unlock(&f->lock);
    if (!found) return;
    atomic_fetch_add(&f->prefetches, 1);
    (void)pr_fetcher_want(f, &next, false, NULL);
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
    if (j && (j->running || j->leader)) { /* someone is on it, or it follows a queued group: wait */
        atomic_fetch_add(&f->shared, 1);
        s.w.next = j->waiters;
        j->waiters = &s.w;
        promote(f, j);
    } else if (j) { /* queued: take it over rather than wait for a thread */
        queue_remove(queue_of(f, j), j);
        j->running = true;
        j->urgent = true;
        s.w.next = j->waiters;
        j->waiters = &s.w;
        mine = j;
    } else if ((mine = calloc(1, sizeof *mine))) {
        mine->id = *id;
        mine->running = true;
        mine->urgent = true;
        mine->waiters = &s.w;
        table_insert(f, mine);
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
        .plan_gets = atomic_load(&f->plan_gets),
        .store_gets = atomic_load(&f->store_gets),
        .store_bytes = atomic_load(&f->store_bytes),
        .window_gets = atomic_load(&f->window_gets),
        .run_gets = atomic_load(&f->run_gets),
        .prefetches = atomic_load(&f->prefetches),
        .disk_writes = atomic_load(&f->disk_writes),
        .disk_dropped = atomic_load(&f->disk_dropped),
        .disk_hits = atomic_load(&f->disk_hits),
        .disk_bad = atomic_load(&f->disk_bad),
        .errors = atomic_load(&f->errors),
        .shared = atomic_load(&f->shared),
    };
}
