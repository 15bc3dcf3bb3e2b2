#!/usr/bin/env bash
# S3 failures seen from the command line: the server going away during a snapshot (bounded retries,
# a clear error, nothing partial published, the next snapshot after it is back succeeds) and during
# a restore (a clear error, every file left whole, the restore run again completes), a wrong secret
# (fails fast, names the problem), a missing bucket (says so).
. "$(dirname "$0")/lib.sh"

[[ ${PRAFS_TEST_S3:-0} == 1 ]] || skip "no S3 server"
PRAFS_TEST_BACKEND=s3
proxy_init
start_proxy
export AWS_ENDPOINT_URL=http://127.0.0.1:$PROXY_PORT
# retries bounded for the test: 3 attempts, 10 s in all
export PRAFS_S3_RETRIES=3 PRAFS_S3_RETRY_SECONDS=10

repo=$(repo_url outage)
prafs_ok init "$repo"
mkdir -p "$TMP/small"
echo "first" >"$TMP/small/a.txt"
prafs_ok snapshot "$repo" vol="$TMP/small"
before=$(snapshot_ids "$repo")

log "server goes away during a snapshot"
mkdir -p "$TMP/big"
for i in 1 2 3; do write_random "$TMP/big/f$i" $((96 << 20)) "outage$i"; done
packs_before=$(repo_objects "$repo" data | wc -l)
start=$(date +%s)
(exec "$PRAFS" snapshot "$repo" vol="$TMP/big" >"$TMP/snap.out" 2>"$TMP/snap.err") &
snap_pid=$!
# wait until it has uploaded a pack of its own (the first snapshot's are there already: cutting the
# server off before this one took its lock tested nothing of the upload), then cut the server off
for _ in $(seq 300); do
    (($(repo_objects "$repo" data 2>/dev/null | wc -l) > packs_before)) && break
    sleep 0.1
done
stop_proxy
rc=0
timeout 120 tail --pid="$snap_pid" -f /dev/null || fail "the snapshot did not end within 120 s of the outage"
wait "$snap_pid" || rc=$?
elapsed=$(($(date +%s) - start))
log "snapshot ended with exit $rc after ${elapsed}s"
[[ $rc -ne 0 ]] || { show_file "$TMP/snap.err"; fail "the snapshot succeeded with the server gone"; }
assert_le "$elapsed" 90 "seconds until the snapshot gave up"
assert_contains "$TMP/snap.err" "snapshot failed" "the failure is reported"
grep -qiE "refused|reset|connect|timed out|unreachable" "$TMP/snap.err" ||
    { show_file "$TMP/snap.err"; fail "the error does not say the server could not be reached"; }
if grep -qE "$AWS_SECRET_ACCESS_KEY|Signature=" "$TMP/snap.err"; then fail "credentials in the error output"; fi

log "server back: nothing partial was published, the next snapshot works"
start_proxy
assert_eq "$before" "$(snapshot_ids "$repo")" "snapshots listed after the failed one"
prafs_ok snapshot "$repo" vol="$TMP/big"
id=$(new_snapshot_id "$repo" "$before")
prafs_ok restore "$repo" "$id" "$TMP/restored"
assert_same_tree "$TMP/big" "$TMP/restored/vol"

log "server goes away during a restore: every file left is whole, and the restore run again completes"
mkdir -p "$TMP/many"
for i in $(seq 40); do write_random "$TMP/many/f$i" $((4 << 20)) "many$i"; done
before=$(snapshot_ids "$repo")
prafs_ok snapshot "$repo" many="$TMP/many"
id=$(new_snapshot_id "$repo" "$before")
# the server paced (2 MiB/s a connection) so that the cut falls in the middle of the 160 MiB
stop_proxy
start_proxy $((2 << 20))
dest=$TMP/restored-cut
(exec "$PRAFS" restore "$repo" "$id" "$dest" >"$TMP/rest.out" 2>"$TMP/rest.err") &
rest_pid=$!
for _ in $(seq 600); do
    # blocks written (the files are created at their full size, sparse)
    (($(du -s -B1 "$dest" 2>/dev/null | cut -f1 || echo 0) > (40 << 20))) && break
    gone "$rest_pid" && break
    sleep 0.1
done
gone "$rest_pid" && { show_file "$TMP/rest.err"; fail "the restore ended before the server was cut off"; }
stop_proxy
rc=0
timeout 120 tail --pid="$rest_pid" -f /dev/null || fail "the restore did not end within 120 s of the outage"
wait "$rest_pid" || rc=$?
[[ $rc -eq 1 ]] || { show_file "$TMP/rest.err"; fail "the restore cut off from its server exited $rc, expected 1"; }
grep -qiE "refused|reset|connect" "$TMP/rest.err" ||
    { show_file "$TMP/rest.err"; fail "the restore's error does not say the server could not be reached"; }
assert_contains "$TMP/rest.err" "restore of $id incomplete" "the restore's verdict"
# whatever it left is whole: every file there equals its source, byte for byte
missing=$(python3 - "$TMP/many" "$dest/many" <<'EOF'
import filecmp, os, sys
src, dst = sys.argv[1], sys.argv[2]
left = sorted(n for n in os.listdir(dst) if os.path.isfile(os.path.join(dst, n)))
for n in left:
    if not filecmp.cmp(os.path.join(src, n), os.path.join(dst, n), shallow=False):
        sys.exit(f"{n}: differs from its source")
print(f"{len(left)} of 40 files left, all whole", file=sys.stderr)
if not 0 < len(left) < 40:
    sys.exit("the cut came before any file or after every file was restored: nothing tested")
print(40 - len(left))
EOF
) || { show_file "$TMP/rest.err"; fail "the restore cut off from its server left a file with wrong bytes, or nothing to check"; }
files=files
((missing == 1)) && files=file
assert_contains "$TMP/rest.err" "incomplete: $missing $files not restored" "the count of files not restored"
start_proxy
prafs_ok restore "$repo" "$id" "$dest"
assert_same_tree "$TMP/many" "$dest/many"

log "wrong secret: fails fast and names the problem"
start=$(date +%s)
AWS_SECRET_ACCESS_KEY=wrong-secret-value run_prafs "$T_SHORT" snapshots "$repo"
[[ $RC -ne 0 ]] || fail "snapshots with a wrong secret exited 0"
assert_le $(($(date +%s) - start)) 10 "seconds to fail with a wrong secret"
assert_contains "$TMP/err" "SignatureDoesNotMatch" "wrong secret message"
if grep -q "wrong-secret-value" "$TMP/err"; then fail "the secret appears in the error output"; fi

log "missing bucket: says so"
run_prafs "$T_SHORT" snapshots "s3://prafs-no-such-bucket-$$/repo"
[[ $RC -ne 0 ]] || fail "snapshots of a missing bucket exited 0"
assert_contains "$TMP/err" "does not exist" "missing bucket message"
assert_contains "$TMP/err" "prafs-no-such-bucket-$$" "the message names the bucket"
log "ok"
