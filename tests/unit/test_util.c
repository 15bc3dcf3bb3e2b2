/* SPDX-License-Identifier: MIT */
/* The small helpers of cache/util.h that are more than a line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "cache/util.h"

#define MiB ((size_t)1 << 20)

/* Whether the mapping holding address a carries the huge-page advice ("hg" in its VmFlags), and
 * where that mapping starts and ends. */
static bool advised(uintptr_t a, uintptr_t *lo, uintptr_t *hi) {
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool in = false, hg = false, found = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
            in = a >= s && a < e;
            if (in) *lo = s, *hi = e;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            hg = strstr(line, " hg") != NULL;
            found = true;
            break;
        }
    }
    fclose(f);
    assert_true(found);
    return hg;
}

static void test_advise_huge(void **state) {
    (void)state;
    uint8_t *m = mmap(NULL, 12 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    if (madvise(m, 4096, MADV_HUGEPAGE) != 0) { /* a kernel without transparent huge pages */
        munmap(m, 12 * MiB);
        skip();
    }
    madvise(m, 4096, MADV_NOHUGEPAGE);
    uintptr_t base = ((uintptr_t)m + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1);
    uint8_t *p = (uint8_t *)base + 4096; /* a buffer that starts just past a 2 MiB boundary */
    uintptr_t lo, hi;

    pr_mem_advise_huge(NULL, 8 * MiB);
    pr_mem_advise_huge(p, 2 * MiB); /* holds no whole 2 MiB page */
    assert_false(advised((uintptr_t)p, &lo, &hi));

    pr_mem_advise_huge(p, 7 * MiB); /* whole 2 MiB pages: base + 2 MiB up to base + 6 MiB */
    assert_false(advised((uintptr_t)p, &lo, &hi));
    assert_true(advised(base + 2 * MiB, &lo, &hi));
    assert_int_equal(lo, base + 2 * MiB);
    assert_int_equal(hi, base + 6 * MiB);
    assert_false(advised(base + 6 * MiB, &lo, &hi));

    /* the buffer stays usable */
    memset(p, 0xa5, 7 * MiB);
    assert_int_equal(p[7 * MiB - 1], 0xa5);
    munmap(m, 12 * MiB);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_advise_huge)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
