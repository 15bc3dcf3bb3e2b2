/* SPDX-License-Identifier: MIT */
/* Repository format v1: the encodings of blobs, pack trailers, index files, trees and snapshot
 * manifests (docs/format.md). Pure functions over memory: no I/O here.
 *
 * Everything decoded comes from the store and is untrusted: every length and count is checked
 * against the bytes actually present before use, and decoders return -EBADMSG on anything
 * malformed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/crypto.h"

#define PR_FORMAT_VERSION 1

/* Caps on untrusted sizes. */
#define PR_MAX_BLOB (64u << 20)       /* raw and stored size of one blob */
#define PR_MAX_PACK (1u << 30)        /* one pack object */
#define PR_MAX_NAME 4096u             /* one name inside a tree (Linux allows 255) */
#define PR_MAX_XATTR_VALUE (1u << 20) /* one xattr value */

enum { PR_BLOB_DATA = 0, PR_BLOB_TREE = 1 };

/* ---- blobs ---- */

/* Stored form of a blob: sealed(enc key, aad = id, [u8 compression] || payload), compression 0 = none,
 * 1 = zstd frame. zstd level 3 (one context per thread), level 1 for data with no matches, none for a
 * small incompressible blob (see pr_blob_prepare) or when compression does not shrink it. *ret is
 * malloc'ed. */
int pr_blob_encode(const PrKeys *keys, const PrId *id, const void *data, size_t len, void **ret, size_t *ret_len);

/* Blobs longer than this are sampled before compression (see pr_blob_prepare). */
#define PR_BLOB_SAMPLE_MIN (8u << 10)

/* pr_blob_encode in two steps, so that the caller can seal a blob straight into its destination
 * once it knows the stored length: the plaintext to seal, a flag byte and a payload. */
typedef struct PrBlobPlain {
    uint8_t flag;           /* 0 stored as is, 1 zstd */
    const uint8_t *payload; /* the caller's data, or the calling thread's compression buffer */
    size_t len;
} PrBlobPlain;
/* Decides how to store data and compresses it if worth it. Blobs longer than PR_BLOB_SAMPLE_MIN are
 * sampled first (a few spots at zstd level 1): under 256 KiB a sample that does not shrink stores
 * the blob raw; a sample that does no better than its order-0 entropy (no matches) has the blob
 * compressed at level 1; otherwise level 3. ret->payload stays valid while data does and until
 * this thread's next call. */
int pr_blob_prepare(const void *data, size_t len, PrBlobPlain *ret);
static inline size_t pr_blob_stored_len(const PrBlobPlain *p) { return 1 + p->len + PR_SEAL_OVERHEAD; }
/* Seals a prepared blob into out (pr_blob_stored_len bytes), on the thread that prepared it. */
int pr_blob_seal(const PrKeys *keys, const PrId *id, const PrBlobPlain *p, uint8_t *out);

/* Verifies and decrypts a stored blob, then decompresses it. raw_len is the expected plaintext
 * length (from the index): a mismatch is -EBADMSG. *ret is malloc'ed (raw_len bytes, at least 1). */
int pr_blob_decode(const PrKeys *keys, const PrId *id, const void *stored, size_t len, uint32_t raw_len, void **ret);
/* As pr_blob_decode, into out (room for raw_len bytes): a stored-raw blob is decrypted straight
 * into it. out is zeroed if the blob does not authenticate. */
int pr_blob_decode_into(const PrKeys *keys, const PrId *id, const void *stored, size_t len, uint32_t raw_len,
                        void *out);

/* ---- index entries, pack trailers, index files ---- */

typedef struct PrBlobRef {
    PrId id;
    uint8_t type;        /* PR_BLOB_* */
    uint32_t offset;     /* inside the pack */
    uint32_t length;     /* stored length */
    uint32_t raw_length; /* plaintext length */
} PrBlobRef;

/* Pack trailer: sealed(aad = "prafs pack trailer v1", u32 count || count x blob refs) followed by
 * u32 length of the sealed part. Encodes the trailer for blobs[0..n) (appended to buf by the caller). */
int pr_pack_trailer_encode(const PrKeys *keys, const PrBlobRef *blobs, uint32_t n, void **ret, size_t *ret_len);
/* Parses the trailer from the tail of a pack of pack_len bytes (tail holds its last tail_len bytes).
 * -EAGAIN with *ret_need set if tail_len is too short to hold the whole trailer. Checks that every
 * blob lies inside the pack before the trailer. *ret is malloc'ed. */
int pr_pack_trailer_decode(const PrKeys *keys, const void *tail, size_t tail_len, uint64_t pack_len,
                           PrBlobRef **ret, uint32_t *ret_n, size_t *ret_need);

typedef struct PrIndexPack {
    PrId pack;
    PrBlobRef *blobs;
    uint32_t n;
} PrIndexPack;

/* Index file: sealed(aad = "prafs index v1", u32 version || u32 npacks || per pack: id || u32 n ||
 * n blob refs). */
int pr_index_file_encode(const PrKeys *keys, const PrIndexPack *packs, uint32_t npacks, void **ret, size_t *ret_len);
/* Calls fn once per pack; the PrIndexPack is valid during the call only. */
int pr_index_file_decode(const PrKeys *keys, const void *data, size_t len,
                         int (*fn)(const PrIndexPack *p, void *userdata), void *userdata);

/* ---- trees ---- */

enum {
    PR_NODE_FILE = 1,
    PR_NODE_DIR = 2,
    PR_NODE_SYMLINK = 3,
    PR_NODE_CHR = 4,
    PR_NODE_BLK = 5,
    PR_NODE_FIFO = 6,
    PR_NODE_SOCK = 7,
};

typedef struct PrChunkRef {
    PrId id; /* all zero: a hole of `length` zero bytes, stored nowhere */
    uint32_t length;
} PrChunkRef;

typedef struct PrXattr {
    char *name;
    uint8_t *value;
    uint32_t len;
} PrXattr;

typedef struct PrNode {
    char *name; /* no '/', no NUL, not "." or "..", 1..255 bytes */
    uint8_t type;
    uint32_t mode; /* permission bits, 07777 */
    uint32_t uid, gid;
    int64_t mtime_sec, ctime_sec;
    uint32_t mtime_nsec, ctime_nsec;
    uint64_t size;   /* files: content length; symlinks: target length */
    uint64_t inode;  /* source inode, for change detection only */
    uint64_t nlink;  /* source link count */
    uint64_t rdev;   /* devices */
    uint64_t link_group; /* files with nlink > 1: equal non-zero values inside one volume are one file */
    char *target;    /* symlinks */
    PrId subtree;    /* directories */
    uint32_t nchunks;
    PrChunkRef *chunks; /* files: cover exactly `size` bytes */
    uint32_t nxattrs;
    PrXattr *xattrs; /* sorted by name; includes system.posix_acl_access/default */
} PrNode;

typedef struct PrTree {
    uint32_t n;
    PrNode *nodes; /* sorted by name, bytewise, no duplicates */
} PrTree;

/* Frees what a node owns (not the node itself). */
void pr_node_clear(PrNode *n);
void pr_tree_free(PrTree *t);
static inline void pr_tree_freep(PrTree **t) { pr_tree_free(*t); }
/* Deep copy of src into *ret. */
int pr_node_copy(const PrNode *src, PrNode *ret);
/* A deep copy of n attributes into *ret (NULL when n is 0). On -ENOMEM, *ret and *ret_n hold what
 * was copied so far, for the node that owns them to free. */
int pr_xattrs_copy(const PrXattr *src, uint32_t n, PrXattr **ret, uint32_t *ret_n);

/* Tree blob: "PRTR" || u8 version(1) || u32 count || count entries (docs/format.md). Nodes must be
 * sorted; -EINVAL otherwise. */
int pr_tree_encode(const PrTree *t, void **ret, size_t *ret_len);
/* Validates everything: names (no '/', NUL, "." or ".."; sorted, unique), types, counts, lengths,
 * chunk lengths adding up to the size. */
int pr_tree_decode(const void *data, size_t len, PrTree **ret);
/* Binary search by name; NULL if absent. */
const PrNode *pr_tree_find(const PrTree *t, const char *name);

/* ---- snapshot manifests ---- */

typedef struct PrSnapshotVolume {
    char *name;
    uint64_t files, dirs, bytes;
} PrSnapshotVolume;

typedef struct PrSnapshot {
    PrId id; /* SHA-256 of the stored manifest: filled by the reader, not encoded */
    int64_t time_sec;
    uint32_t time_nsec;
    char *host;
    uint32_t ntags;
    char **tags;
    bool has_parent;
    PrId parent;
    PrId root; /* tree whose entries are the volumes (directories named after them) */
    uint32_t nvolumes;
    PrSnapshotVolume *volumes;
    uint64_t files, dirs, bytes_read, bytes_new, bytes_uploaded;
    uint64_t duration_ms;
    char *program_version;
    /* entries that carry a POSIX ACL (system.posix_acl_access or _default); PR_ACL_UNKNOWN for
     * manifests written before the field existed */
    uint64_t acl_entries;
    /* entries that carry any extended attribute (ACLs included); likewise PR_ACL_UNKNOWN */
    uint64_t xattr_entries;
    char label[40]; /* display time, unique in the repository ("2026-11-25T02:00:00Z", "...Z-1"): filled by the lister */
} PrSnapshot;

#define PR_ACL_UNKNOWN UINT64_MAX

void pr_snapshot_free(PrSnapshot *s);
static inline void pr_snapshot_freep(PrSnapshot **s) { pr_snapshot_free(*s); }
/* Manifest: sealed(aad = "prafs snapshot v1", "PRSN" || u8 version || fields). */
int pr_snapshot_encode(const PrKeys *keys, const PrSnapshot *s, void **ret, size_t *ret_len);
int pr_snapshot_decode(const PrKeys *keys, const void *data, size_t len, PrSnapshot **ret);

static inline bool pr_id_is_zero(const PrId *id) {
    for (int i = 0; i < PR_ID_LEN; i++)
        if (id->b[i]) return false;
    return true;
}
