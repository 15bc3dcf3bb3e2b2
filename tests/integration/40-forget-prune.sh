#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# forget and prune: `forget --dry-run` removes nothing and says why it keeps what it keeps; the
# keep rules apply per host and volume set, filters restrict what is considered; forgetting a
# snapshot and pruning shrinks the repository by what only that snapshot used (its unique 24 MiB,
# within a small margin), forgetting a snapshot whose data others share frees almost nothing, and
# every kept snapshot still restores exactly and checks clean (--read-data).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

MiB=$((1 << 20))
KiB=1024

# Three states of one volume: A1 = tree + common + only1; A2 = tree + common + only2; A3 = tree +
# common + only3. only1/only2/only3 are random, so each is stored once and only its snapshot uses it.
log "generating the sources"
treegen "$TMP/A1/tree"
write_random "$TMP/A1/common" $((8 * MiB)) common
write_random "$TMP/A1/only1" $((24 * MiB)) only1
cp -a "$TMP/A1" "$TMP/A2"
rm "$TMP/A2/only1"
write_random "$TMP/A2/only2" $((12 * MiB)) only2
cp -a "$TMP/A2" "$TMP/A3"
rm "$TMP/A3/only2"
write_random "$TMP/A3/only3" $((2 * MiB)) only3
mkdir -p "$TMP/B"
write_random "$TMP/B/b.bin" $((3 * MiB)) bfile

check_clean() {
    prafs_ok check "$1" --read-data
    assert_contains "$TMP/err" "no errors found" "check --read-data after prune"
    if grep -q . "$TMP/out"; then show_file "$TMP/out"; fail "check printed problems"; fi
}

forget_prune() {
    local b=$PRAFS_TEST_BACKEND repo ids s1 s2 s3 s4 before after objs_before size0 size1 size2 shrink n
    repo=$(make_repo "fp-$b")

    log "four snapshots: three of host h1 (volume vol), one of host h2 (volume other)"
    prafs_ok snapshot "$repo" --host h1 --tag daily vol="$TMP/A1"
    s1=$(snapshot_ids "$repo")
    prafs_ok snapshot "$repo" --host h1 --tag daily vol="$TMP/A2"
    s2=$(new_snapshot_id "$repo" "$s1")
    prafs_ok snapshot "$repo" --host h1 --tag daily vol="$TMP/A2"
    s3=$(new_snapshot_id "$repo" "$s1
$s2")
    prafs_ok snapshot "$repo" --host h2 other="$TMP/B"
    s4=$(new_snapshot_id "$repo" "$s1
$s2
$s3")

    log "forget --dry-run changes nothing and explains itself"
    ids=$(snapshot_ids "$repo")
    objs_before=$(repo_objects "$repo" | grep -v '^locks/' || true)
    prafs_ok forget "$repo" --keep-last 2 --dry-run
    local out="$TMP/forget.out"
    cp "$TMP/out" "$out"
    assert_contains "$TMP/err" "1 would be removed" "forget --dry-run summary"
    assert_eq "$ids" "$(snapshot_ids "$repo")" "snapshots after forget --dry-run"
    assert_eq "$objs_before" "$(repo_objects "$repo" | grep -v '^locks/' || true)" "objects after forget --dry-run"
    grep -Eq "^remove +${s1:0:8} .* h1 +no rule keeps it" "$out" || { show_file "$out"; fail "dry run: ${s1:0:8} not listed as removed"; }
    grep -Eq "^keep +${s2:0:8} .* h1 +last$" "$out" || { show_file "$out"; fail "dry run: ${s2:0:8} not kept as 'last'"; }
    grep -Eq "^keep +${s3:0:8} .* h1 +last$" "$out" || { show_file "$out"; fail "dry run: ${s3:0:8} not kept as 'last'"; }
    grep -Eq "^keep +${s4:0:8} .* h2 +last$" "$out" || { show_file "$out"; fail "dry run: ${s4:0:8} (other group) not kept"; }

    log "forget --json --dry-run: one JSON array of decisions"
    prafs_ok forget "$repo" --keep-last 1 --keep-tag daily --dry-run --json
    cp "$TMP/out" "$TMP/forget.json"
    n=$(json_eval "$TMP/forget.json" 'sum(1 for s in j if s["action"] == "remove")')
    assert_eq 0 "$n" "snapshots removed with --keep-tag daily (all of h1 are tagged daily)"
    n=$(json_eval "$TMP/forget.json" "[s['reasons'] for s in j if s['id'] == '$s3'][0]")
    assert_eq '["last", "tag daily"]' "$n" "reasons of the newest h1 snapshot"

    log "filters: --host h2 considers only h2's snapshot; --volume vol only h1's"
    prafs_ok forget "$repo" --keep-last 1 --host h2 --dry-run --json
    n=$(json_eval "$TMP/out" 'len(j)')
    assert_eq 1 "$n" "snapshots considered with --host h2"
    prafs_ok forget "$repo" --keep-last 1 --volume vol --tag daily --dry-run --json
    n=$(json_eval "$TMP/out" '" ".join(s["action"] for s in j)')
    assert_eq "remove remove keep" "$n" "decisions for volume vol, oldest first"
    assert_exit 2 forget "$repo" --dry-run
    assert_exit 2 forget "$repo" --keep-daily lots

    log "forget the first snapshot, prune with --max-unused 0.01: the repository shrinks by its unique 24 MiB"
    size0=$(repo_size "$repo")
    prafs_ok forget "$repo" --keep-last 2
    assert_eq "$(printf '%s\n' "$s2" "$s3" "$s4" | sort)" "$(snapshot_ids "$repo")" "snapshots after forget"
    prafs_ok prune "$repo" --max-unused 0.01
    assert_contains "$TMP/err" "freed" "prune summary"
    assert_contains "$TMP/out" "repacked" "prune report"
    size1=$(repo_size "$repo")
    shrink=$((size0 - size1))
    log "repository: $size0 -> $size1 bytes (shrank by $shrink; only1 is $((24 * MiB)))"
    assert_le $((24 * MiB)) "$shrink" "bytes freed by forgetting the only snapshot holding only1"
    assert_le "$shrink" $((24 * MiB + 512 * KiB)) "bytes freed beyond what only the forgotten snapshot used"
    [[ -z $(repo_objects "$repo" locks | grep -v '/\.tmp-' || true) ]] || fail "locks left behind: $(repo_objects "$repo" locks)"
    check_clean "$repo"
    restore_same "$repo" "$s2" "$TMP/A2"
    restore_same "$repo" "$s3" "$TMP/A2"
    restore_same "$repo" "$s4" "$TMP/B" other

    log "forget --prune of a snapshot whose data a kept one shares frees (almost) nothing"
    prafs_ok forget "$repo" --keep-last 1 --prune
    assert_eq "$(printf '%s\n' "$s3" "$s4" | sort)" "$(snapshot_ids "$repo")" "snapshots after the second forget"
    size2=$(repo_size "$repo")
    assert_le 1 $((size1 - size2)) "bytes freed by forgetting a snapshot (its manifest at least)"
    assert_lt $((size1 - size2)) $((64 * KiB)) "bytes freed by forgetting a snapshot that shares all its data"
    check_clean "$repo"
    restore_same "$repo" "$s3" "$TMP/A2"

    log "a new state, then forget --prune (default threshold) of the one holding only2"
    prafs_ok snapshot "$repo" --host h1 --tag daily vol="$TMP/A3"
    local s5
    s5=$(new_snapshot_id "$repo" "$s3
$s4")
    before=$(repo_size "$repo")
    prafs_ok forget "$repo" --keep-last 1 --host h1 --prune
    assert_eq "$(printf '%s\n' "$s4" "$s5" | sort)" "$(snapshot_ids "$repo")" "snapshots after the third forget"
    after=$(repo_size "$repo")
    log "repository: $before -> $after bytes"
    assert_le $((12 * MiB)) $((before - after)) "bytes freed by forgetting the only snapshot holding only2"
    assert_le $((before - after)) $((12 * MiB + 512 * KiB)) "bytes freed beyond only2"
    check_clean "$repo"
    restore_same "$repo" "$s5" "$TMP/A3"
    restore_same "$repo" "$s4" "$TMP/B" other

    log "prune with nothing to do changes nothing"
    before=$(repo_objects "$repo" | grep -v '^locks/' || true)
    prafs_ok prune "$repo"
    assert_eq "$before" "$(repo_objects "$repo" | grep -v '^locks/' || true)" "objects after a prune with nothing to do"
}

for_each_backend forget_prune
log "pass"
