/* SPDX-License-Identifier: MIT */
#include "cli/cli.h"

int cmd_mount(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "prafs: mount is not available yet\n");
    return EXIT_ERROR;
}
