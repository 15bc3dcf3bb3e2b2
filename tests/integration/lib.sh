# SPDX-License-Identifier: MIT
# Shared helpers for the integration tests; sourced, never run.
#
# Environment (set by scripts/test):
#   PRAFS            the prafs binary
#   PRAFS_BUILD      the meson build directory
#   PRAFS_TEST_TMP   an empty scratch directory for this script
#   PRAFS_SRC        the project root
#   PRAFS_TEST_S3=1  an S3 server is up: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#                    AWS_SECRET_ACCESS_KEY, AWS_REGION are set (loopback only)
#   PRAFS_TEST_BACKENDS  optional: "local", "s3" or "local s3" to narrow the backends run
#
# A script defines a function per backend run and calls `for_each_backend NAME`; inside it,
# PRAFS_TEST_BACKEND is "local" or "s3" and `repo_url NAME` gives a fresh repository location.

set -eEuo pipefail
shopt -s inherit_errexit
# An unexpected failing command ends the script (set -e): say which one and where.
trap 'echo "FAIL [$(basename "$0" .sh)]: command failed (exit $?) at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >&2' ERR

PRAFS_SRC=${PRAFS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PRAFS_BUILD=${PRAFS_BUILD:-$PRAFS_SRC/build}
PRAFS=${PRAFS:-$PRAFS_BUILD/cli/prafs}
TREEGEN="$PRAFS_SRC/tests/treegen.py"
TREECMP="$PRAFS_SRC/tests/treecmp.py"
TEST_NAME=$(basename "$0" .sh)

# Per-command time limits (seconds).
T_SHORT=${PRAFS_TEST_T_SHORT:-60}
T_LONG=${PRAFS_TEST_T_LONG:-600}

_lib_own_tmp=0
if [[ -z ${PRAFS_TEST_TMP:-} ]]; then
    PRAFS_TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/prafs-$TEST_NAME.XXXXXX")
    _lib_own_tmp=1
fi
mkdir -p "$PRAFS_TEST_TMP"
TMP=$(cd "$PRAFS_TEST_TMP" && pwd)

export PRAFS_PASSWORD=${PRAFS_PASSWORD:-"correct horse battery staple"}
unset PRAFS_PASSWORD_FILE
# Keep caches inside the scratch directory, away from the user's.
export XDG_CACHE_HOME="$TMP/cache"
export LC_ALL=C.UTF-8
# Resolve python3 once: version-manager shims cost tens of milliseconds per call.
PYTHON3=$(command python3 -c 'import sys; print(sys.executable)')
python3() { "$PYTHON3" "$@"; }

# ---- reporting ---------------------------------------------------------------------------------

log() { printf '[%s] %s\n' "$TEST_NAME${PRAFS_TEST_BACKEND:+/$PRAFS_TEST_BACKEND}" "$*" >&2; }

fail() {
    printf 'FAIL [%s]: %s\n' "$TEST_NAME${PRAFS_TEST_BACKEND:+/$PRAFS_TEST_BACKEND}" "$*" >&2
    exit 1
}

skip() {
    printf 'SKIP [%s]: %s\n' "$TEST_NAME" "$*" >&2
    exit 77
}

# Print the head of a file, indented, to stderr (for failure context).
show_file() {
    local f=$1 n=${2:-20}
    [[ -s $f ]] || return 0
    echo "    --- $(basename "$f") ---" >&2
    head -n "$n" "$f" | sed 's/^/    /' >&2
}

assert_eq() { # EXPECTED ACTUAL MESSAGE
    [[ $1 == "$2" ]] || fail "$3: expected '$1', got '$2'"
}

assert_le() { # A B MESSAGE: A <= B (integers)
    (($1 <= $2)) || fail "$3: $1 > $2"
}

assert_lt() { # A B MESSAGE: A < B (integers)
    (($1 < $2)) || fail "$3: $1 >= $2"
}

assert_contains() { # FILE STRING MESSAGE (fixed string, case-insensitive)
    grep -qiF -- "$2" "$1" || { show_file "$1"; fail "$3: '$2' not in $(basename "$1")"; }
}

# ---- running prafs -----------------------------------------------------------------------------

# run_prafs TIMEOUT ARGS...: runs prafs with its stdout in $TMP/out, stderr in $TMP/err and
# sets RC; never fails by itself. (The last command's output stays there for the asserts.)
RC=0
run_prafs() {
    local t=$1
    shift
    RC=0
    timeout -k 10 "$t" "$PRAFS" "$@" >"$TMP/out" 2>"$TMP/err" || RC=$?
    if [[ $RC -eq 124 || $RC -eq 137 ]]; then
        log "prafs $* timed out after ${t}s"
    fi
}

# prafs_ok ARGS...: runs prafs (long limit) and fails the test unless it exits 0.
prafs_ok() {
    run_prafs "$T_LONG" "$@"
    if [[ $RC -ne 0 ]]; then
        show_file "$TMP/out"
        show_file "$TMP/err" 40
        fail "prafs $* exited $RC"
    fi
}

# assert_exit EXPECTED ARGS...: runs prafs and fails unless it exits EXPECTED.
assert_exit() {
    local want=$1
    shift
    run_prafs "$T_LONG" "$@"
    if [[ $RC -ne $want ]]; then
        show_file "$TMP/out"
        show_file "$TMP/err" 40
        fail "prafs $* exited $RC, expected $want"
    fi
}

# assert_fails ARGS...: runs prafs and fails unless it exits non-zero (and not by a signal or timeout).
assert_fails() {
    run_prafs "$T_LONG" "$@"
    if [[ $RC -eq 0 || $RC -ge 124 ]]; then
        show_file "$TMP/out"
        show_file "$TMP/err" 40
        fail "prafs $* exited $RC, expected an error exit (1..123)"
    fi
}

# ---- trees -------------------------------------------------------------------------------------

treegen() { timeout -k 10 "$T_LONG" python3 "$TREEGEN" "$@" >&2 || fail "treegen $* failed"; }

# assert_same_tree A B [treecmp options]: fails with the first differences.
assert_same_tree() {
    local a=$1 b=$2 rc=0
    shift 2
    timeout -k 10 "$T_LONG" python3 "$TREECMP" --max-diffs 30 "$@" "$a" "$b" >"$TMP/cmp" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        show_file "$TMP/cmp" 40
        fail "trees differ (treecmp exit $rc): $a vs $b"
    fi
}

# write_random FILE SIZE_BYTES SEED: deterministic incompressible content, fast.
write_random() {
    python3 - "$1" "$2" "$3" <<'EOF'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "wb") as f:
    i = 0
    while size > 0:
        n = min(size, 1 << 20)
        f.write(random.Random(f"{seed}:{i}").randbytes(n))
        size -= n
        i += 1
EOF
}

# ---- JSON ----------------------------------------------------------------------------------------

# json_eval FILE EXPR: prints the Python expression EXPR evaluated with `j` = the JSON in FILE.
# Strings print raw; other values print as JSON; None prints "null".
json_eval() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    j = json.load(f)
v = eval(sys.argv[2], {"j": j})
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

# snapshots_json REPO FILE: writes `prafs snapshots REPO --json` to FILE, checked to be a JSON array.
snapshots_json() {
    local repo=$1 file=$2
    run_prafs "$T_SHORT" snapshots "$repo" --json
    if [[ $RC -ne 0 ]]; then
        show_file "$TMP/err"
        fail "prafs snapshots $repo --json exited $RC"
    fi
    cp "$TMP/out" "$file"
    python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert isinstance(v, list), "not an array"' \
        "$file" 2>"$TMP/jsonerr" || { show_file "$file"; show_file "$TMP/jsonerr"; fail "snapshots --json: not a JSON array"; }
}

# snapshot_ids REPO: prints the ids of the listed snapshots, sorted, one a line.
snapshot_ids() {
    snapshots_json "$1" "$TMP/snaps.json"
    json_eval "$TMP/snaps.json" '"\n".join(sorted(s["id"] for s in j))'
}

# snapshot_field REPO ID FIELD: prints FIELD of the snapshot whose id is ID.
snapshot_field() {
    snapshots_json "$1" "$TMP/snaps.json"
    json_eval "$TMP/snaps.json" "[s for s in j if s['id'] == '$2'][0]['$3']"
}

# new_snapshot_id REPO OLD_IDS: the one id listed now that is not in OLD_IDS (fails otherwise).
new_snapshot_id() {
    local now new
    now=$(snapshot_ids "$1")
    new=$(comm -13 <(printf '%s\n' "$2" | sed '/^$/d' | sort) <(printf '%s\n' "$now" | sed '/^$/d' | sort))
    [[ $(printf '%s\n' "$new" | sed '/^$/d' | wc -l) -eq 1 ]] || fail "expected exactly one new snapshot, got: [$new]"
    printf '%s\n' "$new"
}

# ---- prune tests (40, 41, 42) ------------------------------------------------------------------------

# round_files DIR N ROUND: round 0 writes N small random files f0000... into DIR; a later round
# rewrites two thirds of them (those with i % 3 != ROUND % 3), so that the packs of the previous
# round's snapshot end up partly used once it is forgotten.
round_files() {
    python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
root, n, rnd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    p = os.path.join(root, f"f{i:04d}")
    if rnd == 0 or i % 3 != rnd % 3:
        r = random.Random(f"{rnd}:{i}")
        with open(p, "wb") as f:
            f.write(r.randbytes(r.randint(8 * 1024, 64 * 1024)))
EOF
}

# set_pack_size URL BYTES: rewrites the plaintext config (pack_size is a repository setting).
set_pack_size() {
    repo_fetch "$1" config "$TMP/config"
    sed -i "s/^pack_size=.*/pack_size=$2/" "$TMP/config"
    repo_store "$1" config "$TMP/config"
}

# restore_same REPO ID SOURCE [VOLUME]: restores snapshot ID with an empty cache and fails unless its
# volume VOLUME (default "vol") is the same tree as SOURCE.
restore_same() {
    rm -rf "$TMP/restore"
    export XDG_CACHE_HOME="$TMP/cache-restore"
    rm -rf "$XDG_CACHE_HOME"
    prafs_ok restore "$1" "$2" "$TMP/restore"
    assert_same_tree "$3" "$TMP/restore/${4:-vol}"
    rm -rf "$TMP/restore"
    export XDG_CACHE_HOME="$TMP/cache"
}

# wait_for_line FILE TEXT PID: waits until FILE contains TEXT; fails if PID exits first, or after
# 120 s (then PID is killed: a test pause would hold it for an hour). Remove FILE before starting
# the process that writes it: the shell truncates it only once the process is forked, so a line an
# earlier process left there could be taken for this one's.
wait_for_line() {
    local file=$1 text=$2 pid=$3 deadline=$((SECONDS + 120))
    until grep -qF -- "$text" "$file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_file "$file" 40
            fail "the process exited before saying '$text'"
        fi
        ((SECONDS < deadline)) || { kill -KILL "$pid" 2>/dev/null; fail "'$text' did not appear in 120 s"; }
        sleep 0.05
    done
}

# prune_paused REPO PHASE [RESUME_FILE]: starts `prafs prune REPO` in the background, paused at
# PHASE (start, mark, repack, index or delete: test_pause in backend/prune.c), and waits until it is
# there. It goes on once RESUME_FILE exists; without one it stays until killed. Its pid is left in
# PRUNE_PID, its output in $TMP/prune.out and $TMP/prune.err.
PRUNE_PID=""
prune_paused() {
    local repo=$1 phase=$2 resume=${3:-}
    rm -f "$TMP/prune.out" "$TMP/prune.err"
    PRAFS_TEST_PRUNE_PAUSE=$phase PRAFS_TEST_PRUNE_RESUME=$resume \
        "$PRAFS" prune "$repo" >"$TMP/prune.out" 2>"$TMP/prune.err" &
    PRUNE_PID=$!
    wait_for_line "$TMP/prune.err" "test pause at $phase" "$PRUNE_PID"
}

# ---- backends ------------------------------------------------------------------------------------

S3_BUCKET="prafs-test-$RANDOM-$$"
S3_ENDPOINT=${AWS_ENDPOINT_URL:-} # the server itself, for the cleanup (a test may point at a proxy)

# True when the S3 endpoint is on loopback (we never send anything elsewhere).
s3_endpoint_is_loopback() {
    python3 - "${AWS_ENDPOINT_URL:-}" <<'EOF'
import ipaddress, socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
host = u.hostname
if not host:
    sys.exit(1)
try:
    ips = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
except OSError:
    sys.exit(1)
sys.exit(0 if ips and all(ipaddress.ip_address(i).is_loopback for i in ips) else 1)
EOF
}

backends() {
    local want=${PRAFS_TEST_BACKENDS:-local s3} out=""
    [[ " $want " == *" local "* ]] && out="local"
    if [[ " $want " == *" s3 "* && ${PRAFS_TEST_S3:-0} == 1 ]]; then
        if s3_endpoint_is_loopback; then
            out="$out s3"
        else
            log "AWS_ENDPOINT_URL='${AWS_ENDPOINT_URL:-}' is not on loopback: not running the s3 backend"
        fi
    fi
    echo "$out"
}

# repo_url NAME: a fresh repository location for the current backend.
repo_url() {
    case ${PRAFS_TEST_BACKEND:-local} in
    local)
        mkdir -p "$TMP/repos"
        echo "$TMP/repos/$1"
        ;;
    s3)
        echo "s3://$S3_BUCKET/$1"
        ;;
    *) fail "unknown PRAFS_TEST_BACKEND=$PRAFS_TEST_BACKEND" ;;
    esac
}

# make_repo NAME: repo_url + prafs init; prints the location.
make_repo() {
    local url
    url=$(repo_url "$1")
    prafs_ok init "$url"
    echo "$url"
}

# s3py VERB ARGS...: a small S3 client (Python standard library, SigV4, path-style) so the tests
# need no aws CLI. Verbs: list BUCKET PREFIX (prints "KEY SIZE" lines), get BUCKET KEY FILE,
# put BUCKET KEY FILE, mb BUCKET, rb BUCKET (deletes every object, then the bucket). Loopback only.
cat >"$TMP/.s3.py" <<'EOF'
import datetime, hashlib, hmac, ipaddress, os, socket, sys, urllib.parse, urllib.request
import xml.etree.ElementTree as ET

ep = urllib.parse.urlsplit(os.environ["AWS_ENDPOINT_URL"])
ips = {ai[4][0] for ai in socket.getaddrinfo(ep.hostname, None)}
if not ips or not all(ipaddress.ip_address(i).is_loopback for i in ips):
    sys.exit(f"s3py: refusing a non-loopback endpoint {ep.hostname}")
AK, SK = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
TOKEN = os.environ.get("AWS_SESSION_TOKEN")
REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

def q(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)

def request(method, bucket, key="", query=None, body=b""):
    path = "/" + q(bucket) + ("/" + q(key, safe="-_.~/") if key else "")
    qs = "&".join(f"{q(k)}={q(v)}" for k, v in sorted((query or {}).items()))
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    phash = hashlib.sha256(body).hexdigest()
    headers = {"host": ep.netloc, "x-amz-content-sha256": phash, "x-amz-date": amzdate}
    if TOKEN:
        headers["x-amz-security-token"] = TOKEN
    signed = ";".join(sorted(headers))
    canon = "\n".join([method, path, qs, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, phash])
    scope = f"{day}/{REGION}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canon.encode()).hexdigest()])
    k = ("AWS4" + SK).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={signed}, Signature={sig}"
    del headers["host"]
    if method == "PUT":
        headers["Content-Type"] = "application/octet-stream"  # urllib would send a form type
    url = f"{ep.scheme}://{ep.netloc}{path}" + (f"?{qs}" if qs else "")
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def list_objects(bucket, prefix):
    out, token = [], None
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token:
            query["continuation-token"] = token
        st, data = request("GET", bucket, query=query)
        if st == 404:
            return out
        if st != 200:
            sys.exit(f"s3py: list {bucket}/{prefix}: HTTP {st}: {data[:300]!r}")
        root = ET.fromstring(data)
        for c in root.findall(NS + "Contents"):
            out.append((c.find(NS + "Key").text, int(c.find(NS + "Size").text)))
        if root.findtext(NS + "IsTruncated") != "true":
            return out
        token = root.findtext(NS + "NextContinuationToken")

verb, args = sys.argv[1], sys.argv[2:]
if verb == "list":
    for key, size in sorted(list_objects(args[0], args[1])):
        print(key, size)
elif verb == "get":
    st, data = request("GET", args[0], args[1])
    if st != 200:
        sys.exit(f"s3py: get {args[0]}/{args[1]}: HTTP {st}")
    open(args[2], "wb").write(data)
elif verb == "put":
    st, data = request("PUT", args[0], args[1], body=open(args[2], "rb").read())
    if st != 200:
        sys.exit(f"s3py: put {args[0]}/{args[1]}: HTTP {st}: {data[:300]!r}")
elif verb == "mb":
    st, data = request("PUT", args[0])
    if st != 200:
        sys.exit(f"s3py: create bucket {args[0]}: HTTP {st}: {data[:300]!r}")
elif verb == "rb":
    for key, _ in list_objects(args[0], ""):
        request("DELETE", args[0], key)
    st, data = request("DELETE", args[0])
    if st not in (204, 404):
        sys.exit(f"s3py: delete bucket {args[0]}: HTTP {st}: {data[:300]!r}")
else:
    sys.exit(f"s3py: unknown verb {verb}")
EOF
s3py() { timeout -k 10 "$T_LONG" python3 "$TMP/.s3.py" "$@"; }

# s3_split URL: sets S3B (bucket) and S3P (prefix, without a trailing slash) from s3://BUCKET/PREFIX.
s3_split() {
    local rest=${1#s3://}
    S3B=${rest%%/*}
    S3P=${rest#*/}
    [[ $S3P == "$rest" ]] && S3P=""
    S3P=${S3P%/}
}

# repo_objects URL [SUBDIR]: prints "KEY SIZE" for every object of the repository (under SUBDIR),
# KEY relative to the repository root, sorted.
repo_objects() {
    local url=$1 sub=${2:-}
    case $url in
    s3://*)
        s3_split "$url"
        s3py list "$S3B" "${S3P:+$S3P/}$sub" >"$TMP/ls.txt" || fail "listing $url/$sub failed"
        sed "s|^${S3P:+$S3P/}||" "$TMP/ls.txt"
        ;;
    *)
        [[ -d $url/$sub ]] || return 0
        (cd "$url" && find "./$sub" -type f -printf '%P %s\n' | sed "s|^|${sub:+$sub/}|; s|//|/|" | sort)
        ;;
    esac
}

# repo_size URL: total bytes of all objects of the repository.
repo_size() {
    repo_objects "$1" | awk '{ s += $2 } END { printf "%d\n", s }'
}

# repo_fetch URL KEY FILE / repo_store URL KEY FILE: copy one object out of / into the repository.
repo_fetch() {
    case $1 in
    s3://*) s3_split "$1" && s3py get "$S3B" "${S3P:+$S3P/}$2" "$3" || fail "download of $2 failed" ;;
    *) cp "$1/$2" "$3" ;;
    esac
}
repo_store() {
    case $1 in
    s3://*) s3_split "$1" && s3py put "$S3B" "${S3P:+$S3P/}$2" "$3" || fail "upload of $2 failed" ;;
    *) cat "$3" >"$1/$2" ;;
    esac
}

# flip_byte URL KEY [OFFSET]: inverts one byte of an object (default: its middle); prints the offset.
flip_byte() {
    local url=$1 key=$2 off=${3:-}
    local f="$TMP/flip.obj"
    repo_fetch "$url" "$key" "$f"
    off=$(python3 - "$f" "$off" <<'EOF'
import os, sys
path, off = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
off = int(off) if off else size // 2
with open(path, "r+b") as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0xFF]))
print(off)
EOF
)
    repo_store "$url" "$key" "$f"
    rm -f "$f"
    echo "$off"
}

# the test's bucket goes, if it was made (repo_url runs in command substitutions: whether it was
# cannot be remembered in this shell)
s3_cleanup() {
    [[ ${PRAFS_TEST_S3:-0} == 1 && -n $S3_ENDPOINT ]] || return 0
    AWS_ENDPOINT_URL=$S3_ENDPOINT s3_endpoint_is_loopback || return 0
    AWS_ENDPOINT_URL=$S3_ENDPOINT s3py rb "$S3_BUCKET" >/dev/null 2>&1 || true
}

# ---- mounts: a test that mounts records mountpoints in MOUNTS and processes in PIDS, and calls
# mounts_cleanup from its EXIT trap: a failing test leaves nothing mounted or running ----------------

MOUNTS=()
PIDS=()
is_mounted() { grep -qs " $1 fuse" /proc/mounts; }

# gone PID: the process has exited (a zombie counts: it is our child, reaped by `wait`)
gone() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z $state || $state == Z ]]
}

wait_gone() { # PID SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do gone "$1" && return 0; sleep 0.1; done
    return 1
}

mounts_cleanup() {
    local mp pid
    for mp in "${MOUNTS[@]}"; do
        if is_mounted "$mp"; then
            timeout 20 fusermount3 -u "$mp" 2>/dev/null || timeout 20 umount -l "$mp" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# ---- mounting: start_mount / stop_mount; the caller's environment applies to the mount --------

wait_mounted() { # MOUNTPOINT PID LOG: waits up to 30 s for the mount (fails if PID exits first)
    local i
    for ((i = 0; i < 300; i++)); do
        is_mounted "$1" && return 0
        if [[ -n $2 ]] && gone "$2"; then
            show_file "$3" 40
            fail "prafs mount exited before $1 was mounted"
        fi
        sleep 0.1
    done
    show_file "$3" 40
    fail "$1 was not mounted within 30 s"
}

# start_mount REPO MOUNTPOINT LOG [OPTIONS...]: prafs mount -f in the background; sets MOUNT_PID.
# (A background job of a script starts with SIGINT ignored, and libfuse rightly leaves ignored
# signals alone: give it back its default so that SIGINT can be tested.)
start_mount() {
    local repo=$1 mp=$2 logf=$3
    shift 3
    mkdir -p "$mp"
    MOUNTS+=("$mp")
    (exec env --default-signal=INT "$PRAFS" mount "$repo" "$mp" -f "$@" >"$logf" 2>&1) &
    MOUNT_PID=$!
    PIDS+=("$MOUNT_PID")
    wait_mounted "$mp" "$MOUNT_PID" "$logf"
}

# stop_mount MOUNTPOINT PID LOG [signal]: unmounts (fusermount3 -u, or the signal to PID); the
# process must exit 0 within 20 s and leave nothing mounted.
stop_mount() {
    local mp=$1 pid=$2 logf=$3 sig=${4:-} rc=0
    if [[ -n $sig ]]; then
        kill "-$sig" "$pid" || fail "cannot send SIG$sig to $pid"
    else
        timeout 30 fusermount3 -u "$mp" || fail "fusermount3 -u $mp failed"
    fi
    wait_gone "$pid" 20 || { show_file "$logf" 40; fail "prafs mount (pid $pid) still running 20 s after ${sig:+SIG}${sig:-the unmount}"; }
    wait "$pid" || rc=$?
    [[ $rc -eq 0 ]] || { show_file "$logf" 40; fail "prafs mount exited $rc after ${sig:+SIG}${sig:-the unmount}"; }
    ! is_mounted "$mp" || fail "$mp is still mounted after ${sig:+SIG}${sig:-the unmount}"
}

# ---- a loopback TCP proxy in front of the S3 server, which a test can cut (the server itself is
# shared by every test): proxy_init once, then start_proxy / stop_proxy; PROXY_PORT is its port ----

PROXY_PID=""
PROXY_PORT=""
PROXY_TARGET=""
proxy_init() {
    [[ -f $PRAFS_SRC/tests/tcpproxy.py ]] || skip "tests/tcpproxy.py is missing"
    s3_endpoint_is_loopback || skip "AWS_ENDPOINT_URL is not on loopback"
    PROXY_TARGET=${AWS_ENDPOINT_URL##*:}
    PROXY_TARGET=${PROXY_TARGET%%/*}
    PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
}
start_proxy() { # [RATE]: bytes per second from the server, per connection (none: as fast as it goes)
    local i out="$TMP/proxy.out"
    # the output of the last proxy goes first: its "ready" would be read before this one's
    # redirection (in the background subshell) truncates the file
    rm -f "$out"
    (exec python3 "$PRAFS_SRC/tests/tcpproxy.py" "$PROXY_PORT" "$PROXY_TARGET" ${1:+"$1"} >"$out" 2>&1) &
    PROXY_PID=$!
    for ((i = 0; i < 100; i++)); do
        grep -qs ready "$out" && return 0
        gone "$PROXY_PID" && break
        sleep 0.1
    done
    show_file "$out" 10
    fail "the TCP proxy did not start"
}
stop_proxy() {
    [[ -n $PROXY_PID ]] || return 0
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
}

_lib_cleanup() {
    stop_proxy
    s3_cleanup
    if [[ $_lib_own_tmp -eq 1 ]]; then
        chmod -R u+rwx "$TMP" 2>/dev/null || true
        rm -rf "$TMP"
    fi
}
trap _lib_cleanup EXIT

# for_each_backend FUNCTION: runs FUNCTION once per backend with PRAFS_TEST_BACKEND set;
# the first failure ends the script (fail exits).
for_each_backend() {
    local fn=$1 b
    for b in $(backends); do
        export PRAFS_TEST_BACKEND=$b
        log "backend $b"
        "$fn"
        log "backend $b: ok"
    done
    unset PRAFS_TEST_BACKEND
}

# Checks every script starts with.
require_prafs() {
    [[ -x $PRAFS ]] || fail "prafs binary not found at '$PRAFS' (set PRAFS or build first)"
}
require_root() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (devices, chown, other users)"
}
