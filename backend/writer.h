/* SPDX-License-Identifier: MIT */
/* The snapshot writer (DESIGN.md §5): walk -> chunk -> id -> dedup -> compress + encrypt (worker
 * threads) -> pack -> upload (uploader threads); trees bottom-up; then the index; the manifest last. */
#pragma once

#include "backend/lock.h"
#include "backend/repo.h"

typedef struct PrVolumeSpec {
    const char *name; /* valid tree name: no '/', not "." or ".." */
    const char *path;
} PrVolumeSpec;

typedef struct PrWriterProgress {
    uint64_t files, dirs, bytes_read, bytes_new, bytes_uploaded;
    const char *current; /* path being read; valid during the callback */
    double elapsed;
} PrWriterProgress;

typedef struct PrWriterOptions {
    const char *host;
    const char *const *tags;
    size_t ntags;
    const PrVolumeSpec *volumes;
    size_t nvolumes;
    unsigned workers;   /* compress + encrypt threads; 0: one per core */
    unsigned uploaders; /* concurrent pack uploads; 0: 2 on a local store, 4 on S3 */
    /* The lock the snapshot is written under (optional): once it lapsed (pr_lock_check), the
     * snapshot stops and nothing is published. */
    PrLock *lock;
    /* Called from the walking thread about four times a second. */
    void (*progress)(const PrWriterProgress *p, void *userdata);
    void *userdata;
} PrWriterOptions;

/* Test hook: PRAFS_TEST_SNAPSHOT_PAUSE=publish makes the writer stop with everything uploaded, right
 * before it publishes (saying "snapshot: test pause at publish" on stderr), until the file named by
 * PRAFS_TEST_SNAPSHOT_RESUME exists.
 *
 * Writes one snapshot. Returns 0 when everything was stored, 1 when the snapshot was written but some
 * entries could not be read (each logged with its path), -errno when no snapshot was written.
 * *ret (optional) receives the manifest as written. */
int pr_writer_snapshot(PrRepo *repo, const PrWriterOptions *opts, PrSnapshot **ret);
