/* SPDX-License-Identifier: MIT */
/* A repository: a store plus its config, master keys and index (docs/format.md). */
#pragma once

#include <stdbool.h>

#include "backend/chunker.h"
#include "backend/crypto.h"
#include "backend/format.h"
#include "backend/store.h"

#define PR_PACK_TARGET (16u << 20)

typedef struct PrRepo PrRepo;

typedef struct PrRepoConfig {
    uint32_t version;
    uint8_t id[32];
    PrChunkerParams chunker; /* seed derived from the keys, not stored */
    uint32_t pack_size;
} PrRepoConfig;

/* Creates config and keys/<id> in an empty store (the store is created if needed: directory or
 * bucket). -EEXIST if a config is already there. Takes ownership of store in every case. */
int pr_repo_init(PrStore *store, const char *password, const PrScryptParams *scrypt, PrRepo **ret);
/* Opens an existing repository: reads config, tries every key file with password (-EACCES: no key
 * opens with it; -ENOENT: no repository there). Takes ownership of store in every case. */
int pr_repo_open(PrStore *store, const char *password, PrRepo **ret);
PrRepo *pr_repo_ref(PrRepo *r);
void pr_repo_unref(PrRepo *r);
static inline void pr_repo_unrefp(PrRepo **r) { pr_repo_unref(*r); }

/* Borrowed; valid as long as the repo. */
PrStore *pr_repo_store(PrRepo *r);
const PrKeys *pr_repo_keys(PrRepo *r);
const PrRepoConfig *pr_repo_config(PrRepo *r);
const PrChunker *pr_repo_chunker(PrRepo *r);

/* "data/ab/abcd..." for a pack id. */
void pr_pack_key(const PrId *pack, char *buf); /* buf: PR_PACK_KEY_MAX bytes */
#define PR_PACK_KEY_MAX 80
/* The pack id of such a key; -EINVAL for any other key (as a listing of data/ may hold). */
int pr_pack_key_parse(const char *key, PrId *ret);

/* Loads every index file (once; later calls are no-ops unless reload is set). */
int pr_repo_load_index(PrRepo *r, bool reload);
/* Loads the index if needed and builds its per-pack view (what pr_repo_pack_blobs uses): a reader
 * that starts (a mount) calls it ahead of the first request, off the request's path. */
int pr_repo_prepare_index(PrRepo *r);
typedef struct PrBlobLoc {
    PrId pack;
    PrBlobRef ref;
} PrBlobLoc;
/* 0 and *ret if the blob is indexed, -ENOENT if not. Loads the index if needed. Thread-safe. */
int pr_repo_find_blob(PrRepo *r, const PrId *id, PrBlobLoc *ret);
/* Every indexed blob of one pack, sorted by offset (*ret malloc'ed). -ENOENT for an unknown pack.
 * Lets a reader fetch a window of a pack in one request and keep the neighbours. Thread-safe. */
int pr_repo_pack_blobs(PrRepo *r, const PrId *pack, PrBlobRef **ret, uint32_t *ret_n);
/* The messages of a blob of pack object `key` that does not decode (-EBADMSG: fails authentication;
 * returns err), and of one the object ends before (returns -EBADMSG). Logged, with the object's
 * name, by whoever reads packs (restore, check, the mount). */
int pr_log_blob_damaged(const char *key, const PrId *id, uint32_t offset, int err);
int pr_log_blob_truncated(const char *key, uint32_t offset, uint32_t length);
/* Called once per blob of a window, in order: plain is the verified plaintext (raw_length bytes,
 * valid during the call) or NULL with err < 0 (already logged with the pack's key). A negative
 * return stops the window. */
typedef int (*PrBlobFn)(const PrBlobRef *b, const void *plain, int err, void *userdata);
/* Fetches the range of a pack covering blobs[0..n) (sorted by offset, distinct) in one request and
 * hands out each blob verified and decoded. A failed request is returned (logged), fn not called. */
int pr_repo_read_pack_window(PrRepo *r, const PrId *pack, const PrBlobRef *blobs, size_t n, PrBlobFn fn,
                             void *userdata);
/* Reads, verifies, decrypts and decompresses a blob. A damaged blob is -EBADMSG, logged with the
 * pack's key. *ret is malloc'ed; *ret_len its length. Thread-safe. */
int pr_repo_read_blob(PrRepo *r, const PrId *id, void **ret, size_t *ret_len);
int pr_repo_read_tree(PrRepo *r, const PrId *id, PrTree **ret);

/* Every snapshot, sorted by time (then id), labels filled in. *ret is an array of *ret_n pointers;
 * free with pr_snapshot_list_free. */
int pr_repo_list_snapshots(PrRepo *r, PrSnapshot ***ret, size_t *ret_n);
void pr_snapshot_list_free(PrSnapshot **list, size_t n);
/* Sorts by time (then id) and fills in the labels: the one place labels are made. */
void pr_snapshot_list_sort(PrSnapshot **list, size_t n);
/* Resolves "latest", a label as listed, or a unique id prefix. -ENOENT if none matches, -EEXIST if
 * an id prefix is ambiguous (both logged). */
int pr_repo_find_snapshot(PrRepo *r, const char *spec, PrSnapshot **ret);
/* Formats a snapshot label's base (UTC, second precision) into buf (>= 32 bytes). */
void pr_format_time(int64_t sec, char *buf, size_t size);

/* Resolves "volume/sub/path" inside a snapshot ("" or NULL: the root whose entries are the volumes).
 * *ret is a deep copy of the node (for the root: a directory node named "" whose subtree is the
 * snapshot's root). Free with pr_node_clear. */
int pr_repo_resolve(PrRepo *r, const PrSnapshot *s, const char *path, PrNode *ret);
