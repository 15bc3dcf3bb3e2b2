/* SPDX-License-Identifier: MIT */
/* FastCDC with normalised chunking, level 2. The exact algorithm (gear table, masks, loop) is
 * specified in docs/format.md, "Chunking"; any change here changes every chunk boundary. */
#include "backend/chunker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/crypto.h"
#include "cache/util.h"

#define CHUNKER_MIN_MIN 64u
#define CHUNKER_MAX_MAX (64u * 1024 * 1024)
#define NC_LEVEL 2
/* Mask bits are spread evenly over bits MASK_LOW..63 of the gear hash. */
#define MASK_LOW 16
#define MASK_SPAN (64 - MASK_LOW)

struct PrChunker {
    uint32_t min_size, avg_size, max_size;
    uint64_t mask_s; /* log2(avg) + 2 one-bits: used before avg_size (harder to match) */
    uint64_t mask_l; /* log2(avg) - 2 one-bits: used from avg_size to max_size (easier) */
    uint64_t gear[256];
};

/* k one-bits (1 <= k <= MASK_SPAN) at positions 63 - floor(i * MASK_SPAN / k), i = 0..k-1. */
static uint64_t spread_mask(unsigned k) {
    uint64_t m = 0;
    for (unsigned i = 0; i < k; i++) m |= UINT64_C(1) << (63 - (i * MASK_SPAN) / k);
    return m;
}

static unsigned log2_u32(uint32_t v) {
    unsigned l = 0;
    while (v >>= 1) l++;
    return l;
}

int pr_chunker_new(const PrChunkerParams *params, PrChunker **ret) {
    if (!params || !ret) return -EINVAL;
    uint32_t min = params->min_size, avg = params->avg_size, max = params->max_size;
    if (min < CHUNKER_MIN_MIN || min >= avg || avg >= max || max > CHUNKER_MAX_MAX) return -EINVAL;
    if ((avg & (avg - 1)) != 0) return -EINVAL;

    /* avg is a power of two in (64, 64 MiB): 7 <= bits <= 25, so both masks have 5..27 bits. */
    unsigned bits = log2_u32(avg);

    PrChunker *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->min_size = min;
    c->avg_size = avg;
    c->max_size = max;
    c->mask_s = spread_mask(bits + NC_LEVEL);
    c->mask_l = spread_mask(bits - NC_LEVEL);

    uint8_t msg[9], digest[32];
    pr_put_u64(msg, params->seed);
    for (unsigned i = 0; i < 256; i++) {
        msg[8] = (uint8_t)i;
        pr_sha256(msg, sizeof msg, digest);
        c->gear[i] = pr_get_u64(digest);
    }

    *ret = c;
    return 0;
}

void pr_chunker_free(PrChunker *c) { free(c); }

size_t pr_chunker_cut(const PrChunker *c, const uint8_t *data, size_t len) {
    if (len <= c->min_size) return len;
    size_t n = MIN(len, (size_t)c->max_size);
    size_t normal = MIN(n, (size_t)c->avg_size);
    const uint64_t *gear = c->gear;
    const uint64_t mask_s = c->mask_s, mask_l = c->mask_l;
    uint64_t h = 0;
    size_t i = c->min_size;

    for (; i < normal; i++) {
        h = (h << 1) + gear[data[i]];
        if ((h & mask_s) == 0) return i + 1;
    }
    for (; i < n; i++) {
        h = (h << 1) + gear[data[i]];
        if ((h & mask_l) == 0) return i + 1;
    }
    return n;
}
