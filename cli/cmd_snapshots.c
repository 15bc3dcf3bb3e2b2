/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <string.h>

#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] = "Usage: prafs snapshots REPO [--json]\n\nLists the snapshots, oldest first.\n";

static int opt(int c, const char *arg, void *ud) {
    (void)arg;
    (void)ud;
    if (c == 'j') {
        cli.json = true;
        return 0;
    }
    return -EINVAL;
}

static void print_json(PrSnapshot **list, size_t n) {
    printf("[");
    for (size_t i = 0; i < n; i++) {
        const PrSnapshot *s = list[i];
        char hex[65], parent[65];
        pr_hex(s->id.b, PR_ID_LEN, hex);
        printf("%s\n  {\"id\": \"%s\", \"short_id\": \"%.8s\", \"time\": ", i ? "," : "", hex, hex);
        cli_json_string(stdout, s->label);
        printf(", \"time_ns\": %lld%09u, \"host\": ", (long long)s->time_sec, s->time_nsec);
        cli_json_string(stdout, s->host);
        printf(", \"tags\": [");
        for (uint32_t t = 0; t < s->ntags; t++) {
            if (t) printf(", ");
            cli_json_string(stdout, s->tags[t]);
        }
        printf("], \"parent\": ");
        if (s->has_parent) {
            pr_hex(s->parent.b, PR_ID_LEN, parent);
            printf("\"%s\"", parent);
        } else
            printf("null");
        printf(", \"volumes\": [");
        for (uint32_t v = 0; v < s->nvolumes; v++) {
            printf("%s{\"name\": ", v ? ", " : "");
            cli_json_string(stdout, s->volumes[v].name);
            printf(", \"files\": %llu, \"dirs\": %llu, \"bytes\": %llu}", (unsigned long long)s->volumes[v].files,
                   (unsigned long long)s->volumes[v].dirs, (unsigned long long)s->volumes[v].bytes);
        }
        printf("], \"files\": %llu, \"dirs\": %llu, \"bytes_read\": %llu, \"bytes_new\": %llu, "
               "\"bytes_uploaded\": %llu, \"duration\": %.3f, \"program_version\": ",
               (unsigned long long)s->files, (unsigned long long)s->dirs, (unsigned long long)s->bytes_read,
               (unsigned long long)s->bytes_new, (unsigned long long)s->bytes_uploaded,
               (double)s->duration_ms / 1000.0);
        cli_json_string(stdout, s->program_version);
        printf("}");
    }
    printf("%s]\n", n ? "\n" : "");
}

int cmd_snapshots(int argc, char **argv) {
    static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, longopts, opt, NULL, &args, &nargs);
    if (r) return r;
    if (nargs != 1) return cli_usage(USAGE);
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    PrSnapshot **list;
    size_t n;
    if (pr_repo_list_snapshots(repo, &list, &n) < 0) return EXIT_ERROR;
    if (cli.json) print_json(list, n);
    else {
        printf("%-8s  %-22s  %-16s  %-20s  %s\n", "ID", "TIME", "HOST", "TAGS", "VOLUMES");
        for (size_t i = 0; i < n; i++) {
            const PrSnapshot *s = list[i];
            char hex[65], tags[256] = "", vols[1024] = "";
            pr_hex(s->id.b, PR_ID_LEN, hex);
            for (uint32_t t = 0; t < s->ntags; t++) {
                size_t l = strlen(tags);
                snprintf(tags + l, sizeof tags - l, "%s%s", t ? "," : "", s->tags[t]);
            }
            for (uint32_t v = 0; v < s->nvolumes; v++) {
                char sz[32];
                cli_human_bytes(s->volumes[v].bytes, sz, sizeof sz);
                size_t l = strlen(vols);
                snprintf(vols + l, sizeof vols - l, "%s%s (%s)", v ? ", " : "", s->volumes[v].name, sz);
            }
            printf("%.8s  %-22s  %-16s  %-20s  %s\n", hex, s->label, s->host, tags, vols);
        }
        printf("%zu snapshot%s\n", n, n == 1 ? "" : "s");
    }
    pr_snapshot_list_free(list, n);
    return EXIT_OK;
}
