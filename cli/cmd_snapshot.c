/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "backend/lock.h"
#include "backend/writer.h"
#include "cache/util.h"
#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs snapshot REPO [--tag T]... [--host H] [--lock-wait S] NAME=PATH...\n"
    "\n"
    "Writes one snapshot holding each directory PATH as volume NAME. Files unchanged since the\n"
    "previous snapshot of the same volume and host are not read again.\n"
    "  --tag T         tag the snapshot (repeatable)\n"
    "  --host H        host name to record (default: this machine's)\n"
    "  --lock-wait S   wait up to S seconds for a running prune (default: PRAFS_LOCK_WAIT, else 3600)\n"
    "Exit status 3: the snapshot was written, but the files listed on stderr could not be read.\n";

enum { OPT_LOCK_WAIT = 0x100 };

typedef struct Opts {
    const char *tags[64];
    size_t ntags;
    const char *host;
    double lock_wait;
} Opts;

static int opt(int c, const char *arg, void *ud) {
    Opts *o = ud;
    if (c == 't') {
        if (o->ntags == ELEMENTSOF(o->tags)) return -E2BIG;
        o->tags[o->ntags++] = arg;
        return 0;
    }
    if (c == 'H') {
        o->host = arg;
        return 0;
    }
    if (c == OPT_LOCK_WAIT) return cli_parse_seconds(arg, &o->lock_wait);
    return -EINVAL;
}

static void show_progress(const PrWriterProgress *p, void *ud) {
    (void)ud;
    char rd[32], nw[32];
    cli_human_bytes(p->bytes_read, rd, sizeof rd);
    cli_human_bytes(p->bytes_new, nw, sizeof nw);
    fprintf(stderr, "\r\033[K%llu files, %s read, %s new, %.0f s", (unsigned long long)p->files, rd, nw,
            p->elapsed);
    if (p->current) {
        size_t l = strlen(p->current);
        fprintf(stderr, "  %s%s", l > 40 ? "..." : "", l > 40 ? p->current + l - 40 : p->current);
    }
    fflush(stderr);
}

int cmd_snapshot(int argc, char **argv) {
    static const struct option longopts[] = {
        {"tag", required_argument, NULL, 't'},
        {"host", required_argument, NULL, 'H'},
        {"lock-wait", required_argument, NULL, OPT_LOCK_WAIT},
        {0},
    };
    Opts o = {.lock_wait = cli_lock_wait()};
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, USAGE, "t:H:", longopts, opt, &o, &args, &nargs);
    if (r) return r;
    if (nargs < 2) return cli_usage(USAGE);
    PrVolumeSpec vols[256];
    size_t nv = 0;
    for (int i = 1; i < nargs; i++) {
        char *eq = strchr(args[i], '=');
        if (!eq || eq == args[i] || !eq[1] || nv == ELEMENTSOF(vols)) {
            fprintf(stderr, "prafs: '%s' is not NAME=PATH\n", args[i]);
            return cli_usage(USAGE);
        }
        *eq = 0;
        vols[nv++] = (PrVolumeSpec){args[i], eq + 1};
    }
    char host[256];
    if (!o.host) {
        if (gethostname(host, sizeof host) < 0) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = 0;
        o.host = host;
    }
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(args[0], &repo) < 0) return EXIT_ERROR;
    bool prog = cli_progress_enabled();
    /* a shared lock: other writers may go on, a prune waits (and we wait for a running one) */
    _cleanup_(pr_lock_releasep) PrLock *lock = NULL;
    if (pr_lock_acquire(repo, false, o.lock_wait, &lock) < 0) {
        fprintf(stderr, "prafs: snapshot failed: no lock on %s (see above); nothing was written\n", args[0]);
        return EXIT_ERROR;
    }
    PrWriterOptions wo = {
        .lock = lock,
        .host = o.host,
        .tags = o.tags,
        .ntags = o.ntags,
        .volumes = vols,
        .nvolumes = nv,
        .progress = prog ? show_progress : NULL,
    };
    _cleanup_(pr_snapshot_freep) PrSnapshot *s = NULL;
    r = pr_writer_snapshot(repo, &wo, &s);
    pr_lock_release(TAKE_PTR(lock));
    if (cli_progress_done(prog, r, "snapshot failed; nothing was published (the repository is unchanged but for "
                                   "unreferenced data that prune removes)"))
        return EXIT_ERROR;
    char hex[65], rd[32], nw[32], up[32];
    pr_hex(s->id.b, PR_ID_LEN, hex);
    cli_human_bytes(s->bytes_read, rd, sizeof rd);
    cli_human_bytes(s->bytes_new, nw, sizeof nw);
    cli_human_bytes(s->bytes_uploaded, up, sizeof up);
    char took[64];
    cli_duration_rate(s->bytes_read, (double)s->duration_ms / 1000.0, took, sizeof took);
    fprintf(stderr, "prafs: snapshot %.8s saved: %llu file%s, %llu dir%s, read %s, new %s, uploaded %s %s\n", hex,
            (unsigned long long)s->files, s->files == 1 ? "" : "s", (unsigned long long)s->dirs,
            s->dirs == 1 ? "" : "s", rd, nw, up, took);
    if (r == 1) {
        fprintf(stderr, "prafs: some files could not be read (listed above); the snapshot holds everything else\n");
        return EXIT_PARTIAL;
    }
    return EXIT_OK;
}
