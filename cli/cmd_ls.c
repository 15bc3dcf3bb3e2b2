/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs ls REPO SNAPSHOT[:PATH]\n\n"
    "Lists PATH (default: every volume) and everything below it, one entry a line:\n"
    "mode, owner, group, size, modification time (UTC), path.\n";

static void mode_string(const PrNode *n, char *s) {
    static const char types[] = "?-dlcbps";
    s[0] = types[n->type < sizeof types - 1 ? n->type : 0];
    const char *rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; i++) s[1 + i] = (n->mode & (0400 >> i)) ? rwx[i] : '-';
    if (n->mode & 04000) s[3] = (n->mode & 0100) ? 's' : 'S';
    if (n->mode & 02000) s[6] = (n->mode & 0010) ? 's' : 'S';
    if (n->mode & 01000) s[9] = (n->mode & 0001) ? 't' : 'T';
    s[10] = 0;
}

static void print_node(const PrNode *n, const char *path) {
    char mode[11], when[32];
    mode_string(n, mode);
    time_t t = (time_t)n->mtime_sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (n->type == PR_NODE_CHR || n->type == PR_NODE_BLK)
        printf("%s %6u %6u %6u,%4u %s %s", mode, n->uid, n->gid, major((dev_t)n->rdev), minor((dev_t)n->rdev), when,
               path);
    else
        printf("%s %6u %6u %11llu %s %s", mode, n->uid, n->gid, (unsigned long long)n->size, when, path);
    if (n->type == PR_NODE_SYMLINK) printf(" -> %s", n->target);
    putchar('\n');
}

static int list_tree(PrRepo *repo, const PrId *id, const char *prefix) {
    _cleanup_(pr_tree_freep) PrTree *t = NULL;
    int r = pr_repo_read_tree(repo, id, &t);
    if (r < 0) return r;
    for (uint32_t i = 0; i < t->n; i++) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s%s%s", prefix, *prefix ? "/" : "", t->nodes[i].name) < 0) return -ENOMEM;
        print_node(&t->nodes[i], p);
        if (t->nodes[i].type == PR_NODE_DIR && (r = list_tree(repo, &t->nodes[i].subtree, p)) < 0) return r;
    }
    return 0;
}

int cmd_ls(int argc, char **argv) {
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, NULL, NULL, NULL, &args, &nargs);
    if (r) return r;
    if (nargs != 2) return cli_usage(USAGE);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = NULL;
    _cleanup_free_ char *path = NULL;
    if (cli_find_snapshot(repo, args[1], &s, &path) < 0) return EXIT_ERROR;
    PrNode n = {0};
    if (pr_repo_resolve(repo, s, path, &n) < 0) return EXIT_ERROR;
    /* normalise the path as printed: no leading or doubled slashes */
    _cleanup_free_ char *shown = strdup(path);
    if (!shown) r = -ENOMEM;
    else {
        char *w = shown;
        for (const char *p = path; *p; p++)
            if (*p != '/' || (w > shown && w[-1] != '/')) *w++ = *p;
        if (w > shown && w[-1] == '/') w--;
        *w = 0;
        if (*shown) print_node(&n, shown);
        r = n.type == PR_NODE_DIR ? list_tree(repo, &n.subtree, shown) : 0;
    }
    pr_node_clear(&n);
    return r < 0 ? EXIT_ERROR : EXIT_OK;
}
