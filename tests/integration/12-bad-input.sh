#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Bad input: a wrong password is a clear error ("wrong password"), never garbage; a flipped byte in
# a pack used only by snapshot B makes the restore of B fail naming that pack, with nothing wrong
# written silently, while snapshot A still restores exactly; a restore of a path that is not in the
# snapshot names it and writes nothing.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

KiB=1024
MiB=$((1 << 20))
TA="$TMP/tree-a"
TB="$TMP/tree-b"

mkdir -p "$TA/sub" "$TB/sub/deeper"
write_random "$TA/a-5MiB" $((5 * MiB)) tree-a-1
write_random "$TA/sub/a-300KiB" $((300 * KiB)) tree-a-2
for i in $(seq 1 20); do echo "tree A small file $i" >"$TA/sub/small-$i.txt"; done
write_random "$TB/b-6MiB" $((6 * MiB)) tree-b-1
write_random "$TB/sub/b-2MiB" $((2 * MiB)) tree-b-2
for i in $(seq 1 40); do write_random "$TB/sub/deeper/r-$i" $((i * 512)) "tree-b-small-$i"; done
for i in $(seq 1 10); do echo "tree B text $i" >"$TB/t-$i.txt"; done

wrong_password() { # REPO
    local repo=$1 before after
    before=$(snapshot_ids "$repo")

    PRAFS_PASSWORD="not the password" run_prafs "$T_SHORT" snapshots "$repo" --json
    [[ $RC -ne 0 && $RC -lt 124 ]] || fail "snapshots with a wrong password exited $RC"
    assert_contains "$TMP/err" "wrong password" "stderr of snapshots with a wrong password"
    [[ ! -s $TMP/out ]] || { show_file "$TMP/out"; fail "snapshots --json with a wrong password wrote to stdout"; }

    PRAFS_PASSWORD="not the password" run_prafs "$T_SHORT" restore "$repo" latest "$TMP/wrong-pw-restore"
    [[ $RC -ne 0 && $RC -lt 124 ]] || fail "restore with a wrong password exited $RC"
    assert_contains "$TMP/err" "wrong password" "stderr of restore with a wrong password"
    [[ -z $(ls -A "$TMP/wrong-pw-restore" 2>/dev/null) ]] || fail "restore with a wrong password wrote files"
    rm -rf "$TMP/wrong-pw-restore"

    PRAFS_PASSWORD="not the password" run_prafs "$T_SHORT" snapshot "$repo" a="$TA"
    [[ $RC -ne 0 && $RC -lt 124 ]] || fail "snapshot with a wrong password exited $RC"
    assert_contains "$TMP/err" "wrong password" "stderr of snapshot with a wrong password"

    PRAFS_PASSWORD="" run_prafs "$T_SHORT" ls "$repo" latest </dev/null
    [[ $RC -ne 0 && $RC -lt 124 ]] || fail "ls with an empty password exited $RC"

    printf '%s\n' "also wrong" >"$TMP/pwfile-wrong"
    (
        unset PRAFS_PASSWORD
        PRAFS_PASSWORD_FILE="$TMP/pwfile-wrong" run_prafs "$T_SHORT" snapshots "$repo"
        [[ $RC -ne 0 && $RC -lt 124 ]] || fail "snapshots with a wrong PRAFS_PASSWORD_FILE exited $RC"
        assert_contains "$TMP/err" "wrong password" "stderr with a wrong PRAFS_PASSWORD_FILE"
    )

    printf '%s\n' "$PRAFS_PASSWORD" >"$TMP/pwfile-right"
    (
        unset PRAFS_PASSWORD
        PRAFS_PASSWORD_FILE="$TMP/pwfile-right" run_prafs "$T_SHORT" snapshots "$repo"
        [[ $RC -eq 0 ]] || { show_file "$TMP/err"; fail "snapshots with the right PRAFS_PASSWORD_FILE exited $RC"; }
    )

    after=$(snapshot_ids "$repo")
    assert_eq "$before" "$after" "snapshots after the wrong-password attempts"
}

bad_input() {
    local b=$PRAFS_TEST_BACKEND repo idA idB before after newpacks pack packid off
    repo=$(make_repo "bad-$b")

    log "snapshot A"
    prafs_ok snapshot "$repo" a="$TA"
    idA=$(snapshot_ids "$repo")
    log "wrong passwords"
    wrong_password "$repo"

    repo_objects "$repo" data >"$TMP/objs-before"
    log "snapshot B"
    prafs_ok snapshot "$repo" b="$TB"
    idB=$(new_snapshot_id "$repo" "$idA")
    repo_objects "$repo" data >"$TMP/objs-after"

    # The packs that appeared with B hold only B's data; take the largest (file contents).
    newpacks=$(comm -13 <(cut -d' ' -f1 "$TMP/objs-before") <(cut -d' ' -f1 "$TMP/objs-after"))
    [[ -n $newpacks ]] || fail "snapshot B added no object under data/"
    pack=$(grep -F -f <(printf '%s\n' "$newpacks") "$TMP/objs-after" | sort -k2,2n | tail -n1 | cut -d' ' -f1)
    packid=$(basename "$pack")
    log "new packs with B: $(echo "$newpacks" | wc -l); corrupting $pack ($(grep -F "$pack " "$TMP/objs-after" | cut -d' ' -f2) bytes)"
    off=$(flip_byte "$repo" "$pack")
    log "flipped the byte at offset $off of $pack"

    log "restore B must fail and name the pack"
    export XDG_CACHE_HOME="$TMP/cache-restore-b-$b"
    local dest="$TMP/restore-b-$b"
    run_prafs "$T_LONG" restore "$repo" "${idB:0:16}" "$dest"
    if [[ $RC -eq 0 || $RC -ge 124 ]]; then
        show_file "$TMP/err"
        fail "restore of B from a corrupted pack exited $RC, expected an error"
    fi
    if ! grep -qF "${packid:0:8}" "$TMP/err"; then
        show_file "$TMP/err"
        fail "the restore error does not name the corrupted pack $packid"
    fi
    cp "$TMP/err" "$TMP/restore-b-err"
    # Every file written must be right, unless its path is reported on stderr; no stray files.
    python3 - "$TB" "$dest/b" "$TMP/restore-b-err" <<'EOF' || fail "the restore of B wrote wrong data silently (see above)"
import os, sys
src, dst, errf = sys.argv[1], sys.argv[2], sys.argv[3]
err = open(errf, "rb").read()
bad = 0
if os.path.isdir(dst):
    for dp, dns, fns in os.walk(dst):
        for n in fns:
            rel = os.path.relpath(os.path.join(dp, n), dst)
            s = os.path.join(src, rel)
            if not os.path.lexists(s):
                print(f"    stray file in the restore: {rel}", file=sys.stderr)
                bad += 1
                continue
            if not os.path.isfile(os.path.join(dp, n)):
                continue
            with open(s, "rb") as f1, open(os.path.join(dp, n), "rb") as f2:
                same = f1.read() == f2.read()
            if not same and rel.encode() not in err:
                print(f"    {rel}: restored with wrong content and not reported", file=sys.stderr)
                bad += 1
            elif not same:
                print(f"    {rel}: wrong content, reported on stderr", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
    rm -rf "$dest"

    log "snapshot A still restores exactly"
    export XDG_CACHE_HOME="$TMP/cache-restore-a-$b"
    prafs_ok restore "$repo" "${idA:0:10}" "$TMP/restore-a-$b"
    assert_same_tree "$TA" "$TMP/restore-a-$b/a"
    rm -rf "$TMP/restore-a-$b"

    log "a path that is not in the snapshot: named, nothing written, no count of zero errors"
    run_prafs "$T_SHORT" restore "$repo" "${idA:0:10}:a/sub/no-such-file" "$TMP/restore-none-$b"
    [[ $RC -eq 1 ]] || { show_file "$TMP/err"; fail "restore of a path not in the snapshot exited $RC"; }
    assert_contains "$TMP/err" "a/sub/no-such-file: no such file or directory in snapshot" "the path named"
    assert_contains "$TMP/err" "failed: nothing was restored" "the restore's verdict"
    if grep -q "restored 0 files\|(listed above)" "$TMP/err"; then
        show_file "$TMP/err"
        fail "a restore that never started reports a count of files or errors"
    fi
    [[ ! -e $TMP/restore-none-$b ]] || fail "a restore of a path not in the snapshot created its destination"

    prafs_ok snapshots "$repo"
    export XDG_CACHE_HOME="$TMP/cache"
}

for_each_backend bad_input
log "pass"
