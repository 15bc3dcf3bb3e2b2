/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "backend/check.h"
#include "backend/lock.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs check REPO [--read-data | --read-data-subset=N%] [--no-lock] [--lock-wait SECONDS]\n"
    "\n"
    "Verifies the structure: every index file decodes, every pack it names exists and is long\n"
    "enough, every snapshot manifest decodes and matches its name, every tree of every snapshot\n"
    "decodes and every blob it names is indexed.\n"
    "  --read-data             also download every pack and verify every blob in it\n"
    "                          (authentication, decompression, length, id) and its trailer\n"
    "  --read-data-subset=N%   the same for a random N % of the packs (at least one)\n"
    "  --no-lock               take no lock (read-only credentials); a concurrent prune may then\n"
    "                          cause false alarms\n"
    "  --lock-wait SECONDS     wait that long for a prune to finish (default: PRAFS_LOCK_WAIT, else 3600)\n"
    "Each problem is printed on stdout with the object, and every snapshot path it affects.\n"
    "Exit status: 0 no problem found, 1 problems found (or the check could not run).\n";

enum { OPT_READ_DATA = 4000, OPT_SUBSET, OPT_NO_LOCK, OPT_LOCK_WAIT };

typedef struct Opts {
    bool read_data, no_lock;
    double subset;
    double lock_wait;
} Opts;

static int opt(int c, const char *arg, void *ud) {
    Opts *o = ud;
    char *end;
    switch (c) {
    case OPT_READ_DATA: o->read_data = true; return 0;
    case OPT_NO_LOCK: o->no_lock = true; return 0;
    case OPT_LOCK_WAIT: return cli_parse_seconds(arg, &o->lock_wait);
    case OPT_SUBSET:
        o->subset = strtod(arg, &end);
        if (*end == '%') end++;
        if (!*arg || *end || !(o->subset > 0) || o->subset > 100) {
            fprintf(stderr, "prafs: --read-data-subset wants a percentage in (0, 100], like 10%%\n");
            return -EINVAL;
        }
        o->read_data = true;
        return 0;
    default: return -EINVAL;
    }
}

static void on_report(bool error, const char *line, void *ud) {
    (void)ud;
    if (cli_progress_enabled()) fputs("\r\033[K", stderr);
    printf("%s: %s\n", error ? "error" : "warning", line);
    fflush(stdout);
}

static void show_progress(const PrCheckProgress *p, void *ud) {
    (void)ud;
    char b[32];
    if (strcmp(p->phase, "read") == 0) {
        cli_human_bytes(p->bytes, b, sizeof b);
        fprintf(stderr, "\r\033[Kcheck: reading packs %llu/%llu, %s", (unsigned long long)p->done,
                (unsigned long long)p->total, b);
    } else if (p->total)
        fprintf(stderr, "\r\033[Kcheck: %s %llu/%llu", p->phase, (unsigned long long)p->done,
                (unsigned long long)p->total);
    else
        fprintf(stderr, "\r\033[Kcheck: %s %llu", p->phase, (unsigned long long)p->done);
    fflush(stderr);
}

int cmd_check(int argc, char **argv) {
    static const struct option longopts[] = {
        {"read-data", no_argument, NULL, OPT_READ_DATA},
        {"read-data-subset", required_argument, NULL, OPT_SUBSET},
        {"no-lock", no_argument, NULL, OPT_NO_LOCK},
        {"lock-wait", required_argument, NULL, OPT_LOCK_WAIT},
        {0},
    };
    Opts o = {.lock_wait = cli_lock_wait()};
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    int r = cli_parse_open_repo(argc, argv, USAGE, longopts, opt, &o, &repo);
    if (r) return r;
    /* a shared lock: writers may go on, a prune may not pull packs away meanwhile */
    _cleanup_(pr_lock_releasep) PrLock *lock = NULL;
    if (!o.no_lock && pr_lock_acquire(repo, false, o.lock_wait, &lock) < 0) return EXIT_ERROR;

    bool prog = cli_progress_enabled();
    PrCheckOptions co = {
        .read_data = o.read_data,
        .subset_percent = o.subset,
        .report = on_report,
        .progress = prog ? show_progress : NULL,
    };
    PrCheckStats st = {0};
    double t0 = pr_now();
    r = pr_check(repo, &co, &st);
    double secs = pr_now() - t0;
    pr_lock_release(TAKE_PTR(lock));
    if (prog) fputs("\r\033[K", stderr);
    if (r < 0 && r != -EBADMSG) {
        fprintf(stderr, "prafs: check could not run to the end: %s\n", strerror(-r));
        return EXIT_ERROR;
    }
    char rd[64] = "";
    if (o.read_data) {
        char b[32];
        cli_human_bytes(st.bytes_read, b, sizeof b);
        snprintf(rd, sizeof rd, "; read %zu of %zu packs (%s)", st.packs_read, st.packs, b);
    }
    char result[160];
    if (st.errors)
        snprintf(result, sizeof result, "%zu error%s found, %zu snapshot%s affected", st.errors,
                 st.errors == 1 ? "" : "s", st.damaged_snapshots, st.damaged_snapshots == 1 ? "" : "s");
    else
        snprintf(result, sizeof result, "no errors found");
    fprintf(stderr,
            "prafs: check: %zu snapshots, %zu index files, %zu packs, %zu trees, %llu data blobs%s: %s%s in %.1f s\n",
            st.snapshots, st.index_files, st.packs, st.trees, (unsigned long long)st.blobs_referenced, rd, result,
            st.warnings ? " (warnings above)" : "", secs);
    return st.errors ? EXIT_ERROR : EXIT_OK;
}
