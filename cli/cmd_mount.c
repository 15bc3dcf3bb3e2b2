/* SPDX-License-Identifier: MIT */
/* prafs mount REPO MOUNTPOINT [-f] [-o OPTS]
 *
 * Options may come before or after the two positional arguments, so that the mount(8) helper
 * convention works: mount -t fuse.prafs REPO DIR -o OPTS runs /sbin/mount.fuse.prafs REPO DIR -o OPTS
 * [-t fuse.prafs], and that helper is two lines:  exec prafs mount "$@"  (see README / docs). */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "cache/util.h"
#include "cli/cli.h"
#include "fs/fs.h"

static const char USAGE[] =
    "Usage: prafs mount REPO MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n"
    "\n"
    "Mounts the repository read-only: MOUNTPOINT/snapshots/<time>/<volume>/..., volumes/<volume>/<time>/,\n"
    "tags/<tag>/, hosts/<host>/, ids/<id>, each with a `latest` link where it makes sense. New snapshots\n"
    "appear without remounting. Runs in the background once mounted, unless -f.\n"
    "Unmount with: fusermount3 -u MOUNTPOINT (or umount MOUNTPOINT as root).\n"
    "\n"
    "  -f                      stay in the foreground (messages on stderr)\n"
    "  -d                      FUSE request log (implies -f)\n"
    "  -o refresh=SECONDS      re-read the snapshot list at most this often (default 30)\n"
    "  -o cache_size=MiB       memory cache of decoded data (default 48)\n"
    "  -o disk_cache=MiB       disk cache of fetched data, $XDG_CACHE_HOME/prafs/<repository id>\n"
    "                          (default 1024 for S3, none for a local repository; 0: none)\n"
    "  -o disk_cache_dir=DIR   put the disk cache there instead\n"
    "  -o fetch_threads=N      concurrent fetches (default 4)\n"
    "  -o push=N               a reader copying a directory in order (cp -a, tar) finds up to N files\n"
    "                          after the one it reads in the page cache already (default 32; 0: none)\n"
    "  -o acl                  enforce POSIX ACLs even if no snapshot holds one (by default ACL support\n"
    "                          is on when some snapshot has an ACL at mount time)\n"
    "  -o xattr                answer xattr requests even if no snapshot holds one (likewise)\n"
    "  -o password_file=FILE   as --password-file (for fstab: no environment there)\n"
    "  -o endpoint=URL, -o ca_cert=FILE   as --endpoint, --ca-cert\n"
    "  -o log=FILE             where messages go once in the background (default: nowhere)\n"
    "  -o allow_other, allow_root, auto_unmount, nosuid, nodev, noexec, noatime, ...: passed to FUSE\n"
    "  Mount-helper options rw, ro, defaults, auto, noauto, user, users, nouser, owner, group, nofail,\n"
    "  _netdev, comment=..., x-... are accepted and ignored (the mount is always read-only).\n"
    "\n"
    "From fstab (mount -t fuse.prafs), with an executable /sbin/mount.fuse.prafs holding\n"
    "    #!/bin/sh\n"
    "    exec prafs mount \"$@\"\n"
    "a line such as\n"
    "    /srv/backup  /mnt/backup  fuse.prafs  password_file=/etc/prafs.pass,allow_other,nofail  0 0\n";

typedef struct MountArgs {
    PrFsOptions o;
    char *fuse_opts; /* malloc'ed, comma-separated */
    bool disk_cache_set;
    const char *log_path;
} MountArgs;

static int parse_uint(const char *key, const char *v, unsigned long max, unsigned long *ret) {
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!*v || *end || errno || n > max || *v == '-') {
        fprintf(stderr, "prafs: -o %s=%s: expected a number up to %lu\n", key, v, max);
        return -EINVAL;
    }
    *ret = n;
    return 0;
}

static int add_fuse_opt(MountArgs *m, const char *opt) {
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", m->fuse_opts ? m->fuse_opts : "", m->fuse_opts ? "," : "", opt) < 0) return -ENOMEM;
    free(m->fuse_opts);
    m->fuse_opts = s;
    return 0;
}

static bool is_ignored_mount_opt(const char *k) {
    static const char *const ignored[] = {"rw",    "ro",     "defaults", "auto",  "noauto",  "user",
                                          "users", "nouser", "owner",    "group", "nofail",  "_netdev",
                                          "loop",  "nodelalloc"};
    for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
        if (strcmp(k, ignored[i]) == 0) return true;
    return strncmp(k, "x-", 2) == 0 || strncmp(k, "comment=", 8) == 0;
}

/* One -o list. Our own options are taken out; the rest goes to libfuse, which rejects what it does
 * not know. */
static int parse_o(MountArgs *m, const char *list) {
    _cleanup_free_ char *copy = strdup(list);
    if (!copy) return -ENOMEM;
    char *save = NULL;
    for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(opt, '=');
        const char *val = eq ? eq + 1 : NULL;
        size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
        unsigned long n;
        int r = 0;
#define KEY(s) (klen == strlen(s) && strncmp(opt, s, klen) == 0)
        if (KEY("refresh") && val) {
            if ((r = parse_uint("refresh", val, 86400, &n)) == 0) m->o.refresh_seconds = n ? (unsigned)n : 1;
        } else if (KEY("cache_size") && val) {
            if ((r = parse_uint("cache_size", val, 1ul << 20, &n)) == 0) m->o.cache_mib = n ? n : 1;
        } else if (KEY("disk_cache") && val) {
            if ((r = parse_uint("disk_cache", val, 1ul << 30, &n)) == 0) {
                m->o.disk_cache_mib = n;
                m->disk_cache_set = true;
            }
        } else if (KEY("push") && val) {
            if ((r = parse_uint("push", val, 4096, &n)) == 0) m->o.push_files = (unsigned)n;
        } else if (KEY("fetch_threads") && val) {
            if ((r = parse_uint("fetch_threads", val, 64, &n)) == 0) m->o.fetch_threads = n ? (unsigned)n : 1;
        } else if (KEY("disk_cache_dir") && val) {
            m->o.disk_cache_dir = strdup(val);
            if (!m->o.disk_cache_dir) r = -ENOMEM;
        } else if (KEY("password_file") && val) {
            cli.password_file = strdup(val);
            if (!cli.password_file) r = -ENOMEM;
        } else if (KEY("endpoint") && val) {
            cli.endpoint = strdup(val);
            if (!cli.endpoint) r = -ENOMEM;
        } else if (KEY("ca_cert") && val) {
            cli.ca_cert = strdup(val);
            if (!cli.ca_cert) r = -ENOMEM;
        } else if (KEY("log") && val) {
            m->log_path = strdup(val);
            if (!m->log_path) r = -ENOMEM;
        } else if (KEY("debug") && !val) {
            m->o.debug = true;
        } else if (KEY("acl") && !val) {
            m->o.acl = true;
        } else if (KEY("xattr") && !val) {
            m->o.xattr = true;
        } else if (KEY("foreground") && !val) {
            m->o.foreground = true;
        } else if (is_ignored_mount_opt(opt)) {
            /* mount(8) and fstab vocabulary: meaningless here */
        } else {
            r = add_fuse_opt(m, opt);
        }
#undef KEY
        if (r < 0) return r;
    }
    return 0;
}

/* Undoes mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape_mountinfo(char *s) {
    char *o = s;
    for (char *i = s; *i; i++) {
        if (i[0] == '\\' && i[1] >= '0' && i[1] <= '3' && i[2] >= '0' && i[2] <= '7' && i[3] >= '0' && i[3] <= '7') {
            *o++ = (char)((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
            i += 3;
        } else {
            *o++ = *i;
        }
    }
    *o = 0;
}

/* Whether a prafs file system is mounted right on path (the topmost mount there, or one below it:
 * FUSE would stack another one on top, a second daemon serving the same directory). */
static bool prafs_mounted_on(const char *path) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return false;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS */
        char *save = NULL, *tok = strtok_r(line, " \n", &save), *mp = NULL;
        for (int i = 1; tok && i <= 4; i++) tok = strtok_r(NULL, " \n", &save);
        mp = tok;
        do tok = strtok_r(NULL, " \n", &save);
        while (tok && strcmp(tok, "-") != 0);
        const char *fstype = tok ? strtok_r(NULL, " \n", &save) : NULL;
        if (!mp || !fstype || strcmp(fstype, "fuse.prafs") != 0) continue;
        unescape_mountinfo(mp);
        found = strcmp(mp, path) == 0;
    }
    fclose(f);
    return found;
}

/* After option parsing: canonical paths, the repository, the mount. */
static int mount_it(MountArgs *m, const char *repo_arg, const char *mp_arg) {
    /* the daemon changes directory to /: make both paths absolute first */
    _cleanup_free_ char *mountpoint = realpath(mp_arg, NULL);
    struct stat st;
    struct statfs sfs;
    int err = !mountpoint ? errno : stat(mountpoint, &st) < 0 ? errno : 0;
    bool ours = !err && prafs_mounted_on(mountpoint);
    /* statfs always asks the file system's process (attributes may come from the kernel's cache) */
    if (ours && statfs(mountpoint, &sfs) < 0) err = errno;
    if (err == ENOTCONN) { /* a FUSE mount whose process is gone (killed, crashed) */
        pr_log(PR_LOG_ERR,
               "mount point %s: what is mounted there has no process any more; 'fusermount3 -u \"%s\"' "
               "removes it",
               mp_arg, mountpoint ? mountpoint : mp_arg);
        return EXIT_ERROR;
    }
    if (err) {
        pr_log_errno(err, "mount point %s", mp_arg);
        return EXIT_ERROR;
    }
    if (!S_ISDIR(st.st_mode)) {
        pr_log(PR_LOG_ERR, "mount point %s is not a directory", mountpoint);
        return EXIT_ERROR;
    }
    if (ours) {
        pr_log(PR_LOG_ERR, "%s has a prafs mount already; 'fusermount3 -u \"%s\"' unmounts it", mountpoint, mountpoint);
        return EXIT_ERROR;
    }
    _cleanup_free_ char *repo_loc = NULL;
    if (strncmp(repo_arg, "s3://", 5) == 0 || !(repo_loc = realpath(repo_arg, NULL))) repo_loc = strdup(repo_arg);
    if (!repo_loc) return EXIT_ERROR;
    if (m->log_path) {
        m->o.log_fd = open(m->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (m->o.log_fd < 0) {
            pr_log_errno(errno, "cannot open the log file %s", m->log_path);
            return EXIT_ERROR;
        }
        if (pr_log_get_level() < PR_LOG_INFO) pr_log_set_level(PR_LOG_INFO);
    }
    _cleanup_(pr_repo_unrefp) PrRepo *repo = NULL;
    if (cli_open_repo(repo_loc, &repo) < 0) return EXIT_ERROR;
    /* a local repository is on a disk already: a second copy on disk would only cost writes */
    if (!m->disk_cache_set && strcmp(pr_repo_store(repo)->ops->kind, "local") == 0) m->o.disk_cache_mib = 0;
    m->o.mountpoint = mountpoint;
    m->o.fsname = repo_loc;
    m->o.fuse_options = m->fuse_opts;
    return pr_fs_run(repo, &m->o) < 0 ? EXIT_ERROR : EXIT_OK;
}

/* The memory cache fills with fresh pages, one fault per 4 KiB: on VMs where faults are expensive
 * that alone caps cold reads (measured: 70 MB/s, 130-490 MB/s on transparent huge pages). glibc puts
 * its heap on huge pages only when told by a tunable read at start-up, so the mount starts itself
 * again once with it set, when the kernel offers huge pages on request. Nothing has been read or
 * opened yet, and if the exec fails the mount simply goes on. */
static void reexec_with_huge_pages(int argc, char **argv) {
    const char *tun = getenv("GLIBC_TUNABLES");
    if ((tun && strstr(tun, "glibc.malloc.hugetlb")) || getenv("PRAFS_NO_HUGE_PAGES")) return;
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f) return;
    bool ok = fgets(mode, sizeof mode, f) != NULL;
    fclose(f);
    if (!ok || !strstr(mode, "[madvise]")) return; /* [always]: the heap gets them anyway; [never]: none */
    _cleanup_free_ char *val = NULL;
    if (asprintf(&val, "%s%sglibc.malloc.hugetlb=1", tun ? tun : "", tun && *tun ? ":" : "") < 0) return;
    _cleanup_free_ char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args || setenv("GLIBC_TUNABLES", val, 1) < 0) return;
    args[0] = (char *)"prafs";
    for (int i = 0; i < argc; i++) args[i + 1] = argv[i];
    execv("/proc/self/exe", args);
    unsetenv("GLIBC_TUNABLES"); /* still here: go on without */
    if (tun) setenv("GLIBC_TUNABLES", tun, 1);
}

int cmd_mount(int argc, char **argv) {
    reexec_with_huge_pages(argc, argv);
    MountArgs m = {.o = {.disk_cache_mib = 1024, .push_files = 32, .log_fd = -1}};
    const char *pos[2];
    int npos = 0, ret = EXIT_USAGE;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (npos == 2) {
                fprintf(stderr, "prafs: mount: unexpected argument '%s'\n", a);
                goto usage;
            }
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            only_pos = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            ret = EXIT_OK;
            goto out;
        } else if (strcmp(a, "-f") == 0) {
            m.o.foreground = true;
        } else if (strcmp(a, "-d") == 0) {
            m.o.debug = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            cli.quiet = true;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            pr_log_set_level(PR_LOG_DEBUG);
        } else if (strcmp(a, "-s") == 0 || strcmp(a, "-n") == 0) {
            /* mount(8) helper flags: sloppy, no mtab */
        } else if (strcmp(a, "-t") == 0) {
            if (!next) goto usage;
            i++; /* the helper convention passes the type (fuse.prafs): nothing to do with it */
        } else if (strcmp(a, "-o") == 0) {
            if (!next) goto usage;
            r = parse_o(&m, next);
            i++;
        } else if (strncmp(a, "-o", 2) == 0) {
            r = parse_o(&m, a + 2);
        } else if (strcmp(a, "--password-file") == 0 || strcmp(a, "--endpoint") == 0 || strcmp(a, "--ca-cert") == 0) {
            if (!next) goto usage;
            if (a[2] == 'p') cli.password_file = next;
            else if (a[2] == 'e') cli.endpoint = next;
            else cli.ca_cert = next;
            i++;
        } else if (strncmp(a, "--password-file=", 16) == 0) {
            cli.password_file = a + 16;
        } else if (strncmp(a, "--endpoint=", 11) == 0) {
            cli.endpoint = a + 11;
        } else if (strncmp(a, "--ca-cert=", 10) == 0) {
            cli.ca_cert = a + 10;
        } else {
            fprintf(stderr, "prafs: mount: unknown option '%s'\n", a);
            goto usage;
        }
        if (r == -ENOMEM) {
            fprintf(stderr, "prafs: out of memory\n");
            ret = EXIT_ERROR;
            goto out;
        }
        if (r < 0) goto usage;
    }
    if (npos != 2) goto usage;
    ret = mount_it(&m, pos[0], pos[1]);
    goto out;

usage:
    ret = cli_usage(USAGE);
out:
    if (m.o.log_fd >= 0) close(m.o.log_fd);
    free(m.fuse_opts);
    free((char *)m.o.disk_cache_dir);
    free((char *)m.log_path);
    return ret;
}
