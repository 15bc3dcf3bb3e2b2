/* SPDX-License-Identifier: MIT */
/* The local-directory store: atomic puts, ranged gets, listing, deletes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "backend/store.h"
#include "cache/util.h"

static char root[64];

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/prafs-store-test-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd);
}

static int count_keys(const char *key, uint64_t size, void *ud) {
    int *n = ud;
    (void)size;
    if (strncmp(key, "data/", 5) == 0) (*n)++;
    assert_null(strstr(key, ".tmp-"));
    return 0;
}

static void test_put_get(void **state) {
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/repo", root);
    PrStore *s;
    assert_int_equal(pr_store_local_open(dir, &s), 0);
    assert_int_equal(pr_store_create(s), 0);
    assert_int_equal(pr_store_put(s, "data/ab/abcdef", "0123456789", 10), 0);
    assert_int_equal(pr_store_put(s, "config", "x", 1), 0);
    void *d;
    size_t n;
    assert_int_equal(pr_store_get(s, "data/ab/abcdef", 0, 0, &d, &n), 0);
    assert_int_equal(n, 10);
    assert_memory_equal(d, "0123456789", 10);
    free(d);
    assert_int_equal(pr_store_get(s, "data/ab/abcdef", 3, 4, &d, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(d, "3456", 4);
    free(d);
    /* a range past the end is short, not an error */
    assert_int_equal(pr_store_get(s, "data/ab/abcdef", 8, 100, &d, &n), 0);
    assert_int_equal(n, 2);
    free(d);
    assert_int_equal(pr_store_get(s, "data/ab/missing", 0, 0, &d, &n), -ENOENT);
    uint64_t size;
    assert_int_equal(pr_store_stat(s, "data/ab/abcdef", &size), 0);
    assert_int_equal(size, 10);
    assert_int_equal(pr_store_stat(s, "nope", &size), -ENOENT);
    /* a leftover temporary file (a writer killed mid-put) is invisible */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/data/ab/.tmp-abcdef-123456", dir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs("partial", f);
    fclose(f);
    int count = 0;
    assert_int_equal(pr_store_list(s, "data/", count_keys, &count), 0);
    assert_int_equal(count, 1);
    /* keys that would leave the root are refused */
    assert_int_equal(pr_store_put(s, "../escape", "x", 1), -EINVAL);
    assert_int_equal(pr_store_put(s, "/abs", "x", 1), -EINVAL);
    assert_int_equal(pr_store_del(s, "data/ab/abcdef"), 0);
    assert_int_equal(pr_store_del(s, "data/ab/abcdef"), 0);
    assert_int_equal(pr_store_stat(s, "data/ab/abcdef", &size), -ENOENT);
    pr_store_free(s);
}

static int stop_early(const char *key, uint64_t size, void *ud) {
    (void)key;
    (void)size;
    (void)ud;
    return -ECANCELED;
}

static void test_list_prefix(void **state) {
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/repo2", root);
    PrStore *s;
    assert_int_equal(pr_store_local_open(dir, &s), 0);
    char key[64];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "data/%02x/%04d", i % 7, i);
        assert_int_equal(pr_store_put(s, key, key, strlen(key)), 0);
    }
    assert_int_equal(pr_store_put(s, "index/one", "i", 1), 0);
    int count = 0;
    assert_int_equal(pr_store_list(s, "data/", count_keys, &count), 0);
    assert_int_equal(count, 300);
    assert_int_equal(pr_store_list(s, "data/", stop_early, NULL), -ECANCELED);
    /* listing a store that does not exist is an error, not an empty list */
    PrStore *missing;
    assert_int_equal(pr_store_local_open("/tmp/prafs-no-such-dir-here", &missing), 0);
    assert_true(pr_store_list(missing, "data/", count_keys, &count) < 0);
    pr_store_free(missing);
    pr_store_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_list_prefix),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
