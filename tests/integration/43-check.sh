#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check: passes (exit 0, nothing printed) on a sound repository, structurally, with --read-data and
# with --read-data-subset; with --read-data it finds one flipped byte in a pack and names the pack,
# the blob and the file of the snapshot it belongs to (exit 1), which the structural check cannot
# see; the structural check finds a deleted pack and names it and the paths that need it; a
# damaged index file and a damaged snapshot manifest are named; usage errors exit 2.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

MiB=$((1 << 20))
log "generating the sources"
treegen "$TMP/src/tree"
mkdir -p "$TMP/one"
write_random "$TMP/one/big.bin" $((6 * MiB)) check-big

# the largest object under data/ (a data pack, not the small tree pack)
largest_pack() {
    local all
    all=$(repo_objects "$1" data | sort -k2 -n)
    all=${all##*$'\n'}
    echo "${all%% *}"
}

sound_and_flip() {
    local b=$PRAFS_TEST_BACKEND repo id pack n
    repo=$(make_repo "check-$b")
    prafs_ok snapshot "$repo" --host c vol="$TMP/src"
    prafs_ok snapshot "$repo" --host c one="$TMP/one"

    log "a sound repository passes"
    prafs_ok check "$repo"
    assert_contains "$TMP/err" "no errors found" "structural check"
    [[ ! -s $TMP/out ]] || { show_file "$TMP/out"; fail "check printed problems on a sound repository"; }
    prafs_ok check "$repo" --read-data
    assert_contains "$TMP/err" "no errors found" "check --read-data"
    [[ ! -s $TMP/out ]] || { show_file "$TMP/out"; fail "check --read-data printed problems on a sound repository"; }
    n=$(repo_objects "$repo" data | wc -l)
    assert_contains "$TMP/err" "read $n of $n packs" "check --read-data reads every pack"
    prafs_ok check "$repo" --read-data-subset=10%
    assert_contains "$TMP/err" "read 1 of $n packs" "check --read-data-subset=10% of $n packs"
    prafs_ok check "$repo" --read-data-subset=100%
    assert_contains "$TMP/err" "read $n of $n packs" "check --read-data-subset=100%"
    assert_exit 2 check "$repo" --read-data-subset=0%
    assert_exit 2 check "$repo" --read-data-subset=lots
    assert_exit 2 check "$repo" extra-argument
    PRAFS_PASSWORD=wrong assert_exit 1 check "$repo"

    log "one flipped byte in the pack holding big.bin"
    # a repository holding only big.bin, so that the damaged pack's blobs all belong to it
    local one
    one=$(make_repo "check-one-$b")
    prafs_ok snapshot "$one" --host c one="$TMP/one"
    id=$(snapshot_ids "$one")
    pack=$(largest_pack "$one")
    flip_byte "$one" "$pack" >/dev/null
    prafs_ok check "$one"
    assert_contains "$TMP/err" "no errors found" "structural check of a repository with a flipped data byte"
    assert_exit 1 check "$one" --read-data
    assert_contains "$TMP/out" "error: $pack: pack content does not match its name" "check --read-data names the pack"
    assert_contains "$TMP/out" "is damaged" "check --read-data names the damaged blob"
    assert_contains "$TMP/out" "snapshot " "check --read-data names the snapshot"
    assert_contains "$TMP/out" "(${id:0:8}): one/big.bin: " "check --read-data names the file"
    assert_contains "$TMP/err" "1 snapshot affected" "check summary"
    # a subset that reads the only data pack finds it too (2 packs: data and tree; 100% reads both)
    assert_exit 1 check "$one" --read-data-subset=100%
    assert_contains "$TMP/out" "$pack" "check --read-data-subset names the pack"
    # restore refuses the damaged file too, naming the pack
    assert_exit 1 restore "$one" latest "$TMP/restore-bad-$b"
    assert_contains "$TMP/err" "$pack" "restore of damaged data names the pack"
    rm -rf "$TMP/restore-bad-$b"
}

deleted_pack_and_metadata() {
    local b=$PRAFS_TEST_BACKEND repo pack idx snap
    repo=$(make_repo "check-del-$b")
    prafs_ok snapshot "$repo" --host c vol="$TMP/src"
    prafs_ok snapshot "$repo" --host c one="$TMP/one"

    log "a deleted pack is named, with the paths that need it"
    repo_fetch "$repo" "$(largest_pack "$repo")" "$TMP/saved.pack"
    pack=$(largest_pack "$repo")
    remove_object "$repo" "$pack"
    assert_exit 1 check "$repo"
    assert_contains "$TMP/out" "error: $pack: pack is missing" "structural check names the missing pack"
    grep -q "^error: snapshot .*: .*: its data is in $pack, which is missing" "$TMP/out" ||
        { show_file "$TMP/out"; fail "structural check does not name the affected paths"; }
    repo_store "$repo" "$pack" "$TMP/saved.pack"
    prafs_ok check "$repo"

    log "a damaged index file is named"
    idx=$(repo_objects "$repo" index)
    idx=${idx%%$'\n'*}
    idx=${idx%% *}
    flip_byte "$repo" "$idx" 20 >/dev/null
    assert_exit 1 check "$repo"
    assert_contains "$TMP/out" "error: $idx: index file does not decode" "check names the damaged index file"
    flip_byte "$repo" "$idx" 20 >/dev/null
    prafs_ok check "$repo"

    log "a damaged snapshot manifest is named"
    snap=$(repo_objects "$repo" snapshots)
    snap=${snap%%$'\n'*}
    snap=${snap%% *}
    flip_byte "$repo" "$snap" 30 >/dev/null
    assert_exit 1 check "$repo"
    assert_contains "$TMP/out" "error: $snap: snapshot manifest does not decode" "check names the damaged manifest"
    flip_byte "$repo" "$snap" 30 >/dev/null
    prafs_ok check "$repo" --read-data
    [[ ! -s $TMP/out ]] || { show_file "$TMP/out"; fail "check printed problems after the repairs"; }
}

# remove_object URL KEY
remove_object() {
    case $1 in
    s3://*)
        s3_split "$1"
        s3_delete "$S3B" "${S3P:+$S3P/}$2"
        ;;
    *) rm -f "$1/$2" ;;
    esac
}

# s3_delete BUCKET KEY: lib.sh's S3 helper has no delete verb; borrow its signing code.
s3_delete() {
    timeout -k 10 "$T_SHORT" python3 - "$TMP/.s3.py" "$1" "$2" <<'EOF' || fail "S3 delete of $2 failed"
import sys
src, bucket, key = sys.argv[1:4]
code = open(src).read().split("\nverb, args = ")[0]
sys.argv = ["s3py"]
exec(compile(code, src, "exec"))
st, data = request("DELETE", bucket, key)
if st not in (200, 204):
    sys.exit(f"delete {key}: HTTP {st}: {data[:200]!r}")
EOF
}

checks() {
    sound_and_flip
    deleted_pack_and_metadata
}

for_each_backend checks
log "pass"
