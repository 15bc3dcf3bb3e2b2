/* SPDX-License-Identifier: MIT */
#include "backend/repo.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/memcache.h"
#include "cache/util.h"

#define CONFIG_MAX 4096
#define KEYFILE_MAX 4096
#define META_MAX (256u << 20) /* one index file or manifest */
#define TREE_CACHE (64u << 20)   /* decoded tree blobs kept in memory */
#define TREE_WINDOW (16u << 20)  /* a tree miss fetches up to this much of its pack */

typedef struct IndexEntry {
    PrId id;
    uint32_t pack; /* into packs[] */
    uint32_t offset, length, raw_length;
    uint8_t type;
} IndexEntry;

struct PrRepo {
    atomic_int refs;
    PrStore *store;
    PrKeys keys;
    PrRepoConfig config;
    PrChunker *chunker;
    PrMemCache *trees; /* decoded tree blobs: a walk reads whole tree packs, not one blob a request */

    pthread_mutex_t load_lock;  /* one index load at a time */
    pthread_mutex_t index_lock; /* guards the arrays below; held only for lookups and swaps */
    bool index_loaded;
    IndexEntry *entries; /* sorted by id */
    size_t nentries;
    PrId *packs;
    size_t npacks;
    uint32_t *by_pack;    /* entry positions sorted by (pack, offset) */
    size_t *pack_first;   /* npacks + 1 bounds into by_pack, per pack */
    uint32_t *packs_sorted_idx; /* positions in packs[], sorted by pack id */
};

PrStore *pr_repo_store(PrRepo *r) { return r->store; }
const PrKeys *pr_repo_keys(PrRepo *r) { return &r->keys; }
const PrRepoConfig *pr_repo_config(PrRepo *r) { return &r->config; }
const PrChunker *pr_repo_chunker(PrRepo *r) { return r->chunker; }

void pr_pack_key(const PrId *pack, char *buf) {
    char hex[2 * PR_ID_LEN + 1];
    pr_hex(pack->b, PR_ID_LEN, hex);
    snprintf(buf, PR_PACK_KEY_MAX, "data/%.2s/%s", hex, hex);
}

int pr_pack_key_parse(const char *key, PrId *ret) {
    /* data/xx/<64 hex> */
    if (strncmp(key, "data/", 5) != 0 || strlen(key) != 5 + 3 + 64 || key[7] != '/') return -EINVAL;
    if (strncmp(key + 5, key + 8, 2) != 0) return -EINVAL;
    return pr_unhex(key + 8, ret->b, PR_ID_LEN);
}

PrRepo *pr_repo_ref(PrRepo *r) {
    if (r) atomic_fetch_add(&r->refs, 1);
    return r;
}

void pr_repo_unref(PrRepo *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    pr_store_free(r->store);
    pr_chunker_free(r->chunker);
    pr_memcache_free(r->trees);
    free(r->entries);
    free(r->packs);
    free(r->by_pack);
    free(r->pack_first);
    free(r->packs_sorted_idx);
    pthread_mutex_destroy(&r->index_lock);
    pthread_mutex_destroy(&r->load_lock);
    OPENSSL_cleanse(&r->keys, sizeof r->keys);
    free(r);
}

static PrRepo *repo_new(PrStore *store) {
    PrRepo *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    atomic_init(&r->refs, 1);
    r->store = store;
    if (pr_memcache_new(TREE_CACHE, &r->trees) < 0) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->index_lock, NULL);
    pthread_mutex_init(&r->load_lock, NULL);
    return r;
}

/* ---- config ---- */

static int config_format(const PrRepoConfig *c, char **ret) {
    char id[65];
    pr_hex(c->id, 32, id);
    if (asprintf(ret,
                 "prafs repository\n"
                 "version=%u\n"
                 "id=%s\n"
                 "chunker=fastcdc\n"
                 "chunker_min=%u\n"
                 "chunker_avg=%u\n"
                 "chunker_max=%u\n"
                 "pack_size=%u\n",
                 c->version, id, c->chunker.min_size, c->chunker.avg_size, c->chunker.max_size,
                 c->pack_size) < 0)
        return -ENOMEM;
    return 0;
}

static int config_parse(const char *text, size_t len, PrRepoConfig *ret) {
    PrRepoConfig c = {0};
    bool have_id = false, fastcdc = false;
    if (len < 17 || memcmp(text, "prafs repository\n", 17) != 0) return -EBADMSG;
    _cleanup_free_ char *copy = strndup(text, len);
    if (!copy) return -ENOMEM;
    char *save = NULL;
    for (char *line = strtok_r(copy + 17, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) return -EBADMSG;
        *eq = 0;
        const char *k = line, *v = eq + 1;
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        bool num_ok = *v && !*end && n <= UINT32_MAX;
        if (strcmp(k, "version") == 0 && num_ok) c.version = (uint32_t)n;
        else if (strcmp(k, "id") == 0) {
            if (pr_unhex(v, c.id, 32) < 0) return -EBADMSG;
            have_id = true;
        } else if (strcmp(k, "chunker") == 0) fastcdc = strcmp(v, "fastcdc") == 0;
        else if (strcmp(k, "chunker_min") == 0 && num_ok) c.chunker.min_size = (uint32_t)n;
        else if (strcmp(k, "chunker_avg") == 0 && num_ok) c.chunker.avg_size = (uint32_t)n;
        else if (strcmp(k, "chunker_max") == 0 && num_ok) c.chunker.max_size = (uint32_t)n;
        else if (strcmp(k, "pack_size") == 0 && num_ok) c.pack_size = (uint32_t)n;
        /* unknown keys are ignored: later versions may add optional settings */
    }
    if (!have_id || !fastcdc || c.version == 0) return -EBADMSG;
    if (c.pack_size < (1u << 20) || c.pack_size > (256u << 20)) return -EBADMSG;
    if (c.chunker.max_size > PR_MAX_BLOB) return -EBADMSG;
    *ret = c;
    return 0;
}

/* The chunker's gear seed is secret, derived from the id key, so that chunk sizes leak nothing a
 * repository-independent table would. */
static int make_chunker(PrRepo *r) {
    PrId seed;
    static const char label[] = "prafs chunker seed";
    pr_blob_id(&r->keys, label, sizeof label - 1, &seed);
    r->config.chunker.seed = pr_get_u64(seed.b);
    return pr_chunker_new(&r->config.chunker, &r->chunker);
}

int pr_repo_init(PrStore *store, const char *password, const PrScryptParams *scrypt, PrRepo **ret) {
    _cleanup_(pr_repo_unrefp) PrRepo *r = repo_new(store);
    if (!r) {
        pr_store_free(store);
        return -ENOMEM;
    }
    int k = pr_store_create(store);
    if (k < 0) return pr_log_errno(k, "cannot create repository %s", store->location);
    uint64_t size;
    k = pr_store_stat(store, "config", &size);
    if (k == 0) {
        pr_log(PR_LOG_ERR, "%s already holds a repository", store->location);
        return -EEXIST;
    }
    if (k != -ENOENT) return pr_log_errno(k, "cannot read %s", store->location);

    r->config.version = PR_FORMAT_VERSION;
    r->config.chunker = (PrChunkerParams){.min_size = 256u << 10, .avg_size = 1u << 20, .max_size = 4u << 20};
    r->config.pack_size = PR_PACK_TARGET;
    if ((k = pr_random(r->config.id, 32)) < 0 || (k = pr_keys_generate(&r->keys)) < 0) return k;
    if ((k = make_chunker(r)) < 0) return k;

    _cleanup_free_ void *wrapped = NULL;
    size_t wlen;
    k = pr_keys_wrap(&r->keys, password, scrypt ? scrypt : &pr_scrypt_default, &wrapped, &wlen);
    if (k < 0) return pr_log_errno(k, "cannot wrap keys");
    uint8_t kid[32];
    char key[80], hex[65];
    pr_sha256(wrapped, wlen, kid);
    pr_hex(kid, 32, hex);
    snprintf(key, sizeof key, "keys/%s", hex);
    /* keys first, config last: a repository is there only once it can be opened */
    k = pr_store_put(store, key, wrapped, wlen);
    if (k < 0) return pr_log_errno(k, "cannot write %s", key);
    _cleanup_free_ char *cfg = NULL;
    if ((k = config_format(&r->config, &cfg)) < 0) return k;
    k = pr_store_put(store, "config", cfg, strlen(cfg));
    if (k < 0) return pr_log_errno(k, "cannot write config");
    *ret = TAKE_PTR(r);
    return 0;
}

typedef struct KeyList {
    char **keys;
    size_t n;
} KeyList;

static int collect_key(const char *key, uint64_t size, void *ud) {
    (void)size;
    KeyList *l = ud;
    char **k = realloc(l->keys, sizeof *k * (l->n + 1));
    if (!k) return -ENOMEM;
    l->keys = k;
    if (!(l->keys[l->n] = strdup(key))) return -ENOMEM;
    l->n++;
    return 0;
}

static void keylist_clear(KeyList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->keys[i]);
    free(l->keys);
    l->keys = NULL;
    l->n = 0;
}

int pr_repo_open(PrStore *store, const char *password, PrRepo **ret) {
    _cleanup_(pr_repo_unrefp) PrRepo *r = repo_new(store);
    if (!r) {
        pr_store_free(store);
        return -ENOMEM;
    }
    _cleanup_free_ void *cfg = NULL;
    size_t clen;
    int k = pr_store_get(store, "config", 0, CONFIG_MAX, &cfg, &clen);
    if (k == -ENOENT) {
        pr_log(PR_LOG_ERR, "no repository at %s (run 'prafs init' first)", store->location);
        return -ENOENT;
    }
    if (k < 0) return pr_log_errno(k, "cannot read the config of %s", store->location);
    k = config_parse(cfg, clen, &r->config);
    if (k < 0) return pr_log_errno(k, "%s/config is not a prafs repository config", store->location);
    if (r->config.version != PR_FORMAT_VERSION) {
        pr_log(PR_LOG_ERR, "%s uses repository format %u; this prafs reads format %u", store->location,
               r->config.version, PR_FORMAT_VERSION);
        return -EPROTONOSUPPORT;
    }

    _cleanup_(keylist_clear) KeyList kl = {0};
    k = pr_store_list(store, "keys/", collect_key, &kl);
    if (k < 0) return pr_log_errno(k, "cannot list the keys of %s", store->location);
    if (kl.n == 0) {
        pr_log(PR_LOG_ERR, "%s has no key files", store->location);
        return -ENOENT;
    }
    bool opened = false;
    for (size_t i = 0; i < kl.n && !opened; i++) {
        _cleanup_free_ void *data = NULL;
        size_t dlen;
        k = pr_store_get(store, kl.keys[i], 0, KEYFILE_MAX, &data, &dlen);
        if (k < 0) return pr_log_errno(k, "cannot read %s", kl.keys[i]);
        k = pr_keys_unwrap(data, dlen, password, &r->keys);
        if (k == 0) opened = true;
        else if (k != -EACCES) pr_log_errno(k, "key file %s is damaged", kl.keys[i]);
    }
    if (!opened) {
        pr_log(PR_LOG_ERR, "wrong password: no key of %s opens with it", store->location);
        return -EACCES;
    }
    if ((k = make_chunker(r)) < 0) return pr_log_errno(k, "%s/config: bad chunker parameters", store->location);
    *ret = TAKE_PTR(r);
    return 0;
}

/* ---- index ---- */

typedef struct IndexLoad {
    IndexEntry *entries;
    size_t n, cap;
    PrId *packs;
    size_t npacks, pcap;
} IndexLoad;

static int index_add_pack(const PrIndexPack *p, void *ud) {
    IndexLoad *l = ud;
    if (l->npacks == l->pcap) {
        size_t cap = l->pcap ? l->pcap * 2 : 64;
        PrId *q = realloc(l->packs, sizeof *q * cap);
        if (!q) return -ENOMEM;
        l->packs = q;
        l->pcap = cap;
    }
    uint32_t pi = (uint32_t)l->npacks;
    l->packs[l->npacks++] = p->pack;
    if (l->n + p->n > l->cap) {
        size_t cap = l->cap ? l->cap : 1024;
        while (cap < l->n + p->n) cap *= 2;
        IndexEntry *q = realloc(l->entries, sizeof *q * cap);
        if (!q) return -ENOMEM;
        l->entries = q;
        l->cap = cap;
    }
    for (uint32_t i = 0; i < p->n; i++) {
        const PrBlobRef *b = &p->blobs[i];
        l->entries[l->n++] = (IndexEntry){b->id, pi, b->offset, b->length, b->raw_length, b->type};
    }
    return 0;
}

static int cmp_entry(const void *a, const void *b) {
    return memcmp(((const IndexEntry *)a)->id.b, ((const IndexEntry *)b)->id.b, PR_ID_LEN);
}

/* Reads every index file without holding index_lock (lookups go on meanwhile), then swaps. */
static int load_index(PrRepo *r) {
    double t0 = pr_now();
    _cleanup_(keylist_clear) KeyList kl = {0};
    int k = pr_store_list(r->store, "index/", collect_key, &kl);
    if (k < 0) return pr_log_errno(k, "cannot list the index of %s", r->store->location);
    IndexLoad l = {0};
    for (size_t i = 0; i < kl.n; i++) {
        _cleanup_free_ void *data = NULL;
        size_t dlen;
        k = pr_store_get(r->store, kl.keys[i], 0, META_MAX, &data, &dlen);
        if (k < 0) {
            k = pr_log_errno(k, "cannot read %s", kl.keys[i]);
            break;
        }
        k = pr_index_file_decode(&r->keys, data, dlen, index_add_pack, &l);
        if (k < 0) {
            k = pr_log_errno(k, "index file %s is damaged", kl.keys[i]);
            break;
        }
    }
    if (k < 0) {
        free(l.entries);
        free(l.packs);
        return k;
    }
    if (l.n) qsort(l.entries, l.n, sizeof *l.entries, cmp_entry);
    /* a blob stored twice (two writers raced) is kept once: either copy is good */
    size_t w = 0;
    for (size_t i = 0; i < l.n; i++)
        if (w == 0 || memcmp(l.entries[w - 1].id.b, l.entries[i].id.b, PR_ID_LEN) != 0) l.entries[w++] = l.entries[i];
    l.n = w;
    pr_log(PR_LOG_DEBUG, "index: %zu blobs in %zu packs from %zu files, loaded in %.1f ms", l.n, l.npacks, kl.n,
           (pr_now() - t0) * 1e3);
    pthread_mutex_lock(&r->index_lock);
    free(r->entries);
    free(r->packs);
    r->entries = l.entries;
    r->nentries = l.n;
    r->packs = l.packs;
    r->npacks = l.npacks;
    free(r->by_pack);
    free(r->pack_first);
    free(r->packs_sorted_idx);
    r->by_pack = NULL;
    r->pack_first = NULL;
    r->packs_sorted_idx = NULL;
    r->index_loaded = true;
    pthread_mutex_unlock(&r->index_lock);
    return 0;
}

static const PrRepo *sort_ctx;
static int cmp_by_pack(const void *a, const void *b) {
    const IndexEntry *x = &sort_ctx->entries[*(const uint32_t *)a], *y = &sort_ctx->entries[*(const uint32_t *)b];
    if (x->pack != y->pack) return x->pack < y->pack ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}
static int cmp_pack_idx(const void *a, const void *b) {
    return memcmp(sort_ctx->packs[*(const uint32_t *)a].b, sort_ctx->packs[*(const uint32_t *)b].b, PR_ID_LEN);
}

/* Builds the per-pack view on first use. Caller holds index_lock. */
static int build_pack_view_locked(PrRepo *r) {
    static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
    if (r->by_pack) return 0;
    uint32_t *bp = malloc(sizeof *bp * (r->nentries ? r->nentries : 1));
    size_t *first = calloc(r->npacks + 1, sizeof *first);
    uint32_t *ps = malloc(sizeof *ps * (r->npacks ? r->npacks : 1));
    if (!bp || !first || !ps) {
        free(bp);
        free(first);
        free(ps);
        return -ENOMEM;
    }
    for (size_t i = 0; i < r->nentries; i++) bp[i] = (uint32_t)i;
    for (size_t i = 0; i < r->npacks; i++) ps[i] = (uint32_t)i;
    pthread_mutex_lock(&sort_lock); /* qsort has no context argument in C11 */
    sort_ctx = r;
    qsort(bp, r->nentries, sizeof *bp, cmp_by_pack);
    qsort(ps, r->npacks, sizeof *ps, cmp_pack_idx);
    pthread_mutex_unlock(&sort_lock);
    for (size_t i = 0; i < r->nentries; i++) first[r->entries[bp[i]].pack + 1]++;
    for (size_t p = 0; p < r->npacks; p++) first[p + 1] += first[p];
    r->by_pack = bp;
    r->pack_first = first;
    r->packs_sorted_idx = ps;
    return 0;
}

int pr_repo_prepare_index(PrRepo *r) {
    int k = pr_repo_load_index(r, false);
    if (k < 0) return k;
    pthread_mutex_lock(&r->index_lock);
    k = build_pack_view_locked(r);
    pthread_mutex_unlock(&r->index_lock);
    return k;
}

int pr_repo_pack_blobs(PrRepo *r, const PrId *pack, PrBlobRef **ret, uint32_t *ret_n) {
    int k = pr_repo_load_index(r, false);
    if (k < 0) return k;
    pthread_mutex_lock(&r->index_lock);
    k = build_pack_view_locked(r);
    size_t lo = 0, hi = k < 0 ? 0 : r->npacks;
    ssize_t found = -1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(r->packs[r->packs_sorted_idx[mid]].b, pack->b, PR_ID_LEN);
        if (c == 0) {
            found = r->packs_sorted_idx[mid];
            break;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    PrBlobRef *out = NULL;
    uint32_t n = 0;
    if (k >= 0 && found < 0) k = -ENOENT;
    if (k >= 0) {
        size_t a = r->pack_first[found], b = r->pack_first[found + 1];
        out = malloc(sizeof *out * (b > a ? b - a : 1));
        if (!out) k = -ENOMEM;
        for (size_t i = a; out && i < b; i++) {
            const IndexEntry *e = &r->entries[r->by_pack[i]];
            out[n++] = (PrBlobRef){e->id, e->type, e->offset, e->length, e->raw_length};
        }
    }
    pthread_mutex_unlock(&r->index_lock);
    if (k < 0) return k;
    *ret = out;
    *ret_n = n;
    return 0;
}

int pr_repo_load_index(PrRepo *r, bool reload) {
    pthread_mutex_lock(&r->load_lock);
    pthread_mutex_lock(&r->index_lock);
    bool need = !r->index_loaded || reload;
    pthread_mutex_unlock(&r->index_lock);
    int k = need ? load_index(r) : 0;
    pthread_mutex_unlock(&r->load_lock);
    return k;
}

int pr_repo_find_blob(PrRepo *r, const PrId *id, PrBlobLoc *ret) {
    int k = pr_repo_load_index(r, false);
    if (k < 0) return k;
    k = -ENOENT;
    pthread_mutex_lock(&r->index_lock);
    size_t lo = 0, hi = r->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(r->entries[mid].id.b, id->b, PR_ID_LEN);
        if (c == 0) {
            const IndexEntry *e = &r->entries[mid];
            if (ret)
                *ret = (PrBlobLoc){r->packs[e->pack], {e->id, e->type, e->offset, e->length, e->raw_length}};
            k = 0;
            break;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    pthread_mutex_unlock(&r->index_lock);
    return k;
}

int pr_log_blob_damaged(const char *key, const PrId *id, uint32_t offset, int err) {
    char hex[65];
    pr_hex(id->b, PR_ID_LEN, hex);
    if (err == -EBADMSG)
        pr_log(PR_LOG_ERR, "%s is damaged: blob %.16s at offset %u fails authentication", key, hex, offset);
    else if (err == -ENOMEM)
        pr_log_errno(err, "%s: cannot decode blob %.16s at offset %u", key, hex, offset);
    else
        pr_log_errno(err, "%s is damaged: blob %.16s at offset %u does not decode", key, hex, offset);
    return err;
}

int pr_log_blob_truncated(const char *key, uint32_t offset, uint32_t length) {
    pr_log(PR_LOG_ERR, "%s is truncated: blob at offset %u needs %u bytes", key, offset, length);
    return -EBADMSG;
}

int pr_repo_read_pack_window(PrRepo *r, const PrId *pack, const PrBlobRef *blobs, size_t n, PrBlobFn fn, void *ud) {
    if (n == 0) return 0;
    uint64_t start = blobs[0].offset, end = 0;
    for (size_t i = 0; i < n; i++) end = MAX(end, (uint64_t)blobs[i].offset + blobs[i].length);
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(pack, key);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t got;
    int k = pr_store_get(r->store, key, start, (size_t)(end - start), (void **)&buf, &got);
    if (k < 0) return pr_log_errno(k, "cannot read %s", key);
    if (got != end - start) {
        pr_log(PR_LOG_ERR, "%s is truncated: needed %llu bytes at offset %llu, got %zu", key,
               (unsigned long long)(end - start), (unsigned long long)start, got);
        return -EBADMSG;
    }
    /* one buffer for every blob of the window, the size of the largest */
    uint32_t raw_max = 1;
    for (size_t i = 0; i < n; i++) raw_max = MAX(raw_max, blobs[i].raw_length);
    _cleanup_free_ uint8_t *plain = malloc(raw_max);
    if (!plain) return -ENOMEM;
    pr_mem_advise_huge(plain, raw_max);
    for (size_t i = 0; i < n; i++) {
        const PrBlobRef *b = &blobs[i];
        k = pr_blob_decode_into(&r->keys, &b->id, buf + (b->offset - start), b->length, b->raw_length, plain);
        if (k < 0) pr_log_blob_damaged(key, &b->id, b->offset, k);
        k = fn(b, k < 0 ? NULL : plain, k < 0 ? k : 0, ud);
        if (k < 0) return k;
    }
    return 0;
}

static int cache_tree_blob(const PrBlobRef *b, const void *plain, int err, void *ud) {
    PrRepo *r = ud;
    if (err < 0) return 0; /* the caller falls back to reading the one blob it wants, which reports */
    PrCacheValue *v = pr_memcache_value_new(b->raw_length);
    if (!v) return 0;
    memcpy(v->data, plain, b->raw_length);
    pr_memcache_put(r->trees, b->id.b, v);
    pr_memcache_value_unref(v);
    return 0;
}

/* Fetches the tree blobs of a pack around `want` in one request, verifies and caches them all. */
static void fetch_tree_window(PrRepo *r, const PrBlobLoc *want) {
    _cleanup_free_ PrBlobRef *blobs = NULL;
    uint32_t n, m = 0;
    if (pr_repo_pack_blobs(r, &want->pack, &blobs, &n) < 0) return;
    uint64_t lo = want->ref.offset > TREE_WINDOW / 2 ? want->ref.offset - TREE_WINDOW / 2 : 0;
    uint64_t hi = lo + TREE_WINDOW;
    for (uint32_t i = 0; i < n; i++) /* keep the tree blobs inside the window, in offset order */
        if (blobs[i].type == PR_BLOB_TREE && blobs[i].offset >= lo && (uint64_t)blobs[i].offset + blobs[i].length <= hi)
            blobs[m++] = blobs[i];
    (void)pr_repo_read_pack_window(r, &want->pack, blobs, m, cache_tree_blob, r);
}

static int cached_tree(PrRepo *r, const PrId *id, void **ret, size_t *ret_len) {
    PrCacheValue *v = pr_memcache_get(r->trees, id->b);
    if (!v) return -ENOENT;
    void *copy = malloc(v->len ? v->len : 1);
    if (copy) memcpy(copy, v->data, v->len);
    size_t len = v->len;
    pr_memcache_value_unref(v);
    if (!copy) return -ENOMEM;
    *ret = copy;
    *ret_len = len;
    return 0;
}

int pr_repo_read_blob(PrRepo *r, const PrId *id, void **ret, size_t *ret_len) {
    PrBlobLoc loc;
    char hex[65], key[PR_PACK_KEY_MAX];
    int k = pr_repo_find_blob(r, id, &loc);
    if (k == -ENOENT) {
        pr_hex(id->b, PR_ID_LEN, hex);
        pr_log(PR_LOG_ERR, "blob %s is not in the index of %s", hex, r->store->location);
        return -ENOENT;
    }
    if (k < 0) return k;
    if (loc.ref.type == PR_BLOB_TREE) {
        if ((k = cached_tree(r, id, ret, ret_len)) != -ENOENT) return k;
        fetch_tree_window(r, &loc);
        if ((k = cached_tree(r, id, ret, ret_len)) != -ENOENT) return k;
    }
    pr_pack_key(&loc.pack, key);
    _cleanup_free_ void *stored = NULL;
    size_t slen;
    k = pr_store_get(r->store, key, loc.ref.offset, loc.ref.length, &stored, &slen);
    if (k < 0) return pr_log_errno(k, "cannot read %s", key);
    if (slen != loc.ref.length) {
        pr_log(PR_LOG_ERR, "%s is truncated: blob at offset %u needs %u bytes, got %zu", key, loc.ref.offset,
               loc.ref.length, slen);
        return -EBADMSG;
    }
    k = pr_blob_decode(&r->keys, id, stored, slen, loc.ref.raw_length, ret);
    if (k < 0) pr_log_blob_damaged(key, &loc.ref.id, loc.ref.offset, k);
    if (k < 0) return k;
    *ret_len = loc.ref.raw_length;
    return 0;
}

int pr_repo_read_tree(PrRepo *r, const PrId *id, PrTree **ret) {
    _cleanup_free_ void *data = NULL;
    size_t len;
    int k = pr_repo_read_blob(r, id, &data, &len);
    if (k < 0) return k;
    k = pr_tree_decode(data, len, ret);
    if (k < 0) {
        char hex[65];
        pr_hex(id->b, PR_ID_LEN, hex);
        return pr_log_errno(k, "tree %.16s is malformed", hex);
    }
    return 0;
}

/* ---- snapshots ---- */

void pr_format_time(int64_t sec, char *buf, size_t size) {
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void pr_snapshot_list_free(PrSnapshot **list, size_t n) {
    for (size_t i = 0; i < n; i++) pr_snapshot_free(list[i]);
    free(list);
}

static int cmp_snapshot(const void *a, const void *b) {
    const PrSnapshot *x = *(PrSnapshot *const *)a, *y = *(PrSnapshot *const *)b;
    if (x->time_sec != y->time_sec) return x->time_sec < y->time_sec ? -1 : 1;
    if (x->time_nsec != y->time_nsec) return x->time_nsec < y->time_nsec ? -1 : 1;
    return memcmp(x->id.b, y->id.b, PR_ID_LEN);
}

void pr_snapshot_list_sort(PrSnapshot **list, size_t n) {
    qsort(list, n, sizeof *list, cmp_snapshot);
    for (size_t i = 0; i < n; i++) {
        char base[32];
        pr_format_time(list[i]->time_sec, base, sizeof base);
        unsigned dup = 0;
        for (size_t j = i; j > 0 && list[j - 1]->time_sec == list[i]->time_sec; j--) dup++;
        if (dup) snprintf(list[i]->label, sizeof list[i]->label, "%.24s-%u", base, dup);
        else snprintf(list[i]->label, sizeof list[i]->label, "%s", base);
    }
}

int pr_repo_list_snapshots(PrRepo *r, PrSnapshot ***ret, size_t *ret_n) {
    _cleanup_(keylist_clear) KeyList kl = {0};
    int k = pr_store_list(r->store, "snapshots/", collect_key, &kl);
    if (k < 0) return pr_log_errno(k, "cannot list the snapshots of %s", r->store->location);
    PrSnapshot **list = calloc(kl.n ? kl.n : 1, sizeof *list);
    if (!list) return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < kl.n; i++) {
        _cleanup_free_ void *data = NULL;
        size_t dlen;
        k = pr_store_get(r->store, kl.keys[i], 0, META_MAX, &data, &dlen);
        if (k == -ENOENT) continue; /* removed while we listed */
        if (k < 0) {
            pr_snapshot_list_free(list, n);
            return pr_log_errno(k, "cannot read %s", kl.keys[i]);
        }
        k = pr_snapshot_decode(&r->keys, data, dlen, &list[n]);
        if (k < 0) {
            pr_snapshot_list_free(list, n);
            return pr_log_errno(k, "snapshot manifest %s is damaged", kl.keys[i]);
        }
        char hex[65];
        pr_hex(list[n]->id.b, PR_ID_LEN, hex);
        if (strcmp(kl.keys[i] + strlen("snapshots/"), hex) != 0) {
            pr_snapshot_list_free(list, n + 1);
            pr_log(PR_LOG_ERR, "snapshot manifest %s does not match its name", kl.keys[i]);
            return -EBADMSG;
        }
        n++;
    }
    pr_snapshot_list_sort(list, n);
    *ret = list;
    *ret_n = n;
    return 0;
}

int pr_repo_find_snapshot(PrRepo *r, const char *spec, PrSnapshot **ret) {
    PrSnapshot **list;
    size_t n;
    int k = pr_repo_list_snapshots(r, &list, &n);
    if (k < 0) return k;
    ssize_t found = -1;
    bool ambiguous = false;
    if (strcmp(spec, "latest") == 0) {
        if (n) found = (ssize_t)n - 1;
    } else {
        for (size_t i = 0; i < n; i++)
            if (strcmp(list[i]->label, spec) == 0) found = (ssize_t)i;
        size_t sl = strlen(spec);
        if (found < 0 && sl >= 1 && sl <= 64 && strspn(spec, "0123456789abcdef") == sl) {
            for (size_t i = 0; i < n; i++) {
                char hex[65];
                pr_hex(list[i]->id.b, PR_ID_LEN, hex);
                if (strncmp(hex, spec, sl) == 0) {
                    if (found >= 0) ambiguous = true;
                    found = (ssize_t)i;
                }
            }
        }
    }
    if (ambiguous) {
        pr_log(PR_LOG_ERR, "snapshot id prefix '%s' is ambiguous: give more digits", spec);
        k = -EEXIST;
    } else if (found < 0 && n == 0) {
        pr_log(PR_LOG_ERR, "%s has no snapshots yet", r->store->location);
        k = -ENOENT;
    } else if (found < 0) {
        pr_log(PR_LOG_ERR, "no snapshot matches '%s' in %s (see 'prafs snapshots')", spec, r->store->location);
        k = -ENOENT;
    } else {
        *ret = list[found];
        list[found] = NULL;
        k = 0;
    }
    pr_snapshot_list_free(list, n);
    return k;
}

int pr_repo_resolve(PrRepo *r, const PrSnapshot *s, const char *path, PrNode *ret) {
    PrNode cur = {.type = PR_NODE_DIR, .mode = 0755, .subtree = s->root};
    if (!(cur.name = strdup(""))) return -ENOMEM;
    _cleanup_free_ char *copy = strdup(path ? path : "");
    if (!copy) {
        pr_node_clear(&cur);
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (cur.type != PR_NODE_DIR) {
            pr_log(PR_LOG_ERR, "%s: not a directory in snapshot %s", path, s->label);
            pr_node_clear(&cur);
            return -ENOTDIR;
        }
        _cleanup_(pr_tree_freep) PrTree *t = NULL;
        int k = pr_repo_read_tree(r, &cur.subtree, &t);
        if (k < 0) {
            pr_node_clear(&cur);
            return k;
        }
        const PrNode *n = pr_tree_find(t, comp);
        if (!n) {
            pr_log(PR_LOG_ERR, "%s: no such file or directory in snapshot %s", path, s->label);
            pr_node_clear(&cur);
            return -ENOENT;
        }
        pr_node_clear(&cur);
        if ((k = pr_node_copy(n, &cur)) < 0) return k;
    }
    *ret = cur;
    return 0;
}
