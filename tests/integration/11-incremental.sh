#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Incremental snapshots: a second snapshot of an unchanged tree adds < 1 MiB to the repository and
# reads no file contents; inserting one byte at the start of a 64 MiB random file re-uploads at
# most 3 chunks (content-defined chunking resynchronises), and that snapshot restores exactly.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

MiB=$((1 << 20))
SRC="$TMP/src"
treegen "$SRC"
write_random "$SRC/big64" $((64 * MiB)) big64
cp -a "$SRC/big64" "$TMP/big64.orig"

# Growth of the repository: object sizes summed (local: the files; s3: a listing).
measure_size() { repo_size "$1"; }

incremental() {
    local b=$PRAFS_TEST_BACKEND repo id1 id2 id3 id4 s1 s2 s3 v du1=0 du2
    rm -rf "$SRC/big64" && cp -a "$TMP/big64.orig" "$SRC/big64"
    repo=$(make_repo "inc-$b")

    log "first snapshot"
    prafs_ok snapshot "$repo" --host inc-host vol="$SRC"
    id1=$(snapshot_ids "$repo")
    [[ $id1 =~ ^[0-9a-f]{64}$ ]] || fail "one snapshot expected after the first snapshot, got [$id1]"
    s1=$(measure_size "$repo")
    if [[ $b == local ]]; then
        du1=$(du -sb "$repo" | cut -f1)
        log "repository after snapshot 1: $s1 bytes in objects, du -sb $du1"
    fi

    log "second snapshot, nothing changed"
    prafs_ok snapshot "$repo" --host inc-host vol="$SRC"
    id2=$(new_snapshot_id "$repo" "$id1")
    s2=$(measure_size "$repo")
    assert_lt $((s2 - s1)) "$MiB" "bytes added to the repository by a snapshot of an unchanged tree"
    if [[ $b == local ]]; then
        du2=$(du -sb "$repo" | cut -f1)
        assert_lt $((du2 - du1)) "$MiB" "du -sb growth of the repository for an unchanged tree"
    fi
    v=$(snapshot_field "$repo" "$id2" bytes_uploaded)
    assert_lt "$v" "$MiB" "bytes_uploaded of a snapshot of an unchanged tree"
    v=$(snapshot_field "$repo" "$id2" bytes_read)
    assert_eq 0 "$v" "bytes_read of a snapshot of an unchanged tree"
    v=$(snapshot_field "$repo" "$id2" parent)
    assert_eq "$id1" "$v" "parent of the second snapshot"

    log "insert one byte at the start of the 64 MiB file"
    python3 - "$SRC/big64" <<'EOF'
import sys
p = sys.argv[1]
data = open(p, "rb").read()
with open(p, "wb") as f:
    f.write(b"\x42" + data)
EOF
    prafs_ok snapshot "$repo" --host inc-host vol="$SRC"
    id3=$(new_snapshot_id "$repo" "$id1
$id2")
    s3=$(measure_size "$repo")
    log "growth: unchanged +$((s2 - s1)) bytes, one-byte insert +$((s3 - s2)) bytes"
    assert_lt $((s3 - s2)) $((3 * 4 * MiB + MiB)) "bytes added to the repository by a one-byte insert"
    v=$(snapshot_field "$repo" "$id3" bytes_new)
    assert_le "$v" $((3 * 4 * MiB)) "bytes_new after a one-byte insert at the start of a 64 MiB file"
    v=$(snapshot_field "$repo" "$id3" bytes_read)
    assert_eq $((64 * MiB + 1)) "$v" "bytes_read after changing one 64 MiB file (only it is read)"
    v=$(snapshot_field "$repo" "$id3" parent)
    assert_eq "$id2" "$v" "parent of the third snapshot"

    log "restore the changed snapshot"
    export XDG_CACHE_HOME="$TMP/cache-restore-$b"
    prafs_ok restore "$repo" "${id3:0:12}" "$TMP/restore-$b"
    assert_same_tree "$SRC" "$TMP/restore-$b/vol"
    rm -rf "$TMP/restore-$b"

    log "extended attributes changed, nothing else: the next snapshot has them"
    # (an unchanged entry's attributes are taken from the parent snapshot, unread: only the ctime
    # that setxattr moves tells the writer to read them again)
    python3 - "$SRC" <<'EOF' || fail "could not change the tree's xattrs"
import os, sys
root = sys.argv[1]
with_user, inodes = [], set()  # two different files (hardlinks share their xattrs)
for d, dirs, files in os.walk(root):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        st = os.lstat(p)
        if not os.path.islink(p) and st.st_ino not in inodes and any(n.startswith("user.") for n in os.listxattr(p)):
            inodes.add(st.st_ino)
            with_user.append(p)
assert len(with_user) >= 2, "treegen made fewer than two files with user.* xattrs"
changed, removed = with_user[0], with_user[1]
name = next(n for n in os.listxattr(changed) if n.startswith("user."))
os.setxattr(changed, name, b"changed after the parent snapshot")
for n in [n for n in os.listxattr(removed) if n.startswith("user.")]:
    os.removexattr(removed, n)
subdir = next(os.path.join(root, e) for e in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, e)))
os.setxattr(subdir, "user.added", b"on a directory")
print(changed, removed, subdir)
EOF
    prafs_ok snapshot "$repo" --host inc-host vol="$SRC"
    id4=$(new_snapshot_id "$repo" "$id1
$id2
$id3")
    v=$(snapshot_field "$repo" "$id4" parent)
    assert_eq "$id3" "$v" "parent of the fourth snapshot"
    prafs_ok restore "$repo" "${id4:0:12}" "$TMP/restore4-$b"
    assert_same_tree "$SRC" "$TMP/restore4-$b/vol"
    rm -rf "$TMP/restore4-$b"

    log "the first snapshot still has the old file"
    prafs_ok restore "$repo" "${id1:0:12}:vol/big64" "$TMP/restore1-$b"
    cmp "$TMP/big64.orig" "$TMP/restore1-$b/big64" || fail "snapshot 1's big64 differs from the original"
    assert_same_tree "$TMP/big64.orig" "$TMP/restore1-$b/big64"
    rm -rf "$TMP/restore1-$b"
    export XDG_CACHE_HOME="$TMP/cache"
}

for_each_backend incremental
log "pass"
