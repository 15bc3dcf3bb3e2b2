#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Round trip: treegen --big -> init -> snapshot (two volumes) -> restore -> identical trees, on
# each backend. Also: restore of one file (by id prefix and by time), of a symlink, of a hardlinked
# file, of a subdirectory; `ls` names the entries; `snapshots --json` is valid and complete; an
# empty repository and a snapshot that is not there are named as such.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

SRC="$TMP/src"
treegen "$SRC" --big

# Fresh disk cache for each restore: the bytes must come from the repository.
fresh_cache() { export XDG_CACHE_HOME="$TMP/cache-$1"; rm -rf "$XDG_CACHE_HOME"; }

check_snapshot_json() { # FILE
    python3 - "$1" "$SRC" <<'EOF' || fail "snapshots --json content (see above)"
import json, os, re, sys
j = json.load(open(sys.argv[1]))
src = sys.argv[2]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
check(isinstance(j, list) and len(j) == 1, f"expected an array of 1 snapshot, got {j!r:.200}")
s = j[0] if isinstance(j, list) and j else {}
for k in ("id", "short_id", "time", "host", "tags", "parent", "volumes", "files", "bytes_read",
          "bytes_new", "bytes_uploaded", "duration"):
    check(k in s, f"field {k!r} missing")
check(re.fullmatch(r"[0-9a-f]{64}", str(s.get("id"))), f"id {s.get('id')!r} is not 64 hex digits")
check(re.fullmatch(r"[0-9a-f]{8}", str(s.get("short_id"))) and str(s.get("id")).startswith(str(s.get("short_id"))),
      f"short_id {s.get('short_id')!r} is not the first 8 hex digits of the id")
check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z(-\d+)?", str(s.get("time"))), f"time {s.get('time')!r}")
check(s.get("host") == "test-host", f"host {s.get('host')!r} != 'test-host'")
check(sorted(s.get("tags") or []) == ["second-tag", "t1"], f"tags {s.get('tags')!r}")
check(s.get("parent") is None, f"parent {s.get('parent')!r} of a first snapshot is not null")
vols = {v.get("name"): v for v in s.get("volumes") or []}
check(set(vols) == {"main", "grafana"}, f"volumes {sorted(vols)} != ['grafana', 'main']")
nfiles = ndirs = 0
for dp, dns, fns in os.walk(src):  # symlinks to directories are listed in dns, not entered
    for n in dns + fns:
        if os.path.isdir(os.path.join(dp, n)) and not os.path.islink(os.path.join(dp, n)):
            ndirs += 1
        else:
            nfiles += 1
m = vols.get("main", {})
for k in ("files", "dirs", "bytes"):
    check(isinstance(m.get(k), int), f"volume main: {k} {m.get(k)!r} is not an integer")
if isinstance(m.get("files"), int):
    check(300 <= m["files"] <= nfiles + ndirs + 1, f"volume main: files {m['files']} (tree has {nfiles} non-directories)")
if isinstance(m.get("dirs"), int):
    check(ndirs <= m["dirs"] <= ndirs + 1, f"volume main: dirs {m['dirs']} (tree has {ndirs} + root)")
if isinstance(m.get("bytes"), int):
    check(m["bytes"] >= 300 << 20, f"volume main: bytes {m['bytes']} < 300 MiB")
if isinstance(s.get("files"), int) and isinstance(m.get("files"), int):
    check(s["files"] >= m["files"], f"files {s['files']} < volume main's {m['files']}")
for k in ("bytes_read", "bytes_new", "bytes_uploaded"):
    check(isinstance(s.get(k), int) and s[k] >= 0, f"{k} {s.get(k)!r} is not a non-negative integer")
check(isinstance(s.get("bytes_read"), int) and s["bytes_read"] >= 300 << 20, f"bytes_read {s.get('bytes_read')} < 300 MiB")
check(isinstance(s.get("bytes_new"), int) and s["bytes_new"] >= 300 << 20, f"bytes_new {s.get('bytes_new')} < 300 MiB")
check(isinstance(s.get("bytes_uploaded"), int) and s["bytes_uploaded"] >= 300 << 20,
      f"bytes_uploaded {s.get('bytes_uploaded')} < 300 MiB (the big file is random)")
check(isinstance(s.get("duration"), (int, float)) and s["duration"] >= 0, f"duration {s.get('duration')!r}")
for e in errors:
    print("    snapshots --json: " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
}

roundtrip() {
    local b=$PRAFS_TEST_BACKEND repo id short time dest
    repo=$(make_repo "roundtrip-$b")

    log "a repository without snapshots says so"
    assert_exit 1 restore "$repo" latest "$TMP/restore-empty-$b"
    assert_contains "$TMP/err" "has no snapshots yet" "restore of latest from an empty repository"

    log "snapshot"
    prafs_ok snapshot "$repo" --tag t1 --tag second-tag --host test-host main="$SRC" grafana="$SRC/grafana"

    snapshots_json "$repo" "$TMP/snaps-$b.json"
    check_snapshot_json "$TMP/snaps-$b.json"
    id=$(json_eval "$TMP/snaps-$b.json" 'j[0]["id"]')
    short=$(json_eval "$TMP/snaps-$b.json" 'j[0]["short_id"]')
    time=$(json_eval "$TMP/snaps-$b.json" 'j[0]["time"]')

    prafs_ok snapshots "$repo"
    assert_contains "$TMP/out" "$short" "prafs snapshots lists the short id"
    assert_contains "$TMP/out" "$time" "prafs snapshots shows the time"
    assert_exit 1 ls "$repo" 1999-01-01T00:00:00Z
    assert_contains "$TMP/err" "no snapshot matches '1999-01-01T00:00:00Z'" "ls of a snapshot that is not there"

    log "restore everything"
    dest="$TMP/restore-$b/all"
    mkdir -p "$TMP/restore-$b"
    fresh_cache "$b-all"
    prafs_ok restore "$repo" latest "$dest"
    assert_eq "grafana main" "$(ls "$dest" | sort | tr '\n' ' ' | sed 's/ $//')" "volumes restored under DEST"
    assert_same_tree "$SRC" "$dest/main"
    assert_same_tree "$SRC/grafana" "$dest/grafana"
    rm -rf "$dest"

    log "restore single entries"
    fresh_cache "$b-one"
    dest="$TMP/restore-$b/one"
    prafs_ok restore "$repo" "$short:main/sizes/random-4194305" "$dest"
    assert_eq "random-4194305" "$(ls -A "$dest")" "restore of one file by id prefix creates only DEST/<basename>"
    assert_same_tree "$SRC/sizes/random-4194305" "$dest/random-4194305"

    dest="$TMP/restore-$b/by-time"
    prafs_ok restore "$repo" "$time:main/names/été" "$dest"
    assert_same_tree "$SRC/names/été" "$dest/été"

    dest="$TMP/restore-$b/by-full-id"
    prafs_ok restore "$repo" "$id:main/sizes/random-1048576" "$dest"
    assert_same_tree "$SRC/sizes/random-1048576" "$dest/random-1048576"

    dest="$TMP/restore-$b/symlink"
    prafs_ok restore "$repo" "latest:main/links/dangling" "$dest"
    assert_same_tree "$SRC/links/dangling" "$dest/dangling"

    dest="$TMP/restore-$b/hardlinked"
    prafs_ok restore "$repo" "latest:main/hard/one/triple" "$dest"
    assert_same_tree "$SRC/hard/one/triple" "$dest/triple"

    dest="$TMP/restore-$b/sparse"
    prafs_ok restore "$repo" "latest:main/sparse/1GiB-three-blocks" "$dest"
    assert_same_tree "$SRC/sparse/1GiB-three-blocks" "$dest/1GiB-three-blocks"

    log "restore subdirectories"
    dest="$TMP/restore-$b/sub"
    prafs_ok restore "$repo" "latest:main/glpi" "$dest"
    assert_same_tree "$SRC/glpi" "$dest/glpi"
    prafs_ok restore "$repo" "latest:main/hard" "$dest"
    assert_same_tree "$SRC/hard" "$dest/hard"
    prafs_ok restore "$repo" "latest:grafana/dashboards" "$dest"
    assert_same_tree "$SRC/grafana/dashboards" "$dest/dashboards"

    assert_fails restore "$repo" "latest:main/does/not/exist" "$TMP/restore-$b/none"

    log "ls"
    prafs_ok ls "$repo" latest
    assert_contains "$TMP/out" "main" "ls of the snapshot names the volume"
    assert_contains "$TMP/out" "grafana" "ls of the snapshot names the volume"
    prafs_ok ls "$repo" "$short:main"
    for n in sizes names deep links hard sparse special modes xattr acl glpi grafana; do
        assert_contains "$TMP/out" "$n" "ls latest:main"
    done
    prafs_ok ls "$repo" "latest:main/names"
    for n in "été" "Ünïcødé" "with spaces in it.txt" "$(printf 'n%.0s' {1..255})"; do
        assert_contains "$TMP/out" "$n" "ls latest:main/names"
    done
    prafs_ok ls "$repo" "latest:main/links"
    assert_contains "$TMP/out" "dangling" "ls latest:main/links"
    assert_fails ls "$repo" "latest:main/does-not-exist"

    rm -rf "$TMP/restore-$b"
}

for_each_backend roundtrip
log "pass"
