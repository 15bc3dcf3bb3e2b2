/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "backend/lock.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs unlock REPO [--remove-all]\n"
    "\n"
    "Removes stale locks: locks not refreshed for 30 minutes, and locks written on this machine by\n"
    "processes that no longer exist (a killed snapshot or prune). Live locks are listed, not touched.\n"
    "  --remove-all   remove every lock, live or not (only when you know no prafs runs on it)\n";

enum { OPT_REMOVE_ALL = 5000 };

static int opt(int c, const char *arg, void *ud) {
    (void)arg;
    if (c != OPT_REMOVE_ALL) return -EINVAL;
    *(bool *)ud = true;
    return 0;
}

int cmd_unlock(int argc, char **argv) {
    static const struct option longopts[] = {{"remove-all", no_argument, NULL, OPT_REMOVE_ALL}, {0}};
    bool all = false;
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, longopts, opt, &all, &args, &nargs);
    if (r) return r;
    if (nargs != 1) return cli_usage(USAGE);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    _cleanup_free_ PrLockInfo *removed = NULL;
    size_t nremoved = 0;
    if (pr_lock_remove(repo, all, &removed, &nremoved) < 0) return EXIT_ERROR;
    char desc[512];
    for (size_t i = 0; i < nremoved; i++) {
        pr_lock_describe(&removed[i], desc, sizeof desc);
        printf("removed %s: %s\n", removed[i].key, desc);
    }
    _cleanup_free_ PrLockInfo *left = NULL;
    size_t nleft = 0;
    if (pr_lock_list(repo, &left, &nleft) < 0) return EXIT_ERROR;
    for (size_t i = 0; i < nleft; i++) {
        pr_lock_describe(&left[i], desc, sizeof desc);
        printf("still held %s: %s\n", left[i].key, desc);
    }
    fprintf(stderr, "prafs: unlock: %zu lock%s removed, %zu still held\n", nremoved, nremoved == 1 ? "" : "s", nleft);
    return EXIT_OK;
}
