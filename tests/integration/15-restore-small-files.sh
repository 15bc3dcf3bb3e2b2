#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Restore of many small files, which the fetch threads create, write and finish (owner, mode,
# xattrs, times) themselves, while the walk creates only hardlinked and multi-chunk files:
#  - a fresh restore gives the exact tree: bytes, holes before and after a file's only data chunk,
#    modes with setuid/setgid, owners, xattrs, hardlinks, one blob in several files, empty files,
#    file and directory mtimes to the nanosecond (a read-only directory's too);
#  - a restore over a changed destination gives the same tree again: files with other bytes, modes
#    or times are replaced, a symlink in the way is replaced and not followed, a fifo in the way is
#    replaced, a hardlink broken apart is a hardlink again;
#  - a one-chunk file whose data fails to verify is reported and absent afterwards, even where an
#    old file was in its way, and everything else is exact;
#  - a destination that fills up (a 20 MiB tmpfs, 40 MiB to restore): the restore stops, says so
#    (no space, where, nothing called unreadable), exits 1, leaves only complete files; once there
#    is room, the same restore completes the tree.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs

SRC="$TMP/src"
python3 - "$SRC" <<'EOF' || fail "cannot generate the source tree"
import os, random, sys
root = sys.argv[1]
rng = random.Random(15)
BASE = 1_600_000_000_123_456_789
MODES = [0o644, 0o400, 0o4755, 0o2750, 0o600, 0o000, 0o1777]
dirs = []
for d in range(6):
    dd = f"{root}/d{d}/sub{d % 2}"
    os.makedirs(dd)
    dirs += [dd, os.path.dirname(dd)]
    for i in range(120):
        p = f"{dd}/f{i:03}"
        with open(p, "wb") as f:
            f.write(rng.randbytes(rng.choice([1, 100, 4096, 20000, 65536])))
        os.chown(p, 1000 + i % 3, 2000 + i % 5)  # before chmod: chown clears setuid
        os.chmod(p, MODES[i % len(MODES)])
        if i % 7 == 0:
            os.setxattr(p, "user.restore-test", f"value {d} {i}".encode())
        ns = BASE + d * 1_000_003_007 + i * 123_456_789 + i
        os.utime(p, ns=(ns, ns))
s = f"{root}/special"
os.makedirs(s)
dirs.append(s)
with open(f"{s}/hole-after", "wb") as f:  # one data chunk, then a hole to the end
    f.write(rng.randbytes(4096))
    f.truncate(8 << 20)
with open(f"{s}/hole-before", "wb") as f:  # a hole, then one data chunk at the end
    f.truncate((4 << 20) - 4096)
    f.seek((4 << 20) - 4096)
    f.write(rng.randbytes(4096))
with open(f"{s}/multi-chunk", "wb") as f:
    f.write(rng.randbytes(5 << 20))
same = rng.randbytes(30000)
for n in ("same-1", "same-2"):  # one blob, two files
    with open(f"{s}/{n}", "wb") as f:
        f.write(same)
open(f"{s}/empty", "wb").close()
os.chmod(f"{s}/empty", 0o751)
os.link(f"{root}/d0/sub0/f001", f"{s}/hardlink-to-d0-f001")  # a one-chunk file with two names
ro = f"{root}/readonly"
os.makedirs(ro)
dirs.append(ro)
for i in range(10):
    with open(f"{ro}/r{i}", "wb") as f:
        f.write(rng.randbytes(1000 + i))
for i, p in enumerate(sorted(os.listdir(s))):
    if not os.path.islink(f"{s}/{p}"):
        ns = BASE + 7 * i + 1
        os.utime(f"{s}/{p}", ns=(ns, ns))
os.chmod(ro, 0o555)
os.setxattr(f"{root}/d1", "user.on-a-dir", b"yes")
dirs.append(root)
for i, d in enumerate(sorted(dirs, key=len, reverse=True)):  # deepest first, as they would be
    ns = BASE + 999_999_937 * (i + 1)
    os.utime(d, ns=(ns, ns))
EOF

restore_small_files() {
    local b=$PRAFS_TEST_BACKEND repo dest idA idB pack packid
    repo=$(make_repo "small-$b")
    dest="$TMP/restore-$b"
    export XDG_CACHE_HOME="$TMP/cache-$b"
    prafs_ok snapshot "$repo" v="$SRC"
    idA=$(snapshot_ids "$repo")

    log "fresh restore"
    prafs_ok restore "$repo" latest "$dest"
    assert_same_tree "$SRC" "$dest/v"

    log "restore over a changed destination"
    echo victim >"$TMP/victim"
    printf 'other bytes' >"$dest/v/d0/sub0/f002"
    chmod 0777 "$dest/v/d0/sub0/f003"
    touch "$dest/v/d0/sub0/f004"
    rm "$dest/v/d1/sub1/f005"
    ln -s "$TMP/victim" "$dest/v/d1/sub1/f005"
    rm "$dest/v/d2/sub0/f006"
    mkfifo "$dest/v/d2/sub0/f006"
    rm "$dest/v/d3/sub1/f007" "$dest/v/special/hole-after"
    cp "$dest/v/d0/sub0/f001" "$dest/v/special/hardlink-to-d0-f001.tmp"
    mv -f "$dest/v/special/hardlink-to-d0-f001.tmp" "$dest/v/special/hardlink-to-d0-f001"
    rm -rf "$XDG_CACHE_HOME"
    prafs_ok restore "$repo" latest "$dest"
    assert_same_tree "$SRC" "$dest/v"
    assert_eq victim "$(cat "$TMP/victim")" "the file a symlink in the way pointed to"

    log "a one-chunk file whose data is damaged"
    local extra="$SRC/d5/only-in-b"
    write_random "$extra" $((200 << 10)) only-in-b
    repo_objects "$repo" data >"$TMP/objs-before"
    prafs_ok snapshot "$repo" v="$SRC"
    idB=$(new_snapshot_id "$repo" "$idA")
    repo_objects "$repo" data >"$TMP/objs-after"
    # the largest new pack holds the new file's only chunk (trees are in packs of their own)
    pack=$(comm -13 <(sort "$TMP/objs-before") <(sort "$TMP/objs-after") | sort -k2,2n | tail -n1 | cut -d' ' -f1)
    [[ -n $pack ]] || fail "the second snapshot added no pack"
    packid=$(basename "$pack")
    flip_byte "$repo" "$pack" >/dev/null
    echo "an old file in the way" >"$dest/v/d5/only-in-b"
    rm -rf "$XDG_CACHE_HOME"
    assert_exit 1 restore "$repo" "${idB:0:16}" "$dest"
    assert_contains "$TMP/err" "${packid:0:8}" "the restore error names the damaged pack"
    assert_contains "$TMP/err" "d5/only-in-b" "the restore error names the file not restored"
    [[ ! -e $dest/v/d5/only-in-b && ! -L $dest/v/d5/only-in-b ]] ||
        fail "d5/only-in-b exists after its data failed to verify: $(head -c 100 "$dest/v/d5/only-in-b" | od -c | head -2)"
    assert_same_tree "$SRC" "$dest/v" --exclude d5/only-in-b
    rm -f "$extra"

    chmod -R u+w "$dest"
    rm -rf "$dest" "$XDG_CACHE_HOME"
}

for_each_backend restore_small_files

log "a destination that fills up"
FULL_MNT=""
trap '[[ -n $FULL_MNT ]] && umount "$FULL_MNT" 2>/dev/null; _lib_cleanup' EXIT
BIG="$TMP/big-src"
mkdir -p "$BIG/sub"
for i in $(seq 1 40); do write_random "$BIG/f$i" 1000000 "full-$i"; done
for i in $(seq 1 200); do echo "small $i" >"$BIG/sub/s$i"; done
export PRAFS_TEST_BACKEND=local
repo=$(make_repo full)
prafs_ok snapshot "$repo" v="$BIG"
FULL_MNT="$TMP/full"
mkdir -p "$FULL_MNT"
mount -t tmpfs -o size=20m tmpfs "$FULL_MNT" || skip "cannot mount a tmpfs"
assert_exit 1 restore "$repo" latest "$FULL_MNT/out"
assert_contains "$TMP/err" "stopped: No space left on device under $FULL_MNT/out" "the restore says it ran out of space, and where"
if grep -q "cannot be read" "$TMP/err"; then
    show_file "$TMP/err"
    fail "files called unreadable when the destination was full"
fi
# what is there is complete and exact
n=0
while IFS= read -r -d '' f; do
    rel=${f#"$FULL_MNT/out/v/"}
    cmp -s "$f" "$BIG/$rel" || fail "$rel is not complete after the restore ran out of space"
    n=$((n + 1))
done < <(find "$FULL_MNT/out/v" -type f -print0)
log "$n of 240 files restored before the space ran out, each complete"
assert_lt "$n" 240 "files restored into 20 MiB"
mount -o remount,size=100m "$FULL_MNT" || fail "cannot grow the tmpfs"
prafs_ok restore "$repo" latest "$FULL_MNT/out"
assert_same_tree "$BIG" "$FULL_MNT/out/v"
umount "$FULL_MNT"
FULL_MNT=""
log "pass"
