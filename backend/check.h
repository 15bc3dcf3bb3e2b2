/* SPDX-License-Identifier: MIT */
/* Check: is every snapshot whole, and (with read_data) is every byte sound?
 *
 * Structure: every index file decodes; every pack the index names is in data/ (one listing) and
 * long enough for the blobs the index puts in it; every manifest decodes and matches its name;
 * every tree of every snapshot decodes, and every blob it names (subtrees, chunks) is indexed.
 * Data (read_data): every pack (or a random share of them) is downloaded whole; its SHA-256 must
 * be its name, its trailer must decode and agree with the index, and every blob in it must decode
 * (authenticate, decompress, length) to plaintext whose id is the blob's id.
 *
 * Every problem is reported with the object's key; then every file and directory of every
 * snapshot that a damaged or missing blob affects is reported with the snapshot and the path. */
#pragma once

#include "backend/repo.h"

typedef struct PrCheckProgress {
    const char *phase; /* "snapshots", "index", "trees", "read" */
    uint64_t done, total;
    uint64_t bytes; /* read so far (phase "read") */
} PrCheckProgress;

typedef struct PrCheckOptions {
    bool read_data;
    /* With read_data: the percentage of packs to read, chosen at random (at least one pack); 0 or
     * >= 100: all. */
    double subset_percent;
    /* One problem, one line, no trailing newline; errors are what make the check fail, warnings
     * (packs no index names: left by interrupted writers, removed by prune) do not. */
    void (*report)(bool error, const char *line, void *userdata);
    void (*progress)(const PrCheckProgress *p, void *userdata);
    void *userdata;
} PrCheckOptions;

typedef struct PrCheckStats {
    size_t snapshots, index_files, packs, trees;
    uint64_t blobs_referenced; /* distinct data blobs the snapshots name */
    size_t packs_read;
    uint64_t bytes_read;
    size_t packs_unreferenced;
    size_t errors, warnings;
    size_t damaged_snapshots; /* snapshots with at least one affected path (or a bad manifest) */
} PrCheckStats;

/* 0 when no error was found, -EBADMSG when some were (counted in the stats and reported), another
 * -errno when the check could not run (e.g. the store is unreachable). */
int pr_check(PrRepo *r, const PrCheckOptions *opts, PrCheckStats *ret_stats);
