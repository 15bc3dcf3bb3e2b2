/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <string.h>

#include "backend/lock.h"
#include "backend/restore.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs restore REPO SNAPSHOT[:PATH] DEST [--no-lock] [--lock-wait S]\n\n"
    "Restores every volume of SNAPSHOT as DEST/<volume>, or the entry PATH (volume/sub/path) as\n"
    "DEST/<its name>, with owners, modes, times, xattrs, ACLs, hardlinks and holes.\n"
    "  --no-lock       take no lock (read-only credentials); a prune running meanwhile may then\n"
    "                  remove data the restore still needs (those files fail, named)\n"
    "  --lock-wait S   wait up to S seconds for a running prune (default: PRAFS_LOCK_WAIT, else 3600)\n";

enum { OPT_NO_LOCK = 0x100, OPT_LOCK_WAIT };

typedef struct Opts {
    bool no_lock;
    double lock_wait;
} Opts;

static int opt(int c, const char *arg, void *ud) {
    Opts *o = ud;
    if (c == OPT_NO_LOCK) {
        o->no_lock = true;
        return 0;
    }
    if (c == OPT_LOCK_WAIT) return cli_parse_seconds(arg, &o->lock_wait);
    return -EINVAL;
}

static void show_progress(const PrRestoreStats *st, const char *path, void *ud) {
    (void)ud;
    char b[32];
    cli_human_bytes(st->bytes, b, sizeof b);
    size_t l = strlen(path);
    fprintf(stderr, "\r\033[K%llu files, %s  %s%s", (unsigned long long)st->files, b, l > 50 ? "..." : "",
            l > 50 ? path + l - 50 : path);
    fflush(stderr);
}

int cmd_restore(int argc, char **argv) {
    static const struct option longopts[] = {
        {"no-lock", no_argument, NULL, OPT_NO_LOCK},
        {"lock-wait", required_argument, NULL, OPT_LOCK_WAIT},
        {0},
    };
    Opts o = {.lock_wait = cli_lock_wait()};
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, longopts, opt, &o, &args, &nargs);
    if (r) return r;
    if (nargs != 3) return cli_usage(USAGE);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    /* a shared lock: a prune waits until the restore is done (and the restore for a running prune) */
    _cleanup_(pr_lock_releasep) PrLock *lock = NULL;
    if (!o.no_lock && (r = pr_lock_acquire(repo, false, o.lock_wait, &lock)) < 0) {
        if (r != -EBUSY) /* (busy: the holder was named) */
            fprintf(stderr, "prafs: restore: cannot lock %s (with read-only credentials, use --no-lock)\n", args[0]);
        return EXIT_ERROR;
    }
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = NULL;
    _cleanup_free_ char *path = NULL;
    if (cli_find_snapshot(repo, args[1], &s, &path) < 0) return EXIT_ERROR;
    bool prog = cli_progress_enabled();
    PrRestoreOptions ro = {.progress = prog ? show_progress : NULL};
    PrRestoreStats st = {0};
    double t0 = pr_now();
    r = pr_restore(repo, s, path, args[2], &ro, &st);
    double secs = pr_now() - t0;
    if (prog) fputs("\r\033[K", stderr);
    if (r < 0 && !st.files && !st.dirs && !st.errors && r != -ENOSPC && r != -EDQUOT) {
        /* it never started: the path is not in the snapshot, DEST cannot be made, the index cannot
         * be read... (said above) */
        fprintf(stderr, "prafs: restore of %s failed: nothing was restored\n", args[1]);
        return EXIT_ERROR;
    }
    char b[32], took[64];
    cli_human_bytes(st.bytes, b, sizeof b);
    cli_duration_rate(st.bytes, secs, took, sizeof took);
    fprintf(stderr, "prafs: restored %llu file%s, %llu dir%s, %s %s%s\n", (unsigned long long)st.files,
            st.files == 1 ? "" : "s", (unsigned long long)st.dirs, st.dirs == 1 ? "" : "s", b, took,
            r < 0 ? " with errors" : "");
    if (r == -ENOSPC || r == -EDQUOT) {
        fprintf(stderr,
                "prafs: restore of %s stopped: %s under %s; the files restored are complete, the others "
                "were removed: free some space and run it again\n",
                args[1], strerror(-r), args[2]);
        return EXIT_ERROR;
    }
    if (r < 0 && !st.errors) {
        /* stopped by something other than a file (out of memory): said above. A server gone away
         * or a subtree that cannot be read fails files, counted below */
        fprintf(stderr,
                "prafs: restore of %s stopped: the files restored are complete, the others were removed; "
                "run it again\n",
                args[1]);
        return EXIT_ERROR;
    }
    if (r < 0 && st.not_restored) { /* one failed GET fails every file with data in it: count files */
        fprintf(stderr, "prafs: restore of %s incomplete: %llu file%s not restored (errors listed above)\n", args[1],
                (unsigned long long)st.not_restored, st.not_restored == 1 ? "" : "s");
        return EXIT_ERROR;
    }
    if (r < 0) {
        fprintf(stderr, "prafs: restore of %s incomplete: %u error%s (listed above)\n", args[1], st.errors,
                st.errors == 1 ? "" : "s");
        return EXIT_ERROR;
    }
    return EXIT_OK;
}
