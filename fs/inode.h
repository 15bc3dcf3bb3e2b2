/* SPDX-License-Identifier: MIT */
/* Inodes of the mount: the table of live inodes with the kernel's lookup counts, and the numbering
 * that keeps inode numbers stable for the life of the mount. No FUSE here: the operations in ops.c
 * call these, and the unit tests call them directly.
 *
 * Numbering. Virtual entries (the top: snapshots/, volumes/, tags/, ...) are numbered 1, 2, 3, ... by
 * the top's registry, which never forgets a path (ino < 2^32). An entry of a snapshot tree is numbered
 * from its directory: every directory whose children are looked up gets a permanent directory number
 * D (1, 2, 3, ... < 2^31, keyed by the directory's own inode number), and its i-th entry (trees are
 * sorted, immutable) is D << 32 | (i + 1). Files of a hardlink group (same volume instance, same
 * non-zero link_group) take the number of the first path seen, kept in a permanent map. Volume
 * instances (snapshot, volume) are numbered so that snapshots/<label>/<vol> and volumes/<vol>/<label>
 * share hardlink groups. The registries grow with what is browsed (16-24 bytes a directory), never
 * with the size of the repository, and make a number computed again after a forget the same.
 *
 * Lifetime (as libfuse's passthrough_hp): an inode is in the table while the kernel holds lookups
 * on it (nlookup > 0). Every reply that hands an entry to the kernel (lookup, readdirplus) counts
 * one; forget and forget_multi take counts back; at zero the inode leaves the table. Borrowers
 * (an operation in progress, an open file) hold a reference (refs) so the memory outlives a forget
 * that races with them. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/format.h"
#include "cache/memcache.h"

#define PR_ROOT_INO 1ull
#define PR_DIRID_MAX 0x7fffffffu

enum {
    PR_INODE_VDIR = 1, /* virtual directory: its children are the top's entries */
    PR_INODE_VLINK,    /* virtual symlink (latest, tags/, hosts/, ids/) */
    PR_INODE_SNAPROOT, /* snapshots/<label>: virtual attributes, children = the snapshot's root tree */
    PR_INODE_NODE,     /* an entry of a tree (volumes/<vol>/<label> too: a volume's root node) */
};

typedef struct PrInode {
    uint64_t ino;
    uint64_t nlookup; /* the kernel's references; guarded by the table's lock */
    atomic_uint refs; /* the table's one, plus one per borrower */
    uint8_t kind;     /* PR_INODE_* */
    uint32_t vnode;   /* virtual inodes and volume views: index in the top's registry (else 0) */
    uint32_t snap;    /* snapshot index (all but VDIR) */
    uint32_t volinst; /* NODE: its volume instance */
    uint64_t parent;  /* directories: the parent's number, for ".." */
    PrCacheValue *tree; /* NODE: the flattened tree holding node (one reference, released with the inode) */
    const PrNode *node; /* NODE: borrowed from tree */
    atomic_uint dirid;  /* directories: their directory number, 0 until first needed */
    /* tree directories: listed with names only for files since the last switch to attributes
     * (ops.c), and lookups of files in it since */
    atomic_bool names;
    atomic_uint names_lookups;
    atomic_bool pushed; /* files: handed to the kernel's page cache (push.c) */
    /* files: the reader's state when the kernel does not open files (set once; freed with the
     * inode by file_free) */
    _Atomic(void *) file;
    void (*file_free)(void *file);
} PrInode;

/* A new inode with refs = 1 and nlookup = 0, fields zero but ino and kind. Takes no reference on
 * anything: the caller fills the rest (tree: a reference it hands over). NULL on ENOMEM. */
PrInode *pr_inode_new(uint64_t ino, uint8_t kind);
PrInode *pr_inode_ref(PrInode *i);
/* Drops a reference; the last one frees the inode and its tree reference. NULL-safe. */
void pr_inode_unref(PrInode *i);
static inline void pr_inode_unrefp(PrInode **i) { pr_inode_unref(*i); }
static inline bool pr_inode_is_dir(const PrInode *i) {
    return i->kind == PR_INODE_VDIR || i->kind == PR_INODE_SNAPROOT ||
           (i->kind == PR_INODE_NODE && i->node && i->node->type == PR_NODE_DIR);
}

typedef struct PrInodeTable PrInodeTable;

int pr_itable_new(PrInodeTable **ret);
/* Frees every inode still in the table (their lookups are dropped). NULL-safe. */
void pr_itable_free(PrInodeTable *t);
static inline void pr_itable_freep(PrInodeTable **t) { pr_itable_free(*t); }

/* If ino is in the table: counts one lookup on it and returns 1 and a new reference in *ret.
 * Else 0 (and *ret = NULL). */
int pr_itable_lookup(PrInodeTable *t, uint64_t ino, PrInode **ret);
/* Inserts fresh (ownership taken in every case) and counts one lookup on it. If an inode with the
 * same number got in first, counts the lookup on that one and frees fresh. Returns 0 and a new
 * reference to the inode in the table in *ret, or -ENOMEM (fresh freed, nothing counted). */
int pr_itable_insert(PrInodeTable *t, PrInode *fresh, PrInode **ret);
/* Inserts fresh with a lookup count that never reaches zero (the root). */
int pr_itable_insert_permanent(PrInodeTable *t, PrInode *fresh);
/* A new reference to the inode, without counting a lookup; -ENOENT if not in the table. */
int pr_itable_get(PrInodeTable *t, uint64_t ino, PrInode **ret);
/* Takes n lookups back; at zero the inode leaves the table (and is freed once unborrowed).
 * Returns the remaining count, or -ENOENT for an unknown inode (logged by the caller if it cares). */
int64_t pr_itable_forget(PrInodeTable *t, uint64_t ino, uint64_t n);
/* Inodes in the table, and slots allocated. */
void pr_itable_usage(PrInodeTable *t, size_t *ret_count, size_t *ret_slots);

/* ---- stable numbering ---- */

typedef struct PrNumbering PrNumbering;

int pr_numbering_new(PrNumbering **ret);
void pr_numbering_free(PrNumbering *n);
static inline void pr_numbering_freep(PrNumbering **n) { pr_numbering_free(*n); }

/* The directory number of the directory whose inode number is dir_ino (assigned on first call,
 * the same ever after). -EOVERFLOW past PR_DIRID_MAX directories, -ENOMEM. */
int pr_numbering_dirid(PrNumbering *n, uint64_t dir_ino, uint32_t *ret);
/* The volume instance of volume entry vol_idx of snapshot snap's root tree (1, 2, ...; permanent). */
int pr_numbering_volinst(PrNumbering *n, uint32_t snap, uint32_t vol_idx, uint32_t *ret);
/* The inode number of entry idx of the directory numbered dirid; a file with a non-zero link_group
 * takes the number its group got first within volinst. -EOVERFLOW if idx is too large. */
int pr_numbering_child(PrNumbering *n, uint32_t dirid, uint32_t idx, uint32_t volinst, uint64_t link_group,
                       uint64_t *ret);
/* Entries held by the registries (directories, volume instances, hardlink groups). */
void pr_numbering_usage(PrNumbering *n, size_t *ret_dirs, size_t *ret_volinsts, size_t *ret_links);
