/* SPDX-License-Identifier: MIT */
/* The FUSE low-level operations. Every handler answers exactly once: here, or (reads that miss the
 * memory cache) from the fetch thread that brings the data. Errors are -errno up to the reply, where
 * they are negated. */
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include "cache/util.h"
#include "fs/fs-internal.h"
#include "fs/tree.h"

static PrFs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static void reply_err(fuse_req_t req, int r) { fuse_reply_err(req, r < 0 ? -r : (r ? r : EIO)); }

/* The error a reader sees: out of memory is itself, anything the store or the data did is EIO. */
static int read_error(int r) { return r == -ENOMEM ? -ENOMEM : -EIO; }

/* ---- attributes ---- */

static mode_t node_type_bits(uint8_t type) {
    switch (type) {
    case PR_NODE_FILE: return S_IFREG;
    case PR_NODE_DIR: return S_IFDIR;
    case PR_NODE_SYMLINK: return S_IFLNK;
    case PR_NODE_CHR: return S_IFCHR;
    case PR_NODE_BLK: return S_IFBLK;
    case PR_NODE_FIFO: return S_IFIFO;
    case PR_NODE_SOCK: return S_IFSOCK;
    default: return S_IFREG;
    }
}

static void node_stat(const PrNode *n, uint64_t ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = node_type_bits(n->type) | (n->mode & 07777);
    st->st_nlink = n->nlink ? (nlink_t)MIN(n->nlink, (uint64_t)UINT32_MAX) : (n->type == PR_NODE_DIR ? 2 : 1);
    st->st_uid = n->uid;
    st->st_gid = n->gid;
    st->st_size = (off_t)(n->type == PR_NODE_SYMLINK && n->target ? strlen(n->target) : n->size);
    if (n->type == PR_NODE_CHR || n->type == PR_NODE_BLK) st->st_rdev = (dev_t)n->rdev;
    st->st_blksize = PR_FS_BLKSIZE;
    st->st_blocks = (blkcnt_t)pr_node_blocks(n);
    st->st_mtim = (struct timespec){n->mtime_sec, n->mtime_nsec};
    st->st_atim = st->st_mtim;
    st->st_ctim = (struct timespec){n->ctime_sec, n->ctime_nsec};
}

static void virtual_stat(PrFs *fs, uint64_t ino, mode_t mode, struct timespec when, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = mode;
    st->st_nlink = S_ISDIR(mode) ? 2 : 1;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_blksize = PR_FS_BLKSIZE;
    st->st_mtim = st->st_atim = st->st_ctim = when;
}

static struct timespec snap_time(PrFs *fs, uint32_t snap) {
    const PrSnapshot *s = pr_top_snapshot(fs->top, snap);
    return s ? (struct timespec){s->time_sec, s->time_nsec} : fs->started;
}

static int inode_stat(PrFs *fs, PrInode *in, struct stat *st) {
    switch (in->kind) {
    case PR_INODE_NODE:
        node_stat(in->node, in->ino, st);
        return 0;
    case PR_INODE_SNAPROOT:
        virtual_stat(fs, in->ino, S_IFDIR | 0555, snap_time(fs, in->snap), st);
        return 0;
    case PR_INODE_VLINK: {
        _cleanup_free_ char *target = NULL;
        int r = pr_top_readlink(fs->top, in->vnode, &target);
        if (r < 0) return r;
        virtual_stat(fs, in->ino, S_IFLNK | 0777, snap_time(fs, in->snap), st);
        st->st_size = (off_t)strlen(target);
        return 0;
    }
    case PR_INODE_VDIR: {
        struct timespec mtime;
        pr_top_info(fs->top, NULL, &mtime);
        virtual_stat(fs, in->ino, S_IFDIR | 0555, mtime.tv_sec ? mtime : fs->started, st);
        return 0;
    }
    default:
        return -EIO;
    }
}

/* Attributes of virtual directories and links follow the snapshot list; everything else is immutable. */
static double attr_ttl(const PrInode *in) {
    return in->kind == PR_INODE_VDIR || in->kind == PR_INODE_VLINK ? PR_FS_TTL_SHORT : PR_FS_TTL_LONG;
}

/* ---- inodes for entries ---- */

static int dir_dirid(PrFs *fs, PrInode *dir, uint32_t *ret) {
    uint32_t d = atomic_load(&dir->dirid);
    if (!d) {
        int r = pr_numbering_dirid(fs->num, dir->ino, &d);
        if (r < 0) return r;
        atomic_store(&dir->dirid, d);
    }
    *ret = d;
    return 0;
}

/* The decoded tree holding a directory's entries (waits for it if need be). */
static int content_tree(PrFs *fs, PrInode *dir, PrCacheValue **ret) {
    const PrId *id;
    if (dir->kind == PR_INODE_SNAPROOT) {
        const PrSnapshot *s = pr_top_snapshot(fs->top, dir->snap);
        if (!s) return -ENOENT;
        id = &s->root;
    } else if (dir->kind == PR_INODE_NODE && dir->node->type == PR_NODE_DIR) {
        id = &dir->node->subtree;
    } else {
        return -ENOTDIR;
    }
    return pr_flat_tree_load(fs->fetcher, fs->mc, id, ret);
}

/* The inode number of entry idx of a tree directory, without touching the table. */
static int tree_child_ino(PrFs *fs, PrInode *dir, const PrFlatTree *t, uint32_t idx, uint32_t *ret_volinst,
                          uint64_t *ret) {
    uint32_t dirid, volinst;
    int r = dir_dirid(fs, dir, &dirid);
    if (r < 0) return r;
    if (dir->kind == PR_INODE_SNAPROOT) {
        r = pr_numbering_volinst(fs->num, dir->snap, idx, &volinst);
        if (r < 0) return r;
    } else {
        volinst = dir->volinst;
    }
    const PrNode *n = &t->nodes[idx];
    if (ret_volinst) *ret_volinst = volinst;
    return pr_numbering_child(fs->num, dirid, idx, volinst, n->type != PR_NODE_DIR ? n->link_group : 0, ret);
}

/* Entry idx of dir's tree (held in tv) as an inode with one more lookup counted. */
static int tree_child(PrFs *fs, PrInode *dir, PrCacheValue *tv, uint32_t idx, PrInode **ret) {
    const PrFlatTree *t = pr_flat_tree(tv);
    uint64_t ino;
    uint32_t volinst;
    int r = tree_child_ino(fs, dir, t, idx, &volinst, &ino);
    if (r < 0) return r;
    if (pr_itable_lookup(fs->itable, ino, ret)) return 0;
    PrInode *in = pr_inode_new(ino, PR_INODE_NODE);
    if (!in) return -ENOMEM;
    in->snap = dir->snap;
    in->volinst = volinst;
    in->parent = dir->ino;
    in->tree = pr_memcache_value_ref(tv);
    in->node = &t->nodes[idx];
    return pr_itable_insert(fs->itable, in, ret);
}

/* A virtual entry as an inode with one more lookup counted. */
static int virtual_child(PrFs *fs, const PrVEntry *e, PrInode **ret) {
    uint64_t ino = pr_vnode_ino(e->vnode);
    if (pr_itable_lookup(fs->itable, ino, ret)) return 0;
    PrInode *in;
    switch (e->type) {
    case PR_VNODE_DIR:
        if (!(in = pr_inode_new(ino, PR_INODE_VDIR))) return -ENOMEM;
        break;
    case PR_VNODE_LINK:
        if (!(in = pr_inode_new(ino, PR_INODE_VLINK))) return -ENOMEM;
        in->snap = e->snap;
        break;
    case PR_VNODE_SNAP:
        if (!(in = pr_inode_new(ino, PR_INODE_SNAPROOT))) return -ENOMEM;
        in->snap = e->snap;
        break;
    case PR_VNODE_VOL: {
        /* volumes/<vol>/<label>: the volume's root node, from the snapshot's root tree */
        const PrSnapshot *s = pr_top_snapshot(fs->top, e->snap);
        if (!s || !e->volume) return -ENOENT;
        PrCacheValue *tv = NULL;
        int r = pr_flat_tree_load(fs->fetcher, fs->mc, &s->root, &tv);
        if (r < 0) return r;
        const PrFlatTree *t = pr_flat_tree(tv);
        ssize_t idx = pr_flat_tree_find(t, e->volume);
        uint32_t volinst = 0;
        if (idx < 0 || t->nodes[idx].type != PR_NODE_DIR) {
            pr_log(PR_LOG_ERR, "snapshot %s lists volume %s but its root tree does not hold it", s->label, e->volume);
            r = -EIO;
        } else {
            r = pr_numbering_volinst(fs->num, e->snap, (uint32_t)idx, &volinst);
        }
        if (r < 0 || !(in = pr_inode_new(ino, PR_INODE_NODE))) {
            pr_memcache_value_unref(tv);
            return r < 0 ? r : -ENOMEM;
        }
        in->snap = e->snap;
        in->volinst = volinst;
        in->tree = tv;
        in->node = &t->nodes[idx];
        break;
    }
    default:
        return -EIO;
    }
    in->vnode = e->vnode;
    in->parent = pr_vnode_ino(e->parent);
    return pr_itable_insert(fs->itable, in, ret);
}

/* Hands in to the kernel (one lookup was counted for it); takes the count back if the kernel did not
 * get the reply (the request was interrupted). */
static void reply_entry(PrFs *fs, fuse_req_t req, PrInode *in, double entry_ttl) {
    struct fuse_entry_param e = {.ino = in->ino, .attr_timeout = attr_ttl(in), .entry_timeout = entry_ttl};
    int r = inode_stat(fs, in, &e.attr);
    if (r < 0) {
        pr_itable_forget(fs->itable, in->ino, 1);
        reply_err(req, r);
        return;
    }
    if (fuse_reply_entry(req, &e) != 0) pr_itable_forget(fs->itable, in->ino, 1);
}

/* ---- Names only ----
 * A listing with attributes (READDIRPLUS) spares `ls -l`, `cp -a` and `du` one LOOKUP round trip per
 * entry, but costs the kernel a dentry and an inode for each, which `find` never uses: a cold find
 * of 100,000 files spent more time there than in everything else. So a listing gives attributes for
 * subdirectories (any walk opens them) and names only for the rest, until a reader shows it wants
 * them: NAMES_LOOKUPS lookups of files in one directory listed so. Then, for ATTRS_SECONDS, listings
 * carry every attribute again, and the listings given with names only since the last switch are
 * dropped from the kernel's cache (listed again, with attributes, when next read); after that, the
 * next directory tells again (a reader that stats costs one directory of lookups). */
#define NAMES_LOOKUPS 2
#define ATTRS_SECONDS 10.0

static bool listing_names_only(PrFs *fs) { return pr_now() >= atomic_load(&fs->attrs_until); }

/* A listing of tree directory `dir` gave names only. */
static void names_listed(PrFs *fs, PrInode *dir) {
    atomic_fetch_add(&fs->names_listings, 1);
    if (atomic_exchange(&dir->names, true)) return;
    atomic_store(&dir->names_lookups, 0);
    /* every such directory (8 bytes each): one left out would keep its names-only listing in the
     * kernel after the switch, and cost a stat-ing reader a LOOKUP per file there */
    pthread_mutex_lock(&fs->names_lock);
    if (fs->n_names_listed == fs->names_cap) {
        size_t cap = fs->names_cap ? fs->names_cap * 2 : 1024;
        uint64_t *v = realloc(fs->names_listed, sizeof *v * cap);
        if (v) {
            fs->names_listed = v;
            fs->names_cap = cap;
        }
    }
    if (fs->n_names_listed < fs->names_cap) fs->names_listed[fs->n_names_listed++] = dir->ino;
    pthread_mutex_unlock(&fs->names_lock);
}

/* A lookup of a file in tree directory `dir`: does the reader want attributes? */
static void names_file_lookup(PrFs *fs, PrInode *dir) {
    if (!atomic_load(&dir->names) || atomic_fetch_add(&dir->names_lookups, 1) + 1 != NAMES_LOOKUPS) return;
    atomic_store(&fs->attrs_until, pr_now() + ATTRS_SECONDS);
    atomic_fetch_add(&fs->attrs_switches, 1);
    pthread_mutex_lock(&fs->names_lock);
    uint64_t *listed = fs->names_listed;
    size_t n = fs->n_names_listed;
    fs->names_listed = NULL;
    fs->n_names_listed = fs->names_cap = 0;
    pthread_mutex_unlock(&fs->names_lock);
    /* (not `dir`: its listing is being read, and the reader looks its files up as it goes) */
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        PrInode *d = NULL;
        if (pr_itable_get(fs->itable, listed[i], &d) >= 0) {
            atomic_store(&d->names, false);
            pr_inode_unref(d);
        }
        if (listed[i] != dir->ino && fs->se && fuse_lowlevel_notify_inval_inode(fs->se, listed[i], 0, 0) == 0) dropped++;
    }
    free(listed);
    pr_debug("listings carry attributes again (%zu listings with names only dropped)", dropped);
}

/* ---- lookup, forget, getattr, readlink ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    PrFs *fs = fs_of(req);
    _cleanup_(pr_inode_unrefp) PrInode *dir = NULL;
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, parent, &dir) < 0) return reply_err(req, -ESTALE);
    int r;
    if (dir->kind == PR_INODE_VDIR) {
        PrVEntry e = {0};
        r = pr_top_lookup(fs->top, dir->vnode, name, &e);
        if (r >= 0) pr_top_kick(fs->top); /* keep `latest` and friends current, in the background */
        if (r == -ENOENT) { /* a snapshot taken since the last listing? */
            pr_top_maybe_refresh(fs->top, pr_fetcher_index_used(fs->fetcher));
            r = pr_top_lookup(fs->top, dir->vnode, name, &e);
        }
        if (r >= 0) r = virtual_child(fs, &e, &in);
        pr_ventry_clear(&e);
        if (r < 0) return reply_err(req, r == -ENOENT || r == -ENOMEM || r == -EOVERFLOW ? r : -EIO);
        return reply_entry(fs, req, in, PR_FS_TTL_SHORT);
    }
    if (!pr_inode_is_dir(dir)) return reply_err(req, -ENOTDIR);
    _cleanup_(pr_cache_value_unrefp) PrCacheValue *tv = NULL;
    r = content_tree(fs, dir, &tv);
    if (r < 0) return reply_err(req, read_error(r));
    ssize_t idx = pr_flat_tree_find(pr_flat_tree(tv), name);
    if (idx < 0) {
        /* snapshots never change: the kernel may remember that the name is not there */
        struct fuse_entry_param e = {.ino = 0, .entry_timeout = PR_FS_TTL_LONG};
        fuse_reply_entry(req, &e);
        return;
    }
    if (pr_flat_tree(tv)->nodes[idx].type != PR_NODE_DIR) names_file_lookup(fs, dir);
    r = tree_child(fs, dir, tv, (uint32_t)idx, &in);
    if (r < 0) return reply_err(req, r);
    /* a tree never changes; if its snapshot goes away, the entry above it (snapshots/<label>, short
     * timeout) fails its next lookup and takes the cached subtree with it */
    reply_entry(fs, req, in, PR_FS_TTL_LONG);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    PrFs *fs = fs_of(req);
    if (ino != PR_ROOT_INO) pr_itable_forget(fs->itable, ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
    PrFs *fs = fs_of(req);
    for (size_t i = 0; i < count; i++)
        if (forgets[i].ino != PR_ROOT_INO) pr_itable_forget(fs->itable, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    PrFs *fs = fs_of(req);
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    struct stat st;
    int r = inode_stat(fs, in, &st);
    if (r < 0) return reply_err(req, r);
    fuse_reply_attr(req, &st, attr_ttl(in));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
    PrFs *fs = fs_of(req);
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    if (in->kind == PR_INODE_NODE) {
        if (in->node->type != PR_NODE_SYMLINK || !in->node->target) return reply_err(req, -EINVAL);
        fuse_reply_readlink(req, in->node->target);
        return;
    }
    if (in->kind != PR_INODE_VLINK) return reply_err(req, -EINVAL);
    _cleanup_free_ char *target = NULL;
    int r = pr_top_readlink(fs->top, in->vnode, &target);
    if (r < 0) return reply_err(req, r);
    fuse_reply_readlink(req, target);
}

/* ---- directories ---- */

/* What a listing reads: the directory's tree, or a virtual directory's entries as of now. Without
 * OPENDIR (fs->no_opendir) each READDIR takes one; else OPENDIR does, for the life of the handle. */
typedef struct DirHandle {
    PrCacheValue *tree; /* tree directories */
    PrVEntry *list;     /* virtual directories */
    size_t n;
} DirHandle;

static void dir_handle_free(DirHandle *h) {
    if (!h) return;
    pr_memcache_value_unref(h->tree);
    pr_ventry_list_free(h->list, h->n);
    free(h);
}
static void dir_handle_freep(DirHandle **h) { dir_handle_free(*h); }

/* A listed directory's subdirectories are likely next (find, ls -R, cp -a, restore by hand): the
 * first of their trees that is not cached is asked for in the background, so that the fetch of the
 * next tree window overlaps the listing of this one instead of following it. Only the first: its
 * window brings the trees after it in the pack (they are written together), and asking for them
 * all would start overlapping windows on every fetch thread. A hint: dropped when the background
 * queue is full. */
static void prefetch_subtrees(PrFs *fs, const PrFlatTree *t) {
    for (uint32_t i = 0; i < t->n; i++) {
        const PrNode *n = &t->nodes[i];
        if (n->type != PR_NODE_DIR) continue;
        uint8_t key[32];
        pr_flat_tree_key(&n->subtree, key);
        PrCacheValue *v = pr_memcache_get(fs->mc, key);
        if (v) {
            pr_memcache_value_unref(v);
            continue;
        }
        (void)pr_fetcher_want(fs->fetcher, &n->subtree, false, NULL);
        return;
    }
}

/* The listing of directory inode `in` (start: a listing from its first entry). */
static int dir_handle_new(PrFs *fs, PrInode *in, bool start, DirHandle **ret) {
    DirHandle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    int r;
    if (in->kind == PR_INODE_VDIR) {
        if (start) pr_top_maybe_refresh(fs->top, pr_fetcher_index_used(fs->fetcher));
        r = pr_top_list(fs->top, in->vnode, &h->list, &h->n);
    } else {
        r = content_tree(fs, in, &h->tree);
        if (r < 0) r = read_error(r);
        if (r >= 0 && start) prefetch_subtrees(fs, pr_flat_tree(h->tree));
    }
    if (r < 0) {
        dir_handle_free(h);
        return r;
    }
    *ret = h;
    return 0;
}

/* Directories need no open state either: when the kernel can do without OPENDIR (and so without
 * RELEASEDIR), the first one is answered ENOSYS, and every later listing costs two round trips
 * fewer (a warm `find` of 1,000 directories: 2,000). The kernel then keeps every listing (as
 * cache_readdir below asks), and lists a virtual directory again when its mtime moves (fs/top.c). */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    PrFs *fs = fs_of(req);
    if (fs->no_opendir) return reply_err(req, -ENOSYS);
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    if (!pr_inode_is_dir(in)) return reply_err(req, -ENOTDIR);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return reply_err(req, -EROFS);
    DirHandle *h = NULL;
    int r = dir_handle_new(fs, in, true, &h);
    if (r < 0) return reply_err(req, r);
    bool vdir = in->kind == PR_INODE_VDIR;
    fi->cache_readdir = !vdir;
    fi->keep_cache = !vdir;
    fi->fh = (uintptr_t)h;
    if (fuse_reply_open(req, fi) != 0) dir_handle_free(h);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    dir_handle_free((DirHandle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, bool plus) {
    PrFs *fs = fs_of(req);
    DirHandle *h = (DirHandle *)(uintptr_t)fi->fh;
    _cleanup_(pr_inode_unrefp) PrInode *dir = NULL;
    if (pr_itable_get(fs->itable, ino, &dir) < 0) return reply_err(req, -ESTALE);
    _cleanup_(dir_handle_freep) DirHandle *own = NULL; /* no OPENDIR: this listing's own */
    if (!h) {
        if (!pr_inode_is_dir(dir)) return reply_err(req, -ENOTDIR);
        int k = dir_handle_new(fs, dir, off == 0, &own);
        if (k < 0) return reply_err(req, k);
        h = own;
    }
    size = MIN(size, (size_t)1 << 20);
    _cleanup_free_ char *buf = malloc(size ? size : 1);
    _cleanup_free_ uint64_t *counted = NULL; /* lookups handed out in this reply */
    size_t ncounted = 0, ccap = 0;
    if (!buf) return reply_err(req, -ENOMEM);
    const PrFlatTree *t = h->tree ? pr_flat_tree(h->tree) : NULL;
    bool names_only = plus && t && listing_names_only(fs), gave_names = false;
    size_t total = 2 + (t ? t->n : h->n);
    size_t pos = 0;
    int r = 0;
    for (size_t k = (size_t)MAX(off, (off_t)0); k < total; k++) {
        struct fuse_entry_param e = {0};
        const char *name;
        _cleanup_(pr_inode_unrefp) PrInode *child = NULL;
        if (k < 2) {
            name = k == 0 ? "." : "..";
            e.attr.st_ino = k == 0 ? dir->ino : (dir->parent ? dir->parent : PR_ROOT_INO);
            e.attr.st_mode = S_IFDIR;
        } else if (t) {
            uint32_t idx = (uint32_t)(k - 2);
            name = t->nodes[idx].name;
            if (plus && !(names_only && t->nodes[idx].type != PR_NODE_DIR)) {
                r = tree_child(fs, dir, h->tree, idx, &child);
            } else { /* a name, an inode number and a type; READDIRPLUS: node id 0, no attributes */
                r = tree_child_ino(fs, dir, t, idx, NULL, &e.attr.st_ino);
                e.attr.st_mode = node_type_bits(t->nodes[idx].type);
                gave_names = plus;
            }
        } else {
            const PrVEntry *v = &h->list[k - 2];
            name = v->name;
            if (plus) {
                r = virtual_child(fs, v, &child);
            } else {
                e.attr.st_ino = pr_vnode_ino(v->vnode);
                e.attr.st_mode = v->type == PR_VNODE_LINK ? S_IFLNK : S_IFDIR;
            }
        }
        if (r < 0) break;
        if (child) {
            e.ino = child->ino;
            e.attr_timeout = attr_ttl(child);
            e.entry_timeout = t ? PR_FS_TTL_LONG : PR_FS_TTL_SHORT;
            r = inode_stat(fs, child, &e.attr);
            if (r >= 0 && ncounted == ccap) {
                size_t cap = ccap ? ccap * 2 : 64;
                uint64_t *c = realloc(counted, sizeof *c * cap);
                if (c) {
                    counted = c;
                    ccap = cap;
                } else {
                    r = -ENOMEM;
                }
            }
            if (r < 0) {
                pr_itable_forget(fs->itable, child->ino, 1);
                break;
            }
        }
        size_t need = plus ? fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e, (off_t)(k + 1))
                           : fuse_add_direntry(req, buf + pos, size - pos, name, &e.attr, (off_t)(k + 1));
        if (need > size - pos) { /* full: this entry goes in the next reply */
            if (child) pr_itable_forget(fs->itable, child->ino, 1);
            break;
        }
        if (child) counted[ncounted++] = child->ino;
        pos += need;
    }
    if (r < 0 && pos == 0) {
        reply_err(req, r == -ENOMEM || r == -ENOENT || r == -EOVERFLOW ? r : -EIO);
        return;
    }
    if (gave_names) names_listed(fs, dir);
    if (fuse_reply_buf(req, buf, pos) != 0)
        for (size_t i = 0; i < ncounted; i++) pr_itable_forget(fs->itable, counted[i], 1);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    do_readdir(req, ino, size, off, fi, true);
}

/* ---- files ---- */

typedef struct FileHandle {
    atomic_uint refs;
    PrInode *inode;     /* pins node */
    const PrNode *node;
    uint64_t *cum;      /* nchunks + 1 offsets: chunk i covers [cum[i], cum[i+1]) */
    atomic_uint_fast64_t last_end; /* where the previous read ended (sequential detection) */
    atomic_uint ra_next;           /* first chunk not yet asked for by read-ahead */
} FileHandle;

static FileHandle *fh_ref(FileHandle *h) {
    atomic_fetch_add(&h->refs, 1);
    return h;
}

static void fh_unref(FileHandle *h) {
    if (!h || atomic_fetch_sub(&h->refs, 1) != 1) return;
    pr_inode_unref(h->inode);
    free(h->cum);
    free(h);
}

/* A handle on the file of inode in (a node of type file), with one reference; it takes a reference
 * on the inode when `pin` (an open file), not when the inode itself keeps it (no_open). */
static FileHandle *fh_new(PrInode *in, bool pin) {
    const PrNode *n = in->node;
    FileHandle *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cum = malloc(sizeof *h->cum * ((size_t)n->nchunks + 1));
    if (!h->cum) {
        free(h);
        return NULL;
    }
    h->cum[0] = 0;
    for (uint32_t i = 0; i < n->nchunks; i++) h->cum[i + 1] = h->cum[i] + n->chunks[i].length;
    atomic_init(&h->refs, 1);
    atomic_init(&h->last_end, 0);
    atomic_init(&h->ra_next, 0);
    h->inode = pin ? pr_inode_ref(in) : NULL;
    h->node = n;
    return h;
}

static void fh_free_cb(void *h) { fh_unref(h); }

/* The reader's state for a read or lseek: the open file's handle, or (the kernel opens no files)
 * the one the inode keeps, made on first use. A new reference to it, and to the inode in *ret_in
 * (which holds the node the handle borrows). */
static int fh_get(PrFs *fs, fuse_ino_t ino, struct fuse_file_info *fi, FileHandle **ret, PrInode **ret_in) {
    PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return -ESTALE;
    if (fi->fh) {
        *ret = fh_ref((FileHandle *)(uintptr_t)fi->fh);
        *ret_in = in;
        return 0;
    }
    if (in->kind != PR_INODE_NODE || in->node->type != PR_NODE_FILE) {
        int r = pr_inode_is_dir(in) ? -EISDIR : -EINVAL;
        pr_inode_unref(in);
        return r;
    }
    FileHandle *h = atomic_load(&in->file);
    if (!h) {
        FileHandle *fresh = fh_new(in, false);
        if (!fresh) {
            pr_inode_unref(in);
            return -ENOMEM;
        }
        void *expected = NULL;
        if (atomic_compare_exchange_strong(&in->file, &expected, fresh)) {
            h = fresh;
            in->file_free = fh_free_cb; /* read when the last reference goes, which ours is not */
        } else {
            fh_unref(fresh); /* another reader made it first */
            h = expected;
        }
    }
    *ret = fh_ref(h);
    *ret_in = in;
    return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    PrFs *fs = fs_of(req);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & (O_TRUNC | O_CREAT))) return reply_err(req, -EROFS);
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    if (in->kind != PR_INODE_NODE || in->node->type != PR_NODE_FILE)
        return reply_err(req, pr_inode_is_dir(in) ? -EISDIR : -EINVAL);
    /* The kernel may read without opening (it keeps the page cache across opens then): ENOSYS
     * tells it so, once; reads find their state on the inode (fh_get). */
    if (fs->no_open) return reply_err(req, -ENOSYS);
    FileHandle *h = fh_new(in, true);
    if (!h) return reply_err(req, -ENOMEM);
    fi->fh = (uintptr_t)h;
    fi->keep_cache = 1; /* the bytes never change: keep the page cache across opens */
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) != 0) fh_unref(h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)ino;
    fh_unref((FileHandle *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

/* The chunk holding byte off (off < size). */
static uint32_t chunk_at(const FileHandle *h, uint64_t off) {
    uint32_t lo = 0, hi = h->node->nchunks; /* cum[lo] <= off < cum[hi] */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->cum[mid] <= off) lo = mid;
        else hi = mid;
    }
    return lo;
}

typedef struct PendingRead PendingRead;

typedef struct ReadSlot {
    PrFetchWaiter w; /* first */
    PendingRead *p;
    PrCacheValue *v; /* NULL for a hole */
} ReadSlot;

struct PendingRead {
    fuse_req_t req;
    PrFs *fs;
    FileHandle *h;
    PrInode *in; /* holds the node h borrows */
    uint64_t off, end;
    uint32_t c0, n;
    double t0;
    atomic_int remaining;
    atomic_int err;
    bool waited; /* some chunk was not in memory */
    ReadSlot slots[];
};

static void pending_free(PendingRead *p) {
    for (uint32_t i = 0; i < p->n; i++) pr_memcache_value_unref(p->slots[i].v);
    fh_unref(p->h);
    pr_inode_unref(p->in);
    free(p);
}

/* Every chunk is there (or one failed): answer the read. Runs on the FUSE worker when everything was
 * cached, else on the fetch thread that completed the last chunk. */
static void pending_finish(PendingRead *p) {
    int err = atomic_load(&p->err);
    atomic_fetch_add(&p->fs->reads, 1);
    if (p->waited) {
        atomic_fetch_add(&p->fs->reads_waited, 1);
        atomic_fetch_add(&p->fs->wait_us, (uint64_t)((pr_now() - p->t0) * 1e6));
    }
    pr_debug("read of %llu bytes at %llu: %s after %.1f ms", (unsigned long long)(p->end - p->off),
             (unsigned long long)p->off, err < 0 ? strerror(-err) : "ok", (pr_now() - p->t0) * 1e3);
    if (err < 0) {
        reply_err(p->req, err);
        return pending_free(p);
    }
    size_t max_iov = (size_t)p->n * 2 + (size_t)((p->end - p->off) / PR_FS_MAX_READ) + 2;
    struct iovec *iov = malloc(sizeof *iov * max_iov);
    if (!iov) {
        reply_err(p->req, -ENOMEM);
        return pending_free(p);
    }
    size_t niov = 0;
    const FileHandle *h = p->h;
    for (uint32_t i = 0; i < p->n; i++) {
        uint32_t c = p->c0 + i;
        uint64_t a = MAX(p->off, h->cum[c]), b = MIN(p->end, h->cum[c + 1]);
        if (b <= a) continue;
        if (!p->slots[i].v) {
            while (a < b) {
                size_t piece = (size_t)MIN(b - a, (uint64_t)PR_FS_MAX_READ);
                iov[niov++] = (struct iovec){(void *)p->fs->zeros, piece};
                a += piece;
            }
        } else {
            iov[niov++] = (struct iovec){p->slots[i].v->data + (a - h->cum[c]), (size_t)(b - a)};
        }
    }
    fuse_reply_iov(p->req, iov, (int)niov);
    free(iov);
    /* a chunk read to its end sits in the page cache now (the kernel keeps it: keep_cache, no
     * invalidation): its memory copy goes last in line, behind what is fetched ahead of the reader */
    for (uint32_t i = 0; i < p->n; i++)
        if (p->slots[i].v && p->end >= h->cum[p->c0 + i + 1]) pr_memcache_demote(p->fs->mc, h->node->chunks[p->c0 + i].id.b);
    pending_free(p);
}

static void read_slot_done(PrFetchWaiter *w, int err, PrCacheValue *v) {
    ReadSlot *s = (ReadSlot *)w;
    PendingRead *p = s->p;
    uint32_t c = p->c0 + (uint32_t)(s - p->slots);
    if (err < 0) {
        int expected = 0;
        atomic_compare_exchange_strong(&p->err, &expected, read_error(err));
    } else if (v->len != p->h->node->chunks[c].length) {
        char hex[65];
        pr_hex(p->h->node->chunks[c].id.b, PR_ID_LEN, hex);
        pr_log(PR_LOG_ERR, "blob %.16s holds %zu bytes, the file's chunk %u says %u", hex, v->len, c,
               p->h->node->chunks[c].length);
        int expected = 0;
        atomic_compare_exchange_strong(&p->err, &expected, -EIO);
    } else {
        s->v = pr_memcache_value_ref(v);
    }
    if (atomic_fetch_sub(&p->remaining, 1) == 1) pending_finish(p);
}

/* Sequential readers: ask for the next chunks in the background, in batches (once the reader is
 * half way through what was asked), so that the fetcher finds consecutive chunks queued together
 * and gets them with a few multi-MiB GETs (fs/fetch.c, runs). */
static void read_ahead(PrFs *fs, FileHandle *h, uint64_t off, uint64_t end, uint32_t c1) {
    uint64_t last = atomic_exchange(&h->last_end, end);
    bool sequential = off == 0 ? end < h->node->size : (off + PR_FS_MAX_READ >= last && off <= last + PR_FS_MAX_READ);
    if (!sequential) return;
    uint32_t asked = atomic_load(&h->ra_next);
    if (asked > c1 + 1 + PR_FS_READAHEAD_CHUNKS / 2) return;
    uint32_t from = MAX(c1 + 1, asked);
    uint32_t to = (uint32_t)MIN((uint64_t)c1 + 1 + PR_FS_READAHEAD_CHUNKS, (uint64_t)h->node->nchunks);
    PrId ids[PR_FS_READAHEAD_CHUNKS];
    size_t n = 0;
    for (uint32_t c = from; c < to; c++)
        if (!pr_id_is_zero(&h->node->chunks[c].id)) ids[n++] = h->node->chunks[c].id;
    if (n) (void)pr_fetcher_want_many(fs->fetcher, ids, n);
    if (to > from) {
        /* raise ra_next to `to` unless another reader raised it further */
        unsigned cur = atomic_load(&h->ra_next);
        while (cur < to && !atomic_compare_exchange_weak(&h->ra_next, &cur, to)) {
        }
    }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    PrFs *fs = fs_of(req);
    FileHandle *h = NULL;
    PrInode *in = NULL;
    int r = fh_get(fs, ino, fi, &h, &in);
    if (r < 0) return reply_err(req, r);
    const PrNode *n = h->node;
    if (off < 0 || (uint64_t)off >= n->size || size == 0) {
        if (off < 0) reply_err(req, -EINVAL);
        else fuse_reply_buf(req, NULL, 0);
        fh_unref(h);
        pr_inode_unref(in);
        return;
    }
    uint64_t end = MIN((uint64_t)off + size, n->size);
    uint32_t c0 = chunk_at(h, (uint64_t)off), c1 = chunk_at(h, end - 1);
    pr_debug("read %s: %zu bytes at %lld (chunks %u..%u of %u)", n->name, size, (long long)off, c0, c1, n->nchunks);
    uint32_t count = c1 - c0 + 1;
    PendingRead *p = calloc(1, sizeof *p + sizeof(ReadSlot) * count);
    if (!p) {
        fh_unref(h);
        pr_inode_unref(in);
        return reply_err(req, -ENOMEM);
    }
    p->req = req;
    p->t0 = pr_now();
    p->fs = fs;
    p->h = h;   /* the references fh_get took */
    p->in = in;
    p->off = (uint64_t)off;
    p->end = end;
    p->c0 = c0;
    p->n = count;
    atomic_init(&p->err, 0);
    uint32_t missing = 0;
    for (uint32_t i = 0; i < count; i++) {
        const PrChunkRef *c = &n->chunks[c0 + i];
        p->slots[i].p = p;
        p->slots[i].w.fn = read_slot_done;
        if (pr_id_is_zero(&c->id)) continue; /* a hole: zeros, nothing to fetch */
        PrCacheValue *v = pr_memcache_get(fs->mc, c->id.b);
        if (v && v->len != c->length) {
            pr_memcache_value_unref(v);
            atomic_store(&p->err, -EIO);
            continue;
        }
        if (v) {
            pr_fetcher_hit(fs->fetcher, v); /* may start the prefetch of the next window */
            p->slots[i].v = v;
        } else {
            missing++;
        }
    }
    p->waited = missing > 0;
    /* before asking: the read joins a planned GET */
    if (off == 0 && pr_fs_plan_read(fs, in, missing > 0)) pr_pusher_after(fs, in);
    /* one count per missing chunk, plus this thread's, so that nobody finishes before the loop ends */
    atomic_init(&p->remaining, (int)missing + 1);
    for (uint32_t i = 0; i < count && missing; i++) {
        const PrChunkRef *c = &n->chunks[c0 + i];
        if (p->slots[i].v || pr_id_is_zero(&c->id)) continue;
        r = pr_fetcher_want(fs->fetcher, &c->id, true, &p->slots[i].w);
        if (r < 0) {
            int expected = 0;
            atomic_compare_exchange_strong(&p->err, &expected, read_error(r));
            atomic_fetch_sub(&p->remaining, 1);
        }
    }
    read_ahead(fs, h, (uint64_t)off, end, c1);
    if (atomic_fetch_sub(&p->remaining, 1) == 1) pending_finish(p);
}

static void lseek_reply(fuse_req_t req, const FileHandle *h, off_t off, int whence);

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
    FileHandle *h = NULL;
    PrInode *in = NULL;
    int r = fh_get(fs_of(req), ino, fi, &h, &in);
    if (r < 0) return reply_err(req, r);
    lseek_reply(req, h, off, whence);
    fh_unref(h);
    pr_inode_unref(in);
}

static void lseek_reply(fuse_req_t req, const FileHandle *h, off_t off, int whence) {
    const PrNode *n = h->node;
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return reply_err(req, -EINVAL);
    if (off < 0) return reply_err(req, -EINVAL);
    if ((uint64_t)off >= n->size) return reply_err(req, -ENXIO);
    for (uint32_t c = chunk_at(h, (uint64_t)off); c < n->nchunks; c++) {
        bool hole = pr_id_is_zero(&n->chunks[c].id);
        if (hole == (whence == SEEK_HOLE)) {
            fuse_reply_lseek(req, (off_t)MAX((uint64_t)off, h->cum[c]));
            return;
        }
    }
    if (whence == SEEK_DATA) return reply_err(req, -ENXIO);
    fuse_reply_lseek(req, (off_t)n->size); /* the implicit hole at the end */
}

/* ---- extended attributes ---- */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
    PrFs *fs = fs_of(req);
    if (!fs->xattrs) return reply_err(req, -ENOSYS); /* see op_init */
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    const PrNode *n = in->kind == PR_INODE_NODE ? in->node : NULL;
    for (uint32_t i = 0; n && i < n->nxattrs; i++) {
        const PrXattr *x = &n->xattrs[i];
        if (strcmp(x->name, name) != 0) continue;
        if (size == 0) {
            fuse_reply_xattr(req, x->len);
        } else if (size < x->len) {
            reply_err(req, -ERANGE);
        } else {
            fuse_reply_buf(req, (const char *)x->value, x->len);
        }
        return;
    }
    /* No SELinux label stored for this entry: answer as a filesystem without labels does. `ls -l`
     * asks for security.selinux on every entry, FUSE cannot cache the answer, and ls stops asking
     * on a device once it is told "not supported": one round trip per mount instead of one per
     * entry (measured: 31 us of the 44 us a warm `ls -lR` spends per entry). Stored labels are
     * still returned above, and listxattr (what cp -a, getfattr -d and restore use) is unchanged. */
    if (strcmp(name, "security.selinux") == 0) return reply_err(req, -EOPNOTSUPP);
    /* likewise for ACLs when the mount runs without them (see op_init) */
    if (!fs->acls && strncmp(name, "system.posix_acl_", 17) == 0) return reply_err(req, -EOPNOTSUPP);
    reply_err(req, -ENODATA);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    PrFs *fs = fs_of(req);
    if (!fs->xattrs) return reply_err(req, -ENOSYS); /* see op_init */
    _cleanup_(pr_inode_unrefp) PrInode *in = NULL;
    if (pr_itable_get(fs->itable, ino, &in) < 0) return reply_err(req, -ESTALE);
    const PrNode *n = in->kind == PR_INODE_NODE ? in->node : NULL;
    size_t total = 0;
    for (uint32_t i = 0; n && i < n->nxattrs; i++) total += strlen(n->xattrs[i].name) + 1;
    if (size == 0) {
        fuse_reply_xattr(req, total);
        return;
    }
    if (size < total) return reply_err(req, -ERANGE);
    _cleanup_free_ char *buf = malloc(total ? total : 1);
    if (!buf) return reply_err(req, -ENOMEM);
    size_t pos = 0;
    for (uint32_t i = 0; n && i < n->nxattrs; i++) {
        size_t l = strlen(n->xattrs[i].name) + 1;
        memcpy(buf + pos, n->xattrs[i].name, l);
        pos += l;
    }
    fuse_reply_buf(req, buf, total);
}

/* ---- the rest ---- */

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
    (void)ino;
    struct statvfs sv = {.f_bsize = PR_FS_BLKSIZE, .f_frsize = 512, .f_namemax = 255, .f_flag = ST_RDONLY};
    fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
    if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO; /* `find` and `ls -R` get attributes with the names */
    /* The kernel enforces stored ACLs, but then asks for the ACL of every entry once (one round trip
     * each, which it caches). When no snapshot holds an ACL the mount says it has no ACL support,
     * as a filesystem mounted noacl does: `ls -l` stops asking on the first entry (a cold `ls -lR` of
     * 100,000 files: 100,000 round trips fewer) and permissions come from the modes, as they
     * would with ACLs that do not exist. */
    /* Likewise, when no snapshot holds any extended attribute, the first xattr request is answered
     * ENOSYS: the kernel then answers every later one itself ("not supported") and `cp -a` costs
     * two LISTXATTR and one GETXATTR round trips fewer per file. */
    PrFs *fs = userdata;
    bool any_acls, any_xattrs;
    pr_top_any_xattrs(fs->top, &any_acls, &any_xattrs);
    fs->acls = (conn->capable & FUSE_CAP_POSIX_ACL) && (fs->o.acl || any_acls);
    fs->xattrs = fs->acls || fs->o.xattr || any_xattrs;
    if (fs->acls) conn->want |= FUSE_CAP_POSIX_ACL;
    pr_top_set_support(fs->top, fs->acls, fs->xattrs);
    /* Files need no open state (it is kept per inode): without OPEN and RELEASE, `cp -a` of small
     * files costs two round trips fewer per file. */
    fs->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
    fs->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* symlink targets never change (a `latest` that moves is a new inode): let the kernel keep them,
     * so that paths through snapshots/latest/ cost no readlink per lookup */
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
    conn->want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ |
                              FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    conn->max_read = PR_FS_MAX_READ; /* must equal the max_read mount option (libfuse 3.14) */
    conn->max_readahead = PR_FS_MAX_READ;
    conn->time_gran = 1;
}

/* Everything that would change something. */
static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int set, struct fuse_file_info *fi) {
    (void)ino, (void)a, (void)set, (void)fi;
    reply_err(req, -EROFS);
}
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) {
    (void)p, (void)n, (void)m, (void)d;
    reply_err(req, -EROFS);
}
static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) {
    (void)p, (void)n, (void)m;
    reply_err(req, -EROFS);
}
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n) {
    (void)p, (void)n;
    reply_err(req, -EROFS);
}
static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) {
    (void)p, (void)n, (void)l;
    reply_err(req, -EROFS);
}
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned f) {
    (void)p, (void)n, (void)np, (void)nn, (void)f;
    reply_err(req, -EROFS);
}
static void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t np, const char *nn) {
    (void)i, (void)np, (void)nn;
    reply_err(req, -EROFS);
}
static void op_write(fuse_req_t req, fuse_ino_t i, const char *b, size_t s, off_t o, struct fuse_file_info *fi) {
    (void)i, (void)b, (void)s, (void)o, (void)fi;
    reply_err(req, -EROFS);
}
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) {
    (void)p, (void)n, (void)m, (void)fi;
    reply_err(req, -EROFS);
}
static void op_setxattr(fuse_req_t req, fuse_ino_t i, const char *n, const char *v, size_t s, int f) {
    (void)i, (void)n, (void)v, (void)s, (void)f;
    reply_err(req, -EROFS);
}
static void op_removexattr(fuse_req_t req, fuse_ino_t i, const char *n) {
    (void)i, (void)n;
    reply_err(req, -EROFS);
}
static void op_fallocate(fuse_req_t req, fuse_ino_t i, int m, off_t o, off_t l, struct fuse_file_info *fi) {
    (void)i, (void)m, (void)o, (void)l, (void)fi;
    reply_err(req, -EROFS);
}
static void op_copy_file_range(fuse_req_t req, fuse_ino_t a, off_t b, struct fuse_file_info *c, fuse_ino_t d, off_t e,
                               struct fuse_file_info *f, size_t g, int h) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g, (void)h;
    reply_err(req, -EROFS);
}

const struct fuse_lowlevel_ops pr_fs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .lseek = op_lseek,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .statfs = op_statfs,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .create = op_create,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
    .fallocate = op_fallocate,
    .copy_file_range = op_copy_file_range,
};
