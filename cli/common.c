/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cache/util.h"
#include "cli/cli.h"

CliGlobal cli;

enum { OPT_PASSWORD_FILE = 1000, OPT_ENDPOINT, OPT_CA_CERT };

int cli_usage(const char *usage) {
    fprintf(stderr, "%s", usage);
    return EXIT_USAGE;
}

int cli_parse(int argc, char **argv, const char *usage, const char *shortopts, const void *longopts_extra,
              CliOptFn fn, void *userdata, char ***ret_args, int *ret_nargs) {
    static const struct option common[] = {
        {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"ca-cert", required_argument, NULL, OPT_CA_CERT},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
    };
    const struct option *extra = longopts_extra;
    size_t nextra = 0;
    while (extra && extra[nextra].name) nextra++;
    struct option opts[32];
    size_t n = 0;
    for (size_t i = 0; i < ELEMENTSOF(common); i++) opts[n++] = common[i];
    for (size_t i = 0; i < nextra && n < ELEMENTSOF(opts) - 1; i++) opts[n++] = extra[i];
    opts[n] = (struct option){0};
    char so[64];
    snprintf(so, sizeof so, "qvh%s", shortopts ? shortopts : "");
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, so, opts, NULL)) != -1) {
        switch (c) {
        case OPT_PASSWORD_FILE: cli.password_file = optarg; break;
        case OPT_ENDPOINT: cli.endpoint = optarg; break;
        case OPT_CA_CERT: cli.ca_cert = optarg; break;
        case 'q': cli.quiet = true; break;
        case 'v': pr_log_set_level(PR_LOG_DEBUG); break;
        case 'h':
            fputs(usage, stdout);
            exit(EXIT_OK);
        case '?': return cli_usage(usage);
        default:
            if (!fn || fn(c, optarg, userdata) < 0) return cli_usage(usage);
        }
    }
    *ret_args = argv + optind;
    *ret_nargs = argc - optind;
    return 0;
}

static int read_password_file(const char *path, char **ret) {
    FILE *f = fopen(path, "re");
    if (!f) return pr_log_errno(errno, "cannot read password file %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    if (n < 0) {
        free(line);
        line = strdup("");
        if (!line) return -ENOMEM;
        n = 0;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    *ret = line;
    return 0;
}

static int prompt(const char *text, char **ret) {
    FILE *tty = fopen("/dev/tty", "r+e");
    if (!tty) return -ENOKEY;
    struct termios old, quiet;
    bool restore = tcgetattr(fileno(tty), &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    fputs(text, tty);
    fflush(tty);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, tty);
    if (restore) tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    if (n < 0) {
        free(line);
        return -ENOKEY;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    *ret = line;
    return 0;
}

int cli_password(bool confirm, char **ret) {
    const char *env = getenv("PRAFS_PASSWORD");
    if (cli.password_file) return read_password_file(cli.password_file, ret);
    if (env) return (*ret = strdup(env)) ? 0 : -ENOMEM;
    const char *file = getenv("PRAFS_PASSWORD_FILE");
    if (file) return read_password_file(file, ret);
    if (!isatty(STDIN_FILENO)) {
        pr_log(PR_LOG_ERR, "no password: set PRAFS_PASSWORD or PRAFS_PASSWORD_FILE, or use --password-file");
        return -ENOKEY;
    }
    char *a = NULL, *b = NULL;
    int r = prompt("repository password: ", &a);
    if (r < 0) {
        pr_log(PR_LOG_ERR, "no password given");
        return r;
    }
    if (confirm) {
        r = prompt("repository password again: ", &b);
        if (r < 0 || strcmp(a, b) != 0) {
            pr_log(PR_LOG_ERR, "the passwords do not match");
            free(a);
            free(b);
            return -ENOKEY;
        }
        free(b);
    }
    if (!*a) {
        pr_log(PR_LOG_ERR, "an empty password is not accepted");
        free(a);
        return -ENOKEY;
    }
    *ret = a;
    return 0;
}

int cli_open_store(const char *location, PrStore **ret) {
    PrStoreOptions o = {.endpoint = cli.endpoint, .ca_cert = cli.ca_cert};
    int r = pr_store_open(location, &o, ret);
    if (r < 0) return pr_log_errno(r, "cannot open %s", location);
    return 0;
}

int cli_open_repo(const char *location, PrRepo **ret) {
    PrStore *store;
    int r = cli_open_store(location, &store);
    if (r < 0) return r;
    _cleanup_free_ char *pw = NULL;
    r = cli_password(false, &pw);
    if (r < 0) {
        pr_store_free(store);
        return r;
    }
    return pr_repo_open(store, pw, ret);
}

int cli_parse_open_repo(int argc, char **argv, const char *usage, const void *longopts, CliOptFn fn, void *userdata,
                        PrRepo **ret) {
    char **args;
    int nargs;
    int r = cli_parse(argc, argv, usage, NULL, longopts, fn, userdata, &args, &nargs);
    if (r) return r;
    if (nargs != 1) return cli_usage(usage);
    if (cli_open_repo(args[0], ret) < 0) return EXIT_ERROR;
    return EXIT_OK;
}

int cli_find_snapshot(PrRepo *repo, const char *spec, PrSnapshot **ret_snap, char **ret_path) {
    /* the label contains ':' (the time), so split at the first ':' after a plausible label */
    _cleanup_free_ char *copy = strdup(spec);
    if (!copy) return -ENOMEM;
    char *path = NULL;
    char *colon = strchr(copy, ':');
    /* "2026-11-25T02:00:00Z:vol/x": the label has two colons; skip them */
    if (colon && colon - copy == 13 && copy[10] == 'T') {
        colon = strchr(colon + 1, ':');
        if (colon) colon = strchr(colon + 1, ':');
    }
    if (colon) {
        *colon = 0;
        path = colon + 1;
    }
    int r = pr_repo_find_snapshot(repo, copy, ret_snap);
    if (r < 0) return r;
    if (ret_path) {
        *ret_path = strdup(path ? path : "");
        if (!*ret_path) return -ENOMEM;
    }
    return 0;
}

void cli_human_bytes(uint64_t n, char *buf, size_t size) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, size, "%llu B", (unsigned long long)n);
    else snprintf(buf, size, "%.1f %s", v, units[u]);
}

void cli_duration_rate(uint64_t bytes, double secs, char *buf, size_t size) {
    if (secs < 0.1 || bytes < (1u << 20)) {
        snprintf(buf, size, "in %.1f s", secs > 0 ? secs : 0.0);
        return;
    }
    double mbps = (double)bytes / 1e6 / secs;
    snprintf(buf, size, mbps < 10 ? "in %.1f s (%.1f MB/s)" : "in %.1f s (%.0f MB/s)", secs, mbps);
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

bool cli_progress_enabled(void) { return !cli.quiet && isatty(STDERR_FILENO); }

bool cli_progress_done(bool progress, int r, const char *failed) {
    if (progress) fputs("\r\033[K", stderr);
    if (r >= 0) return false;
    fprintf(stderr, "prafs: %s\n", failed);
    return true;
}
