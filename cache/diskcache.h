/* SPDX-License-Identifier: MIT */
/* Disk cache of blobs as stored (still encrypted): bytes by 32-byte id, one file per entry under
 * DIR/<xx>/<64 hex digits>, bounded in bytes. It knows nothing of what the bytes mean: whoever reads
 * an entry verifies it (the normal blob decode) and calls pr_diskcache_remove when it is bad.
 *
 * Safe to share between processes and threads: entries are written to a temporary name in the same
 * directory and renamed into place (a reader sees a whole entry or none), nothing is ever modified
 * in place, and eviction only unlinks (a reader holding the file open keeps its bytes). Writes are
 * not fsync'ed: after a crash an entry may be empty or short, which the reader's verification catches.
 *
 * Eviction: each process tracks the total it knows of (a scan at open plus its own writes); when that
 * exceeds the bound it rescans the directory (seeing other processes' entries too) and deletes the
 * entries used longest ago (the later of atime and mtime; a hit refreshes atime) down to 90% of the
 * bound. Stale temporary files (older than an hour) go in the same scan. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct PrDiskCache PrDiskCache;

/* Opens (creating it and its parents, mode 0700) the cache directory dir with a bound of max_bytes
 * (> 0). Scans it once to learn its size, evicting if it is over the bound already. */
int pr_diskcache_open(const char *dir, uint64_t max_bytes, PrDiskCache **ret);
/* NULL-safe. */
void pr_diskcache_free(PrDiskCache *c);
static inline void pr_diskcache_freep(PrDiskCache **c) { pr_diskcache_free(*c); }

/* The default directory for a repository: $XDG_CACHE_HOME/prafs/<repo_id_hex>, else
 * $HOME/.cache/prafs/<repo_id_hex>. *ret is malloc'ed. -ENOENT if neither variable is set. */
int pr_diskcache_default_dir(const char *repo_id_hex, char **ret);

/* Reads the entry for key: 0 and *ret (malloc'ed, *ret_len bytes), -ENOENT if absent, -EFBIG if it
 * is larger than max_len (the entry is removed). Refreshes the entry's atime. */
int pr_diskcache_get(PrDiskCache *c, const uint8_t key[32], size_t max_len, void **ret, size_t *ret_len);
/* Stores len bytes under key (temp + rename; replaces an entry that is there). May evict. */
int pr_diskcache_put(PrDiskCache *c, const uint8_t key[32], const void *data, size_t len);
/* Deletes the entry for key; a missing entry is not an error. */
int pr_diskcache_remove(PrDiskCache *c, const uint8_t key[32]);
/* Rescans now and evicts down to 90% of the bound if over it. */
int pr_diskcache_trim(PrDiskCache *c);
/* Bytes and entries this process believes the cache holds. */
void pr_diskcache_usage(PrDiskCache *c, uint64_t *ret_bytes, uint64_t *ret_count);
