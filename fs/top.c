/* SPDX-License-Identifier: MIT */
#include "fs/top.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache/util.h"

typedef struct VNode {
    char *path;       /* "" for the root; the registry's key */
    const char *name; /* last component, inside path (name_len bytes: a variant may follow) */
    size_t name_len;
    uint8_t type;
    bool live, latest;
    uint32_t parent;
    uint32_t snap;
    char *volume; /* VOL */
    char *target; /* LINK */
    uint32_t *children;
    uint32_t nchildren, cap;
} VNode;

typedef struct Snap {
    PrSnapshot *s;
    bool live;
} Snap;

struct PrTop {
    PrRepo *repo;
    int64_t refresh_ns;
    pthread_rwlock_t lock;        /* everything below */
    pthread_mutex_t refresh_lock; /* one refresh at a time */
    atomic_int_fast64_t last_refresh;

    /* the background refresher: kicked by lookups, so that they never wait on the store */
    pthread_mutex_t kick_lock;
    pthread_cond_t kick_cond;
    bool kicked, stopping, started;
    pthread_t thread;
    bool (*index_used)(void *ud);
    void *index_used_ud;

    Snap *snaps;
    uint32_t nsnaps, snaps_cap;
    bool listed;             /* the first listing is done */
    struct timespec changed; /* when a later listing changed the set of snapshots (0: never) */
    atomic_bool acls_off, xattrs_off;
    VNode **vnodes;
    uint32_t nvnodes, vnodes_cap;
    uint32_t *map; /* open addressing on path: vnode index + 1, 0 empty */
    size_t map_slots;
};

static int64_t now_ns(void) { return (int64_t)(pr_now() * 1e9); }

void pr_ventry_clear(PrVEntry *e) {
    if (!e) return;
    free(e->name);
    free(e->volume);
    e->name = e->volume = NULL;
}

void pr_ventry_list_free(PrVEntry *list, size_t n) {
    for (size_t i = 0; i < n; i++) pr_ventry_clear(&list[i]);
    free(list);
}

/* ---- the path registry ---- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ^ (h >> 32);
}

static uint32_t map_find(const PrTop *t, const char *path, size_t *ret_slot) {
    size_t i = (size_t)hash_str(path) & (t->map_slots - 1);
    while (t->map[i] && strcmp(t->vnodes[t->map[i] - 1]->path, path) != 0) i = (i + 1) & (t->map_slots - 1);
    if (ret_slot) *ret_slot = i;
    return t->map[i];
}

static int map_grow(PrTop *t) {
    size_t n = t->map_slots ? t->map_slots * 2 : 256;
    uint32_t *m = calloc(n, sizeof *m);
    if (!m) return -ENOMEM;
    for (uint32_t v = 0; v < t->nvnodes; v++) {
        size_t i = (size_t)hash_str(t->vnodes[v]->path) & (n - 1);
        while (m[i]) i = (i + 1) & (n - 1);
        m[i] = v + 1;
    }
    free(t->map);
    t->map = m;
    t->map_slots = n;
    return 0;
}

static int child_add(VNode *p, uint32_t c) {
    if (p->nchildren == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 8;
        uint32_t *v = realloc(p->children, sizeof *v * cap);
        if (!v) return -ENOMEM;
        p->children = v;
        p->cap = cap;
    }
    p->children[p->nchildren++] = c;
    return 0;
}

/* The vnode for parent/name (created if new), made live this round and linked into its parent once.
 * variant (NULL for most) makes a distinct entry under the same name: `latest` links are keyed by
 * their target, so a new target is a new symlink (a new inode, as `ln -sfn` would make), never a
 * changed one the kernel may have cached. No real path has "//" in it, so keys cannot collide. */
static int ensure_variant(PrTop *t, uint32_t parent, const char *name, const char *variant, uint8_t type,
                          uint32_t *ret) {
    _cleanup_free_ char *path = NULL;
    const char *pp = t->vnodes[parent]->path;
    if (asprintf(&path, "%s%s%s%s%s", pp, *pp ? "/" : "", name, variant ? "//" : "", variant ? variant : "") < 0)
        return -ENOMEM;
    uint32_t idx = map_find(t, path, NULL);
    VNode *v;
    if (idx) {
        v = t->vnodes[--idx];
    } else {
        if ((t->nvnodes + 1) * 2 > t->map_slots && map_grow(t) < 0) return -ENOMEM;
        if (t->nvnodes == t->vnodes_cap) {
            uint32_t cap = t->vnodes_cap ? t->vnodes_cap * 2 : 64;
            VNode **a = realloc(t->vnodes, sizeof *a * cap);
            if (!a) return -ENOMEM;
            t->vnodes = a;
            t->vnodes_cap = cap;
        }
        if (t->nvnodes >= UINT32_MAX - 2) return -EOVERFLOW;
        v = calloc(1, sizeof *v);
        if (!v) return -ENOMEM;
        v->path = TAKE_PTR(path);
        v->name = v->path + strlen(pp) + (*pp ? 1 : 0); /* name, up to the variant's "//" */
        v->name_len = strlen(name);
        v->parent = parent;
        idx = t->nvnodes;
        t->vnodes[t->nvnodes++] = v;
        size_t slot;
        map_find(t, v->path, &slot);
        t->map[slot] = idx + 1;
    }
    v->type = type;
    if (!v->live) {
        v->live = true;
        int r = child_add(t->vnodes[parent], idx);
        if (r < 0) return r;
    }
    *ret = idx;
    return 0;
}

static int ensure(PrTop *t, uint32_t parent, const char *name, uint8_t type, uint32_t *ret) {
    return ensure_variant(t, parent, name, NULL, type, ret);
}

static int set_str(char **dst, const char *src) {
    if (*dst && strcmp(*dst, src) == 0) return 0;
    char *s = strdup(src);
    if (!s) return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

/* A name usable as one path component (tags and hosts are free text). */
static char *component(const char *s) {
    if (!s || !*s) return strdup("_");
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return strdup("_");
    char *c = strndup(s, 255);
    if (!c) return NULL;
    for (char *p = c; *p; p++)
        if (*p == '/') *p = '_';
    return c;
}

/* Compares a vnode's name (name_len bytes) with a NUL-terminated name, as strcmp would. */
static int vname_cmp(const VNode *v, const char *name) {
    size_t l = strlen(name);
    int c = memcmp(v->name, name, MIN(l, v->name_len));
    if (c) return c;
    return v->name_len < l ? -1 : v->name_len > l;
}

static int vnode_cmp(const VNode *a, const VNode *b) {
    int c = memcmp(a->name, b->name, MIN(a->name_len, b->name_len));
    if (c) return c;
    return a->name_len < b->name_len ? -1 : a->name_len > b->name_len;
}

static PrTop *sort_top; /* qsort has no context; rebuild holds the write lock and sort_lock */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
static int cmp_snap_id(const void *a, const void *b) {
    return memcmp(sort_top->snaps[*(const uint32_t *)a].s->id.b, sort_top->snaps[*(const uint32_t *)b].s->id.b, PR_ID_LEN);
}
static int cmp_child(const void *a, const void *b) {
    return vnode_cmp(sort_top->vnodes[*(const uint32_t *)a], sort_top->vnodes[*(const uint32_t *)b]);
}

/* Caller holds the write lock. */
static int rebuild(PrTop *t) {
    for (uint32_t i = 0; i < t->nvnodes; i++) {
        t->vnodes[i]->live = false;
        t->vnodes[i]->nchildren = 0;
    }
    t->vnodes[0]->live = true;
    uint32_t snapshots, volumes, tags, hosts, ids, v;
    int r;
    if ((r = ensure(t, 0, "snapshots", PR_VNODE_DIR, &snapshots)) < 0 ||
        (r = ensure(t, 0, "volumes", PR_VNODE_DIR, &volumes)) < 0 || (r = ensure(t, 0, "tags", PR_VNODE_DIR, &tags)) < 0 ||
        (r = ensure(t, 0, "hosts", PR_VNODE_DIR, &hosts)) < 0 || (r = ensure(t, 0, "ids", PR_VNODE_DIR, &ids)) < 0)
        return r;
    /* ids/: the shortest prefix of at least 8 digits that no other live snapshot shares */
    _cleanup_free_ uint8_t *idlen = calloc(t->nsnaps ? t->nsnaps : 1, 1);
    _cleanup_free_ uint32_t *order = calloc(t->nsnaps ? t->nsnaps : 1, sizeof *order);
    if (!idlen || !order) return -ENOMEM;
    uint32_t nlive = 0;
    for (uint32_t si = 0; si < t->nsnaps; si++)
        if (t->snaps[si].live) order[nlive++] = si;
    pthread_mutex_lock(&sort_lock);
    sort_top = t;
    qsort(order, nlive, sizeof *order, cmp_snap_id);
    pthread_mutex_unlock(&sort_lock);
    for (uint32_t k = 0; k < nlive; k++) {
        size_t len = 8;
        for (int d = -1; d <= 1; d += 2) {
            if ((d < 0 && k == 0) || (d > 0 && k + 1 == nlive)) continue;
            const uint8_t *a = t->snaps[order[k]].s->id.b, *b = t->snaps[order[k + d]].s->id.b;
            size_t common = 0; /* in hex digits */
            while (common < 64 && ((a[common / 2] >> (common % 2 ? 0 : 4)) & 15) == ((b[common / 2] >> (common % 2 ? 0 : 4)) & 15))
                common++;
            len = MAX(len, MIN(common + 1, (size_t)64));
        }
        idlen[order[k]] = (uint8_t)len;
    }
    uint32_t last = UINT32_MAX;
    for (uint32_t si = 0; si < t->nsnaps; si++) {
        if (!t->snaps[si].live) continue;
        const PrSnapshot *s = t->snaps[si].s;
        if (last == UINT32_MAX || s->time_sec > t->snaps[last].s->time_sec ||
            (s->time_sec == t->snaps[last].s->time_sec && strcmp(s->label, t->snaps[last].s->label) > 0))
            last = si;
        if ((r = ensure(t, snapshots, s->label, PR_VNODE_SNAP, &v)) < 0) return r;
        t->vnodes[v]->snap = si;

        char hex[65];
        pr_hex(s->id.b, PR_ID_LEN, hex);
        hex[idlen[si]] = 0;
        _cleanup_free_ char *target = NULL;
        if (asprintf(&target, "../snapshots/%s", s->label) < 0) return -ENOMEM;
        if ((r = ensure(t, ids, hex, PR_VNODE_LINK, &v)) < 0) return r;
        t->vnodes[v]->snap = si;
        if ((r = set_str(&t->vnodes[v]->target, target)) < 0) return r;

        free(target);
        target = NULL;
        if (asprintf(&target, "../../snapshots/%s", s->label) < 0) return -ENOMEM;
        for (uint32_t k = 0; k < s->nvolumes; k++) {
            _cleanup_free_ char *name = component(s->volumes[k].name);
            uint32_t vd;
            if (!name) return -ENOMEM;
            if ((r = ensure(t, volumes, name, PR_VNODE_DIR, &vd)) < 0) return r;
            if ((r = ensure(t, vd, s->label, PR_VNODE_VOL, &v)) < 0) return r;
            t->vnodes[v]->snap = si;
            if ((r = set_str(&t->vnodes[v]->volume, s->volumes[k].name)) < 0) return r;
        }
        for (uint32_t k = 0; k < s->ntags; k++) {
            _cleanup_free_ char *name = component(s->tags[k]);
            uint32_t td;
            if (!name) return -ENOMEM;
            if ((r = ensure(t, tags, name, PR_VNODE_DIR, &td)) < 0) return r;
            if ((r = ensure(t, td, s->label, PR_VNODE_LINK, &v)) < 0) return r;
            t->vnodes[v]->snap = si;
            if ((r = set_str(&t->vnodes[v]->target, target)) < 0) return r;
        }
        _cleanup_free_ char *host = component(s->host);
        uint32_t hd;
        if (!host) return -ENOMEM;
        if ((r = ensure(t, hosts, host, PR_VNODE_DIR, &hd)) < 0) return r;
        if ((r = ensure(t, hd, s->label, PR_VNODE_LINK, &v)) < 0) return r;
        t->vnodes[v]->snap = si;
        if ((r = set_str(&t->vnodes[v]->target, target)) < 0) return r;
    }
    if (last != UINT32_MAX) {
        if ((r = ensure_variant(t, snapshots, "latest", t->snaps[last].s->label, PR_VNODE_LINK, &v)) < 0) return r;
        t->vnodes[v]->latest = true;
        t->vnodes[v]->snap = last;
        if ((r = set_str(&t->vnodes[v]->target, t->snaps[last].s->label)) < 0) return r;
        /* volumes/<vol>/latest: the newest of its own labels (children are not sorted yet: scan) */
        VNode *vols = t->vnodes[volumes];
        for (uint32_t k = 0; k < vols->nchildren; k++) {
            uint32_t vd = vols->children[k];
            uint32_t best = UINT32_MAX;
            for (uint32_t c = 0; c < t->vnodes[vd]->nchildren; c++) {
                VNode *cv = t->vnodes[t->vnodes[vd]->children[c]];
                if (cv->type != PR_VNODE_VOL) continue;
                if (best == UINT32_MAX || t->snaps[cv->snap].s->time_sec > t->snaps[best].s->time_sec ||
                    (t->snaps[cv->snap].s->time_sec == t->snaps[best].s->time_sec &&
                     strcmp(t->snaps[cv->snap].s->label, t->snaps[best].s->label) > 0))
                    best = cv->snap;
            }
            if (best == UINT32_MAX) continue;
            if ((r = ensure_variant(t, vd, "latest", t->snaps[best].s->label, PR_VNODE_LINK, &v)) < 0) return r;
            t->vnodes[v]->latest = true;
            t->vnodes[v]->snap = best;
            if ((r = set_str(&t->vnodes[v]->target, t->snaps[best].s->label)) < 0) return r;
        }
    }
    pthread_mutex_lock(&sort_lock);
    sort_top = t;
    for (uint32_t i = 0; i < t->nvnodes; i++)
        if (t->vnodes[i]->live && t->vnodes[i]->nchildren > 1)
            qsort(t->vnodes[i]->children, t->vnodes[i]->nchildren, sizeof(uint32_t), cmp_child);
    pthread_mutex_unlock(&sort_lock);
    return 0;
}

/* ---- refresh ---- */

static int32_t find_snap(const PrTop *t, const PrId *id) {
    for (uint32_t i = 0; i < t->nsnaps; i++)
        if (memcmp(t->snaps[i].s->id.b, id->b, PR_ID_LEN) == 0) return (int32_t)i;
    return -1;
}

int pr_top_refresh(PrTop *t, bool index_used) {
    PrSnapshot **list = NULL;
    size_t n = 0;
    int r = pr_repo_list_snapshots(t->repo, &list, &n);
    if (r < 0) return r;
    /* what changed? (read side: only this thread writes, under refresh_lock) */
    bool changed = false, added = false;
    pthread_rwlock_rdlock(&t->lock);
    size_t live = 0;
    for (uint32_t i = 0; i < t->nsnaps; i++) live += t->snaps[i].live;
    for (size_t i = 0; i < n; i++) {
        int32_t k = find_snap(t, &list[i]->id);
        if (k < 0) added = true;
        else if (!t->snaps[k].live || strcmp(t->snaps[k].s->label, list[i]->label) != 0) changed = true;
    }
    if (live != n) changed = true;
    pthread_rwlock_unlock(&t->lock);
    if (added) changed = true;
    if (!changed) {
        pr_snapshot_list_free(list, n);
        t->listed = true; /* (an empty repository's first listing) */
        return 0;
    }
    if (added && index_used) {
        /* the new snapshots' blobs are in index files published before them */
        r = pr_repo_load_index(t->repo, true);
        if (r < 0) {
            pr_snapshot_list_free(list, n);
            return pr_log_errno(r, "cannot reload the index; new snapshots stay hidden until the next refresh");
        }
    }
    pthread_rwlock_wrlock(&t->lock);
    for (uint32_t i = 0; i < t->nsnaps; i++) t->snaps[i].live = false;
    for (size_t i = 0; i < n && r >= 0; i++) {
        int32_t k = find_snap(t, &list[i]->id);
        if (k >= 0) {
            t->snaps[k].live = true;
            memcpy(t->snaps[k].s->label, list[i]->label, sizeof list[i]->label);
            continue;
        }
        if (t->nsnaps == t->snaps_cap) {
            uint32_t cap = t->snaps_cap ? t->snaps_cap * 2 : 16;
            Snap *a = realloc(t->snaps, sizeof *a * cap);
            if (!a) {
                r = -ENOMEM;
                break;
            }
            t->snaps = a;
            t->snaps_cap = cap;
        }
        if (list[i]->xattr_entries != 0 && atomic_load(&t->xattrs_off))
            pr_log(PR_LOG_WARN,
                   "snapshot %s holds extended attributes, but this mount started without them (no snapshot "
                   "had any): they are not shown; mount again to see them",
                   list[i]->label);
        else if (list[i]->acl_entries != 0 && atomic_load(&t->acls_off))
            pr_log(PR_LOG_WARN,
                   "snapshot %s holds POSIX ACLs, but this mount started without ACL support: they are shown "
                   "as attributes and not enforced; mount again to have them enforced",
                   list[i]->label);
        t->snaps[t->nsnaps++] = (Snap){TAKE_PTR(list[i]), true};
    }
    if (r >= 0) r = rebuild(t);
    /* the virtual directories' mtime: the kernel keeps their listings, and lists them again when it
     * changes (it reads the attributes of these directories again every second) */
    if (r >= 0 && t->listed) clock_gettime(CLOCK_REALTIME, &t->changed);
    if (r >= 0) t->listed = true;
    pthread_rwlock_unlock(&t->lock);
    pr_snapshot_list_free(list, n);
    if (r < 0) return pr_log_errno(r, "cannot rebuild the snapshot directories");
    return 1;
}

void pr_top_maybe_refresh(PrTop *t, bool index_used) {
    if (now_ns() - atomic_load(&t->last_refresh) < t->refresh_ns) return;
    pthread_mutex_lock(&t->refresh_lock);
    if (now_ns() - atomic_load(&t->last_refresh) >= t->refresh_ns) {
        int r = pr_top_refresh(t, index_used);
        if (r < 0) pr_log(PR_LOG_WARN, "cannot read the snapshot list; showing the last one read");
        else if (r > 0) pr_log(PR_LOG_INFO, "snapshot list changed");
        atomic_store(&t->last_refresh, now_ns());
    }
    pthread_mutex_unlock(&t->refresh_lock);
}

static void *refresher(void *arg) {
    PrTop *t = arg;
    pthread_mutex_lock(&t->kick_lock);
    for (;;) {
        while (!t->kicked && !t->stopping) pthread_cond_wait(&t->kick_cond, &t->kick_lock);
        if (t->stopping) break;
        t->kicked = false;
        pthread_mutex_unlock(&t->kick_lock);
        pr_top_maybe_refresh(t, t->index_used ? t->index_used(t->index_used_ud) : false);
        pthread_mutex_lock(&t->kick_lock);
    }
    pthread_mutex_unlock(&t->kick_lock);
    return NULL;
}

int pr_top_start(PrTop *t, bool (*index_used)(void *ud), void *ud) {
    t->index_used = index_used;
    t->index_used_ud = ud;
    int r = pthread_create(&t->thread, NULL, refresher, t);
    if (r != 0) return -r;
    t->started = true;
    return 0;
}

void pr_top_stop(PrTop *t) {
    if (!t->started) return;
    pthread_mutex_lock(&t->kick_lock);
    t->stopping = true;
    pthread_cond_signal(&t->kick_cond);
    pthread_mutex_unlock(&t->kick_lock);
    pthread_join(t->thread, NULL);
    t->started = false;
}

void pr_top_kick(PrTop *t) {
    if (!t->started || now_ns() - atomic_load(&t->last_refresh) < t->refresh_ns) return;
    pthread_mutex_lock(&t->kick_lock);
    t->kicked = true;
    pthread_cond_signal(&t->kick_cond);
    pthread_mutex_unlock(&t->kick_lock);
}

int pr_top_new(PrRepo *repo, unsigned refresh_seconds, PrTop **ret) {
    PrTop *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->repo = repo;
    t->refresh_ns = (int64_t)refresh_seconds * 1000000000;
    pthread_rwlock_init(&t->lock, NULL);
    pthread_mutex_init(&t->refresh_lock, NULL);
    pthread_mutex_init(&t->kick_lock, NULL);
    pthread_cond_init(&t->kick_cond, NULL);
    int r = map_grow(t);
    VNode *root = calloc(1, sizeof *root);
    t->vnodes = calloc(64, sizeof *t->vnodes);
    if (r < 0 || !root || !t->vnodes || !(root->path = strdup(""))) {
        free(root);
        pr_top_free(t);
        return -ENOMEM;
    }
    root->name = root->path;
    root->type = PR_VNODE_DIR;
    root->live = true;
    t->vnodes_cap = 64;
    t->vnodes[t->nvnodes++] = root;
    size_t slot;
    map_find(t, "", &slot);
    t->map[slot] = 1;
    pthread_rwlock_wrlock(&t->lock);
    r = rebuild(t); /* the fixed directories, even with no snapshot */
    pthread_rwlock_unlock(&t->lock);
    if (r >= 0) r = pr_top_refresh(t, false);
    if (r < 0) {
        pr_top_free(t);
        return r;
    }
    atomic_store(&t->last_refresh, now_ns());
    *ret = t;
    return 0;
}

void pr_top_free(PrTop *t) {
    if (!t) return;
    pr_top_stop(t);
    for (uint32_t i = 0; i < t->nvnodes; i++) {
        VNode *v = t->vnodes[i];
        free(v->path);
        free(v->volume);
        free(v->target);
        free(v->children);
        free(v);
    }
    free(t->vnodes);
    free(t->map);
    for (uint32_t i = 0; i < t->nsnaps; i++) pr_snapshot_free(t->snaps[i].s);
    free(t->snaps);
    pthread_rwlock_destroy(&t->lock);
    pthread_mutex_destroy(&t->refresh_lock);
    pthread_mutex_destroy(&t->kick_lock);
    pthread_cond_destroy(&t->kick_cond);
    free(t);
}

/* ---- queries ---- */

static int fill(const VNode *v, uint32_t idx, PrVEntry *e) {
    *e = (PrVEntry){.vnode = idx, .type = v->type, .live = v->live, .latest = v->latest, .snap = v->snap, .parent = v->parent};
    if (!(e->name = strndup(v->name, v->name_len))) return -ENOMEM;
    if (v->volume && !(e->volume = strdup(v->volume))) {
        pr_ventry_clear(e);
        return -ENOMEM;
    }
    return 0;
}

int pr_top_get(PrTop *t, uint32_t vnode, PrVEntry *ret) {
    pthread_rwlock_rdlock(&t->lock);
    int r = vnode < t->nvnodes ? fill(t->vnodes[vnode], vnode, ret) : -ENOENT;
    pthread_rwlock_unlock(&t->lock);
    return r;
}

int pr_top_lookup(PrTop *t, uint32_t parent, const char *name, PrVEntry *ret) {
    pthread_rwlock_rdlock(&t->lock);
    int r = -ENOENT;
    if (parent >= t->nvnodes) goto out;
    const VNode *p = t->vnodes[parent];
    if (p->type != PR_VNODE_DIR) {
        r = -ENOTDIR;
        goto out;
    }
    size_t lo = 0, hi = p->live ? p->nchildren : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = vname_cmp(t->vnodes[p->children[mid]], name);
        if (c == 0) {
            r = fill(t->vnodes[p->children[mid]], p->children[mid], ret);
            break;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
out:
    pthread_rwlock_unlock(&t->lock);
    return r;
}

int pr_top_list(PrTop *t, uint32_t dir, PrVEntry **ret, size_t *ret_n) {
    pthread_rwlock_rdlock(&t->lock);
    int r = 0;
    PrVEntry *list = NULL;
    size_t n = 0;
    if (dir >= t->nvnodes) r = -ENOENT;
    else if (t->vnodes[dir]->type != PR_VNODE_DIR) r = -ENOTDIR;
    else {
        const VNode *p = t->vnodes[dir];
        uint32_t count = p->live ? p->nchildren : 0;
        list = calloc(count ? count : 1, sizeof *list);
        if (!list) r = -ENOMEM;
        for (uint32_t i = 0; r >= 0 && i < count; i++) {
            r = fill(t->vnodes[p->children[i]], p->children[i], &list[i]);
            if (r >= 0) n++;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (r < 0) {
        pr_ventry_list_free(list, n);
        return r;
    }
    *ret = list;
    *ret_n = n;
    return 0;
}

int pr_top_readlink(PrTop *t, uint32_t vnode, char **ret) {
    pthread_rwlock_rdlock(&t->lock);
    int r = 0;
    if (vnode >= t->nvnodes || t->vnodes[vnode]->type != PR_VNODE_LINK || !t->vnodes[vnode]->target) r = -EINVAL;
    else if (!(*ret = strdup(t->vnodes[vnode]->target))) r = -ENOMEM;
    pthread_rwlock_unlock(&t->lock);
    return r;
}

const PrSnapshot *pr_top_snapshot(PrTop *t, uint32_t snap) {
    pthread_rwlock_rdlock(&t->lock);
    const PrSnapshot *s = snap < t->nsnaps ? t->snaps[snap].s : NULL;
    pthread_rwlock_unlock(&t->lock);
    return s;
}

void pr_top_any_xattrs(PrTop *t, bool *ret_acls, bool *ret_xattrs) {
    pthread_rwlock_rdlock(&t->lock);
    bool acls = false, xattrs = false;
    for (uint32_t i = 0; i < t->nsnaps; i++) {
        acls = acls || t->snaps[i].s->acl_entries != 0;
        xattrs = xattrs || t->snaps[i].s->xattr_entries != 0;
    }
    pthread_rwlock_unlock(&t->lock);
    *ret_acls = acls;
    *ret_xattrs = xattrs;
}

void pr_top_set_support(PrTop *t, bool acls, bool xattrs) {
    atomic_store(&t->acls_off, !acls);
    atomic_store(&t->xattrs_off, !xattrs);
}

void pr_top_info(PrTop *t, size_t *ret_live, struct timespec *ret_mtime) {
    pthread_rwlock_rdlock(&t->lock);
    size_t live = 0;
    struct timespec newest = {0};
    for (uint32_t i = 0; i < t->nsnaps; i++) {
        if (!t->snaps[i].live) continue;
        live++;
        const PrSnapshot *s = t->snaps[i].s;
        if (s->time_sec > newest.tv_sec || (s->time_sec == newest.tv_sec && s->time_nsec > newest.tv_nsec))
            newest = (struct timespec){s->time_sec, s->time_nsec};
    }
    struct timespec mtime = t->changed.tv_sec ? t->changed : newest;
    pthread_rwlock_unlock(&t->lock);
    if (ret_live) *ret_live = live;
    if (ret_mtime) *ret_mtime = mtime;
}
