/* SPDX-License-Identifier: MIT */
#include "cache/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = -1;

int pr_log_get_level(void) {
    int l = atomic_load(&log_level);
    if (l < 0) {
        const char *e = getenv("PRAFS_DEBUG");
        /* PRAFS_DEBUG=info: the summaries (a mount's fetch counts at unmount) without the per-request
         * debug lines; any other non-empty value but 0: everything */
        l = !e || !*e || strcmp(e, "0") == 0 ? PR_LOG_WARN : strcmp(e, "info") == 0 ? PR_LOG_INFO : PR_LOG_DEBUG;
        atomic_store(&log_level, l);
    }
    return l;
}

void pr_log_set_level(int level) { atomic_store(&log_level, level); }

static void vlog(const char *fmt, va_list ap, int err) {
    char buf[2048];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    if (err) snprintf(buf + n, sizeof buf - (size_t)n, ": %s", strerror(err));
    fprintf(stderr, "prafs: %s\n", buf);
}

void pr_log(int level, const char *fmt, ...) {
    if (level > pr_log_get_level()) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, 0);
    va_end(ap);
}

int pr_log_errno(int err, const char *fmt, ...) {
    int saved = errno;
    if (err < 0) err = -err;
    if (err == 0) err = EIO;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, err);
    va_end(ap);
    errno = saved;
    return -err;
}

void pr_mem_advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + n) & ~(huge - 1);
    if (p && e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

void pr_hex(const void *data, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int pr_unhex(const char *hex, void *out, size_t len) {
    uint8_t *o = out;
    for (size_t i = 0; i < len; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0) return -EINVAL;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0) return -EINVAL;
        o[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * len] == 0 ? 0 : -EINVAL;
}

double pr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void pr_test_pause(const char *pause_var, const char *phase, const char *resume_var, const char *message) {
    const char *want = getenv(pause_var);
    if (!want || strcmp(want, phase) != 0) return;
    const char *resume = getenv(resume_var);
    pr_log(PR_LOG_WARN, "%s", message);
    double end = pr_now() + 3600;
    while (pr_now() < end && !(resume && *resume && access(resume, F_OK) == 0)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
