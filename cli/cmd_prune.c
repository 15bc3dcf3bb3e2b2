/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "backend/prune.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs prune REPO [--dry-run] [--max-unused PCT] [--lock-wait SECONDS]\n"
    "\n"
    "Deletes the data no snapshot references. Packs wholly unused are deleted; packs with more\n"
    "than PCT % (default 20) of unused bytes, and small packs, are repacked: their used blobs,\n"
    "each verified, are copied into new packs. A new index is published before anything is\n"
    "deleted, so a prune interrupted at any moment loses nothing a snapshot needs; run it again.\n"
    "Holds an exclusive lock: snapshots wait for it (see 'prafs unlock').\n"
    "  --dry-run            say what would be done, change nothing\n"
    "  --max-unused PCT     repack packs with more than PCT % unused bytes (default 20)\n"
    "  --lock-wait SECONDS  wait that long for other locks to go (default: PRAFS_LOCK_WAIT, else 3600)\n";

enum { OPT_DRY_RUN = 2000, OPT_MAX_UNUSED, OPT_LOCK_WAIT };

typedef struct Opts {
    bool dry_run;
    double max_unused;
    double lock_wait;
} Opts;

double cli_lock_wait(void) {
    const char *v = getenv("PRAFS_LOCK_WAIT");
    if (v && *v) {
        char *end;
        double d = strtod(v, &end);
        if (!*end && d >= 0) return d;
    }
    return 3600;
}

int cli_parse_seconds(const char *arg, double *ret) {
    char *end;
    double d = strtod(arg, &end);
    if (!*arg || *end || d < 0 || d > 1e7) {
        fprintf(stderr, "prafs: '%s' is not a number of seconds\n", arg);
        return -EINVAL;
    }
    *ret = d;
    return 0;
}

static int opt(int c, const char *arg, void *ud) {
    Opts *o = ud;
    char *end;
    switch (c) {
    case OPT_DRY_RUN: o->dry_run = true; return 0;
    case OPT_LOCK_WAIT: return cli_parse_seconds(arg, &o->lock_wait);
    case OPT_MAX_UNUSED:
        o->max_unused = strtod(arg, &end);
        if (*end == '%') end++;
        if (!*arg || *end || o->max_unused <= 0 || o->max_unused > 100) {
            fprintf(stderr, "prafs: --max-unused wants a percentage in (0, 100]\n");
            return -EINVAL;
        }
        return 0;
    default: return -EINVAL;
    }
}

static void show_progress(const PrPruneProgress *p, void *ud) {
    (void)ud;
    if (p->total) fprintf(stderr, "\r\033[Kprune: %s %llu/%llu", p->phase, (unsigned long long)p->done,
                          (unsigned long long)p->total);
    else fprintf(stderr, "\r\033[Kprune: %s %llu trees", p->phase, (unsigned long long)p->done);
    fflush(stderr);
}

int cli_run_prune(PrRepo *repo, PrLock *lock, bool dry_run, double max_unused_pct) {
    bool prog = cli_progress_enabled();
    PrPruneOptions po = {
        .lock = lock,
        .dry_run = dry_run,
        .max_unused = max_unused_pct > 0 ? max_unused_pct / 100.0 : 0,
        .progress = prog ? show_progress : NULL,
    };
    PrPruneStats st = {0};
    double t0 = pr_now();
    int r = pr_prune(repo, &po, &st);
    if (cli_progress_done(prog, r, "prune failed; the repository is as safe as before (run prune again once the "
                                   "cause is fixed)"))
        return EXIT_ERROR;
    char before[32], after[32], freed[32], repacked[32];
    cli_human_bytes(st.bytes_before, before, sizeof before);
    cli_human_bytes(st.bytes_after, after, sizeof after);
    cli_human_bytes(st.bytes_before > st.bytes_after ? st.bytes_before - st.bytes_after : 0, freed, sizeof freed);
    cli_human_bytes(st.bytes_repacked, repacked, sizeof repacked);
    const char *w = dry_run ? "would be " : "";
    FILE *out = cli.json ? stderr : stdout; /* stdout holds only the JSON then */
    fprintf(out, "%zu snapshots, %zu trees; blobs: %llu used, %llu unused, %llu duplicate copies\n", st.snapshots,
           st.trees, (unsigned long long)st.blobs_used, (unsigned long long)st.blobs_unused,
           (unsigned long long)st.blobs_duplicate);
    fprintf(out, "packs: %zu before; %zu kept, %zu %sdeleted (unused), %zu %srepacked (%s of used blobs) into %zu new, "
           "%zu %sdeleted (in no index), %zu missing dropped from the index\n",
           st.packs_before, st.packs_kept, st.packs_deleted, w, st.packs_repacked, w, repacked,
           dry_run ? (size_t)0 : st.packs_written, st.packs_unreferenced, w, st.packs_missing);
    if (st.locks_removed) fprintf(out, "stale locks removed: %zu\n", st.locks_removed);
    fprintf(stderr, "prafs: prune%s: %s %s (%s -> %s), %zu packs now, in %.1f s\n", dry_run ? " (dry run)" : "",
            dry_run ? "would free" : "freed", freed, before, after, st.packs_after, pr_now() - t0);
    return EXIT_OK;
}

int cmd_prune(int argc, char **argv) {
    static const struct option longopts[] = {
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"max-unused", required_argument, NULL, OPT_MAX_UNUSED},
        {"lock-wait", required_argument, NULL, OPT_LOCK_WAIT},
        {0},
    };
    Opts o = {.lock_wait = cli_lock_wait()};
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    int r = cli_parse_open_repo(argc, argv, USAGE, longopts, opt, &o, &repo);
    if (r) return r;
    _cleanup_(pr_lock_releasep) PrLock *lock = NULL;
    if (!o.dry_run && pr_lock_acquire(repo, true, o.lock_wait, &lock) < 0) return EXIT_ERROR;
    return cli_run_prune(repo, lock, o.dry_run, o.max_unused);
}
