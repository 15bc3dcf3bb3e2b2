#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash safety of prune: a prune killed with SIGKILL at each of its phases (right after it took its
# lock, after marking, in the middle of repacking, right after publishing the new index, in the
# middle of deleting packs) and after a few short delays leaves every kept snapshot restorable
# exactly; a prune run again afterwards completes, and then `check --read-data` is clean, no pack
# is left in no index, and the killed prune's lock, stale at once by the pid rule, is gone.
# The repository uses 1 MiB packs (its config says so) so that a prune repacks many packs.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

BG_PID=""
kill_bg() { if [[ -n $BG_PID ]]; then kill -KILL "$BG_PID" 2>/dev/null || true; fi; }
trap 'kill_bg; _lib_cleanup' EXIT

NFILES=240
SRC="$TMP/src"
KEEP="$TMP/keep"
log "generating the sources"
treegen "$KEEP"
mkdir -p "$SRC"

verify_kept() {
    assert_eq "$(printf '%s\n' "$KEEP_ID" "$CUR_ID" | sort)" "$(snapshot_ids "$REPO")" "snapshots after the kill"
    restore_same "$REPO" "$KEEP_ID" "$KEEP" keep
    restore_same "$REPO" "$CUR_ID" "$SRC" vol
}

rerun_and_check() {
    prafs_ok prune "$REPO"
    prafs_ok check "$REPO" --read-data
    if grep -q . "$TMP/out"; then show_file "$TMP/out"; fail "check after the re-run of prune printed problems"; fi
    assert_contains "$TMP/err" "no errors found" "check --read-data after the re-run of prune"
    local locks
    # (a local store's .tmp-* files are a killed writer's half-written objects: invisible to readers)
    locks=$(repo_objects "$REPO" locks | grep -v '/\.tmp-' || true)
    [[ -z $locks ]] || fail "locks left after the re-run of prune: $locks"
    verify_kept
}

# next_round ROUND: new state, snapshot it, forget the previous one: garbage for the prune.
next_round() {
    local before
    round_files "$SRC" "$NFILES" "$1"
    before=$(snapshot_ids "$REPO")
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    CUR_ID=$(new_snapshot_id "$REPO" "$before")
    prafs_ok forget "$REPO" --host h --keep-last 1
}

prune_kill() {
    local b=$PRAFS_TEST_BACKEND round=0 phase n rc delay
    REPO=$(make_repo "kill-$b")
    set_pack_size "$REPO" $((1 << 20))
    prafs_ok snapshot "$REPO" --host k keep="$KEEP"
    KEEP_ID=$(snapshot_ids "$REPO")
    round_files "$SRC" "$NFILES" 0
    prafs_ok snapshot "$REPO" --host h vol="$SRC"
    CUR_ID=$(new_snapshot_id "$REPO" "$KEEP_ID")

    for phase in start mark repack index delete; do
        round=$((round + 1))
        next_round "$round"
        log "round $round: prune killed at phase '$phase'"
        prune_paused "$REPO" "$phase"
        BG_PID=$PRUNE_PID
        n=$( (repo_objects "$REPO" index || true) | wc -l)
        log "  paused at $phase with $n index files; SIGKILL"
        kill -KILL "$BG_PID"
        rc=0
        wait "$BG_PID" 2>/dev/null || rc=$?
        BG_PID=""
        assert_eq 137 "$rc" "exit status of the killed prune"
        verify_kept
        if [[ $phase == index ]]; then
            # the old and the new index side by side: both name only packs that exist
            prafs_ok check "$REPO"
        fi
        rerun_and_check
    done

    for delay in 0.1 0.3 0.6; do
        round=$((round + 1))
        next_round "$round"
        log "round $round: prune killed after ${delay}s"
        "$PRAFS" prune "$REPO" >"$TMP/prune.out" 2>"$TMP/prune.err" &
        BG_PID=$!
        sleep "$delay"
        kill -KILL "$BG_PID" 2>/dev/null || true
        rc=0
        wait "$BG_PID" 2>/dev/null || rc=$?
        BG_PID=""
        [[ $rc -eq 0 || $rc -eq 137 ]] || { show_file "$TMP/prune.err"; fail "prune exited $rc by itself"; }
        verify_kept
        rerun_and_check
    done
}

for_each_backend prune_kill
log "pass"
