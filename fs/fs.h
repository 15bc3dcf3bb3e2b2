/* SPDX-License-Identifier: MIT */
/* The read-only FUSE mount of a repository (DESIGN.md §2 and §4). The command line (cli/cmd_mount.c)
 * opens the repository and parses options; everything from there on is here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "backend/repo.h"

typedef struct PrFsOptions {
    const char *mountpoint;     /* absolute, canonical (it is matched against /proc/self/mountinfo) */
    const char *fsname;         /* shown in /proc/mounts (the repository location) */
    bool foreground;            /* else fork into the background once mounted (fuse_daemonize) */
    bool debug;                 /* libfuse's request log (implies foreground) */
    bool acl;                   /* enforce POSIX ACLs even when no snapshot holds one (yet) */
    bool xattr;                 /* answer xattr requests even when no snapshot holds one (yet) */
    unsigned refresh_seconds;   /* re-list snapshots at most this often; 0: 30 */
    size_t cache_mib;           /* memory cache of decoded blobs; 0: 48 */
    size_t disk_cache_mib;      /* disk cache of stored blobs; 0: none */
    const char *disk_cache_dir; /* NULL: $XDG_CACHE_HOME/prafs/<repo id> or ~/.cache/prafs/<repo id> */
    unsigned fetch_threads;     /* 0: 4 */
    unsigned push_files;        /* files of a directory pushed ahead of a reader walking it; 0: none */
    const char *fuse_options;   /* more comma-separated options for libfuse (allow_other, ...), or NULL */
    int log_fd;                 /* >= 0: stderr is redirected there once in the background */
} PrFsOptions;

/* Mounts, serves until unmounted (fusermount3 -u, umount) or sent SIGINT/SIGTERM/SIGHUP, unmounts
 * and returns 0; or -errno (logged) if it could not mount. Before mounting it reads the snapshot list,
 * so a repository that cannot be read fails here, in the foreground. repo is borrowed. */
int pr_fs_run(PrRepo *repo, const PrFsOptions *o);
