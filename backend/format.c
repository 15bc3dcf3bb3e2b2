/* SPDX-License-Identifier: MIT */
#include "backend/format.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <zstd.h>

#include "cache/util.h"

/* ---- growable output buffer ---- */

typedef struct Buf {
    uint8_t *p;
    size_t len, cap;
    int err;
} Buf;

static uint8_t *buf_room(Buf *b, size_t n) {
    if (b->err) return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->err = -ENOMEM;
            return NULL;
        }
        b->p = q;
        b->cap = cap;
    }
    uint8_t *r = b->p + b->len;
    b->len += n;
    return r;
}
static void buf_bytes(Buf *b, const void *d, size_t n) {
    uint8_t *r = buf_room(b, n);
    if (r && n) memcpy(r, d, n);
}
static void buf_u8(Buf *b, uint8_t v) { buf_bytes(b, &v, 1); }
static void buf_u16(Buf *b, uint16_t v) {
    uint8_t *r = buf_room(b, 2);
    if (r) pr_put_u16(r, v);
}
static void buf_u32(Buf *b, uint32_t v) {
    uint8_t *r = buf_room(b, 4);
    if (r) pr_put_u32(r, v);
}
static void buf_u64(Buf *b, uint64_t v) {
    uint8_t *r = buf_room(b, 8);
    if (r) pr_put_u64(r, v);
}
static void buf_str(Buf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n > UINT16_MAX) {
        b->err = -ENAMETOOLONG;
        return;
    }
    buf_u16(b, (uint16_t)n);
    buf_bytes(b, s, n);
}

/* ---- bounded input cursor ---- */

typedef struct Cur {
    const uint8_t *p;
    size_t left;
    bool bad;
} Cur;

static const uint8_t *cur_take(Cur *c, size_t n) {
    if (c->bad || n > c->left) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *r = c->p;
    c->p += n;
    c->left -= n;
    return r;
}
static uint8_t cur_u8(Cur *c) {
    const uint8_t *r = cur_take(c, 1);
    return r ? r[0] : 0;
}
static uint16_t cur_u16(Cur *c) {
    const uint8_t *r = cur_take(c, 2);
    return r ? pr_get_u16(r) : 0;
}
static uint32_t cur_u32(Cur *c) {
    const uint8_t *r = cur_take(c, 4);
    return r ? pr_get_u32(r) : 0;
}
static uint64_t cur_u64(Cur *c) {
    const uint8_t *r = cur_take(c, 8);
    return r ? pr_get_u64(r) : 0;
}
static void cur_id(Cur *c, PrId *id) {
    const uint8_t *r = cur_take(c, PR_ID_LEN);
    if (r) memcpy(id->b, r, PR_ID_LEN);
    else memset(id->b, 0, PR_ID_LEN);
}
/* A length-prefixed (u16) string, copied out NUL-terminated; rejects embedded NULs. */
static char *cur_str(Cur *c) {
    uint16_t n = cur_u16(c);
    const uint8_t *r = cur_take(c, n);
    if (!r) return NULL;
    if (memchr(r, 0, n)) {
        c->bad = true;
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (!s) {
        c->bad = true;
        return NULL;
    }
    memcpy(s, r, n);
    s[n] = 0;
    return s;
}

/* ---- sealing helpers ---- */

static int seal_buf(const PrKeys *keys, const char *aad, const Buf *b, void **ret, size_t *ret_len) {
    if (b->err) return b->err;
    size_t n = b->len + PR_SEAL_OVERHEAD;
    uint8_t *out = malloc(n);
    if (!out) return -ENOMEM;
    int r = pr_seal(keys, aad, strlen(aad), b->p, b->len, out);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    *ret_len = n;
    return 0;
}

static int unseal_alloc(const PrKeys *keys, const char *aad, const void *data, size_t len, uint8_t **ret,
                        size_t *ret_len) {
    if (len < PR_SEAL_OVERHEAD) return -EBADMSG;
    uint8_t *out = malloc(len - PR_SEAL_OVERHEAD + 1);
    if (!out) return -ENOMEM;
    int r = pr_unseal(keys, aad, strlen(aad), data, len, out, ret_len);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    return 0;
}

/* ---- blobs ---- */

/* Per-thread state kept from blob to blob: zstd contexts and the buffers that hold a compressed
 * payload (one for encoding, one for decoding: a thread may decode a blob while the payload it
 * prepared is still waiting to be sealed). */
typedef struct Scratch {
    uint8_t *p;
    size_t cap;
} Scratch;

static pthread_key_t zkey, fast_key, skey, ekey, sample_key;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;
static void zfree(void *p) { ZSTD_freeCCtx(p); }
static void sfree(void *p) {
    Scratch *s = p;
    free(s->p);
    free(s);
}
static void zinit(void) {
    (void)pthread_key_create(&zkey, zfree);
    (void)pthread_key_create(&sample_key, zfree);
    (void)pthread_key_create(&fast_key, zfree);
    (void)pthread_key_create(&skey, sfree);
    (void)pthread_key_create(&ekey, sfree);
}

/* keys by address: they are created by the first call */
static ZSTD_CCtx *thread_cctx(const pthread_key_t *key, int level) {
    pthread_once(&zonce, zinit);
    ZSTD_CCtx *c = pthread_getspecific(*key);
    if (!c) {
        c = ZSTD_createCCtx();
        if (!c) return NULL;
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
        if (pthread_setspecific(*key, c) != 0) {
            ZSTD_freeCCtx(c);
            return NULL;
        }
    }
    return c;
}

static uint8_t *thread_scratch_of(const pthread_key_t *key, size_t n) {
    pthread_once(&zonce, zinit);
    Scratch *s = pthread_getspecific(*key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(*key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->cap < n) {
        free(s->p);
        s->p = malloc(n);
        s->cap = s->p ? n : 0;
        pr_mem_advise_huge(s->p, s->cap);
    }
    return s->p;
}

static uint8_t *thread_scratch(size_t n) { return thread_scratch_of(&skey, n); }

/* How a blob is compressed, decided from a sample: a few spots of 4 KiB compressed at zstd level 1
 * (a small fraction of the cost of compressing the blob). Spots are spread over the blob so that one
 * odd region does not decide for all of it. */
#define SAMPLE_SPOT 4096u
#define SAMPLE_GAIN_PCT 3     /* a sample that shrinks by less is incompressible */
#define MATCHLESS_PCT 97      /* a sample within this much of its order-0 entropy has no matches */
#define RAW_SKIP_MAX (256u << 10) /* only blobs shorter than this are stored raw on the sample's word */

typedef enum { STORE_RAW, STORE_FAST, STORE_FULL } Plan;

/* The sample's order-0 entropy in bytes: what entropy coding alone would make of it. */
static double entropy_bytes(const unsigned hist[256], size_t n) {
    double bits = 0;
    for (int k = 0; k < 256; k++)
        if (hist[k]) bits -= hist[k] * log2((double)hist[k] / (double)n);
    return bits / 8;
}

/* - Incompressible (random bytes: media, archives, encrypted files): zstd level 3 runs about as
 *   long on them as on text for nothing. A small blob is one file, all of a kind, so the sample
 *   stands for it and it is stored raw; a larger chunk may mix kinds (a tar of small .gz files and
 *   their headers), so it still goes through zstd, at level 1.
 * - Matchless (level 1 does no better than order-0 entropy, e.g. symbols drawn independently):
 *   level 3 can only gain by finding matches, and on such data it chases short chance matches at a
 *   fifth of level 1's speed for a worse result: level 1.
 * - Anything else: level 3. On real data (source, man pages, binaries, tars of .gz files) this
 *   leaves the ratio within 0.5 % of level 3 on every blob. */
static Plan plan_for(const uint8_t *data, size_t len) {
    if (len <= PR_BLOB_SAMPLE_MIN) return STORE_FULL; /* the sample would be most of the work */
    ZSTD_CCtx *c = thread_cctx(&sample_key, 1);
    if (!c) return STORE_FULL;
    unsigned spots = len >= 256u * SAMPLE_SPOT ? 4 : len >= 8u * SAMPLE_SPOT ? 2 : 1;
    uint8_t out[ZSTD_COMPRESSBOUND(SAMPLE_SPOT)];
    unsigned hist[256] = {0};
    size_t in_total = 0, out_total = 0;
    for (unsigned i = 0; i < spots; i++) {
        size_t off = (len - SAMPLE_SPOT) / (spots > 1 ? spots - 1 : 1) * i;
        size_t n = ZSTD_compress2(c, out, sizeof out, data + off, SAMPLE_SPOT);
        if (ZSTD_isError(n)) return STORE_FULL;
        for (size_t k = 0; k < SAMPLE_SPOT; k++) hist[data[off + k]]++;
        in_total += SAMPLE_SPOT;
        out_total += n;
    }
    bool shrinks = out_total * 100 < in_total * (100 - SAMPLE_GAIN_PCT);
    if (!shrinks && len < RAW_SKIP_MAX) return STORE_RAW;
    if ((double)out_total * 100 >= entropy_bytes(hist, in_total) * MATCHLESS_PCT) return STORE_FAST;
    return STORE_FULL;
}

int pr_blob_prepare(const void *data, size_t len, PrBlobPlain *ret) {
    if (len > PR_MAX_BLOB) return -EFBIG;
    *ret = (PrBlobPlain){0, data, len};
    Plan plan = len ? plan_for(data, len) : STORE_RAW;
    if (plan == STORE_RAW) return 0;
    ZSTD_CCtx *cctx = plan == STORE_FAST ? thread_cctx(&fast_key, 1) : thread_cctx(&zkey, 3);
    if (!cctx) return -ENOMEM;
    size_t bound = ZSTD_compressBound(len);
    uint8_t *buf = thread_scratch_of(&ekey, bound);
    if (!buf) return -ENOMEM;
    size_t clen = ZSTD_compress2(cctx, buf, bound, data, len);
    if (!ZSTD_isError(clen) && clen < len) *ret = (PrBlobPlain){1, buf, clen};
    return 0;
}

int pr_blob_seal(const PrKeys *keys, const PrId *id, const PrBlobPlain *p, uint8_t *out) {
    return pr_seal_parts(keys, id->b, PR_ID_LEN, &p->flag, 1, p->payload, p->len, out);
}

int pr_blob_encode(const PrKeys *keys, const PrId *id, const void *data, size_t len, void **ret, size_t *ret_len) {
    PrBlobPlain p;
    int r = pr_blob_prepare(data, len, &p);
    if (r < 0) return r;
    size_t n = pr_blob_stored_len(&p);
    uint8_t *out = malloc(n);
    if (!out) return -ENOMEM;
    r = pr_blob_seal(keys, id, &p, out);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    *ret_len = n;
    return 0;
}

static pthread_key_t dkey;
static pthread_once_t donce = PTHREAD_ONCE_INIT;
static void dfree(void *p) { ZSTD_freeDCtx(p); }
static void dinit(void) { (void)pthread_key_create(&dkey, dfree); }

static ZSTD_DCtx *thread_dctx(void) {
    pthread_once(&donce, dinit);
    ZSTD_DCtx *d = pthread_getspecific(dkey);
    if (!d) {
        d = ZSTD_createDCtx();
        if (!d) return NULL;
        if (pthread_setspecific(dkey, d) != 0) {
            ZSTD_freeDCtx(d);
            return NULL;
        }
    }
    return d;
}

typedef struct DecodeDest {
    uint8_t *out;
    uint32_t raw_len;
    uint8_t *compressed; /* the thread's scratch buffer, when the blob is compressed */
} DecodeDest;

static int pick_dest(const uint8_t *head, size_t rest_len, uint8_t **ret_out, void *userdata) {
    DecodeDest *d = userdata;
    if (head[0] == 0) { /* stored as is: decrypt straight into the destination */
        if (rest_len != d->raw_len) return -EBADMSG;
        *ret_out = d->out;
        return 0;
    }
    if (head[0] != 1) return -EBADMSG;
    d->compressed = *ret_out = thread_scratch(rest_len ? rest_len : 1);
    return *ret_out ? 0 : -ENOMEM;
}

int pr_blob_decode_into(const PrKeys *keys, const PrId *id, const void *stored, size_t len, uint32_t raw_len,
                        void *out) {
    if (len < PR_SEAL_OVERHEAD + 1 || len > PR_MAX_BLOB + 1 + PR_SEAL_OVERHEAD || raw_len > PR_MAX_BLOB)
        return -EBADMSG;
    DecodeDest d = {.out = out, .raw_len = raw_len};
    uint8_t head;
    int r = pr_unseal_split(keys, id->b, PR_ID_LEN, stored, len, &head, 1, pick_dest, &d);
    if (r < 0) {
        if (raw_len) memset(out, 0, raw_len);
        return r;
    }
    if (!d.compressed) return 0;
    /* authenticated: now it may be decompressed */
    size_t clen = len - PR_SEAL_OVERHEAD - 1;
    const uint8_t *c = d.compressed;
    ZSTD_DCtx *z = thread_dctx();
    if (!z) return -ENOMEM;
    unsigned long long fs = ZSTD_getFrameContentSize(c, clen);
    size_t n = fs == raw_len ? ZSTD_decompressDCtx(z, out, raw_len ? raw_len : 1, c, clen) : 0;
    if (fs != raw_len || ZSTD_isError(n) || n != raw_len) {
        if (raw_len) memset(out, 0, raw_len);
        return -EBADMSG;
    }
    return 0;
}

int pr_blob_decode(const PrKeys *keys, const PrId *id, const void *stored, size_t len, uint32_t raw_len, void **ret) {
    _cleanup_free_ uint8_t *out = malloc(raw_len ? raw_len : 1);
    if (!out) return -ENOMEM;
    int r = pr_blob_decode_into(keys, id, stored, len, raw_len, out);
    if (r < 0) return r;
    *ret = TAKE_PTR(out);
    return 0;
}

/* ---- blob refs ---- */

#define BLOBREF_LEN (PR_ID_LEN + 1 + 4 + 4 + 4)

static void put_ref(Buf *b, const PrBlobRef *r) {
    buf_bytes(b, r->id.b, PR_ID_LEN);
    buf_u8(b, r->type);
    buf_u32(b, r->offset);
    buf_u32(b, r->length);
    buf_u32(b, r->raw_length);
}

static void get_ref(Cur *c, PrBlobRef *r) {
    cur_id(c, &r->id);
    r->type = cur_u8(c);
    r->offset = cur_u32(c);
    r->length = cur_u32(c);
    r->raw_length = cur_u32(c);
    if (r->type > PR_BLOB_TREE || r->length > PR_MAX_BLOB + 1 + PR_SEAL_OVERHEAD || r->raw_length > PR_MAX_BLOB ||
        r->length < PR_SEAL_OVERHEAD + 1)
        c->bad = true;
}

static const char TRAILER_AAD[] = "prafs pack trailer v1";
static const char INDEX_AAD[] = "prafs index v1";
static const char SNAPSHOT_AAD[] = "prafs snapshot v1";

int pr_pack_trailer_encode(const PrKeys *keys, const PrBlobRef *blobs, uint32_t n, void **ret, size_t *ret_len) {
    _cleanup_free_ uint8_t *p = NULL;
    Buf b = {0};
    buf_u32(&b, n);
    for (uint32_t i = 0; i < n; i++) put_ref(&b, &blobs[i]);
    p = b.p;
    void *sealed;
    size_t slen;
    int r = seal_buf(keys, TRAILER_AAD, &b, &sealed, &slen);
    if (r < 0) return r;
    uint8_t *out = realloc(sealed, slen + 4);
    if (!out) {
        free(sealed);
        return -ENOMEM;
    }
    pr_put_u32(out + slen, (uint32_t)slen);
    *ret = out;
    *ret_len = slen + 4;
    return 0;
}

int pr_pack_trailer_decode(const PrKeys *keys, const void *tail, size_t tail_len, uint64_t pack_len,
                           PrBlobRef **ret, uint32_t *ret_n, size_t *ret_need) {
    const uint8_t *t = tail;
    if (tail_len < 4 || pack_len < 4 || tail_len > pack_len) return -EBADMSG;
    uint32_t slen = pr_get_u32(t + tail_len - 4);
    if (slen < PR_SEAL_OVERHEAD + 4 || (uint64_t)slen + 4 > pack_len) return -EBADMSG;
    if ((size_t)slen + 4 > tail_len) {
        if (ret_need) *ret_need = (size_t)slen + 4;
        return -EAGAIN;
    }
    _cleanup_free_ uint8_t *plain = NULL;
    size_t plen;
    int r = unseal_alloc(keys, TRAILER_AAD, t + tail_len - 4 - slen, slen, &plain, &plen);
    if (r < 0) return r;
    Cur c = {plain, plen, false};
    uint32_t n = cur_u32(&c);
    if (c.bad || (uint64_t)n * BLOBREF_LEN != c.left) return -EBADMSG;
    uint64_t body_end = pack_len - 4 - slen;
    _cleanup_free_ PrBlobRef *refs = calloc(n ? n : 1, sizeof *refs);
    if (!refs) return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        get_ref(&c, &refs[i]);
        if (c.bad || (uint64_t)refs[i].offset + refs[i].length > body_end) return -EBADMSG;
    }
    *ret = TAKE_PTR(refs);
    *ret_n = n;
    return 0;
}

/* ---- index files ---- */

int pr_index_file_encode(const PrKeys *keys, const PrIndexPack *packs, uint32_t npacks, void **ret, size_t *ret_len) {
    Buf b = {0};
    buf_u32(&b, PR_FORMAT_VERSION);
    buf_u32(&b, npacks);
    for (uint32_t i = 0; i < npacks; i++) {
        buf_bytes(&b, packs[i].pack.b, PR_ID_LEN);
        buf_u32(&b, packs[i].n);
        for (uint32_t j = 0; j < packs[i].n; j++) put_ref(&b, &packs[i].blobs[j]);
    }
    int r = seal_buf(keys, INDEX_AAD, &b, ret, ret_len);
    free(b.p);
    return r;
}

int pr_index_file_decode(const PrKeys *keys, const void *data, size_t len,
                         int (*fn)(const PrIndexPack *p, void *userdata), void *userdata) {
    _cleanup_free_ uint8_t *plain = NULL;
    size_t plen;
    int r = unseal_alloc(keys, INDEX_AAD, data, len, &plain, &plen);
    if (r < 0) return r;
    Cur c = {plain, plen, false};
    uint32_t version = cur_u32(&c);
    uint32_t npacks = cur_u32(&c);
    if (c.bad || version != PR_FORMAT_VERSION) return -EBADMSG;
    /* each pack needs at least 36 bytes: bounds the count before any allocation */
    if ((uint64_t)npacks * (PR_ID_LEN + 4) > c.left) return -EBADMSG;
    for (uint32_t i = 0; i < npacks; i++) {
        PrIndexPack p = {0};
        cur_id(&c, &p.pack);
        p.n = cur_u32(&c);
        if (c.bad || (uint64_t)p.n * BLOBREF_LEN > c.left) return -EBADMSG;
        _cleanup_free_ PrBlobRef *refs = calloc(p.n ? p.n : 1, sizeof *refs);
        if (!refs) return -ENOMEM;
        for (uint32_t j = 0; j < p.n; j++) get_ref(&c, &refs[j]);
        if (c.bad) return -EBADMSG;
        p.blobs = refs;
        r = fn(&p, userdata);
        if (r < 0) return r;
    }
    return c.left == 0 ? 0 : -EBADMSG;
}

/* ---- trees ---- */

void pr_node_clear(PrNode *n) {
    if (!n) return;
    free(n->name);
    free(n->target);
    free(n->chunks);
    for (uint32_t i = 0; i < n->nxattrs; i++) {
        free(n->xattrs[i].name);
        free(n->xattrs[i].value);
    }
    free(n->xattrs);
    memset(n, 0, sizeof *n);
}

void pr_tree_free(PrTree *t) {
    if (!t) return;
    for (uint32_t i = 0; i < t->n; i++) pr_node_clear(&t->nodes[i]);
    free(t->nodes);
    free(t);
}

int pr_node_copy(const PrNode *src, PrNode *ret) {
    PrNode n = *src;
    n.name = NULL;
    n.target = NULL;
    n.chunks = NULL;
    n.xattrs = NULL;
    n.nxattrs = 0;
    n.nchunks = 0;
    if (src->name && !(n.name = strdup(src->name))) goto oom;
    if (src->target && !(n.target = strdup(src->target))) goto oom;
    if (src->nchunks) {
        n.chunks = malloc(sizeof *n.chunks * src->nchunks);
        if (!n.chunks) goto oom;
        memcpy(n.chunks, src->chunks, sizeof *n.chunks * src->nchunks);
        n.nchunks = src->nchunks;
    }
    if (pr_xattrs_copy(src->xattrs, src->nxattrs, &n.xattrs, &n.nxattrs) < 0) goto oom;
    *ret = n;
    return 0;
oom:
    pr_node_clear(&n);
    return -ENOMEM;
}

int pr_xattrs_copy(const PrXattr *src, uint32_t n, PrXattr **ret, uint32_t *ret_n) {
    *ret = NULL;
    *ret_n = 0;
    if (!n) return 0;
    PrXattr *v = calloc(n, sizeof *v);
    if (!v) return -ENOMEM;
    *ret = v;
    for (uint32_t i = 0; i < n; i++) {
        v[i].name = strdup(src[i].name);
        v[i].value = malloc(src[i].len ? src[i].len : 1);
        *ret_n = i + 1; /* what the caller frees on failure */
        if (!v[i].name || !v[i].value) return -ENOMEM;
        if (src[i].len) memcpy(v[i].value, src[i].value, src[i].len);
        v[i].len = src[i].len;
    }
    return 0;
}

static const uint8_t TREE_MAGIC[4] = {'P', 'R', 'T', 'R'};

static bool name_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strchr(s, '/')) return false;
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return false;
    return true;
}

int pr_tree_encode(const PrTree *t, void **ret, size_t *ret_len) {
    Buf b = {0};
    buf_bytes(&b, TREE_MAGIC, 4);
    buf_u8(&b, PR_FORMAT_VERSION);
    buf_u32(&b, t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        const PrNode *n = &t->nodes[i];
        if (!name_valid(n->name) || (i > 0 && strcmp(t->nodes[i - 1].name, n->name) >= 0)) {
            free(b.p);
            return -EINVAL;
        }
        buf_str(&b, n->name);
        buf_u8(&b, n->type);
        buf_u32(&b, n->mode);
        buf_u32(&b, n->uid);
        buf_u32(&b, n->gid);
        buf_u64(&b, (uint64_t)n->mtime_sec);
        buf_u32(&b, n->mtime_nsec);
        buf_u64(&b, (uint64_t)n->ctime_sec);
        buf_u32(&b, n->ctime_nsec);
        buf_u64(&b, n->size);
        buf_u64(&b, n->inode);
        buf_u64(&b, n->nlink);
        buf_u64(&b, n->link_group);
        buf_u32(&b, n->nxattrs);
        for (uint32_t j = 0; j < n->nxattrs; j++) {
            buf_str(&b, n->xattrs[j].name);
            buf_u32(&b, n->xattrs[j].len);
            buf_bytes(&b, n->xattrs[j].value, n->xattrs[j].len);
        }
        switch (n->type) {
        case PR_NODE_FILE:
            buf_u32(&b, n->nchunks);
            for (uint32_t j = 0; j < n->nchunks; j++) {
                buf_bytes(&b, n->chunks[j].id.b, PR_ID_LEN);
                buf_u32(&b, n->chunks[j].length);
            }
            break;
        case PR_NODE_DIR:
            buf_bytes(&b, n->subtree.b, PR_ID_LEN);
            break;
        case PR_NODE_SYMLINK:
            buf_str(&b, n->target);
            break;
        case PR_NODE_CHR:
        case PR_NODE_BLK:
            buf_u64(&b, n->rdev);
            break;
        default:
            break;
        }
    }
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *ret = b.p;
    *ret_len = b.len;
    return 0;
}

int pr_tree_decode(const void *data, size_t len, PrTree **ret) {
    Cur c = {data, len, false};
    const uint8_t *magic = cur_take(&c, 4);
    uint8_t version = cur_u8(&c);
    uint32_t count = cur_u32(&c);
    if (c.bad || memcmp(magic, TREE_MAGIC, 4) != 0 || version != PR_FORMAT_VERSION) return -EBADMSG;
    /* the smallest entry is well over 64 bytes: bounds the count before allocating */
    if ((uint64_t)count * 64 > c.left) return -EBADMSG;
    _cleanup_(pr_tree_freep) PrTree *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->nodes = calloc(count ? count : 1, sizeof *t->nodes);
    if (!t->nodes) return -ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        PrNode *n = &t->nodes[i];
        t->n = i + 1;
        n->name = cur_str(&c);
        if (!n->name || !name_valid(n->name) || (i > 0 && strcmp(t->nodes[i - 1].name, n->name) >= 0))
            return -EBADMSG;
        n->type = cur_u8(&c);
        n->mode = cur_u32(&c);
        n->uid = cur_u32(&c);
        n->gid = cur_u32(&c);
        n->mtime_sec = (int64_t)cur_u64(&c);
        n->mtime_nsec = cur_u32(&c);
        n->ctime_sec = (int64_t)cur_u64(&c);
        n->ctime_nsec = cur_u32(&c);
        n->size = cur_u64(&c);
        n->inode = cur_u64(&c);
        n->nlink = cur_u64(&c);
        n->link_group = cur_u64(&c);
        uint32_t nx = cur_u32(&c);
        if (c.bad || n->type < PR_NODE_FILE || n->type > PR_NODE_SOCK || n->mode > 07777 ||
            n->mtime_nsec >= 1000000000u || n->ctime_nsec >= 1000000000u || (uint64_t)nx * 6 > c.left)
            return -EBADMSG;
        if (nx) {
            n->xattrs = calloc(nx, sizeof *n->xattrs);
            if (!n->xattrs) return -ENOMEM;
        }
        for (uint32_t j = 0; j < nx; j++) {
            PrXattr *x = &n->xattrs[j];
            n->nxattrs = j + 1;
            x->name = cur_str(&c);
            x->len = cur_u32(&c);
            if (!x->name || !*x->name || x->len > PR_MAX_XATTR_VALUE) return -EBADMSG;
            if (j > 0 && strcmp(n->xattrs[j - 1].name, x->name) >= 0) return -EBADMSG;
            const uint8_t *v = cur_take(&c, x->len);
            if (!v) return -EBADMSG;
            x->value = malloc(x->len ? x->len : 1);
            if (!x->value) return -ENOMEM;
            if (x->len) memcpy(x->value, v, x->len);
        }
        switch (n->type) {
        case PR_NODE_FILE: {
            uint32_t nc = cur_u32(&c);
            if (c.bad || (uint64_t)nc * (PR_ID_LEN + 4) > c.left) return -EBADMSG;
            if (nc) {
                n->chunks = malloc(sizeof *n->chunks * nc);
                if (!n->chunks) return -ENOMEM;
            }
            uint64_t total = 0;
            for (uint32_t j = 0; j < nc; j++) {
                cur_id(&c, &n->chunks[j].id);
                n->chunks[j].length = cur_u32(&c);
                if (n->chunks[j].length == 0) return -EBADMSG;
                if (!pr_id_is_zero(&n->chunks[j].id) && n->chunks[j].length > PR_MAX_BLOB) return -EBADMSG;
                total += n->chunks[j].length;
            }
            n->nchunks = nc;
            if (c.bad || total != n->size) return -EBADMSG;
            break;
        }
        case PR_NODE_DIR:
            cur_id(&c, &n->subtree);
            break;
        case PR_NODE_SYMLINK:
            n->target = cur_str(&c);
            if (!n->target || !*n->target || strlen(n->target) != n->size) return -EBADMSG;
            break;
        case PR_NODE_CHR:
        case PR_NODE_BLK:
            n->rdev = cur_u64(&c);
            break;
        default:
            break;
        }
        if (c.bad) return -EBADMSG;
    }
    if (c.left != 0) return -EBADMSG;
    *ret = TAKE_PTR(t);
    return 0;
}

const PrNode *pr_tree_find(const PrTree *t, const char *name) {
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->nodes[mid].name, name);
        if (c == 0) return &t->nodes[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- snapshots ---- */

static const uint8_t SNAP_MAGIC[4] = {'P', 'R', 'S', 'N'};

void pr_snapshot_free(PrSnapshot *s) {
    if (!s) return;
    free(s->host);
    for (uint32_t i = 0; i < s->ntags; i++) free(s->tags[i]);
    free(s->tags);
    for (uint32_t i = 0; i < s->nvolumes; i++) free(s->volumes[i].name);
    free(s->volumes);
    free(s->program_version);
    free(s);
}

int pr_snapshot_encode(const PrKeys *keys, const PrSnapshot *s, void **ret, size_t *ret_len) {
    Buf b = {0};
    buf_bytes(&b, SNAP_MAGIC, 4);
    buf_u8(&b, PR_FORMAT_VERSION);
    buf_u64(&b, (uint64_t)s->time_sec);
    buf_u32(&b, s->time_nsec);
    buf_str(&b, s->host);
    buf_u32(&b, s->ntags);
    for (uint32_t i = 0; i < s->ntags; i++) buf_str(&b, s->tags[i]);
    buf_u8(&b, s->has_parent);
    buf_bytes(&b, s->parent.b, PR_ID_LEN);
    buf_bytes(&b, s->root.b, PR_ID_LEN);
    buf_u32(&b, s->nvolumes);
    for (uint32_t i = 0; i < s->nvolumes; i++) {
        buf_str(&b, s->volumes[i].name);
        buf_u64(&b, s->volumes[i].files);
        buf_u64(&b, s->volumes[i].dirs);
        buf_u64(&b, s->volumes[i].bytes);
    }
    buf_u64(&b, s->files);
    buf_u64(&b, s->dirs);
    buf_u64(&b, s->bytes_read);
    buf_u64(&b, s->bytes_new);
    buf_u64(&b, s->bytes_uploaded);
    buf_u64(&b, s->duration_ms);
    buf_str(&b, s->program_version);
    buf_u64(&b, s->acl_entries);
    buf_u64(&b, s->xattr_entries);
    int r = seal_buf(keys, SNAPSHOT_AAD, &b, ret, ret_len);
    free(b.p);
    return r;
}

int pr_snapshot_decode(const PrKeys *keys, const void *data, size_t len, PrSnapshot **ret) {
    _cleanup_free_ uint8_t *plain = NULL;
    size_t plen;
    int r = unseal_alloc(keys, SNAPSHOT_AAD, data, len, &plain, &plen);
    if (r < 0) return r;
    Cur c = {plain, plen, false};
    const uint8_t *magic = cur_take(&c, 4);
    uint8_t version = cur_u8(&c);
    if (c.bad || memcmp(magic, SNAP_MAGIC, 4) != 0 || version != PR_FORMAT_VERSION) return -EBADMSG;
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->time_sec = (int64_t)cur_u64(&c);
    s->time_nsec = cur_u32(&c);
    s->host = cur_str(&c);
    uint32_t nt = cur_u32(&c);
    if (c.bad || !s->host || s->time_nsec >= 1000000000u || (uint64_t)nt * 2 > c.left) return -EBADMSG;
    if (nt) {
        s->tags = calloc(nt, sizeof *s->tags);
        if (!s->tags) return -ENOMEM;
    }
    for (uint32_t i = 0; i < nt; i++) {
        s->ntags = i + 1;
        if (!(s->tags[i] = cur_str(&c))) return -EBADMSG;
    }
    s->has_parent = cur_u8(&c) != 0;
    cur_id(&c, &s->parent);
    cur_id(&c, &s->root);
    uint32_t nv = cur_u32(&c);
    if (c.bad || (uint64_t)nv * 26 > c.left) return -EBADMSG;
    if (nv) {
        s->volumes = calloc(nv, sizeof *s->volumes);
        if (!s->volumes) return -ENOMEM;
    }
    for (uint32_t i = 0; i < nv; i++) {
        s->nvolumes = i + 1;
        s->volumes[i].name = cur_str(&c);
        s->volumes[i].files = cur_u64(&c);
        s->volumes[i].dirs = cur_u64(&c);
        s->volumes[i].bytes = cur_u64(&c);
        if (!s->volumes[i].name) return -EBADMSG;
    }
    s->files = cur_u64(&c);
    s->dirs = cur_u64(&c);
    s->bytes_read = cur_u64(&c);
    s->bytes_new = cur_u64(&c);
    s->bytes_uploaded = cur_u64(&c);
    s->duration_ms = cur_u64(&c);
    s->program_version = cur_str(&c);
    /* absent in the first manifests: unknown */
    s->acl_entries = s->xattr_entries = PR_ACL_UNKNOWN;
    if (c.left != 0) {
        s->acl_entries = cur_u64(&c);
        s->xattr_entries = cur_u64(&c);
    }
    if (c.bad || !s->program_version || c.left != 0) return -EBADMSG;
    pr_sha256(data, len, s->id.b);
    *ret = TAKE_PTR(s);
    return 0;
}
