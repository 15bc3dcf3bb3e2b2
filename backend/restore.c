/* SPDX-License-Identifier: MIT */
/* Restore in three passes:
 *  1. walk the trees: create directories, symlinks, devices, fifos and every regular file at its
 *     final size (holes stay holes), hardlinks as links; note every data chunk's place in the files;
 *  2. sort those notes by pack and offset and let several threads fetch each pack's needed range in
 *     one request, verify and decode every blob once, and write it wherever it goes;
 *  3. apply owners, modes, xattrs and times: files, then directories deepest first.
 * So a tree of many small files costs a few requests per pack, not one per file. A file whose data
 * cannot be verified is removed (with its hardlinks) and reported: never left with wrong bytes. */
#include "backend/restore.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "cache/util.h"

#define WINDOW_GAP (1u << 20)  /* fetch across gaps up to this size rather than split the request */
#define WINDOW_MAX (32u << 20) /* one request at most */

typedef struct RFile {
    char *path;
    PrNode node;         /* metadata to apply; chunks dropped after planning */
    char **links;        /* other names of the same file (hardlinks) */
    size_t nlinks;
    atomic_bool failed;
} RFile;

typedef struct RDir {
    char *path;
    PrNode node;
} RDir;

typedef struct Piece { /* one data chunk at one place of one file */
    PrId pack;
    PrBlobRef blob;
    uint32_t file;
    uint64_t offset;
} Piece;

typedef struct Window { /* one request: pieces[first, last) of the sorted array */
    size_t first, last;
} Window;

typedef struct Restorer {
    PrRepo *repo;
    const PrRestoreOptions *opts;
    PrRestoreStats st;
    int error; /* first error; the walk goes on */
    int fatal; /* out of memory or space: stop */

    RFile *files;
    size_t nfiles, fcap;
    RDir *dirs;
    size_t ndirs, dcap;
    struct {
        uint64_t group;
        uint32_t file;
    } *groups;
    size_t ngroups, gcap;
    Piece *pieces;
    size_t npieces, pcap;
    Window *windows;
    size_t nwindows;

    atomic_size_t next_window;
    atomic_uint_fast64_t bytes;
    atomic_uint errors;
    pthread_mutex_t lock;
    double last;
} Restorer;

static void note_error(Restorer *r, int err) {
    atomic_fetch_add(&r->errors, 1);
    pthread_mutex_lock(&r->lock);
    if (!r->error) r->error = err;
    if (err == -ENOMEM || err == -ENOSPC || err == -EDQUOT) r->fatal = err;
    pthread_mutex_unlock(&r->lock);
}

static bool is_fatal(Restorer *r) {
    pthread_mutex_lock(&r->lock);
    bool f = r->fatal != 0;
    pthread_mutex_unlock(&r->lock);
    return f;
}

#define GROW(arr, n, cap)                                                         \
    ({                                                                            \
        int _g = 0;                                                               \
        if ((n) == (cap)) {                                                       \
            size_t _c = (cap) ? (cap) * 2 : 64;                                   \
            void *_p = realloc((arr), sizeof *(arr) * _c);                        \
            if (_p) {                                                             \
                (arr) = _p;                                                       \
                (cap) = _c;                                                       \
            } else                                                                \
                _g = -ENOMEM;                                                     \
        }                                                                         \
        _g;                                                                       \
    })

/* ---- metadata ---- */

static void set_xattrs(Restorer *r, const char *path, const PrNode *n) {
    for (uint32_t i = 0; i < n->nxattrs; i++) {
        const PrXattr *x = &n->xattrs[i];
        if (lsetxattr(path, x->name, x->value, x->len, 0) < 0) {
            /* user.* cannot exist on symlinks on Linux; anything else is worth saying */
            if (n->type == PR_NODE_SYMLINK && errno == EPERM) continue;
            note_error(r, pr_log_errno(errno, "%s: cannot set extended attribute %s", path, x->name));
        }
    }
}

/* Owner, mode, xattrs, times, in the order that keeps setuid bits and ACL masks right. */
static void set_meta(Restorer *r, const char *path, const PrNode *n) {
    if (lchown(path, n->uid, n->gid) < 0 && errno != EPERM)
        note_error(r, pr_log_errno(errno, "%s: cannot set owner", path));
    if (n->type != PR_NODE_SYMLINK && chmod(path, n->mode) < 0)
        note_error(r, pr_log_errno(errno, "%s: cannot set mode", path));
    set_xattrs(r, path, n);
    struct timespec ts[2] = {{n->mtime_sec, n->mtime_nsec}, {n->mtime_sec, n->mtime_nsec}};
    if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
        note_error(r, pr_log_errno(errno, "%s: cannot set times", path));
}

static int remove_existing(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode)) return -EISDIR;
    return unlink(path) < 0 ? -errno : 0;
}

/* ---- pass 1: the walk ---- */

static void progress(Restorer *r, const char *path) {
    if (!r->opts || !r->opts->progress) return;
    double now = pr_now();
    if (now - r->last < 0.25) return;
    r->last = now;
    PrRestoreStats st = r->st;
    st.bytes = atomic_load(&r->bytes);
    st.errors = atomic_load(&r->errors);
    r->opts->progress(&st, path, r->opts->userdata);
}

static int plan_file(Restorer *r, const char *path, const PrNode *n) {
    int k;
    if (n->link_group) {
        for (size_t i = 0; i < r->ngroups; i++) {
            if (r->groups[i].group != n->link_group) continue;
            RFile *f = &r->files[r->groups[i].file];
            if (link(f->path, path) < 0) {
                pr_log_errno(errno, "cannot link %s to %s; restoring a copy", path, f->path);
                break;
            }
            char **v = realloc(f->links, sizeof *v * (f->nlinks + 1));
            if (!v) return -ENOMEM;
            f->links = v;
            if (!(f->links[f->nlinks] = strdup(path))) return -ENOMEM;
            f->nlinks++;
            return 0;
        }
    }
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        k = pr_log_errno(errno, "cannot create %s", path);
        note_error(r, k);
        return k == -ENOSPC || k == -EDQUOT ? k : 0;
    }
    if (n->size && ftruncate(fd, (off_t)n->size) < 0) { /* holes stay holes */
        k = pr_log_errno(errno, "cannot size %s", path);
        note_error(r, k);
        unlink(path);
        return k == -ENOSPC || k == -EDQUOT || k == -EFBIG ? k : 0;
    }
    if ((k = GROW(r->files, r->nfiles, r->fcap)) < 0) return k;
    uint32_t idx = (uint32_t)r->nfiles;
    RFile *f = &r->files[idx];
    memset(f, 0, sizeof *f);
    atomic_init(&f->failed, false);
    if (!(f->path = strdup(path))) return -ENOMEM;
    r->nfiles++;
    if ((k = pr_node_copy(n, &f->node)) < 0) return k;
    uint64_t off = 0;
    for (uint32_t i = 0; i < n->nchunks; i++) {
        const PrChunkRef *c = &n->chunks[i];
        if (!pr_id_is_zero(&c->id)) {
            PrBlobLoc loc;
            k = pr_repo_find_blob(r->repo, &c->id, &loc);
            if (k < 0 || loc.ref.raw_length != c->length) {
                char hex[65];
                pr_hex(c->id.b, PR_ID_LEN, hex);
                pr_log(PR_LOG_ERR, "%s: chunk %.16s is not in the index", path, hex);
                atomic_store(&f->failed, true);
                note_error(r, -EBADMSG);
                break;
            }
            if ((k = GROW(r->pieces, r->npieces, r->pcap)) < 0) return k;
            r->pieces[r->npieces++] = (Piece){loc.pack, loc.ref, idx, off};
        }
        off += c->length;
    }
    /* the chunk list is in the pieces now; keep only the metadata */
    free(f->node.chunks);
    f->node.chunks = NULL;
    f->node.nchunks = 0;
    r->st.files++;
    if (n->link_group) {
        if ((k = GROW(r->groups, r->ngroups, r->gcap)) < 0) return k;
        r->groups[r->ngroups].group = n->link_group;
        r->groups[r->ngroups++].file = idx;
    }
    return 0;
}

static int walk(Restorer *r, const char *path, const PrNode *n);

static int walk_dir(Restorer *r, const char *path, const PrNode *n) {
    struct stat st;
    if (mkdir(path, 0700) < 0) {
        if (errno != EEXIST || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
            int k = pr_log_errno(errno == EEXIST ? ENOTDIR : errno, "cannot create directory %s", path);
            note_error(r, k);
            return k == -ENOSPC || k == -EDQUOT ? k : 0;
        }
    }
    int k = GROW(r->dirs, r->ndirs, r->dcap);
    if (k < 0) return k;
    RDir *d = &r->dirs[r->ndirs];
    memset(d, 0, sizeof *d);
    if (!(d->path = strdup(path))) return -ENOMEM;
    r->ndirs++;
    if ((k = pr_node_copy(n, &d->node)) < 0) return k;
    r->st.dirs++;
    _cleanup_(pr_tree_freep) PrTree *t = NULL;
    k = pr_repo_read_tree(r->repo, &n->subtree, &t);
    if (k < 0) {
        pr_log(PR_LOG_ERR, "%s: directory contents cannot be read", path);
        note_error(r, k);
        return k == -ENOMEM ? k : 0;
    }
    for (uint32_t i = 0; i < t->n; i++) {
        _cleanup_free_ char *child = NULL;
        if (asprintf(&child, "%s/%s", path, t->nodes[i].name) < 0) return -ENOMEM;
        if ((k = walk(r, child, &t->nodes[i])) < 0) return k;
    }
    return 0;
}

static int walk(Restorer *r, const char *path, const PrNode *n) {
    int k;
    progress(r, path);
    if (n->type == PR_NODE_DIR) return walk_dir(r, path, n);
    if ((k = remove_existing(path)) < 0) {
        note_error(r, pr_log_errno(k, "cannot replace %s", path));
        return 0;
    }
    switch (n->type) {
    case PR_NODE_FILE:
        return plan_file(r, path, n);
    case PR_NODE_SYMLINK:
        if (symlink(n->target, path) < 0) {
            note_error(r, pr_log_errno(errno, "cannot create symlink %s", path));
            return 0;
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
            note_error(r, pr_log_errno(errno, "cannot create %s", path));
            return 0;
        }
        break;
    }
    default:
        return 0;
    }
    set_meta(r, path, n);
    return 0;
}

/* ---- pass 2: fetch by pack, write everywhere ---- */

static int cmp_piece(const void *a, const void *b) {
    const Piece *x = a, *y = b;
    int c = memcmp(x->pack.b, y->pack.b, PR_ID_LEN);
    if (c) return c;
    if (x->blob.offset != y->blob.offset) return x->blob.offset < y->blob.offset ? -1 : 1;
    return x->file < y->file ? -1 : x->file > y->file;
}

static int plan_windows(Restorer *r) {
    if (!r->npieces) return 0;
    qsort(r->pieces, r->npieces, sizeof *r->pieces, cmp_piece);
    r->windows = malloc(sizeof *r->windows * r->npieces);
    if (!r->windows) return -ENOMEM;
    size_t start = 0;
    for (size_t i = 1; i <= r->npieces; i++) {
        bool split = i == r->npieces;
        if (!split) {
            const Piece *a = &r->pieces[start], *prev = &r->pieces[i - 1], *p = &r->pieces[i];
            uint64_t prev_end = (uint64_t)prev->blob.offset + prev->blob.length;
            split = memcmp(a->pack.b, p->pack.b, PR_ID_LEN) != 0 ||
                    (uint64_t)p->blob.offset > prev_end + WINDOW_GAP ||
                    (uint64_t)p->blob.offset + p->blob.length - a->blob.offset > WINDOW_MAX;
        }
        if (split) {
            r->windows[r->nwindows++] = (Window){start, i};
            start = i;
        }
    }
    return 0;
}

static int write_all(const char *path, const void *data, size_t len, uint64_t off) {
    _cleanup_close_ int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t done = 0;
    while (done < len) {
        ssize_t w = pwrite(fd, (const uint8_t *)data + done, len - done, (off_t)(off + done));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        done += (size_t)w;
    }
    return 0;
}

typedef struct WindowCtx {
    Restorer *r;
    const Window *w;
    size_t next; /* first piece of the next blob */
} WindowCtx;

/* Writes one verified blob to every place it goes; a blob that failed fails those files. */
static int window_blob(const PrBlobRef *b, const void *plain, int err, void *ud) {
    WindowCtx *c = ud;
    Restorer *r = c->r;
    size_t i = c->next;
    while (c->next < c->w->last && r->pieces[c->next].blob.offset == b->offset) c->next++;
    if (err < 0) note_error(r, err);
    for (; i < c->next; i++) {
        RFile *f = &r->files[r->pieces[i].file];
        if (err < 0) {
            atomic_store(&f->failed, true);
            continue;
        }
        if (atomic_load(&f->failed)) continue;
        int k = write_all(f->path, plain, b->raw_length, r->pieces[i].offset);
        if (k < 0) {
            note_error(r, pr_log_errno(k, "cannot write %s", f->path));
            atomic_store(&f->failed, true);
            if (k == -ENOSPC || k == -EDQUOT) return k;
        } else
            atomic_fetch_add(&r->bytes, b->raw_length);
    }
    return 0;
}

static void do_window(Restorer *r, const Window *w) {
    /* the distinct blobs of the window, in offset order */
    _cleanup_free_ PrBlobRef *blobs = malloc(sizeof *blobs * (w->last - w->first));
    size_t n = 0;
    int k = blobs ? 0 : -ENOMEM;
    for (size_t i = w->first; blobs && i < w->last; i++)
        if (n == 0 || blobs[n - 1].offset != r->pieces[i].blob.offset) blobs[n++] = r->pieces[i].blob;
    WindowCtx c = {r, w, w->first};
    if (k == 0) k = pr_repo_read_pack_window(r->repo, &r->pieces[w->first].pack, blobs, n, window_blob, &c);
    if (k < 0) {
        note_error(r, k);
        for (size_t i = c.next; i < w->last; i++) atomic_store(&r->files[r->pieces[i].file].failed, true);
    }
}

static void *fetch_main(void *arg) {
    Restorer *r = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&r->next_window, 1);
        if (i >= r->nwindows || is_fatal(r)) break;
        do_window(r, &r->windows[i]);
    }
    return NULL;
}

static int fetch_all(Restorer *r) {
    unsigned n = strcmp(pr_repo_store(r->repo)->ops->kind, "local") == 0 ? 2 : 8;
    n = (unsigned)MIN((size_t)n, MAX(r->nwindows, (size_t)1));
    pthread_t th[8];
    unsigned started = 0;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, fetch_main, r) != 0) break;
    if (started == 0) fetch_main(r);
    while (started && r->opts && r->opts->progress) {
        /* the caller's thread only reports while the fetchers work */
        if (atomic_load(&r->next_window) >= r->nwindows) break;
        progress(r, "");
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (unsigned i = 0; i < started; i++) pthread_join(th[i], NULL);
    return 0;
}

/* ---- pass 3 ---- */

static void finish(Restorer *r) {
    for (size_t i = 0; i < r->nfiles; i++) {
        RFile *f = &r->files[i];
        if (atomic_load(&f->failed)) {
            pr_log(PR_LOG_ERR, "%s: not restored, its data cannot be read", f->path);
            unlink(f->path);
            for (size_t l = 0; l < f->nlinks; l++) unlink(f->links[l]);
            r->st.files--;
            continue;
        }
        set_meta(r, f->path, &f->node);
    }
    for (size_t i = r->ndirs; i-- > 0;) set_meta(r, r->dirs[i].path, &r->dirs[i].node);
}

static void restorer_clear(Restorer *r) {
    for (size_t i = 0; i < r->nfiles; i++) {
        free(r->files[i].path);
        pr_node_clear(&r->files[i].node);
        for (size_t l = 0; l < r->files[i].nlinks; l++) free(r->files[i].links[l]);
        free(r->files[i].links);
    }
    free(r->files);
    for (size_t i = 0; i < r->ndirs; i++) {
        free(r->dirs[i].path);
        pr_node_clear(&r->dirs[i].node);
    }
    free(r->dirs);
    free(r->groups);
    free(r->pieces);
    free(r->windows);
    pthread_mutex_destroy(&r->lock);
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
    if ((k = pr_repo_load_index(repo, false)) < 0) {
        pr_node_clear(&node);
        return k;
    }
    Restorer r = {.repo = repo, .opts = opts};
    double t0 = pr_now();
    pthread_mutex_init(&r.lock, NULL);
    atomic_init(&r.next_window, 0);
    atomic_init(&r.bytes, 0);
    atomic_init(&r.errors, 0);
    if (!*node.name) {
        /* the snapshot's root: every volume goes to dest/<volume> */
        _cleanup_(pr_tree_freep) PrTree *t = NULL;
        k = pr_repo_read_tree(repo, &node.subtree, &t);
        for (uint32_t i = 0; k >= 0 && i < t->n; i++) {
            _cleanup_free_ char *p = NULL;
            if (asprintf(&p, "%s/%s", dest, t->nodes[i].name) < 0) k = -ENOMEM;
            else k = walk(&r, p, &t->nodes[i]);
        }
    } else {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dest, node.name) < 0) k = -ENOMEM;
        else k = walk(&r, p, &node);
    }
    pr_node_clear(&node);
    double t1 = pr_now();
    if (k >= 0) k = plan_windows(&r);
    if (k >= 0) k = fetch_all(&r);
    if (k >= 0 && r.fatal) k = r.fatal;
    double t2 = pr_now();
    if (k >= 0) finish(&r);
    pr_debug("restore: walk %.2f s, fetch %.2f s, metadata %.2f s", t1 - t0, t2 - t1, pr_now() - t2);
    r.st.bytes = atomic_load(&r.bytes);
    r.st.errors = atomic_load(&r.errors);
    if (ret_stats) *ret_stats = r.st;
    if (k >= 0 && r.error) k = -EIO;
    restorer_clear(&r);
    return k;
}
