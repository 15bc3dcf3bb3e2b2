/* SPDX-License-Identifier: MIT */
/* The memory blob cache: bound, LRU order, values that outlive eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache/memcache.h"

static void key(uint8_t k[32], int i) {
    memset(k, 0, 32);
    k[0] = (uint8_t)i;
    k[1] = (uint8_t)(i >> 8);
    k[20] = 7;
}

static PrCacheValue *val(size_t len, uint8_t fill) {
    PrCacheValue *v = pr_memcache_value_new(len);
    memset(v->data, fill, len);
    return v;
}

static void test_bound_and_lru(void **state) {
    (void)state;
    PrMemCache *c;
    assert_int_equal(pr_memcache_new(1000, &c), 0);
    uint8_t k[32];
    for (int i = 0; i < 10; i++) {
        key(k, i);
        PrCacheValue *v = val(100, (uint8_t)i);
        pr_memcache_put(c, k, v);
        pr_memcache_value_unref(v);
    }
    size_t bytes, count;
    pr_memcache_usage(c, &bytes, &count);
    assert_int_equal(bytes, 1000);
    assert_int_equal(count, 10);
    /* touch 0, then insert one more: 1 (the least recently used) goes, 0 stays */
    key(k, 0);
    PrCacheValue *v0 = pr_memcache_get(c, k);
    assert_non_null(v0);
    assert_int_equal(v0->data[0], 0);
    key(k, 10);
    PrCacheValue *v = val(100, 10);
    pr_memcache_put(c, k, v);
    pr_memcache_value_unref(v);
    key(k, 1);
    assert_null(pr_memcache_get(c, k));
    key(k, 0);
    PrCacheValue *again = pr_memcache_get(c, k);
    assert_non_null(again);
    pr_memcache_value_unref(again);
    /* a value bigger than the bound is not kept */
    key(k, 99);
    v = val(5000, 1);
    pr_memcache_put(c, k, v);
    pr_memcache_value_unref(v);
    assert_null(pr_memcache_get(c, k));
    pr_memcache_usage(c, &bytes, &count);
    assert_true(bytes <= 1000);
    /* a held value survives the cache */
    pr_memcache_free(c);
    assert_int_equal(v0->data[99], 0);
    pr_memcache_value_unref(v0);
}

/* A demoted entry is the next to go, whatever its recency; the others keep their order. */
static void test_demote(void **state) {
    (void)state;
    PrMemCache *c;
    assert_int_equal(pr_memcache_new(500, &c), 0);
    uint8_t k[32];
    for (int i = 0; i < 5; i++) { /* LRU order, oldest first: 0 1 2 3 4 */
        key(k, i);
        PrCacheValue *v = val(100, (uint8_t)i);
        pr_memcache_put(c, k, v);
        pr_memcache_value_unref(v);
    }
    key(k, 4); /* the newest */
    pr_memcache_demote(c, k);
    key(k, 77); /* not there: nothing happens */
    pr_memcache_demote(c, k);
    for (int i = 5; i < 7; i++) { /* two more: 4 goes first, then 0 */
        key(k, i);
        PrCacheValue *v = val(100, (uint8_t)i);
        pr_memcache_put(c, k, v);
        pr_memcache_value_unref(v);
    }
    static const int gone[] = {4, 0}, kept[] = {1, 2, 3, 5, 6};
    for (size_t i = 0; i < 2; i++) {
        key(k, gone[i]);
        assert_null(pr_memcache_get(c, k));
    }
    for (size_t i = 0; i < 5; i++) {
        key(k, kept[i]);
        PrCacheValue *v = pr_memcache_get(c, k);
        assert_non_null(v);
        assert_int_equal(v->data[0], kept[i]);
        pr_memcache_value_unref(v);
    }
    /* demoting the only entry, and the tail itself, keeps the list sound */
    pr_memcache_free(c);
    assert_int_equal(pr_memcache_new(100, &c), 0);
    key(k, 1);
    PrCacheValue *v = val(100, 1);
    pr_memcache_put(c, k, v);
    pr_memcache_value_unref(v);
    pr_memcache_demote(c, k);
    pr_memcache_demote(c, k);
    key(k, 2);
    v = val(100, 2);
    pr_memcache_put(c, k, v);
    pr_memcache_value_unref(v);
    key(k, 1);
    assert_null(pr_memcache_get(c, k));
    key(k, 2);
    v = pr_memcache_get(c, k);
    assert_non_null(v);
    pr_memcache_value_unref(v);
    pr_memcache_free(c);
}

static void test_many(void **state) {
    (void)state;
    PrMemCache *c;
    assert_int_equal(pr_memcache_new(1 << 20, &c), 0);
    uint8_t k[32];
    for (int i = 0; i < 5000; i++) {
        key(k, i);
        PrCacheValue *v = val(16, (uint8_t)i);
        pr_memcache_put(c, k, v);
        pr_memcache_value_unref(v);
    }
    for (int i = 0; i < 5000; i++) {
        key(k, i);
        PrCacheValue *v = pr_memcache_get(c, k);
        assert_non_null(v);
        assert_int_equal(v->data[3], (uint8_t)i);
        pr_memcache_value_unref(v);
    }
    pr_memcache_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bound_and_lru), cmocka_unit_test(test_demote),
                                       cmocka_unit_test(test_many)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
