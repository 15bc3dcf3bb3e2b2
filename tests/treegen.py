#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Create a deterministic test tree that exercises everything a backup must keep.

Usage: treegen.py DEST [--big]

DEST must not exist or be an empty directory. Must run as root (devices, chown, lchown).
Everything derives from fixed seeds: two runs give the same names, contents, modes, owners,
xattrs, ACLs and mtimes (the only exception is grafana/grafana.db, whose bytes depend on the
SQLite library version; on one machine it is reproducible too).

Covers: every chunker size class (0, 1, 4 KiB, 256 KiB/1 MiB/4 MiB and +-1 around each), random
and compressible content, awkward names (spaces, UTF-8, newline, 255 bytes), a 30-deep path,
empty dirs, symlinks (relative, absolute, dangling; own owner and mtime), hardlinks, sparse files,
fifo, socket, char and block devices, setuid/setgid/sticky and odd modes, non-root owners,
nanosecond mtimes on everything, user.* xattrs, POSIX access and default ACLs, and a small
realistic GLPI + Grafana part. With --big also a 300 MiB random file.

Fails loudly (exit 1) if anything cannot be created, e.g. xattrs unsupported by the filesystem.
"""

import argparse
import errno
import hashlib
import json
import os
import random
import socket
import sqlite3
import stat
import subprocess
import sys

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SEED = 20261125
BASE_TIME = 1_700_000_000  # 2023-11-14T22:13:20Z

WORDS = (
    "the quick brown fox jumps over lazy dog backup volume snapshot restore chunk pack index "
    "tree blob glpi grafana ticket user group entity computer monitor printer dashboard panel "
    "query datasource alert rule annotation lorem ipsum dolor sit amet consectetur adipiscing "
    "elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua été hiver Ünïcødé"
).split()


class GenError(Exception):
    pass


def die(msg):
    print(f"treegen: error: {msg}", file=sys.stderr)
    sys.exit(1)


def rnd(tag):
    """A PRNG seeded by the global seed and a tag, so each piece is independent of order."""
    h = hashlib.sha256(f"{SEED}:{tag}".encode()).digest()
    return random.Random(int.from_bytes(h[:8], "little"))


def random_bytes(tag, n):
    return rnd(tag).randbytes(n)


_LINES = None


def text_bytes(tag, n):
    """Compressible, non-repetitive-looking text of exactly n bytes."""
    global _LINES
    if _LINES is None:
        r = rnd("text-lines")
        _LINES = []
        for i in range(2000):
            k = r.randint(4, 14)
            _LINES.append((f"{i:05d} " + " ".join(r.choice(WORDS) for _ in range(k)) + "\n").encode())
    r = rnd(tag)
    out = []
    total = 0
    while total < n:
        line = _LINES[r.randrange(len(_LINES))]
        out.append(line)
        total += len(line)
    return b"".join(out)[:n]


class Tree:
    def __init__(self, root):
        self.root = os.fsencode(root)
        self.counts = {}
        self.bytes_logical = 0
        self.xattr_count = 0
        self.acl_count = 0
        self.xattr_big = 0

    def p(self, rel):
        rel = os.fsencode(rel)
        return os.path.join(self.root, rel) if rel else self.root

    def count(self, kind, n=1):
        self.counts[kind] = self.counts.get(kind, 0) + n

    def mkdir(self, rel, mode=0o755):
        path = self.p(rel)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        self.count("dirs")
        return path

    def write(self, rel, data, mode=0o644):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        self.count("files")
        self.bytes_logical += len(data)
        return path

    def write_random_large(self, rel, n, tag):
        """Random file written one MiB at a time, a seed per MiB (fast, bounded memory)."""
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            done = 0
            i = 0
            while done < n:
                k = min(MiB, n - done)
                f.write(random.Random(f"{SEED}:{tag}:{i}").randbytes(k))
                done += k
                i += 1
        os.chmod(path, 0o644)
        self.count("files")
        self.bytes_logical += n
        return path

    def sparse(self, rel, size, regions):
        """regions: list of (offset, length); data is random, everything else a hole."""
        path = self.p(rel)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)
            for off, length in regions:
                data = random_bytes(f"sparse:{rel}:{off}", length)
                if os.pwrite(fd, data, off) != length:
                    raise GenError(f"short pwrite on {rel}")
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.count("files")
        self.count("sparse files")
        self.bytes_logical += size
        return path

    def setxattr(self, rel, name, value):
        path = self.p(rel)
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as e:
            raise GenError(f"setxattr {name} on {rel!r} failed: {e} "
                           "(does this filesystem support user.* xattrs?)")
        self.xattr_count += 1

    def setxattr_big(self, rel, name, value):
        try:
            os.setxattr(self.p(rel), name, value, follow_symlinks=False)
            self.xattr_count += 1
            self.xattr_big = len(value)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.E2BIG):
                raise GenError(f"setxattr {name} on {rel!r} failed: {e}")
            self.setxattr(rel, name, value[:4000])
            self.xattr_big = 4000

    def setfacl(self, rel, *args):
        path = self.p(rel)
        r = subprocess.run(["setfacl", *args, "--", path], capture_output=True)
        if r.returncode != 0:
            raise GenError(f"setfacl {' '.join(args)} on {rel!r} failed: "
                           f"{r.stderr.decode(errors='replace').strip()}")
        self.acl_count += 1


def mtime_ns_for(rel_bytes):
    """Deterministic mtime with a non-zero nanosecond part, different for every path."""
    h = hashlib.sha256(b"mtime:" + rel_bytes).digest()
    secs = BASE_TIME + int.from_bytes(h[:4], "little") % (3 * 365 * 86400)
    ns = 1 + int.from_bytes(h[4:8], "little") % 999_999_999
    return secs * 1_000_000_000 + ns


def generate(dest, big):
    t = Tree(dest)
    os.makedirs(t.root, exist_ok=True)
    os.chmod(t.root, 0o755)

    # --- size classes ----------------------------------------------------------------------
    t.mkdir("sizes")
    sizes = [0, 1, 4 * KiB]
    for edge in (256 * KiB, 1 * MiB, 4 * MiB):
        sizes += [edge - 1, edge, edge + 1]
    for n in sizes:
        t.write(f"sizes/random-{n}", random_bytes(f"size-random-{n}", n))
        t.write(f"sizes/text-{n}.txt", text_bytes(f"size-text-{n}", n))
    # a dense file of zeros (restoring it as a hole is fine; content must match)
    t.write("sizes/zeros-1MiB", b"\0" * MiB)
    # the same content twice under two names (dedup inside one snapshot)
    dup = random_bytes("dup", 3 * MiB + 12345)
    t.write("sizes/dup-a", dup)
    t.write("sizes/dup-b", dup)
    if big:
        t.write_random_large("big/random-300MiB", 300 * MiB, "big300")

    # --- names -----------------------------------------------------------------------------
    t.mkdir("names")
    t.write("names/with spaces in it.txt", b"spaces\n")
    t.write("names/  leading and trailing  ", b"more spaces\n")
    t.write("names/été", b"summer\n")
    t.write("names/Ünïcødé", "Ünïcødé\n".encode())
    t.write("names/new\nline", b"a newline in the name\n")
    t.write("names/tab\tand'quote\"and\\backslash", b"odd characters\n")
    t.write("names/-dash-first", b"dash\n")
    t.write("names/" + "n" * 255, b"255 ascii bytes\n")
    utf8_255 = "é" * 120 + "x" * 15  # 120*2 + 15 = 255 bytes
    assert len(utf8_255.encode()) == 255
    t.write("names/" + utf8_255, b"255 utf-8 bytes\n")
    t.mkdir("names/dir été with spaces")
    t.write("names/dir été with spaces/inside", b"inside\n")
    # non-UTF-8 name (Latin-1 byte 0xe9): restore must keep bytes, not re-encode
    t.write(b"names/latin1-\xe9t\xe9", b"latin-1 name\n")

    # --- depth -----------------------------------------------------------------------------
    deep = "/".join(f"d{i:02d}" for i in range(30))
    os.makedirs(t.p("deep/" + deep))
    t.count("dirs", 31)
    t.write(f"deep/{deep}/bottom.txt", b"at the bottom of 30 directories\n")

    # --- empty dirs ------------------------------------------------------------------------
    t.mkdir("empty")
    t.mkdir("nested-empty/a/b/c")
    t.count("dirs", 3)

    # --- symlinks --------------------------------------------------------------------------
    t.mkdir("links")
    t.write("links/target.txt", b"symlink target\n")
    symlinks = {
        "links/relative": "target.txt",
        "links/relative-up": "../sizes/random-1",
        "links/absolute": "/etc/hostname",
        "links/dangling": "does/not/exist",
        "links/to-dir": "../names",
        "links/loop-a": "loop-b",
        "links/loop-b": "loop-a",
        "links/utf8-été": "Ünïcødé target",
        "links/long": "x/" * 1000 + "end",
    }
    for rel, target in symlinks.items():
        os.symlink(target, t.p(rel))
        t.count("symlinks")
    os.lchown(t.p("links/relative"), 1234, 5678)
    os.lchown(t.p("links/dangling"), 1234, 5678)
    os.lchown(t.p("links/absolute"), 33, 33)

    # --- hardlinks -------------------------------------------------------------------------
    t.mkdir("hard/one")
    t.mkdir("hard/two")
    t.write("hard/one/triple", random_bytes("hard-triple", 100 * KiB + 7))
    os.link(t.p("hard/one/triple"), t.p("hard/one/triple-2"))
    os.link(t.p("hard/one/triple"), t.p("hard/two/triple-3"))
    t.write("hard/two/pair", b"a pair of names for one inode\n")
    os.link(t.p("hard/two/pair"), t.p("hard/two/pair-2"))
    t.count("hardlinks", 3)

    # --- sparse ----------------------------------------------------------------------------
    t.mkdir("sparse")
    t.sparse("sparse/1GiB-three-blocks", GiB, [(0, 4 * KiB), (512 * MiB, 4 * KiB), (GiB - 4 * KiB, 4 * KiB)])
    t.sparse("sparse/holes-at-both-ends", 16 * MiB, [(5 * MiB, 300 * KiB), (9 * MiB, 4 * KiB)])
    t.sparse("sparse/all-hole-8MiB", 8 * MiB, [])

    # --- special files ---------------------------------------------------------------------
    t.mkdir("special")
    os.mkfifo(t.p("special/fifo"), 0o644)
    t.count("fifos")
    os.mknod(t.p("special/null-like"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(t.p("special/loop-like"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.chmod(t.p("special/null-like"), 0o666)
    os.chmod(t.p("special/loop-like"), 0o660)
    os.chown(t.p("special/loop-like"), 0, 6)  # group disk
    t.count("devices", 2)
    oldcwd = os.getcwd()
    os.chdir(t.p("special"))
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("sock")
        s.close()
    finally:
        os.chdir(oldcwd)
    os.chmod(t.p("special/sock"), 0o755)
    t.count("sockets")

    # --- modes and owners (chown before chmod: chown clears setuid/setgid) -----------------
    t.mkdir("modes")
    modes = [
        ("modes/setuid-04755", 0o4755, (0, 0)),
        ("modes/setgid-file-02755", 0o2755, (1000, 1000)),
        ("modes/mode-000", 0o000, (0, 0)),
        ("modes/mode-0600", 0o600, (1000, 1000)),
        ("modes/mode-0444", 0o444, (33, 33)),
        ("modes/mode-0640", 0o640, (65534, 65534)),
        ("modes/www-data", 0o664, (33, 33)),
        ("modes/nobody", 0o644, (65534, 65534)),
        ("modes/mixed-1000-33", 0o640, (1000, 33)),
        ("modes/setuid-setgid-06711", 0o6711, (1000, 1000)),
    ]
    for rel, mode, (uid, gid) in modes:
        t.write(rel, f"{rel}\n".encode(), 0o644)
        os.chown(t.p(rel), uid, gid)
        os.chmod(t.p(rel), mode)
    t.mkdir("modes/setgid-dir-02775")
    t.write("modes/setgid-dir-02775/inside", b"inherits group\n")
    os.chown(t.p("modes/setgid-dir-02775"), 1000, 1000)
    os.chmod(t.p("modes/setgid-dir-02775"), 0o2775)
    t.mkdir("modes/sticky-01777")
    t.write("modes/sticky-01777/a", b"sticky\n")
    os.chmod(t.p("modes/sticky-01777"), 0o1777)
    t.mkdir("modes/readonly-dir-0555")
    t.write("modes/readonly-dir-0555/inside", b"in a read-only dir\n")
    os.chmod(t.p("modes/readonly-dir-0555"), 0o555)
    t.mkdir("modes/owned-1000")
    t.write("modes/owned-1000/f", b"owned by 1000\n")
    os.chown(t.p("modes/owned-1000"), 1000, 1000)
    os.chown(t.p("modes/owned-1000/f"), 1000, 1000)
    os.chown(t.p("special/fifo"), 33, 33)

    # --- xattrs ----------------------------------------------------------------------------
    t.mkdir("xattr")
    t.write("xattr/file", b"has xattrs\n")
    t.mkdir("xattr/dir")
    t.write("xattr/dir/plain", b"no xattrs\n")
    for rel in ("xattr/file", "xattr/dir", "hard/one/triple"):
        t.setxattr(rel, "user.short", b"v")
        t.setxattr(rel, "user.binary", b"\x00\x01\x02\xff\x00bin\x00")
        t.setxattr(rel, "user.empty", b"")
        t.setxattr(rel, "user.utf8-été", "valeur été".encode())
    # A 4 KiB value, alone on its inode: ext4 keeps all of an inode's xattrs in one block
    # (without ea_inode), so 4096 bytes cannot fit there; fall back to 4000 and say so.
    t.write("xattr/big-value", b"one big xattr\n")
    t.mkdir("xattr/big-value-dir")
    for rel in ("xattr/big-value", "xattr/big-value-dir"):
        t.setxattr_big(rel, "user.big-4k", random_bytes(f"xattr-4k:{rel}", 4 * KiB))

    # --- ACLs ------------------------------------------------------------------------------
    t.mkdir("acl")
    t.write("acl/file", b"has an access ACL\n")
    t.setfacl("acl/file", "-m", "u:1000:rwx,g:33:r-x,m:rwx")
    t.mkdir("acl/dir")
    t.setfacl("acl/dir", "-m", "u:1000:rwx,g:33:rx")
    t.setfacl("acl/dir", "-d", "-m", "u:1000:rwx,g:65534:r-x,o::---")
    t.write("acl/dir/inherits", b"created under a default ACL\n")
    t.acl_count += 1

    # --- realistic part: GLPI documents, Grafana -------------------------------------------
    glpi_files = gen_glpi(t)
    gen_grafana(t)

    # --- mtimes last, bottom-up, so directories keep theirs --------------------------------
    set_all_mtimes(t.root)

    print_summary(t, glpi_files, big)


def gen_glpi(t):
    r = rnd("glpi")
    exts = ["PDF", "PNG", "JPG", "DOCX", "XLSX", "TXT", "ODT", "ZIP"]
    t.mkdir("glpi/files/_documents")
    t.mkdir("glpi/files/_sessions")
    t.mkdir("glpi/files/_cache")
    t.mkdir("glpi/files/_log")
    t.write("glpi/files/_log/php-errors.log", text_bytes("glpi-log", 48 * KiB))
    t.write("glpi/config/config_db.php",
            b"<?php\nclass DB extends DBmysql {\n   public $dbhost = 'db';\n   public $dbuser = 'glpi';\n}\n")
    dirs = []
    for ext in exts:
        for _ in range(3):
            dirs.append(f"glpi/files/_documents/{ext}/{r.randrange(256):02x}")
    dirs = sorted(set(dirs))[:20]
    n = 0
    for i in range(320):
        d = dirs[r.randrange(len(dirs))]
        ext = d.split("/")[3]
        size = int(100 * (64 * KiB / 100) ** r.random())  # log-uniform 100 B .. 64 KiB
        if ext in ("TXT", "ODT") or r.random() < 0.3:
            data = text_bytes(f"glpi-{i}", size)
        else:
            data = random_bytes(f"glpi-{i}", size)
        name = hashlib.sha1(data).hexdigest() + "." + ext
        path = f"{d}/{name}"
        if os.path.exists(t.p(path)):
            continue
        t.write(path, data)
        os.chown(t.p(path), 33, 33)
        n += 1
    for d in dirs:
        os.chown(t.p(d), 33, 33)
    return n


def gen_grafana(t):
    t.mkdir("grafana/dashboards")
    t.mkdir("grafana/plugins")
    dbpath = t.p("grafana/grafana.db")
    con = sqlite3.connect(dbpath)
    try:
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("CREATE TABLE dashboard (id INTEGER PRIMARY KEY, uid TEXT, title TEXT, data TEXT)")
        con.execute("CREATE TABLE annotation (id INTEGER PRIMARY KEY, dashboard_id INT, epoch INT, text TEXT)")
        r = rnd("grafana-db")
        for i in range(60):
            con.execute("INSERT INTO dashboard VALUES (?,?,?,?)",
                        (i, f"uid{i:04d}", f"Dashboard {i}", text_bytes(f"gdb-{i}", 20 * KiB).decode(errors="replace")))
        for i in range(20000):
            con.execute("INSERT INTO annotation VALUES (?,?,?,?)",
                        (i, r.randrange(60), BASE_TIME + i * 60, f"deploy {r.randrange(10**9):09d} ok"))
        con.commit()
    finally:
        con.close()
    t.count("files")
    t.bytes_logical += os.path.getsize(dbpath)
    os.chown(dbpath, 472, 0)  # grafana's uid in the official image
    os.chmod(dbpath, 0o640)
    r = rnd("grafana-json")
    for i in range(12):
        panels = [{"id": j, "type": r.choice(["graph", "stat", "table", "gauge"]),
                   "title": " ".join(r.choice(WORDS) for _ in range(3)),
                   "targets": [{"expr": f"rate(http_requests_total{{job=\"svc{j}\"}}[5m])"}]}
                  for j in range(r.randint(3, 30))]
        doc = {"uid": f"dash{i:03d}", "title": f"Service {i}", "panels": panels, "schemaVersion": 39}
        t.write(f"grafana/dashboards/service-{i:02d}.json",
                json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n")
    os.chown(t.p("grafana"), 472, 0)


def set_all_mtimes(root):
    """Every entry gets its mtime from its path. Non-directories first, in sorted order (so the
    last name of a hardlink group wins the same way every run), then directories deepest first,
    so setting a child's time never disturbs its parent afterwards."""
    others, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirs.append(dirpath)
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            if name in dirnames and not os.path.islink(full):
                continue
            others.append(full)
    for full in sorted(others):
        m = mtime_ns_for(os.path.relpath(full, root))
        os.utime(full, ns=(m, m), follow_symlinks=False)
    for full in sorted(dirs, key=lambda d: (-d.count(b"/"), d)):
        rel = os.path.relpath(full, root)
        m = mtime_ns_for(b"" if rel == b"." else rel)
        os.utime(full, ns=(m, m), follow_symlinks=False)


def print_summary(t, glpi_files, big):
    kinds = {}
    nbytes = 0
    alloc = 0
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(t.root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            k = {stat.S_IFREG: "files", stat.S_IFDIR: "dirs", stat.S_IFLNK: "symlinks",
                 stat.S_IFIFO: "fifos", stat.S_IFSOCK: "sockets", stat.S_IFCHR: "char devs",
                 stat.S_IFBLK: "block devs"}[stat.S_IFMT(st.st_mode)]
            kinds[k] = kinds.get(k, 0) + 1
            if k == "files":
                inodes.setdefault(st.st_ino, 0)
                inodes[st.st_ino] += 1
                if inodes[st.st_ino] == 1:
                    nbytes += st.st_size
                    alloc += st.st_blocks * 512
    links = sum(n for n in inodes.values() if n > 1)
    print(f"treegen: {os.fsdecode(t.root)}: "
          + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
          + f"; {nbytes / MiB:.1f} MiB in files ({alloc / MiB:.1f} MiB allocated, "
          f"{t.counts.get('sparse files', 0)} sparse), {links} names in hardlink groups, "
          f"{t.xattr_count} user xattrs (largest {t.xattr_big} B), {t.acl_count} ACLs, "
          f"{glpi_files} GLPI documents" + (", a 300 MiB file" if big else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dest")
    ap.add_argument("--big", action="store_true", help="add a 300 MiB random file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (devices, chown)")
    if os.path.lexists(args.dest):
        if not os.path.isdir(args.dest) or os.path.islink(args.dest):
            die(f"{args.dest} exists and is not a directory")
        if os.listdir(args.dest):
            die(f"{args.dest} is not empty")
    os.umask(0o022)
    try:
        generate(args.dest, args.big)
    except (GenError, OSError) as e:
        die(str(e))


if __name__ == "__main__":
    main()
