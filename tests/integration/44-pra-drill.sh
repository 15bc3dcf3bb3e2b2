#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/pra-drill: on a repository where GLPI is snapshotted daily and Grafana weekly (so their
# newest versions live in different snapshots), the drill restores the newest version of every
# volume into DEST, exactly (treecmp against the sources), runs check --read-data-subset, prints
# the recovery point and the recovery time, and passes (exit 0). It fails (exit 1, "result: FAIL",
# naming the problem) when a pack is missing, and refuses (exit 2) a DEST that is not empty.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
export PRAFS_SCRYPT_N=1024

DRILL="$PRAFS_SRC/scripts/pra-drill"
MiB=$((1 << 20))
log "generating the sources"
treegen "$TMP/glpi"
mkdir -p "$TMP/grafana/plugins"
write_random "$TMP/grafana/grafana.db" $((3 * MiB)) grafana-db
echo '{"panels": []}' >"$TMP/grafana/plugins/dash.json"
mkdir -p "$TMP/elastic"
write_random "$TMP/elastic/segment-1" $((2 * MiB)) es-1

# run_drill REPO DEST: runs the drill (bounded), report in $TMP/drill.out, status in DRC.
DRC=0
run_drill() {
    DRC=0
    PRAFS="$PRAFS" timeout -k 10 "$T_LONG" "$DRILL" "$@" >"$TMP/drill.out" 2>"$TMP/drill.err" || DRC=$?
}

drill() {
    local b=$PRAFS_TEST_BACKEND repo dest rpo
    repo=$(make_repo "drill-$b")
    log "weekly: glpi + grafana + elastic; then daily: glpi + elastic (glpi changed)"
    prafs_ok snapshot "$repo" --host pra --tag weekly glpi="$TMP/glpi" grafana="$TMP/grafana" elastic="$TMP/elastic"
    echo "ticket 4242" >"$TMP/glpi/new-ticket.txt"
    write_random "$TMP/elastic/segment-2" $((1 * MiB)) es-2
    prafs_ok snapshot "$repo" --host pra --tag daily glpi="$TMP/glpi" elastic="$TMP/elastic"

    log "the drill passes and restores the newest version of every volume"
    dest="$TMP/dest-$b"
    run_drill "$repo" "$dest"
    if [[ $DRC -ne 0 ]]; then show_file "$TMP/drill.out" 40; show_file "$TMP/drill.err"; fail "pra-drill exited $DRC"; fi
    cat "$TMP/drill.out" >&2
    assert_contains "$TMP/drill.out" "result:           PASS" "drill result"
    assert_contains "$TMP/drill.out" "recovery point:" "drill report"
    assert_contains "$TMP/drill.out" "recovery time:" "drill report"
    assert_contains "$TMP/drill.out" "check:            ok" "drill report: check"
    assert_contains "$TMP/drill.out" "restored:         3 volumes" "drill report: volumes"
    rpo=$(sed -n 's/.*rpo_seconds=\([0-9]*\).*/\1/p' "$TMP/drill.out")
    [[ $rpo =~ ^[0-9]+$ ]] || fail "no rpo_seconds in the report"
    assert_le "$rpo" 600 "recovery point of snapshots taken just now (seconds)"
    grep -q "rto_seconds=[0-9]*\.[0-9]" "$TMP/drill.out" || fail "no rto_seconds in the report"
    grep -Eq "volume grafana: .*: ok$" "$TMP/drill.out" || fail "grafana not restored ok"
    grep -Eq "volume glpi: .*: ok$" "$TMP/drill.out" || fail "glpi not restored ok"
    assert_same_tree "$TMP/glpi" "$dest/glpi"
    assert_same_tree "$TMP/grafana" "$dest/grafana"
    assert_same_tree "$TMP/elastic" "$dest/elastic"

    log "a DEST that is not empty is refused"
    run_drill "$repo" "$dest"
    assert_eq 2 "$DRC" "exit status of a drill into a non-empty DEST"
    rm -rf "$dest"

    log "a missing pack fails the drill, named"
    local pack
    pack=$(repo_objects "$repo" data | sort -k2 -n)
    pack=${pack##*$'\n'}
    pack=${pack%% *}
    repo_fetch "$repo" "$pack" "$TMP/saved.pack"
    case $repo in
    s3://*)
        s3_split "$repo"
        timeout -k 10 "$T_SHORT" python3 - "$TMP/.s3.py" "$S3B" "${S3P:+$S3P/}$pack" <<'EOF' || fail "S3 delete failed"
import sys
src, bucket, key = sys.argv[1:4]
code = open(src).read().split("\nverb, args = ")[0]
sys.argv = ["s3py"]
exec(compile(code, src, "exec"))
st, data = request("DELETE", bucket, key)
sys.exit(0 if st in (200, 204) else f"HTTP {st}")
EOF
        ;;
    *) rm -f "$repo/$pack" ;;
    esac
    run_drill "$repo" "$dest"
    assert_eq 1 "$DRC" "exit status of a drill on a repository missing a pack"
    assert_contains "$TMP/drill.out" "result:           FAIL" "drill result with a missing pack"
    assert_contains "$TMP/drill.out" "check:            FAILED" "drill check with a missing pack"
    assert_contains "$TMP/drill.out" "$pack" "the drill report names the missing pack"
    repo_store "$repo" "$pack" "$TMP/saved.pack"
    rm -rf "$dest"
    run_drill "$repo" "$dest"
    assert_eq 0 "$DRC" "exit status of the drill once the pack is back"
    rm -rf "$dest"
}

for_each_backend drill
log "pass"
