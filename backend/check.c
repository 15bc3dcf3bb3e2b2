/* SPDX-License-Identifier: MIT */
#include "backend/check.h"
#include "backend/index_files.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cache/util.h"

#define META_MAX (256u << 20)
#define MAX_PATH_LINES 1000 /* affected paths reported; the rest are counted */
#define MAX_DEPTH 4096

/* ---- an id -> u32 map (open addressing; the all-zero id is never a key) ---- */

typedef struct IdMap {
    struct Slot {
        PrId id;
        uint32_t val;
    } *slots;
    size_t cap, n;
} IdMap;

static uint32_t idmap_get(const IdMap *m, const PrId *id) {
    if (!m->cap) return 0;
    size_t mask = m->cap - 1;
    for (size_t i = pr_get_u64(id->b) & mask;; i = (i + 1) & mask) {
        if (pr_id_is_zero(&m->slots[i].id)) return 0;
        if (memcmp(m->slots[i].id.b, id->b, PR_ID_LEN) == 0) return m->slots[i].val;
    }
}

static int idmap_put(IdMap *m, const PrId *id, uint32_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        struct Slot *s = calloc(cap, sizeof *s);
        if (!s) return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (pr_id_is_zero(&m->slots[i].id)) continue;
            size_t j = pr_get_u64(m->slots[i].id.b) & (cap - 1);
            while (!pr_id_is_zero(&s[j].id)) j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    size_t mask = m->cap - 1, i = pr_get_u64(id->b) & mask;
    for (;; i = (i + 1) & mask) {
        if (pr_id_is_zero(&m->slots[i].id)) {
            m->slots[i] = (struct Slot){*id, val};
            m->n++;
            return 0;
        }
        if (memcmp(m->slots[i].id.b, id->b, PR_ID_LEN) == 0) {
            m->slots[i].val = val;
            return 0;
        }
    }
}

/* ---- state ---- */

typedef struct Pack {
    PrId id;
    const PrBlobRef *blobs; /* borrowed from Check.index */
    uint32_t n;
    uint32_t index_file; /* the first index file naming it */
    bool present;
    uint64_t size; /* from the listing */
    uint64_t need; /* the least size the index implies */
    bool bad;      /* missing or too short */
} Pack;

typedef struct Entry {
    PrId id;
    uint32_t pack, blob;
} Entry;

typedef struct Bad {
    PrId id;
    char *reason;
} Bad;

typedef struct Snap {
    PrSnapshot *s;
} Snap;

/* Trees are read a stretch of their pack at a time (they are written together: the trees of
 * ~100,000 entries fit in one), not one GET each: on S3 a GET per tree made a check of 1,000
 * directories a thousand round trips. */
#define TREE_WINDOW_MAX (16u << 20)
#define TREE_WINDOWS 4

typedef struct TreeWindow {
    PrId pack;
    uint64_t start;
    size_t len;
    uint8_t *data; /* NULL: unused */
} TreeWindow;

typedef struct Check {
    PrRepo *repo;
    PrStore *store;
    const PrCheckOptions *opts;
    PrCheckStats st;
    PrSnapshot **snaps;
    size_t nsnaps;
    PrPackIndex index;
    Pack *packs; /* packs[i] is index.packs[i] */
    size_t npacks;
    Entry *entries;
    size_t nentries;
    Bad *bad;
    size_t nbad, badcap;
    IdMap bad_map;  /* id -> position in bad + 1 */
    IdMap visited;  /* trees walked in the structural pass */
    IdMap seen;     /* data blobs already looked up */
    IdMap clean;    /* trees known to hold no bad blob (affected-path pass) */
    size_t path_lines, path_lines_dropped;
    double last_progress;
    TreeWindow windows[TREE_WINDOWS]; /* stretches of tree packs read, for the trees after */
    unsigned next_window;
} Check;

static void report(Check *c, bool error, const char *fmt, ...) _printf_(3, 4);
static void report(Check *c, bool error, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (c->opts->report) c->opts->report(error, line, c->opts->userdata);
    else pr_log(error ? PR_LOG_ERR : PR_LOG_WARN, "%s", line);
}

static void progress(Check *c, const char *phase, uint64_t done, uint64_t total, bool force) {
    if (!c->opts->progress) return;
    double now = pr_now();
    if (!force && now - c->last_progress < 0.25) return;
    c->last_progress = now;
    PrCheckProgress p = {phase, done, total, c->st.bytes_read};
    c->opts->progress(&p, c->opts->userdata);
}

/* Records a bad blob (the first reason wins). */
static int add_bad(Check *c, const PrId *id, const char *fmt, ...) _printf_(3, 4);
static int add_bad(Check *c, const PrId *id, const char *fmt, ...) {
    if (idmap_get(&c->bad_map, id)) return 0;
    if (c->nbad == c->badcap) {
        size_t cap = c->badcap ? c->badcap * 2 : 64;
        Bad *v = realloc(c->bad, sizeof *v * cap);
        if (!v) return -ENOMEM;
        c->bad = v;
        c->badcap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *reason = NULL;
    int k = vasprintf(&reason, fmt, ap);
    va_end(ap);
    if (k < 0) return -ENOMEM;
    c->bad[c->nbad] = (Bad){*id, reason};
    c->nbad++;
    return idmap_put(&c->bad_map, id, (uint32_t)c->nbad);
}

static const char *bad_reason(const Check *c, const PrId *id) {
    uint32_t v = idmap_get(&c->bad_map, id);
    return v ? c->bad[v - 1].reason : NULL;
}

/* ---- snapshots ---- */

static int load_snapshots(Check *c) {
    _cleanup_(pr_key_list_clear) PrKeyList kl = {0};
    int k = pr_store_list(c->store, "snapshots/", pr_key_list_add, &kl);
    if (k < 0) return pr_log_errno(k, "cannot list the snapshots of %s", c->store->location);
    c->snaps = calloc(kl.n ? kl.n : 1, sizeof *c->snaps);
    if (!c->snaps) return -ENOMEM;
    for (size_t i = 0; i < kl.n; i++) {
        progress(c, "snapshots", i, kl.n, false);
        _cleanup_free_ void *data = NULL;
        size_t len;
        k = pr_store_get(c->store, kl.v[i], 0, META_MAX, &data, &len);
        if (k == -ENOENT) continue; /* forgotten meanwhile */
        if (k < 0) return pr_log_errno(k, "cannot read %s", kl.v[i]);
        PrSnapshot *s = NULL;
        k = pr_snapshot_decode(pr_repo_keys(c->repo), data, len, &s);
        if (k < 0) {
            report(c, true, "%s: snapshot manifest does not decode (damaged): %s", kl.v[i], strerror(-k));
            c->st.errors++;
            c->st.damaged_snapshots++;
            continue;
        }
        char hex[65];
        pr_hex(s->id.b, PR_ID_LEN, hex);
        if (strcmp(kl.v[i] + strlen("snapshots/"), hex) != 0) {
            report(c, true, "%s: snapshot manifest does not match its name (its SHA-256 is %s)", kl.v[i], hex);
            c->st.errors++;
            c->st.damaged_snapshots++;
            pr_snapshot_free(s);
            continue;
        }
        c->snaps[c->nsnaps++] = s;
    }
    pr_snapshot_list_sort(c->snaps, c->nsnaps);
    c->st.snapshots = c->nsnaps;
    return 0;
}

/* ---- index ---- */

static int cmp_entry(const void *a, const void *b) {
    return memcmp(((const Entry *)a)->id.b, ((const Entry *)b)->id.b, PR_ID_LEN);
}

static const Entry *find_entry(const Check *c, const PrId *id) {
    size_t lo = 0, hi = c->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(c->entries[mid].id.b, id->b, PR_ID_LEN) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < c->nentries && memcmp(c->entries[lo].id.b, id->b, PR_ID_LEN) == 0 ? &c->entries[lo] : NULL;
}

/* A damaged index file is an error to report, and the check goes on without it. */
static int index_damaged(const char *key, int err, void *ud) {
    Check *c = ud;
    if (err == -ENOMEM) return err;
    report(c, true, "%s: index file does not decode (damaged): %s", key, strerror(-err));
    c->st.errors++;
    return 0;
}

static void index_progress(size_t done, size_t total, void *ud) { progress(ud, "index", done, total, false); }

static int load_index(Check *c) {
    const PrPackIndexOptions o = {
        .missing_ok = true, .damaged = index_damaged, .progress = index_progress, .userdata = c};
    int k = pr_pack_index_load(c->repo, &o, &c->index);
    c->st.index_files = c->index.files.n;
    if (k < 0) return k;
    c->packs = calloc(c->index.npacks ? c->index.npacks : 1, sizeof *c->packs);
    if (!c->packs) return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < c->index.npacks; i++) {
        const PrIndexedPack *ip = &c->index.packs[i];
        c->packs[c->npacks++] = (Pack){.id = ip->id, .blobs = ip->blobs, .n = ip->n, .index_file = ip->file};
        n += ip->n;
    }
    c->st.packs = c->npacks;
    c->entries = calloc(n ? n : 1, sizeof *c->entries);
    if (!c->entries) return -ENOMEM;
    for (size_t i = 0; i < c->npacks; i++) {
        Pack *p = &c->packs[i];
        char key[PR_PACK_KEY_MAX];
        pr_pack_key(&p->id, key);
        for (uint32_t j = 0; j < p->n; j++) {
            const PrBlobRef *b = &p->blobs[j];
            if (b->type > PR_BLOB_TREE || b->length < PR_SEAL_OVERHEAD + 1 || b->raw_length > PR_MAX_BLOB) {
                char hex[65];
                pr_hex(b->id.b, PR_ID_LEN, hex);
                report(c, true, "%s: names blob %s in %s with impossible values (type %u, length %u, raw length %u)",
                       c->index.files.v[p->index_file], hex, key, b->type, b->length, b->raw_length);
                c->st.errors++;
            }
            p->need = MAX(p->need, (uint64_t)b->offset + b->length + 4 + PR_SEAL_OVERHEAD + 4);
            c->entries[c->nentries++] = (Entry){b->id, (uint32_t)i, j};
        }
    }
    if (c->nentries) qsort(c->entries, c->nentries, sizeof *c->entries, cmp_entry);
    return 0;
}

/* ---- packs present ---- */

static int list_data(const char *key, uint64_t size, void *ud) {
    Check *c = ud;
    PrId id;
    if (pr_pack_key_parse(key, &id) < 0) {
        report(c, false, "%s: not a pack name", key);
        c->st.warnings++;
        return 0;
    }
    ssize_t i = pr_pack_index_find(&c->index, &id); /* packs[i] is index.packs[i] */
    if (i < 0) {
        c->st.packs_unreferenced++;
        pr_debug("%s is in no index", key);
        return 0;
    }
    c->packs[i].present = true;
    c->packs[i].size = size;
    return 0;
}

static int check_packs(Check *c) {
    int k = pr_store_list(c->store, "data/", list_data, c);
    if (k < 0) return pr_log_errno(k, "cannot list the packs of %s", c->store->location);
    for (size_t i = 0; i < c->npacks; i++) {
        Pack *p = &c->packs[i];
        char key[PR_PACK_KEY_MAX];
        pr_pack_key(&p->id, key);
        if (!p->present) {
            report(c, true, "%s: pack is missing (named by %s, %u blobs)", key, c->index.files.v[p->index_file], p->n);
            c->st.errors++;
            p->bad = true;
        } else if (p->size < p->need) {
            report(c, true, "%s: pack is %llu bytes, but %s places blobs in it up to byte %llu (truncated)", key,
                   (unsigned long long)p->size, c->index.files.v[p->index_file],
                   (unsigned long long)(p->need - 4 - PR_SEAL_OVERHEAD - 4));
            c->st.errors++;
            p->bad = true;
        }
    }
    if (c->st.packs_unreferenced) {
        report(c, false, "%zu pack%s in data/ %s in no index (left by interrupted writers or prunes; prune removes them)",
               c->st.packs_unreferenced, c->st.packs_unreferenced == 1 ? "" : "s",
               c->st.packs_unreferenced == 1 ? "is" : "are");
        c->st.warnings++;
    }
    return 0;
}

/* ---- trees ---- */

/* The stored bytes of blob b of pack p from a window of that pack (read now if none holds it):
 * borrowed, valid until the next call. NULL when the window cannot be read: the caller reads the
 * blob alone, and reports what that finds. */
static const uint8_t *tree_window(Check *c, const Pack *p, const PrBlobRef *b) {
    for (unsigned i = 0; i < TREE_WINDOWS; i++) {
        const TreeWindow *w = &c->windows[i];
        if (w->data && memcmp(w->pack.b, p->id.b, PR_ID_LEN) == 0 && b->offset >= w->start &&
            (uint64_t)b->offset + b->length <= w->start + w->len)
            return w->data + (b->offset - w->start);
    }
    /* the whole pack as far as its blobs go (the index says where the last one ends), or as much of
     * it around this blob (the walk goes from parents, written last, to children, written before) */
    uint64_t bend = (uint64_t)b->offset + b->length, start = 0, end = p->need;
    if (b->length > TREE_WINDOW_MAX || bend > p->need) return NULL;
    if (end > TREE_WINDOW_MAX) {
        start = b->offset > TREE_WINDOW_MAX / 2 ? b->offset - TREE_WINDOW_MAX / 2 : 0;
        end = MIN(p->need, start + TREE_WINDOW_MAX);
        if (end < bend) {
            end = bend;
            start = bend - TREE_WINDOW_MAX;
        }
    }
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&p->id, key);
    void *data = NULL;
    size_t len = 0;
    if (pr_store_get(c->store, key, start, (size_t)(end - start), &data, &len) < 0 ||
        len < (uint64_t)b->offset + b->length - start) {
        free(data);
        return NULL;
    }
    TreeWindow *w = &c->windows[c->next_window++ % TREE_WINDOWS];
    free(w->data);
    *w = (TreeWindow){.pack = p->id, .start = start, .len = len, .data = data};
    return w->data + (b->offset - start);
}

/* Reads a tree through this check's own view of the index. On failure *ret_why says why. */
static int read_tree(Check *c, const PrId *id, PrTree **ret, char *why, size_t whysize) {
    const Entry *e = find_entry(c, id);
    if (!e) {
        snprintf(why, whysize, "tree is not in the index");
        return -ENOENT;
    }
    const Pack *p = &c->packs[e->pack];
    const PrBlobRef *b = &p->blobs[e->blob];
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&p->id, key);
    if (p->bad) {
        snprintf(why, whysize, "tree is in %s, which is %s", key, p->present ? "truncated" : "missing");
        return -ENOENT;
    }
    _cleanup_free_ void *stored = NULL, *plain = NULL;
    size_t len = b->length;
    int k = 0;
    const uint8_t *in_window = tree_window(c, p, b);
    if (!in_window) k = pr_store_get(c->store, key, b->offset, b->length, &stored, &len);
    if (k == -ENOENT) {
        snprintf(why, whysize, "tree is in %s, which is missing", key);
        return k;
    }
    if (k < 0) return pr_log_errno(k, "cannot read %s", key);
    if (len != b->length) {
        snprintf(why, whysize, "tree at offset %u of %s is cut short", b->offset, key);
        return -EBADMSG;
    }
    k = pr_blob_decode(pr_repo_keys(c->repo), id, in_window ? in_window : stored, len, b->raw_length, &plain);
    if (k == -ENOMEM) return k;
    if (k < 0) {
        snprintf(why, whysize, "tree at offset %u of %s is damaged (does not authenticate)", b->offset, key);
        return k;
    }
    k = pr_tree_decode(plain, b->raw_length, ret);
    if (k == -ENOMEM) return k;
    if (k < 0) {
        snprintf(why, whysize, "tree at offset %u of %s is malformed", b->offset, key);
        return k;
    }
    return 0;
}

/* Is the blob indexed in a pack that is there? Records it as bad if not. */
static int check_ref(Check *c, const PrId *id, bool tree_blob) {
    const Entry *e = find_entry(c, id);
    char hex[65];
    if (!e) {
        pr_hex(id->b, PR_ID_LEN, hex);
        report(c, true, "blob %s: %s is not in the index", hex, tree_blob ? "tree" : "data");
        c->st.errors++;
        return add_bad(c, id, "%s blob %.16s is not in the index", tree_blob ? "tree" : "data", hex);
    }
    const Pack *p = &c->packs[e->pack];
    if (p->bad) {
        char key[PR_PACK_KEY_MAX];
        pr_pack_key(&p->id, key);
        return add_bad(c, id, "%s is in %s, which is %s", tree_blob ? "its tree" : "its data", key,
                       p->present ? "truncated" : "missing");
    }
    return 0;
}

static int walk_structure(Check *c) {
    PrId *stack = NULL;
    size_t n = 0, cap = 0;
    int k = 0;
    for (size_t s = 0; s < c->nsnaps && k >= 0; s++) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            PrId *v = realloc(stack, sizeof *v * cap);
            if (!v) {
                k = -ENOMEM;
                break;
            }
            stack = v;
        }
        stack[n++] = c->snaps[s]->root;
        while (n && k >= 0) {
            PrId id = stack[--n];
            if (idmap_get(&c->visited, &id)) continue;
            if ((k = idmap_put(&c->visited, &id, 1)) < 0) break;
            if ((k = check_ref(c, &id, true)) < 0) break;
            if (bad_reason(c, &id)) continue;
            _cleanup_(pr_tree_freep) PrTree *t = NULL;
            char why[512];
            k = read_tree(c, &id, &t, why, sizeof why);
            if (k == -ENOMEM) break;
            if (k < 0) {
                char hex[65];
                pr_hex(id.b, PR_ID_LEN, hex);
                report(c, true, "tree %s: %s", hex, why);
                c->st.errors++;
                k = add_bad(c, &id, "%s", why);
                continue;
            }
            c->st.trees++;
            progress(c, "trees", c->st.trees, 0, false);
            for (uint32_t i = 0; i < t->n && k >= 0; i++) {
                const PrNode *node = &t->nodes[i];
                if (node->type == PR_NODE_DIR) {
                    if (n == cap) {
                        cap *= 2;
                        PrId *v = realloc(stack, sizeof *v * cap);
                        if (!v) {
                            k = -ENOMEM;
                            break;
                        }
                        stack = v;
                    }
                    stack[n++] = node->subtree;
                }
                if (node->type != PR_NODE_FILE) continue;
                for (uint32_t j = 0; j < node->nchunks && k >= 0; j++) {
                    const PrId *cid = &node->chunks[j].id;
                    if (pr_id_is_zero(cid) || idmap_get(&c->seen, cid)) continue;
                    if ((k = idmap_put(&c->seen, cid, 1)) < 0) break;
                    c->st.blobs_referenced++;
                    k = check_ref(c, cid, false);
                }
            }
        }
    }
    progress(c, "trees", c->st.trees, c->st.trees, true);
    free(stack);
    return k;
}

/* ---- reading every byte ---- */

static int cmp_ref_offset(const void *a, const void *b) {
    const PrBlobRef *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* What reading one pack found, worked out by a fetch thread (nothing shared is touched there) and
 * reported in pack order by the caller's thread. */
typedef struct Examined {
    int err;        /* the GET's (0, -ENOENT: missing, other: cannot read), or -ENOMEM */
    size_t len;
    bool hash_bad;  /* content does not match the pack's name */
    int trailer;    /* 0 agrees with the index, 1 does not decode, 2 disagrees */
    uint32_t tn;    /* blobs the trailer lists */
    uint32_t *bad;  /* blobs that are cut short or damaged: index in the pack's blobs */
    uint8_t *why;   /* per bad blob: 0 past the end, 1 does not authenticate or decompress, 2 wrong hash */
    uint32_t nbad;
} Examined;

static void examined_clear(Examined *x) {
    free(x->bad);
    free(x->why);
    *x = (Examined){0};
}

static int note_bad_blob(Examined *x, uint32_t j, uint8_t why, uint32_t cap) {
    if (!x->bad) {
        x->bad = malloc(sizeof *x->bad * cap);
        x->why = malloc(cap);
        if (!x->bad || !x->why) return -ENOMEM;
    }
    x->bad[x->nbad] = j;
    x->why[x->nbad++] = why;
    return 0;
}

/* Checks pack p's bytes: its name, its trailer against the index, every blob where the index places
 * it (decrypted, decompressed, hashed). */
static void examine_pack(Check *c, const Pack *p, const uint8_t *data, size_t len, Examined *x) {
    x->len = len;
    uint8_t h[32];
    pr_sha256(data, len, h);
    x->hash_bad = memcmp(h, p->id.b, PR_ID_LEN) != 0;
    _cleanup_free_ PrBlobRef *trailer = NULL;
    int k = pr_pack_trailer_decode(pr_repo_keys(c->repo), data, len, len, &trailer, &x->tn, NULL);
    if (k == -ENOMEM) {
        x->err = k;
        return;
    }
    if (k < 0) {
        x->trailer = 1;
    } else {
        _cleanup_free_ PrBlobRef *idx = malloc(sizeof *idx * (p->n ? p->n : 1));
        if (!idx) {
            x->err = -ENOMEM;
            return;
        }
        memcpy(idx, p->blobs, sizeof *idx * p->n);
        qsort(idx, p->n, sizeof *idx, cmp_ref_offset);
        qsort(trailer, x->tn, sizeof *trailer, cmp_ref_offset);
        bool same = x->tn == p->n;
        for (uint32_t j = 0; same && j < x->tn; j++)
            same = memcmp(idx[j].id.b, trailer[j].id.b, PR_ID_LEN) == 0 && idx[j].type == trailer[j].type &&
                   idx[j].offset == trailer[j].offset && idx[j].length == trailer[j].length &&
                   idx[j].raw_length == trailer[j].raw_length;
        if (!same) x->trailer = 2;
    }
    for (uint32_t j = 0; j < p->n; j++) {
        const PrBlobRef *b = &p->blobs[j];
        uint8_t why;
        if ((uint64_t)b->offset + b->length > len) {
            why = 0;
        } else {
            _cleanup_free_ void *plain = NULL;
            k = pr_blob_decode(pr_repo_keys(c->repo), &b->id, data + b->offset, b->length, b->raw_length, &plain);
            if (k == -ENOMEM) {
                x->err = k;
                return;
            }
            if (k == 0) {
                PrId id;
                pr_blob_id(pr_repo_keys(c->repo), plain, b->raw_length, &id);
                if (memcmp(id.b, b->id.b, PR_ID_LEN) == 0) continue;
                why = 2;
            } else {
                why = 1;
            }
        }
        if (note_bad_blob(x, j, why, p->n) < 0) {
            x->err = -ENOMEM;
            return;
        }
    }
}

/* Reports what reading pack p found. */
static int report_pack(Check *c, Pack *p, const Examined *x) {
    char key[PR_PACK_KEY_MAX], hex[65];
    pr_pack_key(&p->id, key);
    int k = x->err;
    if (k == -ENOENT) {
        report(c, true, "%s: pack is missing (named by %s)", key, c->index.files.v[p->index_file]);
        c->st.errors++;
        p->bad = true;
        for (uint32_t j = 0; j < p->n; j++)
            if ((k = add_bad(c, &p->blobs[j].id, "its data is in %s, which is missing", key)) < 0) return k;
        return 0;
    }
    if (k == -ENOMEM) return k;
    if (k < 0) return pr_log_errno(k, "cannot read %s", key);
    c->st.bytes_read += x->len;
    c->st.packs_read++;
    if (x->hash_bad) {
        report(c, true, "%s: pack content does not match its name (damaged)", key);
        c->st.errors++;
    }
    if (x->trailer == 1) {
        report(c, true, "%s: pack trailer does not decode (damaged)", key);
        c->st.errors++;
    } else if (x->trailer == 2) {
        report(c, true, "%s: pack trailer (%u blobs) and %s (%u blobs) disagree", key, x->tn,
               c->index.files.v[p->index_file], p->n);
        c->st.errors++;
    }
    for (uint32_t i = 0; i < x->nbad; i++) {
        const PrBlobRef *b = &p->blobs[x->bad[i]];
        pr_hex(b->id.b, PR_ID_LEN, hex);
        const char *what = b->type == PR_BLOB_TREE ? "tree" : "data";
        c->st.errors++;
        if (x->why[i] == 0) {
            report(c, true, "%s: %s blob %s at offset %u (%u bytes) lies past the end of the pack", key, what, hex,
                   b->offset, b->length);
            k = add_bad(c, &b->id, "%s blob %.16s at offset %u of %s is cut short", what, hex, b->offset, key);
        } else {
            report(c, true, "%s: %s blob %s at offset %u (%u bytes) is damaged: it does not %s", key, what, hex,
                   b->offset, b->length, x->why[i] == 2 ? "hash to its id" : "authenticate or decompress");
            k = add_bad(c, &b->id, "%s blob %.16s at offset %u of %s is damaged", what, hex, b->offset, key);
        }
        if (k < 0) return k;
    }
    return 0;
}

/* The packs are fetched and examined by READ_THREADS threads, at most READ_AHEAD of them ahead of
 * the one being reported, and reported in order on the caller's thread (which alone touches the
 * check's state): one pack at a time, a check waited on round trips and the server's pace, then
 * verified on one core. */
#define READ_THREADS 4
#define READ_AHEAD 6

typedef struct Fetched {
    Examined x;
    bool done;
} Fetched;

typedef struct Reader {
    Check *c;
    const size_t *order;
    size_t want;
    Fetched *slots;
    size_t next, verified; /* under lock */
    bool stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} Reader;

static void fetch_and_examine(Check *c, const Pack *p, Examined *x) {
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&p->id, key);
    uint8_t *data = NULL;
    size_t len = 0;
    x->err = pr_store_get(c->store, key, 0, 0, (void **)&data, &len);
    if (x->err >= 0) examine_pack(c, p, data, len, x);
    free(data);
}

static void *read_main(void *arg) {
    Reader *rd = arg;
    pthread_mutex_lock(&rd->lock);
    for (;;) {
        while (!rd->stop && rd->next < rd->want && rd->next >= rd->verified + READ_AHEAD)
            pthread_cond_wait(&rd->cond, &rd->lock);
        if (rd->stop || rd->next >= rd->want) break;
        size_t i = rd->next++;
        pthread_mutex_unlock(&rd->lock);
        Fetched f = {.done = true};
        fetch_and_examine(rd->c, &rd->c->packs[rd->order[i]], &f.x);
        pthread_mutex_lock(&rd->lock);
        rd->slots[i] = f;
        pthread_cond_broadcast(&rd->cond);
    }
    pthread_mutex_unlock(&rd->lock);
    return NULL;
}

static int read_packs(Check *c, const size_t *order, size_t want) {
    Reader rd = {.c = c, .order = order, .want = want, .slots = calloc(want ? want : 1, sizeof(Fetched))};
    if (!rd.slots) return -ENOMEM;
    pthread_mutex_init(&rd.lock, NULL);
    pthread_cond_init(&rd.cond, NULL);
    pthread_t th[READ_THREADS];
    unsigned started = 0;
    for (; started < READ_THREADS && started < want; started++)
        if (pthread_create(&th[started], NULL, read_main, &rd) != 0) break;
    int k = 0;
    for (size_t i = 0; i < want && k >= 0; i++) {
        progress(c, "read", i, want, false);
        Fetched f = {.done = true};
        pthread_mutex_lock(&rd.lock);
        if (!started && rd.next == i) { /* no thread: fetch it here */
            rd.next++;
            pthread_mutex_unlock(&rd.lock);
            fetch_and_examine(c, &c->packs[order[i]], &f.x);
        } else {
            while (!rd.slots[i].done) pthread_cond_wait(&rd.cond, &rd.lock);
            f = rd.slots[i];
            rd.slots[i] = (Fetched){0};
            rd.verified = i + 1;
            pthread_cond_broadcast(&rd.cond);
            pthread_mutex_unlock(&rd.lock);
        }
        k = report_pack(c, &c->packs[order[i]], &f.x);
        examined_clear(&f.x);
    }
    pthread_mutex_lock(&rd.lock);
    rd.stop = true;
    pthread_cond_broadcast(&rd.cond);
    pthread_mutex_unlock(&rd.lock);
    for (unsigned t = 0; t < started; t++) pthread_join(th[t], NULL);
    for (size_t i = 0; i < want; i++) examined_clear(&rd.slots[i].x);
    free(rd.slots);
    pthread_mutex_destroy(&rd.lock);
    pthread_cond_destroy(&rd.cond);
    if (k >= 0) progress(c, "read", want, want, true);
    return k;
}

static int read_data(Check *c) {
    size_t n = 0;
    _cleanup_free_ size_t *order = malloc(sizeof *order * (c->npacks ? c->npacks : 1));
    if (!order) return -ENOMEM;
    for (size_t i = 0; i < c->npacks; i++)
        if (c->packs[i].present) order[n++] = i;
    size_t want = n;
    double pct = c->opts->subset_percent;
    if (pct > 0 && pct < 100) {
        want = (size_t)((double)n * pct / 100.0 + 0.999999);
        if (want < 1 && n) want = 1;
        if (want > n) want = n;
        /* a random choice: Fisher-Yates on the first `want` places */
        for (size_t i = 0; i < want; i++) {
            uint64_t rnd;
            int k = pr_random(&rnd, sizeof rnd);
            if (k < 0) return k;
            size_t j = i + (size_t)(rnd % (n - i));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    return read_packs(c, order, want);
}

/* ---- who is affected ---- */

static void path_line(Check *c, const PrSnapshot *s, const char *path, const char *reason) {
    if (c->path_lines >= MAX_PATH_LINES) {
        c->path_lines_dropped++;
        return;
    }
    c->path_lines++;
    char hex[65];
    pr_hex(s->id.b, PR_ID_LEN, hex);
    report(c, true, "snapshot %s (%.8s): %s: %s", s->label, hex, *path ? path : "/", reason);
}

/* Reports every path under tree `id` that a bad blob affects; returns 1 if there is one. */
static int affected(Check *c, const PrSnapshot *s, const PrId *id, const char *path, unsigned depth) {
    if (idmap_get(&c->clean, id)) return 0;
    const char *why = bad_reason(c, id);
    if (why) {
        path_line(c, s, path, why);
        return 1;
    }
    if (depth > MAX_DEPTH) return 0;
    _cleanup_(pr_tree_freep) PrTree *t = NULL;
    char buf[512];
    int k = read_tree(c, id, &t, buf, sizeof buf);
    if (k == -ENOMEM) return k;
    if (k < 0) {
        path_line(c, s, path, buf);
        return 1;
    }
    int tainted = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const PrNode *node = &t->nodes[i];
        _cleanup_free_ char *child = NULL;
        if (asprintf(&child, "%s%s%s", path, *path ? "/" : "", node->name) < 0) return -ENOMEM;
        if (node->type == PR_NODE_DIR) {
            k = affected(c, s, &node->subtree, child, depth + 1);
            if (k < 0) return k;
            tainted |= k;
        } else if (node->type == PR_NODE_FILE) {
            for (uint32_t j = 0; j < node->nchunks; j++) {
                const char *r = pr_id_is_zero(&node->chunks[j].id) ? NULL : bad_reason(c, &node->chunks[j].id);
                if (r) {
                    path_line(c, s, child, r);
                    tainted = 1;
                    break;
                }
            }
        }
    }
    if (!tainted && (k = idmap_put(&c->clean, id, 1)) < 0) return k;
    return tainted;
}

static int report_affected(Check *c) {
    if (!c->nbad) return 0;
    for (size_t s = 0; s < c->nsnaps; s++) {
        int k = affected(c, c->snaps[s], &c->snaps[s]->root, "", 0);
        if (k < 0) return k;
        if (k) c->st.damaged_snapshots++;
    }
    if (c->path_lines_dropped)
        report(c, true, "... and %zu more affected paths", c->path_lines_dropped);
    return 0;
}

int pr_check(PrRepo *r, const PrCheckOptions *opts, PrCheckStats *ret_stats) {
    Check c = {.repo = r, .store = pr_repo_store(r), .opts = opts};
    /* snapshots, then the index, then the packs: what a writer publishes (packs, index, manifest)
     * is always seen complete */
    int k = load_snapshots(&c);
    if (k >= 0) k = load_index(&c);
    if (k >= 0) k = check_packs(&c);
    if (k >= 0) k = walk_structure(&c);
    if (k >= 0 && opts->read_data) k = read_data(&c);
    if (k >= 0) k = report_affected(&c);

    if (ret_stats) *ret_stats = c.st;
    pr_snapshot_list_free(c.snaps, c.nsnaps);
    pr_pack_index_clear(&c.index);
    free(c.packs);
    free(c.entries);
    for (size_t i = 0; i < c.nbad; i++) free(c.bad[i].reason);
    free(c.bad);
    free(c.bad_map.slots);
    free(c.visited.slots);
    free(c.seen.slots);
    free(c.clean.slots);
    for (unsigned i = 0; i < TREE_WINDOWS; i++) free(c.windows[i].data);
    if (k < 0) return k;
    return c.st.errors ? -EBADMSG : 0;
}
