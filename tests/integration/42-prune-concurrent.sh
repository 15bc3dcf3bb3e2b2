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
#     `unlock` removes it, and a prune does not wait for it.
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

round_files() {
    python3 - "$SRC" "$NFILES" "$1" <<'EOF'
import os, random, sys
root, n, rnd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    p = os.path.join(root, f"f{i:04d}")
    if rnd == 0 or i % 3 != rnd % 3:
        r = random.Random(f"{rnd}:{i}")
        with open(p, "wb") as f:
            f.write(r.randbytes(r.randint(8 * 1024, 64 * 1024)))
EOF
}

set_pack_size() {
    repo_fetch "$1" config "$TMP/config"
    sed -i "s/^pack_size=.*/pack_size=$2/" "$TMP/config"
    repo_store "$1" config "$TMP/config"
}

restore_same() { # REPO ID SOURCE VOLUME
    rm -rf "$TMP/restore"
    export XDG_CACHE_HOME="$TMP/cache-restore"
    rm -rf "$XDG_CACHE_HOME"
    prafs_ok restore "$1" "$2" "$TMP/restore"
    assert_same_tree "$3" "$TMP/restore/$4"
    rm -rf "$TMP/restore"
    export XDG_CACHE_HOME="$TMP/cache"
}

wait_for_line() { # FILE TEXT PID
    local file=$1 text=$2 pid=$3 deadline=$((SECONDS + 120))
    until grep -qF -- "$text" "$file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_file "$file" 40
            fail "the process exited before saying '$text'"
        fi
        ((SECONDS < deadline)) || fail "'$text' did not appear in 120 s"
        sleep 0.05
    done
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
    round_files 0
    cp -a "$SRC" "$TMP/old"
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    s1=$(snapshot_ids "$REPO")
    round_files 1
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    s2=$(new_snapshot_id "$REPO" "$s1")
    prafs_ok forget "$REPO" --keep-last 1
    assert_eq "$s2" "$(snapshot_ids "$REPO")" "snapshots after forget"

    resume="$TMP/resume-prune"
    rm -f "$resume"
    PRAFS_TEST_PRUNE_PAUSE=repack PRAFS_TEST_PRUNE_RESUME="$resume" \
        "$PRAFS" prune "$REPO" >"$TMP/prune.out" 2>"$TMP/prune.err" &
    prune_pid=$!
    PIDS+=("$prune_pid")
    wait_for_line "$TMP/prune.err" "test pause at repack" "$prune_pid"
    log "  prune paused mid-repack; a second prune is refused"
    assert_exit 1 prune "$REPO" --lock-wait 0
    assert_contains "$TMP/err" "exclusive lock of host $HOST, pid $prune_pid" "refusal of a second prune"

    log "  a snapshot of the forgotten state (exactly the data being pruned) waits for the prune"
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
    round_files 2
    resume="$TMP/resume-snap"
    rm -f "$resume"
    before=$(snapshot_ids "$REPO")
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$resume" \
        "$PRAFS" snapshot "$REPO" --host h vol="$SRC" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    snap_pid=$!
    PIDS+=("$snap_pid")
    wait_for_line "$TMP/snap.err" "test pause after taking a shared lock" "$snap_pid"
    assert_exit 1 prune "$REPO" --lock-wait 0
    assert_contains "$TMP/err" "shared lock of host $HOST, pid $snap_pid" "refusal of a prune during a snapshot"
    prafs_ok unlock "$REPO"
    assert_contains "$TMP/out" "still held" "unlock output for a live lock"
    assert_eq 1 "$(lock_count)" "locks after unlock while a snapshot runs"
    prafs_ok forget "$REPO" --host h --keep-last 1 --dry-run
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
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$TMP/never" \
        "$PRAFS" snapshot "$REPO" --host h vol="$SRC" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    snap_pid=$!
    PIDS+=("$snap_pid")
    wait_for_line "$TMP/snap.err" "test pause after taking a shared lock" "$snap_pid"
    kill -KILL "$snap_pid"
    wait_rc "$snap_pid"
    rc=$WRC
    assert_eq 137 "$rc" "exit status of the killed snapshot"
    assert_eq 1 "$(lock_count)" "locks left by the killed snapshot"
    prafs_ok unlock "$REPO"
    assert_contains "$TMP/out" "removed locks/" "unlock of a dead writer's lock"
    assert_contains "$TMP/out" "pid $snap_pid" "unlock names the dead writer"
    assert_eq 0 "$(lock_count)" "locks after unlock"
    PRAFS_TEST_LOCK_PAUSE=shared PRAFS_TEST_LOCK_RESUME="$TMP/never" \
        "$PRAFS" snapshot "$REPO" --host h vol="$SRC" >"$TMP/snap.out" 2>"$TMP/snap.err" &
    snap_pid=$!
    PIDS+=("$snap_pid")
    wait_for_line "$TMP/snap.err" "test pause after taking a shared lock" "$snap_pid"
    kill -KILL "$snap_pid"
    wait_rc "$snap_pid"
    prafs_ok prune "$REPO" --lock-wait 0
    assert_eq 0 "$(lock_count)" "locks after a prune (stale ones are removed)"
    check_clean
}

for_each_backend concurrent
log "pass"
