/* SPDX-License-Identifier: MIT */
/* S3-only extras of the store (the store itself is opened with pr_store_open / pr_store_s3_open). */
#pragma once

#include <stddef.h>

#include "backend/store.h"

/* Deletes n_keys objects (keys as given to the store's other functions, without its prefix). On S3
 * this is the multi-object delete (POST ?delete, Content-MD5, 1000 keys per request); on any other
 * store the keys are deleted one by one. A missing key is not an error. Returns 0, or the first
 * error (logged) after trying every batch. */
int pr_store_s3_delete_many(PrStore *s, const char *const *keys, size_t n_keys);
