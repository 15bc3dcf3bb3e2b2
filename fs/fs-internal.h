/* SPDX-License-Identifier: MIT */
/* Shared by the files of fs/: the mount's state and the FUSE operations table. */
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <sys/types.h>

#include "cache/diskcache.h"
#include "cache/memcache.h"
#include "fs/fetch.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "fs/top.h"

#define PR_FS_MAX_READ (1u << 20)      /* max_read, max_readahead, the bdi's read_ahead_kb */
#define PR_FS_TTL_LONG 86400.0         /* snapshot contents never change */
#define PR_FS_TTL_SHORT 1.0            /* the virtual top follows the snapshot list */
#define PR_FS_READAHEAD_CHUNKS 32      /* chunks fetched ahead of a sequential reader (~38 MiB; 16: a cold
                                        * cat 15-20 % slower here, more of its reads waited) */
#define PR_FS_BLKSIZE (128u << 10)     /* st_blksize: what cp and stdio use as buffer size */

typedef struct PrPusher PrPusher;

typedef struct PrFs {
    PrRepo *repo;
    PrFsOptions o;
    PrMemCache *mc;
    PrDiskCache *dc;
    PrFetcher *fetcher;
    PrInodeTable *itable;
    PrNumbering *num;
    PrTop *top;
    bool acls;               /* the kernel enforces POSIX ACLs (some snapshot has one, or -o acl) */
    bool xattrs;             /* xattr requests are answered (some snapshot has one, or -o xattr/acl) */
    bool no_open;            /* the kernel does not open files (FUSE_CAP_NO_OPEN_SUPPORT) */
    bool no_opendir;         /* ... nor directories (FUSE_CAP_NO_OPENDIR_SUPPORT) */
    struct fuse_session *se;
    PrPusher *pusher;        /* push.c; NULL: none */
    struct timespec started; /* wall clock at mount: times of the virtual directories with no snapshot */
    uid_t uid;               /* owner of the virtual entries: whoever mounted */
    gid_t gid;
    const uint8_t *zeros;    /* PR_FS_MAX_READ bytes of zeros (holes), read-only mapping */
    /* read-ahead across files (plan.c); compared as addresses only, never dereferenced */
    _Atomic(const PrNode *) plan_last;    /* the file a reader started last */
    _Atomic(const PrNode *) plan_trigger; /* starting this file plans the next stretch */
    _Atomic double plan_until;            /* pr_now() until which a miss plans at once */
    atomic_uint_fast64_t reads, reads_waited, wait_us; /* reads, those that waited for a fetch, how long */
    /* listings with names only for files (ops.c, "Names only"): until when listings carry
     * attributes again, and the directories listed so since the last switch (the kernel keeps
     * those listings) */
    _Atomic double attrs_until;
    atomic_uint_fast64_t names_listings, attrs_switches; /* counted for the unmount summary */
    pthread_mutex_t names_lock;
    uint64_t *names_listed; /* under names_lock */
    size_t n_names_listed, names_cap;
} PrFs;

extern const struct fuse_lowlevel_ops pr_fs_ops;

/* A reader starts file inode `in` (a read at offset 0); miss: its first blob is not in memory.
 * Plans the files after it when the reader goes through the tree in order (plan.c). Returns whether
 * it does (it follows plans, or started a file shortly before this one in the same directory). */
bool pr_fs_plan_read(PrFs *fs, PrInode *in, bool miss);

/* Small files into the kernel's page cache ahead of a reader (push.c). start: a thread, when
 * o.push_files (after fs->se is set); stop: joins it, drops what is queued, *pushed = files pushed;
 * after: a reader walking in order started file `in`: queue the files after it that are in memory. */
int pr_pusher_start(PrFs *fs);
void pr_pusher_stop(PrFs *fs, uint64_t *pushed);
void pr_pusher_after(PrFs *fs, PrInode *in);
