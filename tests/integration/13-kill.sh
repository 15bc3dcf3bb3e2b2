#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash safety: a writer killed with SIGKILL at several points of a snapshot of a ~600 MiB tree
# (after 0.2 s, 0.7 s, 1.5 s, 3 s, and twice right when its snapshot manifest appears) leaves the
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

# watch_and_kill DIR PID MODE: (local backend) SIGKILLs PID the moment an entry is created in or
# renamed into DIR (inotify: within a millisecond); MODE "any": the first entry (a temporary file
# while the manifest is written, if the writer makes one there), "final": the first whose name
# does not start with a dot (the published manifest). Prints the name. Returns when PID has been
# killed or has exited.
watch_and_kill() {
    python3 - "$1" "$2" "$3" <<'PYEOF'
import ctypes, os, select, signal, struct, sys, time
d, pid, mode = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
def watch(path):
    if libc.inotify_add_watch(fd, path, 0x100 | 0x80) < 0:  # IN_CREATE | IN_MOVED_TO
        sys.exit("inotify_add_watch %r failed: errno %d" % (path, ctypes.get_errno()))
def state():
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
def kill(name):
    os.kill(pid, signal.SIGKILL)
    print(name.decode(errors="replace") if isinstance(name, bytes) else name)
    sys.exit(0)
if fd < 0:
    sys.exit("inotify_init1 failed")
watching = False
if os.path.isdir(d):
    watch(d)
    watching = True
else:  # the writer makes DIR on its first snapshot: watch the parent until it appears
    watch(os.path.dirname(d))
deadline = time.time() + 1200
while time.time() < deadline and state() not in ("Z", "X", "gone"):
    r, _, _ = select.select([fd], [], [], 0.05)
    if not r:
        continue
    buf = os.read(fd, 65536)
    off = 0
    while off < len(buf):
        wd, mask, cookie, ln = struct.unpack_from("iIII", buf, off)
        name = buf[off + 16:off + 16 + ln].rstrip(b"\0")
        off += 16 + ln
        if watching and (mode == "any" or not name.startswith(b".")):
            kill(name)
        if name == os.path.basename(d):
            watch(d)
            watching = True
            existing = [n for n in os.listdir(d) if mode == "any" or not n.startswith(b".")]
            if existing:
                kill(existing[0])
print("")
PYEOF
}

# kill_at_publish VOLNAME MODE: start a snapshot and SIGKILL it as soon as its manifest appears
# (local: inotify on snapshots/, MODE as for watch_and_kill; s3: polling the listing).
kill_at_publish() {
    local vol=$1 mode=$2 before n0 n pid rc=0 new seen="" deadline
    before=$(snapshot_ids "$REPO")
    n0=$(printf '%s\n' "$before" | sed '/^$/d' | wc -l)
    if [[ $PRAFS_TEST_BACKEND == local ]]; then
        "$PRAFS" snapshot "$REPO" "$vol=$SRC" >"$TMP/kill.out" 2>"$TMP/kill.err" &
        pid=$!
        seen=$(watch_and_kill "$REPO/snapshots" "$pid" "$mode") || { kill -KILL "$pid" 2>/dev/null || true; fail "the inotify watcher failed"; }
        [[ -n $seen ]] && log "kill at publish: killed when snapshots/$seen appeared"
    else
        "$PRAFS" snapshot "$REPO" "$vol=$SRC" >"$TMP/kill.out" 2>"$TMP/kill.err" &
        pid=$!
        deadline=$((SECONDS + T_LONG))
        while kill -0 "$pid" 2>/dev/null; do
            # a listing of snapshots/ (cheaper than prafs, which derives the key first)
            n=$( (repo_objects "$REPO" snapshots 2>/dev/null || true) | wc -l)
            if [[ $n -gt $n0 ]]; then
                kill -KILL "$pid" 2>/dev/null || true
                seen=1
                break
            fi
            if [[ $SECONDS -gt $deadline ]]; then
                kill -KILL "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                fail "snapshot did not finish within ${T_LONG}s"
            fi
            sleep 0.01
        done
    fi
    wait "$pid" 2>/dev/null || rc=$?
    case $rc in
    0) log "kill at publish: the writer exited before the kill${seen:+ (too fast to catch)}" ;;
    137) ;;
    *) show_file "$TMP/kill.err"; fail "snapshot (to be killed at publish) exited $rc by itself" ;;
    esac
    new=$(check_listing "$before" "killed at publish")
    if [[ -n $new ]]; then
        log "kill at publish: snapshot ${new:0:8} is listed: it completed"
        add_completed "$new"
    elif [[ $rc -eq 0 ]]; then
        fail "a snapshot that exited 0 is not listed"
    else
        log "kill at publish: killed before the manifest was complete: nothing listed, as expected"
    fi
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
    # Volume names without a parent, so these writers have the whole tree to read. Local: once
    # at the first entry in snapshots/ (a temporary file: killed while the manifest is written),
    # once at the manifest itself; s3: once, polling. Whatever was hit, the listing must be exact.
    kill_at_publish vol-publish final
    if [[ $b == local ]]; then
        kill_at_publish vol-publish-2 any
    fi
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
