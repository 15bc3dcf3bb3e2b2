/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] = "Usage: prafs init REPO\n\nCreates a repository (and the bucket or directory if needed).\n";

int cmd_init(int argc, char **argv) {
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, NULL, NULL, NULL, &args, &nargs);
    if (r) return r;
    if (nargs != 1) return cli_usage(USAGE);
    PrStore *store;
    if (cli_open_store(args[0], &store) < 0) return EXIT_ERROR;
    _cleanup_free_ char *pw = NULL;
    if (cli_password(true, &pw) < 0) {
        pr_store_free(store);
        return EXIT_ERROR;
    }
    /* PRAFS_SCRYPT_N lets tests trade key-derivation cost for speed; never lower it in production */
    PrScryptParams sp = pr_scrypt_default;
    const char *n = getenv("PRAFS_SCRYPT_N");
    if (n) sp.n = strtoull(n, NULL, 10);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    r = pr_repo_init(store, pw, &sp, &repo);
    if (r < 0) {
        fprintf(stderr, "prafs: init of %s failed\n", args[0]);
        return EXIT_ERROR;
    }
    char id[65];
    pr_hex(pr_repo_config(repo)->id, 32, id);
    fprintf(stderr, "prafs: created repository %.8s at %s\n", id, args[0]);
    return EXIT_OK;
}
