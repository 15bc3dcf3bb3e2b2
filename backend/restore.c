/* SPDX-License-Identifier: MIT */
#include "backend/restore.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "cache/util.h"

typedef struct LinkDone {
    uint64_t group;
    char *path;
} LinkDone;

typedef struct Restorer {
    PrRepo *repo;
    const PrRestoreOptions *opts;
    PrRestoreStats st;
    LinkDone *links;
    size_t nlinks, cap;
    double last;
    int error; /* first data error; the walk goes on */
} Restorer;

static void note_error(Restorer *r, int err) {
    r->st.errors++;
    if (!r->error) r->error = err;
}

static void set_xattrs(Restorer *r, const char *path, const PrNode *n) {
    for (uint32_t i = 0; i < n->nxattrs; i++) {
        const PrXattr *x = &n->xattrs[i];
        if (lsetxattr(path, x->name, x->value, x->len, 0) < 0) {
            /* user.* cannot exist on symlinks on Linux; anything else is worth saying */
            if (n->type == PR_NODE_SYMLINK && errno == EPERM) continue;
            pr_log_errno(errno, "%s: cannot set extended attribute %s", path, x->name);
            note_error(r, -errno);
        }
    }
}

/* Owner, mode, xattrs, times, in the order that keeps setuid bits and ACL masks right. */
static void set_meta(Restorer *r, const char *path, const PrNode *n) {
    if (lchown(path, n->uid, n->gid) < 0 && errno != EPERM) {
        pr_log_errno(errno, "%s: cannot set owner", path);
        note_error(r, -errno);
    }
    if (n->type != PR_NODE_SYMLINK && chmod(path, n->mode) < 0) {
        pr_log_errno(errno, "%s: cannot set mode", path);
        note_error(r, -errno);
    }
    set_xattrs(r, path, n);
    struct timespec ts[2] = {{n->mtime_sec, n->mtime_nsec}, {n->mtime_sec, n->mtime_nsec}};
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0) {
        pr_log_errno(errno, "%s: cannot set times", path);
        note_error(r, -errno);
    }
}

static int remove_existing(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode)) return -EISDIR;
    return unlink(path) < 0 ? -errno : 0;
}

static int write_file(Restorer *r, const char *path, const PrNode *n) {
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return pr_log_errno(errno, "cannot create %s", path);
    uint64_t off = 0;
    for (uint32_t i = 0; i < n->nchunks; i++) {
        const PrChunkRef *c = &n->chunks[i];
        if (pr_id_is_zero(&c->id)) { /* a hole: leave it unwritten */
            off += c->length;
            continue;
        }
        _cleanup_free_ void *data = NULL;
        size_t len;
        int k = pr_repo_read_blob(r->repo, &c->id, &data, &len);
        if (k < 0 || len != c->length) {
            pr_log(PR_LOG_ERR, "%s: not restored, its data cannot be read", path);
            unlink(path);
            return k < 0 ? k : -EBADMSG;
        }
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(fd, (uint8_t *)data + done, len - done, (off_t)(off + done));
            if (w < 0) {
                if (errno == EINTR) continue;
                int e = errno;
                unlink(path);
                return pr_log_errno(e, "cannot write %s", path);
            }
            done += (size_t)w;
        }
        off += len;
        r->st.bytes += len;
    }
    if (ftruncate(fd, (off_t)n->size) < 0) { /* trailing holes */
        int e = errno;
        unlink(path);
        return pr_log_errno(e, "cannot write %s", path);
    }
    return 0;
}

static int restore_node(Restorer *r, const char *path, const PrNode *n);

static int restore_dir(Restorer *r, const char *path, const PrNode *n) {
    struct stat st;
    if (mkdir(path, 0700) < 0) {
        if (errno != EEXIST || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
            return pr_log_errno(errno == EEXIST ? ENOTDIR : errno, "cannot create directory %s", path);
    }
    r->st.dirs++;
    _cleanup_(pr_tree_freep) PrTree *t = NULL;
    int k = pr_repo_read_tree(r->repo, &n->subtree, &t);
    if (k < 0) {
        pr_log(PR_LOG_ERR, "%s: directory contents cannot be read", path);
        note_error(r, k);
    } else {
        for (uint32_t i = 0; i < t->n; i++) {
            _cleanup_free_ char *child = NULL;
            if (asprintf(&child, "%s/%s", path, t->nodes[i].name) < 0) return -ENOMEM;
            k = restore_node(r, child, &t->nodes[i]);
            if (k == -ENOMEM || k == -ENOSPC || k == -EDQUOT) return k; /* fatal for the whole restore */
        }
    }
    set_meta(r, path, n); /* last, so the children do not change the directory's mtime */
    return 0;
}

static int restore_node(Restorer *r, const char *path, const PrNode *n) {
    int k;
    if (r->opts && r->opts->progress) {
        double now = pr_now();
        if (now - r->last > 0.25) {
            r->last = now;
            r->opts->progress(&r->st, path, r->opts->userdata);
        }
    }
    if (n->type == PR_NODE_DIR) {
        k = restore_dir(r, path, n);
        if (k < 0) note_error(r, k);
        return k;
    }
    if ((k = remove_existing(path)) < 0) {
        pr_log_errno(k, "cannot replace %s", path);
        note_error(r, k);
        return k;
    }
    switch (n->type) {
    case PR_NODE_FILE:
        if (n->link_group) {
            for (size_t i = 0; i < r->nlinks; i++)
                if (r->links[i].group == n->link_group) {
                    if (link(r->links[i].path, path) == 0) return 0;
                    pr_log_errno(errno, "cannot link %s to %s; restoring a copy", path, r->links[i].path);
                    break;
                }
        }
        k = write_file(r, path, n);
        if (k < 0) {
            note_error(r, k);
            return k;
        }
        r->st.files++;
        if (n->link_group) {
            if (r->nlinks == r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 32;
                LinkDone *v = realloc(r->links, sizeof *v * cap);
                if (!v) return -ENOMEM;
                r->links = v;
                r->cap = cap;
            }
            if (!(r->links[r->nlinks].path = strdup(path))) return -ENOMEM;
            r->links[r->nlinks++].group = n->link_group;
        }
        break;
    case PR_NODE_SYMLINK:
        if (symlink(n->target, path) < 0) {
            k = pr_log_errno(errno, "cannot create symlink %s", path);
            note_error(r, k);
            return k;
        }
        break;
    case PR_NODE_FIFO:
    case PR_NODE_CHR:
    case PR_NODE_BLK:
    case PR_NODE_SOCK: {
        mode_t t = n->type == PR_NODE_FIFO ? S_IFIFO
                   : n->type == PR_NODE_CHR ? S_IFCHR
                   : n->type == PR_NODE_BLK ? S_IFBLK
                                            : S_IFSOCK;
        if (mknod(path, t | 0600, (dev_t)n->rdev) < 0) {
            k = pr_log_errno(errno, "cannot create %s", path);
            note_error(r, k);
            return k;
        }
        break;
    }
    default:
        return 0;
    }
    set_meta(r, path, n);
    return 0;
}

static int mkdir_p(const char *path) {
    _cleanup_free_ char *p = strdup(path);
    if (!p) return -ENOMEM;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (mkdir(p, 0755) < 0 && errno != EEXIST) return -errno;
            *q = c;
            if (!c) break;
        }
    }
    return 0;
}

int pr_restore(PrRepo *repo, const PrSnapshot *s, const char *path, const char *dest,
               const PrRestoreOptions *opts, PrRestoreStats *ret_stats) {
    PrNode node = {0};
    int k = pr_repo_resolve(repo, s, path, &node);
    if (k < 0) return k;
    k = mkdir_p(dest);
    if (k < 0) {
        pr_node_clear(&node);
        return pr_log_errno(k, "cannot create %s", dest);
    }
    Restorer r = {.repo = repo, .opts = opts};
    if (!*node.name) {
        /* the snapshot's root: every volume goes to dest/<volume> */
        _cleanup_(pr_tree_freep) PrTree *t = NULL;
        k = pr_repo_read_tree(repo, &node.subtree, &t);
        for (uint32_t i = 0; k >= 0 && i < t->n; i++) {
            _cleanup_free_ char *p = NULL;
            if (asprintf(&p, "%s/%s", dest, t->nodes[i].name) < 0) k = -ENOMEM;
            else k = restore_node(&r, p, &t->nodes[i]);
        }
    } else {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dest, node.name) < 0) k = -ENOMEM;
        else k = restore_node(&r, p, &node);
    }
    pr_node_clear(&node);
    for (size_t i = 0; i < r.nlinks; i++) free(r.links[i].path);
    free(r.links);
    if (ret_stats) *ret_stats = r.st;
    if (k >= 0 && r.error) k = -EIO;
    if (r.st.errors && k < 0 && k != -EIO && k != -ENOMEM && k != -ENOSPC) k = -EIO;
    return k;
}
