#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The S3 store against a real S3 server on loopback (scripts/s3-server: Ceph RGW), through
# tests/s3_store_check: every operation on a fresh bucket, a 2,500-object listing (exact set),
# objects seen by a second client (awscli) and theirs by us, and the failures users meet: a wrong
# secret, a missing bucket, an unreachable server, a server answering 503, missing credentials,
# credentials from a profile.
#
# Environment (scripts/test): PRAFS_BUILD, PRAFS_TEST_TMP, and with a server PRAFS_TEST_S3=1 plus
# the AWS_* settings printed by `scripts/s3-server start`. Exit 0 pass, 77 skip, 1 fail.
set -uo pipefail

if [[ ${PRAFS_TEST_S3:-} != 1 || -z ${AWS_ENDPOINT_URL:-} || -z ${AWS_ACCESS_KEY_ID:-} ]]; then
    echo "skip: no S3 server (start one with: eval \"\$(scripts/s3-server start)\"; export PRAFS_TEST_S3=1)"
    exit 77
fi
case $AWS_ENDPOINT_URL in
http://127.* | https://127.* | http://localhost[:/]* | https://localhost[:/]*) ;;
*)
    echo "FAIL: AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL is not on loopback; this test only runs against a local server"
    exit 1
    ;;
esac
[[ $AWS_ENDPOINT_URL == http://* ]] && unset AWS_CA_BUNDLE # plain HTTP: no CA bundle

CHECK=${PRAFS_BUILD:?PRAFS_BUILD is not set}/tests/s3_store_check
[[ -x $CHECK ]] || {
    echo "FAIL: $CHECK is not built"
    exit 1
}
TMP=$(mktemp -d "${PRAFS_TEST_TMP:-/tmp}/s3-store.XXXXXX") || exit 1
BUCKET=prafs-test-$(date +%s)-$$-$((RANDOM % 10000))
URL=s3://$BUCKET/run
FAILED=0
PASSED=0
SERVER_PID=

cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf -- "$TMP"
}
trap cleanup EXIT

pass() {
    PASSED=$((PASSED + 1))
    echo "PASS: $1"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $1"
    for f in "$TMP/out" "$TMP/err"; do
        [[ -s $f ]] && sed "s/^/    ${f##*/}: /" "$f" | tail -n 20
    done
}

# t TIMEOUT CMD...: runs CMD bounded, stdout to $TMP/out, stderr to $TMP/err; sets RC and ELAPSED.
t() {
    local secs=$1 start
    shift
    start=$(date +%s.%N)
    timeout "$secs" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    ELAPSED=$(echo "$(date +%s.%N) - $start" | bc)
}
lt() { [[ $(echo "$1 < $2" | bc) == 1 ]]; }
has() { grep -qF -- "$1" "$TMP/err"; }
count() { grep -cF -- "$1" "$TMP/err"; }

# 1. Every operation on a fresh bucket. A missing key is a quiet -ENOENT: the only messages
#    expected are the two for the deliberately invalid keys.
t 120 "$CHECK" basic "$URL/basic"
if [[ $RC == 0 ]] && [[ -z $(grep -v 'invalid object key' "$TMP/err") ]]; then
    pass "create/put/get/range/stat/list/del/delete_many on $BUCKET ($ELAPSED s)"
else
    fail "basic operations (rc $RC, or unexpected messages)"
fi

# 2. 2,500 objects from 8 threads: listing pages with continuation tokens, exact set equality.
PRAFS_DEBUG=1 t 300 "$CHECK" many "$URL/many" 2500 8
if [[ $RC == 0 ]] && [[ $(grep -c '(list): page [0-9]*: ' "$TMP/err") -ge 3 ]] && has "page 3: 500 keys" &&
    ! grep -q 'page 4:' "$TMP/err"; then
    pass "2,500 objects listed exactly (3 pages of 1000, 1000, 500); $(cat "$TMP/out")"
else
    fail "2,500-object listing (rc $RC)"
fi

# 3. A second client sees our objects, and we see its own.
AWS=$(command -v aws || true)
if [[ -z $AWS ]] || ! timeout 60 "$AWS" --version >/dev/null 2>&1; then
    echo "installing awscli (Debian)"
    timeout 600 apt-get install -y awscli >"$TMP/apt.log" 2>&1 ||
        { timeout 600 apt-get update >>"$TMP/apt.log" 2>&1 && timeout 600 apt-get install -y awscli >>"$TMP/apt.log" 2>&1; }
    AWS=$(command -v aws || true)
fi
if [[ -z $AWS ]]; then
    fail "awscli is not available (see apt-get output)"
else
    awscli() { timeout 120 "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" --region "${AWS_REGION:-us-east-1}" "$@"; }
    t 60 "$CHECK" put "$URL/interop" interop-key "written by prafs"
    if [[ $RC == 0 ]] && awscli s3 ls "s3://$BUCKET/run/interop/" >"$TMP/out" 2>"$TMP/err" &&
        grep -q ' interop-key$' "$TMP/out" &&
        [[ $(awscli s3 cp "s3://$BUCKET/run/interop/interop-key" - 2>>"$TMP/err") == "written by prafs" ]]; then
        pass "awscli lists and reads an object we put"
    else
        fail "awscli does not see s3://$BUCKET/run/interop/interop-key"
    fi
    if echo -n "written by awscli" | awscli s3 cp - "s3://$BUCKET/run/interop/from-aws" >"$TMP/out" 2>"$TMP/err" &&
        t 60 "$CHECK" get "$URL/interop" from-aws && [[ $RC == 0 && $(cat "$TMP/out") == "written by awscli" ]]; then
        pass "we read an object awscli put"
    else
        fail "reading an object awscli put"
    fi
fi

# 4. A wrong secret fails at once (403 is not retried) with -EACCES naming SignatureDoesNotMatch;
#    neither secret nor signature is ever printed.
WRONG=wrong-$RANDOM-secret-$RANDOM
AWS_SECRET_ACCESS_KEY=$WRONG PRAFS_DEBUG=1 t 30 "$CHECK" expect get "$URL/basic" EACCES
if [[ $RC == 0 ]] && has "SignatureDoesNotMatch" && has "(after 1 attempt)" && ! has "retrying" &&
    lt "$ELAPSED" 5 && ! has "$WRONG" && ! has "$AWS_SECRET_ACCESS_KEY" && ! has "Signature=" &&
    ! has "Authorization"; then
    pass "wrong secret: EACCES, SignatureDoesNotMatch, 1 attempt, ${ELAPSED}s, no secret in messages"
else
    fail "wrong secret (rc $RC, ${ELAPSED}s)"
fi

# 5. A missing bucket is -ENOENT for every operation, each logged once naming the bucket.
MISSING=$BUCKET-missing
ok=1
for op in get stat put list del; do
    t 30 "$CHECK" expect "$op" "s3://$MISSING/p" ENOENT
    if [[ $RC != 0 ]] || [[ $(count "bucket $MISSING does not exist") != 1 ]]; then
        ok=0
        fail "missing bucket: $op (rc $RC)"
    fi
done
[[ $ok == 1 ]] && pass "missing bucket: ENOENT and one 'bucket $MISSING does not exist' for get/stat/put/list/del"

# 6. An unreachable server: -ECONNREFUSED after the bounded retries, within the bounded time.
port=
for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        port=$p
        break
    fi
done
AWS_ENDPOINT_URL=http://127.0.0.1:$port PRAFS_S3_RETRIES=3 PRAFS_S3_RETRY_SECONDS=5 PRAFS_DEBUG=1 \
    t 20 "$CHECK" expect get "$URL/basic" ECONNREFUSED
if [[ $RC == 0 ]] && has "(attempt 1 of 3)" && has "(attempt 2 of 3)" && has "(after 3 attempts)" &&
    lt "$ELAPSED" 20; then
    pass "unreachable server (127.0.0.1:$port): ECONNREFUSED after 3 attempts in ${ELAPSED}s"
else
    fail "unreachable server (rc $RC, ${ELAPSED}s)"
fi

# 7. Fault injection: a server that answers every request with 503 SlowDown. Retried exactly
#    PRAFS_S3_RETRIES times, then -EIO naming the code.
PY=$(command -v python3 || true)
if [[ -n $PY ]]; then
    cat >"$TMP/slowdown.py" <<'EOF'
import http.server, sys
count_file = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        with open(count_file, "a") as f: f.write("x")
        body = b'<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = reply
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
    : >"$TMP/count"
    "$PY" "$TMP/slowdown.py" x "$TMP/count" >"$TMP/port" 2>"$TMP/py.err" &
    SERVER_PID=$!
    for ((i = 0; i < 100; i++)); do [[ -s $TMP/port ]] && break; sleep 0.1; done
    SLOW_PORT=$(cat "$TMP/port")
    AWS_ENDPOINT_URL=http://127.0.0.1:$SLOW_PORT PRAFS_S3_RETRIES=4 PRAFS_S3_RETRY_SECONDS=20 PRAFS_DEBUG=1 \
        t 30 "$CHECK" expect get "$URL/basic" EIO
    if [[ $RC == 0 ]] && has "503 SlowDown" && has "(after 4 attempts)" && [[ $(cat "$TMP/count") == xxxx ]]; then
        pass "503 SlowDown: retried, 4 requests in all, then EIO (${ELAPSED}s)"
    else
        fail "503 retries (rc $RC, $(wc -c <"$TMP/count") requests)"
    fi
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
else
    echo "note: no python3, the 503 fault-injection check is skipped"
fi

# 8. Credentials: none at all is a clear error naming the variables; a profile in ~/.aws works;
#    the environment wins over the files.
mkdir -p "$TMP/empty-home" "$TMP/home/.aws"
t 30 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    -u AWS_SHARED_CREDENTIALS_FILE -u AWS_CONFIG_FILE HOME="$TMP/empty-home" "$CHECK" open-fails "$URL/x" ENOKEY
if [[ $RC == 0 ]] && has "AWS_ACCESS_KEY_ID" && has "AWS_SECRET_ACCESS_KEY"; then
    pass "no credentials: ENOKEY naming AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
else
    fail "no credentials (rc $RC)"
fi
cat >"$TMP/home/.aws/credentials" <<EOF
[default]
aws_access_key_id = WRONGDEFAULT
aws_secret_access_key = wrong

[prafs-test]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $AWS_SECRET_ACCESS_KEY
EOF
cat >"$TMP/home/.aws/config" <<EOF
[profile prafs-test]
region = ${AWS_REGION:-us-east-1}
endpoint_url = $AWS_ENDPOINT_URL
EOF
t 60 env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL -u AWS_REGION \
    -u AWS_DEFAULT_REGION -u AWS_SHARED_CREDENTIALS_FILE -u AWS_CONFIG_FILE HOME="$TMP/home" AWS_PROFILE=prafs-test \
    "$CHECK" roundtrip "$URL/profile"
if [[ $RC == 0 ]]; then pass "credentials, region and endpoint_url from AWS_PROFILE in ~/.aws"; else fail "profile credentials (rc $RC)"; fi
sed -i 's/^aws_secret_access_key = .*/aws_secret_access_key = wrong/' "$TMP/home/.aws/credentials"
t 60 env -u AWS_SHARED_CREDENTIALS_FILE -u AWS_CONFIG_FILE HOME="$TMP/home" AWS_PROFILE=prafs-test \
    "$CHECK" roundtrip "$URL/profile"
if [[ $RC == 0 ]]; then pass "environment credentials win over the profile's"; else fail "environment over files (rc $RC)"; fi

# The bucket goes with the test (best effort: the server's state is temporary anyway).
if [[ -n ${AWS:-} ]]; then
    timeout 120 "$AWS" --endpoint-url "$AWS_ENDPOINT_URL" s3 rb --force "s3://$BUCKET" >/dev/null 2>&1 ||
        echo "note: could not remove bucket $BUCKET"
fi

echo "s3-store: $PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
