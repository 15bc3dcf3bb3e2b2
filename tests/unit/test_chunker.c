/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/chunker.h"
#include "cache/util.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define DATA_LEN (64 * MiB)

static const PrChunkerParams params = {
    .min_size = 256 * KiB,
    .avg_size = 1 * MiB,
    .max_size = 4 * MiB,
    .seed = UINT64_C(0x0123456789abcdef),
};

/* The test vector: chunk lengths of the xorshift64* stream below under `params`. Produced by
 * this implementation and pinned; if this fails, the chunking algorithm (or gear table, or masks)
 * changed, which changes every chunk boundary of every existing repository. */
static const size_t expected_lengths[] = {
    635604,  449111,  1072804, 954950,  1791808, 416076,  1316861, 1226934, 1150198, 1053692, 1379208,
    1131967, 1272502, 1505963, 1184541, 1102265, 1518076, 1788293, 1463756, 1117418, 1361057, 1294160,
    1791491, 1629668, 1958846, 1130021, 1354304, 1055677, 1243697, 1069593, 1288717, 1562870, 450275,
    726254,  1099373, 1230992, 1551991, 1215027, 1119531, 606661,  1654340, 1080163, 1571970, 1094453,
    1169533, 1266918, 1317850, 1335460, 1375579, 1393875, 1861946, 1099071, 645648,  1546358, 423468,
};
#define EXPECTED_COUNT 55

/* xorshift64* (Vigna), seeded with 1; each output stored little-endian. */
static void fill_pseudo_random(uint8_t *buf, size_t len) {
    uint64_t x = 1;
    assert_true(len % 8 == 0);
    for (size_t i = 0; i < len; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        pr_put_u64(buf + i, x * UINT64_C(0x2545F4914F6CDD1D));
    }
}

/* Chunks the whole buffer; returns the number of chunks, lengths in *ret (malloc'ed). */
static size_t chunk_all(const PrChunker *c, const uint8_t *data, size_t len, size_t **ret) {
    size_t n = 0, cap = 16, off = 0;
    size_t *lens = malloc(cap * sizeof *lens);
    assert_non_null(lens);
    while (off < len) {
        size_t window = MIN(len - off, (size_t)params.max_size);
        size_t l = pr_chunker_cut(c, data + off, window);
        assert_true(l >= 1 && l <= window);
        if (n == cap) {
            cap *= 2;
            lens = realloc(lens, cap * sizeof *lens);
            assert_non_null(lens);
        }
        lens[n++] = l;
        off += l;
    }
    *ret = lens;
    return n;
}

typedef struct Fixture {
    PrChunker *chunker;
    uint8_t *buf; /* 1 + DATA_LEN bytes: buf[1..] is the stream, buf[0] the inserted byte */
} Fixture;

static int setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (pr_chunker_new(&params, &f->chunker) < 0) return -1;
    f->buf = malloc(1 + DATA_LEN);
    if (!f->buf) return -1;
    f->buf[0] = 0x5a;
    fill_pseudo_random(f->buf + 1, DATA_LEN);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    Fixture *f = *state;
    if (f) {
        pr_chunker_free(f->chunker);
        free(f->buf);
        free(f);
    }
    return 0;
}

static void test_pinned_vector(void **state) {
    Fixture *f = *state;
    const uint8_t *data = f->buf + 1;
    _cleanup_free_ size_t *lens = NULL;

    /* Throughput, informational: best of three runs, to be less at the mercy of a busy machine. */
    size_t n = 0;
    double best = 0;
    for (int run = 0; run < 3; run++) {
        free(lens);
        double t = pr_now();
        n = chunk_all(f->chunker, data, DATA_LEN, &lens);
        t = pr_now() - t;
        if (run == 0 || t < best) best = t;
    }
    printf("chunker: %zu MiB in %.3f s: %.0f MB/s\n", DATA_LEN / MiB, best, best > 0 ? DATA_LEN / best / 1e6 : 0.0);

    assert_int_equal(ELEMENTSOF(expected_lengths), EXPECTED_COUNT);
    assert_int_equal(n, EXPECTED_COUNT);
    for (size_t i = 0; i < n; i++) assert_int_equal(lens[i], expected_lengths[i]);
}

static void test_sizes(void **state) {
    Fixture *f = *state;
    _cleanup_free_ size_t *lens = NULL;
    size_t n = chunk_all(f->chunker, f->buf + 1, DATA_LEN, &lens);
    size_t total = 0;
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n) {
            assert_true(lens[i] >= params.min_size);
            assert_true(lens[i] <= params.max_size);
        }
        total += lens[i];
    }
    assert_int_equal(total, DATA_LEN);
    double avg = (double)total / (double)n;
    assert_true(avg >= 0.75 * params.avg_size);
    assert_true(avg <= 1.33 * params.avg_size);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Cut offsets (end of each chunk) relative to data[base]; sorted by construction. */
static size_t cut_offsets(const size_t *lens, size_t n, size_t base, size_t *out) {
    size_t off = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        off += lens[i];
        if (off >= base) out[k++] = off - base;
    }
    return k;
}

static void test_shift_resistance(void **state) {
    Fixture *f = *state;
    _cleanup_free_ size_t *a = NULL, *b = NULL;
    size_t na = chunk_all(f->chunker, f->buf + 1, DATA_LEN, &a);  /* original */
    size_t nb = chunk_all(f->chunker, f->buf, DATA_LEN + 1, &b);  /* one byte inserted at the start */

    _cleanup_free_ size_t *ca = malloc(na * sizeof *ca), *cb = malloc(nb * sizeof *cb);
    assert_non_null(ca);
    assert_non_null(cb);
    size_t ka = cut_offsets(a, na, 0, ca);
    size_t kb = cut_offsets(b, nb, 1, cb); /* shifted back into the original's coordinates */

    /* Cuts missing from either side (symmetric difference), ignoring the first 3 chunks. */
    size_t skip = MIN(ca[MIN((size_t)2, ka - 1)], cb[MIN((size_t)2, kb - 1)]);
    size_t differ = 0;
    for (size_t i = 0; i < ka; i++)
        if (ca[i] > skip && !bsearch(&ca[i], cb, kb, sizeof *cb, cmp_size)) differ++;
    for (size_t i = 0; i < kb; i++)
        if (cb[i] > skip && !bsearch(&cb[i], ca, ka, sizeof *ca, cmp_size)) differ++;
    assert_true(differ <= 3);
    /* Same content after the first cut: the streams must resynchronise quickly. */
    assert_true(na >= nb ? na - nb <= 3 : nb - na <= 3);
}

static void test_zeros(void **state) {
    (void)state;
    PrChunker *c = NULL;
    assert_int_equal(pr_chunker_new(&params, &c), 0);
    size_t len = 4 * params.max_size + 12345;
    _cleanup_free_ uint8_t *zeros = calloc(1, len);
    assert_non_null(zeros);
    _cleanup_free_ size_t *lens = NULL;
    size_t n = chunk_all(c, zeros, len, &lens);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < 4; i++) assert_int_equal(lens[i], params.max_size);
    assert_int_equal(lens[4], 12345);
    pr_chunker_free(c);
}

static void test_bad_params(void **state) {
    (void)state;
    PrChunker *c = NULL;
    PrChunkerParams p;

    assert_int_equal(pr_chunker_new(NULL, &c), -EINVAL);
    p = params;
    p.min_size = 63; /* too small */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    p = params;
    p.min_size = p.avg_size; /* min == avg */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    p = params;
    p.max_size = p.avg_size; /* avg == max */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    p = params;
    p.avg_size = 3 * 512 * 1024; /* not a power of two */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    p = params;
    p.max_size = 64 * MiB + 1; /* too big */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    p = params;
    p.min_size = 8 * MiB; /* min > avg */
    assert_int_equal(pr_chunker_new(&p, &c), -EINVAL);
    assert_null(c);

    /* Extremes of the accepted range. */
    p = (PrChunkerParams){ .min_size = 64, .avg_size = 128, .max_size = 256, .seed = 1 };
    assert_int_equal(pr_chunker_new(&p, &c), 0);
    pr_chunker_free(c);
    p = (PrChunkerParams){ .min_size = 8 * MiB, .avg_size = 32 * MiB, .max_size = 64 * MiB, .seed = 1 };
    assert_int_equal(pr_chunker_new(&p, &c), 0);
    pr_chunker_free(c);
    pr_chunker_free(NULL);
}

static void test_small_inputs(void **state) {
    Fixture *f = *state;
    const uint8_t *data = f->buf + 1;
    assert_int_equal(pr_chunker_cut(f->chunker, data, 0), 0);
    assert_int_equal(pr_chunker_cut(f->chunker, data, 1), 1);
    assert_int_equal(pr_chunker_cut(f->chunker, data, 100), 100);
    assert_int_equal(pr_chunker_cut(f->chunker, data, params.min_size - 1), params.min_size - 1);
    assert_int_equal(pr_chunker_cut(f->chunker, data, params.min_size), params.min_size);
    /* A short tail above min: a cut inside it or all of it. */
    size_t l = pr_chunker_cut(f->chunker, data, params.min_size + 1);
    assert_true(l == params.min_size + 1);
    /* Pure: same answer every time, and a shorter window gives the same cut if it contains it. */
    size_t full = pr_chunker_cut(f->chunker, data, params.max_size);
    assert_int_equal(pr_chunker_cut(f->chunker, data, params.max_size), full);
    assert_int_equal(pr_chunker_cut(f->chunker, data, full), full);
}

static void test_seed_matters(void **state) {
    Fixture *f = *state;
    PrChunkerParams p = params;
    p.seed ^= 1;
    PrChunker *c = NULL;
    assert_int_equal(pr_chunker_new(&p, &c), 0);
    _cleanup_free_ size_t *lens = NULL;
    size_t n = chunk_all(c, f->buf + 1, 16 * MiB, &lens);
    bool same = n >= 4;
    for (size_t i = 0; same && i < 4; i++) same = lens[i] == expected_lengths[i];
    assert_false(same);
    pr_chunker_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pinned_vector),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_shift_resistance),
        cmocka_unit_test(test_zeros),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_small_inputs),
        cmocka_unit_test(test_seed_matters),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
