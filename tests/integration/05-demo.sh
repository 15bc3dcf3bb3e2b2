#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/demo, the README's first command: it runs to the end (exit 0) in a work directory of our
# choosing, says that the attachment restored by `prafs restore` and the file copied out of the
# mount are byte for byte the originals (it checks them itself and exits 1 otherwise), leaves
# nothing mounted, and leaves a repository with its two snapshots that `check` finds sound. The
# summaries of a tiny snapshot and restore read right ("1 file", no rate over a few bytes).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

work=$TMP/demo
rc=0
log "running scripts/demo $work"
timeout -k 10 "$T_LONG" "$PRAFS_SRC/scripts/demo" "$work" >"$TMP/demo.out" 2>"$TMP/demo.err" || rc=$?
if ((rc != 0)); then
    show_file "$TMP/demo.out"
    show_file "$TMP/demo.err"
fi
assert_eq 0 "$rc" "scripts/demo exit status"
assert_contains "$TMP/demo.out" "ok: the restored ticket-4242-invoice.pdf is byte for byte the original" \
    "the demo checks the attachment it restores"
assert_contains "$TMP/demo.out" "ok: new.json copied out of the mount is byte for byte the original" \
    "the demo checks the file it copies out of the mount"
assert_contains "$TMP/demo.out" "demo done: repository in $work/repo" "the demo's last line"
! is_mounted "$work/mnt" || fail "scripts/demo left $work/mnt mounted"
# The summaries: one file is "1 file"; no rate over a few bytes or milliseconds ("(0 MB/s)" was).
grep -Eq "^prafs: restored 1 file, 0 dirs, 146.5 KiB in [0-9]+\.[0-9] s$" "$TMP/demo.err" ||
    fail "the single-file restore's summary: '$(grep "restored" "$TMP/demo.err" | head -1)'"
grep -Eq "^prafs: snapshot [0-9a-f]{8} saved: 127 files, 13 dirs, read 41 B, new [0-9.]+ KiB, uploaded [0-9.]+ KiB in [0-9]+\.[0-9] s$" \
    "$TMP/demo.err" || fail "the 41-byte snapshot's summary: '$(grep "read 41 B" "$TMP/demo.err" | head -1)'"

# What the demo restored, checked here as well, independently of its own check.
[[ $(cat "$work/restored/new.json") == '{"title": "new dashboard", "panels": []}' ]] ||
    fail "new.json copied out of the mount: '$(head -c 200 "$work/restored/new.json")'"
[[ $(head -c 9 "$work/restored/ticket-4242-invoice.pdf") == "%PDF-1.7" ]] &&
    [[ $(stat -c %s "$work/restored/ticket-4242-invoice.pdf") == 150009 ]] ||
    fail "the restored ticket-4242-invoice.pdf is not the demo's 150,009-byte PDF"

log "the demo's repository holds its two snapshots and checks clean"
export PRAFS_PASSWORD=demo-password
prafs_ok snapshots "$work/repo"
n=$(grep -c "daily" "$TMP/out" || true)
assert_eq 2 "$n" "snapshots tagged daily in the demo's repository"
prafs_ok check --read-data "$work/repo"
log "pass"
