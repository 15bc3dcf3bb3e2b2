#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Self-test of tests/treegen.py and tests/treecmp.py: a generated tree and its `cp -a` copy compare
# equal; then, one at a time on a fresh copy, each kind of difference is made (keeping every other
# field, times included, as it was) and treecmp must exit 1 naming that path, and nothing else.
# Needs root (treegen makes devices and chowns). Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# Resolve python3 once: version-manager shims cost tens of milliseconds per call.
PYTHON3=$(command python3 -c 'import sys; print(sys.executable)')
python3() { "$PYTHON3" "$@"; }
TREEGEN="$HERE/treegen.py"
TREECMP="$HERE/treecmp.py"

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: test_treecmp.sh needs root" >&2
    exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/prafs-treecmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC="$WORK/src"
COPY="$WORK/copy"
OUT="$WORK/out"
passed=0
failed=0

fail() {
    echo "FAIL: $*" >&2
    failed=$((failed + 1))
}

fresh_copy() {
    rm -rf "$COPY"
    cp -a --sparse=always "$SRC" "$COPY"
}

# Copy the mtime of REL (lstat) from SRC to COPY for each REL: undoes the side effects of a
# mutation on times, so only the intended difference remains.
reset_times() {
    python3 - "$SRC" "$COPY" "$@" <<'EOF'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for rel in sys.argv[3:]:
    a = os.path.join(src, rel) if rel != "." else src
    b = os.path.join(dst, rel) if rel != "." else dst
    st = os.lstat(a)
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
EOF
}

# expect_diff NAME KEYWORD PATH...: treecmp exits 1, every output line names one of PATHs
# ("PATH: ..."), each PATH has a line, and at least one line contains KEYWORD.
expect_diff() {
    local name=$1 keyword=$2
    shift 2
    local rc=0
    timeout 300 python3 "$TREECMP" "$SRC" "$COPY" >"$OUT" 2>"$OUT.err" || rc=$?
    if [[ $rc -ne 1 ]]; then
        fail "$name: treecmp exited $rc, expected 1"; sed 's/^/    /' "$OUT" "$OUT.err" >&2; return
    fi
    local p ok=1
    for p in "$@"; do
        grep -qF -- "$p: " "$OUT" || { fail "$name: no line for '$p'"; ok=0; }
    done
    while IFS= read -r line; do
        local hit=0
        for p in "$@"; do [[ $line == "$p: "* ]] && hit=1; done
        [[ $hit -eq 1 ]] || { fail "$name: unexpected difference: $line"; ok=0; }
    done <"$OUT"
    grep -qF -- "$keyword" "$OUT" || { fail "$name: no line contains '$keyword'"; ok=0; }
    if [[ $ok -eq 1 ]]; then
        passed=$((passed + 1))
        echo "ok   $name: $(head -n1 "$OUT")"
    else
        sed 's/^/    /' "$OUT" >&2
    fi
}

expect_equal() {
    local name=$1
    shift
    local rc=0
    timeout 300 python3 "$TREECMP" "$@" >"$OUT" 2>"$OUT.err" || rc=$?
    if [[ $rc -eq 0 && ! -s $OUT ]]; then
        passed=$((passed + 1))
        echo "ok   $name: equal"
    else
        fail "$name: treecmp exited $rc, expected 0"; sed 's/^/    /' "$OUT" "$OUT.err" >&2
    fi
}

pyexec() { python3 -c "$@"; }

echo "generating the test tree"
timeout 300 python3 "$TREEGEN" "$SRC"

# --- determinism and the equal case ---------------------------------------------------------
timeout 300 python3 "$TREEGEN" "$WORK/src2" >/dev/null
expect_equal "two runs of treegen" "$SRC" "$WORK/src2"
rm -rf "$WORK/src2"

fresh_copy
start=$(date +%s%N)
expect_equal "cp -a --sparse=always copy" "$SRC" "$COPY"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
# The tree holds 1 GiB + 24 MiB of sparse files: reading their holes naively would take seconds.
if [[ $elapsed_ms -gt 20000 ]]; then fail "comparing took ${elapsed_ms} ms: holes read naively?"; fi
expect_equal "single file" "$SRC/sizes/random-1048576" "$COPY/sizes/random-1048576"
expect_equal "single symlink" "$SRC/links/dangling" "$COPY/links/dangling"
expect_equal "subtree" "$SRC/glpi" "$COPY/glpi"

# --- one mutation at a time ------------------------------------------------------------------
fresh_copy
pyexec "
import os
fd = os.open('$COPY/sizes/random-262144', os.O_RDWR)
b = os.pread(fd, 1, 123456)
os.pwrite(fd, bytes([b[0] ^ 0x01]), 123456)
os.close(fd)"
reset_times sizes/random-262144
expect_diff "one byte of content" "content differs at offset 123456" sizes/random-262144

fresh_copy
truncate -s -1 "$COPY/sizes/text-4096.txt"
reset_times sizes/text-4096.txt
expect_diff "size" "size 4096 != 4095" sizes/text-4096.txt

fresh_copy
chmod 0640 "$COPY/modes/mode-0600"
expect_diff "mode" "mode 0600 != 0640" modes/mode-0600

fresh_copy
chmod 0755 "$COPY/modes/setuid-04755"
expect_diff "setuid bit" "mode 4755 != 0755" modes/setuid-04755

fresh_copy
chmod 0777 "$COPY/modes/sticky-01777"
expect_diff "sticky bit on a directory" "mode 1777 != 0777" modes/sticky-01777

fresh_copy
chown 1001 "$COPY/modes/nobody"
expect_diff "uid" "uid 65534 != 1001" modes/nobody

fresh_copy
chown :1001 "$COPY/modes/www-data"
expect_diff "gid" "gid 33 != 1001" modes/www-data

fresh_copy
chown -h 0:0 "$COPY/links/relative"
expect_diff "symlink owner" "uid 1234 != 0" links/relative

fresh_copy
pyexec "
import os
p = '$COPY/names/été'
st = os.lstat(p)
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1))"
expect_diff "mtime +1 ns on a file" "mtime" names/été

fresh_copy
pyexec "
import os
p = '$COPY/glpi'
st = os.lstat(p)
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - 1))"
expect_diff "mtime -1 ns on a directory" "mtime" glpi

fresh_copy
pyexec "
import os
p = '$COPY/links/absolute'
st = os.lstat(p)
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1000), follow_symlinks=False)"
expect_diff "mtime on a symlink" "mtime" links/absolute

fresh_copy
rm "$COPY/links/relative"
ln -s target.tx "$COPY/links/relative"
chown -h 1234:5678 "$COPY/links/relative"
reset_times links/relative links
expect_diff "symlink target" "symlink target" links/relative

fresh_copy
rm "$COPY/special/null-like"
mknod -m 0666 "$COPY/special/null-like" c 1 5
reset_times special/null-like special
expect_diff "device rdev" "rdev 1,3 != 1,5" special/null-like

fresh_copy
rm "$COPY/special/fifo"
: >"$COPY/special/fifo"
chown 33:33 "$COPY/special/fifo"
chmod 0644 "$COPY/special/fifo"
reset_times special/fifo special
expect_diff "file type" "type fifo != file" special/fifo

fresh_copy
setfattr -n user.short -v w "$COPY/xattr/file"
expect_diff "xattr value" "xattr user.short value differs" xattr/file

fresh_copy
setfattr -x user.empty "$COPY/xattr/dir"
expect_diff "xattr removed from a directory" "xattr user.empty only in A" xattr/dir

fresh_copy
setfacl -n -m u:1000:r-x "$COPY/acl/file"
expect_diff "access ACL" "xattr system.posix_acl_access value differs" acl/file

fresh_copy
setfacl -n -d -m u:1000:r-x "$COPY/acl/dir"
expect_diff "default ACL" "xattr system.posix_acl_default value differs" acl/dir

fresh_copy
# break the 3-name group: triple-3 becomes a copy (same bytes, metadata and xattrs)
cp -a "$COPY/hard/two/triple-3" "$COPY/hard/two/triple-3.tmp"
mv -f "$COPY/hard/two/triple-3.tmp" "$COPY/hard/two/triple-3"
reset_times hard/two hard/two/triple-3
expect_diff "broken hardlink" "hardlink group" hard/one/triple hard/one/triple-2 hard/two/triple-3

fresh_copy
# fill 2 MiB of a hole with zeros: same content, but the hole is gone
dd if=/dev/zero of="$COPY/sparse/1GiB-three-blocks" bs=1M seek=100 count=2 conv=notrunc status=none
sync -f "$COPY/sparse/1GiB-three-blocks"
reset_times sparse/1GiB-three-blocks
expect_diff "filled hole" "holes not kept" sparse/1GiB-three-blocks

fresh_copy
# one non-zero byte inside a hole (A's hole must be checked against B's data)
printf 'x' | dd of="$COPY/sparse/1GiB-three-blocks" bs=1 seek=$((700 * 1024 * 1024)) conv=notrunc status=none
reset_times sparse/1GiB-three-blocks
expect_diff "data in a hole" "content differs at offset $((700 * 1024 * 1024))" sparse/1GiB-three-blocks

fresh_copy
printf 'x' | dd of="$COPY/sparse/holes-at-both-ends" bs=1 seek=$((15 * 1024 * 1024)) conv=notrunc status=none
reset_times sparse/holes-at-both-ends
expect_diff "data in a trailing hole" "content differs at offset $((15 * 1024 * 1024))" sparse/holes-at-both-ends

fresh_copy
echo extra >"$COPY/empty/extra"
reset_times empty
expect_diff "extra file" "only in B" empty/extra

fresh_copy
rm "$COPY/names/new"$'\n'"line"
reset_times names
expect_diff "missing file with a newline in its name" "only in A" 'names/new\nline'

fresh_copy
touch "$COPY"
expect_diff "root mtime" "mtime" .
expect_equal "root mtime with --ignore-root-times" --ignore-root-times "$SRC" "$COPY"

fresh_copy
echo extra >"$COPY/empty/extra"
rm -rf "$COPY/glpi/files/_documents/PDF"
reset_times empty glpi/files/_documents
expect_equal "--exclude" --exclude empty/extra --exclude glpi/files/_documents/PDF "$SRC" "$COPY"

rc=0
timeout 60 python3 "$TREECMP" "$SRC" "$WORK/does-not-exist" >/dev/null 2>&1 || rc=$?
if [[ $rc -eq 2 ]]; then passed=$((passed + 1)); echo "ok   missing operand: exit 2"
else fail "missing operand: exit $rc, expected 2"; fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
