/* SPDX-License-Identifier: MIT */
/* Repository locks (docs/format.md, "Locks"): objects locks/<random hex>.
 *
 * Writers (snapshot, forget without --prune) and readers (restore, check) take shared locks; prune
 * takes an exclusive one. Taking a lock = writing one's own lock object, then listing the others:
 * a shared lock yields to any live exclusive lock, an exclusive lock to any live lock at all;
 * yielding means deleting one's own object, waiting and trying again, until a deadline.
 *
 * A held lock is refreshed by a thread (a new object, then the old one deleted) every
 * PR_LOCK_REFRESH seconds. A lock is stale, and ignored, when it was not refreshed for PR_LOCK_STALE
 * seconds, or when it was written on this machine (same host name, boot and pid namespace) by a
 * process that no longer exists (so a SIGKILLed holder's lock is stale at once). SIGINT, SIGTERM and
 * SIGHUP received while a lock is held delete the lock before the process dies of the signal. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backend/repo.h"

#define PR_LOCK_REFRESH 300 /* seconds; PRAFS_LOCK_REFRESH overrides (tests) */
#define PR_LOCK_STALE 1800  /* seconds; PRAFS_LOCK_STALE overrides (tests) */

typedef struct PrLock PrLock;

/* Test hook: PRAFS_TEST_LOCK_PAUSE=shared|exclusive makes the process stop right after it took such
 * a lock (saying "lock: test pause after taking a shared lock" on stderr) until the file named by
 * PRAFS_TEST_LOCK_RESUME exists.
 *
 * Takes a shared or exclusive lock, waiting up to wait_seconds for conflicting locks to go (0: no
 * wait). -EBUSY when they did not, logged with the holder (host, pid, age). While it waits it says
 * so once on stderr, naming the holder. */
int pr_lock_acquire(PrRepo *r, bool exclusive, double wait_seconds, PrLock **ret);
/* Stops the refresh and deletes the lock object. NULL-safe. */
void pr_lock_release(PrLock *l);
static inline void pr_lock_releasep(PrLock **l) { pr_lock_release(*l); }
/* 0 while the lock is certainly still ours; -ENOLCK (logged) once it could not be refreshed for so
 * long that others may have taken it for stale, even if it was written again since: an exclusive
 * holder must not delete anything then, a writer must not publish (a prune may have removed what it
 * wrote or reused). */
int pr_lock_check(PrLock *l);
bool pr_lock_is_exclusive(const PrLock *l);

typedef struct PrLockInfo {
    char key[96];
    bool readable;  /* false: the object does not decode (damaged); such locks are ignored */
    bool exclusive;
    char host[256];
    uint32_t pid;
    int64_t time_sec; /* when it was last written, UTC, by the holder's clock */
    double age;       /* seconds since then, by this machine's clock (0 if in the future) */
    bool same_machine;
    bool stale;
    bool ours; /* held by this process */
} PrLockInfo;

/* Every lock object. *ret malloc'ed. */
int pr_lock_list(PrRepo *r, PrLockInfo **ret, size_t *ret_n);
/* Deletes stale (and unreadable) locks, or all of them with all. *ret_removed (malloc'ed) lists
 * what was removed. Never removes this process's own locks. */
int pr_lock_remove(PrRepo *r, bool all, PrLockInfo **ret_removed, size_t *ret_n);
/* "host pra-1, pid 4242, 3m12s ago" */
void pr_lock_describe(const PrLockInfo *i, char *buf, size_t size);
