/* SPDX-License-Identifier: MIT */
/* Drives the S3 store against a real server (tests/integration/20-s3-store.sh runs it against a
 * local Ceph RGW). Settings come from the environment like prafs itself (AWS_*, PRAFS_S3_*).
 *
 *   s3_store_check basic URL            create, put/get/range/stat/list/del/delete_many, odd keys
 *   s3_store_check many URL N THREADS   N objects put from THREADS threads, listed (exact set),
 *                                       read back concurrently, deleted with delete_many
 *   s3_store_check put URL KEY TEXT     put one object (for checks with another client)
 *   s3_store_check get URL KEY          print one object on stdout
 *   s3_store_check roundtrip URL        put, get and delete one object
 *   s3_store_check expect OP URL ERRNO  OP (get|stat|put|list|del|create) fails with ERRNO
 *                                       (ENOENT, EACCES, ECONNREFUSED, ...); prints the seconds taken
 *   s3_store_check open-fails URL ERRNO opening fails with ERRNO
 *
 * Exit status 0 when every check holds; otherwise a "FAIL:" line says which did not. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store.h"
#include "backend/store_s3.h"
#include "cache/util.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAIL: %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#define CHECK_R(expr, want)                                                                             \
    do {                                                                                                \
        int _r = (expr);                                                                                \
        CHECK(_r == (want), "%s returned %d (%s), expected %d", #expr, _r, strerror(_r < 0 ? -_r : 0), \
              (want));                                                                                  \
    } while (0)

static const struct {
    const char *name;
    int err;
} errnos[] = {
    {"ENOENT", ENOENT},     {"EACCES", EACCES},           {"ECONNREFUSED", ECONNREFUSED}, {"ETIMEDOUT", ETIMEDOUT},
    {"EIO", EIO},           {"ENOKEY", ENOKEY},           {"EINVAL", EINVAL},             {"EHOSTUNREACH", EHOSTUNREACH},
    {"EEXIST", EEXIST},
};

static int parse_errno(const char *name) {
    for (size_t i = 0; i < ELEMENTSOF(errnos); i++)
        if (strcmp(errnos[i].name, name) == 0) return errnos[i].err;
    fprintf(stderr, "unknown errno name %s\n", name);
    exit(2);
}

static PrStore *open_store(const char *url) {
    PrStore *s = NULL;
    CHECK_R(pr_store_open(url, NULL, &s), 0);
    CHECK(s && strcmp(s->ops->kind, "s3") == 0, "not an S3 store");
    return s;
}

static void expect_object(PrStore *s, const char *key, const void *data, size_t len) {
    void *got = NULL;
    size_t got_len = 0;
    CHECK_R(pr_store_get(s, key, 0, 0, &got, &got_len), 0);
    CHECK(got_len == len && memcmp(got, data, len) == 0, "%s: got %zu bytes, expected %zu", key, got_len, len);
    free(got);
    uint64_t size = 0;
    CHECK_R(pr_store_stat(s, key, &size), 0);
    CHECK(size == len, "%s: stat says %llu, expected %zu", key, (unsigned long long)size, len);
}

static void expect_range(PrStore *s, const char *key, const char *all, uint64_t off, size_t len) {
    size_t total = strlen(all);
    size_t want_len = off >= total ? 0 : len == 0 ? total - off : MIN(len, total - off);
    void *got = NULL;
    size_t got_len = 99;
    CHECK_R(pr_store_get(s, key, off, len, &got, &got_len), 0);
    CHECK(got != NULL, "range data is NULL");
    CHECK(got_len == want_len, "%s [%llu,+%zu): %zu bytes, expected %zu", key, (unsigned long long)off, len,
          got_len, want_len);
    CHECK(want_len == 0 || memcmp(got, all + off, want_len) == 0, "%s [%llu,+%zu): wrong bytes", key,
          (unsigned long long)off, len);
    free(got);
}

typedef struct Listing {
    char **keys;
    uint64_t *sizes;
    size_t n, cap;
} Listing;

static int collect(const char *key, uint64_t size, void *ud) {
    Listing *l = ud;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->keys = realloc(l->keys, l->cap * sizeof *l->keys);
        l->sizes = realloc(l->sizes, l->cap * sizeof *l->sizes);
        CHECK(l->keys && l->sizes, "out of memory");
    }
    l->keys[l->n] = strdup(key);
    l->sizes[l->n++] = size;
    return 0;
}

static void listing_done(Listing *l) {
    for (size_t i = 0; i < l->n; i++) free(l->keys[i]);
    free(l->keys);
    free(l->sizes);
    l->keys = NULL;
    l->sizes = NULL;
    l->n = l->cap = 0;
}

static bool listed(const Listing *l, const char *key, uint64_t *ret_size) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->keys[i], key) == 0) {
            if (ret_size) *ret_size = l->sizes[i];
            return true;
        }
    return false;
}

static int stop_at_two(const char *key, uint64_t size, void *ud) {
    (void)key;
    (void)size;
    int *n = ud;
    return ++*n == 2 ? -ECANCELED : 0;
}

static int cmd_basic(const char *url) {
    PrStore *s = open_store(url);
    CHECK_R(pr_store_create(s), 0);
    CHECK_R(pr_store_create(s), 0); /* exists already: still fine */

    const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
    CHECK_R(pr_store_put(s, "data/ab/abcdef", text, strlen(text)), 0);
    expect_object(s, "data/ab/abcdef", text, strlen(text));

    /* Ranges: inside, to the end, past the end, starting past the end. */
    expect_range(s, "data/ab/abcdef", text, 0, 10);
    expect_range(s, "data/ab/abcdef", text, 10, 5);
    expect_range(s, "data/ab/abcdef", text, 30, 0);
    expect_range(s, "data/ab/abcdef", text, 30, 100);
    expect_range(s, "data/ab/abcdef", text, 36, 0);
    expect_range(s, "data/ab/abcdef", text, 1000, 10);
    expect_range(s, "data/ab/abcdef", text, 35, 1);

    /* Overwrite, empty objects, a larger object, keys that need encoding. */
    CHECK_R(pr_store_put(s, "data/ab/abcdef", "new", 3), 0);
    expect_object(s, "data/ab/abcdef", "new", 3);
    CHECK_R(pr_store_put(s, "empty", "", 0), 0);
    expect_object(s, "empty", "", 0);
    expect_range(s, "empty", "", 0, 10);
    size_t big_len = 5 * 1024 * 1024 + 7;
    char *big = malloc(big_len);
    CHECK(big, "out of memory");
    for (size_t i = 0; i < big_len; i++) big[i] = (char)(i * 2654435761u >> 13);
    CHECK_R(pr_store_put(s, "data/cd/big", big, big_len), 0);
    expect_object(s, "data/cd/big", big, big_len);
    void *part = NULL;
    size_t part_len = 0;
    CHECK_R(pr_store_get(s, "data/cd/big", 4 * 1024 * 1024 + 3, 100000, &part, &part_len), 0);
    CHECK(part_len == 100000 && memcmp(part, big + 4 * 1024 * 1024 + 3, 100000) == 0, "big range");
    free(part);
    const char *odd[] = {"odd/a b+c=d&e", "odd/\xc3\xa9t\xc3\xa9 (1)!*'~.txt", "odd/x%2Fy;z:@$,", "odd/deep/er/key"};
    for (size_t i = 0; i < ELEMENTSOF(odd); i++) {
        CHECK_R(pr_store_put(s, odd[i], odd[i], strlen(odd[i])), 0);
        expect_object(s, odd[i], odd[i], strlen(odd[i]));
    }

    /* Missing keys: a quiet -ENOENT (the shell checks nothing was logged). */
    uint64_t size = 0;
    void *got = NULL;
    size_t got_len = 0;
    CHECK_R(pr_store_stat(s, "data/no/such", &size), -ENOENT);
    CHECK_R(pr_store_get(s, "data/no/such", 0, 0, &got, &got_len), -ENOENT);
    CHECK_R(pr_store_get(s, "data/no/such", 5, 10, &got, &got_len), -ENOENT);
    CHECK_R(pr_store_del(s, "data/no/such"), 0);

    /* Listing: prefixes, sizes, keys relative to the store's prefix, early stop. */
    Listing l = {0};
    CHECK_R(pr_store_list(s, "", collect, &l), 0);
    CHECK(l.n == 3 + ELEMENTSOF(odd), "listed %zu objects, expected %zu", l.n, 3 + ELEMENTSOF(odd));
    CHECK(listed(&l, "data/ab/abcdef", &size) && size == 3, "data/ab/abcdef not listed with size 3");
    CHECK(listed(&l, "empty", &size) && size == 0, "empty not listed with size 0");
    CHECK(listed(&l, "data/cd/big", &size) && size == big_len, "big not listed with its size");
    for (size_t i = 0; i < ELEMENTSOF(odd); i++) CHECK(listed(&l, odd[i], NULL), "%s not listed", odd[i]);
    listing_done(&l);
    CHECK_R(pr_store_list(s, "data/", collect, &l), 0);
    CHECK(l.n == 2, "data/ listed %zu", l.n);
    listing_done(&l);
    CHECK_R(pr_store_list(s, "odd/de", collect, &l), 0);
    CHECK(l.n == 1 && strcmp(l.keys[0], "odd/deep/er/key") == 0, "odd/de listed %zu", l.n);
    listing_done(&l);
    CHECK_R(pr_store_list(s, "nothing-here/", collect, &l), 0);
    CHECK(l.n == 0, "nothing-here/ listed %zu", l.n);
    int seen = 0;
    CHECK_R(pr_store_list(s, "", stop_at_two, &seen), -ECANCELED);
    CHECK(seen == 2, "callback ran %d times after asking to stop", seen);

    /* Delete one, then the rest at once (a missing key among them is fine). */
    CHECK_R(pr_store_del(s, "data/ab/abcdef"), 0);
    CHECK_R(pr_store_stat(s, "data/ab/abcdef", &size), -ENOENT);
    const char *rest[] = {"empty", "data/cd/big", odd[0], odd[1], odd[2], odd[3], "data/ab/abcdef"};
    CHECK_R(pr_store_s3_delete_many(s, rest, ELEMENTSOF(rest)), 0);
    CHECK_R(pr_store_list(s, "", collect, &l), 0);
    CHECK(l.n == 0, "%zu objects left after delete_many", l.n);
    listing_done(&l);

    /* Invalid keys never reach the network. */
    CHECK_R(pr_store_put(s, "/abs", "x", 1), -EINVAL);
    CHECK_R(pr_store_put(s, "", "x", 1), -EINVAL);
    free(big);
    pr_store_free(s);
    pr_store_free(NULL);
    printf("basic: ok\n");
    return 0;
}

typedef struct ManyCtx {
    PrStore *s;
    size_t n;
    unsigned threads;
    unsigned index;
    int phase; /* 0 put, 1 get */
} ManyCtx;

static void many_key(size_t i, char *key, size_t keylen) { snprintf(key, keylen, "many/%02zx/obj-%06zu", i % 251, i); }

static size_t many_content(size_t i, char *buf, size_t buflen) {
    int n = snprintf(buf, buflen, "object %zu;", i);
    size_t len = (size_t)n;
    size_t reps = i % 5;
    for (size_t r = 0; r < reps && len + (size_t)n < buflen; r++) {
        memmove(buf + len, buf, (size_t)n);
        len += (size_t)n;
    }
    return len;
}

static void *many_worker(void *arg) {
    ManyCtx *c = arg;
    char key[64], content[256];
    for (size_t i = c->index; i < c->n; i += c->threads) {
        many_key(i, key, sizeof key);
        size_t len = many_content(i, content, sizeof content);
        if (c->phase == 0) {
            CHECK_R(pr_store_put(c->s, key, content, len), 0);
        } else {
            void *got = NULL;
            size_t got_len = 0;
            CHECK_R(pr_store_get(c->s, key, 0, 0, &got, &got_len), 0);
            CHECK(got_len == len && memcmp(got, content, len) == 0, "%s: wrong content", key);
            free(got);
        }
    }
    return NULL;
}

static void run_threads(PrStore *s, size_t n, unsigned threads, int phase) {
    pthread_t t[64];
    ManyCtx ctx[64];
    for (unsigned i = 0; i < threads; i++) {
        ctx[i] = (ManyCtx){.s = s, .n = n, .threads = threads, .index = i, .phase = phase};
        CHECK(pthread_create(&t[i], NULL, many_worker, &ctx[i]) == 0, "pthread_create");
    }
    for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmd_many(const char *url, size_t n, unsigned threads) {
    CHECK(threads >= 1 && threads <= 64, "threads must be 1..64");
    PrStore *s = open_store(url);
    CHECK_R(pr_store_create(s), 0);
    double t0 = pr_now();
    run_threads(s, n, threads, 0);
    double t1 = pr_now();

    Listing l = {0};
    CHECK_R(pr_store_list(s, "many/", collect, &l), 0);
    double t2 = pr_now();
    /* Exact set equality: same count, no duplicates, every expected key with its size. */
    CHECK(l.n == n, "listed %zu objects, expected %zu", l.n, n);
    char **expect = calloc(n, sizeof *expect);
    CHECK(expect, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char key[64];
        many_key(i, key, sizeof key);
        expect[i] = strdup(key);
    }
    qsort(expect, n, sizeof *expect, cmp_str);
    char **got = malloc(n * sizeof *got);
    CHECK(got, "out of memory");
    memcpy(got, l.keys, n * sizeof *got);
    qsort(got, n, sizeof *got, cmp_str);
    for (size_t i = 0; i < n; i++) CHECK(strcmp(got[i], expect[i]) == 0, "listing differs at %zu: %s vs %s", i, got[i], expect[i]);
    for (size_t i = 0; i < l.n; i++) {
        size_t idx = (size_t)strtoull(strrchr(l.keys[i], '-') + 1, NULL, 10);
        char content[256];
        CHECK(l.sizes[i] == many_content(idx, content, sizeof content), "%s: listed size %llu", l.keys[i],
              (unsigned long long)l.sizes[i]);
    }
    free(got);

    run_threads(s, n, threads, 1);
    double t3 = pr_now();

    CHECK_R(pr_store_s3_delete_many(s, (const char *const *)expect, n), 0);
    double t4 = pr_now();
    listing_done(&l);
    CHECK_R(pr_store_list(s, "many/", collect, &l), 0);
    CHECK(l.n == 0, "%zu objects left after delete_many", l.n);
    for (size_t i = 0; i < n; i++) free(expect[i]);
    free(expect);
    pr_store_free(s);
    printf("many: ok: %zu objects, %u threads: put %.2fs, list %.2fs, get %.2fs, delete_many %.2fs\n", n, threads,
           t1 - t0, t2 - t1, t3 - t2, t4 - t3);
    return 0;
}

static int cmd_put(const char *url, const char *key, const char *text) {
    PrStore *s = open_store(url);
    CHECK_R(pr_store_put(s, key, text, strlen(text)), 0);
    expect_object(s, key, text, strlen(text));
    pr_store_free(s);
    printf("put: ok\n");
    return 0;
}

static int cmd_get(const char *url, const char *key) {
    PrStore *s = open_store(url);
    void *data = NULL;
    size_t len = 0;
    CHECK_R(pr_store_get(s, key, 0, 0, &data, &len), 0);
    CHECK(fwrite(data, 1, len, stdout) == len, "writing to stdout");
    free(data);
    pr_store_free(s);
    return 0;
}

static int cmd_roundtrip(const char *url) {
    PrStore *s = open_store(url);
    CHECK_R(pr_store_create(s), 0);
    CHECK_R(pr_store_put(s, "roundtrip", "hello", 5), 0);
    expect_object(s, "roundtrip", "hello", 5);
    CHECK_R(pr_store_del(s, "roundtrip"), 0);
    pr_store_free(s);
    printf("roundtrip: ok\n");
    return 0;
}

static int cmd_expect(const char *op, const char *url, int err) {
    PrStore *s = open_store(url);
    double t0 = pr_now();
    int r;
    void *data = NULL;
    size_t len = 0;
    uint64_t size = 0;
    Listing l = {0};
    if (strcmp(op, "get") == 0)
        r = pr_store_get(s, "data/ab/some-object", 0, 0, &data, &len);
    else if (strcmp(op, "stat") == 0)
        r = pr_store_stat(s, "data/ab/some-object", &size);
    else if (strcmp(op, "put") == 0)
        r = pr_store_put(s, "data/ab/some-object", "x", 1);
    else if (strcmp(op, "list") == 0)
        r = pr_store_list(s, "data/", collect, &l);
    else if (strcmp(op, "del") == 0)
        r = pr_store_del(s, "data/ab/some-object");
    else if (strcmp(op, "create") == 0)
        r = pr_store_create(s);
    else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    double dt = pr_now() - t0;
    free(data);
    listing_done(&l);
    pr_store_free(s);
    CHECK(r == -err, "%s returned %d (%s), expected %d (%s)", op, r, strerror(r < 0 ? -r : 0), -err, strerror(err));
    printf("expect %s: ok: %s after %.2fs\n", op, strerror(err), dt);
    return 0;
}

static int cmd_open_fails(const char *url, int err) {
    PrStore *s = NULL;
    int r = pr_store_open(url, NULL, &s);
    CHECK(r == -err, "open returned %d, expected %d", r, -err);
    CHECK(s == NULL, "store returned on failure");
    printf("open-fails: ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "basic") == 0) return cmd_basic(argv[2]);
    if (argc == 5 && strcmp(argv[1], "many") == 0)
        return cmd_many(argv[2], (size_t)strtoul(argv[3], NULL, 10), (unsigned)strtoul(argv[4], NULL, 10));
    if (argc == 5 && strcmp(argv[1], "put") == 0) return cmd_put(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "get") == 0) return cmd_get(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "roundtrip") == 0) return cmd_roundtrip(argv[2]);
    if (argc == 5 && strcmp(argv[1], "expect") == 0) return cmd_expect(argv[2], argv[3], parse_errno(argv[4]));
    if (argc == 4 && strcmp(argv[1], "open-fails") == 0) return cmd_open_fails(argv[2], parse_errno(argv[3]));
    fprintf(stderr,
            "usage: %s basic URL | many URL N THREADS | put URL KEY TEXT | get URL KEY | roundtrip URL |\n"
            "       expect get|stat|put|list|del|create URL ERRNO | open-fails URL ERRNO\n",
            argv[0]);
    return 2;
}
