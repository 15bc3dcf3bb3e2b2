/* SPDX-License-Identifier: MIT */
#include "fs/inode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache/util.h"

#define TABLE_MIN_SLOTS 1024u
#define PERMANENT_LOOKUPS (UINT64_MAX / 2)

/* ---- inodes ---- */

PrInode *pr_inode_new(uint64_t ino, uint8_t kind) {
    PrInode *i = calloc(1, sizeof *i);
    if (!i) return NULL;
    i->ino = ino;
    i->kind = kind;
    atomic_init(&i->refs, 1);
    atomic_init(&i->dirid, 0);
    return i;
}

PrInode *pr_inode_ref(PrInode *i) {
    if (i) atomic_fetch_add(&i->refs, 1);
    return i;
}

void pr_inode_unref(PrInode *i) {
    if (!i || atomic_fetch_sub(&i->refs, 1) != 1) return;
    void *file = atomic_load(&i->file);
    if (file && i->file_free) i->file_free(file);
    pr_memcache_value_unref(i->tree);
    free(i);
}

/* ---- the table: open addressing, linear probing, backward-shift deletion ---- */

struct PrInodeTable {
    pthread_mutex_t lock;
    PrInode **slots;
    size_t nslots; /* power of two */
    size_t count;
};

static size_t home(uint64_t ino, size_t nslots) {
    /* Fibonacci hashing: inode numbers are structured (D << 32 | i), the high bits of the product mix both */
    uint64_t h = ino * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return (size_t)h & (nslots - 1);
}

int pr_itable_new(PrInodeTable **ret) {
    PrInodeTable *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->nslots = TABLE_MIN_SLOTS;
    t->slots = calloc(t->nslots, sizeof *t->slots);
    if (!t->slots) {
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    *ret = t;
    return 0;
}

void pr_itable_free(PrInodeTable *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nslots; i++) pr_inode_unref(t->slots[i]);
    free(t->slots);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Slot holding ino, or the empty slot where it would go. Caller holds the lock. */
static size_t find_slot(const PrInodeTable *t, uint64_t ino) {
    size_t mask = t->nslots - 1;
    size_t i = home(ino, t->nslots);
    while (t->slots[i] && t->slots[i]->ino != ino) i = (i + 1) & mask;
    return i;
}

static int resize(PrInodeTable *t, size_t nslots) {
    PrInode **s = calloc(nslots, sizeof *s);
    if (!s) return -ENOMEM;
    for (size_t i = 0; i < t->nslots; i++) {
        PrInode *in = t->slots[i];
        if (!in) continue;
        size_t j = home(in->ino, nslots);
        while (s[j]) j = (j + 1) & (nslots - 1);
        s[j] = in;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = nslots;
    return 0;
}

static void remove_slot(PrInodeTable *t, size_t i) {
    size_t mask = t->nslots - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        PrInode *in = t->slots[j];
        if (!in) break;
        size_t k = home(in->ino, t->nslots);
        /* in may move to the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            t->slots[i] = in;
            i = j;
        }
    }
    t->slots[i] = NULL;
    t->count--;
}

int pr_itable_lookup(PrInodeTable *t, uint64_t ino, PrInode **ret) {
    pthread_mutex_lock(&t->lock);
    PrInode *in = t->slots[find_slot(t, ino)];
    if (in) {
        in->nlookup++;
        pr_inode_ref(in);
    }
    pthread_mutex_unlock(&t->lock);
    *ret = in;
    return in ? 1 : 0;
}

static int insert(PrInodeTable *t, PrInode *fresh, uint64_t lookups, PrInode **ret) {
    pthread_mutex_lock(&t->lock);
    size_t i = find_slot(t, fresh->ino);
    PrInode *in = t->slots[i];
    if (!in) {
        if ((t->count + 1) * 2 > t->nslots) {
            if (resize(t, t->nslots * 2) < 0) {
                pthread_mutex_unlock(&t->lock);
                pr_inode_unref(fresh);
                return -ENOMEM;
            }
            i = find_slot(t, fresh->ino);
        }
        in = t->slots[i] = fresh;
        fresh = NULL;
        t->count++;
    }
    in->nlookup += lookups;
    if (ret) pr_inode_ref(in);
    pthread_mutex_unlock(&t->lock);
    pr_inode_unref(fresh); /* lost the race: the one in the table wins */
    if (ret) *ret = in;
    return 0;
}

int pr_itable_insert(PrInodeTable *t, PrInode *fresh, PrInode **ret) { return insert(t, fresh, 1, ret); }

int pr_itable_insert_permanent(PrInodeTable *t, PrInode *fresh) { return insert(t, fresh, PERMANENT_LOOKUPS, NULL); }

int pr_itable_get(PrInodeTable *t, uint64_t ino, PrInode **ret) {
    pthread_mutex_lock(&t->lock);
    PrInode *in = pr_inode_ref(t->slots[find_slot(t, ino)]);
    pthread_mutex_unlock(&t->lock);
    *ret = in;
    return in ? 0 : -ENOENT;
}

int64_t pr_itable_forget(PrInodeTable *t, uint64_t ino, uint64_t n) {
    PrInode *gone = NULL;
    int64_t left;
    pthread_mutex_lock(&t->lock);
    size_t i = find_slot(t, ino);
    PrInode *in = t->slots[i];
    if (!in) {
        pthread_mutex_unlock(&t->lock);
        return -ENOENT;
    }
    in->nlookup -= MIN(n, in->nlookup);
    left = (int64_t)MIN(in->nlookup, (uint64_t)INT64_MAX);
    if (in->nlookup == 0) {
        gone = in;
        remove_slot(t, i);
        if (t->nslots > TABLE_MIN_SLOTS && t->count * 8 < t->nslots) (void)resize(t, t->nslots / 2); /* failure: stays larger */
    }
    pthread_mutex_unlock(&t->lock);
    pr_inode_unref(gone);
    return left;
}

void pr_itable_usage(PrInodeTable *t, size_t *ret_count, size_t *ret_slots) {
    pthread_mutex_lock(&t->lock);
    if (ret_count) *ret_count = t->count;
    if (ret_slots) *ret_slots = t->nslots;
    pthread_mutex_unlock(&t->lock);
}

/* ---- numbering: permanent maps (a, b) -> v, v != 0, open addressing, grow only ---- */

typedef struct MapSlot {
    uint64_t a, b, v; /* v == 0: empty */
} MapSlot;

typedef struct Map {
    MapSlot *slots;
    size_t nslots, count;
} Map;

static size_t map_home(uint64_t a, uint64_t b, size_t nslots) {
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    return (size_t)h & (nslots - 1);
}

static MapSlot *map_find(Map *m, uint64_t a, uint64_t b) {
    size_t i = map_home(a, b, m->nslots);
    while (m->slots[i].v && (m->slots[i].a != a || m->slots[i].b != b)) i = (i + 1) & (m->nslots - 1);
    return &m->slots[i];
}

static int map_init(Map *m) {
    m->nslots = 256;
    m->count = 0;
    m->slots = calloc(m->nslots, sizeof *m->slots);
    return m->slots ? 0 : -ENOMEM;
}

/* Room for one more entry. */
static int map_reserve(Map *m) {
    if ((m->count + 1) * 4 <= m->nslots * 3) return 0;
    size_t n = m->nslots * 2;
    MapSlot *s = calloc(n, sizeof *s);
    if (!s) return -ENOMEM;
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->slots[i].v) continue;
        size_t j = map_home(m->slots[i].a, m->slots[i].b, n);
        while (s[j].v) j = (j + 1) & (n - 1);
        s[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = s;
    m->nslots = n;
    return 0;
}

/* The value under (a, b); if absent, stores value_if_new there first. */
static int map_get_or_add(Map *m, uint64_t a, uint64_t b, uint64_t value_if_new, uint64_t *ret) {
    MapSlot *s = map_find(m, a, b);
    if (!s->v) {
        int r = map_reserve(m);
        if (r < 0) return r;
        s = map_find(m, a, b);
        *s = (MapSlot){a, b, value_if_new};
        m->count++;
    }
    *ret = s->v;
    return 0;
}

struct PrNumbering {
    pthread_mutex_t lock;
    Map dirs;     /* (dir ino, 0) -> dirid */
    Map volinsts; /* (snap, vol_idx) -> volinst */
    Map links;    /* (volinst, link_group) -> ino */
};

int pr_numbering_new(PrNumbering **ret) {
    PrNumbering *n = calloc(1, sizeof *n);
    if (!n) return -ENOMEM;
    pthread_mutex_init(&n->lock, NULL);
    if (map_init(&n->dirs) < 0 || map_init(&n->volinsts) < 0 || map_init(&n->links) < 0) {
        pr_numbering_free(n);
        return -ENOMEM;
    }
    *ret = n;
    return 0;
}

void pr_numbering_free(PrNumbering *n) {
    if (!n) return;
    pthread_mutex_destroy(&n->lock);
    free(n->dirs.slots);
    free(n->volinsts.slots);
    free(n->links.slots);
    free(n);
}

int pr_numbering_dirid(PrNumbering *n, uint64_t dir_ino, uint32_t *ret) {
    pthread_mutex_lock(&n->lock);
    int r = 0;
    uint64_t v;
    MapSlot *s = map_find(&n->dirs, dir_ino, 0);
    if (s->v) v = s->v;
    else if (n->dirs.count >= PR_DIRID_MAX) r = -EOVERFLOW;
    else r = map_get_or_add(&n->dirs, dir_ino, 0, n->dirs.count + 1, &v);
    pthread_mutex_unlock(&n->lock);
    if (r < 0) return r;
    *ret = (uint32_t)v;
    return 0;
}

int pr_numbering_volinst(PrNumbering *n, uint32_t snap, uint32_t vol_idx, uint32_t *ret) {
    pthread_mutex_lock(&n->lock);
    uint64_t v = 0;
    int r = n->volinsts.count >= UINT32_MAX - 1 ? -EOVERFLOW
                                                 : map_get_or_add(&n->volinsts, snap, vol_idx, n->volinsts.count + 1, &v);
    pthread_mutex_unlock(&n->lock);
    if (r < 0) return r;
    *ret = (uint32_t)v;
    return 0;
}

int pr_numbering_child(PrNumbering *n, uint32_t dirid, uint32_t idx, uint32_t volinst, uint64_t link_group,
                       uint64_t *ret) {
    if (dirid == 0 || dirid > PR_DIRID_MAX || idx >= UINT32_MAX) return -EOVERFLOW;
    uint64_t ino = (uint64_t)dirid << 32 | (idx + 1);
    if (link_group == 0) {
        *ret = ino;
        return 0;
    }
    pthread_mutex_lock(&n->lock);
    int r = map_get_or_add(&n->links, volinst, link_group, ino, ret);
    pthread_mutex_unlock(&n->lock);
    return r;
}

void pr_numbering_usage(PrNumbering *n, size_t *ret_dirs, size_t *ret_volinsts, size_t *ret_links) {
    pthread_mutex_lock(&n->lock);
    if (ret_dirs) *ret_dirs = n->dirs.count;
    if (ret_volinsts) *ret_volinsts = n->volinsts.count;
    if (ret_links) *ret_links = n->links.count;
    pthread_mutex_unlock(&n->lock);
}
