/* SPDX-License-Identifier: MIT */
/* Read-ahead across files, for a reader that goes through a tree in order (cp -a, tar, rsync, grep -r).
 *
 * A window of one pack around a missed blob serves such a reader while it stays in that pack, but
 * the writer fills packs in the order it reads files, 16 MiB each: every 16 MiB the reader enters a
 * pack nobody fetched and waits for a GET (cp -a of 100,000 small files: ~380 such waits). The tree
 * says what comes next. When a reader starts a file right after the one it started before in the
 * same directory, and that file is not in memory, the files after it are walked in the order a copy
 * takes them (entry order, into subdirectories as they come, then up to the parents: inode numbers
 * follow entry order, and cp sorts by them), PLAN_BYTES of file data, and their blobs handed to the
 * fetcher as a plan (fs/fetch.c: grouped by pack, one GET per group, in the reader's order). The file
 * a third of the way is the trigger: the reader starting it plans the next stretch, so that it never
 * catches up with the fetch. One reader is followed at a time; a second one in another place gets
 * its own plans from its misses. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cache/util.h"
#include "fs/fs-internal.h"
#include "fs/tree.h"

#define PLAN_BYTES (32u << 20)     /* file data planned at a time: the trigger a third of the way */
#define PLAN_FILE_BYTES (1u << 20) /* of a larger file, its start: a sequential read of it asks for the rest */
#define PLAN_DEPTH 64              /* directories up and down the walk follows */
#define PLAN_IDS 4096              /* blobs a plan holds at most */
#define PLAN_STEP 4                /* "the next file": at most this many entries after the last one */
#define PLAN_FOLLOW_SECONDS 2.0    /* a reader that got a plan this recently follows plans */

typedef struct Frame {
    PrCacheValue *tree; /* one reference */
    uint32_t idx;       /* next entry to look at */
} Frame;

/* Whether `last` is an entry of t at most `step` entries before `node` (also of t). */
static bool shortly_after(const PrFlatTree *t, const PrNode *last, const PrNode *node, uint32_t step) {
    return pr_flat_tree_holds(t, last) && pr_flat_tree_index(t, last) < pr_flat_tree_index(t, node) &&
           pr_flat_tree_index(t, node) - pr_flat_tree_index(t, last) <= step;
}

/* A directory's decoded tree if it can be had without waiting on the network (its decoded form or
 * its blob is in memory); else NULL, and its blob is asked for in the background. */
static PrCacheValue *tree_if_cached(PrFs *fs, const PrId *id) {
    uint8_t key[32];
    pr_flat_tree_key(id, key);
    PrCacheValue *v = pr_memcache_get(fs->mc, key);
    if (v) return v;
    PrCacheValue *blob = pr_memcache_get(fs->mc, id->b);
    if (!blob) {
        (void)pr_fetcher_want(fs->fetcher, id, false, NULL);
        return NULL;
    }
    /* from the blob held here: never a fetch in this (FUSE) thread */
    int r = pr_flat_tree_from_blob(fs->mc, id, blob, &v);
    pr_memcache_value_unref(blob);
    return r < 0 ? NULL : v;
}

/* The walk's stack from file inode `in` on: its directory from the file, then each parent from the
 * entry after the directory, as far up as inodes of tree entries go. Deepest last. Returns the
 * number of frames. */
static int stack_from(PrFs *fs, PrInode *in, Frame *st) {
    Frame up[PLAN_DEPTH];
    int n = 0;
    up[n++] = (Frame){pr_memcache_value_ref(in->tree), pr_flat_tree_index(pr_flat_tree(in->tree), in->node)};
    uint64_t p = in->parent;
    while (n < PLAN_DEPTH && p) {
        PrInode *d = NULL;
        if (pr_itable_get(fs->itable, p, &d) < 0) break;
        bool node = d->kind == PR_INODE_NODE && d->tree && d->node;
        if (node) {
            up[n++] = (Frame){pr_memcache_value_ref(d->tree), pr_flat_tree_index(pr_flat_tree(d->tree), d->node) + 1};
            p = d->parent;
        }
        pr_inode_unref(d);
        if (!node) break;
    }
    for (int i = 0; i < n; i++) st[i] = up[n - 1 - i];
    return n;
}

/* Walks from file inode `in` (itself included) and plans what it finds; returns the file a third
 * of the way (the next trigger) or, when the walk stopped at a directory whose tree is not in memory (asked
 * for), the last file planned: the reader getting there plans again. NULL when the tree is done. */
static const PrNode *plan_from(PrFs *fs, PrInode *in) {
    Frame st[PLAN_DEPTH];
    int depth = stack_from(fs, in, st) - 1;
    _cleanup_free_ PrId *ids = malloc(sizeof *ids * PLAN_IDS);
    _cleanup_free_ bool *keep = malloc(sizeof *keep * PLAN_IDS);
    size_t nids = 0;
    uint64_t bytes = 0;
    const PrNode *mid = NULL, *lastfile = NULL;
    bool stopped = false;
    while (ids && keep && depth >= 0 && bytes < PLAN_BYTES && nids < PLAN_IDS) {
        Frame *fr = &st[depth];
        const PrFlatTree *t = pr_flat_tree(fr->tree);
        if (fr->idx >= t->n) {
            pr_memcache_value_unref(fr->tree);
            depth--;
            continue;
        }
        const PrNode *n = &t->nodes[fr->idx++];
        if (n->type == PR_NODE_FILE) {
            uint64_t taken = 0;
            /* a file of several chunks keeps them on disk, as a sequential read of it would (its
             * read-ahead finds them planned and leaves them be); a small file, read once, does not */
            bool several = n->nchunks > 1;
            for (uint32_t c = 0; c < n->nchunks && taken < PLAN_FILE_BYTES && nids < PLAN_IDS; c++) {
                taken += n->chunks[c].length;
                if (pr_id_is_zero(&n->chunks[c].id)) continue;
                keep[nids] = several;
                ids[nids++] = n->chunks[c].id;
            }
            bytes += taken;
            lastfile = n;
            if (!mid && bytes >= PLAN_BYTES / 3) mid = n;
        } else if (n->type == PR_NODE_DIR && depth + 1 < PLAN_DEPTH) {
            PrCacheValue *sub = tree_if_cached(fs, &n->subtree);
            if (!sub) {
                stopped = true;
                break;
            }
            st[++depth] = (Frame){sub, 0};
        }
    }
    for (; depth >= 0; depth--) pr_memcache_value_unref(st[depth].tree);
    if (nids) (void)pr_fetcher_plan(fs->fetcher, ids, keep, nids);
    return mid ? mid : stopped ? lastfile : NULL;
}

bool pr_fs_plan_read(PrFs *fs, PrInode *in, bool miss) {
    if (in->kind != PR_INODE_NODE || !in->tree || !in->node) return false;
    const PrNode *node = in->node;
    const PrNode *last = atomic_exchange(&fs->plan_last, node);
    /* in order: it follows plans, or started a file a little before this one in this directory (the
     * files between may have been pushed to it: push.c) */
    bool walking = pr_now() < atomic_load(&fs->plan_until);
    if (!walking && last) walking = shortly_after(pr_flat_tree(in->tree), last, node, PLAN_STEP + fs->o.push_files);
    const PrNode *trigger = node;
    bool go = atomic_compare_exchange_strong(&fs->plan_trigger, &trigger, NULL);
    /* a miss: plan when the reader took the next file of the same directory, or follows plans
     * already (it missed anyway: it went elsewhere, or got ahead of a walk that had stopped) */
    if (!go && miss) go = pr_now() < atomic_load(&fs->plan_until);
    if (!go && miss && last) go = shortly_after(pr_flat_tree(in->tree), last, node, PLAN_STEP);
    if (!go) return walking;
    atomic_store(&fs->plan_until, pr_now() + PLAN_FOLLOW_SECONDS);
    const PrNode *mid = plan_from(fs, in);
    if (mid) atomic_store(&fs->plan_trigger, mid);
    return true;
}
