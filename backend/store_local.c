/* SPDX-License-Identifier: MIT */
/* The local-directory store: one file per object under the repository directory.
 * Writes go to a temporary name in the same directory, are fsync'ed, then renamed, and the directory
 * is fsync'ed: a crash never leaves a truncated object under its real name. Temporary files start
 * with ".tmp-" and are skipped by list(). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/store.h"
#include "cache/util.h"

typedef struct LocalStore {
    PrStore base;
    char *root;
} LocalStore;

static int key_path(LocalStore *s, const char *key, char **ret) {
    /* keys come from our own code, but refuse anything that could leave the root */
    if (!*key || key[0] == '/' || strstr(key, "..")) return -EINVAL;
    if (asprintf(ret, "%s/%s", s->root, key) < 0) return -ENOMEM;
    return 0;
}

static int local_get(PrStore *base, const char *key, uint64_t off, size_t len, void **ret_data, size_t *ret_len) {
    LocalStore *s = (LocalStore *)base;
    _cleanup_free_ char *path = NULL;
    int r = key_path(s, key, &path);
    if (r < 0) return r;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    uint64_t size = (uint64_t)st.st_size;
    uint64_t avail = off < size ? size - off : 0;
    size_t want = len == 0 ? (size_t)avail : (size_t)MIN((uint64_t)len, avail);
    uint8_t *buf = malloc(want ? want : 1);
    if (!buf) return -ENOMEM;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR) continue;
            r = -errno;
            free(buf);
            return r;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    *ret_data = buf;
    *ret_len = got;
    return 0;
}

static int mkdir_parents(const char *path) {
    _cleanup_free_ char *p = strdup(path);
    if (!p) return -ENOMEM;
    for (char *q = p + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0700) < 0 && errno != EEXIST) return -errno;
        *q = '/';
    }
    return 0;
}

static int fsync_dir_of(const char *path) {
    _cleanup_free_ char *d = strdup(path);
    if (!d) return -ENOMEM;
    char *slash = strrchr(d, '/');
    if (!slash) return 0;
    *slash = 0;
    _cleanup_close_ int fd = open(*d ? d : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (fsync(fd) < 0) return -errno;
    return 0;
}

static int local_put(PrStore *base, const char *key, const void *data, size_t len) {
    LocalStore *s = (LocalStore *)base;
    _cleanup_free_ char *path = NULL, *tmp = NULL;
    int r = key_path(s, key, &path);
    if (r < 0) return r;
    char *slash = strrchr(path, '/');
    if (asprintf(&tmp, "%.*s/.tmp-%s-XXXXXX", (int)(slash - path), path, slash + 1) < 0) return -ENOMEM;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        r = mkdir_parents(tmp);
        if (r < 0) return r;
        memcpy(tmp + strlen(tmp) - 6, "XXXXXX", 6); /* the failed call may have changed it */
        fd = mkostemp(tmp, O_CLOEXEC);
    }
    if (fd < 0) return -errno;
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            r = -errno;
            goto fail;
        }
        done += (size_t)n;
    }
    if (fchmod(fd, 0400) < 0 || fsync(fd) < 0) {
        r = -errno;
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        r = -errno;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto fail;
    }
    return fsync_dir_of(path);
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    return r;
}

typedef struct ListCtx {
    LocalStore *s;
    const char *prefix;
    PrStoreListFn fn;
    void *ud;
} ListCtx;

/* Walks dir (relative key prefix rel), calling fn for files whose key starts with the prefix. */
static int list_dir(ListCtx *c, const char *rel) {
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s%s%s", c->s->root, *rel ? "/" : "", rel) < 0) return -ENOMEM;
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : -errno;
    int r = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue; /* ".", "..", ".tmp-*" */
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
            r = -ENOMEM;
            break;
        }
        size_t kl = strlen(key), pl = strlen(c->prefix);
        /* descend only where the key can still match the prefix */
        if (strncmp(key, c->prefix, MIN(kl, pl)) != 0) continue;
        struct stat st;
        _cleanup_free_ char *full = NULL;
        if (asprintf(&full, "%s/%s", c->s->root, key) < 0) {
            r = -ENOMEM;
            break;
        }
        if (lstat(full, &st) < 0) {
            if (errno == ENOENT) continue;
            r = -errno;
            break;
        }
        if (S_ISDIR(st.st_mode)) r = list_dir(c, key);
        else if (S_ISREG(st.st_mode) && kl >= pl) r = c->fn(key, (uint64_t)st.st_size, c->ud);
        if (r < 0) break;
    }
    closedir(d);
    return r;
}

static int local_list(PrStore *base, const char *prefix, PrStoreListFn fn, void *ud) {
    ListCtx c = {(LocalStore *)base, prefix, fn, ud};
    struct stat st;
    if (stat(c.s->root, &st) < 0) return -errno;
    return list_dir(&c, "");
}

static int local_del(PrStore *base, const char *key) {
    LocalStore *s = (LocalStore *)base;
    _cleanup_free_ char *path = NULL;
    int r = key_path(s, key, &path);
    if (r < 0) return r;
    if (unlink(path) < 0 && errno != ENOENT) return -errno;
    return 0;
}

static int local_stat(PrStore *base, const char *key, uint64_t *ret_size) {
    LocalStore *s = (LocalStore *)base;
    _cleanup_free_ char *path = NULL;
    int r = key_path(s, key, &path);
    if (r < 0) return r;
    struct stat st;
    if (stat(path, &st) < 0) return -errno;
    if (!S_ISREG(st.st_mode)) return -ENOENT;
    if (ret_size) *ret_size = (uint64_t)st.st_size;
    return 0;
}

static int local_create(PrStore *base) {
    LocalStore *s = (LocalStore *)base;
    _cleanup_free_ char *p = NULL;
    if (asprintf(&p, "%s/", s->root) < 0) return -ENOMEM;
    return mkdir_parents(p);
}

static void local_free(PrStore *base) {
    LocalStore *s = (LocalStore *)base;
    free(s->root);
    free(s->base.location);
    free(s);
}

static const PrStoreOps local_ops = {
    .kind = "local",
    .get = local_get,
    .put = local_put,
    .list = local_list,
    .del = local_del,
    .stat = local_stat,
    .create = local_create,
    .free = local_free,
};

int pr_store_local_open(const char *path, PrStore **ret) {
    if (!path || !*path) return -EINVAL;
    LocalStore *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->base.ops = &local_ops;
    s->root = realpath(path, NULL);
    if (!s->root) {
        /* not there yet (init creates it): keep it absolute and without a trailing slash */
        char cwd[4096];
        if (path[0] == '/') s->root = strdup(path);
        else if (getcwd(cwd, sizeof cwd) && asprintf(&s->root, "%s/%s", cwd, path) < 0) s->root = NULL;
        size_t n = s->root ? strlen(s->root) : 0;
        while (n > 1 && s->root[n - 1] == '/') s->root[--n] = 0;
    }
    s->base.location = s->root ? strdup(s->root) : NULL;
    if (!s->root || !s->base.location) {
        local_free(&s->base);
        return -ENOMEM;
    }
    *ret = &s->base;
    return 0;
}
