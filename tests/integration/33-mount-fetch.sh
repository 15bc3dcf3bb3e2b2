#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# How the mount fetches (fs/fetch.c), from its -v unmount summary, with exact bytes:
#  - a sequential read of a large file gets its consecutive chunks in multi-chunk GETs ("runs");
#  - `cp -a` of a tree of 2,000 small files in 10 directories costs a few GETs, not one per file: a
#    window of the pack around the first file, then planned GETs of the files that follow in the
#    tree (fs/plan.c), across directories and packs (how many reads still waited for a fetch
#    depends on timing: logged, not asserted);
#  - most of those 2,000 files reach `cp` through the page cache, put there ahead of it (fs/push.c):
#    the mount answers far fewer READs than there are files, and the copy is byte-exact;
#  - on S3, the disk-cache writer (a background thread) has written entries by the unmount;
#  - listings give names only for files until a reader looks files up (ops.c, "Names only"): a
#    `find` costs no LOOKUP per file, an `ls -lR` after it switches listings to attributes and
#    costs the LOOKUPs of about one directory, not of every file, and shows the right attributes.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 is needed"

trap 'mounts_cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

SRC="$TMP/src"
mkdir -p "$SRC/small"
head -c $((48 << 20)) /dev/urandom >"$SRC/big" || fail "cannot write the big file"
timeout -k 10 "$T_LONG" python3 - "$SRC/small" <<'EOF' || fail "cannot write the small files"
import os, random, sys
r = random.Random(33)
for d in range(10):  # ~40 MiB of 4-36 KiB incompressible files: more than a window and its prefetch
    os.mkdir(os.path.join(sys.argv[1], f"d{d}"))
    for i in range(200):
        with open(os.path.join(sys.argv[1], f"d{d}", f"f{i:04d}"), "wb") as f:
            f.write(r.randbytes(r.randrange(4096, 36864)))
EOF

summary_field() { # LOG REGEX: the number before REGEX in the unmount summary
    grep -o "unmounted: .*" "$1" | grep -oE "[0-9]+ $2" | head -1 | awk '{print $1}'
}

run_fetch() {
    local b=$PRAFS_TEST_BACKEND repo m="$TMP/mnt-$PRAFS_TEST_BACKEND"
    export XDG_CACHE_HOME="$TMP/cache-$b"
    repo=$(make_repo fetch)
    prafs_ok snapshot "$repo" v="$SRC"
    start_mount "$repo" "$m" "$TMP/mount-$b.log" -v
    sync
    echo 3 >/proc/sys/vm/drop_caches
    timeout 300 cmp "$m/snapshots/latest/v/big" "$SRC/big" || fail "the big file reads wrong through the mount"
    rm -rf "$TMP/copy"
    mkdir -p "$TMP/copy"
    timeout 300 cp -a "$m/snapshots/latest/v/small" "$TMP/copy/" || fail "cp -a out of the mount failed"
    assert_same_tree "$SRC/small" "$TMP/copy/small"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b.log"
    grep "unmounted:" "$TMP/mount-$b.log" >&2 || { show_file "$TMP/mount-$b.log" 40; fail "no unmount summary"; }
    local runs windows planned writes errors reads pushed
    runs=$(summary_field "$TMP/mount-$b.log" "runs")
    windows=$(summary_field "$TMP/mount-$b.log" "windows,")
    planned=$(summary_field "$TMP/mount-$b.log" "planned")
    writes=$(summary_field "$TMP/mount-$b.log" "disk cache writes")
    errors=$(summary_field "$TMP/mount-$b.log" "errors")
    reads=$(summary_field "$TMP/mount-$b.log" "reads,")
    pushed=$(summary_field "$TMP/mount-$b.log" "files pushed")
    assert_eq 0 "$errors" "fetch errors"
    assert_lt 0 "${runs:-0}" "GETs that fetched several chunks of the big file at once"
    assert_lt 0 "${planned:-0}" "planned GETs for the small files"
    assert_le "$((${windows:-0} + ${planned:-0}))" 100 "window and planned GETs for 2,000 small files"
    [[ $b == s3 ]] && assert_lt 0 "${writes:-0}" "entries written by the disk-cache writer"
    # 48 READs of 1 MiB for the big file, then one READ per 33 small files or so
    assert_le 1000 "${pushed:-0}" "small files pushed to the page cache ahead of cp"
    assert_lt "${reads:-999999}" 1000 "READs answered for the big file and 2,000 small files"
    rm -rf "$XDG_CACHE_HOME"

    # names only, then attributes (the FUSE debug log counts the requests)
    local nl="$TMP/mount-$b-names.log" lookups_find lookups_ls names switches
    start_mount "$repo" "$m" "$nl" -v -d
    assert_eq "$(find "$SRC/small" | wc -l)" "$(timeout 300 find "$m/snapshots/latest/v/small" | wc -l)" "entries found"
    lookups_find=$(grep -c 'opcode: LOOKUP' "$nl")
    timeout 300 ls -lR "$m/snapshots/latest/v/small" >/dev/null || fail "ls -lR after find failed"
    lookups_ls=$(($(grep -c 'opcode: LOOKUP' "$nl") - lookups_find))
    assert_same_tree "$SRC/small" "$m/snapshots/latest/v/small"
    stop_mount "$m" "$MOUNT_PID" "$nl"
    names=$(summary_field "$nl" "listings with names only")
    switches=$(summary_field "$nl" "switches to attributes")
    log "find: $lookups_find LOOKUPs; ls -lR after it: $lookups_ls LOOKUPs; $names listings with names only, $switches switches"
    assert_le "$lookups_find" 20 "LOOKUPs of a find of 2,000 files in 10 directories"
    assert_le 10 "${names:-0}" "listings with names only (find)"
    assert_le 1 "${switches:-0}" "switches to attributes (ls -lR)"
    assert_le "$lookups_ls" 400 "LOOKUPs of an ls -lR of 2,000 files after a find (200 per directory)"

    # a damaged pack: the read that needs it fails with EIO, the mount names the pack, and stays up
    local pack
    pack=$(repo_objects "$repo" data | sort -k2,2n | tail -n1 | cut -d' ' -f1)
    flip_byte "$repo" "$pack" >/dev/null
    start_mount "$repo" "$m" "$TMP/mount-$b-bad.log"
    local err rc=0
    err=$(cd "$m/snapshots/latest/v" && find . -type f -print0 | timeout 300 xargs -0 cat 2>&1 >/dev/null) || rc=$?
    [[ $rc -ne 0 && $err == *"Input/output error"* ]] || fail "reading through a damaged pack: exit $rc, '$err'"
    assert_contains "$TMP/mount-$b-bad.log" "$(basename "$pack") is damaged" "the mount's message"
    [[ -d $m/snapshots/latest/v/small ]] || fail "the mount went away after the damaged read"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-bad.log"
    rm -rf "$XDG_CACHE_HOME"
}

for_each_backend run_fetch
log "pass"
