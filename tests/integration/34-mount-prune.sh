#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A mount outlives a prune (fs/fetch.c, refetch_moved): a mount that has read the index (and the
# trees) sees `forget --prune` repack the pack its files are in (half of the pack belongs to the
# forgotten snapshot only) and delete the old pack; every file of the kept snapshot then still reads
# byte-exact through the same mount, which says that it read the index again. Without that, those
# reads fail with EIO until the next mount.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 is needed"
export PRAFS_SCRYPT_N=1024

trap 'mounts_cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

# 40 files of 96 KiB, alternately kept and dropped: one data pack, half of it unused after the
# forget, so that prune repacks the kept half into a new pack and deletes the old one
mkdir -p "$TMP/src1"
for i in $(seq -w 0 39); do write_random "$TMP/src1/f$i" $((96 << 10)) "f$i"; done
cp -a "$TMP/src1" "$TMP/src2"
for i in $(seq -w 1 2 39); do rm "$TMP/src2/f$i"; done

run_prune_under_mount() {
    local b=$PRAFS_TEST_BACKEND repo m="$TMP/mnt-$PRAFS_TEST_BACKEND" logf="$TMP/mount-$PRAFS_TEST_BACKEND.log" s1 s2 f
    export XDG_CACHE_HOME="$TMP/cache-$b"
    repo=$(make_repo prune-mount)
    prafs_ok snapshot "$repo" v="$TMP/src1"
    s1=$(snapshot_ids "$repo")
    prafs_ok snapshot "$repo" v="$TMP/src2"
    s2=$(new_snapshot_id "$repo" "$s1")
    local packs_before
    packs_before=$(repo_objects "$repo" data | cut -d' ' -f1 | sort)

    start_mount "$repo" "$m" "$logf" -v
    # trees and index read, no file data
    assert_eq 20 "$(ls "$m/ids/${s2:0:8}/v" | wc -l)" "files of the kept snapshot listed"

    prafs_ok forget "$repo" --keep-last 1 --prune
    local packs_after
    packs_after=$(repo_objects "$repo" data | cut -d' ' -f1 | sort)
    [[ -n $(comm -23 <(echo "$packs_before") <(echo "$packs_after")) ]] ||
        fail "the prune removed no pack (nothing to test): $(cat "$TMP/err")"

    for f in "$TMP/src2"/f*; do
        timeout 120 cmp "$m/ids/${s2:0:8}/v/$(basename "$f")" "$f" ||
            { show_file "$logf" 30; fail "$(basename "$f") of the kept snapshot reads wrong after the prune"; }
    done
    assert_contains "$logf" "index read again" "the mount's message"
    if grep -q "names no other pack" "$logf"; then show_file "$logf" 30; fail "a blob was not found after the reload"; fi
    stop_mount "$m" "$MOUNT_PID" "$logf"
    rm -rf "$XDG_CACHE_HOME"
}

for_each_backend run_prune_under_mount
log "pass"
