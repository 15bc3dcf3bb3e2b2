/* SPDX-License-Identifier: MIT */
/* The snapshot writer.
 *
 * Threads: the caller's thread walks the volumes, reads files, cuts chunks, computes their ids and
 * decides what is new (it alone touches the dedup set). New blobs go through a queue bounded in bytes
 * to `workers` threads that compress and encrypt them and append them to the open pack of their type
 * (data or tree). A pack that reaches the target size goes to a queue bounded in count, where
 * `uploaders` threads seal its trailer, name it by its hash and put it. Only after every pack is
 * stored are the index file and then the manifest written: a writer killed at any point leaves
 * nothing but unreferenced packs. Memory stays bounded by the two queues plus one buffer per thread. */
#include "backend/writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cache/util.h"

#define QUEUE_BYTES_MAX (48u << 20)
#define PACKQ_MAX 3
#define READ_BUF (16u << 20)
#define HOLE_PIECE (1u << 30)
/* read-ahead window over a directory's next files (page cache, not the writer's memory) */
#define PREFETCH_FILES 64
#define PREFETCH_BYTES (8u << 20)
#define PREFETCH_FILE_BYTES (4u << 20)
/* the stats the read-ahead took, kept for the walk (which would take each one again): a ring, as
 * the window is never more than PREFETCH_FILES entries ahead of the entry being walked */
#define STAT_RING 128
#define PACK_TRAILER_ROOM (256u << 10) /* a trailer larger than that (many tiny blobs) grows the buffer */

/* ---- dedup set: ids this run has already queued ---- */

typedef struct IdSet {
    PrId *slots;
    size_t cap, n;
} IdSet;

static bool idset_has(const IdSet *s, const PrId *id) {
    if (!s->cap) return false;
    size_t mask = s->cap - 1, i = pr_get_u64(id->b) & mask;
    for (;; i = (i + 1) & mask) {
        if (pr_id_is_zero(&s->slots[i])) return false;
        if (memcmp(s->slots[i].b, id->b, PR_ID_LEN) == 0) return true;
    }
}

static int idset_add(IdSet *s, const PrId *id) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        PrId *slots = calloc(cap, sizeof *slots);
        if (!slots) return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (pr_id_is_zero(&s->slots[i])) continue;
            size_t j = pr_get_u64(s->slots[i].b) & (cap - 1);
            while (!pr_id_is_zero(&slots[j])) j = (j + 1) & (cap - 1);
            slots[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t mask = s->cap - 1, i = pr_get_u64(id->b) & mask;
    while (!pr_id_is_zero(&s->slots[i])) i = (i + 1) & mask;
    s->slots[i] = *id;
    s->n++;
    return 0;
}

/* ---- hardlinks seen in the current volume ---- */

typedef struct LinkSeen {
    dev_t dev;
    ino_t ino;
    uint64_t group;
    PrChunkRef *chunks;
    uint32_t nchunks;
    uint64_t size;
} LinkSeen;

/* ---- the pipeline ---- */

typedef struct Job {
    struct Job *next;
    PrId id;
    uint8_t type;
    void *data;
    size_t len;
} Job;

/* A pack being filled. Its buffer is allocated once at pack target + largest stored blob + trailer
 * room and goes back to the writer's free list after the upload, so filling a pack neither reallocs
 * nor faults in fresh pages. Workers reserve room under the lock and copy outside it: a full pack is
 * queued by whichever worker finishes the last copy into it (writers == 0). */
typedef struct Pack {
    struct Pack *next;
    uint8_t *buf;
    size_t len, cap; /* len: bytes reserved, copied or not */
    PrBlobRef *refs;
    uint32_t n, refcap;
    unsigned writers; /* copies in flight */
    bool full;        /* detached from open_pack: queue it once writers is 0 */
} Pack;

typedef struct Writer {
    PrRepo *repo;
    const PrKeys *keys;
    const PrChunker *chunker;
    const PrWriterOptions *opts;
    uint32_t pack_target;
    uint32_t min_chunk, max_chunk;

    pthread_mutex_t lock;
    pthread_cond_t jobs_ready;  /* a job was queued, or closing, or an error */
    pthread_cond_t jobs_space;  /* the job queue shrank */
    pthread_cond_t packs_ready; /* a pack was queued, or packs_closing, or an error */
    pthread_cond_t packs_space; /* the pack queue shrank */
    Job *jobs_head, *jobs_tail;
    size_t jobs_bytes;
    bool closing;        /* no more jobs will come */
    Pack *open_pack[2];  /* per blob type */
    Pack *free_packs;    /* uploaded packs whose buffers are reused */
    size_t pack_cap;     /* buffer size of a new pack */
    Pack *packs_head, *packs_tail;
    unsigned npacks_queued;
    bool packs_closing;
    int error;           /* first error of any thread */
    PrIndexPack *done;   /* stored packs, for the index file */
    uint32_t ndone, donecap;

    IdSet pending;
    LinkSeen *links;
    size_t nlinks, linkcap;
    uint32_t *link_slots; /* open addressing over links[] by (dev, ino): index + 1, 0 = empty */
    size_t link_slot_cap;
    uint64_t next_group;

    struct NextDir *next_dir;     /* listed ahead by the read-ahead (see prefetch_next_dir) */
    const char *next_dir_tried;   /* the entry last tried for it, so that a file is not tried again */

    uint8_t *rbuf;
    unsigned unreadable;
    /* counters: the walking thread's own, but bytes_uploaded (uploaders) */
    uint64_t files, dirs, bytes_read, bytes_new;
    /* entries with a POSIX ACL, with any xattr: the mount answers xattr and ACL requests only when
     * some snapshot has them */
    uint64_t acl_entries, xattr_entries;
    atomic_uint_fast64_t bytes_uploaded;
    double start, last_progress;
    uint64_t vol_files, vol_dirs, vol_bytes;
} Writer;

/* Caller holds the lock. Wakes everyone: every wait gives up on an error. */
static void set_error_locked(Writer *w, int err) {
    if (!w->error) w->error = err;
    pthread_cond_broadcast(&w->jobs_ready);
    pthread_cond_broadcast(&w->jobs_space);
    pthread_cond_broadcast(&w->packs_ready);
    pthread_cond_broadcast(&w->packs_space);
}

static void set_error(Writer *w, int err) {
    pthread_mutex_lock(&w->lock);
    set_error_locked(w, err);
    pthread_mutex_unlock(&w->lock);
}

static int get_error(Writer *w) {
    pthread_mutex_lock(&w->lock);
    int e = w->error;
    pthread_mutex_unlock(&w->lock);
    return e;
}

static void pack_free(Pack *p) {
    if (!p) return;
    free(p->buf);
    free(p->refs);
    free(p);
}

/* Caller holds the lock. An empty pack, from the free list if one is there. */
static Pack *pack_get_locked(Writer *w) {
    Pack *p = w->free_packs;
    if (p) {
        w->free_packs = p->next;
        p->next = NULL;
        return p;
    }
    if (!(p = calloc(1, sizeof *p))) return NULL;
    if (!(p->buf = malloc(w->pack_cap))) {
        free(p);
        return NULL;
    }
    pr_mem_advise_huge(p->buf, w->pack_cap);
    p->cap = w->pack_cap;
    return p;
}

/* Caller holds the lock. Keeps the buffer for the next pack; the refs went to the index list or are
 * dropped. */
static void pack_put_locked(Writer *w, Pack *p) {
    if (!p) return;
    free(p->refs);
    p->refs = NULL;
    p->n = p->refcap = 0;
    p->len = 0;
    p->writers = 0;
    p->full = false;
    p->next = w->free_packs;
    w->free_packs = p;
}

/* Caller holds the lock. Queues a full (or final) pack for upload, waiting for room. */
static void queue_pack_locked(Writer *w, Pack *p) {
    while (w->npacks_queued >= PACKQ_MAX && !w->error) pthread_cond_wait(&w->packs_space, &w->lock);
    if (w->error) {
        pack_put_locked(w, p);
        return;
    }
    if (w->packs_tail) w->packs_tail->next = p;
    else w->packs_head = p;
    w->packs_tail = p;
    w->npacks_queued++;
    pthread_cond_signal(&w->packs_ready);
}

/* Caller holds the lock. Takes the open pack of this type out of reach of further appends; it is
 * queued now or by the last copy still in flight. */
static void pack_close_locked(Writer *w, uint8_t type) {
    Pack *p = w->open_pack[type];
    w->open_pack[type] = NULL;
    p->full = true;
    if (!p->writers) queue_pack_locked(w, p);
}

/* Caller holds the lock. Reserves len bytes for a blob in the open pack of its type and records its
 * ref; the caller copies the blob to (*ret_pack)->buf + *ret_off without the lock, then calls
 * pack_append_done_locked. A blob that does not fit closes the pack first; only an empty pack grows,
 * so no buffer moves under a copy in flight. */
static int pack_reserve_locked(Writer *w, const PrId *id, uint8_t type, size_t len, uint32_t raw, Pack **ret_pack,
                               size_t *ret_off) {
    Pack *p;
    /* closing may wait for room in the upload queue, and another worker may open a pack meanwhile */
    while ((p = w->open_pack[type]) && p->n && p->len + len > p->cap) {
        pack_close_locked(w, type);
        if (w->error) return w->error;
    }
    if (!p) {
        if (!(p = pack_get_locked(w))) return -ENOMEM;
        w->open_pack[type] = p;
    }
    if (p->len + len > p->cap) {
        /* a blob larger than a pack's room (a huge tree): only ever into an empty pack */
        uint8_t *b = realloc(p->buf, len);
        if (!b) return -ENOMEM;
        p->buf = b;
        p->cap = len;
    }
    if (p->n == p->refcap) {
        uint32_t cap = p->refcap ? p->refcap * 2 : 256;
        PrBlobRef *r = realloc(p->refs, sizeof *r * cap);
        if (!r) return -ENOMEM;
        p->refs = r;
        p->refcap = cap;
    }
    p->refs[p->n++] = (PrBlobRef){*id, type, (uint32_t)p->len, (uint32_t)len, raw};
    *ret_pack = p;
    *ret_off = p->len;
    p->len += len;
    p->writers++;
    if (p->len >= w->pack_target) pack_close_locked(w, type);
    return 0;
}

static void pack_append_done_locked(Writer *w, Pack *p) {
    if (--p->writers == 0 && p->full) queue_pack_locked(w, p);
}

static void *worker_main(void *arg) {
    Writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->jobs_head && !w->closing && !w->error) pthread_cond_wait(&w->jobs_ready, &w->lock);
        if (w->error || !w->jobs_head) break;
        Job *j = w->jobs_head;
        w->jobs_head = j->next;
        if (!w->jobs_head) w->jobs_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        /* compressed (or not) into this thread's buffer, then sealed straight into the pack: no
         * copy of the stored form */
        PrBlobPlain plain;
        int r = pr_blob_prepare(j->data, j->len, &plain);
        size_t slen = r == 0 ? pr_blob_stored_len(&plain) : 0;

        pthread_mutex_lock(&w->lock);
        bool was_full = w->jobs_bytes > QUEUE_BYTES_MAX;
        w->jobs_bytes -= j->len;
        if (was_full && w->jobs_bytes <= QUEUE_BYTES_MAX) pthread_cond_signal(&w->jobs_space);
        Pack *p = NULL;
        size_t off = 0;
        if (r == 0 && !w->error) r = pack_reserve_locked(w, &j->id, j->type, slen, (uint32_t)j->len, &p, &off);
        if (p) {
            pthread_mutex_unlock(&w->lock);
            r = pr_blob_seal(w->keys, &j->id, &plain, p->buf + off);
            pthread_mutex_lock(&w->lock);
            pack_append_done_locked(w, p);
        }
        if (r < 0) set_error_locked(w, r);
        /* a raw payload is the job's data: freed only now that it is sealed (outside the lock) */
        pthread_mutex_unlock(&w->lock);
        free(j->data);
        free(j);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static int upload_pack(Writer *w, Pack *p) {
    _cleanup_free_ void *trailer = NULL;
    size_t tlen;
    int r = pr_pack_trailer_encode(w->keys, p->refs, p->n, &trailer, &tlen);
    if (r < 0) return r;
    if (p->len + tlen > p->cap) {
        uint8_t *b = realloc(p->buf, p->len + tlen);
        if (!b) return -ENOMEM;
        p->buf = b;
        p->cap = p->len + tlen;
    }
    memcpy(p->buf + p->len, trailer, tlen);
    size_t total = p->len + tlen;
    PrId id;
    pr_sha256(p->buf, total, id.b);
    char key[PR_PACK_KEY_MAX];
    pr_pack_key(&id, key);
    r = pr_store_put_hashed(pr_repo_store(w->repo), key, p->buf, total, id.b); /* a pack is named by its SHA-256 */
    if (r < 0) return pr_log_errno(r, "cannot store %s in %s", key, pr_repo_store(w->repo)->location);
    /* a lock that lapsed stops the snapshot now rather than at the end */
    if (w->opts->lock && (r = pr_lock_check(w->opts->lock)) < 0) return r;
    pr_debug("stored %s (%u blobs, %zu bytes)", key, p->n, total);

    pthread_mutex_lock(&w->lock);
    if (w->ndone == w->donecap) {
        uint32_t cap = w->donecap ? w->donecap * 2 : 16;
        PrIndexPack *d = realloc(w->done, sizeof *d * cap);
        if (!d) {
            pthread_mutex_unlock(&w->lock);
            return -ENOMEM;
        }
        w->done = d;
        w->donecap = cap;
    }
    w->done[w->ndone++] = (PrIndexPack){id, TAKE_PTR(p->refs), p->n};
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add(&w->bytes_uploaded, total);
    return 0;
}

static void *uploader_main(void *arg) {
    Writer *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->packs_head && !w->packs_closing && !w->error) pthread_cond_wait(&w->packs_ready, &w->lock);
        if (w->error || !w->packs_head) break;
        Pack *p = w->packs_head;
        w->packs_head = p->next;
        if (!w->packs_head) w->packs_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        int r = upload_pack(w, p);
        pthread_mutex_lock(&w->lock);
        pack_put_locked(w, p);
        w->npacks_queued--;
        pthread_cond_signal(&w->packs_space);
        if (r < 0) set_error_locked(w, r);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Takes ownership of data. */
static int submit(Writer *w, const PrId *id, uint8_t type, void *data, size_t len) {
    Job *j = malloc(sizeof *j);
    if (!j) {
        free(data);
        return -ENOMEM;
    }
    *j = (Job){NULL, *id, type, data, len};
    pthread_mutex_lock(&w->lock);
    while (w->jobs_bytes > QUEUE_BYTES_MAX && !w->error) pthread_cond_wait(&w->jobs_space, &w->lock);
    int err = w->error;
    if (!err) {
        if (w->jobs_tail) w->jobs_tail->next = j;
        else w->jobs_head = j;
        w->jobs_tail = j;
        w->jobs_bytes += len;
        w->bytes_new += len;
        pthread_cond_signal(&w->jobs_ready);
    }
    pthread_mutex_unlock(&w->lock);
    if (err) {
        free(j->data);
        free(j);
    }
    return err;
}

/* Ids a blob: 1 if neither stored nor queued yet (it is then recorded as queued), 0 if it is. */
static int blob_is_new(Writer *w, const void *data, size_t len, PrId *ret_id) {
    pr_blob_id(w->keys, data, len, ret_id);
    if (idset_has(&w->pending, ret_id) || pr_repo_find_blob(w->repo, ret_id, NULL) == 0) return 0;
    int r = idset_add(&w->pending, ret_id);
    return r < 0 ? r : 1;
}

/* Ids a blob and queues it unless it is stored or queued already. data is copied only if new. */
static int store_blob(Writer *w, uint8_t type, const void *data, size_t len, PrId *ret_id) {
    int r = blob_is_new(w, data, len, ret_id);
    if (r <= 0) return r;
    void *copy = malloc(len ? len : 1);
    if (!copy) return -ENOMEM;
    pr_mem_advise_huge(copy, len);
    memcpy(copy, data, len);
    return submit(w, ret_id, type, copy, len);
}

/* store_blob for a malloc'ed buffer it takes over: queued as is when new, freed otherwise. */
static int store_blob_owned(Writer *w, uint8_t type, void *data, size_t len, PrId *ret_id) {
    int r = blob_is_new(w, data, len, ret_id);
    if (r <= 0) {
        free(data);
        return r;
    }
    return submit(w, ret_id, type, data, len);
}

static void progress(Writer *w, const char *path, bool force) {
    if (!w->opts->progress) return;
    double now = pr_now();
    if (!force && now - w->last_progress < 0.25) return;
    w->last_progress = now;
    PrWriterProgress p = {
        .files = w->files,
        .dirs = w->dirs,
        .bytes_read = w->bytes_read,
        .bytes_new = w->bytes_new,
        .bytes_uploaded = atomic_load(&w->bytes_uploaded),
        .current = path,
        .elapsed = now - w->start,
    };
    w->opts->progress(&p, w->opts->userdata);
}

/* ---- reading one file ---- */

typedef struct ChunkList {
    PrChunkRef *v;
    uint32_t n, cap;
} ChunkList;

static int chunks_push(ChunkList *l, const PrId *id, uint32_t len) {
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 8;
        PrChunkRef *v = realloc(l->v, sizeof *v * cap);
        if (!v) return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].length = len;
    if (id) l->v[l->n].id = *id;
    else memset(&l->v[l->n].id, 0, sizeof(PrId));
    l->n++;
    return 0;
}

static int push_hole(ChunkList *l, uint64_t len) {
    while (len) {
        uint32_t piece = (uint32_t)MIN(len, (uint64_t)HOLE_PIECE);
        int r = chunks_push(l, NULL, piece);
        if (r < 0) return r;
        len -= piece;
    }
    return 0;
}

/* Reads [start, end) of fd and appends its chunks. Returns -errno on a read error (positive errno
 * values are never returned). */
static int read_region(Writer *w, int fd, const char *path, uint64_t start, uint64_t end, ChunkList *l) {
    size_t have = 0, pos = 0;
    uint64_t off = start;
    while (off < end || pos < have) {
        /* keep at least max_chunk bytes in the window unless the region ends first */
        if (have - pos < w->max_chunk && off < end) {
            if (pos > 0) {
                memmove(w->rbuf, w->rbuf + pos, have - pos);
                have -= pos;
                pos = 0;
            }
            while (have < READ_BUF && off < end) {
                size_t want = (size_t)MIN((uint64_t)(READ_BUF - have), end - off);
                ssize_t n = pread(fd, w->rbuf + have, want, (off_t)off);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    return -errno;
                }
                if (n == 0) {
                    end = off; /* shrank while we read: record what was there */
                    break;
                }
                have += (size_t)n;
                off += (uint64_t)n;
                w->bytes_read += (uint64_t)n;
            }
        }
        if (pos == have) break;
        size_t cut = pr_chunker_cut(w->chunker, w->rbuf + pos, MIN(have - pos, (size_t)w->max_chunk));
        PrId id;
        int r = store_blob(w, PR_BLOB_DATA, w->rbuf + pos, cut, &id);
        if (r < 0) return r;
        if ((r = chunks_push(l, &id, (uint32_t)cut)) < 0) return r;
        pos += cut;
        progress(w, path, false);
    }
    return 0;
}

/* A file no longer than the minimum chunk size is one chunk whatever its content: it is read into a
 * buffer of its own which, when the chunk is new, becomes the job's data as is, instead of going
 * through the read window and being copied out of it. */
static int read_small(Writer *w, int fd, const char *path, uint64_t size, ChunkList *l, uint64_t *ret_size) {
    uint8_t *buf = malloc((size_t)size);
    if (!buf) return -ENOMEM;
    size_t have = 0;
    while (have < size) {
        ssize_t n = pread(fd, buf + have, (size_t)size - have, (off_t)have);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = -errno;
            free(buf);
            return e;
        }
        if (n == 0) break; /* shrank while we read: record what was there */
        have += (size_t)n;
        w->bytes_read += (uint64_t)n;
    }
    *ret_size = have;
    if (!have) {
        free(buf);
        return 0;
    }
    PrId id;
    int r = store_blob_owned(w, PR_BLOB_DATA, buf, have, &id);
    if (r < 0) return r;
    progress(w, path, false);
    return chunks_push(l, &id, (uint32_t)have);
}

/* Reads a regular file into chunks; holes (SEEK_HOLE) become zero-id chunk refs. *ret_size is the
 * number of bytes recorded. */
static int read_file(Writer *w, int fd, const char *path, const struct stat *st, ChunkList *l, uint64_t *ret_size) {
    uint64_t size = (uint64_t)st->st_size, off = 0;
    bool sparse = (uint64_t)st->st_blocks * 512 < size;
    int r;
    if (!sparse && size > 0 && size <= w->min_chunk) return read_small(w, fd, path, size, l, ret_size);
    while (off < size) {
        uint64_t data = off, hole = size;
        if (sparse) {
            off_t d = lseek(fd, (off_t)off, SEEK_DATA);
            if (d < 0 && errno == ENXIO) d = (off_t)size;
            else if (d < 0) return -errno;
            data = MIN((uint64_t)d, size);
            if (data > off && (r = push_hole(l, data - off)) < 0) return r;
            if (data >= size) {
                off = size;
                break;
            }
            off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
            if (h < 0) return -errno;
            hole = MIN((uint64_t)h, size);
        }
        if ((r = read_region(w, fd, path, data, hole, l)) < 0) return r;
        off = hole;
    }
    *ret_size = size;
    uint64_t total = 0;
    for (uint32_t i = 0; i < l->n; i++) total += l->v[i].length;
    *ret_size = total;
    return 0;
}

/* ---- metadata ---- */

static void count_xattrs(Writer *w, const PrNode *n) {
    if (n->nxattrs == 0) return;
    w->xattr_entries++;
    for (uint32_t i = 0; i < n->nxattrs; i++)
        if (strncmp(n->xattrs[i].name, "system.posix_acl_", 17) == 0) {
            w->acl_entries++;
            return;
        }
}

static int read_xattrs(const char *path, PrNode *n) {
    ssize_t len = llistxattr(path, NULL, 0);
    if (len < 0) return (errno == ENOTSUP || errno == EOPNOTSUPP) ? 0 : -errno;
    if (len == 0) return 0;
    _cleanup_free_ char *names = malloc((size_t)len);
    if (!names) return -ENOMEM;
    len = llistxattr(path, names, (size_t)len);
    if (len < 0) return -errno;
    /* names sorted for a canonical encoding */
    size_t count = 0;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1) count++;
    n->xattrs = calloc(count ? count : 1, sizeof *n->xattrs);
    if (!n->xattrs) return -ENOMEM;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1) {
        const char *name = names + i;
        ssize_t vl = lgetxattr(path, name, NULL, 0);
        if (vl < 0) {
            if (errno == ENODATA) continue;
            return -errno;
        }
        uint8_t *v = malloc(vl ? (size_t)vl : 1);
        if (!v) return -ENOMEM;
        vl = lgetxattr(path, name, v, (size_t)vl);
        if (vl < 0) {
            free(v);
            if (errno == ENODATA) continue;
            return -errno;
        }
        PrXattr *x = &n->xattrs[n->nxattrs];
        x->name = strdup(name);
        x->value = v;
        x->len = (uint32_t)vl;
        n->nxattrs++;
        if (!x->name) return -ENOMEM;
    }
    /* insertion sort: few attributes per file */
    for (uint32_t i = 1; i < n->nxattrs; i++)
        for (uint32_t j = i; j > 0 && strcmp(n->xattrs[j - 1].name, n->xattrs[j].name) > 0; j--) {
            PrXattr t = n->xattrs[j];
            n->xattrs[j] = n->xattrs[j - 1];
            n->xattrs[j - 1] = t;
        }
    return 0;
}

static uint8_t node_type(mode_t m) {
    if (S_ISREG(m)) return PR_NODE_FILE;
    if (S_ISDIR(m)) return PR_NODE_DIR;
    if (S_ISLNK(m)) return PR_NODE_SYMLINK;
    if (S_ISCHR(m)) return PR_NODE_CHR;
    if (S_ISBLK(m)) return PR_NODE_BLK;
    if (S_ISFIFO(m)) return PR_NODE_FIFO;
    if (S_ISSOCK(m)) return PR_NODE_SOCK;
    return 0;
}

static void fill_meta(PrNode *n, const struct stat *st) {
    n->type = node_type(st->st_mode);
    n->mode = st->st_mode & 07777;
    n->uid = st->st_uid;
    n->gid = st->st_gid;
    n->mtime_sec = st->st_mtim.tv_sec;
    n->mtime_nsec = (uint32_t)st->st_mtim.tv_nsec;
    n->ctime_sec = st->st_ctim.tv_sec;
    n->ctime_nsec = (uint32_t)st->st_ctim.tv_nsec;
    n->inode = st->st_ino;
    n->nlink = st->st_nlink;
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) n->rdev = st->st_rdev;
}

static bool unchanged(const PrNode *old, const struct stat *st) {
    return old && old->type == PR_NODE_FILE && old->size == (uint64_t)st->st_size &&
           old->mtime_sec == st->st_mtim.tv_sec && old->mtime_nsec == (uint32_t)st->st_mtim.tv_nsec &&
           old->ctime_sec == st->st_ctim.tv_sec && old->ctime_nsec == (uint32_t)st->st_ctim.tv_nsec &&
           old->inode == (uint64_t)st->st_ino;
}

static void report_unreadable(Writer *w, const char *path, int err) {
    pr_log_errno(err, "cannot read %s (skipped)", path);
    w->unreadable++;
}

static int copy_chunks(PrNode *n, const PrChunkRef *src, uint32_t count) {
    if (!count) return 0;
    n->chunks = malloc(sizeof *src * count);
    if (!n->chunks) return -ENOMEM;
    memcpy(n->chunks, src, sizeof *src * count);
    n->nchunks = count;
    return 0;
}

static size_t link_hash(dev_t dev, ino_t ino) {
    uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4full;
    return (size_t)(h ^ (h >> 29));
}

static LinkSeen *link_find(Writer *w, dev_t dev, ino_t ino) {
    if (!w->link_slot_cap) return NULL;
    size_t mask = w->link_slot_cap - 1;
    for (size_t i = link_hash(dev, ino) & mask; w->link_slots[i]; i = (i + 1) & mask) {
        LinkSeen *l = &w->links[w->link_slots[i] - 1];
        if (l->dev == dev && l->ino == ino) return l;
    }
    return NULL;
}

/* Indexes links[nlinks - 1], growing the table to keep it at most half full. */
static int link_index(Writer *w) {
    if (w->nlinks * 2 > w->link_slot_cap) {
        size_t cap = w->link_slot_cap ? w->link_slot_cap * 2 : 256;
        uint32_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return -ENOMEM;
        free(w->link_slots);
        w->link_slots = slots;
        w->link_slot_cap = cap;
        for (size_t i = 0; i + 1 < w->nlinks; i++) {
            size_t j = link_hash(w->links[i].dev, w->links[i].ino) & (cap - 1);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = (uint32_t)(i + 1);
        }
    }
    size_t mask = w->link_slot_cap - 1;
    const LinkSeen *l = &w->links[w->nlinks - 1];
    size_t j = link_hash(l->dev, l->ino) & mask;
    while (w->link_slots[j]) j = (j + 1) & mask;
    w->link_slots[j] = (uint32_t)w->nlinks;
    return 0;
}

/* Fills n for the regular file name in directory dfd (at path, for messages). Returns 1 if it could
 * not be read (reported, skip it). */
static int do_file(Writer *w, int dfd, const char *name, const char *path, const struct stat *st, const PrNode *old,
                   PrNode *n) {
    LinkSeen *seen = NULL;
    if (st->st_nlink > 1) {
        seen = link_find(w, st->st_dev, st->st_ino);
        if (seen) {
            n->link_group = seen->group;
            n->size = seen->size;
            return copy_chunks(n, seen->chunks, seen->nchunks);
        }
    }
    int r;
    if (unchanged(old, st)) {
        n->size = old->size;
        if ((r = copy_chunks(n, old->chunks, old->nchunks)) < 0) return r;
    } else {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (fd < 0 && errno == EPERM) fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            report_unreadable(w, path, errno);
            return 1;
        }
        ChunkList l = {0};
        uint64_t size = 0;
        r = read_file(w, fd, path, st, &l, &size);
        if (r < 0) {
            free(l.v);
            if (get_error(w)) return get_error(w);
            if (r == -ENOMEM) return r;
            report_unreadable(w, path, r);
            return 1;
        }
        struct stat after;
        if (fstat(fd, &after) == 0 &&
            (after.st_mtim.tv_sec != st->st_mtim.tv_sec || after.st_mtim.tv_nsec != st->st_mtim.tv_nsec ||
             after.st_size != st->st_size))
            pr_log(PR_LOG_WARN, "%s changed while it was read: stored as read", path);
        n->chunks = l.v;
        n->nchunks = l.n;
        n->size = size;
    }
    if (st->st_nlink > 1) {
        if (w->nlinks == w->linkcap) {
            size_t cap = w->linkcap ? w->linkcap * 2 : 64;
            LinkSeen *v = realloc(w->links, sizeof *v * cap);
            if (!v) return -ENOMEM;
            w->links = v;
            w->linkcap = cap;
        }
        LinkSeen *ls = &w->links[w->nlinks];
        *ls = (LinkSeen){st->st_dev, st->st_ino, ++w->next_group, NULL, 0, n->size};
        if (n->nchunks) {
            ls->chunks = malloc(sizeof *ls->chunks * n->nchunks);
            if (!ls->chunks) return -ENOMEM;
            memcpy(ls->chunks, n->chunks, sizeof *ls->chunks * n->nchunks);
            ls->nchunks = n->nchunks;
        }
        w->nlinks++;
        n->link_group = ls->group;
        if ((r = link_index(w)) < 0) return r;
    }
    w->vol_bytes += n->size;
    return 0;
}

/* Read-ahead over the sorted entries of one directory: the walking thread asks the kernel to read
 * the next files while it chunks and hashes the current one, so a cold disk sees many requests at
 * once instead of one file at a time. Only regular files that will be read (not unchanged since the
 * parent, not a hardlink already stored) are named; every failure is ignored, the real read reports
 * it. Page cache only: nothing of it is the writer's memory. */
typedef struct StatSlot {
    size_t k1; /* entry index + 1 whose stat this is; 0: none */
    struct stat st;
} StatSlot;

typedef struct Prefetch {
    int dfd; /* the directory's, which names[] are relative to */
    char *const *names;
    size_t n;
    const PrTree *old;
    size_t next;       /* first entry not looked at yet */
    uint64_t *sizes;   /* bytes asked for per entry, to keep the window bounded; NULL: no read-ahead */
    uint64_t ahead;    /* bytes asked for entries not reached yet */
    StatSlot *stats;   /* STAT_RING slots, allocated with sizes */
} Prefetch;

/* The read-ahead's buffers for a directory of n entries: both or neither (it is an optimisation). */
static void prefetch_alloc(Prefetch *pf, size_t n) {
    pf->sizes = n ? calloc(n, sizeof(uint64_t)) : NULL;
    pf->stats = pf->sizes ? calloc(STAT_RING, sizeof(StatSlot)) : NULL;
    if (!pf->stats) {
        free(pf->sizes);
        pf->sizes = NULL;
    }
}

static void prefetch_free(Prefetch *pf) {
    free(pf->sizes);
    free(pf->stats);
    pf->sizes = NULL;
    pf->stats = NULL;
}

/* One directory being walked: what the read-ahead needs to look past its end into the next one. */
typedef struct DirFrame {
    struct DirFrame *up;
    int dfd; /* open on the directory: entries are looked up relative to it, not by whole path */
    const char *path;
    char *const *names;
    size_t n;
    size_t i; /* entry being processed */
    const PrTree *old;
    dev_t dev;
    Prefetch *pf;
} DirFrame;

/* The directory the walk enters after the current one, listed early so that the read-ahead window
 * runs on into it instead of stopping at the end of a directory (which left every directory to
 * start with cold, synchronous reads). do_dir adopts the listing, the old tree and the window. */
typedef struct NextDir {
    const DirFrame *parent;
    size_t index; /* in parent */
    char *path;
    int dfd;
    char **names;
    size_t n;
    PrTree *old;
    PrId old_id;
    bool has_old;
    Prefetch pf;
} NextDir;

static void free_names(char **names, size_t n) {
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void next_dir_free(NextDir *nd) {
    if (!nd) return;
    free(nd->path);
    if (nd->dfd >= 0) close(nd->dfd);
    free_names(nd->names, nd->n);
    pr_tree_free(nd->old);
    prefetch_free(&nd->pf);
    free(nd);
}

static void prefetch_one(Writer *w, Prefetch *pf, size_t k) {
    struct stat st;
    if (fstatat(pf->dfd, pf->names[k], &st, AT_SYMLINK_NOFOLLOW) < 0) return;
    pf->stats[k % STAT_RING] = (StatSlot){k + 1, st};
    if (!S_ISREG(st.st_mode) || st.st_size == 0) return;
    if (pf->old && unchanged(pr_tree_find(pf->old, pf->names[k]), &st)) return;
    if (st.st_nlink > 1 && link_find(w, st.st_dev, st.st_ino)) return;
    /* O_NONBLOCK: should it have become a fifo since the stat, the open must not wait for a writer */
    _cleanup_close_ int fd = openat(pf->dfd, pf->names[k], O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return;
    uint64_t len = MIN((uint64_t)st.st_size, (uint64_t)PREFETCH_FILE_BYTES);
    if (posix_fadvise(fd, 0, (off_t)len, POSIX_FADV_WILLNEED) != 0) return;
    pf->sizes[k] = len;
    pf->ahead += len;
}

static int list_dir(int dfd, char ***ret_names, size_t *ret_n);

/* The current directory's window reached its last entry with room left (files_ahead entries and
 * bytes_ahead bytes in it): carry it on into the parent's next entry if that is a directory on the
 * same filesystem. One such directory at a time. */
static void prefetch_next_dir(Writer *w, const DirFrame *f, size_t files_ahead, uint64_t bytes_ahead) {
    const DirFrame *up = f->up;
    if (!up || up->i + 1 >= up->n || files_ahead >= PREFETCH_FILES || bytes_ahead >= PREFETCH_BYTES) return;
    NextDir *nd = w->next_dir;
    if (nd && (nd->parent != up || nd->index != up->i + 1)) return; /* taken by another level */
    if (!nd) {
        if (w->next_dir_tried == up->names[up->i + 1]) return; /* not a directory, or unreadable */
        w->next_dir_tried = up->names[up->i + 1];
        _cleanup_free_ char *path = NULL;
        struct stat st;
        if (asprintf(&path, "%s/%s", up->path, up->names[up->i + 1]) < 0) return;
        if (fstatat(up->dfd, up->names[up->i + 1], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
            st.st_dev != up->dev)
            return;
        if (!(nd = calloc(1, sizeof *nd))) return;
        nd->parent = up;
        nd->index = up->i + 1;
        nd->path = TAKE_PTR(path);
        nd->dfd = openat(up->dfd, up->names[up->i + 1], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nd->dfd < 0 || list_dir(nd->dfd, &nd->names, &nd->n) != 0 || !nd->n ||
            (prefetch_alloc(&nd->pf, nd->n), !nd->pf.sizes)) {
            next_dir_free(nd);
            return;
        }
        const PrNode *o = up->old ? pr_tree_find(up->old, up->names[up->i + 1]) : NULL;
        if (o && o->type == PR_NODE_DIR) {
            nd->old_id = o->subtree;
            nd->has_old = pr_repo_read_tree(w->repo, &nd->old_id, &nd->old) == 0;
        }
        nd->pf = (Prefetch){nd->dfd, nd->names, nd->n, nd->old, 0, nd->pf.sizes, 0, nd->pf.stats};
        w->next_dir = nd;
    }
    Prefetch *pf = &nd->pf;
    while (pf->next < pf->n && files_ahead + pf->next < PREFETCH_FILES && bytes_ahead + pf->ahead < PREFETCH_BYTES)
        prefetch_one(w, pf, pf->next++);
}

/* Called before entry i is processed: entry i's bytes leave the window, later entries join it. */
static void prefetch_advance(Writer *w, DirFrame *f, size_t i) {
    Prefetch *pf = f->pf;
    if (!pf->sizes) return;
    if (i > 0 && i - 1 < pf->next) pf->ahead -= pf->sizes[i - 1];
    if (pf->next <= i) pf->next = i + 1; /* entry i itself is read right away */
    while (pf->next < pf->n && pf->next < i + 1 + PREFETCH_FILES && pf->ahead < PREFETCH_BYTES)
        prefetch_one(w, pf, pf->next++);
    if (pf->next == pf->n) prefetch_next_dir(w, f, pf->n - (i + 1), pf->ahead);
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int do_dir(Writer *w, DirFrame *up, const char *path, dev_t dev, const PrId *old_tree, PrId *ret_id);

/* The stat of entry f->i of the directory being walked (old: its node in the parent snapshot). The
 * read-ahead's, when that showed a file unchanged since the parent: the entry is then recorded as it
 * was at that stat (its chunks and xattrs the parent's), as the read-ahead already decided not to
 * read it. Else a new one: anything read is described as it is now, not as it was before a
 * subdirectory was walked in between. */
static int entry_stat(const DirFrame *f, const PrNode *old, struct stat *st) {
    const StatSlot *s = f->pf->stats ? &f->pf->stats[f->i % STAT_RING] : NULL;
    if (s && s->k1 == f->i + 1 && S_ISREG(s->st.st_mode) && unchanged(old, &s->st)) {
        *st = s->st;
        return 0;
    }
    return fstatat(f->dfd, f->names[f->i], st, AT_SYMLINK_NOFOLLOW);
}

/* Extended attributes change an entry's ctime: with the same inode and ctime as in the parent
 * snapshot, its attributes are the parent's, and the two syscalls per entry that read them (the
 * larger part of an unchanged snapshot's system time) are saved. */
static bool attrs_unchanged(const PrNode *old, const PrNode *n) {
    return old && old->type == n->type && old->inode == n->inode && old->ctime_sec == n->ctime_sec &&
           old->ctime_nsec == n->ctime_nsec;
}

/* Builds the node for entry frame->i, name, at path. Returns 1 to skip the entry (reported), 0 or
 * -errno. */
static int do_entry(Writer *w, DirFrame *frame, const char *path, const char *name, dev_t dev, const PrTree *old_tree,
                    PrNode *n) {
    struct stat st;
    const PrNode *old = old_tree ? pr_tree_find(old_tree, name) : NULL;
    if (entry_stat(frame, old, &st) < 0) {
        if (errno == ENOENT) return 1; /* vanished since readdir: nothing to report */
        report_unreadable(w, path, errno);
        return 1;
    }
    if (!(n->name = strdup(name))) return -ENOMEM;
    fill_meta(n, &st);
    if (!n->type) {
        pr_log(PR_LOG_WARN, "%s: unknown file type, skipped", path);
        return 1;
    }
    int r = attrs_unchanged(old, n) ? pr_xattrs_copy(old->xattrs, old->nxattrs, &n->xattrs, &n->nxattrs)
                                    : read_xattrs(path, n);
    if (r < 0) {
        if (r == -ENOMEM) return r;
        report_unreadable(w, path, r);
        return 1;
    }
    count_xattrs(w, n);
    switch (n->type) {
    case PR_NODE_FILE:
        w->vol_files++;
        w->files++;
        return do_file(w, frame->dfd, name, path, &st, old, n);
    case PR_NODE_DIR:
        w->vol_dirs++;
        w->dirs++;
        if (st.st_dev != dev) {
            /* another filesystem: keep the mount point as an empty directory */
            pr_log(PR_LOG_INFO, "%s is another filesystem: not descending", path);
            PrTree empty = {0};
            _cleanup_free_ void *data = NULL;
            size_t len;
            if ((r = pr_tree_encode(&empty, &data, &len)) < 0) return r;
            return store_blob(w, PR_BLOB_TREE, data, len, &n->subtree);
        }
        r = do_dir(w, frame, path, dev, old && old->type == PR_NODE_DIR ? &old->subtree : NULL, &n->subtree);
        return r;
    case PR_NODE_SYMLINK: {
        char buf[PATH_MAX + 1];
        ssize_t l = readlinkat(frame->dfd, name, buf, PATH_MAX);
        if (l < 0) {
            report_unreadable(w, path, errno);
            return 1;
        }
        buf[l] = 0;
        if (!(n->target = strdup(buf))) return -ENOMEM;
        n->size = (uint64_t)l;
        return 0;
    }
    default:
        return 0;
    }
}

/* The entries of the directory open as dfd but . and .., sorted. 0, -ENOMEM, or a positive errno
 * when the directory cannot be read. */
static int list_dir(int dfd, char ***ret_names, size_t *ret_n) {
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0); /* closedir closes it */
    if (fd < 0) return errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return e;
    }
    char **names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent *de;
    int r = 0;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 32;
            char **v = realloc(names, sizeof *v * cap);
            if (!v) {
                r = -ENOMEM;
                break;
            }
            names = v;
        }
        if (!(names[nn] = strdup(de->d_name))) {
            r = -ENOMEM;
            break;
        }
        nn++;
        errno = 0;
    }
    if (r == 0 && errno) r = errno;
    closedir(d);
    if (r != 0) {
        free_names(names, nn);
        return r;
    }
    if (nn) qsort(names, nn, sizeof *names, cmp_names);
    *ret_names = names;
    *ret_n = nn;
    return 0;
}

/* Walks one directory (sorted), writes its tree blob, returns its id. The directory is entry up->i
 * of up, or with no up a volume at path. Returns 1 if the directory itself cannot be read (reported). */
static int do_dir(Writer *w, DirFrame *up, const char *path, dev_t dev, const PrId *old_id, PrId *ret_id) {
    int r;
    _cleanup_(pr_tree_freep) PrTree *old = NULL;
    _cleanup_close_ int dfd = -1;
    char **names = NULL;
    size_t nn = 0;
    /* listed already by the read-ahead of the directory before it? */
    NextDir *nd = w->next_dir && strcmp(w->next_dir->path, path) == 0 ? TAKE_PTR(w->next_dir) : NULL;
    if (nd && nd->has_old && old_id && memcmp(nd->old_id.b, old_id->b, PR_ID_LEN) == 0) old = TAKE_PTR(nd->old);
    if (old_id && !old && pr_repo_read_tree(w->repo, old_id, &old) < 0) old = NULL; /* no reuse then */

    Prefetch pf = {0};
    if (nd) {
        dfd = TAKE_FD(nd->dfd);
        names = TAKE_PTR(nd->names);
        nn = nd->n;
        nd->n = 0;
        pf = nd->pf;
        nd->pf = (Prefetch){0};
        pf.old = old;
        next_dir_free(nd);
    } else {
        /* a volume given as a symlink to its directory is followed; nothing below it is */
        dfd = up ? openat(up->dfd, up->names[up->i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                 : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = dfd < 0 ? errno : list_dir(dfd, &names, &nn);
        if (r < 0) return r;
        if (r > 0) {
            report_unreadable(w, path, r);
            return 1;
        }
        pf = (Prefetch){dfd, names, nn, old, 0, NULL, 0, NULL};
        prefetch_alloc(&pf, nn); /* without memory for the window, no read-ahead */
    }
    pf.names = names;
    r = 0;
    PrTree t = {0};
    if (nn && !(t.nodes = calloc(nn, sizeof *t.nodes))) r = -ENOMEM;
    DirFrame frame = {up, dfd, path, names, nn, 0, old, dev, &pf};
    for (size_t i = 0; r >= 0 && i < nn; i++) {
        frame.i = i;
        prefetch_advance(w, &frame, i);
        _cleanup_free_ char *child = NULL;
        if (asprintf(&child, "%s/%s", path, names[i]) < 0) {
            r = -ENOMEM;
            break;
        }
        PrNode *n = &t.nodes[t.n];
        r = do_entry(w, &frame, child, names[i], dev, old, n);
        if (r == 1) {
            pr_node_clear(n);
            r = 0;
        } else if (r == 0) {
            t.n++;
        } else
            pr_node_clear(n);
        /* a directory listed ahead that the walk did not enter (gone, another filesystem) */
        if (w->next_dir && w->next_dir->parent == &frame && w->next_dir->index <= i) {
            next_dir_free(w->next_dir);
            w->next_dir = NULL;
        }
        if (r == 0 && (r = get_error(w)) < 0) break;
    }
    if (w->next_dir && w->next_dir->parent == &frame) { /* the frame is going away */
        next_dir_free(w->next_dir);
        w->next_dir = NULL;
    }
    prefetch_free(&pf);
    free_names(names, nn);
    if (r >= 0) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = pr_tree_encode(&t, &data, &len);
        if (r >= 0) r = store_blob(w, PR_BLOB_TREE, data, len, ret_id);
    }
    for (uint32_t i = 0; i < t.n; i++) pr_node_clear(&t.nodes[i]);
    free(t.nodes);
    return r;
}

/* ---- the whole snapshot ---- */

static bool volume_name_valid(const char *s) {
    return *s && strlen(s) <= 255 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The newest snapshot of this host holding volume `name`: its volume tree id. */
static const PrSnapshot *find_parent(PrSnapshot **list, size_t n, const char *host, const char *name) {
    for (size_t i = n; i-- > 0;) {
        if (strcmp(list[i]->host, host) != 0) continue;
        for (uint32_t v = 0; v < list[i]->nvolumes; v++)
            if (strcmp(list[i]->volumes[v].name, name) == 0) return list[i];
    }
    return NULL;
}

/* Publishes: the index file of what this snapshot stored, then its manifest. Under a lock that
 * lapsed, nothing: a prune may have removed packs the snapshot refers to (new ones, or old ones
 * whose blobs it reused). */
static int write_index_and_manifest(Writer *w, PrSnapshot *s) {
    PrStore *store = pr_repo_store(w->repo);
    char key[80], hex[65];
    int r;
    pr_test_pause("PRAFS_TEST_SNAPSHOT_PAUSE", "publish", "PRAFS_TEST_SNAPSHOT_RESUME",
                  "snapshot: test pause at publish");
    if (w->opts->lock && (r = pr_lock_check(w->opts->lock)) < 0) return r;
    if (w->ndone) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = pr_index_file_encode(w->keys, w->done, w->ndone, &data, &len);
        if (r < 0) return r;
        uint8_t h[32];
        pr_sha256(data, len, h);
        pr_hex(h, 32, hex);
        snprintf(key, sizeof key, "index/%s", hex);
        r = pr_store_put(store, key, data, len);
        if (r < 0) return pr_log_errno(r, "cannot store %s in %s", key, store->location);
        atomic_fetch_add(&w->bytes_uploaded, len);
    }
    s->bytes_uploaded = atomic_load(&w->bytes_uploaded);
    _cleanup_free_ void *data = NULL;
    size_t len;
    /* the manifest's own size is not part of its totals: it cannot count itself */
    r = pr_snapshot_encode(w->keys, s, &data, &len);
    if (r < 0) return r;
    pr_sha256(data, len, s->id.b);
    pr_hex(s->id.b, PR_ID_LEN, hex);
    snprintf(key, sizeof key, "snapshots/%s", hex);
    r = pr_store_put(store, key, data, len);
    if (r < 0) return pr_log_errno(r, "cannot store %s in %s", key, store->location);
    return 0;
}

static int finish_pipeline(Writer *w, pthread_t *workers, unsigned nw, pthread_t *ups, unsigned nu) {
    pthread_mutex_lock(&w->lock);
    w->closing = true;
    pthread_cond_broadcast(&w->jobs_ready);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < nw; i++) pthread_join(workers[i], NULL);
    pthread_mutex_lock(&w->lock);
    for (int t = 0; t < 2; t++) {
        Pack *p = w->open_pack[t];
        w->open_pack[t] = NULL;
        if (p && p->n && !w->error) queue_pack_locked(w, p);
        else pack_put_locked(w, p);
    }
    w->packs_closing = true;
    pthread_cond_broadcast(&w->packs_ready);
    pthread_mutex_unlock(&w->lock);
    for (unsigned i = 0; i < nu; i++) pthread_join(ups[i], NULL);
    /* whatever is left after an error */
    while (w->jobs_head) {
        Job *j = w->jobs_head;
        w->jobs_head = j->next;
        free(j->data);
        free(j);
    }
    while (w->packs_head) {
        Pack *p = w->packs_head;
        w->packs_head = p->next;
        pack_free(p);
    }
    while (w->free_packs) {
        Pack *p = w->free_packs;
        w->free_packs = p->next;
        pack_free(p);
    }
    return w->error;
}

int pr_writer_snapshot(PrRepo *repo, const PrWriterOptions *opts, PrSnapshot **ret) {
    int r;
    if (!opts->nvolumes) return -EINVAL;
    for (size_t i = 0; i < opts->nvolumes; i++) {
        if (!volume_name_valid(opts->volumes[i].name)) {
            pr_log(PR_LOG_ERR, "'%s' is not a valid volume name", opts->volumes[i].name);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(opts->volumes[i].name, opts->volumes[j].name) == 0) {
                pr_log(PR_LOG_ERR, "volume name '%s' given twice", opts->volumes[i].name);
                return -EINVAL;
            }
        struct stat st;
        if (stat(opts->volumes[i].path, &st) < 0)
            return pr_log_errno(errno, "cannot read volume %s at %s", opts->volumes[i].name, opts->volumes[i].path);
        if (!S_ISDIR(st.st_mode)) {
            pr_log(PR_LOG_ERR, "volume %s: %s is not a directory", opts->volumes[i].name, opts->volumes[i].path);
            return -ENOTDIR;
        }
    }
    /* the walk holds one descriptor per directory level it is in: let a deep tree have them */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < MIN(rl.rlim_max, (rlim_t)65536)) {
        rl.rlim_cur = MIN(rl.rlim_max, (rlim_t)65536);
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((r = pr_repo_load_index(repo, true)) < 0) return r;
    PrSnapshot **list = NULL;
    size_t nlist = 0;
    if ((r = pr_repo_list_snapshots(repo, &list, &nlist)) < 0) return r;

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = calloc(1, sizeof *s);
    Writer *w = calloc(1, sizeof *w);
    PrTree root = {0};
    if (!s || !w || !(root.nodes = calloc(opts->nvolumes, sizeof *root.nodes)) ||
        !(s->volumes = calloc(opts->nvolumes, sizeof *s->volumes)) ||
        !(s->tags = calloc(opts->ntags ? opts->ntags : 1, sizeof *s->tags))) {
        free(w);
        free(root.nodes);
        pr_snapshot_list_free(list, nlist);
        return -ENOMEM;
    }
    s->time_sec = now.tv_sec;
    s->time_nsec = (uint32_t)now.tv_nsec;
    s->host = strdup(opts->host);
    s->program_version = strdup(PRAFS_VERSION);
    for (size_t i = 0; i < opts->ntags; i++) {
        s->tags[i] = strdup(opts->tags[i]);
        s->ntags++;
    }

    w->repo = repo;
    w->keys = pr_repo_keys(repo);
    w->chunker = pr_repo_chunker(repo);
    w->opts = opts;
    w->pack_target = pr_repo_config(repo)->pack_size;
    w->min_chunk = pr_repo_config(repo)->chunker.min_size;
    w->max_chunk = pr_repo_config(repo)->chunker.max_size;
    /* a pack closes at the first blob that takes it past the target, and a stored blob is at most
     * its raw size plus the flag byte and the seal: such a buffer never grows for a data blob */
    w->pack_cap = (size_t)w->pack_target + w->max_chunk + 1 + PR_SEAL_OVERHEAD + PACK_TRAILER_ROOM;
    w->start = pr_now();
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->jobs_ready, NULL);
    pthread_cond_init(&w->jobs_space, NULL);
    pthread_cond_init(&w->packs_ready, NULL);
    pthread_cond_init(&w->packs_space, NULL);
    w->rbuf = malloc(READ_BUF);
    pr_mem_advise_huge(w->rbuf, READ_BUF);

    unsigned nw = opts->workers ? opts->workers : (unsigned)MAX(1L, MIN(16L, sysconf(_SC_NPROCESSORS_ONLN)));
    /* a local disk gains nothing from more than two writers; S3 requests overlap their latency */
    bool local = strcmp(pr_repo_store(repo)->ops->kind, "local") == 0;
    unsigned nu = opts->uploaders ? opts->uploaders : local ? 2 : 4;
    pthread_t workers[16], ups[16];
    nw = MIN(nw, 16u);
    nu = MIN(nu, 16u);
    unsigned started_w = 0, started_u = 0;
    r = (!s->host || !s->program_version || !w->rbuf) ? -ENOMEM : 0;
    for (; r == 0 && started_w < nw; started_w++)
        if (pthread_create(&workers[started_w], NULL, worker_main, w) != 0) r = -EAGAIN;
    for (; r == 0 && started_u < nu; started_u++)
        if (pthread_create(&ups[started_u], NULL, uploader_main, w) != 0) r = -EAGAIN;
    if (r < 0) set_error(w, r);

    for (size_t v = 0; r >= 0 && v < opts->nvolumes; v++) {
        const PrVolumeSpec *vs = &opts->volumes[v];
        PrNode *n = &root.nodes[v];
        struct stat st;
        if (lstat(vs->path, &st) < 0 && stat(vs->path, &st) < 0) {
            r = pr_log_errno(errno, "cannot read volume %s", vs->path);
            break;
        }
        if (S_ISLNK(st.st_mode) && stat(vs->path, &st) < 0) {
            r = pr_log_errno(errno, "cannot read volume %s", vs->path);
            break;
        }
        fill_meta(n, &st);
        if (!(n->name = strdup(vs->name))) {
            r = -ENOMEM;
            break;
        }
        root.n++;
        if ((r = read_xattrs(vs->path, n)) < 0) {
            r = pr_log_errno(r, "cannot read the attributes of %s", vs->path);
            break;
        }
        count_xattrs(w, n);
        /* the parent's tree for this volume, if any */
        PrId old_id, *old = NULL;
        const PrSnapshot *parent = find_parent(list, nlist, s->host, vs->name);
        if (parent) {
            if (!s->has_parent) {
                s->has_parent = true;
                s->parent = parent->id;
            }
            PrNode pn = {0};
            if (pr_repo_resolve(repo, parent, vs->name, &pn) == 0 && pn.type == PR_NODE_DIR) {
                old_id = pn.subtree;
                old = &old_id;
            }
            pr_node_clear(&pn);
        }
        w->vol_files = w->vol_dirs = w->vol_bytes = 0;
        for (size_t i = 0; i < w->nlinks; i++) free(w->links[i].chunks);
        w->nlinks = 0; /* link groups are per volume */
        if (w->link_slots) memset(w->link_slots, 0, sizeof *w->link_slots * w->link_slot_cap);
        r = do_dir(w, NULL, vs->path, st.st_dev, old, &n->subtree);
        if (r == 1) {
            r = pr_log_errno(EACCES, "cannot read volume %s at %s", vs->name, vs->path);
            break;
        }
        if (r < 0) break;
        s->volumes[v] = (PrSnapshotVolume){strdup(vs->name), w->vol_files, w->vol_dirs + 1, w->vol_bytes};
        s->nvolumes++;
        if (!s->volumes[v].name) r = -ENOMEM;
        s->files += w->vol_files;
        s->dirs += w->vol_dirs + 1;
    }
    s->acl_entries = w->acl_entries;
    s->xattr_entries = w->xattr_entries;
    /* the root tree: one directory per volume, sorted by name */
    if (r >= 0) {
        for (uint32_t i = 1; i < root.n; i++)
            for (uint32_t j = i; j > 0 && strcmp(root.nodes[j - 1].name, root.nodes[j].name) > 0; j--) {
                PrNode t = root.nodes[j];
                root.nodes[j] = root.nodes[j - 1];
                root.nodes[j - 1] = t;
            }
        _cleanup_free_ void *data = NULL;
        size_t len;
        r = pr_tree_encode(&root, &data, &len);
        if (r >= 0) r = store_blob(w, PR_BLOB_TREE, data, len, &s->root);
    }
    if (r < 0) set_error(w, r);
    progress(w, NULL, true);
    int e = finish_pipeline(w, workers, started_w, ups, started_u);
    if (r >= 0 && e < 0) r = e;
    if (r >= 0) {
        s->bytes_read = w->bytes_read;
        s->bytes_new = w->bytes_new;
        s->duration_ms = (uint64_t)((pr_now() - w->start) * 1000);
        r = write_index_and_manifest(w, s);
    }
    unsigned unreadable = w->unreadable;

    for (uint32_t i = 0; i < root.n; i++) pr_node_clear(&root.nodes[i]);
    free(root.nodes);
    for (uint32_t i = 0; i < w->ndone; i++) free(w->done[i].blobs);
    free(w->done);
    for (size_t i = 0; i < w->nlinks; i++) free(w->links[i].chunks);
    free(w->links);
    free(w->link_slots);
    free(w->pending.slots);
    free(w->rbuf);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->jobs_ready);
    pthread_cond_destroy(&w->jobs_space);
    pthread_cond_destroy(&w->packs_ready);
    pthread_cond_destroy(&w->packs_space);
    free(w);
    pr_snapshot_list_free(list, nlist);
    if (r < 0) return r;
    if (ret) *ret = TAKE_PTR(s);
    return unreadable ? 1 : 0;
}
