#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare two trees field for field.

Usage: treecmp.py A B [--ignore-root-times] [--exclude REL]... [--max-diffs N]

Exit 0 when equal, 1 listing every difference (one line each, with the path), 2 on usage or
I/O errors. A and B may also be single non-directory entries (then they are compared alone).

Compared for every entry (lstat, never following symlinks): the set of relative paths, file
type, permission bits including setuid/setgid/sticky, uid, gid, mtime to the nanosecond, xattrs
by name and value (including system.posix_acl_access/default), symlink targets, rdev of
devices; for regular files size and content (only the data regions are read: SEEK_DATA /
SEEK_HOLE skip holes present in both, and a hole on one side is checked against the other
side's bytes), hardlink groups (the partition of paths by inode must be the same), and holes
kept as holes: B's allocated size may exceed A's by at most 1 MiB per file.
Not compared: ctime, atime, inode numbers, directory sizes, st_nlink (links outside the tree).

--ignore-root-times: do not compare the mtime of the root entry itself.
--exclude REL: leave out REL (relative to the roots) and everything under it, on both sides.
"""

import argparse
import errno
import os
import stat
import sys

MiB = 1024 * 1024
BLOCK = 1 << 20
SPARSE_SLACK = 1 * MiB

TYPE_NAMES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "char device",
    stat.S_IFBLK: "block device",
}


def show(rel):
    """A path on one line: backslashes, control characters and non-UTF-8 bytes escaped."""
    if rel == b"":
        return "."
    out = []
    for ch in rel.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 32 or o == 127:
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{o:02x}"))
        else:
            out.append(ch)
    return "".join(out)


def fmt_ns(ns):
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class Cmp:
    def __init__(self, a, b, ignore_root_times, excludes, max_diffs):
        self.a = os.fsencode(a)
        self.b = os.fsencode(b)
        self.ignore_root_times = ignore_root_times
        self.excludes = [os.fsencode(e).strip(b"/") for e in excludes]
        self.max_diffs = max_diffs
        self.ndiffs = 0
        self.errors = 0

    def diff(self, rel, msg):
        self.ndiffs += 1
        if self.max_diffs == 0 or self.ndiffs <= self.max_diffs:
            print(f"{show(rel)}: {msg}", flush=True)

    def error(self, msg):
        self.errors += 1
        print(f"treecmp: error: {msg}", file=sys.stderr, flush=True)

    def excluded(self, rel):
        return any(rel == e or rel.startswith(e + b"/") for e in self.excludes)

    def full(self, root, rel):
        return os.path.join(root, rel) if rel else root

    def scan(self, root):
        """rel path -> lstat result, for the root and everything under it (not following links)."""
        entries = {}
        st = os.lstat(root)
        entries[b""] = st
        if not stat.S_ISDIR(st.st_mode):
            return entries
        stack = [b""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(self.full(root, rel)) as it:
                    children = list(it)
            except OSError as e:
                self.error(f"cannot list {os.fsdecode(self.full(root, rel))}: {e}")
                continue
            for de in children:
                crel = os.path.join(rel, de.name) if rel else de.name
                if self.excluded(crel):
                    continue
                try:
                    cst = os.lstat(de.path)
                except OSError as e:
                    self.error(f"cannot lstat {os.fsdecode(de.path)}: {e}")
                    continue
                entries[crel] = cst
                if stat.S_ISDIR(cst.st_mode):
                    stack.append(crel)
        return entries

    def xattrs(self, path):
        try:
            names = os.listxattr(path, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return {}
            raise
        out = {}
        for n in names:
            try:
                out[n] = os.getxattr(path, n, follow_symlinks=False)
            except OSError as e:
                if e.errno == errno.ENODATA:
                    continue
                raise
        return out

    def run(self):
        ea = self.scan(self.a)
        eb = self.scan(self.b)
        for rel in sorted(set(ea) - set(eb)):
            self.diff(rel, "only in A")
        for rel in sorted(set(eb) - set(ea)):
            self.diff(rel, "only in B")
        common = sorted(set(ea) & set(eb))
        for rel in common:
            try:
                self.compare(rel, ea[rel], eb[rel])
            except OSError as e:
                self.error(f"{show(rel)}: {e}")
        self.compare_hardlinks(ea, eb, set(common))
        return self

    def compare(self, rel, sa, sb):
        pa, pb = self.full(self.a, rel), self.full(self.b, rel)
        ta, tb = stat.S_IFMT(sa.st_mode), stat.S_IFMT(sb.st_mode)
        if ta != tb:
            self.diff(rel, f"type {TYPE_NAMES.get(ta, ta)} != {TYPE_NAMES.get(tb, tb)}")
            return
        if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode):
            self.diff(rel, f"mode {stat.S_IMODE(sa.st_mode):04o} != {stat.S_IMODE(sb.st_mode):04o}")
        if sa.st_uid != sb.st_uid:
            self.diff(rel, f"uid {sa.st_uid} != {sb.st_uid}")
        if sa.st_gid != sb.st_gid:
            self.diff(rel, f"gid {sa.st_gid} != {sb.st_gid}")
        if not (rel == b"" and self.ignore_root_times) and sa.st_mtime_ns != sb.st_mtime_ns:
            self.diff(rel, f"mtime {fmt_ns(sa.st_mtime_ns)} != {fmt_ns(sb.st_mtime_ns)}")
        xa, xb = self.xattrs(pa), self.xattrs(pb)
        for n in sorted(set(xa) - set(xb)):
            self.diff(rel, f"xattr {n} only in A")
        for n in sorted(set(xb) - set(xa)):
            self.diff(rel, f"xattr {n} only in B")
        for n in sorted(set(xa) & set(xb)):
            if xa[n] != xb[n]:
                self.diff(rel, f"xattr {n} value differs ({len(xa[n])} bytes != {len(xb[n])} bytes)")
        if ta == stat.S_IFLNK:
            la, lb = os.readlink(pa), os.readlink(pb)
            if la != lb:
                self.diff(rel, f"symlink target {show(la)!r} != {show(lb)!r}")
        elif ta in (stat.S_IFCHR, stat.S_IFBLK):
            if sa.st_rdev != sb.st_rdev:
                self.diff(rel, f"rdev {os.major(sa.st_rdev)},{os.minor(sa.st_rdev)} != "
                               f"{os.major(sb.st_rdev)},{os.minor(sb.st_rdev)}")
        elif ta == stat.S_IFREG:
            if sa.st_size != sb.st_size:
                self.diff(rel, f"size {sa.st_size} != {sb.st_size}")
            else:
                self.compare_content(rel, pa, pb, sa.st_size)
            alloc_a, alloc_b = sa.st_blocks * 512, sb.st_blocks * 512
            if alloc_b > alloc_a + SPARSE_SLACK:
                self.diff(rel, f"allocated {alloc_a} bytes in A but {alloc_b} in B (holes not kept)")

    @staticmethod
    def data_regions(fd, size):
        """[(start, end)] of data; holes are the rest. Falls back to one region on failure."""
        regions = []
        off = 0
        try:
            while off < size:
                try:
                    start = os.lseek(fd, off, os.SEEK_DATA)
                except OSError as e:
                    if e.errno == errno.ENXIO:  # only a hole from off to the end
                        break
                    raise
                end = os.lseek(fd, start, os.SEEK_HOLE)
                end = min(end, size)
                if start >= end:
                    break
                regions.append((start, end))
                off = end
        except OSError:
            return [(0, size)] if size else []
        return regions

    @staticmethod
    def merge(ra, rb):
        """Union of two lists of sorted, disjoint [start, end) ranges."""
        allr = sorted(ra + rb)
        out = []
        for s, e in allr:
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], e))
            else:
                out.append((s, e))
        return out

    def compare_content(self, rel, pa, pb, size):
        if size == 0:
            return
        fa = os.open(pa, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fb = os.open(pb, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            os.close(fa)
            raise
        try:
            # Ranges that are a hole on both sides read as zeros on both: nothing to compare.
            # Anything that is data on either side is read from both and compared.
            ranges = self.merge(self.data_regions(fa, size), self.data_regions(fb, size))
            for start, end in ranges:
                off = start
                while off < end:
                    n = min(BLOCK, end - off)
                    ba = os.pread(fa, n, off)
                    bb = os.pread(fb, n, off)
                    if len(ba) != n or len(bb) != n:
                        self.diff(rel, f"short read at offset {off}")
                        return
                    if ba != bb:
                        i = next(i for i in range(n) if ba[i] != bb[i])
                        self.diff(rel, f"content differs at offset {off + i}")
                        return
                    off += n
        finally:
            os.close(fa)
            os.close(fb)

    def compare_hardlinks(self, ea, eb, common):
        def groups(entries):
            by_ino = {}
            for rel, st in entries.items():
                if stat.S_ISDIR(st.st_mode):
                    continue
                by_ino.setdefault((st.st_dev, st.st_ino), []).append(rel)
            g = {}
            for rels in by_ino.values():
                fs = frozenset(rels)
                for r in rels:
                    g[r] = fs
            return g

        ga, gb = groups(ea), groups(eb)
        for rel in sorted(common):
            if rel not in ga or rel not in gb:
                continue
            a = ga[rel] & common
            b = gb[rel] & common
            if a != b:
                fa = ", ".join(show(x) for x in sorted(a))
                fb = ", ".join(show(x) for x in sorted(b))
                self.diff(rel, f"hardlink group [{fa}] != [{fb}]")


def main():
    ap = argparse.ArgumentParser(description="Compare two trees field for field.")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore-root-times", action="store_true",
                    help="do not compare the mtime of the root entry")
    ap.add_argument("--exclude", action="append", default=[], metavar="REL",
                    help="leave out this relative path and everything under it (repeatable)")
    ap.add_argument("--max-diffs", type=int, default=0, metavar="N",
                    help="print at most N differences (0: all); the exit code is unchanged")
    args = ap.parse_args()
    for p in (args.a, args.b):
        if not os.path.lexists(p):
            print(f"treecmp: error: {p}: does not exist", file=sys.stderr)
            return 2
    try:
        c = Cmp(args.a, args.b, args.ignore_root_times, args.exclude, args.max_diffs).run()
    except OSError as e:
        print(f"treecmp: error: {e}", file=sys.stderr)
        return 2
    if c.ndiffs > 0:
        if args.max_diffs and c.ndiffs > args.max_diffs:
            print(f"... and {c.ndiffs - args.max_diffs} more differences")
        print(f"treecmp: {c.ndiffs} difference(s) between {args.a} and {args.b}", file=sys.stderr)
        return 1
    if c.errors:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
