/* SPDX-License-Identifier: MIT */
#include "backend/store.h"

#include <errno.h>
#include <string.h>

int pr_store_open(const char *location, const PrStoreOptions *opts, PrStore **ret) {
    if (!location || !*location || !ret) return -EINVAL;
    if (strncmp(location, "s3://", 5) == 0) return pr_store_s3_open(location, opts, ret);
    return pr_store_local_open(location, ret);
}

void pr_store_free(PrStore *s) {
    if (s) s->ops->free(s);
}
