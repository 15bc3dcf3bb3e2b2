#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Unreadable source files: run as an unprivileged user (65534) over a tree it owns that holds a
# mode-000 file and a mode-000 directory. The snapshot exits 3, names both paths on stderr, is
# listed, and a restore has every other file byte-exact (the unreadable file is skipped, never
# stored as a silent hole). Local backend only.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
command -v setpriv >/dev/null || skip "setpriv (util-linux) is needed"

NOBODY=65534
# The unprivileged user must reach everything it uses: its own world-traversable scratch dir.
UTMP=$(mktemp -d /tmp/prafs-unreadable.XXXXXX)
trap 'chmod -R u+rwx "$UTMP" 2>/dev/null; rm -rf "$UTMP"; _lib_cleanup' EXIT
chmod 0755 "$UTMP"

as_nobody() {
    setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups \
        env HOME="$UTMP/home" XDG_CACHE_HOME="$UTMP/cache" PRAFS_PASSWORD="$PRAFS_PASSWORD" "$@"
}

BIN=$PRAFS
if ! as_nobody test -x "$BIN"; then
    # The build tree is not reachable by that user: use a copy.
    mkdir -p "$UTMP/bin"
    cp "$PRAFS" "$UTMP/bin/prafs"
    chmod 0755 "$UTMP/bin" "$UTMP/bin/prafs"
    BIN="$UTMP/bin/prafs"
    as_nobody "$BIN" --help >/dev/null 2>&1 || as_nobody test -x "$BIN" ||
        fail "prafs cannot be run as uid $NOBODY"
fi

SRC="$UTMP/src"
mkdir -p "$SRC/dir1/sub" "$SRC/dir2/locked-dir/deeper" "$UTMP/home" "$UTMP/cache"
write_random "$SRC/dir1/big" $((3 << 20)) unreadable-big
echo "readable" >"$SRC/dir1/readable.txt"
echo "secret" >"$SRC/dir1/secret-000"
echo "inside a locked dir" >"$SRC/dir2/locked-dir/inside.txt"
echo "deeper" >"$SRC/dir2/locked-dir/deeper/x"
for i in $(seq 1 30); do write_random "$SRC/dir1/sub/f$i" $((i * 1000)) "unreadable-$i"; done
ln -s readable.txt "$SRC/dir1/link"
echo "after the locked dir" >"$SRC/dir2/z-after.txt"
echo "before the locked dir" >"$SRC/dir2/a-before.txt"
chown -R -h $NOBODY:$NOBODY "$SRC" "$UTMP/home" "$UTMP/cache"
chmod 000 "$SRC/dir1/secret-000" "$SRC/dir2/locked-dir"
as_nobody test -r "$SRC/dir1/secret-000" && skip "uid $NOBODY can read a mode-000 file (capabilities?)"

unreadable() {
    [[ $PRAFS_TEST_BACKEND == local ]] || { log "local backend only"; return 0; }
    local repo="$UTMP/repo" rc=0
    prafs_ok init "$repo"
    chown -R $NOBODY:$NOBODY "$repo"

    log "snapshot as uid $NOBODY"
    as_nobody timeout -k 10 "$T_LONG" "$BIN" snapshot "$repo" vol="$SRC" >"$TMP/out" 2>"$TMP/err" || rc=$?
    if [[ $rc -ne 3 ]]; then
        show_file "$TMP/err" 40
        fail "snapshot with unreadable files exited $rc, expected 3"
    fi
    assert_contains "$TMP/err" "dir1/secret-000" "stderr names the unreadable file"
    assert_contains "$TMP/err" "dir2/locked-dir" "stderr names the unreadable directory"
    if grep -qE 'dir1/(readable\.txt|big|sub/f)|a-before|z-after' "$TMP/err"; then
        show_file "$TMP/err" 40
        fail "stderr names files that were readable"
    fi

    # listed (as root and as the user)
    local id
    id=$(snapshot_ids "$repo")
    [[ $id =~ ^[0-9a-f]{64}$ ]] || fail "expected one snapshot listed, got [$id]"
    as_nobody timeout -k 10 "$T_SHORT" "$BIN" snapshots "$repo" >/dev/null 2>"$TMP/err" ||
        { show_file "$TMP/err"; fail "snapshots as uid $NOBODY failed"; }

    log "restore (as root)"
    export XDG_CACHE_HOME="$TMP/cache-restore"
    prafs_ok restore "$repo" latest "$TMP/restore"
    local dest="$TMP/restore/vol"
    [[ ! -e $dest/dir1/secret-000 ]] || fail "the unreadable file was stored (as $(stat -c '%s bytes' "$dest/dir1/secret-000")) instead of skipped"
    if [[ -e $dest/dir2/locked-dir ]]; then
        [[ -d $dest/dir2/locked-dir ]] || fail "dir2/locked-dir restored as a non-directory"
        [[ -z $(ls -A "$dest/dir2/locked-dir") ]] || fail "dir2/locked-dir restored with contents nobody could read"
    fi
    assert_same_tree "$SRC" "$dest" --exclude dir1/secret-000 --exclude dir2/locked-dir
    rm -rf "$TMP/restore"
    export XDG_CACHE_HOME="$TMP/cache"
}

for_each_backend unreadable
log "pass"
