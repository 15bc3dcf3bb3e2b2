/* SPDX-License-Identifier: MIT */
/* The index as its files say it, pack by pack, each pack with the index file that names it: what
 * check (which names the index file at fault in its reports) and prune (which deletes the index files
 * it read once it has published their replacement) work from. The repository's own lookup index
 * (pr_repo_load_index) is by blob and keeps no file names. */
#pragma once

#include <sys/types.h>

#include "backend/repo.h"

/* Keys listed from a store, with the sizes the listing gave. */
typedef struct PrKeyList {
    char **v;
    uint64_t *sizes;
    size_t n;
} PrKeyList;
/* A pr_store_list callback: appends key and size to the PrKeyList userdata. */
int pr_key_list_add(const char *key, uint64_t size, void *userdata);
/* Frees the keys and empties the list (a second call is harmless). */
void pr_key_list_clear(PrKeyList *l);

typedef struct PrIndexedPack {
    PrId id;
    PrBlobRef *blobs; /* as the index file lists them; owned by the PrPackIndex */
    uint32_t n;
    uint32_t file; /* the first index file naming the pack: its place in PrPackIndex.files */
} PrIndexedPack;

typedef struct PrPackIndex {
    PrKeyList files;      /* every index file listed, read or not */
    PrIndexedPack *packs; /* sorted by id; a pack several index files name is here once */
    size_t npacks;
    uint64_t bytes_read; /* of the index files whose packs are here */
} PrPackIndex;

typedef struct PrPackIndexOptions {
    /* An index file gone between the listing and the read is skipped (a prune replaced it
     * meanwhile); without this, that fails the load like any other read. */
    bool missing_ok;
    /* An index file that does not decode (err: the decoder's -errno, -ENOMEM included): return 0 to
     * go on without any of its packs, or a -errno to end the load with it. Required. */
    int (*damaged)(const char *key, int err, void *userdata);
    /* Before index file `done` of `total` is read; may be NULL. */
    void (*progress)(size_t done, size_t total, void *userdata);
    void *userdata;
} PrPackIndexOptions;

/* Lists index/ and reads every index file into *ret. A listing or read that fails is logged and
 * returned. *ret holds what was loaded even on failure: free it with pr_pack_index_clear in every
 * case. */
int pr_pack_index_load(PrRepo *r, const PrPackIndexOptions *opts, PrPackIndex *ret);
void pr_pack_index_clear(PrPackIndex *x);
/* The place of a pack in x->packs, or -1 if the index names no such pack. */
ssize_t pr_pack_index_find(const PrPackIndex *x, const PrId *id);
