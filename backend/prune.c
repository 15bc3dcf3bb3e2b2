/* SPDX-License-Identifier: MIT */
#include "backend/prune.h"
#include "backend/index_files.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/util.h"

#define INDEX_FILE_BLOBS 200000 /* blob refs per new index file (~9 MB) */
#define TINY_MERGE_COUNT 8      /* merge small packs of one type once there are this many */

enum { ACT_KEEP, ACT_REPACK, ACT_DELETE, ACT_DROP };

typedef struct Pack {
    PrId id;
    PrBlobRef *blobs; /* borrowed from Prune.index */
    uint32_t n;
    bool present;  /* listed in data/ */
    uint64_t size; /* from the listing */
    uint64_t used_bytes, unused_bytes;
    uint64_t score; /* used bytes counting every copy of a duplicated blob */
    uint32_t nused;
    int action;
} Pack;

typedef struct Entry {
    PrId id;
    uint32_t pack, blob;
    bool used; /* some snapshot references the id */
    bool keep; /* this copy is the one kept */
} Entry;

typedef struct Prune {
    PrRepo *repo;
    const PrPruneOptions *opts;
    PrPruneStats st;
    PrPackIndex index; /* the index files read, and what they say */
    Pack *packs; /* packs[i] is index.packs[i] */
    size_t npacks;
    Entry *entries;
    size_t nentries;
    PrId *unreferenced; /* packs in data/ that no index names */
    uint64_t *unreferenced_size;
    size_t nunref, unrefcap;
    PrIndexPack *written; /* new packs */
    size_t nwritten, wcap;
    uint64_t written_bytes, new_index_bytes;
    double last_progress;
} Prune;

static void test_pause(const char *phase) {
    char msg[64];
    snprintf(msg, sizeof msg, "prune: test pause at %s", phase);
    pr_test_pause("PRAFS_TEST_PRUNE_PAUSE", phase, "PRAFS_TEST_PRUNE_RESUME", msg);
}

static void progress(Prune *p, const char *phase, uint64_t done, uint64_t total, bool force) {
    if (!p->opts->progress) return;
    double now = pr_now();
    if (!force && now - p->last_progress < 0.25) return;
    p->last_progress = now;
    PrPruneProgress pp = {phase, done, total};
    p->opts->progress(&pp, p->opts->userdata);
}

/* ---- loading the index, as files ---- */

static int cmp_entry(const void *a, const void *b) {
    const Entry *x = a, *y = b;
    int c = memcmp(x->id.b, y->id.b, PR_ID_LEN);
    if (c) return c;
    return x->pack < y->pack ? -1 : x->pack > y->pack;
}

/* First entry with this id, or -1. */
static ssize_t find_entry(const Prune *p, const PrId *id) {
    size_t lo = 0, hi = p->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(p->entries[mid].id.b, id->b, PR_ID_LEN) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < p->nentries && memcmp(p->entries[lo].id.b, id->b, PR_ID_LEN) == 0 ? (ssize_t)lo : -1;
}

/* What the packs of a damaged index file hold is unknown: prune could delete data a snapshot needs. */
static int index_damaged(const char *key, int err, void *ud) {
    (void)ud;
    return pr_log_errno(err, "index file %s is damaged: prune refuses to run (see 'prafs check')", key);
}

static int load_index(Prune *p) {
    /* no missing_ok: an index file that cannot be read, even one gone, stops prune, which must know
     * every pack the index names before it deletes any */
    const PrPackIndexOptions o = {.damaged = index_damaged};
    int k = pr_pack_index_load(p->repo, &o, &p->index);
    p->st.bytes_before += p->index.bytes_read;
    if (k < 0) return k;
    p->st.index_files_read = p->index.files.n;
    p->packs = calloc(p->index.npacks ? p->index.npacks : 1, sizeof *p->packs);
    if (!p->packs) return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < p->index.npacks; i++) {
        const PrIndexedPack *ip = &p->index.packs[i];
        p->packs[p->npacks++] = (Pack){.id = ip->id, .blobs = ip->blobs, .n = ip->n};
        n += ip->n;
    }
    p->st.packs_before = p->npacks;
    p->entries = calloc(n ? n : 1, sizeof *p->entries);
    if (!p->entries) return -ENOMEM;
    for (size_t i = 0; i < p->npacks; i++)
        for (uint32_t j = 0; j < p->packs[i].n; j++)
            p->entries[p->nentries++] = (Entry){p->packs[i].blobs[j].id, (uint32_t)i, j, false, false};
    if (p->nentries) qsort(p->entries, p->nentries, sizeof *p->entries, cmp_entry);
    return 0;
}

/* ---- listing data/ ---- */

static int list_data(const char *key, uint64_t size, void *ud) {
    Prune *p = ud;
    PrId id;
    if (pr_pack_key_parse(key, &id) < 0) {
        pr_log(PR_LOG_WARN, "%s is not a pack name: left alone", key);
        return 0;
    }
    p->st.bytes_before += size;
    ssize_t i = pr_pack_index_find(&p->index, &id); /* packs[i] is index.packs[i] */
    if (i >= 0) {
        p->packs[i].present = true;
        p->packs[i].size = size;
        return 0;
    }
    if (p->nunref == p->unrefcap) {
        size_t cap = p->unrefcap ? p->unrefcap * 2 : 64;
        PrId *v = realloc(p->unreferenced, sizeof *v * cap);
        if (!v) return -ENOMEM;
        p->unreferenced = v;
        uint64_t *z = realloc(p->unreferenced_size, sizeof *z * cap);
        if (!z) return -ENOMEM;
        p->unreferenced_size = z;
        p->unrefcap = cap;
    }
    p->unreferenced_size[p->nunref] = size;
    p->unreferenced[p->nunref++] = id;
    return 0;
}

/* ---- mark ---- */

typedef struct Todo {
    PrId id;
    uint32_t snap;
} Todo;

static int mark(Prune *p, PrSnapshot **snaps, size_t nsnaps) {
    Todo *stack = NULL;
    size_t n = 0, cap = 0;
    int k = 0;
#define PUSH(i, s)                                            \
    do {                                                      \
        if (n == cap) {                                       \
            size_t c_ = cap ? cap * 2 : 256;                  \
            Todo *v_ = realloc(stack, sizeof *v_ * c_);       \
            if (!v_) {                                        \
                k = -ENOMEM;                                  \
                goto out;                                     \
            }                                                 \
            stack = v_;                                       \
            cap = c_;                                         \
        }                                                     \
        stack[n++] = (Todo){(i), (s)};                        \
    } while (0)
    for (size_t s = 0; s < nsnaps; s++) PUSH(snaps[s]->root, (uint32_t)s);
    while (n) {
        Todo t = stack[--n];
        char hex[65];
        ssize_t e = find_entry(p, &t.id);
        if (e < 0) {
            pr_hex(t.id.b, PR_ID_LEN, hex);
            pr_log(PR_LOG_ERR, "tree %s of snapshot %s is not in the index: the repository is damaged; "
                               "prune refuses to run (see 'prafs check')", hex, snaps[t.snap]->label);
            k = -EBADMSG;
            goto out;
        }
        if (p->entries[e].used) continue; /* visited */
        for (size_t j = (size_t)e; j < p->nentries && memcmp(p->entries[j].id.b, t.id.b, PR_ID_LEN) == 0; j++)
            p->entries[j].used = true;
        _cleanup_(pr_tree_freep) PrTree *tree = NULL;
        k = pr_repo_read_tree(p->repo, &t.id, &tree);
        if (k < 0) {
            pr_hex(t.id.b, PR_ID_LEN, hex);
            pr_log(PR_LOG_ERR, "cannot read tree %s of snapshot %s: prune refuses to run (see 'prafs check')", hex,
                   snaps[t.snap]->label);
            goto out;
        }
        p->st.trees++;
        progress(p, "mark", p->st.trees, 0, false);
        for (uint32_t i = 0; i < tree->n; i++) {
            const PrNode *node = &tree->nodes[i];
            if (node->type == PR_NODE_DIR) PUSH(node->subtree, t.snap);
            if (node->type != PR_NODE_FILE) continue;
            for (uint32_t c = 0; c < node->nchunks; c++) {
                const PrId *id = &node->chunks[c].id;
                if (pr_id_is_zero(id)) continue;
                ssize_t x = find_entry(p, id);
                if (x < 0) {
                    pr_hex(id->b, PR_ID_LEN, hex);
                    pr_log(PR_LOG_ERR, "blob %s of %s in snapshot %s is not in the index: the repository is "
                                       "damaged; prune refuses to run (see 'prafs check')",
                           hex, node->name, snaps[t.snap]->label);
                    k = -EBADMSG;
                    goto out;
                }
                for (size_t j = (size_t)x; j < p->nentries && memcmp(p->entries[j].id.b, id->b, PR_ID_LEN) == 0; j++)
                    p->entries[j].used = true;
            }
        }
    }
    progress(p, "mark", p->st.trees, p->st.trees, true);
#undef PUSH
out:
    free(stack);
    return k;
}

/* ---- plan ---- */

static uint8_t pack_type(const Pack *k) { return k->n ? k->blobs[0].type : PR_BLOB_DATA; }

static int plan(Prune *p) {
    /* every copy counts towards a pack's score; then one copy per used blob is chosen: in a pack that
     * exists, preferring the pack most used anyway */
    for (size_t i = 0; i < p->nentries; i++) {
        const Entry *e = &p->entries[i];
        if (e->used) p->packs[e->pack].score += p->packs[e->pack].blobs[e->blob].length;
    }
    for (size_t i = 0; i < p->nentries;) {
        size_t j = i;
        while (j < p->nentries && memcmp(p->entries[j].id.b, p->entries[i].id.b, PR_ID_LEN) == 0) j++;
        if (j - i > 1) p->st.blobs_duplicate += j - i - 1;
        if (p->entries[i].used) {
            p->st.blobs_used++;
            ssize_t best = -1;
            for (size_t x = i; x < j; x++) {
                const Pack *k = &p->packs[p->entries[x].pack];
                if (!k->present) continue;
                if (best < 0 || k->score > p->packs[p->entries[best].pack].score) best = (ssize_t)x;
            }
            if (best < 0) {
                char hex[65], key[PR_PACK_KEY_MAX];
                pr_hex(p->entries[i].id.b, PR_ID_LEN, hex);
                pr_pack_key(&p->packs[p->entries[i].pack].id, key);
                pr_log(PR_LOG_ERR, "blob %s is used but its pack %s is missing: the repository is damaged; "
                                   "prune refuses to run (see 'prafs check')", hex, key);
                return -EBADMSG;
            }
            p->entries[best].keep = true;
        } else
            p->st.blobs_unused++;
        i = j;
    }
    for (size_t i = 0; i < p->nentries; i++) {
        const Entry *e = &p->entries[i];
        Pack *k = &p->packs[e->pack];
        uint32_t len = k->blobs[e->blob].length;
        if (e->keep) {
            k->used_bytes += len;
            k->nused++;
        } else
            k->unused_bytes += len;
    }
    double max_unused = p->opts->max_unused > 0 ? p->opts->max_unused : 0.2;
    uint64_t tiny = pr_repo_config(p->repo)->pack_size / 4;
    size_t ntiny[2] = {0, 0}, nrepack[2] = {0, 0};
    for (size_t i = 0; i < p->npacks; i++) {
        Pack *k = &p->packs[i];
        uint8_t t = pack_type(k) == PR_BLOB_TREE;
        if (!k->present) k->action = ACT_DROP;
        else if (!k->nused) k->action = ACT_DELETE;
        else if (k->unused_bytes == 0) k->action = ACT_KEEP;
        else if ((double)k->unused_bytes > max_unused * (double)(k->used_bytes + k->unused_bytes)) k->action = ACT_REPACK;
        else k->action = ACT_KEEP;
        if (k->action == ACT_REPACK) nrepack[t]++;
        if (k->action == ACT_KEEP && k->size < tiny) ntiny[t]++;
    }
    /* small packs (the tail of every writer run) are merged once there are several of them, or
     * along with a repack of their type that writes a new pack anyway */
    for (size_t i = 0; i < p->npacks; i++) {
        Pack *k = &p->packs[i];
        uint8_t t = pack_type(k) == PR_BLOB_TREE;
        if (k->action == ACT_KEEP && k->size < tiny && (ntiny[t] >= TINY_MERGE_COUNT || (nrepack[t] && ntiny[t] + nrepack[t] >= 2)))
            k->action = ACT_REPACK;
    }
    for (size_t i = 0; i < p->npacks; i++) {
        switch (p->packs[i].action) {
        case ACT_KEEP: p->st.packs_kept++; break;
        case ACT_REPACK:
            p->st.packs_repacked++;
            p->st.bytes_repacked += p->packs[i].used_bytes;
            break;
        case ACT_DELETE: p->st.packs_deleted++; break;
        default: p->st.packs_missing++; break;
        }
    }
    p->st.packs_unreferenced = p->nunref;
    return 0;
}

/* ---- new packs ---- */

typedef struct Out {
    uint8_t *buf;
    size_t len, cap;
    PrBlobRef *refs;
    uint32_t n, refcap;
} Out;

static int out_flush(Prune *p, Out *o) {
    if (!o->n) return 0;
    _cleanup_free_ void *trailer = NULL;
    size_t tlen;
    int k = pr_pack_trailer_encode(pr_repo_keys(p->repo), o->refs, o->n, &trailer, &tlen);
    if (k < 0) return k;
    if (o->len + tlen > o->cap) {
        uint8_t *b = realloc(o->buf, o->len + tlen);
        if (!b) return -ENOMEM;
        o->buf = b;
        o->cap = o->len + tlen;
    }
    memcpy(o->buf + o->len, trailer, tlen);
    size_t total = o->len + tlen;
    PrId id;
    pr_sha256(o->buf, total, id.b);
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&id, key);
    if (p->nwritten == p->wcap) {
        size_t cap = p->wcap ? p->wcap * 2 : 16;
        PrIndexPack *v = realloc(p->written, sizeof *v * cap);
        if (!v) return -ENOMEM;
        p->written = v;
        p->wcap = cap;
    }
    k = pr_store_put(pr_repo_store(p->repo), key, o->buf, total);
    if (k < 0) return pr_log_errno(k, "cannot store %s in %s", key, pr_repo_store(p->repo)->location);
    pr_debug("prune: stored %s (%u blobs, %zu bytes)", key, o->n, total);
    p->written[p->nwritten++] = (PrIndexPack){id, o->refs, o->n};
    p->written_bytes += total;
    p->st.packs_written++;
    o->refs = NULL;
    o->n = o->refcap = 0;
    o->len = 0;
    if (p->st.packs_written == 1) test_pause("repack");
    return 0;
}

static int out_add(Prune *p, Out *o, const PrBlobRef *ref, const uint8_t *stored) {
    if (o->len + ref->length > o->cap) {
        size_t cap = o->cap ? o->cap : (1u << 20);
        while (cap < o->len + ref->length) cap *= 2;
        uint8_t *b = realloc(o->buf, cap);
        if (!b) return -ENOMEM;
        o->buf = b;
        o->cap = cap;
    }
    if (o->n == o->refcap) {
        uint32_t cap = o->refcap ? o->refcap * 2 : 64;
        PrBlobRef *v = realloc(o->refs, sizeof *v * cap);
        if (!v) return -ENOMEM;
        o->refs = v;
        o->refcap = cap;
    }
    o->refs[o->n++] = (PrBlobRef){ref->id, ref->type, (uint32_t)o->len, ref->length, ref->raw_length};
    memcpy(o->buf + o->len, stored, ref->length);
    o->len += ref->length;
    if (o->len >= pr_repo_config(p->repo)->pack_size) return out_flush(p, o);
    return 0;
}

static int cmp_ref_offset(const void *a, const void *b) {
    const PrBlobRef *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Copies the kept blobs of one pack, each verified, into the output packs. */
static int repack_one(Prune *p, Pack *k, Out out[2]) {
    char key[PR_PACK_KEY_MAX], hex[65];
    pr_pack_key(&k->id, key);
    _cleanup_free_ uint8_t *data = NULL;
    size_t len;
    int r = pr_store_get(pr_repo_store(p->repo), key, 0, 0, (void **)&data, &len);
    if (r < 0) return pr_log_errno(r, "cannot read %s", key);
    /* the kept copies of this pack, in pack order (keeps neighbours together) */
    _cleanup_free_ PrBlobRef *refs = calloc(k->nused ? k->nused : 1, sizeof *refs);
    if (!refs) return -ENOMEM;
    uint32_t n = 0;
    for (size_t j = 0; j < k->n; j++) {
        ssize_t e = find_entry(p, &k->blobs[j].id);
        for (size_t x = (size_t)e; e >= 0 && x < p->nentries && memcmp(p->entries[x].id.b, k->blobs[j].id.b, PR_ID_LEN) == 0; x++)
            if (p->entries[x].keep && &p->packs[p->entries[x].pack] == k && p->entries[x].blob == j && n < k->nused)
                refs[n++] = k->blobs[j];
    }
    qsort(refs, n, sizeof *refs, cmp_ref_offset);
    for (uint32_t i = 0; i < n; i++) {
        const PrBlobRef *b = &refs[i];
        pr_hex(b->id.b, PR_ID_LEN, hex);
        if ((uint64_t)b->offset + b->length > len || b->raw_length > PR_MAX_BLOB || b->type > PR_BLOB_TREE) {
            pr_log(PR_LOG_ERR, "%s is truncated or the index is wrong: blob %s at offset %u (%u bytes) is not "
                               "inside it; prune stopped before deleting anything (see 'prafs check --read-data')",
                   key, hex, b->offset, b->length);
            return -EBADMSG;
        }
        /* never copy damaged data: decode (authenticate, decompress, length) and check the id */
        _cleanup_free_ void *plain = NULL;
        r = pr_blob_decode(pr_repo_keys(p->repo), &b->id, data + b->offset, b->length, b->raw_length, &plain);
        PrId check;
        if (r == 0) pr_blob_id(pr_repo_keys(p->repo), plain, b->raw_length, &check);
        if (r < 0 || memcmp(check.b, b->id.b, PR_ID_LEN) != 0) {
            pr_log(PR_LOG_ERR, "%s is damaged: blob %s at offset %u does not verify; prune stopped before "
                               "deleting anything (see 'prafs check --read-data')", key, hex, b->offset);
            return -EBADMSG;
        }
        r = out_add(p, &out[b->type == PR_BLOB_TREE], b, data + b->offset);
        if (r < 0) return r;
    }
    return 0;
}

/* ---- deleting packs ---- */

/* Deleting is one request per pack: on S3 they go DELETE_THREADS at a time (a prune of thousands of
 * packs was as many round trips one after the other). The first goes alone (test pause "delete"). */
#define DELETE_THREADS 8

typedef struct Deleter {
    Prune *p;
    PrId *ids;
    size_t n;
    size_t next, done; /* under lock */
    int err;
    pthread_mutex_t lock;
} Deleter;

static int delete_one(PrStore *store, const PrId *id) {
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(id, key);
    int k = pr_store_del(store, key);
    if (k < 0) return pr_log_errno(k, "cannot delete %s", key);
    pr_debug("prune: deleted %s", key);
    return 0;
}

static void *delete_main(void *arg) {
    Deleter *d = arg;
    PrStore *store = pr_repo_store(d->p->repo);
    pthread_mutex_lock(&d->lock);
    while (!d->err && d->next < d->n) {
        size_t i = d->next++;
        pthread_mutex_unlock(&d->lock);
        int k = delete_one(store, &d->ids[i]);
        pthread_mutex_lock(&d->lock);
        if (k < 0 && !d->err) d->err = k;
        if (k >= 0) d->done++;
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

/* Deletes the packs repacked or unused, and those no index named. */
static int delete_packs(Prune *p) {
    size_t total = p->st.packs_repacked + p->st.packs_deleted + p->nunref, n = 0;
    _cleanup_free_ PrId *ids = malloc(sizeof *ids * (total ? total : 1));
    if (!ids) return -ENOMEM;
    for (size_t i = 0; i < p->npacks + p->nunref && n < total; i++) {
        if (i < p->npacks) {
            if (p->packs[i].action != ACT_REPACK && p->packs[i].action != ACT_DELETE) continue;
            ids[n++] = p->packs[i].id;
        } else
            ids[n++] = p->unreferenced[i - p->npacks];
    }
    if (!n) {
        progress(p, "delete", 0, 0, true);
        return 0;
    }
    int k = delete_one(pr_repo_store(p->repo), &ids[0]);
    if (k < 0) return k;
    progress(p, "delete", 1, n, false);
    test_pause("delete");
    Deleter d = {.p = p, .ids = ids, .n = n, .next = 1, .done = 1};
    pthread_mutex_init(&d.lock, NULL);
    unsigned want = strcmp(pr_repo_store(p->repo)->ops->kind, "local") == 0 ? 1 : DELETE_THREADS;
    pthread_t th[DELETE_THREADS];
    unsigned started = 0;
    for (; started < want && started + 1 < n; started++)
        if (pthread_create(&th[started], NULL, delete_main, &d) != 0) break;
    if (!started) delete_main(&d);
    while (started) { /* the caller's thread reports while the others delete */
        pthread_mutex_lock(&d.lock);
        bool end = d.err || d.done >= n;
        size_t done = d.done;
        pthread_mutex_unlock(&d.lock);
        progress(p, "delete", done, n, false);
        if (end) break;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (unsigned t = 0; t < started; t++) pthread_join(th[t], NULL);
    progress(p, "delete", d.done, n, true);
    pthread_mutex_destroy(&d.lock);
    return d.err;
}

/* ---- the new index ---- */

static int put_index_file(Prune *p, const PrIndexPack *packs, uint32_t n, PrKeyList *written) {
    _cleanup_free_ void *data = NULL;
    size_t len;
    int k = pr_index_file_encode(pr_repo_keys(p->repo), packs, n, &data, &len);
    if (k < 0) return k;
    uint8_t h[32];
    char hex[65], key[80];
    pr_sha256(data, len, h);
    pr_hex(h, 32, hex);
    snprintf(key, sizeof key, "index/%s", hex);
    k = pr_store_put(pr_repo_store(p->repo), key, data, len);
    if (k < 0) return pr_log_errno(k, "cannot store %s in %s", key, pr_repo_store(p->repo)->location);
    p->new_index_bytes += len;
    p->st.index_files_written++;
    return pr_key_list_add(key, len, written);
}

/* Every kept pack (with all its entries) and every new pack, in index files of bounded size. */
static int publish_index(Prune *p, PrKeyList *written) {
    size_t total = 0;
    for (size_t i = 0; i < p->npacks; i++) total += p->packs[i].action == ACT_KEEP;
    total += p->nwritten;
    _cleanup_free_ PrIndexPack *batch = calloc(total ? total : 1, sizeof *batch);
    if (!batch) return -ENOMEM;
    uint32_t n = 0;
    size_t blobs = 0;
    int k;
    for (size_t i = 0; i < p->npacks + p->nwritten; i++) {
        PrIndexPack ip;
        if (i < p->npacks) {
            if (p->packs[i].action != ACT_KEEP) continue;
            ip = (PrIndexPack){p->packs[i].id, p->packs[i].blobs, p->packs[i].n};
        } else
            ip = p->written[i - p->npacks];
        if (n && blobs + ip.n > INDEX_FILE_BLOBS) {
            if ((k = put_index_file(p, batch, n, written)) < 0) return k;
            n = 0;
            blobs = 0;
        }
        batch[n++] = ip;
        blobs += ip.n;
    }
    if (n && (k = put_index_file(p, batch, n, written)) < 0) return k;
    return 0;
}

/* ---- the whole ---- */

static bool in_str(const PrKeyList *s, const char *key) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], key) == 0) return true;
    return false;
}

int pr_prune(PrRepo *r, const PrPruneOptions *opts, PrPruneStats *ret_stats) {
    PrStore *store = pr_repo_store(r);
    if (!opts->dry_run && !pr_lock_is_exclusive(opts->lock)) {
        pr_log(PR_LOG_ERR, "prune needs an exclusive lock");
        return -ENOLCK;
    }
    Prune p = {.repo = r, .opts = opts};
    PrKeyList new_index = {0};
    PrSnapshot **snaps = NULL;
    size_t nsnaps = 0;
    Out out[2] = {{0}, {0}};
    int k;
    test_pause("start");

    /* snapshots first, then the index: every snapshot listed has its index published already */
    if ((k = pr_repo_list_snapshots(r, &snaps, &nsnaps)) < 0) goto out;
    p.st.snapshots = nsnaps;
    if ((k = load_index(&p)) < 0) goto out;
    if ((k = pr_repo_load_index(r, true)) < 0) goto out;
    k = pr_store_list(store, "data/", list_data, &p);
    if (k < 0) {
        k = pr_log_errno(k, "cannot list the packs of %s", store->location);
        goto out;
    }
    if ((k = mark(&p, snaps, nsnaps)) < 0) goto out;
    if ((k = plan(&p)) < 0) goto out;
    test_pause("mark");

    bool change = p.st.packs_repacked || p.st.packs_deleted || p.st.packs_missing;
    if (opts->dry_run) {
        uint64_t after = 0;
        for (size_t i = 0; i < p.npacks; i++)
            if (p.packs[i].action == ACT_KEEP) after += p.packs[i].size;
        after += p.st.bytes_repacked; /* about what the new packs will hold */
        for (size_t i = 0; i < p.index.files.n; i++) after += p.index.files.sizes[i];
        p.st.bytes_after = after;
        p.st.packs_after = p.st.packs_kept + (p.st.bytes_repacked + pr_repo_config(r)->pack_size - 1) /
                                                 pr_repo_config(r)->pack_size;
        k = 0;
        goto out;
    }

    /* repack: new packs first; nothing refers to them until the index does */
    uint64_t done = 0, total = p.st.packs_repacked;
    for (size_t i = 0; i < p.npacks; i++) {
        if (p.packs[i].action != ACT_REPACK) continue;
        progress(&p, "repack", done, total, false);
        if ((k = repack_one(&p, &p.packs[i], out)) < 0) goto out;
        done++;
    }
    if ((k = out_flush(&p, &out[0])) < 0 || (k = out_flush(&p, &out[1])) < 0) goto out;
    progress(&p, "repack", done, total, true);

    /* one new complete index, then the old index files go */
    if (change) {
        if ((k = pr_lock_check(opts->lock)) < 0) goto out;
        if ((k = publish_index(&p, &new_index)) < 0) goto out;
        test_pause("index");
        if ((k = pr_lock_check(opts->lock)) < 0) goto out;
        for (size_t i = 0; i < p.index.files.n; i++) {
            if (in_str(&new_index, p.index.files.v[i])) continue;
            k = pr_store_del(store, p.index.files.v[i]);
            if (k < 0) {
                k = pr_log_errno(k, "cannot delete %s", p.index.files.v[i]);
                goto out;
            }
        }
    }

    /* only now the packs: the surviving index names none of them */
    if ((k = pr_lock_check(opts->lock)) < 0) goto out;
    if ((k = delete_packs(&p)) < 0) goto out;

    uint64_t after = p.written_bytes;
    for (size_t i = 0; i < p.npacks; i++)
        if (p.packs[i].action == ACT_KEEP) after += p.packs[i].size;
    if (change) after += p.new_index_bytes;
    else
        for (size_t i = 0; i < p.index.files.n; i++) after += p.index.files.sizes[i];
    p.st.bytes_after = after;
    p.st.packs_after = p.st.packs_kept + p.st.packs_written;
    /* locks of killed processes: garbage like the rest (acquiring ignores them already) */
    PrLockInfo *gone = NULL;
    size_t ngone = 0;
    if (pr_lock_remove(r, false, &gone, &ngone) == 0) p.st.locks_removed = ngone;
    free(gone);
    k = 0;
    /* later lookups through this repo see the new index */
    if (change) pr_repo_load_index(r, true);

out:
    if (ret_stats) *ret_stats = p.st;
    for (int t = 0; t < 2; t++) {
        free(out[t].buf);
        free(out[t].refs);
    }
    for (size_t i = 0; i < p.nwritten; i++) free(p.written[i].blobs);
    free(p.written);
    pr_pack_index_clear(&p.index);
    free(p.packs);
    free(p.entries);
    free(p.unreferenced);
    free(p.unreferenced_size);
    pr_key_list_clear(&new_index);
    pr_snapshot_list_free(snaps, nsnaps);
    return k;
}
