/* SPDX-License-Identifier: MIT */
/* The disk blob cache: round trip, bound with least-recently-used eviction, hits keeping entries
 * young, oversized entries, two caches (processes) sharing one directory, stale temporary files,
 * the default location, concurrent writers. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/diskcache.h"
#include "cache/util.h"

static char *tmpdir(void) {
    char tmpl[] = "/tmp/prafs-test-diskcache.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *sub = NULL;
    assert_true(asprintf(&sub, "%s/cache/prafs/repo", d) > 0);
    return sub;
}

static void rm_rf(const char *path) {
    char *cmd = NULL;
    /* path is ours: /tmp/prafs-test-diskcache.XXXXXX/... */
    assert_true(strncmp(path, "/tmp/prafs-test-diskcache.", 26) == 0);
    assert_true(asprintf(&cmd, "rm -rf '%.*s'", 32, path) > 0);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

static void key(uint8_t k[32], int i) {
    memset(k, 0x11, 32);
    k[0] = (uint8_t)i;
    k[1] = (uint8_t)(i >> 8);
}

static void entry_path(const char *dir, const uint8_t k[32], char *buf, size_t size) {
    char hex[65];
    pr_hex(k, 32, hex);
    snprintf(buf, size, "%s/%.2s/%s", dir, hex, hex);
}

/* Sets an entry's atime and mtime to `ago` seconds in the past. */
static void age(const char *dir, const uint8_t k[32], int ago) {
    char p[512];
    entry_path(dir, k, p, sizeof p);
    struct timespec ts[2] = {{time(NULL) - ago, 0}, {time(NULL) - ago, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static bool present(const char *dir, const uint8_t k[32]) {
    char p[512];
    entry_path(dir, k, p, sizeof p);
    return access(p, F_OK) == 0;
}

static void test_round_trip(void **state) {
    (void)state;
    char *dir = tmpdir();
    PrDiskCache *c;
    assert_int_equal(pr_diskcache_open(dir, 1 << 20, &c), 0);
    uint8_t k[32];
    key(k, 1);
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(pr_diskcache_get(c, k, 1000, &data, &len), -ENOENT);
    const char msg[] = "stored bytes, still encrypted";
    assert_int_equal(pr_diskcache_put(c, k, msg, sizeof msg), 0);
    assert_int_equal(pr_diskcache_get(c, k, 1000, &data, &len), 0);
    assert_int_equal(len, sizeof msg);
    assert_memory_equal(data, msg, sizeof msg);
    free(data);
    /* an empty entry is an entry */
    uint8_t k2[32];
    key(k2, 2);
    assert_int_equal(pr_diskcache_put(c, k2, "", 0), 0);
    assert_int_equal(pr_diskcache_get(c, k2, 1000, &data, &len), 0);
    assert_int_equal(len, 0);
    free(data);
    uint64_t bytes, count;
    pr_diskcache_usage(c, &bytes, &count);
    assert_int_equal(bytes, sizeof msg);
    assert_int_equal(count, 2);
    /* remove (a bad entry found by the reader) */
    assert_int_equal(pr_diskcache_remove(c, k), 0);
    assert_int_equal(pr_diskcache_remove(c, k), 0);
    assert_int_equal(pr_diskcache_get(c, k, 1000, &data, &len), -ENOENT);
    /* bigger than the reader accepts: refused and dropped */
    char big[300] = {0};
    assert_int_equal(pr_diskcache_put(c, k, big, sizeof big), 0);
    assert_int_equal(pr_diskcache_get(c, k, 100, &data, &len), -EFBIG);
    assert_false(present(dir, k));
    /* nothing left behind but entries */
    pr_diskcache_free(c);
    pr_diskcache_free(NULL);
    rm_rf(dir);
    free(dir);
}

static void test_bound_evicts_oldest(void **state) {
    (void)state;
    char *dir = tmpdir();
    PrDiskCache *c;
    assert_int_equal(pr_diskcache_open(dir, 10 * 1024, &c), 0);
    char buf[1024];
    uint8_t k[32];
    for (int i = 0; i < 9; i++) {
        key(k, i);
        memset(buf, i, sizeof buf);
        assert_int_equal(pr_diskcache_put(c, k, buf, sizeof buf), 0);
        age(dir, k, 1000 - i); /* 0 oldest */
    }
    /* entry 0 is read now: its atime becomes recent (older than a minute: refreshed) */
    key(k, 0);
    void *data;
    size_t len;
    assert_int_equal(pr_diskcache_get(c, k, sizeof buf, &data, &len), 0);
    free(data);
    /* two more puts: 11 KiB > 10 KiB, evicting down to 9 KiB: the two least recently used go */
    for (int i = 9; i < 11; i++) {
        key(k, i);
        memset(buf, i, sizeof buf);
        assert_int_equal(pr_diskcache_put(c, k, buf, sizeof buf), 0);
    }
    uint64_t bytes, count;
    pr_diskcache_usage(c, &bytes, &count);
    assert_true(bytes <= 10 * 1024);
    key(k, 0);
    assert_true(present(dir, k)); /* used recently */
    key(k, 1);
    assert_false(present(dir, k));
    key(k, 2);
    assert_false(present(dir, k));
    for (int i = 3; i < 11; i++) {
        key(k, i);
        assert_true(present(dir, k));
    }
    pr_diskcache_free(c);
    rm_rf(dir);
    free(dir);
}

static void test_shared_between_processes(void **state) {
    (void)state;
    char *dir = tmpdir();
    PrDiskCache *a, *b;
    assert_int_equal(pr_diskcache_open(dir, 8 * 1024, &a), 0);
    assert_int_equal(pr_diskcache_open(dir, 8 * 1024, &b), 0);
    char buf[1024] = {1};
    uint8_t k[32];
    for (int i = 0; i < 6; i++) {
        key(k, i);
        assert_int_equal(pr_diskcache_put(a, k, buf, sizeof buf), 0);
        age(dir, k, 500 - i);
    }
    key(k, 3);
    void *data;
    size_t len;
    assert_int_equal(pr_diskcache_get(b, k, sizeof buf, &data, &len), 0); /* b sees a's entries */
    free(data);
    /* b's own count is small, but its trim sees everything in the directory */
    for (int i = 100; i < 103; i++) {
        key(k, i);
        assert_int_equal(pr_diskcache_put(b, k, buf, sizeof buf), 0);
    }
    assert_int_equal(pr_diskcache_trim(b), 0);
    uint64_t bytes, count;
    pr_diskcache_usage(b, &bytes, &count);
    assert_true(bytes <= 8 * 1024);
    assert_int_equal(count, bytes / 1024);
    key(k, 0);
    assert_false(present(dir, k)); /* the oldest of a's */
    key(k, 3);
    assert_true(present(dir, k)); /* read through b */
    pr_diskcache_free(a);
    pr_diskcache_free(b);
    rm_rf(dir);
    free(dir);
}

static void test_stale_temporaries(void **state) {
    (void)state;
    char *dir = tmpdir();
    PrDiskCache *c;
    assert_int_equal(pr_diskcache_open(dir, 1 << 20, &c), 0);
    uint8_t k[32];
    key(k, 5);
    assert_int_equal(pr_diskcache_put(c, k, "x", 1), 0);
    char sub[512], old[600], young[600];
    entry_path(dir, k, sub, sizeof sub);
    *strrchr(sub, '/') = 0;
    snprintf(old, sizeof old, "%s/.tmp-old", sub);
    snprintf(young, sizeof young, "%s/.tmp-young", sub);
    for (int i = 0; i < 2; i++) {
        int fd = open(i ? young : old, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "partial", 7), 7);
        close(fd);
    }
    struct timespec ts[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
    assert_int_equal(utimensat(AT_FDCWD, old, ts, 0), 0);
    assert_int_equal(pr_diskcache_trim(c), 0);
    assert_int_equal(access(old, F_OK), -1);   /* a writer that died long ago */
    assert_int_equal(access(young, F_OK), 0);  /* maybe another process writing right now */
    uint64_t bytes, count;
    pr_diskcache_usage(c, &bytes, &count);
    assert_int_equal(count, 1); /* temporaries are not entries */
    assert_int_equal(bytes, 1);
    pr_diskcache_free(c);
    rm_rf(dir);
    free(dir);
}

static void test_default_dir(void **state) {
    (void)state;
    char *d = NULL;
    setenv("XDG_CACHE_HOME", "/var/cache/x", 1);
    assert_int_equal(pr_diskcache_default_dir("abcd", &d), 0);
    assert_string_equal(d, "/var/cache/x/prafs/abcd");
    free(d);
    setenv("XDG_CACHE_HOME", "relative/ignored", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(pr_diskcache_default_dir("abcd", &d), 0);
    assert_string_equal(d, "/home/u/.cache/prafs/abcd");
    free(d);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    assert_int_equal(pr_diskcache_default_dir("abcd", &d), -ENOENT);
    PrDiskCache *c;
    assert_int_equal(pr_diskcache_open("/tmp/x", 0, &c), -EINVAL);
}

typedef struct Writer {
    PrDiskCache *c;
    int id;
} Writer;

static void *writer(void *arg) {
    Writer *w = arg;
    uint8_t k[32];
    key(k, 9);
    char buf[4096];
    memset(buf, 'a' + w->id, sizeof buf);
    for (int i = 0; i < 200; i++) {
        if (pr_diskcache_put(w->c, k, buf, sizeof buf) < 0) abort();
        void *data;
        size_t len;
        if (pr_diskcache_get(w->c, k, sizeof buf, &data, &len) < 0) abort();
        /* always one whole entry, from one writer */
        if (len != sizeof buf) abort();
        for (size_t j = 1; j < len; j++)
            if (((char *)data)[j] != ((char *)data)[0]) abort();
        free(data);
    }
    return NULL;
}

static void test_concurrent_writers(void **state) {
    (void)state;
    char *dir = tmpdir();
    PrDiskCache *c;
    assert_int_equal(pr_diskcache_open(dir, 1 << 20, &c), 0);
    pthread_t th[4];
    Writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (Writer){c, i};
        assert_int_equal(pthread_create(&th[i], NULL, writer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    assert_int_equal(pr_diskcache_trim(c), 0);
    uint64_t bytes, count;
    pr_diskcache_usage(c, &bytes, &count);
    assert_int_equal(count, 1);
    assert_int_equal(bytes, 4096);
    pr_diskcache_free(c);
    rm_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bound_evicts_oldest),
        cmocka_unit_test(test_shared_between_processes),
        cmocka_unit_test(test_stale_temporaries),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_default_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
