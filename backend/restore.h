/* SPDX-License-Identifier: MIT */
/* Restore without FUSE: the same bytes and metadata as `cp -a` out of the mount. */
#pragma once

#include "backend/repo.h"

typedef struct PrRestoreStats {
    uint64_t files, dirs, bytes;
    uint64_t not_restored; /* files removed: their data failed, or the restore stopped before it */
    unsigned errors;
} PrRestoreStats;

typedef struct PrRestoreOptions {
    void (*progress)(const PrRestoreStats *st, const char *path, void *userdata);
    void *userdata;
} PrRestoreOptions;

/* Restores `path` of snapshot s ("" or NULL: every volume, as dest/<volume>) into dest (created if
 * missing); a named entry is restored as dest/<its name>. Existing non-directories in the way are
 * replaced. Damaged data is never written as if it were good: a file whose blob fails to verify is
 * removed and reported, the rest goes on, and the result is -EIO. */
int pr_restore(PrRepo *repo, const PrSnapshot *s, const char *path, const char *dest,
               const PrRestoreOptions *opts, PrRestoreStats *ret_stats);
