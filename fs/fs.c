/* SPDX-License-Identifier: MIT */
/* FUSE low-level file system: placeholder until the mount lands. */
#include "backend/repo.h"

int pr_fs_placeholder(void);
int pr_fs_placeholder(void) { return 0; }
