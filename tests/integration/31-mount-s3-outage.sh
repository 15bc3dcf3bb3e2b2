#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The mount when the store goes away. With the S3 server cut off (a loopback TCP proxy in front of
# it is stopped: the server itself is shared, and `scripts/s3-server stop` wipes its state), a read
# of data not cached fails with EIO within a bounded time (PRAFS_S3_RETRIES=2,
# PRAFS_S3_RETRY_SECONDS=5), the mount stays up and serves what it has (memory cache; listings);
# once the server is back the same read succeeds (failures are not cached). After a remount (and a
# listing, which loads the index), data read before comes from the disk cache while the server is
# away, and data never read fails.
# The same for a local repository whose pack directory disappears and comes back.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 is needed"

MiB=$((1 << 20))

cleanup() {
    mounts_cleanup
    if [[ -n ${AWAY:-} && -d $AWAY ]]; then mv "$AWAY" "${AWAY%.away}" 2>/dev/null || true; fi
}
trap 'cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

# read_fails FILE MAX_SECONDS: reading fails with EIO, within MAX_SECONDS
read_fails() {
    local start rc=0 err
    start=$(date +%s)
    err=$(timeout 120 cat "$1" 2>&1 >/dev/null) || rc=$?
    local took=$(($(date +%s) - start))
    log "read of $(basename "$1") with the store away: exit $rc after ${took}s"
    [[ $rc -ne 0 && $rc -ne 124 ]] || fail "reading $1 with the store away: exit $rc (expected an error)"
    [[ $err == *"Input/output error"* ]] || fail "reading $1 with the store away: expected EIO, got: $err"
    assert_le "$took" "$2" "seconds until the read failed"
}

same_sum() { # FILE_IN_MOUNT FILE_IN_SOURCE WHAT
    local a b
    a=$(timeout 120 sha256sum <"$1" | cut -d' ' -f1) || fail "$3: reading $1 failed"
    b=$(sha256sum <"$2" | cut -d' ' -f1)
    assert_eq "$b" "$a" "$3"
}

SRC="$TMP/src"
mkdir -p "$SRC/sub"
write_random "$SRC/a" $((2 * MiB + 5)) outage-a
write_random "$SRC/b" $((3 * MiB)) outage-b
write_random "$SRC/c" 10000 outage-c
# e, the file never read before the last outage, is in a snapshot of its own: read-ahead across files
# (fs/plan.c) walks the snapshot a reader is in, and would fetch it along with a, b and c
SRC2="$TMP/src2"
mkdir -p "$SRC2/sub"
write_random "$SRC2/sub/e" $((MiB + 1)) outage-e

# ---- local: the pack directory goes away ---------------------------------------------------------

log "local repository: data/ goes away and comes back"
export PRAFS_TEST_BACKEND=local XDG_CACHE_HOME="$TMP/cache-local"
repo=$(make_repo outage)
prafs_ok snapshot "$repo" vol="$SRC"
m="$TMP/mnt-local"
start_mount "$repo" "$m" "$TMP/mount-local.log" -o refresh=2
pid=$MOUNT_PID
d="$m/snapshots/latest/vol"
same_sum "$d/a" "$SRC/a" "a, store up"
stat "$d/b" >/dev/null
AWAY="$repo/data.away"
mv "$repo/data" "$AWAY"
read_fails "$d/b" 20
same_sum "$d/a" "$SRC/a" "a (cached) while the store is away"
is_mounted "$m" && ! gone "$pid" || fail "the mount went down"
mv "$AWAY" "$repo/data"
AWAY=""
same_sum "$d/b" "$SRC/b" "b once the store is back"
assert_contains "$TMP/mount-local.log" "data/" "the log names the object that could not be read"
stop_mount "$m" "$pid" "$TMP/mount-local.log"
unset PRAFS_TEST_BACKEND

# ---- S3: the server goes away --------------------------------------------------------------------

if [[ ${PRAFS_TEST_S3:-0} != 1 ]]; then
    log "no S3 server (PRAFS_TEST_S3 unset): S3 part skipped"
    log "pass"
    exit 0
fi
proxy_init
export PRAFS_TEST_BACKEND=s3 XDG_CACHE_HOME="$TMP/cache-s3"
repo=$(make_repo outage-mount)
prafs_ok snapshot "$repo" vol="$SRC"
prafs_ok snapshot "$repo" other="$SRC2"
# the mounts go through the proxy, and give up on an unreachable server soon (the rest of the test,
# the bucket's removal at the end included, talks to the server itself)
proxied_mount() { # REPO MOUNTPOINT LOG [OPTIONS...]
    AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" PRAFS_S3_RETRIES=2 PRAFS_S3_RETRY_SECONDS=5 start_mount "$@"
}
start_proxy
m="$TMP/mnt-s3"
proxied_mount "$repo" "$m" "$TMP/mount-s3.log" -o refresh=2
pid=$MOUNT_PID
d="$m/volumes/vol/latest"
d2="$m/volumes/other/latest"
log "server up: read a, look at b"
same_sum "$d/a" "$SRC/a" "a, server up"
stat "$d/b" "$d2/sub/e" "$d/c" >/dev/null

log "server away"
stop_proxy
read_fails "$d/b" 45
read_fails "$d/b" 45 # tried again, not remembered
is_mounted "$m" && ! gone "$pid" || fail "the mount went down with the server"
same_sum "$d/a" "$SRC/a" "a (memory cache) with the server away"
start=$(date +%s)
timeout 120 ls "$m/snapshots" >/dev/null || fail "listing snapshots/ with the server away failed"
assert_le $(($(date +%s) - start)) 45 "seconds to list snapshots/ with the server away"
assert_contains "$TMP/mount-s3.log" "data/" "the log names the object that could not be read"

log "server back: the same read succeeds"
start_proxy
same_sum "$d/b" "$SRC/b" "b once the server is back"
same_sum "$d/c" "$SRC/c" "c once the server is back"
stop_mount "$m" "$pid" "$TMP/mount-s3.log"

log "remount: what was read before comes from the disk cache while the server is away"
ls "$XDG_CACHE_HOME/prafs" >/dev/null || fail "no disk cache under $XDG_CACHE_HOME/prafs"
proxied_mount "$repo" "$m" "$TMP/mount-s3b.log" -o refresh=3600
pid=$MOUNT_PID
# the index comes from the server (index files are not disk-cached): one listing loads it
timeout 60 ls -lR "$d/" "$d2/" >/dev/null || fail "listing the snapshot after the remount failed"
stop_proxy
same_sum "$d/a" "$SRC/a" "a from the disk cache, server away"
same_sum "$d/b" "$SRC/b" "b from the disk cache, server away"
read_fails "$d2/sub/e" 45
start_proxy
same_sum "$d2/sub/e" "$SRC2/sub/e" "sub/e once the server is back"
stop_mount "$m" "$pid" "$TMP/mount-s3b.log"
stop_proxy
log "pass"
