#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Locks between snapshots and prune:
#  1. a snapshot started while a prune runs (held in the middle of its repack) waits for the
#     prune's exclusive lock, then completes; its data is exactly the data the prune was deleting
#     (the forgotten snapshot's), and it restores exactly afterwards; a second prune meanwhile is
#     refused, naming the holder;
#  2. a prune started while a snapshot runs (held right after it took its shared lock) is refused
#     with --lock-wait 0, naming the holder (host, pid); `unlock` leaves a live lock alone; a prune
#     that waits runs once the snapshot is done, and the snapshot restores exactly;
#  3. a snapshot killed with SIGKILL leaves a lock that is stale at once (same host, dead pid):
#     `unlock` removes it, and a prune does not wait for it;
#  4. a restore holds a shared lock too: a prune started meanwhile is refused with --lock-wait 0,
#     naming it, and the restore completes exactly; `restore --no-lock` takes none.
# check --read-data is clean at the end of each part.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

PIDS=()
kill_bg() { local p; for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap 'kill_bg; _lib_cleanup' EXIT

NFILES=240
SRC="$TMP/src"
mkdir -p "$SRC"
HOST=$(hostname)

# snapshot_paused RESUME_FILE: starts a snapshot of $SRC into $REPO in the background that stops
# right after taking its shared lock (PRAFS_TEST_LOCK_PAUSE) until RESUME_FILE exists, and waits
# until it is there. Its pid is left in SNAP_PID (and PIDS), its output in $TMP/snap.out and
# $TMP/snap.err.
SNAP_PID=""
snapshot_paused() {
    rm -f "$TMP/snap.out" "$TMP/snap.err" # (a line left by an earlier run must not be taken for this one's)
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$1" \
        "$PRAFS" snapshot "$REPO" --host h vol="$SRC" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    SNAP_PID=$!
    PIDS+=("$SNAP_PID")
    wait_for_line "$TMP/snap.err" "test pause after taking a shared lock" "$SNAP_PID"
}

WRC=0
wait_rc() { # PID: its exit status in WRC (bounded: the processes here end by themselves)
    WRC=0
    wait "$1" 2>/dev/null || WRC=$?
}

check_clean() {
    prafs_ok check "$REPO" --read-data
    if grep -q . "$TMP/out"; then show_file "$TMP/out"; fail "check printed problems"; fi
    assert_contains "$TMP/err" "no errors found" "check --read-data"
}

# (a local store's .tmp-* files are half-written objects of killed processes: invisible to readers)
lock_count() { (repo_objects "$REPO" locks || true) | { grep -v '/\.tmp-' || true; } | wc -l; }

concurrent() {
    local b=$PRAFS_TEST_BACKEND s1 s2 s3 before prune_pid snap_pid rc resume
    REPO=$(make_repo "conc-$b")
    set_pack_size "$REPO" $((1 << 20))

    log "part 1: a snapshot started while a prune runs"
    rm -rf "$SRC" "$TMP/old" && mkdir -p "$SRC"
    round_files "$SRC" "$NFILES" 0
    cp -a "$SRC" "$TMP/old"
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    s1=$(snapshot_ids "$REPO")
    round_files "$SRC" "$NFILES" 1
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    s2=$(new_snapshot_id "$REPO" "$s1")
    prafs_ok forget "$REPO" --keep-last 1
    assert_eq "$s2" "$(snapshot_ids "$REPO")" "snapshots after forget"

    resume="$TMP/resume-prune"
    rm -f "$resume"
    prune_paused "$REPO" repack "$resume"
    prune_pid=$PRUNE_PID
    PIDS+=("$prune_pid")
    log "  prune paused mid-repack; a second prune is refused"
    assert_exit 1 prune "$REPO" --lock-wait 0
    assert_contains "$TMP/err" "exclusive lock of host $HOST, pid $prune_pid" "refusal of a second prune"

    log "  a snapshot that may not wait is refused, naming the prune, and writes nothing"
    before=$(repo_objects "$REPO" data | sort)
    assert_exit 1 snapshot "$REPO" --lock-wait 0 --host h2 old="$TMP/old"
    assert_contains "$TMP/err" "exclusive lock of host $HOST, pid $prune_pid" "what refused the snapshot"
    assert_contains "$TMP/err" "snapshot failed: no lock on $REPO" "the snapshot's verdict"
    assert_eq "$before" "$(repo_objects "$REPO" data | sort)" "packs after the refused snapshot"
    assert_eq "$s2" "$(snapshot_ids "$REPO")" "snapshots after the refused snapshot"

    log "  a snapshot of the forgotten state (exactly the data being pruned) waits for the prune"
    rm -f "$TMP/snap.out" "$TMP/snap.err"
    "$PRAFS" snapshot "$REPO" --host h2 old="$TMP/old" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    snap_pid=$!
    PIDS+=("$snap_pid")
    wait_for_line "$TMP/snap.err" "waiting up to" "$snap_pid"
    assert_contains "$TMP/snap.err" "exclusive lock of host $HOST, pid $prune_pid" "what the snapshot waits for"
    assert_eq "$s2" "$(snapshot_ids "$REPO")" "snapshots while the writer waits"
    touch "$resume"
    wait_rc "$prune_pid"
    rc=$WRC
    [[ $rc -eq 0 ]] || { show_file "$TMP/prune.err"; fail "the paused prune exited $rc"; }
    assert_contains "$TMP/prune.out" "repacked" "prune report"
    wait_rc "$snap_pid"
    rc=$WRC
    [[ $rc -eq 0 ]] || { show_file "$TMP/snap.err"; fail "the snapshot started during the prune exited $rc"; }
    s3=$(new_snapshot_id "$REPO" "$s2")
    restore_same "$REPO" "$s3" "$TMP/old" old
    restore_same "$REPO" "$s2" "$SRC" vol
    check_clean
    assert_eq 0 "$(lock_count)" "locks left after part 1"

    log "part 2: a prune started while a snapshot runs"
    round_files "$SRC" "$NFILES" 2
    resume="$TMP/resume-snap"
    rm -f "$resume"
    before=$(snapshot_ids "$REPO")
    snapshot_paused "$resume"
    snap_pid=$SNAP_PID
    assert_exit 1 prune "$REPO" --lock-wait 0
    assert_contains "$TMP/err" "shared lock of host $HOST, pid $snap_pid" "refusal of a prune during a snapshot"
    prafs_ok unlock "$REPO"
    assert_contains "$TMP/out" "still held" "unlock output for a live lock"
    assert_eq 1 "$(lock_count)" "locks after unlock while a snapshot runs"
    prafs_ok forget "$REPO" --host h --keep-last 1 --dry-run
    rm -f "$TMP/prune.out" "$TMP/prune.err"
    "$PRAFS" prune "$REPO" >"$TMP/prune.out" 2>"$TMP/prune.err" &
    prune_pid=$!
    PIDS+=("$prune_pid")
    wait_for_line "$TMP/prune.err" "waiting up to" "$prune_pid"
    touch "$resume"
    wait_rc "$snap_pid"
    rc=$WRC
    [[ $rc -eq 0 ]] || { show_file "$TMP/snap.err"; fail "the snapshot exited $rc"; }
    wait_rc "$prune_pid"
    rc=$WRC
    [[ $rc -eq 0 ]] || { show_file "$TMP/prune.err"; fail "the prune that waited exited $rc"; }
    local s4
    s4=$(new_snapshot_id "$REPO" "$before")
    restore_same "$REPO" "$s4" "$SRC" vol
    restore_same "$REPO" "$s3" "$TMP/old" old
    check_clean

    log "part 3: a SIGKILLed writer's lock is stale at once"
    snapshot_paused "$TMP/never"
    snap_pid=$SNAP_PID
    kill -KILL "$snap_pid"
    wait_rc "$snap_pid"
    rc=$WRC
    assert_eq 137 "$rc" "exit status of the killed snapshot"
    assert_eq 1 "$(lock_count)" "locks left by the killed snapshot"
    prafs_ok unlock "$REPO"
    assert_contains "$TMP/out" "removed locks/" "unlock of a dead writer's lock"
    assert_contains "$TMP/out" "pid $snap_pid" "unlock names the dead writer"
    assert_eq 0 "$(lock_count)" "locks after unlock"
    snapshot_paused "$TMP/never"
    snap_pid=$SNAP_PID
    kill -KILL "$snap_pid"
    wait_rc "$snap_pid"
    prafs_ok prune "$REPO" --lock-wait 0
    assert_eq 0 "$(lock_count)" "locks after a prune (stale ones are removed)"
    check_clean

    log "part 4: a prune started while a restore runs"
    local rpid last=latest # a snapshot of $SRC as it is (part 2's)
    rm -rf "$TMP/r4" "$TMP/resume-restore" "$TMP/restore4.out" "$TMP/restore4.err"
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$TMP/resume-restore" \
        "$PRAFS" restore "$REPO" "$last" "$TMP/r4" >"$TMP/restore4.out" 2>"$TMP/restore4.err" &
    rpid=$!
    PIDS+=("$rpid")
    wait_for_line "$TMP/restore4.err" "test pause after taking a shared lock" "$rpid"
    assert_exit 1 prune "$REPO" --lock-wait 0
    assert_contains "$TMP/err" "shared lock of host $HOST, pid $rpid" "refusal of a prune during a restore"
    touch "$TMP/resume-restore"
    wait_rc "$rpid"
    [[ $WRC -eq 0 ]] || { show_file "$TMP/restore4.err"; fail "the restore exited $WRC"; }
    assert_same_tree "$SRC" "$TMP/r4/vol"
    assert_eq 0 "$(lock_count)" "locks after the restore"
    rm -rf "$TMP/r4"
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$TMP/never" prafs_ok restore --no-lock "$REPO" "$last" "$TMP/r4"
    assert_same_tree "$SRC" "$TMP/r4/vol"
    rm -rf "$TMP/r4"
}

for_each_backend concurrent
log "pass"
