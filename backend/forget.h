/* SPDX-License-Identifier: MIT */
/* The forget policy: which snapshots to keep and which to remove. Pure computation, no I/O.
 *
 * Semantics are restic's ("Removing snapshots according to a policy"), with time buckets in UTC:
 *  - snapshots are first restricted by the filters (hosts, tags, volumes); the others are not
 *    considered at all (neither kept nor removed by this run);
 *  - the considered ones are grouped by host and by the set of their volume names; each group gets
 *    the policy on its own;
 *  - inside a group, newest first: --keep-last N keeps the N most recent; --keep-hourly/daily/
 *    weekly/monthly/yearly N keep, for the last N hours/days/ISO weeks/months/years that have
 *    snapshots, the most recent snapshot of each; a bucket rule that still has counts left when it
 *    reaches the oldest snapshot of the group keeps that one too (restic >= 0.17); --keep-tag keeps
 *    every snapshot holding all the tags of one of its lists, without counting; a snapshot kept by
 *    any rule is kept;
 *  - a count of PR_FORGET_UNLIMITED (-1) keeps one snapshot for every bucket. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/format.h"

#define PR_FORGET_UNLIMITED (-1)

/* Why a snapshot is kept (PrForgetResult.reasons). */
enum {
    PR_KEEP_LAST = 1u << 0,
    PR_KEEP_HOURLY = 1u << 1,
    PR_KEEP_DAILY = 1u << 2,
    PR_KEEP_WEEKLY = 1u << 3,
    PR_KEEP_MONTHLY = 1u << 4,
    PR_KEEP_YEARLY = 1u << 5,
    PR_KEEP_TAG = 1u << 6, /* has every tag of one of the --keep-tag lists (tag_lists says which) */
};

typedef struct PrForgetPolicy {
    /* 0: rule off; N > 0; PR_FORGET_UNLIMITED. */
    int last, hourly, daily, weekly, monthly, yearly;
    /* Each a comma-separated tag list ("daily" or "daily,glpi"): keep snapshots that hold every tag
     * of one list. */
    const char *const *keep_tags;
    size_t nkeep_tags;
    /* Filters. hosts: the snapshot's host is one of them. tags: comma-separated lists, the snapshot
     * holds every tag of at least one list. volumes: the snapshot holds every one of them. An empty
     * filter lets everything through. */
    const char *const *hosts;
    size_t nhosts;
    const char *const *tags;
    size_t ntags;
    const char *const *volumes;
    size_t nvolumes;
} PrForgetPolicy;

typedef struct PrForgetResult {
    bool considered;     /* passed the filters; false: neither kept nor removed by the policy */
    bool keep;           /* considered and kept (false and considered: to remove) */
    unsigned reasons;    /* PR_KEEP_* */
    unsigned oldest;     /* PR_KEEP_* rules that kept it only as the oldest of its group (counts left) */
    uint32_t tag_lists;  /* bit i: keep_tags[i] matched (the first 32 lists) */
    size_t group;        /* groups are numbered from 0 in order of their newest snapshot, newest first */
} PrForgetResult;

/* True when no keep rule is set (then there is nothing to apply: the caller refuses). */
bool pr_forget_policy_empty(const PrForgetPolicy *p);

/* Applies p to snaps[0..n) (any order; only time_sec, time_nsec, id, host, tags and volume names are
 * read). ret[i] receives the result for snaps[i]. -EINVAL for an empty policy or a count below -1. */
int pr_forget_apply(const PrSnapshot *const *snaps, size_t n, const PrForgetPolicy *p, PrForgetResult *ret);

/* "last, daily, weekly (oldest), tag daily" into buf (empty for none). */
void pr_forget_reasons(const PrForgetPolicy *p, const PrForgetResult *r, char *buf, size_t size);
