/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backend/forget.h"
#include "backend/lock.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs forget REPO [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]\n"
    "                    [--keep-monthly N] [--keep-yearly N] [--keep-tag T]... [--host H]...\n"
    "                    [--tag T]... [--volume NAME]... [--dry-run] [--json] [--prune]\n"
    "\n"
    "Removes the snapshots the policy does not keep (only their manifests: 'prune' then deletes the\n"
    "data only they used). Snapshots are grouped by host and set of volumes; each group gets the\n"
    "policy on its own, newest first, with calendar buckets in UTC (restic's semantics):\n"
    "  --keep-last N      the N most recent snapshots\n"
    "  --keep-hourly N    for the last N hours that have snapshots, the most recent of each\n"
    "  --keep-daily N     likewise for days\n"
    "  --keep-weekly N    likewise for ISO weeks (Monday to Sunday)\n"
    "  --keep-monthly N   likewise for months\n"
    "  --keep-yearly N    likewise for years\n"
    "                     (N may be 'unlimited'; a rule with counts left also keeps the oldest)\n"
    "  --keep-tag T       every snapshot holding tag T (T may be a list 'a,b': all of them)\n"
    "A snapshot kept by any rule is kept. Filters (only matching snapshots are considered at all):\n"
    "  --host H           snapshots of host H (repeatable: any of them)\n"
    "  --tag T            snapshots holding tag T ('a,b': all of them; repeatable: any list)\n"
    "  --volume NAME      snapshots holding volume NAME (repeatable: all of them)\n"
    "Other options:\n"
    "  --dry-run          print what would be kept and removed, and why; remove nothing\n"
    "  --json             print the decisions as one JSON array on stdout\n"
    "  --prune            then run 'prafs prune' (if any snapshot was removed)\n"
    "  --lock-wait S      wait up to S seconds for the repository lock (default: PRAFS_LOCK_WAIT, else 3600)\n"
    "Output: one line per considered snapshot: keep/remove, id, time, host, reasons.\n";

enum {
    OPT_LAST = 3000,
    OPT_HOURLY,
    OPT_DAILY,
    OPT_WEEKLY,
    OPT_MONTHLY,
    OPT_YEARLY,
    OPT_KEEP_TAG,
    OPT_HOST,
    OPT_TAG,
    OPT_VOLUME,
    OPT_DRY_RUN,
    OPT_JSON,
    OPT_PRUNE,
    OPT_LOCK_WAIT,
};

#define MAXV 64

typedef struct Opts {
    PrForgetPolicy p;
    const char *keep_tags[MAXV], *hosts[MAXV], *tags[MAXV], *volumes[MAXV];
    bool dry_run, json, prune;
    double lock_wait;
} Opts;

static int parse_count(const char *arg, int *ret) {
    if (strcmp(arg, "unlimited") == 0) {
        *ret = PR_FORGET_UNLIMITED;
        return 0;
    }
    char *end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 0 || v > INT_MAX) {
        fprintf(stderr, "prafs: '%s' is not a count (a number >= 0, or 'unlimited')\n", arg);
        return -EINVAL;
    }
    *ret = (int)v;
    return 0;
}

static int push(const char **v, size_t *n, const char *arg) {
    if (*n == MAXV) return -E2BIG;
    v[(*n)++] = arg;
    return 0;
}

static int opt(int c, const char *arg, void *ud) {
    Opts *o = ud;
    switch (c) {
    case OPT_LAST: return parse_count(arg, &o->p.last);
    case OPT_HOURLY: return parse_count(arg, &o->p.hourly);
    case OPT_DAILY: return parse_count(arg, &o->p.daily);
    case OPT_WEEKLY: return parse_count(arg, &o->p.weekly);
    case OPT_MONTHLY: return parse_count(arg, &o->p.monthly);
    case OPT_YEARLY: return parse_count(arg, &o->p.yearly);
    case OPT_KEEP_TAG: return push(o->keep_tags, &o->p.nkeep_tags, arg);
    case OPT_HOST: return push(o->hosts, &o->p.nhosts, arg);
    case OPT_TAG: return push(o->tags, &o->p.ntags, arg);
    case OPT_VOLUME: return push(o->volumes, &o->p.nvolumes, arg);
    case OPT_DRY_RUN: o->dry_run = true; return 0;
    case OPT_JSON:
        o->json = cli.json = true;
        return 0;
    case OPT_PRUNE: o->prune = true; return 0;
    case OPT_LOCK_WAIT: return cli_parse_seconds(arg, &o->lock_wait);
    default: return -EINVAL;
    }
}

static void volumes_string(const PrSnapshot *s, char *buf, size_t size) {
    size_t off = 0;
    buf[0] = 0;
    for (uint32_t v = 0; v < s->nvolumes && off < size; v++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", v ? ", " : "", s->volumes[v].name);
}

static void print_json(const Opts *o, PrSnapshot **list, size_t n, const PrForgetResult *res) {
    printf("[");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!res[i].considered) continue;
        const PrSnapshot *s = list[i];
        char hex[65], reasons[512];
        pr_hex(s->id.b, PR_ID_LEN, hex);
        printf("%s\n  {\"id\": \"%s\", \"short_id\": \"%.8s\", \"time\": ", first ? "" : ",", hex, hex);
        first = false;
        cli_json_string(stdout, s->label);
        printf(", \"host\": ");
        cli_json_string(stdout, s->host);
        printf(", \"tags\": [");
        for (uint32_t t = 0; t < s->ntags; t++) {
            if (t) printf(", ");
            cli_json_string(stdout, s->tags[t]);
        }
        printf("], \"volumes\": [");
        for (uint32_t v = 0; v < s->nvolumes; v++) {
            if (v) printf(", ");
            cli_json_string(stdout, s->volumes[v].name);
        }
        printf("], \"group\": %zu, \"action\": \"%s\", \"reasons\": [", res[i].group, res[i].keep ? "keep" : "remove");
        pr_forget_reasons(&o->p, &res[i], reasons, sizeof reasons);
        /* the reasons string is "a, b (oldest), tag x": one JSON string per item */
        char *save = NULL;
        bool firstr = true;
        for (char *tok = strtok_r(reasons, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ') tok++;
            printf("%s", firstr ? "" : ", ");
            firstr = false;
            cli_json_string(stdout, tok);
        }
        printf("]}");
    }
    printf("%s]\n", first ? "" : "\n");
}

static void print_text(const Opts *o, PrSnapshot **list, size_t n, const PrForgetResult *res) {
    size_t ngroups = 0;
    for (size_t i = 0; i < n; i++)
        if (res[i].considered && res[i].group + 1 > ngroups) ngroups = res[i].group + 1;
    for (size_t g = 0; g < ngroups; g++) {
        size_t keep = 0, remove = 0;
        const PrSnapshot *any = NULL;
        for (size_t i = 0; i < n; i++) {
            if (!res[i].considered || res[i].group != g) continue;
            any = list[i];
            if (res[i].keep) keep++;
            else remove++;
        }
        if (!any) continue;
        char vols[1024];
        volumes_string(any, vols, sizeof vols);
        printf("%shost %s, volumes [%s]: keep %zu, %s %zu\n", g ? "\n" : "", any->host, vols, keep,
               o->dry_run ? "would remove" : "remove", remove);
        for (size_t i = 0; i < n; i++) {
            if (!res[i].considered || res[i].group != g) continue;
            char hex[65], reasons[512];
            pr_hex(list[i]->id.b, PR_ID_LEN, hex);
            pr_forget_reasons(&o->p, &res[i], reasons, sizeof reasons);
            printf("%-6s  %.8s  %-22s  %-16s  %s\n", res[i].keep ? "keep" : "remove", hex, list[i]->label,
                   list[i]->host, res[i].keep ? reasons : "no rule keeps it");
        }
    }
}

int cmd_forget(int argc, char **argv) {
    static const struct option longopts[] = {
        {"keep-last", required_argument, NULL, OPT_LAST},
        {"keep-hourly", required_argument, NULL, OPT_HOURLY},
        {"keep-daily", required_argument, NULL, OPT_DAILY},
        {"keep-weekly", required_argument, NULL, OPT_WEEKLY},
        {"keep-monthly", required_argument, NULL, OPT_MONTHLY},
        {"keep-yearly", required_argument, NULL, OPT_YEARLY},
        {"keep-tag", required_argument, NULL, OPT_KEEP_TAG},
        {"host", required_argument, NULL, OPT_HOST},
        {"tag", required_argument, NULL, OPT_TAG},
        {"volume", required_argument, NULL, OPT_VOLUME},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"json", no_argument, NULL, OPT_JSON},
        {"prune", no_argument, NULL, OPT_PRUNE},
        {"lock-wait", required_argument, NULL, OPT_LOCK_WAIT},
        {0},
    };
    static Opts o; /* large arrays: keep them off the stack */
    memset(&o, 0, sizeof o);
    o.lock_wait = cli_lock_wait();
    o.p.keep_tags = o.keep_tags;
    o.p.hosts = o.hosts;
    o.p.tags = o.tags;
    o.p.volumes = o.volumes;
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, NULL, longopts, opt, &o, &args, &nargs);
    if (r) return r;
    if (nargs != 1) return cli_usage(USAGE);
    if (pr_forget_policy_empty(&o.p)) {
        fprintf(stderr, "prafs: forget: no --keep-* rule given; refusing to remove every snapshot\n");
        return EXIT_USAGE;
    }
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    /* forgetting only deletes manifests: a shared lock is enough (prune needs everyone else gone) */
    _cleanup_(pr_lock_releasep) PrLock *lock = NULL;
    if (!o.dry_run && pr_lock_acquire(repo, o.prune, o.lock_wait, &lock) < 0) return EXIT_ERROR;

    PrSnapshot **list;
    size_t n;
    if (pr_repo_list_snapshots(repo, &list, &n) < 0) return EXIT_ERROR;
    _cleanup_free_ PrForgetResult *res = calloc(n ? n : 1, sizeof *res);
    if (!res) {
        pr_snapshot_list_free(list, n);
        return EXIT_ERROR;
    }
    r = pr_forget_apply((const PrSnapshot *const *)list, n, &o.p, res);
    if (r < 0) {
        pr_log_errno(r, "cannot apply the policy");
        pr_snapshot_list_free(list, n);
        return EXIT_ERROR;
    }
    if (o.json) print_json(&o, list, n, res);
    else print_text(&o, list, n, res);

    size_t considered = 0, kept = 0, removed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!res[i].considered) continue;
        considered++;
        if (res[i].keep) {
            kept++;
            continue;
        }
        if (o.dry_run) continue;
        char hex[65], key[80];
        pr_hex(list[i]->id.b, PR_ID_LEN, hex);
        snprintf(key, sizeof key, "snapshots/%s", hex);
        r = pr_store_del(pr_repo_store(repo), key);
        if (r < 0) {
            pr_log_errno(r, "cannot delete %s (snapshot %s)", key, list[i]->label);
            failed++;
        } else
            removed++;
    }
    pr_snapshot_list_free(list, n);
    if (o.dry_run)
        fprintf(stderr, "prafs: forget (dry run): %zu of %zu snapshots considered: %zu kept, %zu would be removed\n",
                considered, n, kept, considered - kept);
    else
        fprintf(stderr, "prafs: forget: %zu of %zu snapshots considered: %zu kept, %zu removed%s\n", considered, n,
                kept, removed, failed ? " (some could not be removed: see above)" : "");
    if (failed) return EXIT_ERROR;
    if (o.prune && !o.dry_run) {
        if (!removed) {
            fprintf(stderr, "prafs: no snapshot removed: nothing to prune\n");
            return EXIT_OK;
        }
        return cli_run_prune(repo, lock, false, 0);
    }
    return EXIT_OK;
}
