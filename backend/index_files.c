/* SPDX-License-Identifier: MIT */
#include "backend/index_files.h"

#include <string.h>

#include "cache/util.h"

#define META_MAX (256u << 20)

int pr_key_list_add(const char *key, uint64_t size, void *userdata) {
    PrKeyList *l = userdata;
    char **v = realloc(l->v, sizeof *v * (l->n + 1));
    if (!v) return -ENOMEM;
    l->v = v;
    uint64_t *s = realloc(l->sizes, sizeof *s * (l->n + 1));
    if (!s) return -ENOMEM;
    l->sizes = s;
    if (!(l->v[l->n] = strdup(key))) return -ENOMEM;
    l->sizes[l->n++] = size;
    return 0;
}

void pr_key_list_clear(PrKeyList *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    free(l->sizes);
    *l = (PrKeyList){0};
}

typedef struct Load {
    PrPackIndex *x;
    size_t cap;
    uint32_t file; /* the index file being decoded */
} Load;

static int add_pack(const PrIndexPack *ip, void *ud) {
    Load *l = ud;
    PrPackIndex *x = l->x;
    if (x->npacks == l->cap) {
        size_t cap = MAX(2 * l->cap, (size_t)256);
        PrIndexedPack *v = reallocarray(x->packs, cap, sizeof *v);
        if (!v) return -ENOMEM;
        x->packs = v;
        l->cap = cap;
    }
    PrIndexedPack *p = &x->packs[x->npacks];
    *p = (PrIndexedPack){.id = ip->pack, .n = ip->n, .file = l->file};
    /* the decoder's PrIndexPack is valid during the call only */
    p->blobs = malloc(sizeof *p->blobs * (ip->n ? ip->n : 1));
    if (!p->blobs) return -ENOMEM;
    memcpy(p->blobs, ip->blobs, sizeof *p->blobs * ip->n);
    x->npacks++;
    return 0;
}

/* By id, then by index file: of a pack named twice, the first file naming it comes first. */
static int cmp_pack(const void *a, const void *b) {
    const PrIndexedPack *x = a, *y = b;
    int r = memcmp(x->id.b, y->id.b, PR_ID_LEN);
    if (r) return r;
    return x->file < y->file ? -1 : x->file > y->file;
}

int pr_pack_index_load(PrRepo *r, const PrPackIndexOptions *opts, PrPackIndex *ret) {
    PrStore *store = pr_repo_store(r);
    *ret = (PrPackIndex){0};
    int k = pr_store_list(store, "index/", pr_key_list_add, &ret->files);
    if (k < 0) {
        pr_key_list_clear(&ret->files);
        return pr_log_errno(k, "cannot list the index of %s", store->location);
    }
    Load l = {.x = ret};
    for (size_t i = 0; i < ret->files.n; i++) {
        if (opts->progress) opts->progress(i, ret->files.n, opts->userdata);
        _cleanup_free_ void *data = NULL;
        size_t len;
        const char *key = ret->files.v[i];
        k = pr_store_get(store, key, 0, META_MAX, &data, &len);
        if (k == -ENOENT && opts->missing_ok) continue; /* replaced by a prune meanwhile */
        if (k < 0) return pr_log_errno(k, "cannot read %s", key);
        size_t before = ret->npacks;
        l.file = (uint32_t)i;
        k = pr_index_file_decode(pr_repo_keys(r), data, len, add_pack, &l);
        if (k < 0) {
            /* nothing of a file that does not decode is trusted, not even the packs read before the
             * damage */
            for (size_t j = before; j < ret->npacks; j++) free(ret->packs[j].blobs);
            ret->npacks = before;
            if ((k = opts->damaged(key, k, opts->userdata)) < 0) return k;
            continue;
        }
        ret->bytes_read += len;
    }
    /* a pack named by two index files (a prune killed after publishing) is one pack */
    if (ret->npacks) qsort(ret->packs, ret->npacks, sizeof *ret->packs, cmp_pack);
    size_t w = 0;
    for (size_t i = 0; i < ret->npacks; i++) {
        if (w && memcmp(ret->packs[w - 1].id.b, ret->packs[i].id.b, PR_ID_LEN) == 0) {
            free(ret->packs[i].blobs);
            continue;
        }
        ret->packs[w++] = ret->packs[i];
    }
    ret->npacks = w;
    return 0;
}

ssize_t pr_pack_index_find(const PrPackIndex *x, const PrId *id) {
    size_t lo = 0, hi = x->npacks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = memcmp(x->packs[mid].id.b, id->b, PR_ID_LEN);
        if (r == 0) return (ssize_t)mid;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

void pr_pack_index_clear(PrPackIndex *x) {
    pr_key_list_clear(&x->files);
    for (size_t i = 0; i < x->npacks; i++) free(x->packs[i].blobs);
    free(x->packs);
    *x = (PrPackIndex){0};
}
