#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A small run of the benchmark (scripts/bench --smoke): 2,000 small files + 64 MiB of large files
# through every figure, for prafs and for restic, against a real S3 server on loopback. Asserts only
# that every figure was produced and that every restore and every cp -a out of the mounts is
# byte-exact (the bench checks those itself and exits non-zero otherwise); no timings are asserted.
# Reuses the server scripts/test started (PRAFS_TEST_S3=1 with the AWS_* settings), else the bench
# starts and stops its own. Skips (77) when restic cannot be installed, or without root or FUSE.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
[[ -e /dev/fuse ]] || skip "no /dev/fuse"

args=(--smoke --out "$TMP/table.md")
if [[ ${PRAFS_TEST_S3:-0} == 1 && -n ${AWS_ENDPOINT_URL:-} && -n ${AWS_ACCESS_KEY_ID:-} ]]; then
    s3_endpoint_is_loopback || fail "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL is not on loopback"
    args+=(--reuse-s3)
else
    # A server of our own, away from the default one and the bench's.
    export PRAFS_S3_DIR=$TMP/s3 PRAFS_S3_PORT=${PRAFS_BENCH_SMOKE_S3_PORT:-17790}
    export PRAFS_S3_MON_PORT=${PRAFS_BENCH_SMOKE_MON_PORT:-3390}
fi
# The data set goes with the test's scratch directory; the binary is the one under test.
export PRAFS_BENCH_DATA_ROOT=$TMP
export PRAFS

log "scripts/bench ${args[*]}"
rc=0
timeout -k 30 1100 "$PRAFS_SRC/scripts/bench" "${args[@]}" >"$TMP/bench.out" 2>"$TMP/bench.err" || rc=$?
if [[ $rc -eq 77 ]]; then
    tail -n 5 "$TMP/bench.err" >&2
    skip "restic cannot be installed"
fi
if [[ $rc -ne 0 ]]; then
    tail -n 40 "$TMP/bench.err" >&2
    show_file "$TMP/bench.out" 60
    fail "scripts/bench --smoke exited $rc"
fi
cat "$TMP/bench.out" >&2

table=$TMP/table.md
[[ -s $table ]] || fail "the bench wrote no table"
assert_contains "$table" "all identical" "restores and copies byte-exact"
if grep -q 'MISSING FIGURES' "$table"; then
    fail "figures missing: $(grep 'MISSING FIGURES' "$table")"
fi
# Every figure row has a value for both tools (no "—" in the prafs and restic columns).
rows=$(grep -c '^| [0-9]' "$table")
assert_eq 15 "$rows" "figure rows in the table"
bad=$(awk -F' \\| ' '/^\| [0-9]/ && ($4 == "—" || $5 == "—")' "$table")
[[ -z $bad ]] || fail "figures without a value: $bad"
log "every figure produced, every restore and copy byte-exact"
