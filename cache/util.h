/* SPDX-License-Identifier: MIT */
/* Small helpers every layer uses: cleanup attributes, ownership transfer, logging, hex.
 * cache/ is the leaf library, so these live here and depend on nothing but libc. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_ __attribute__((warn_unused_result))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Hand ownership out of a _cleanup_ variable: returns the pointer and leaves NULL behind. */
#define TAKE_PTR(p)                      \
    ({                                   \
        __typeof__(p) _tp_ = (p);        \
        (p) = NULL;                      \
        _tp_;                            \
    })
#define TAKE_FD(fd)                      \
    ({                                   \
        int _tf_ = (fd);                 \
        (fd) = -1;                       \
        _tf_;                            \
    })

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) {
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Logging. Levels: 0 error, 1 warning, 2 info, 3 debug. The default level is 1; PRAFS_DEBUG=1 in the
 * environment (or pr_log_set_level) raises it. Messages go to stderr prefixed with "prafs: ". */
enum { PR_LOG_ERR = 0, PR_LOG_WARN = 1, PR_LOG_INFO = 2, PR_LOG_DEBUG = 3 };
void pr_log_set_level(int level);
int pr_log_get_level(void);
void pr_log(int level, const char *fmt, ...) _printf_(2, 3);
/* Logs at error level with ": <strerror(err)>" appended and returns -abs(err), so that
 *   return pr_log_errno(r, "reading %s", key);
 * both reports and propagates. */
int pr_log_errno(int err, const char *fmt, ...) _printf_(2, 3);
#define pr_debug(...) \
    do { if (pr_log_get_level() >= PR_LOG_DEBUG) pr_log(PR_LOG_DEBUG, __VA_ARGS__); } while (0)

/* For a buffer of several MiB that is filled and read again and again (a GET's body, a decoded
 * blob): asks the kernel to back the whole 2 MiB pages inside it with huge pages as they are first
 * touched. One fault then maps 2 MiB instead of 4 KiB; under a hypervisor that shadows page tables a
 * fault costs 10-20 us. Advice only: nothing changes if the kernel declines. */
void pr_mem_advise_huge(void *p, size_t n);

/* Lower-case hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void pr_hex(const void *data, size_t len, char *out);
/* Parses exactly 2*len hex digits; returns 0 or -EINVAL. */
int pr_unhex(const char *hex, void *out, size_t len);

/* Monotonic clock in seconds. */
double pr_now(void);

/* Test hooks: when environment variable pause_var equals phase, logs message (a warning, which the
 * tests wait for) and holds the calling thread until the file named by resume_var exists (at most
 * an hour), so that tests can see what others do meanwhile. */
void pr_test_pause(const char *pause_var, const char *phase, const char *resume_var, const char *message);

/* Little-endian load/store. */
static inline void pr_put_u16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void pr_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void pr_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t pr_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t pr_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t pr_get_u64(const uint8_t *p) {
    return (uint64_t)pr_get_u32(p) | ((uint64_t)pr_get_u32(p + 4) << 32);
}
