#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash safety: a writer killed with SIGKILL at several points of a snapshot of a ~600 MiB tree
# (after 0.2 s, 0.7 s, 1.5 s, 3 s, and right when its snapshot manifest appears) leaves the
# repository readable: `snapshots` lists exactly the completed snapshots (never a partial one),
# each of them restores equal to the source, and a new snapshot afterwards succeeds and restores
# equal. (A writer killed after it published its manifest has completed its snapshot.)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

MiB=$((1 << 20))
SRC="$TMP/src"
mkdir -p "$SRC"
log "generating a ~600 MiB tree"
write_random "$SRC/big-1" $((300 * MiB)) kill-big-1
write_random "$SRC/big-2" $((250 * MiB)) kill-big-2
python3 - "$SRC/small" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(1313)
for d in range(40):
    dp = os.path.join(root, f"d{d:02d}")
    os.makedirs(dp)
    for f in range(50):
        n = r.randint(1, 40 * 1024)
        with open(os.path.join(dp, f"f{f:03d}"), "wb") as fh:
            fh.write(random.Random(d * 1000 + f).randbytes(n))
EOF
log "tree: $(du -sh "$SRC" | cut -f1)"

COMPLETED=""   # ids of the snapshots known to be complete, one a line

add_completed() { COMPLETED=$(printf '%s\n%s\n' "$COMPLETED" "$1" | sed '/^$/d' | sort -u); }

# check_listing BEFORE KILLED: the listing now must hold every id of BEFORE plus at most one new
# one, which counts as completed. Prints the new id (or nothing).
check_listing() {
    local before=$1 how=$2 now new n
    now=$(snapshot_ids "$REPO")
    local lost
    lost=$(comm -23 <(printf '%s\n' "$before" | sed '/^$/d') <(printf '%s\n' "$now" | sed '/^$/d'))
    [[ -z $lost ]] || fail "after a writer $how, completed snapshots disappeared: $lost"
    new=$(comm -13 <(printf '%s\n' "$before" | sed '/^$/d') <(printf '%s\n' "$now" | sed '/^$/d'))
    n=$(printf '%s\n' "$new" | sed '/^$/d' | wc -l)
    [[ $n -le 1 ]] || fail "after a writer $how, $n new snapshots appeared: $new"
    printf '%s' "$new"
}

# kill_after SECONDS VOLNAME: start a snapshot, SIGKILL it after SECONDS (if still running).
kill_after() {
    local t=$1 vol=$2 before pid rc=0 new
    before=$(snapshot_ids "$REPO")
    "$PRAFS" snapshot "$REPO" "$vol=$SRC" >"$TMP/kill.out" 2>"$TMP/kill.err" &
    pid=$!
    sleep "$t"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) log "kill after ${t}s: the snapshot had already completed" ;;
    137) ;;
    *) show_file "$TMP/kill.err"; fail "snapshot (to be killed after ${t}s) exited $rc by itself" ;;
    esac
    new=$(check_listing "$before" "killed after ${t}s")
    if [[ $rc -eq 0 && -z $new ]]; then fail "a snapshot that exited 0 is not listed"; fi
    if [[ -n $new ]]; then
        [[ $rc -eq 0 ]] || log "kill after ${t}s: killed after publishing ${new:0:8}"
        add_completed "$new"
    else
        log "kill after ${t}s: no snapshot listed, as expected"
    fi
}

# kill_at_publish VOLNAME: start a snapshot and SIGKILL it as soon as a new snapshot is listed.
kill_at_publish() {
    local vol=$1 before n0 pid rc=0 new seen=0 deadline
    before=$(snapshot_ids "$REPO")
    n0=$(printf '%s\n' "$before" | sed '/^$/d' | wc -l)
    "$PRAFS" snapshot "$REPO" "$vol=$SRC" >"$TMP/kill.out" 2>"$TMP/kill.err" &
    pid=$!
    deadline=$((SECONDS + T_LONG))
    while kill -0 "$pid" 2>/dev/null; do
        if [[ $PRAFS_TEST_BACKEND == local ]]; then
            n=$(find "$REPO/snapshots" -maxdepth 1 -type f ! -name '.*' 2>/dev/null | wc -l || true)
        else
            n=$(timeout 30 "$PRAFS" snapshots "$REPO" --json 2>/dev/null |
                python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "$n0")
        fi
        if [[ $n -gt $n0 ]]; then
            kill -KILL "$pid" 2>/dev/null || true
            seen=1
            break
        fi
        if [[ $SECONDS -gt $deadline ]]; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" || true
            fail "snapshot did not finish within ${T_LONG}s"
        fi
        sleep 0.01
    done
    wait "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) log "kill at publish: the writer exited before the kill (seen=$seen)" ;;
    137) log "kill at publish: killed right after the manifest appeared" ;;
    *) show_file "$TMP/kill.err"; fail "snapshot (to be killed at publish) exited $rc by itself" ;;
    esac
    new=$(check_listing "$before" "killed at publish")
    [[ -n $new ]] || fail "no new snapshot listed after the writer published one"
    add_completed "$new"
}

verify_all() {
    local now id
    now=$(snapshot_ids "$REPO")
    assert_eq "$COMPLETED" "$now" "listed snapshots vs the completed ones"
    for id in $now; do
        log "restore ${id:0:8}"
        export XDG_CACHE_HOME="$TMP/cache-verify"
        rm -rf "$XDG_CACHE_HOME" "$TMP/restore"
        prafs_ok restore "$REPO" "$id" "$TMP/restore"
        local vol
        vol=$(ls "$TMP/restore")
        [[ $(echo "$vol" | wc -l) -eq 1 ]] || fail "snapshot ${id:0:8} restored volumes: $vol"
        assert_same_tree "$SRC" "$TMP/restore/$vol"
        rm -rf "$TMP/restore"
    done
    export XDG_CACHE_HOME="$TMP/cache"
}

kill_test() {
    local b=$PRAFS_TEST_BACKEND
    COMPLETED=""
    REPO=$(make_repo "kill-$b")
    for t in 0.2 0.7 1.5 3; do
        kill_after "$t" vol
    done
    # A volume name without a parent, so this writer has the whole tree to read.
    kill_at_publish vol-publish
    log "completed so far: $(printf '%s\n' "$COMPLETED" | sed '/^$/d' | wc -l)"

    log "a new snapshot after the kills"
    local before new
    before=$(snapshot_ids "$REPO")
    prafs_ok snapshot "$REPO" vol="$SRC"
    new=$(new_snapshot_id "$REPO" "$before")
    add_completed "$new"

    verify_all
}

for_each_backend kill_test
log "pass"
