/* SPDX-License-Identifier: MIT */
/* Prune: delete what no snapshot references (DESIGN.md §3, docs/format.md "Prune").
 *
 * Mark: every tree of every snapshot is read once and every blob it names is marked used. Sweep:
 * each pack is kept (all or nearly all of it used), deleted (nothing used), or repacked (more than
 * `max_unused` of its blob bytes unused, or small packs to merge): its used blobs, each verified by
 * decoding, are copied as stored into new packs. Then one new complete index is published as new
 * index files, then the old index files are deleted, then the obsolete packs and the packs no
 * index names (left by killed writers or prunes), and stale locks. Killed at any moment, the surviving index files
 * only ever name packs that exist, and every snapshot stays restorable.
 *
 * The caller holds an exclusive lock (pr_lock_acquire): no writer is uploading meanwhile. */
#pragma once

#include "backend/lock.h"
#include "backend/repo.h"

typedef struct PrPruneProgress {
    const char *phase; /* "mark", "repack", "delete" */
    uint64_t done, total;
} PrPruneProgress;

typedef struct PrPruneOptions {
    PrLock *lock;      /* exclusive, held by the caller (required unless dry_run) */
    bool dry_run;      /* plan and report only; nothing is written or deleted */
    double max_unused; /* a pack with a larger share of unused blob bytes is repacked; 0: 0.2 */
    void (*progress)(const PrPruneProgress *p, void *userdata);
    void *userdata;
} PrPruneOptions;

typedef struct PrPruneStats {
    size_t snapshots, trees;
    uint64_t blobs_used, blobs_unused, blobs_duplicate;
    size_t index_files_read, index_files_written;
    size_t packs_before;      /* packs named by the index */
    size_t packs_kept, packs_repacked, packs_deleted;
    size_t packs_unreferenced; /* in data/ but in no index: deleted */
    size_t packs_missing;      /* in the index but not in data/, none of their blobs needed: dropped */
    size_t packs_written;      /* new packs holding the repacked blobs */
    size_t packs_after;
    uint64_t bytes_before, bytes_after; /* data/ and index/ */
    uint64_t bytes_repacked;            /* bytes of used blobs copied into new packs */
    size_t locks_removed;               /* stale locks deleted at the end */
} PrPruneStats;

/* Test hook: PRAFS_TEST_PRUNE_PAUSE=PHASE makes prune stop at PHASE ("start", "mark", "repack"
 * (after the first new pack is stored), "index" (after the new index is stored, before the old one
 * is deleted), "delete" (after the first obsolete pack is deleted)), say so on stderr ("prune: test
 * pause at PHASE"), and wait until the file named by PRAFS_TEST_PRUNE_RESUME exists (at most an hour). */
int pr_prune(PrRepo *r, const PrPruneOptions *opts, PrPruneStats *ret_stats);
