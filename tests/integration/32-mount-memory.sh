#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Memory of the mount: an idle mount warms its heap once (and keeps it); reading a 2 GiB file through
# it with -o cache_size=128 keeps the daemon's peak resident size (VmHWM) under 256 MiB, and the
# bytes read are right (spot checks of the pattern at many offsets). The file is compressible but
# not dedupable (every 4 KiB page carries its own counter), so it is quick to write and to snapshot,
# yet every chunk is a blob of its own.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 is needed"

LIMIT_KB=$((256 * 1024))
trap 'mounts_cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

SRC="$TMP/src"
mkdir -p "$SRC"
log "writing a 2 GiB file"
t0=$SECONDS
timeout -k 10 "$T_LONG" python3 - "$SRC/big" <<'EOF' || fail "cannot write the 2 GiB file"
import random, sys
# 4 KiB pages: an 8-byte page counter, then fixed text (compresses ~1000:1, never dedups)
fixed = bytes(random.Random(7).choice(b"abcdefghijklmnopqrstuvwxyz \n") for _ in range(4096 - 8))
with open(sys.argv[1], "wb") as f:
    for blk in range(2048):
        f.write(b"".join((blk * 256 + p).to_bytes(8, "little") + fixed for p in range(256)))
EOF
log "written in $((SECONDS - t0)) s"

run_memory() {
    local b=$PRAFS_TEST_BACKEND repo m="$TMP/mnt-$PRAFS_TEST_BACKEND"
    export XDG_CACHE_HOME="$TMP/cache-$b"
    repo=$(make_repo memory)
    t0=$SECONDS
    prafs_ok snapshot "$repo" v="$SRC"
    log "snapshot in $((SECONDS - t0)) s"
    # Left alone, a mount touches the memory a large read will use once (the memory cache's size
    # + 48 MiB: 3 pieces of 32 MiB here) and keeps it: the read then faults in no fresh heap.
    start_mount "$repo" "$m" "$TMP/mount-$b-warm.log" -o cache_size=64 -v
    wait_for_line "$TMP/mount-$b-warm.log" "heap warm" "$MOUNT_PID"
    assert_contains "$TMP/mount-$b-warm.log" "heap warmed: 96 MiB touched" "the warm-up of an idle mount"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$MOUNT_PID/status")
    assert_le $((96 * 1024)) "$rss" "resident KiB of the mount after its warm-up"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-warm.log"

    start_mount "$repo" "$m" "$TMP/mount-$b.log" -o cache_size=128
    local pid=$MOUNT_PID
    local f="$m/snapshots/latest/v/big" s e
    assert_eq 2147483648 "$(stat -c %s "$f")" "size through the mount"
    s=$(date +%s.%N)
    timeout 300 dd if="$f" of=/dev/null bs=1M status=none || fail "reading the 2 GiB file failed"
    e=$(date +%s.%N)
    local hwm rss
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    log "2 GiB read at $(python3 -c "print(f'{2048*1.048576/($e-$s):.0f}')") MB/s; VmHWM $((hwm / 1024)) MiB, VmRSS $((rss / 1024)) MiB"
    assert_lt "$hwm" "$LIMIT_KB" "peak resident KiB of the mount with cache_size=128"
    # the right bytes: the page counters at 2000 places (the page cache may serve some, the rest is
    # read again through the daemon after dropping it)
    sync
    echo 3 >/proc/sys/vm/drop_caches
    timeout 300 python3 - "$f" <<'EOF' || fail "wrong bytes through the mount"
import os, random, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
r = random.Random(32)
for _ in range(2000):
    page = r.randrange(2 * 1024 * 1024 * 1024 // 4096)
    b = os.pread(fd, 16, page * 4096)
    if int.from_bytes(b[:8], "little") != page:
        sys.exit(f"page {page}: counter {int.from_bytes(b[:8], 'little')}")
EOF
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    assert_lt "$hwm" "$LIMIT_KB" "peak resident KiB after the random reads"
    stop_mount "$m" "$pid" "$TMP/mount-$b.log"
    rm -rf "$XDG_CACHE_HOME"
}

for_each_backend run_memory
rm -f "$SRC/big"
log "pass"
