#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A full disk where prafs writes, and nothing lost:
#  - a snapshot into a local repository on a 24 MiB tmpfs, of 40 MiB that does not compress: it
#    exits 1 naming the repository, "No space left on device" and that nothing was published; the
#    snapshot taken before it is still the only one and still restores exactly, and `check` finds no
#    error; once there is room, the same snapshot succeeds and restores exactly, and prune removes
#    what the failed one left behind (check then has nothing to warn about);
#  - on S3, a mount whose disk cache is on a full tmpfs: a big file and a directory of small files
#    read back exact through it, and the mount says once, naming the cache, why it caches nothing.
# (A destination that fills up during a restore: test 15.)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

TMPFS=()
trap 'mounts_cleanup; for m in "${TMPFS[@]}"; do umount "$m" 2>/dev/null; done; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP
tmpfs_at() { # DIR SIZE
    mkdir -p "$1"
    mount -t tmpfs -o "size=$2" tmpfs "$1" || skip "cannot mount a tmpfs"
    TMPFS+=("$1")
}

# ---- the repository's disk fills up during a snapshot ---------------------------------------------

A="$TMP/a"
mkdir -p "$A/sub"
for i in $(seq 1 20); do echo "file $i of the first snapshot" >"$A/sub/f$i"; done
write_random "$A/one-mib" $((1 << 20)) first
B="$TMP/b"
mkdir -p "$B"
for i in 1 2 3 4; do write_random "$B/big$i" $((10 << 20)) "big-$i"; done
echo "small" >"$B/small"

FULL="$TMP/full"
tmpfs_at "$FULL" 24m
repo="$FULL/repo"
prafs_ok init "$repo"
prafs_ok snapshot "$repo" v="$A"
first=$(snapshot_ids "$repo")
[[ -n $first ]] || fail "the first snapshot is not listed"

assert_exit 1 snapshot "$repo" v="$B"
assert_contains "$TMP/err" "No space left on device" "the snapshot says the disk is full"
assert_contains "$TMP/err" " in $repo:" "the snapshot names the repository it could not write to"
assert_contains "$TMP/err" "nothing was published" "the snapshot says no snapshot was made"
assert_eq "$first" "$(snapshot_ids "$repo")" "snapshots after the failed one"
prafs_ok check "$repo"
rm -rf "$TMP/r1"
prafs_ok restore "$repo" latest "$TMP/r1"
assert_same_tree "$A" "$TMP/r1/v"
log "a full repository disk: the snapshot failed cleanly, the one before it restores exactly"

mount -o remount,size=100m "$FULL" || fail "cannot grow the tmpfs"
prafs_ok snapshot "$repo" v="$B"
[[ $(snapshot_ids "$repo" | wc -l) -eq 2 ]] || fail "the snapshot with room made no second snapshot"
rm -rf "$TMP/r2"
prafs_ok restore "$repo" latest "$TMP/r2"
assert_same_tree "$B" "$TMP/r2/v"
prafs_ok prune "$repo"
prafs_ok check "$repo"
if grep -qi "warning" "$TMP/err" "$TMP/out"; then
    show_file "$TMP/err"
    fail "check still warns after prune removed what the failed snapshot left"
fi
rm -rf "$TMP/r1"
prafs_ok restore "$repo" "$first" "$TMP/r1"
assert_same_tree "$A" "$TMP/r1/v"
log "with room: the snapshot succeeded, prune removed the leftovers, both snapshots restore exactly"

# ---- the mount's disk cache is on a full disk -------------------------------------------------------

mount_with_full_cache() {
    [[ -c /dev/fuse ]] && command -v fusermount3 >/dev/null || skip "FUSE is needed"
    local repo src="$TMP/c" cache="$TMP/cache-fs" mp="$TMP/mnt" logf="$TMP/mount.log" n
    mkdir -p "$src/small"
    write_random "$src/big" $((12 << 20)) cache-big
    for i in $(seq 1 150); do write_random "$src/small/s$i" $((i * 300)) "small-$i"; done
    repo=$(make_repo cachefull)
    prafs_ok snapshot "$repo" v="$src"
    tmpfs_at "$cache" 2m
    dd if=/dev/zero of="$cache/filler" bs=64k 2>/dev/null || true # until the tmpfs is full
    [[ $(df --output=avail -B1 "$cache" | tail -1) -lt 65536 ]] || fail "the cache tmpfs is not full"
    start_mount "$repo" "$mp" "$logf" -o disk_cache_dir="$cache/prafs"
    cmp "$mp/snapshots/latest/v/big" "$src/big" || fail "the big file differs when read with a full disk cache"
    cp -a "$mp/snapshots/latest/v/small" "$TMP/small-copy" || fail "cp -a out of the mount failed with a full disk cache"
    assert_same_tree "$src/small" "$TMP/small-copy"
    stop_mount "$mp" "$MOUNT_PID" "$logf"
    assert_contains "$logf" "disk cache $cache/prafs: cannot store an entry (No space left on device)" \
        "the mount says why its disk cache stays empty"
    n=$(grep -c "cannot store an entry" "$logf")
    assert_eq 1 "$n" "times the mount said its disk cache is full"
    log "a full disk under the mount's cache: reads exact, said once"
}
if [[ " $(backends) " == *" s3 "* ]]; then
    PRAFS_TEST_BACKEND=s3
    mount_with_full_cache
    unset PRAFS_TEST_BACKEND
else
    log "no S3 server: the mount with a full disk cache is not run (a local repository is read without a disk cache)"
fi
log "pass"
