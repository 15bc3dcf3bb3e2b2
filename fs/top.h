/* SPDX-License-Identifier: MIT */
/* The virtual top of the mount (DESIGN.md §2), built from the snapshot list:
 *
 *   snapshots/<label>/            one directory per snapshot; its entries are the volumes
 *   snapshots/latest -> <label>
 *   volumes/<vol>/<label>/        the volume's root directory in that snapshot
 *   volumes/<vol>/latest -> <label>
 *   tags/<tag>/<label> -> ../../snapshots/<label>
 *   hosts/<host>/<label> -> ../../snapshots/<label>
 *   ids/<8 hex> -> ../snapshots/<label>       (more digits when 8 are ambiguous)
 *
 * Every path ever shown keeps its entry (and so its inode number, index + 1) for the life of the
 * mount; paths of snapshots that went away are marked dead and listed nowhere. Snapshots themselves
 * are kept (never freed) so borrowed pointers to them stay valid. The list is read again at most
 * every refresh seconds: in the caller's thread when a virtual directory is listed or a name is
 * missing from one (the user is looking for something new), in a background thread when a name
 * that is there is looked up (nobody waits on the store for it). New snapshots make the repository
 * index reload first. A `latest` link that moves is a new entry (a new inode), never a changed one.
 * Thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/repo.h"

enum {
    PR_VNODE_DIR = 1, /* root, snapshots/, volumes/, volumes/<vol>/, tags/, tags/<tag>/, ... */
    PR_VNODE_LINK,    /* latest, tags/<tag>/<label>, hosts/<host>/<label>, ids/<id> */
    PR_VNODE_SNAP,    /* snapshots/<label> */
    PR_VNODE_VOL,     /* volumes/<vol>/<label> */
};

typedef struct PrTop PrTop;

typedef struct PrVEntry {
    uint32_t vnode; /* index; the inode number is vnode + 1 */
    uint8_t type;   /* PR_VNODE_* */
    bool live;
    bool latest;    /* a `latest` link */
    uint32_t snap;  /* SNAP, VOL, LINK: the snapshot */
    uint32_t parent;
    char *name;     /* malloc'ed (for VOL: volume is malloc'ed too) */
    char *volume;
} PrVEntry;

void pr_ventry_clear(PrVEntry *e);
void pr_ventry_list_free(PrVEntry *list, size_t n);

static inline uint64_t pr_vnode_ino(uint32_t vnode) { return (uint64_t)vnode + 1; }

/* Reads the snapshot list once (errors are the caller's to report). repo borrowed. */
int pr_top_new(PrRepo *repo, unsigned refresh_seconds, PrTop **ret);
void pr_top_free(PrTop *t);
static inline void pr_top_freep(PrTop **t) { pr_top_free(*t); }

/* Reads the snapshot list again if the last attempt is older than the refresh interval (one thread
 * does it; the others wait for it). index_used: reload the index when snapshots are new. */
void pr_top_maybe_refresh(PrTop *t, bool index_used);
/* Starts the background refresher (after a fork: threads do not survive it); index_used(ud) says
 * whether the index was loaded. pr_top_kick asks it for a refresh if the list is stale, without
 * waiting. pr_top_stop joins it (pr_top_free does too). */
int pr_top_start(PrTop *t, bool (*index_used)(void *ud), void *ud);
void pr_top_kick(PrTop *t);
void pr_top_stop(PrTop *t);
/* Reads it now. Returns 1 when the set of snapshots changed, 0 if not, -errno (the old list stays). */
int pr_top_refresh(PrTop *t, bool index_used);

/* The live child name of directory vnode parent. -ENOENT, -ENOTDIR. */
int pr_top_lookup(PrTop *t, uint32_t parent, const char *name, PrVEntry *ret);
int pr_top_get(PrTop *t, uint32_t vnode, PrVEntry *ret);
/* Copies of the live children of directory vnode dir, sorted by name. */
int pr_top_list(PrTop *t, uint32_t dir, PrVEntry **ret, size_t *ret_n);
/* The current target of a link (malloc'ed). */
int pr_top_readlink(PrTop *t, uint32_t vnode, char **ret);
/* Borrowed, valid for the life of the top (NULL if out of range). */
const PrSnapshot *pr_top_snapshot(PrTop *t, uint32_t snap);
/* Whether any snapshot read so far may hold POSIX ACLs, extended attributes (a count above zero,
 * or unknown). */
void pr_top_any_xattrs(PrTop *t, bool *ret_acls, bool *ret_xattrs);
/* The mount runs without ACL / xattr support: a snapshot with them that appears later gets a
 * warning. */
void pr_top_set_support(PrTop *t, bool acls, bool xattrs);
/* Snapshot count (live), and the mtime of the virtual directories: when this mount saw the set of
 * snapshots change, or before any change the newest live snapshot's time (0 if none). */
void pr_top_info(PrTop *t, size_t *ret_live, struct timespec *ret_mtime);
