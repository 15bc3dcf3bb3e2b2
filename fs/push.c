/* SPDX-License-Identifier: MIT */
/* Small files put into the kernel's page cache ahead of a reader that copies a tree (cp -a, tar,
 * rsync), with FUSE_NOTIFY_STORE.
 *
 * Through FUSE every file read costs a round trip: the kernel queues a READ, wakes a thread of the
 * mount, waits for the reply and wakes the reader. For a copy of 100,000 small files that was most of
 * the copy's time and of the mount's CPU (the wake-ups and the device's locks, not the data), while
 * the data itself was in memory already (planned ahead, fs/plan.c). So when a reader that walks a
 * directory in order starts a file, the files after it in the same directory whose data is in memory
 * and whose inodes the kernel holds are handed to the kernel's page cache by one thread here; the
 * reader then finds them there and reads them without a request. Nothing is fetched for this: a file
 * not in memory stops the push, and the reader's own READ of it goes the usual way (and pushes the
 * files after it). The file that triggers the next plan is never pushed (its READ starts that plan).
 * Only bytes the fetcher verified are pushed; the data never changes, so a page pushed and a page
 * read hold the same bytes. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "cache/util.h"
#include "fs/fs-internal.h"
#include "fs/tree.h"

#define PUSH_QUEUE 256                /* files waiting for the thread at most (more are left to READs) */
#define PUSH_BYTES (8u << 20)         /* file data pushed ahead of one read at most */
#define PUSH_QUEUE_BYTES (16u << 20)  /* file data waiting for the thread at most (held out of the cache's bound) */

typedef struct PushItem {
    uint64_t ino;
    PrCacheValue *v; /* one reference: the file's only chunk */
} PushItem;

struct PrPusher {
    PrFs *fs;
    pthread_t thread;
    bool started, stopping;
    pthread_mutex_t lock;
    pthread_cond_t work;
    PushItem q[PUSH_QUEUE];
    unsigned head, n;
    size_t bytes; /* of the queued values */
    atomic_uint_fast64_t pushed, failed;
};

static void *pusher(void *arg) {
    PrPusher *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && !p->n) pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping) break;
        PushItem it = p->q[p->head];
        p->head = (p->head + 1) % PUSH_QUEUE;
        p->n--;
        p->bytes -= it.v->len;
        pthread_mutex_unlock(&p->lock);
        struct fuse_bufvec bv = FUSE_BUFVEC_INIT(it.v->len);
        bv.buf[0].mem = it.v->data;
        /* -ENOENT: the kernel forgot the inode meanwhile (nothing to do) */
        int r = fuse_lowlevel_notify_store(p->fs->se, it.ino, 0, &bv, 0);
        if (r < 0) {
            atomic_fetch_add(&p->failed, 1);
            if (r != -ENOENT) pr_debug("push of inode %llu: %s", (unsigned long long)it.ino, strerror(-r));
        } else {
            atomic_fetch_add(&p->pushed, 1);
        }
        pr_memcache_value_unref(it.v);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int pr_pusher_start(PrFs *fs) {
    if (!fs->o.push_files) return 0;
    PrPusher *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->fs = fs;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    int r = pthread_create(&p->thread, NULL, pusher, p);
    if (r != 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->work);
        free(p);
        return 0; /* no push: every file is read with a READ, as without it */
    }
    p->started = true;
    fs->pusher = p;
    return 0;
}

void pr_pusher_stop(PrFs *fs, uint64_t *pushed) {
    PrPusher *p = fs->pusher;
    *pushed = 0;
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    for (; p->n; p->n--, p->head = (p->head + 1) % PUSH_QUEUE) pr_memcache_value_unref(p->q[p->head].v);
    *pushed = atomic_load(&p->pushed);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p);
    fs->pusher = NULL;
}

/* Queues one file; false when the queue is full (v is then not taken). */
static bool enqueue(PrPusher *p, uint64_t ino, PrCacheValue *v) {
    pthread_mutex_lock(&p->lock);
    bool ok = !p->stopping && p->n < PUSH_QUEUE && p->bytes + v->len <= PUSH_QUEUE_BYTES;
    if (ok) {
        p->q[(p->head + p->n) % PUSH_QUEUE] = (PushItem){ino, v};
        p->n++;
        p->bytes += v->len;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void pr_pusher_after(PrFs *fs, PrInode *in) {
    PrPusher *p = fs->pusher;
    if (!p || in->kind != PR_INODE_NODE || !in->tree || !in->node) return;
    const PrFlatTree *t = pr_flat_tree(in->tree);
    if (!pr_flat_tree_holds(t, in->node)) return;
    uint32_t i = pr_flat_tree_index(t, in->node);
    /* entry i of a directory is numbered D << 32 | (i + 1) (inode.h); a file of a hardlink group
     * may carry another path's number: then the siblings' numbers are not known here */
    if ((in->ino & 0xffffffffu) != (uint64_t)i + 1) return;
    uint64_t base = in->ino & ~(uint64_t)0xffffffffu, bytes = 0;
    const PrNode *trigger = atomic_load(&fs->plan_trigger);
    uint32_t last = (uint32_t)MIN((uint64_t)t->n - 1, (uint64_t)i + fs->o.push_files);
    for (uint32_t j = i + 1; j <= last && bytes < PUSH_BYTES; j++) {
        const PrNode *n = &t->nodes[j];
        if (n == trigger) break;
        if (n->type != PR_NODE_FILE || n->size == 0 || n->size > PR_FS_MAX_READ || n->nchunks != 1 ||
            pr_id_is_zero(&n->chunks[0].id))
            continue;
        PrCacheValue *v = pr_memcache_get(fs->mc, n->chunks[0].id.b);
        if (!v) break; /* not here yet: the reader's READ asks for it */
        PrInode *x = NULL;
        if (v->len != n->size || pr_itable_get(fs->itable, base | (j + 1), &x) < 0) {
            pr_memcache_value_unref(v);
            continue;
        }
        /* the kernel holds the inode (it is in the table) and it is this entry; once per inode (two
         * readers racing may push a file twice: the same bytes) */
        bool go = x->kind == PR_INODE_NODE && x->node && x->node->size == n->size && x->node->nchunks == 1 &&
                  memcmp(x->node->chunks[0].id.b, n->chunks[0].id.b, PR_ID_LEN) == 0 && !atomic_load(&x->pushed);
        bool full = go && !enqueue(p, base | (j + 1), v);
        if (go && !full) atomic_store(&x->pushed, true);
        else pr_memcache_value_unref(v);
        pr_inode_unref(x);
        if (full) break;
        if (go) bytes += n->size;
    }
}
