/* SPDX-License-Identifier: MIT */
/* Setting up and tearing down the mount: caches, fetch threads, the FUSE session (read-only,
 * default_permissions, max_read 1 MiB), the bdi read-ahead, daemonizing, the multi-threaded loop. */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cache/util.h"
#include "fs/fs-internal.h"

/* "a,b\c" -> "a\,b\\c": a value inside a libfuse -o list. */
static char *opt_escape(const char *s) {
    char *out = malloc(2 * strlen(s) + 1), *w = out;
    if (!out) return NULL;
    for (; *s; s++) {
        if (*s == ',' || *s == '\\') *w++ = '\\';
        *w++ = *s;
    }
    *w = 0;
    return out;
}

/* Undoes the octal escapes of /proc/self/mountinfo ("\040" for a space) in place. */
static void unescape_octal(char *s) {
    char *w = s;
    for (char *r = s; *r;) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

/* The kernel caps read-ahead at min(the bdi's read_ahead_kb, max_readahead from INIT); the bdi
 * defaults to 128 KiB, so both must be raised to get 1 MiB requests. Best-effort: the mount works
 * without it, only slower for big sequential reads. */
static void set_bdi_readahead(const char *mountpoint) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return;
    char *line = NULL, dev[32] = "";
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        char majmin[32], mp[4096];
        if (sscanf(line, "%*u %*u %31s %*s %4095s", majmin, mp) != 2) continue;
        unescape_octal(mp);
        const char *sep = strstr(line, " - ");
        if (strcmp(mp, mountpoint) == 0 && sep && strncmp(sep + 3, "fuse", 4) == 0) snprintf(dev, sizeof dev, "%s", majmin);
    }
    free(line);
    fclose(f);
    if (!*dev) {
        pr_debug("mount %s not found in /proc/self/mountinfo; read-ahead left as is", mountpoint);
        return;
    }
    char path[96];
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    char val[16];
    int len = snprintf(val, sizeof val, "%u\n", PR_FS_MAX_READ >> 10);
    if (fd < 0 || write(fd, val, (size_t)len) != len)
        pr_log(PR_LOG_INFO, "cannot set %s (%s): big sequential reads will use 128 KiB requests", path, strerror(errno));
    else
        pr_debug("%s = %u", path, PR_FS_MAX_READ >> 10);
}

static bool index_used(void *ud) { return pr_fetcher_index_used(ud); }

static void fs_free(PrFs *fs) {
    if (!fs) return;
    if (fs->top) pr_top_stop(fs->top); /* first: the threads use everything else */
    pr_fetcher_free(fs->fetcher);
    pr_itable_free(fs->itable);
    pr_numbering_free(fs->num);
    pr_top_free(fs->top);
    pr_diskcache_free(fs->dc);
    pr_memcache_free(fs->mc);
    if (fs->zeros) munmap((void *)fs->zeros, PR_FS_MAX_READ);
    pthread_mutex_destroy(&fs->names_lock);
    free(fs->names_listed);
    free(fs);
}

static int fs_new(PrRepo *repo, const PrFsOptions *o, PrFs **ret) {
    PrFs *fs = calloc(1, sizeof *fs);
    if (!fs) return -ENOMEM;
    fs->repo = repo;
    fs->o = *o;
    pthread_mutex_init(&fs->names_lock, NULL);
    if (!fs->o.refresh_seconds) fs->o.refresh_seconds = 30;
    if (!fs->o.cache_mib) fs->o.cache_mib = 48; /* the page cache and the disk cache hold the rest */
    fs->uid = getuid();
    fs->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &fs->started);
    int r;
    void *z = mmap(NULL, PR_FS_MAX_READ, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (z == MAP_FAILED) {
        fs_free(fs);
        return -ENOMEM;
    }
    fs->zeros = z;
    if ((r = pr_memcache_new(fs->o.cache_mib << 20, &fs->mc)) < 0 || (r = pr_itable_new(&fs->itable)) < 0 ||
        (r = pr_numbering_new(&fs->num)) < 0) {
        fs_free(fs);
        return r;
    }
    if (o->disk_cache_mib) {
        _cleanup_free_ char *dir = NULL;
        char hex[65];
        pr_hex(pr_repo_config(repo)->id, 32, hex);
        r = o->disk_cache_dir ? ((dir = strdup(o->disk_cache_dir)) ? 0 : -ENOMEM) : pr_diskcache_default_dir(hex, &dir);
        if (r >= 0) r = pr_diskcache_open(dir, (uint64_t)o->disk_cache_mib << 20, &fs->dc);
        if (r < 0) pr_log_errno(r, "no disk cache (%s)", dir ? dir : "no $XDG_CACHE_HOME or $HOME");
    }
    /* the heap a large read fills: the memory cache, the GETs in flight, the disk-cache queue */
    PrFetcherOptions fo = {.threads = o->fetch_threads,
                           .preload_index = true,
                           .warm_heap = MIN(fs->o.cache_mib + 48, 160) << 20};
    if ((r = pr_fetcher_new(repo, fs->mc, fs->dc, &fo, &fs->fetcher)) < 0) {
        fs_free(fs);
        return r;
    }
    r = pr_top_new(repo, fs->o.refresh_seconds, &fs->top);
    if (r < 0) {
        fs_free(fs);
        return pr_log_errno(r, "cannot read the snapshots of %s", pr_repo_store(repo)->location);
    }
    PrInode *root = pr_inode_new(PR_ROOT_INO, PR_INODE_VDIR);
    if (!root) {
        fs_free(fs);
        return -ENOMEM;
    }
    root->vnode = 0;
    root->parent = PR_ROOT_INO;
    if ((r = pr_itable_insert_permanent(fs->itable, root)) < 0) {
        fs_free(fs);
        return r;
    }
    *ret = fs;
    return 0;
}

int pr_fs_run(PrRepo *repo, const PrFsOptions *o) {
    /* One heap for every thread (freed blobs are reused by whichever thread allocates next, which
     * keeps the resident size near the cache bound), and no mmap per blob: fresh pages cost a fault
     * each, which on some VMs is slower than everything else a read does. Nor is the heap's top given
     * back below 256 MiB: a cold `cat` freed and grew it again all the time, and zeroing the fresh
     * (huge) pages was 18 % of the mount's CPU time. What it holds is bounded anyway: the memory
     * cache, the GETs in flight and the disk-cache queue (peak ~150 MiB). The first growth to that
     * size still cost 15 %: the fetcher now does it once as the mount starts (warm_heap, fetch.c). */
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);

    PrFs *fs = NULL;
    int r = fs_new(repo, o, &fs);
    if (r < 0) return r;

    _cleanup_free_ char *fsname = opt_escape(o->fsname ? o->fsname : "prafs");
    _cleanup_free_ char *mopts = NULL;
    if (!fsname ||
        asprintf(&mopts, "ro,default_permissions,fsname=%s,subtype=prafs,max_read=%u%s%s", fsname, PR_FS_MAX_READ,
                 o->fuse_options && *o->fuse_options ? "," : "", o->fuse_options ? o->fuse_options : "") < 0) {
        fs_free(fs);
        return -ENOMEM;
    }
    char *argv[] = {"prafs", "-o", mopts, o->debug ? "-d" : NULL, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(o->debug ? 4 : 3, argv);
    fs->se = fuse_session_new(&args, &pr_fs_ops, sizeof pr_fs_ops, fs);
    fuse_opt_free_args(&args);
    if (!fs->se) {
        fs_free(fs);
        pr_log(PR_LOG_ERR, "cannot set up the FUSE session (options: %s)", mopts);
        return -EINVAL;
    }
    if (fuse_set_signal_handlers(fs->se) != 0) {
        fuse_session_destroy(fs->se);
        fs_free(fs);
        return pr_log_errno(EIO, "cannot install signal handlers");
    }
    if (fuse_session_mount(fs->se, o->mountpoint) != 0) {
        fuse_remove_signal_handlers(fs->se);
        fuse_session_destroy(fs->se);
        fs_free(fs);
        pr_log(PR_LOG_ERR, "cannot mount on %s", o->mountpoint);
        return -EIO;
    }
    set_bdi_readahead(o->mountpoint);

    bool fg = o->foreground || o->debug;
    if (fuse_daemonize(fg) != 0) {
        r = -EIO;
    } else {
        if (!fg && o->log_fd >= 0) dup2(o->log_fd, STDERR_FILENO);
        /* threads after the fork, in the process that stays */
        r = pr_fetcher_start(fs->fetcher);
        if (r >= 0) r = pr_top_start(fs->top, index_used, fs->fetcher);
        if (r >= 0) r = pr_pusher_start(fs);
    }
    if (r < 0) {
        pr_log_errno(r, "cannot start serving %s", o->mountpoint);
    } else {
        size_t live = 0;
        pr_top_info(fs->top, &live, NULL);
        pr_log(PR_LOG_INFO, "%s mounted on %s (%zu snapshots)", o->fsname ? o->fsname : "repository", o->mountpoint,
               live);
        struct fuse_loop_config cfg = {.clone_fd = 0, .max_idle_threads = 10};
        int lr = fuse_session_loop_mt(fs->se, &cfg);
        if (lr < 0) r = pr_log_errno(lr, "the FUSE session ended with an error");
        else r = 0;
    }
    /* answer what is still waiting for data, then unmount */
    uint64_t pushed = 0;
    pr_pusher_stop(fs, &pushed); /* before the fetcher: it holds no request, only cached values */
    pr_top_stop(fs->top);
    pr_fetcher_stop(fs->fetcher);
    fuse_session_unmount(fs->se);
    fuse_remove_signal_handlers(fs->se);
    fuse_session_destroy(fs->se);
    fs->se = NULL;
    if (pr_log_get_level() >= PR_LOG_INFO) {
        PrFetcherStats st;
        pr_fetcher_stats(fs->fetcher, &st);
        pr_log(PR_LOG_INFO,
               "unmounted: %llu GETs (%llu windows, %llu runs, %llu planned, %llu MiB), %llu windows prefetched, %llu disk cache "
               "hits, %llu disk cache writes (%llu dropped), %llu errors",
               (unsigned long long)st.store_gets, (unsigned long long)st.window_gets, (unsigned long long)st.run_gets,
               (unsigned long long)st.plan_gets, (unsigned long long)(st.store_bytes >> 20), (unsigned long long)st.prefetches,
               (unsigned long long)st.disk_hits, (unsigned long long)st.disk_writes,
               (unsigned long long)st.disk_dropped, (unsigned long long)st.errors);
        uint64_t reads = atomic_load(&fs->reads), waited = atomic_load(&fs->reads_waited);
        pr_log(PR_LOG_INFO,
               "unmounted: %llu reads, %llu waited for a fetch (%.2f s in all); %llu files pushed to the page cache; "
               "%llu listings with names only, %llu switches to attributes",
               (unsigned long long)reads, (unsigned long long)waited, (double)atomic_load(&fs->wait_us) / 1e6,
               (unsigned long long)pushed,
               (unsigned long long)atomic_load(&fs->names_listings), (unsigned long long)atomic_load(&fs->attrs_switches));
    }
    fs_free(fs);
    return r;
}
