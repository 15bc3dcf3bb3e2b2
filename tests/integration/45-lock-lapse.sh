#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A snapshot whose lock could not be refreshed for so long that others may take it for stale
# publishes nothing, even once the lock is written again: a prune may have removed what it wrote.
#  - S3: the writer talks to the server through a loopback proxy; it stops right before publishing
#    (PRAFS_TEST_SNAPSHOT_PAUSE), the proxy goes away for longer than the stale age (4 s here), a
#    prune meanwhile takes the lock for stale and removes the packs no snapshot refers to, the proxy
#    comes back (the lock is written again), the writer goes on: it fails, naming the lapsed lock,
#    no snapshot appears, `check --read-data` is clean, and the next snapshot works.
#  - local: the same without the prune, the lock directory made immutable (chattr +i) for a while.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

SNAP_PID=""
cleanup() {
    [[ -n $SNAP_PID ]] && kill -KILL "$SNAP_PID" 2>/dev/null
    [[ -n ${IMMUTABLE:-} ]] && chattr -i "$IMMUTABLE" 2>/dev/null
    return 0
}
trap 'cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

SRC="$TMP/src"
SRC2="$TMP/src2"
mkdir -p "$SRC" "$SRC2"
for i in 1 2 3; do write_random "$SRC/f$i" $((300 << 10)) "lapse-a$i"; done
for i in 1 2 3; do write_random "$SRC2/g$i" $((2 << 20)) "lapse-b$i"; done

# paused_snapshot REPO [ENV...]: a snapshot of $SRC2 that stops before publishing until
# $TMP/resume exists; its lock is refreshed every second and stale for others after 4 s
paused_snapshot() {
    local repo=$1
    shift
    rm -f "$TMP/resume" "$TMP/snap.out" "$TMP/snap.err"
    env "$@" PRAFS_LOCK_REFRESH=1 PRAFS_LOCK_STALE=4 PRAFS_TEST_SNAPSHOT_PAUSE=publish \
        PRAFS_TEST_SNAPSHOT_RESUME="$TMP/resume" \
        "$PRAFS" snapshot "$repo" v="$SRC2" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    SNAP_PID=$!
    wait_for_line "$TMP/snap.err" "snapshot: test pause at publish" "$SNAP_PID"
}

# resumed_fails REPO BEFORE_IDS: lets the paused snapshot go on; it must fail, say why, publish nothing
resumed_fails() {
    local rc=0
    touch "$TMP/resume"
    timeout 120 tail --pid="$SNAP_PID" -f /dev/null || fail "the snapshot did not end"
    wait "$SNAP_PID" || rc=$?
    SNAP_PID=""
    [[ $rc -ne 0 ]] || { show_file "$TMP/snap.err"; fail "the snapshot published under a lock that had lapsed"; }
    assert_contains "$TMP/snap.err" "could not be refreshed for" "the writer names the lapsed lock"
    assert_contains "$TMP/snap.err" "nothing was published" "the writer says nothing was published"
    assert_eq "$2" "$(snapshot_ids "$1")" "snapshots after the failed one"
}

run_lapse() {
    local repo before
    repo=$(make_repo lapse)
    prafs_ok snapshot "$repo" v="$SRC"
    before=$(snapshot_ids "$repo")
    case $PRAFS_TEST_BACKEND in
    s3)
        proxy_init
        start_proxy
        paused_snapshot "$repo" AWS_ENDPOINT_URL="http://127.0.0.1:$PROXY_PORT" PRAFS_S3_RETRIES=1 \
            PRAFS_S3_RETRY_SECONDS=2
        stop_proxy
        sleep 5
        # the writer's lock is 5 s old: stale for a prune that waits 4 s, which goes on and removes
        # the packs only the unpublished snapshot refers to
        PRAFS_LOCK_STALE=4 prafs_ok prune "$repo"
        start_proxy
        sleep 3 # the writer's lock is written again
        resumed_fails "$repo" "$before"
        stop_proxy
        ;;
    local)
        if ! chattr +i "$repo/locks" 2>/dev/null; then
            log "chattr +i does not work here: local part skipped"
            return 0
        fi
        chattr -i "$repo/locks"
        paused_snapshot "$repo"
        IMMUTABLE="$repo/locks"
        chattr +i "$repo/locks"
        sleep 5
        chattr -i "$repo/locks"
        IMMUTABLE=""
        sleep 3
        resumed_fails "$repo" "$before"
        ;;
    esac
    prafs_ok check "$repo" --read-data
    log "the next snapshot works"
    prafs_ok snapshot "$repo" v="$SRC2"
    local id
    id=$(new_snapshot_id "$repo" "$before")
    restore_same "$repo" "$id" "$SRC2" v
}

for_each_backend run_lapse
log "pass"
