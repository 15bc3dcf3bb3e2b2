/* SPDX-License-Identifier: MIT */
/* Encodings of the repository format: blobs, pack trailers, index files, trees, manifests,
 * including hostile lengths and counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/format.h"
#include "cache/util.h"

static PrKeys keys;

static int setup(void **state) {
    (void)state;
    return pr_keys_generate(&keys);
}

static void make_id(PrId *id, uint8_t v) {
    memset(id->b, 0, sizeof id->b);
    id->b[0] = v;
    id->b[31] = (uint8_t)(v ^ 0x5a);
}

static void test_blob_roundtrip(void **state) {
    (void)state;
    size_t sizes[] = {0, 1, 100, 1 << 20};
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        size_t n = sizes[i];
        uint8_t *data = malloc(n ? n : 1);
        for (size_t j = 0; j < n; j++) data[j] = (uint8_t)(j % 251 < 128 ? 'a' : j * 7);
        PrId id;
        pr_blob_id(&keys, data, n, &id);
        void *stored;
        size_t slen;
        assert_int_equal(pr_blob_encode(&keys, &id, data, n, &stored, &slen), 0);
        void *back;
        assert_int_equal(pr_blob_decode(&keys, &id, stored, slen, (uint32_t)n, &back), 0);
        assert_memory_equal(back, data, n);
        free(back);
        /* wrong raw length, wrong id, flipped byte: all refused */
        assert_int_equal(pr_blob_decode(&keys, &id, stored, slen, (uint32_t)n + 1, &back), -EBADMSG);
        PrId other = id;
        other.b[5] ^= 1;
        assert_int_equal(pr_blob_decode(&keys, &other, stored, slen, (uint32_t)n, &back), -EBADMSG);
        ((uint8_t *)stored)[slen / 2] ^= 0x10;
        assert_int_equal(pr_blob_decode(&keys, &id, stored, slen, (uint32_t)n, &back), -EBADMSG);
        free(stored);
        free(data);
    }
}

static void test_blob_compresses(void **state) {
    (void)state;
    size_t n = 1 << 20;
    uint8_t *data = calloc(1, n);
    PrId id;
    pr_blob_id(&keys, data, n, &id);
    void *stored;
    size_t slen;
    assert_int_equal(pr_blob_encode(&keys, &id, data, n, &stored, &slen), 0);
    assert_true(slen < 4096);
    free(stored);
    free(data);
}

/* Prepares, seals and decodes one blob: returns its compression flag after checking the round trip
 * (through pr_blob_prepare/pr_blob_seal as the writer uses them, and through pr_blob_encode). */
static uint8_t blob_flag_and_roundtrip(const uint8_t *data, size_t n) {
    PrId id;
    pr_blob_id(&keys, data, n, &id);
    PrBlobPlain p;
    assert_int_equal(pr_blob_prepare(data, n, &p), 0);
    if (p.flag == 0) {
        assert_ptr_equal(p.payload, data); /* stored as is: not even copied */
        assert_int_equal(p.len, n);
    } else {
        assert_int_equal(p.flag, 1);
        assert_true(p.len < n);
    }
    size_t slen = pr_blob_stored_len(&p);
    uint8_t *stored = malloc(slen);
    assert_int_equal(pr_blob_seal(&keys, &id, &p, stored), 0);
    void *back;
    assert_int_equal(pr_blob_decode(&keys, &id, stored, slen, (uint32_t)n, &back), 0);
    assert_memory_equal(back, data, n);
    free(back);
    free(stored);
    void *enc;
    assert_int_equal(pr_blob_encode(&keys, &id, data, n, &enc, &slen), 0);
    assert_int_equal(slen, pr_blob_stored_len(&p));
    assert_int_equal(pr_blob_decode(&keys, &id, enc, slen, (uint32_t)n, &back), 0);
    assert_memory_equal(back, data, n);
    free(back);
    free(enc);
    return p.flag;
}

static void fill_text(uint8_t *d, size_t n) {
    static const char words[] = "the quick brown fox jumps over the lazy dog, again and again; ";
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        d[i] = (x & 7) ? (uint8_t)words[i % (sizeof words - 1)] : (uint8_t)('a' + x % 26);
    }
}

/* Incompressible blobs are stored raw without zstd level 3 having to find out, compressible ones
 * are compressed, and every one comes back exact. */
static void test_blob_incompressible_skipped(void **state) {
    (void)state;
    size_t sizes[] = {100, PR_BLOB_SAMPLE_MIN, PR_BLOB_SAMPLE_MIN + 1, 20000, 64 << 10, 1 << 20, 4 << 20};
    for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
        size_t n = sizes[i];
        uint8_t *d = malloc(n);
        assert_int_equal(pr_random(d, n), 0);
        assert_int_equal(blob_flag_and_roundtrip(d, n), 0);
        fill_text(d, n);
        assert_int_equal(blob_flag_and_roundtrip(d, n), 1);
        free(d);
    }

    /* The sample decides, not level 3: 12 KiB whose first 4 KiB (the one spot a blob this small
     * is sampled at) are random and the rest zeros is stored raw, though zstd would shrink it.
     * This pins that the sample is taken (without it the blob would be compressed). */
    size_t n = 12 << 10;
    uint8_t *d = calloc(1, n);
    assert_int_equal(pr_random(d, 4096), 0);
    assert_int_equal(blob_flag_and_roundtrip(d, n), 0);
    free(d);

    /* Spots are spread over a large chunk: a random header does not keep the text after it from
     * being compressed. */
    n = 1 << 20;
    d = malloc(n);
    fill_text(d, n);
    assert_int_equal(pr_random(d, 64 << 10), 0);
    assert_int_equal(blob_flag_and_roundtrip(d, n), 1);
    /* and a chunk that is mostly random with text at one spot is still compressed: the sample as a
     * whole shrinks enough */
    assert_int_equal(pr_random(d, n), 0);
    fill_text(d + n - (64 << 10), 64 << 10);
    assert_int_equal(blob_flag_and_roundtrip(d, n), 1);

    /* From 256 KiB on (a chunk of a large file, which may mix kinds) an incompressible sample does
     * not store the blob raw: 1 MiB of zeros with random bytes exactly at the four sampled spots is
     * still compressed. */
    memset(d, 0, n);
    for (size_t i = 0; i < 4; i++) assert_int_equal(pr_random(d + (n - 4096) / 3 * i, 4096), 0);
    assert_int_equal(blob_flag_and_roundtrip(d, n), 1);

    /* Symbols drawn independently (no matches, only entropy coding helps: the benchmark's letter
     * text) are compressed, at any size. */
    static const char letters[] = "eeeeeeetttttaaaaoooiiinnnsshhrrdl ,.\n"; /* by frequency */
    uint64_t x = 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        d[i] = (uint8_t)letters[(x * 0x2545f4914f6cdd1dull >> 33) % (sizeof letters - 1)];
    }
    for (size_t len = 1000; len <= n; len *= 8) assert_int_equal(blob_flag_and_roundtrip(d, len), 1);
    free(d);
}

/* decode_into: a stored-raw blob (random bytes) and a compressed one (text) land in the caller's
 * buffer; a blob that does not authenticate leaves it zeroed, never half-decrypted. */
static void test_blob_decode_into(void **state) {
    (void)state;
    size_t n = 300000;
    uint8_t *kinds[2] = {malloc(n), malloc(n)};
    assert_int_equal(pr_random(kinds[0], n), 0);
    for (size_t j = 0; j < n; j++) kinds[1][j] = "the quick brown fox "[j % 20];
    for (int k = 0; k < 2; k++) {
        uint8_t *data = kinds[k];
        PrId id;
        pr_blob_id(&keys, data, n, &id);
        void *stored;
        size_t slen;
        assert_int_equal(pr_blob_encode(&keys, &id, data, n, &stored, &slen), 0);
        if (k == 0) assert_true(slen > n);  /* kept raw */
        else assert_true(slen < n / 10);    /* compressed */
        uint8_t *out = malloc(n);
        memset(out, 0xee, n);
        assert_int_equal(pr_blob_decode_into(&keys, &id, stored, slen, (uint32_t)n, out), 0);
        assert_memory_equal(out, data, n);
        assert_int_equal(pr_blob_decode_into(&keys, &id, stored, slen, (uint32_t)n - 1, out), -EBADMSG);
        ((uint8_t *)stored)[slen - 3] ^= 0x01; /* in the tag */
        memset(out, 0xee, n);
        assert_int_equal(pr_blob_decode_into(&keys, &id, stored, slen, (uint32_t)n, out), -EBADMSG);
        for (size_t j = 0; j < n; j++)
            if (out[j] != 0) fail_msg("byte %zu of a refused blob is %#x, not 0", j, out[j]);
        free(out);
        free(stored);
        free(data);
    }
}

static void test_trailer(void **state) {
    (void)state;
    PrBlobRef refs[3];
    for (int i = 0; i < 3; i++) refs[i] = (PrBlobRef){{{0}}, PR_BLOB_DATA, (uint32_t)i * 100, 100, 200};
    make_id(&refs[0].id, 1);
    make_id(&refs[1].id, 2);
    make_id(&refs[2].id, 3);
    refs[2].type = PR_BLOB_TREE;
    void *t;
    size_t tlen;
    assert_int_equal(pr_pack_trailer_encode(&keys, refs, 3, &t, &tlen), 0);
    uint64_t pack_len = 300 + tlen;
    PrBlobRef *back;
    uint32_t n;
    size_t need = 0;
    assert_int_equal(pr_pack_trailer_decode(&keys, t, tlen, pack_len, &back, &n, &need), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(back, refs, sizeof refs);
    free(back);
    /* a short tail asks for more */
    assert_int_equal(pr_pack_trailer_decode(&keys, (uint8_t *)t + tlen - 8, 8, pack_len, &back, &n, &need), -EAGAIN);
    assert_int_equal(need, tlen);
    /* a pack too short for the blobs it claims */
    assert_int_equal(pr_pack_trailer_decode(&keys, t, tlen, 250 + tlen, &back, &n, &need), -EBADMSG);
    /* a hostile trailer length */
    uint8_t *h = malloc(tlen);
    memcpy(h, t, tlen);
    pr_put_u32(h + tlen - 4, 0xffffffffu);
    assert_int_equal(pr_pack_trailer_decode(&keys, h, tlen, pack_len, &back, &n, &need), -EBADMSG);
    pr_put_u32(h + tlen - 4, 3);
    assert_int_equal(pr_pack_trailer_decode(&keys, h, tlen, pack_len, &back, &n, &need), -EBADMSG);
    /* tampered */
    memcpy(h, t, tlen);
    h[5] ^= 1;
    assert_int_equal(pr_pack_trailer_decode(&keys, h, tlen, pack_len, &back, &n, &need), -EBADMSG);
    free(h);
    free(t);
}

typedef struct Collect {
    int packs, blobs;
    PrId first;
} Collect;

static int collect(const PrIndexPack *p, void *ud) {
    Collect *c = ud;
    if (c->packs == 0) c->first = p->pack;
    c->packs++;
    c->blobs += (int)p->n;
    return 0;
}

static void test_index_file(void **state) {
    (void)state;
    PrBlobRef refs[2] = {{{{0}}, PR_BLOB_DATA, 0, 100, 50}, {{{0}}, PR_BLOB_TREE, 100, 60, 90}};
    make_id(&refs[0].id, 7);
    make_id(&refs[1].id, 8);
    PrIndexPack packs[2] = {{{{0}}, refs, 2}, {{{0}}, refs, 1}};
    make_id(&packs[0].pack, 40);
    make_id(&packs[1].pack, 41);
    void *data;
    size_t len;
    assert_int_equal(pr_index_file_encode(&keys, packs, 2, &data, &len), 0);
    Collect c = {0};
    assert_int_equal(pr_index_file_decode(&keys, data, len, collect, &c), 0);
    assert_int_equal(c.packs, 2);
    assert_int_equal(c.blobs, 3);
    assert_memory_equal(c.first.b, packs[0].pack.b, PR_ID_LEN);
    ((uint8_t *)data)[len - 1] ^= 1;
    assert_int_equal(pr_index_file_decode(&keys, data, len, collect, &c), -EBADMSG);
    free(data);
    assert_int_equal(pr_index_file_decode(&keys, "short", 5, collect, &c), -EBADMSG);
}

/* Hostile counts inside an authentic (sealed with the right key) index file. */
static void test_index_hostile_counts(void **state) {
    (void)state;
    uint8_t plain[4 + 4 + 32 + 4];
    pr_put_u32(plain, 1);
    pr_put_u32(plain + 4, 1);
    memset(plain + 8, 1, 32);
    pr_put_u32(plain + 40, 0x7fffffffu); /* blobs claimed, none present */
    uint8_t sealed[sizeof plain + PR_SEAL_OVERHEAD];
    assert_int_equal(pr_seal(&keys, "prafs index v1", 14, plain, sizeof plain, sealed), 0);
    Collect c = {0};
    assert_int_equal(pr_index_file_decode(&keys, sealed, sizeof sealed, collect, &c), -EBADMSG);
    pr_put_u32(plain + 4, 0xffffffffu); /* packs claimed */
    assert_int_equal(pr_seal(&keys, "prafs index v1", 14, plain, sizeof plain, sealed), 0);
    assert_int_equal(pr_index_file_decode(&keys, sealed, sizeof sealed, collect, &c), -EBADMSG);
}

static PrTree *sample_tree(void) {
    PrTree *t = calloc(1, sizeof *t);
    t->n = 4;
    t->nodes = calloc(4, sizeof *t->nodes);
    PrNode *f = &t->nodes[0];
    f->name = strdup("a file\nwith newline");
    f->type = PR_NODE_FILE;
    f->mode = 04755;
    f->uid = 1000;
    f->gid = 33;
    f->mtime_sec = 1795000000;
    f->mtime_nsec = 123456789;
    f->ctime_sec = -5;
    f->size = 300;
    f->nlink = 2;
    f->link_group = 9;
    f->nchunks = 2;
    f->chunks = calloc(2, sizeof *f->chunks);
    make_id(&f->chunks[0].id, 3);
    f->chunks[0].length = 100;
    f->chunks[1].length = 200; /* a hole */
    f->nxattrs = 2;
    f->xattrs = calloc(2, sizeof *f->xattrs);
    f->xattrs[0].name = strdup("system.posix_acl_access");
    f->xattrs[0].value = malloc(4);
    memcpy(f->xattrs[0].value, "\x02\0\0\0", 4);
    f->xattrs[0].len = 4;
    f->xattrs[1].name = strdup("user.empty");
    f->xattrs[1].value = malloc(1);
    f->xattrs[1].len = 0;
    PrNode *d = &t->nodes[1];
    d->name = strdup("dir");
    d->type = PR_NODE_DIR;
    d->mode = 01777;
    make_id(&d->subtree, 99);
    PrNode *l = &t->nodes[2];
    l->name = strdup("link");
    l->type = PR_NODE_SYMLINK;
    l->target = strdup("../nowhere");
    l->size = strlen(l->target);
    PrNode *c = &t->nodes[3];
    c->name = strdup("null");
    c->type = PR_NODE_CHR;
    c->rdev = 0x103;
    return t;
}

static void test_tree_roundtrip(void **state) {
    (void)state;
    PrTree *t = sample_tree();
    void *data;
    size_t len;
    assert_int_equal(pr_tree_encode(t, &data, &len), 0);
    PrTree *back;
    assert_int_equal(pr_tree_decode(data, len, &back), 0);
    assert_int_equal(back->n, 4);
    const PrNode *f = pr_tree_find(back, "a file\nwith newline");
    assert_non_null(f);
    assert_int_equal(f->mode, 04755);
    assert_int_equal(f->mtime_nsec, 123456789);
    assert_int_equal(f->ctime_sec, -5);
    assert_int_equal(f->link_group, 9);
    assert_int_equal(f->nchunks, 2);
    assert_true(pr_id_is_zero(&f->chunks[1].id));
    assert_int_equal(f->nxattrs, 2);
    assert_string_equal(f->xattrs[1].name, "user.empty");
    assert_int_equal(f->xattrs[1].len, 0);
    assert_string_equal(pr_tree_find(back, "link")->target, "../nowhere");
    assert_int_equal(pr_tree_find(back, "null")->rdev, 0x103);
    assert_null(pr_tree_find(back, "nope"));
    /* the encoding is canonical: same tree, same bytes */
    void *again;
    size_t alen;
    assert_int_equal(pr_tree_encode(back, &again, &alen), 0);
    assert_int_equal(alen, len);
    assert_memory_equal(again, data, len);
    free(again);
    pr_tree_free(back);

    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut++) assert_int_equal(pr_tree_decode(data, cut, &back), -EBADMSG);
    free(data);
    pr_tree_free(t);
}

static void test_tree_rejects(void **state) {
    (void)state;
    PrTree *t = sample_tree();
    void *data;
    size_t len;
    /* unsorted */
    PrNode tmp = t->nodes[0];
    t->nodes[0] = t->nodes[1];
    t->nodes[1] = tmp;
    assert_int_equal(pr_tree_encode(t, &data, &len), -EINVAL);
    t->nodes[1] = t->nodes[0];
    t->nodes[0] = tmp;
    /* names with '/', "..", empty */
    const char *bad[] = {"a/b", "..", "."};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        char *save = t->nodes[1].name;
        t->nodes[1].name = (char *)bad[i];
        assert_int_equal(pr_tree_encode(t, &data, &len), -EINVAL);
        t->nodes[1].name = save;
    }
    assert_int_equal(pr_tree_encode(t, &data, &len), 0);
    PrTree *back;
    uint8_t *p = data;
    /* hostile count */
    uint8_t *h = malloc(len);
    memcpy(h, p, len);
    pr_put_u32(h + 5, 0xffffffffu);
    assert_int_equal(pr_tree_decode(h, len, &back), -EBADMSG);
    /* a name containing '/' written by someone else's encoder */
    memcpy(h, p, len);
    size_t name_at = 9 + 2; /* magic, version, count, u16 length */
    h[name_at + 1] = '/';
    assert_int_equal(pr_tree_decode(h, len, &back), -EBADMSG);
    /* name length pointing past the end */
    memcpy(h, p, len);
    pr_put_u16(h + 9, 0xffff);
    assert_int_equal(pr_tree_decode(h, len, &back), -EBADMSG);
    /* chunk lengths not adding up to the size: change the size field of the first node */
    memcpy(h, p, len);
    size_t nl = pr_get_u16(p + 9);
    size_t size_at = 9 + 2 + nl + 1 + 4 + 4 + 4 + 8 + 4 + 8 + 4;
    pr_put_u64(h + size_at, 301);
    assert_int_equal(pr_tree_decode(h, len, &back), -EBADMSG);
    /* trailing garbage */
    uint8_t *g = malloc(len + 1);
    memcpy(g, p, len);
    g[len] = 0;
    assert_int_equal(pr_tree_decode(g, len + 1, &back), -EBADMSG);
    /* wrong version */
    memcpy(h, p, len);
    h[4] = 2;
    assert_int_equal(pr_tree_decode(h, len, &back), -EBADMSG);
    free(g);
    free(h);
    free(data);
    pr_tree_free(t);
}

static void test_snapshot_roundtrip(void **state) {
    (void)state;
    PrSnapshot s = {0};
    s.time_sec = 1795000000;
    s.time_nsec = 42;
    s.host = "pra-host-1";
    char *tags[] = {"daily", "glpi"};
    s.tags = tags;
    s.ntags = 2;
    s.has_parent = true;
    make_id(&s.parent, 5);
    make_id(&s.root, 6);
    PrSnapshotVolume vols[] = {{"glpi_data", 10, 2, 12345}};
    s.volumes = vols;
    s.nvolumes = 1;
    s.files = 10;
    s.bytes_read = 77;
    s.program_version = "0.1.0";
    s.acl_entries = 7;
    s.xattr_entries = 9;
    void *data;
    size_t len;
    assert_int_equal(pr_snapshot_encode(&keys, &s, &data, &len), 0);
    PrSnapshot *back;
    assert_int_equal(pr_snapshot_decode(&keys, data, len, &back), 0);
    assert_string_equal(back->host, "pra-host-1");
    assert_int_equal(back->ntags, 2);
    assert_string_equal(back->tags[1], "glpi");
    assert_true(back->has_parent);
    assert_memory_equal(back->root.b, s.root.b, PR_ID_LEN);
    assert_string_equal(back->volumes[0].name, "glpi_data");
    assert_int_equal(back->volumes[0].bytes, 12345);
    assert_int_equal(back->acl_entries, 7);
    assert_int_equal(back->xattr_entries, 9);
    assert_int_equal(back->bytes_read, 77);
    uint8_t h[32];
    pr_sha256(data, len, h);
    assert_memory_equal(back->id.b, h, 32);
    pr_snapshot_free(back);
    ((uint8_t *)data)[20] ^= 4;
    assert_int_equal(pr_snapshot_decode(&keys, data, len, &back), -EBADMSG);
    PrKeys other;
    pr_keys_generate(&other);
    ((uint8_t *)data)[20] ^= 4;
    assert_int_equal(pr_snapshot_decode(&other, data, len, &back), -EBADMSG);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob_roundtrip),     cmocka_unit_test(test_blob_compresses),
        cmocka_unit_test(test_blob_decode_into),   cmocka_unit_test(test_blob_incompressible_skipped),   cmocka_unit_test(test_trailer),            cmocka_unit_test(test_index_file),
        cmocka_unit_test(test_index_hostile_counts), cmocka_unit_test(test_tree_roundtrip),
        cmocka_unit_test(test_tree_rejects),       cmocka_unit_test(test_snapshot_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
