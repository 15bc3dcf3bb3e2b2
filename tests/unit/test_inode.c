/* SPDX-License-Identifier: MIT */
/* The mount's inode table and numbering, called directly (no kernel): lookup counts as libfuse's
 * passthrough_hp keeps them (lookup/readdirplus count, forget/forget_multi take back, zero removes),
 * references that outlive a forget, stable numbers for directories, entries and hardlink groups. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fs/inode.h"

static PrInode *fresh(uint64_t ino) {
    PrInode *i = pr_inode_new(ino, PR_INODE_NODE);
    assert_non_null(i);
    return i;
}

static size_t table_count(PrInodeTable *t) {
    size_t n;
    pr_itable_usage(t, &n, NULL);
    return n;
}

static void test_lookup_counts(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    PrInode *in = NULL;
    assert_int_equal(pr_itable_lookup(t, 42, &in), 0);
    assert_null(in);

    /* first lookup: insert counts one */
    assert_int_equal(pr_itable_insert(t, fresh(42), &in), 0);
    assert_non_null(in);
    assert_int_equal(in->ino, 42);
    assert_int_equal(in->nlookup, 1);
    pr_inode_unref(in);
    /* two more lookups (say lookup and readdirplus) */
    assert_int_equal(pr_itable_lookup(t, 42, &in), 1);
    pr_inode_unref(in);
    assert_int_equal(pr_itable_lookup(t, 42, &in), 1);
    assert_int_equal(in->nlookup, 3);
    pr_inode_unref(in);

    /* get borrows without counting */
    assert_int_equal(pr_itable_get(t, 42, &in), 0);
    assert_int_equal(in->nlookup, 3);
    pr_inode_unref(in);

    assert_int_equal(pr_itable_forget(t, 42, 2), 1);
    assert_int_equal(pr_itable_get(t, 42, &in), 0);
    pr_inode_unref(in);
    assert_int_equal(pr_itable_forget(t, 42, 1), 0);
    assert_int_equal(pr_itable_get(t, 42, &in), -ENOENT);
    assert_null(in);
    assert_int_equal(pr_itable_lookup(t, 42, &in), 0);
    /* forgetting the unknown, or more than counted */
    assert_int_equal(pr_itable_forget(t, 42, 1), -ENOENT);
    assert_int_equal(pr_itable_insert(t, fresh(7), &in), 0);
    pr_inode_unref(in);
    assert_int_equal(pr_itable_forget(t, 7, 100), 0);
    assert_int_equal(table_count(t), 0);
    pr_itable_free(t);
}

static void test_insert_race_keeps_first(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    PrInode *a, *b;
    assert_int_equal(pr_itable_insert(t, fresh(9), &a), 0);
    /* a second thread built its own inode for the same number: the first stays, both lookups count */
    assert_int_equal(pr_itable_insert(t, fresh(9), &b), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(a->nlookup, 2);
    assert_int_equal(table_count(t), 1);
    pr_inode_unref(a);
    pr_inode_unref(b);
    assert_int_equal(pr_itable_forget(t, 9, 2), 0);
    pr_itable_free(t);
}

static void test_reference_outlives_forget(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    PrInode *in = fresh(5);
    /* the inode owns a reference to the tree holding its node; freed with the inode */
    in->tree = pr_memcache_value_new(100);
    assert_non_null(in->tree);
    memset(in->tree->data, 0xab, 100);
    PrInode *got;
    assert_int_equal(pr_itable_insert(t, in, &got), 0);
    /* an open file borrows it; the kernel forgets it meanwhile */
    assert_int_equal(pr_itable_forget(t, 5, 1), 0);
    assert_int_equal(pr_itable_get(t, 5, &in), -ENOENT);
    /* still readable through the borrowed reference (ASan would catch a use after free) */
    assert_int_equal(got->ino, 5);
    assert_int_equal(got->tree->data[99], 0xab);
    pr_inode_unref(got);
    pr_itable_free(t);
}

static void test_root_is_permanent(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    assert_int_equal(pr_itable_insert_permanent(t, pr_inode_new(PR_ROOT_INO, PR_INODE_VDIR)), 0);
    assert_true(pr_itable_forget(t, PR_ROOT_INO, 1000000) > 0);
    PrInode *in;
    assert_int_equal(pr_itable_get(t, PR_ROOT_INO, &in), 0);
    assert_int_equal(in->kind, PR_INODE_VDIR);
    pr_inode_unref(in);
    pr_itable_free(t); /* frees it */
}

/* Many inodes with the structured numbers the mount uses, forgotten in random order (forget_multi
 * batches): every survivor stays findable, every forgotten one is gone, the table shrinks back. */
static void test_many_random_forgets(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    size_t slots0;
    pr_itable_usage(t, NULL, &slots0);
    enum { N = 60000 };
    uint64_t *inos = malloc(sizeof *inos * N);
    uint8_t *counts = calloc(N, 1);
    assert_non_null(inos);
    assert_non_null(counts);
    srand(1234);
    for (size_t i = 0; i < N; i++) {
        inos[i] = (uint64_t)(1 + i / 300) << 32 | (i % 300 + 1);
        PrInode *in;
        assert_int_equal(pr_itable_insert(t, fresh(inos[i]), &in), 0);
        pr_inode_unref(in);
        counts[i] = 1 + (uint8_t)(rand() % 3);
        for (int k = 1; k < counts[i]; k++) {
            assert_int_equal(pr_itable_lookup(t, inos[i], &in), 1);
            pr_inode_unref(in);
        }
    }
    assert_int_equal(table_count(t), N);
    size_t slots;
    pr_itable_usage(t, NULL, &slots);
    assert_true(slots >= 2 * (size_t)N);
    /* random forgets, one count at a time, with checks along the way */
    size_t live = N;
    for (size_t step = 0; live > 0; step++) {
        size_t i = (size_t)rand() % N;
        if (!counts[i]) {
            for (i = 0; i < N && !counts[i]; i++) {
            }
        }
        int64_t left = pr_itable_forget(t, inos[i], 1);
        counts[i]--;
        assert_int_equal(left, counts[i]);
        if (!counts[i]) live--;
        if (step % 5000 == 0) {
            for (size_t j = 0; j < N; j++) {
                PrInode *in = NULL;
                int r = pr_itable_get(t, inos[j], &in);
                if (counts[j]) {
                    assert_int_equal(r, 0);
                    assert_int_equal(in->ino, inos[j]);
                    assert_int_equal(in->nlookup, counts[j]);
                    pr_inode_unref(in);
                } else {
                    assert_int_equal(r, -ENOENT);
                }
            }
            assert_int_equal(table_count(t), live);
        }
    }
    assert_int_equal(table_count(t), 0);
    pr_itable_usage(t, NULL, &slots);
    assert_int_equal(slots, slots0);
    free(inos);
    free(counts);
    pr_itable_free(t);
}

typedef struct Worker {
    PrInodeTable *t;
    unsigned seed;
} Worker;

/* Like FUSE worker threads: lookups (insert or count) and forgets of a small shared set. Each thread
 * forgets exactly what it looked up, so the table ends empty. */
static void *worker(void *arg) {
    Worker *w = arg;
    uint32_t mine[64] = {0};
    for (int round = 0; round < 20000; round++) {
        unsigned k = (unsigned)rand_r(&w->seed) % 64;
        uint64_t ino = 1000 + k;
        if (rand_r(&w->seed) % 2 || !mine[k]) {
            PrInode *in;
            if (!pr_itable_lookup(w->t, ino, &in)) {
                if (pr_itable_insert(w->t, pr_inode_new(ino, PR_INODE_NODE), &in) < 0) abort();
            }
            if (in->ino != ino) abort();
            pr_inode_unref(in);
            mine[k]++;
        } else {
            if (pr_itable_forget(w->t, ino, 1) < 0) abort();
            mine[k]--;
        }
    }
    for (unsigned k = 0; k < 64; k++)
        if (mine[k] && pr_itable_forget(w->t, 1000 + k, mine[k]) < 0) abort();
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    PrInodeTable *t;
    assert_int_equal(pr_itable_new(&t), 0);
    pthread_t th[4];
    Worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (Worker){t, (unsigned)i * 7919u + 1};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_int_equal(table_count(t), 0);
    pr_itable_free(t);
}

static void test_numbering(void **state) {
    (void)state;
    PrNumbering *n;
    assert_int_equal(pr_numbering_new(&n), 0);
    uint32_t d1, d2, d3;
    assert_int_equal(pr_numbering_dirid(n, 7, &d1), 0);
    assert_int_equal(pr_numbering_dirid(n, (uint64_t)3 << 32 | 5, &d2), 0);
    assert_int_equal(pr_numbering_dirid(n, 7, &d3), 0);
    assert_int_equal(d1, d3); /* the same directory, the same number: after a forget too */
    assert_int_not_equal(d1, d2);
    assert_true(d1 >= 1 && d2 >= 1);

    uint64_t ino, ino2;
    assert_int_equal(pr_numbering_child(n, d1, 0, 1, 0, &ino), 0);
    assert_int_equal(ino, (uint64_t)d1 << 32 | 1);
    assert_int_equal(pr_numbering_child(n, d2, 41, 1, 0, &ino), 0);
    assert_int_equal(ino, (uint64_t)d2 << 32 | 42);
    assert_true(ino > UINT32_MAX); /* never clashes with the virtual top's numbers */

    /* volume instances: one per (snapshot, volume), permanent */
    uint32_t v1, v2, v3;
    assert_int_equal(pr_numbering_volinst(n, 0, 0, &v1), 0);
    assert_int_equal(pr_numbering_volinst(n, 0, 1, &v2), 0);
    assert_int_equal(pr_numbering_volinst(n, 0, 0, &v3), 0);
    assert_int_equal(v1, v3);
    assert_int_not_equal(v1, v2);

    /* hardlinks: the group takes the number of the first path seen, in both views of a volume */
    uint64_t a, b, c, d;
    assert_int_equal(pr_numbering_child(n, d1, 3, v1, 77, &a), 0);
    assert_int_equal(a, (uint64_t)d1 << 32 | 4);
    assert_int_equal(pr_numbering_child(n, d2, 9, v1, 77, &b), 0);
    assert_int_equal(a, b);
    assert_int_equal(pr_numbering_child(n, d2, 9, v2, 77, &c), 0); /* another volume: another file */
    assert_int_equal(c, (uint64_t)d2 << 32 | 10);
    assert_int_equal(pr_numbering_child(n, d1, 4, v1, 78, &d), 0); /* another group */
    assert_int_not_equal(d, a);
    assert_int_equal(pr_numbering_child(n, d2, 9, v1, 77, &ino2), 0);
    assert_int_equal(ino2, a);

    assert_int_equal(pr_numbering_child(n, d1, UINT32_MAX, v1, 0, &ino), -EOVERFLOW);
    assert_int_equal(pr_numbering_child(n, 0, 1, v1, 0, &ino), -EOVERFLOW);

    /* many directories: numbers stay distinct and stable through growth */
    for (uint64_t i = 0; i < 20000; i++) {
        uint32_t x;
        assert_int_equal(pr_numbering_dirid(n, 100000 + i, &x), 0);
        assert_int_equal(x, 3 + i);
    }
    assert_int_equal(pr_numbering_dirid(n, 7, &d3), 0);
    assert_int_equal(d3, d1);
    size_t dirs, vols, links;
    pr_numbering_usage(n, &dirs, &vols, &links);
    assert_int_equal(dirs, 20002);
    assert_int_equal(vols, 2);
    assert_int_equal(links, 3);
    pr_numbering_free(n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_counts),
        cmocka_unit_test(test_insert_race_keeps_first),
        cmocka_unit_test(test_reference_outlives_forget),
        cmocka_unit_test(test_root_is_permanent),
        cmocka_unit_test(test_many_random_forgets),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_numbering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
