/* SPDX-License-Identifier: MIT */
/* The command line: the only place that prints for people. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "backend/repo.h"

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3 };

typedef struct CliGlobal {
    const char *password_file;
    const char *endpoint;
    const char *ca_cert;
    bool json;
    bool quiet;
} CliGlobal;

extern CliGlobal cli;

/* Parses the options shared by every command (and those in `extra`, getopt_long style, handled by
 * fn); leaves the positional arguments in *ret_args. Returns EXIT_USAGE after printing a message. */
typedef int (*CliOptFn)(int opt, const char *arg, void *userdata);
int cli_parse(int argc, char **argv, const char *usage, const char *shortopts, const void *longopts,
              CliOptFn fn, void *userdata, char ***ret_args, int *ret_nargs);
int cli_usage(const char *usage);

/* The password, from PRAFS_PASSWORD, PRAFS_PASSWORD_FILE, --password-file or a terminal prompt
 * (asked twice when confirm). -ENOKEY if there is none to be had. */
int cli_password(bool confirm, char **ret);
int cli_open_store(const char *location, PrStore **ret);
int cli_open_repo(const char *location, PrRepo **ret);
/* The start of a command whose one argument is REPO: parses the options (as cli_parse, no short
 * ones), wants exactly one argument and opens the repository. 0, or the exit status to return (the
 * reason printed). */
int cli_parse_open_repo(int argc, char **argv, const char *usage, const void *longopts, CliOptFn fn, void *userdata,
                        PrRepo **ret);
/* Splits "SNAPSHOT[:PATH]" and finds the snapshot. */
int cli_find_snapshot(PrRepo *repo, const char *spec, PrSnapshot **ret_snap, char **ret_path);

void cli_human_bytes(uint64_t n, char *buf, size_t size);
/* "in 3.2 s (120 MB/s)" for bytes in secs; the rate only from a tenth of a second and a MiB on (a rate
 * over a few milliseconds or bytes means nothing: "in 0.0 s (0 MB/s)" was said of a 41-byte snapshot). */
void cli_duration_rate(uint64_t bytes, double secs, char *buf, size_t size);
void cli_json_string(FILE *f, const char *s);
bool cli_progress_enabled(void);
/* After an operation that may have shown progress: clears the progress line (when `progress`) and,
 * if the operation failed (r < 0), prints "prafs: <failed>" on stderr. True if it failed. */
bool cli_progress_done(bool progress, int r, const char *failed);

int cmd_init(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_snapshots(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_forget(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_unlock(int argc, char **argv);

/* Repository locks and prune, shared by forget, prune, check and snapshot (cli/cmd_prune.c). */
typedef struct PrLock PrLock;
/* Seconds to wait for a repository lock: PRAFS_LOCK_WAIT, else 3600. */
double cli_lock_wait(void);
int cli_parse_seconds(const char *arg, double *ret);
/* Runs prune under the exclusive lock held, prints its report; returns an exit status. */
int cli_run_prune(PrRepo *repo, PrLock *lock, bool dry_run, double max_unused_pct);
