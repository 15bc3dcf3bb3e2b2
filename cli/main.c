/* SPDX-License-Identifier: MIT */
#include <malloc.h>
#include <string.h>

#include "cli/cli.h"

static const char USAGE[] =
    "Usage: prafs COMMAND [OPTIONS] ...\n"
    "\n"
    "  init      REPO                                      create a repository\n"
    "  snapshot  REPO [--tag T]... [--host H] NAME=PATH... one snapshot holding one or more volumes\n"
    "  snapshots REPO [--json]                             list snapshots\n"
    "  ls        REPO SNAPSHOT[:PATH]                      list a tree without FUSE\n"
    "  restore   REPO SNAPSHOT[:PATH] DEST                 restore without FUSE\n"
    "  mount     REPO MOUNTPOINT [-f] [-o OPTS]            read-only FUSE mount\n"
    "  forget    REPO --keep-* N... [--dry-run] [--prune]  remove snapshots by policy\n"
    "  prune     REPO [--dry-run]                          delete data no snapshot references\n"
    "  check     REPO [--read-data[-subset=N%]]            verify structure, or every byte\n"
    "  unlock    REPO [--remove-all]                       remove stale locks\n"
    "\n"
    "REPO is a local directory or s3://BUCKET/PREFIX. SNAPSHOT is an id prefix, 'latest',\n"
    "or a time as listed by 'prafs snapshots'.\n"
    "\n"
    "Options for every command:\n"
    "  --password-file FILE   read the repository password from FILE\n"
    "                         (else PRAFS_PASSWORD, PRAFS_PASSWORD_FILE, or a prompt)\n"
    "  --endpoint URL         S3 endpoint (else AWS_ENDPOINT_URL; AWS when unset)\n"
    "  --ca-cert FILE         CA bundle for TLS (else AWS_CA_BUNDLE)\n"
    "  -q, --quiet            no progress display\n"
    "  -v, --verbose          debug logging\n"
    "\n"
    "Exit status: 0 ok, 1 error, 2 usage, 3 snapshot written but some files could not be read.\n";

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"init", cmd_init},         {"snapshot", cmd_snapshot}, {"snapshots", cmd_snapshots},
        {"ls", cmd_ls},             {"restore", cmd_restore},   {"mount", cmd_mount},
        {"forget", cmd_forget},     {"prune", cmd_prune},       {"check", cmd_check},
        {"unlock", cmd_unlock},
    };
    /* Chunks and packs are megabytes: keep them on the heap instead of an mmap/munmap (and page
     * faults) for each one; measured as a third of the writer's CPU time otherwise. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("prafs %s\n", PRAFS_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "prafs: unknown command '%s'\n\n%s", argv[1], USAGE);
    return EXIT_USAGE;
}
