/* SPDX-License-Identifier: MIT */
/* Content-defined chunking: FastCDC with normalised chunking (Xia et al., 2016/2020).
 * The gear table is derived from a per-repository seed kept in the config object, so chunk
 * boundaries are reproducible for one repository and differ between repositories. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct PrChunkerParams {
    uint32_t min_size; /* 256 KiB */
    uint32_t avg_size; /* 1 MiB, a power of two */
    uint32_t max_size; /* 4 MiB */
    uint64_t seed;
} PrChunkerParams;

typedef struct PrChunker PrChunker;

/* -EINVAL unless 64 <= min < avg < max <= 64 MiB and avg is a power of two. */
int pr_chunker_new(const PrChunkerParams *params, PrChunker **ret);
void pr_chunker_free(PrChunker *c);

/* Length of the chunk that starts at data[0]. The caller passes len == max_size bytes, or fewer only
 * when they are all that is left of the stream; the result is in [1, len] (len itself when
 * len <= min_size or when no cut point lies in the window). Pure: no state between calls. */
size_t pr_chunker_cut(const PrChunker *c, const uint8_t *data, size_t len);
