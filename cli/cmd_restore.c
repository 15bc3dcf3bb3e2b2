/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "backend/restore.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs restore REPO SNAPSHOT[:PATH] DEST\n\n"
    "Restores every volume of SNAPSHOT as DEST/<volume>, or the entry PATH (volume/sub/path) as\n"
    "DEST/<its name>, with owners, modes, times, xattrs, ACLs, hardlinks and holes.\n";

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
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, NULL, NULL, NULL, &args, &nargs);
    if (r) return r;
    if (nargs != 3) return cli_usage(USAGE);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = NULL;
    _cleanup_free_ char *path = NULL;
    if (cli_find_snapshot(repo, args[1], &s, &path) < 0) return EXIT_ERROR;
    bool prog = cli_progress_enabled();
    PrRestoreOptions o = {.progress = prog ? show_progress : NULL};
    PrRestoreStats st = {0};
    double t0 = pr_now();
    r = pr_restore(repo, s, path, args[2], &o, &st);
    double secs = pr_now() - t0;
    if (prog) fputs("\r\033[K", stderr);
    char b[32];
    cli_human_bytes(st.bytes, b, sizeof b);
    fprintf(stderr, "prafs: restored %llu files, %llu dirs, %s in %.1f s (%.0f MB/s)%s\n",
            (unsigned long long)st.files, (unsigned long long)st.dirs, b, secs,
            secs > 0 ? (double)st.bytes / 1e6 / secs : 0.0, r < 0 ? " with errors" : "");
    if (r == -ENOSPC || r == -EDQUOT) {
        fprintf(stderr,
                "prafs: restore of %s stopped: %s under %s; the files restored are complete, the others "
                "were removed: free some space and run it again\n",
                args[1], strerror(-r), args[2]);
        return EXIT_ERROR;
    }
    if (r < 0) {
        fprintf(stderr, "prafs: restore of %s incomplete: %u error%s (listed above)\n", args[1], st.errors,
                st.errors == 1 ? "" : "s");
        return EXIT_ERROR;
    }
    return EXIT_OK;
}
