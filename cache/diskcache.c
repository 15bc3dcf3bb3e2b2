/* SPDX-License-Identifier: MIT */
#include "cache/diskcache.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cache/util.h"

#define TMP_PREFIX ".tmp-"
#define STALE_TMP_SECONDS 3600
#define ATIME_REFRESH_SECONDS 60

struct PrDiskCache {
    char *dir;
    uint64_t max_bytes;
    pthread_mutex_t lock; /* guards the counters; trim_lock serialises scans */
    pthread_mutex_t trim_lock;
    uint64_t bytes, count;
    atomic_bool warned; /* a failed write was reported: once per process, the cache is optional */
};

static int mkdir_p(const char *path, mode_t mode) {
    _cleanup_free_ char *p = strdup(path);
    if (!p) return -ENOMEM;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST) return -errno;
            *q = c;
            if (!c) break;
        }
    }
    return 0;
}

int pr_diskcache_default_dir(const char *repo_id_hex, char **ret) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/') n = asprintf(ret, "%s/prafs/%s", xdg, repo_id_hex);
    else if (home && *home) n = asprintf(ret, "%s/.cache/prafs/%s", home, repo_id_hex);
    else return -ENOENT;
    return n < 0 ? -ENOMEM : 0;
}

/* DIR/xx/<hex> into buf (size: strlen(dir) + 70). */
static void entry_path(const PrDiskCache *c, const uint8_t key[32], char *buf, size_t size) {
    char hex[65];
    pr_hex(key, 32, hex);
    snprintf(buf, size, "%s/%.2s/%s", c->dir, hex, hex);
}

typedef struct ScanEntry {
    char *path;
    uint64_t size;
    int64_t used; /* later of atime and mtime, ns */
} ScanEntry;

typedef struct Scan {
    ScanEntry *v;
    size_t n, cap;
    uint64_t total;
} Scan;

static void scan_clear(Scan *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i].path);
    free(s->v);
    *s = (Scan){0};
}

static bool is_entry_name(const char *name) {
    return strlen(name) == 64 && strspn(name, "0123456789abcdef") == 64;
}

static int scan_subdir(const char *path, Scan *s, time_t now) {
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : -errno;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (name[0] == '.' && strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) != 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
        if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            /* a writer that died between create and rename */
            if (now - st.st_mtime > STALE_TMP_SECONDS) unlinkat(dirfd(d), name, 0);
            continue;
        }
        if (!is_entry_name(name)) continue;
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 256;
            ScanEntry *v = realloc(s->v, sizeof *v * cap);
            if (!v) {
                r = -ENOMEM;
                break;
            }
            s->v = v;
            s->cap = cap;
        }
        char *p = NULL;
        if (asprintf(&p, "%s/%s", path, name) < 0) {
            r = -ENOMEM;
            break;
        }
        int64_t at = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
        int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        s->v[s->n++] = (ScanEntry){p, (uint64_t)st.st_size, MAX(at, mt)};
        s->total += (uint64_t)st.st_size;
    }
    closedir(d);
    return r;
}

static int scan(PrDiskCache *c, Scan *s) {
    time_t now = time(NULL);
    for (int i = 0; i < 256; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "/%02x", i);
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s%s", c->dir, sub) < 0) return -ENOMEM;
        int r = scan_subdir(path, s, now);
        if (r < 0) return r;
    }
    return 0;
}

static int cmp_used(const void *a, const void *b) {
    const ScanEntry *x = a, *y = b;
    return x->used < y->used ? -1 : x->used > y->used;
}

/* Scans, and if over the bound deletes the least recently used entries down to 90% of it. */
static int trim(PrDiskCache *c, bool only_if_over) {
    pthread_mutex_lock(&c->trim_lock);
    if (only_if_over) {
        pthread_mutex_lock(&c->lock);
        bool over = c->bytes > c->max_bytes;
        pthread_mutex_unlock(&c->lock);
        if (!over) { /* another thread trimmed meanwhile */
            pthread_mutex_unlock(&c->trim_lock);
            return 0;
        }
    }
    Scan s = {0};
    int r = scan(c, &s);
    if (r >= 0 && s.total > c->max_bytes) {
        uint64_t target = c->max_bytes / 10 * 9;
        qsort(s.v, s.n, sizeof *s.v, cmp_used);
        for (size_t i = 0; i < s.n && s.total > target; i++) {
            if (unlink(s.v[i].path) < 0 && errno != ENOENT) continue;
            s.total -= s.v[i].size;
            s.v[i].size = UINT64_MAX; /* gone */
        }
    }
    if (r >= 0) {
        uint64_t count = 0;
        for (size_t i = 0; i < s.n; i++) count += s.v[i].size != UINT64_MAX;
        pthread_mutex_lock(&c->lock);
        c->bytes = s.total;
        c->count = count;
        pthread_mutex_unlock(&c->lock);
    }
    scan_clear(&s);
    pthread_mutex_unlock(&c->trim_lock);
    return r;
}

int pr_diskcache_trim(PrDiskCache *c) { return trim(c, false); }

int pr_diskcache_open(const char *dir, uint64_t max_bytes, PrDiskCache **ret) {
    if (!dir || !*dir || max_bytes == 0) return -EINVAL;
    int r = mkdir_p(dir, 0700);
    if (r < 0) return r;
    PrDiskCache *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    if (!(c->dir = strdup(dir))) {
        free(c);
        return -ENOMEM;
    }
    size_t l = strlen(c->dir);
    while (l > 1 && c->dir[l - 1] == '/') c->dir[--l] = 0;
    c->max_bytes = max_bytes;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->trim_lock, NULL);
    r = trim(c, false);
    if (r < 0) {
        pr_diskcache_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

void pr_diskcache_free(PrDiskCache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->trim_lock);
    free(c->dir);
    free(c);
}

int pr_diskcache_get(PrDiskCache *c, const uint8_t key[32], size_t max_len, void **ret, size_t *ret_len) {
    size_t psize = strlen(c->dir) + 72;
    _cleanup_free_ char *path = malloc(psize);
    if (!path) return -ENOMEM;
    entry_path(c, key, path, psize);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? -ENOENT : -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -ENOENT;
    if ((uint64_t)st.st_size > max_len) {
        pr_diskcache_remove(c, key);
        return -EFBIG;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -ENOMEM;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            return -e;
        }
        if (n == 0) break; /* shrunk under us: return what is there, the decode will judge */
        got += (size_t)n;
    }
    /* keep the entry young for eviction, without a write per hit */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec - st.st_atim.tv_sec > ATIME_REFRESH_SECONDS) {
        struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
        (void)futimens(fd, ts);
    }
    *ret = buf;
    *ret_len = got;
    return 0;
}

/* A write to the cache failed (a full disk, a read-only one, a quota): reads go on without it, but
 * whoever runs the mount should know why the cache does not fill, once. */
static int put_failed(PrDiskCache *c, int r) {
    if (!atomic_exchange(&c->warned, true))
        pr_log(PR_LOG_WARN, "disk cache %s: cannot store an entry (%s); what is not cached is fetched again when needed",
               c->dir, strerror(-r));
    return r;
}

int pr_diskcache_put(PrDiskCache *c, const uint8_t key[32], const void *data, size_t len) {
    size_t psize = strlen(c->dir) + 72;
    _cleanup_free_ char *path = malloc(psize);
    _cleanup_free_ char *tmp = NULL;
    if (!path) return -ENOMEM;
    entry_path(c, key, path, psize);
    char *slash = strrchr(path, '/');
    if (asprintf(&tmp, "%.*s/" TMP_PREFIX "XXXXXX", (int)(slash - path), path) < 0) return -ENOMEM;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        *slash = 0;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) return put_failed(c, -errno);
        *slash = '/';
        memcpy(tmp + strlen(tmp) - 6, "XXXXXX", 6);
        fd = mkostemp(tmp, O_CLOEXEC);
    }
    if (fd < 0) return put_failed(c, -errno);
    const uint8_t *p = data;
    size_t done = 0;
    int r = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            r = -errno;
            break;
        }
        done += (size_t)n;
    }
    if (close(fd) < 0 && r == 0) r = -errno;
    if (r == 0 && rename(tmp, path) < 0) r = -errno;
    if (r < 0) {
        unlink(tmp);
        return put_failed(c, r);
    }
    pthread_mutex_lock(&c->lock);
    c->bytes += len;
    c->count++;
    bool over = c->bytes > c->max_bytes;
    pthread_mutex_unlock(&c->lock);
    if (over) trim(c, true);
    return 0;
}

int pr_diskcache_remove(PrDiskCache *c, const uint8_t key[32]) {
    size_t psize = strlen(c->dir) + 72;
    _cleanup_free_ char *path = malloc(psize);
    if (!path) return -ENOMEM;
    entry_path(c, key, path, psize);
    struct stat st;
    bool had = lstat(path, &st) == 0;
    if (unlink(path) < 0) return errno == ENOENT ? 0 : -errno;
    if (had) {
        pthread_mutex_lock(&c->lock);
        c->bytes -= MIN(c->bytes, (uint64_t)st.st_size);
        if (c->count) c->count--;
        pthread_mutex_unlock(&c->lock);
    }
    return 0;
}

void pr_diskcache_usage(PrDiskCache *c, uint64_t *ret_bytes, uint64_t *ret_count) {
    pthread_mutex_lock(&c->lock);
    if (ret_bytes) *ret_bytes = c->bytes;
    if (ret_count) *ret_count = c->count;
    pthread_mutex_unlock(&c->lock);
}
