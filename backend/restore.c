/* SPDX-License-Identifier: MIT */
/* Restore in three passes:
 *  1. walk the trees: create directories, symlinks, devices, fifos, and the regular files that are
 *     hardlinked or not exactly one data chunk, at their final size (holes stay holes), hardlinks
 *     as links; note every data chunk's place in the files;
 *  2. sort those notes by pack and offset and let several threads fetch each pack's needed range in
 *     one request, verify and decode every blob once, and write it wherever it goes. A file of one
 *     data chunk (most small files) is created only there, by the thread that writes that chunk,
 *     which sets its owner, mode, xattrs and times through the same descriptor; for other files the
 *     thread that writes the last piece does. Creating and finishing 100,000 small files is most of
 *     the syscalls of a restore: done so, each file is opened once, found by path once, and that
 *     work is spread over the fetch threads instead of two single-threaded passes;
 *  3. remove the files whose data failed, then apply the directories' metadata, deepest first, now
 *     that their contents are complete (creating an entry changes a directory's mtime).
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
/* One request at most. Smaller than a pack (16 MiB): a Ceph RGW serving a GET of a whole pack spent
 * half again as much CPU on it as on two GETs of half a pack (it reads up to 16 MiB ahead from its
 * OSD into fresh buffers per request), and on a machine the server shares that made the restore
 * slower; the fetch threads held half again as much memory too. 8 MiB: 13.0-13.9 s against
 * 15.4-16.1 s for whole packs, 4 MiB 14.4-14.8 s (docs/BENCHMARKS.md). */
#define WINDOW_MAX (8u << 20)

enum {
    FAIL_NONE,
    FAIL_DATA,     /* its data could not be fetched, verified or written: removed and reported */
    FAIL_REPORTED, /* it could not be created (the reason was logged then): removed quietly */
};

typedef struct RFile {
    char *path;
    PrNode node;         /* metadata to apply; chunks dropped after planning */
    char **links;        /* other names of the same file (hardlinks) */
    size_t nlinks;
    bool late;           /* one data chunk, no hardlinks: created by the writer of that chunk */
    atomic_uint pending; /* pieces not written yet; whoever writes the last one sets the metadata */
    atomic_int failed;   /* FAIL_* */
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
    /* hardlink groups of the volume being walked: open addressing on the group (0: empty slot),
     * at most half full */
    struct Group {
        uint64_t group;
        uint32_t file;
    } *groups;
    size_t ngroups, gslots;
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
                pr_mem_advise_huge(_p, sizeof *(arr) * _c);                       \
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

/* The same as set_meta, through a descriptor of the regular file: no path lookups. */
static void set_meta_fd(Restorer *r, int fd, const char *path, const PrNode *n) {
    if (fchown(fd, n->uid, n->gid) < 0 && errno != EPERM)
        note_error(r, pr_log_errno(errno, "%s: cannot set owner", path));
    if (fchmod(fd, n->mode) < 0) note_error(r, pr_log_errno(errno, "%s: cannot set mode", path));
    for (uint32_t i = 0; i < n->nxattrs; i++) {
        const PrXattr *x = &n->xattrs[i];
        if (fsetxattr(fd, x->name, x->value, x->len, 0) < 0)
            note_error(r, pr_log_errno(errno, "%s: cannot set extended attribute %s", path, x->name));
    }
    struct timespec ts[2] = {{n->mtime_sec, n->mtime_nsec}, {n->mtime_sec, n->mtime_nsec}};
    if (futimens(fd, ts) < 0) note_error(r, pr_log_errno(errno, "%s: cannot set times", path));
}

static int remove_existing(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode)) return -EISDIR;
    return unlink(path) < 0 ? -errno : 0;
}

/* Creates a regular file for writing, replacing a non-directory in the way. O_EXCL first and
 * looking only when that fails: the destination is usually new, and a look first would cost one
 * more syscall per file. Returns the descriptor, or -errno after logging and noting the error. */
static int create_file(Restorer *r, const char *path) {
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = open(path, flags, 0600);
    if (fd < 0 && errno == EEXIST) {
        int k = remove_existing(path);
        if (k < 0) {
            note_error(r, pr_log_errno(k, "cannot replace %s", path));
            return k;
        }
        fd = open(path, flags, 0600);
    }
    if (fd < 0) {
        int k = pr_log_errno(errno, "cannot create %s", path);
        note_error(r, k);
        return k;
    }
    return fd;
}

static bool is_out_of_space(int k) { return k == -ENOSPC || k == -EDQUOT || k == -EFBIG; }

static void fail_file(RFile *f, int how) {
    int none = FAIL_NONE;
    atomic_compare_exchange_strong(&f->failed, &none, how); /* the first reason stays */
}

static bool file_failed(RFile *f) { return atomic_load(&f->failed) != FAIL_NONE; }

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

static struct Group *group_slot(struct Group *slots, size_t nslots, uint64_t group) {
    size_t i = (size_t)((group * 0x9E3779B97F4A7C15ull) >> 17) & (nslots - 1);
    while (slots[i].group && slots[i].group != group) i = (i + 1) & (nslots - 1);
    return &slots[i];
}

/* The file restored for hardlink group `group` of this volume, or NULL. */
static RFile *group_file(Restorer *r, uint64_t group) {
    if (!r->gslots) return NULL;
    struct Group *g = group_slot(r->groups, r->gslots, group);
    return g->group ? &r->files[g->file] : NULL;
}

static int group_add(Restorer *r, uint64_t group, uint32_t file) {
    if (2 * (r->ngroups + 1) > r->gslots) {
        size_t n = r->gslots ? r->gslots * 2 : 256;
        struct Group *v = calloc(n, sizeof *v);
        if (!v) return -ENOMEM;
        for (size_t i = 0; i < r->gslots; i++)
            if (r->groups[i].group) *group_slot(v, n, r->groups[i].group) = r->groups[i];
        free(r->groups);
        r->groups = v;
        r->gslots = n;
    }
    struct Group *g = group_slot(r->groups, r->gslots, group);
    if (!g->group) { /* the first file of the group stays the one the others link to */
        r->ngroups++;
        *g = (struct Group){group, file};
    }
    return 0;
}

/* Hardlink groups are one file inside one volume only. */
static void groups_reset(Restorer *r) {
    if (r->gslots) memset(r->groups, 0, sizeof *r->groups * r->gslots);
    r->ngroups = 0;
}

/* Links path to the file already restored for n's hardlink group: 1 when done, 0 when there is
 * none yet or the link failed (the caller then restores a copy), <0 when out of memory. */
static int link_to_group(Restorer *r, const char *path, const PrNode *n) {
    RFile *f = group_file(r, n->link_group);
    if (f) {
        int k = link(f->path, path) < 0 ? -errno : 0;
        if (k == -EEXIST && (k = remove_existing(path)) == 0) k = link(f->path, path) < 0 ? -errno : 0;
        if (k < 0) {
            pr_log_errno(k, "cannot link %s to %s; restoring a copy", path, f->path);
            return 0;
        }
        char **v = realloc(f->links, sizeof *v * (f->nlinks + 1));
        if (!v) return -ENOMEM;
        f->links = v;
        if (!(f->links[f->nlinks] = strdup(path))) return -ENOMEM;
        f->nlinks++;
        return 1;
    }
    return 0;
}

static uint32_t data_chunks(const PrNode *n) {
    uint32_t c = 0;
    for (uint32_t i = 0; i < n->nchunks; i++) c += !pr_id_is_zero(&n->chunks[i].id);
    return c;
}

/* Notes where each data chunk of file idx goes; a chunk missing from the index fails the file. */
static int plan_pieces(Restorer *r, RFile *f, uint32_t idx, const PrNode *n) {
    uint64_t off = 0;
    for (uint32_t i = 0; i < n->nchunks; i++) {
        const PrChunkRef *c = &n->chunks[i];
        if (!pr_id_is_zero(&c->id)) {
            PrBlobLoc loc;
            int k = pr_repo_find_blob(r->repo, &c->id, &loc);
            if (k < 0 || loc.ref.raw_length != c->length) {
                char hex[65];
                pr_hex(c->id.b, PR_ID_LEN, hex);
                pr_log(PR_LOG_ERR, "%s: chunk %.16s is not in the index", f->path, hex);
                fail_file(f, FAIL_DATA);
                note_error(r, -EBADMSG);
                return 0;
            }
            if ((k = GROW(r->pieces, r->npieces, r->pcap)) < 0) return k;
            r->pieces[r->npieces++] = (Piece){loc.pack, loc.ref, idx, off};
            atomic_fetch_add(&f->pending, 1);
        }
        off += c->length;
    }
    return 0;
}

static int plan_file(Restorer *r, const char *path, const PrNode *n) {
    int k;
    if (n->link_group && (k = link_to_group(r, path, n)) != 0) return k < 0 ? k : 0;
    /* the other names of a hardlinked file are linked during the walk, so it must exist now */
    bool late = !n->link_group && data_chunks(n) == 1;
    _cleanup_close_ int fd = -1;
    if (!late) {
        if ((fd = create_file(r, path)) < 0) return is_out_of_space(fd) ? fd : 0;
        if (n->size && ftruncate(fd, (off_t)n->size) < 0) { /* holes stay holes */
            k = pr_log_errno(errno, "cannot size %s", path);
            note_error(r, k);
            unlink(path);
            return is_out_of_space(k) ? k : 0;
        }
    }
    if ((k = GROW(r->files, r->nfiles, r->fcap)) < 0) return k;
    uint32_t idx = (uint32_t)r->nfiles;
    RFile *f = &r->files[idx];
    memset(f, 0, sizeof *f);
    f->late = late;
    atomic_init(&f->pending, 0);
    atomic_init(&f->failed, FAIL_NONE);
    if (!(f->path = strdup(path))) return -ENOMEM;
    r->nfiles++;
    if ((k = pr_node_copy(n, &f->node)) < 0) return k;
    if ((k = plan_pieces(r, f, idx, n)) < 0) return k;
    /* the chunk list is in the pieces now; keep only the metadata */
    free(f->node.chunks);
    f->node.chunks = NULL;
    f->node.nchunks = 0;
    r->st.files++;
    /* nothing will be written to a file without data: it is complete already */
    if (fd >= 0 && atomic_load(&f->pending) == 0 && !file_failed(f)) set_meta_fd(r, fd, path, n);
    if (n->link_group && (k = group_add(r, n->link_group, idx)) < 0) return k;
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
    if (n->type == PR_NODE_FILE) return plan_file(r, path, n); /* replaces what is in the way itself */
    if ((k = remove_existing(path)) < 0) {
        note_error(r, pr_log_errno(k, "cannot replace %s", path));
        return 0;
    }
    switch (n->type) {
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

static int pwrite_all(int fd, const void *data, size_t len, uint64_t off) {
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

/* Opens f for one piece: a late file is created here (sized only when a hole ends it: the write
 * itself gives every other one its size). Returns the descriptor or -errno, logged. */
static int open_for_piece(Restorer *r, RFile *f, uint64_t end) {
    if (!f->late) {
        int fd = open(f->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? pr_log_errno(errno, "cannot write %s", f->path) : fd;
    }
    int fd = create_file(r, f->path);
    if (fd < 0) {
        fail_file(f, FAIL_REPORTED);
        return fd;
    }
    if (f->node.size > end && ftruncate(fd, (off_t)f->node.size) < 0) {
        int k = pr_log_errno(errno, "cannot size %s", f->path);
        close(fd);
        return k;
    }
    return fd;
}

/* Writes one piece; the writer of a file's last piece sets its metadata, through the descriptor
 * it has open: every other piece is written by then (each counts itself done only after its write
 * returned), so nothing changes the mtime afterwards. */
static int write_piece(Restorer *r, RFile *f, const void *data, size_t len, uint64_t off) {
    _cleanup_close_ int fd = open_for_piece(r, f, off + len);
    if (fd < 0) {
        if (file_failed(f)) return fd; /* could not be created: noted already */
        note_error(r, fd);
        fail_file(f, FAIL_DATA);
        return fd;
    }
    int k = pwrite_all(fd, data, len, off);
    if (k < 0) {
        note_error(r, pr_log_errno(k, "cannot write %s", f->path));
        fail_file(f, FAIL_REPORTED); /* the data was fine: not "cannot be read" */
        return k;
    }
    if (atomic_fetch_sub(&f->pending, 1) == 1 && !file_failed(f)) set_meta_fd(r, fd, f->path, &f->node);
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
            fail_file(f, FAIL_DATA);
            continue;
        }
        if (file_failed(f)) continue;
        int k = write_piece(r, f, plain, b->raw_length, r->pieces[i].offset);
        if (k < 0) {
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
        /* out of space or memory here: the restore stops, the rest is counted as not restored, not
         * as unreadable */
        if (is_fatal(r)) return;
        for (size_t i = c.next; i < w->last; i++) fail_file(&r->files[r->pieces[i].file], FAIL_DATA);
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

/* Removes every file that is not complete, with its other names: its data failed, or the fetch
 * stopped early (out of space or memory) before all of it was written. */
static void remove_incomplete(Restorer *r) {
    size_t stopped = 0;
    for (size_t i = 0; i < r->nfiles; i++) {
        RFile *f = &r->files[i];
        int why = atomic_load(&f->failed);
        if (why == FAIL_NONE && atomic_load(&f->pending) == 0) continue;
        if (why == FAIL_DATA) pr_log(PR_LOG_ERR, "%s: not restored, its data cannot be read", f->path);
        if (why == FAIL_NONE) stopped++;
        unlink(f->path); /* also what was in the way of a file never created */
        for (size_t l = 0; l < f->nlinks; l++) unlink(f->links[l]);
        r->st.files--;
        r->st.not_restored++;
    }
    if (stopped)
        pr_log(PR_LOG_ERR, "%zu more files not restored: the restore stopped (%s) before their data", stopped,
               strerror(r->fatal ? -r->fatal : EIO));
}

static void finish(Restorer *r) {
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
            groups_reset(&r);
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
    remove_incomplete(&r); /* even when stopped: never leave a file with bytes it should not have */
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
