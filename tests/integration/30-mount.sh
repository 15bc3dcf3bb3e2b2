#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The FUSE mount, on each backend: the treegen --big tree read back through the mount equals the
# source (bytes, types, modes, owners, times, xattrs, ACLs, hardlink groups, symlinks, holes), and so
# do `cp -a` copies of one file and of whole volumes out of it; the virtual top (snapshots/, latest,
# volumes/, tags/, hosts/, ids/); inode numbers equal in readdir and stat, shared by hardlinks and
# unchanged after the kernel forgets them; two snapshots side by side, one taken while mounted
# showing up within the refresh interval; every kind of write failing with EROFS; four concurrent
# readers of big files; the mount(8) helper convention (daemon mode, -o password_file, umount);
# clean exits on fusermount3 -u, SIGTERM and SIGINT. Prints cold/warm read rates and ls -lR time.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
require_root
require_prafs
[[ -c /dev/fuse ]] || skip "no /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 is needed"
command -v getfattr >/dev/null || skip "getfattr (attr) is needed"

MiB=$((1 << 20))

# ---- mounting, with cleanup that never leaves a mount behind -------------------------------------

mount_cleanup() {
    local mp
    mounts_cleanup
    for mp in "${MOUNTS[@]}"; do
        [[ $mp != /tmp/prafs-mnt.* ]] || rmdir "$mp" 2>/dev/null || true
    done
    if [[ ${HELPER_INSTALLED:-0} -eq 1 ]]; then rm -f /sbin/mount.fuse.prafs; fi
}
trap 'mount_cleanup; _lib_cleanup' EXIT
trap 'exit 130' INT TERM HUP

# expect_erofs WHAT COMMAND...: the command fails saying "Read-only file system".
expect_erofs() {
    local what=$1 out rc=0
    shift
    out=$(timeout 20 "$@" 2>&1) || rc=$?
    [[ $rc -ne 0 ]] || fail "$what succeeded on the mount"
    [[ $out == *"Read-only file system"* ]] || fail "$what: expected 'Read-only file system', got: $out"
}

# ---- the source trees ----------------------------------------------------------------------------

SRC="$TMP/src"
treegen "$SRC" --big
mkdir -p "$TMP/small1" "$TMP/small2" "$TMP/bigs"
echo one >"$TMP/small1/v"
# readable by uid 1000 through its ACL entry only (the mode alone says owner only)
echo secret >"$TMP/small1/acl-only"
chmod 0600 "$TMP/small1/acl-only"
HAVE_ACL=0
if command -v setfacl >/dev/null && command -v setpriv >/dev/null && setfacl -m u:1000:r "$TMP/small1/acl-only"; then HAVE_ACL=1; fi
echo two >"$TMP/small2/v"
echo new >"$TMP/small2/new"
touch -d '2024-01-02 03:04:05.123456789' "$TMP/small1/v" "$TMP/small1/acl-only" "$TMP/small2/v" "$TMP/small2/new" "$TMP/small1" "$TMP/small2"
for i in 1 2 3 4; do write_random "$TMP/bigs/f$i" $((48 * MiB)) "mount-big-$i"; done
(cd "$TMP/bigs" && sha256sum f1 f2 f3 f4) >"$TMP/bigs.sha256"

check_layout() { # MNT LABEL SHORT_ID
    local m=$1 l=$2 id=$3
    [[ -d $m/snapshots/$l/main && -d $m/snapshots/$l/grafana && -d $m/snapshots/$l/small ]] ||
        fail "snapshots/$l does not hold the volumes: $(ls "$m/snapshots/$l" 2>&1)"
    assert_eq "$l" "$(readlink "$m/snapshots/latest")" "snapshots/latest"
    for v in main grafana small; do
        [[ -d $m/volumes/$v/$l ]] || fail "volumes/$v/$l missing: $(ls "$m/volumes/$v" 2>&1)"
        assert_eq "$l" "$(readlink "$m/volumes/$v/latest")" "volumes/$v/latest"
    done
    assert_eq "../../snapshots/$l" "$(readlink "$m/tags/t1/$l")" "tags/t1/$l"
    assert_eq "../../snapshots/$l" "$(readlink "$m/tags/second-tag/$l")" "tags/second-tag/$l"
    assert_eq "../../snapshots/$l" "$(readlink "$m/hosts/test-host/$l")" "hosts/test-host/$l"
    assert_eq "../snapshots/$l" "$(readlink "$m/ids/$id")" "ids/$id"
    [[ -f $m/ids/$id/main/hard/one/triple && -f $m/tags/t1/$l/grafana/grafana.db ]] || fail "links do not resolve"
    assert_eq "hosts ids snapshots tags volumes" "$(ls "$m" | xargs)" "top-level entries"
}

# Inode numbers: readdir (scandir's d_ino) equals lstat's; distinct files have distinct numbers;
# hardlinks share theirs; st_nlink as stored. Prints "path ino" for every entry.
inode_report() { # DIR OUT
    python3 - "$1" "$SRC" >"$2" <<'EOF' || fail "inode check (see above)"
import os, stat, sys
root, src = sys.argv[1], sys.argv[2]
errors, seen = [], {}
for dp, dns, fns in os.walk(root):
    with os.scandir(dp) as it:
        for e in it:
            st = os.lstat(e.path)
            rel = os.path.relpath(e.path, root)
            if e.inode() != st.st_ino:
                errors.append(f"{rel}: readdir ino {e.inode()} != stat ino {st.st_ino}")
            if not stat.S_ISDIR(st.st_mode):
                sst = os.lstat(os.path.join(src, rel))
                if st.st_nlink != sst.st_nlink:
                    errors.append(f"{rel}: st_nlink {st.st_nlink} != {sst.st_nlink}")
                seen.setdefault(st.st_ino, []).append((rel, (sst.st_dev, sst.st_ino)))
            print(rel, st.st_ino)
for ino, paths in seen.items():
    if len({s for _, s in paths}) != 1:
        errors.append(f"inode {ino} shared by different files: {[p for p, _ in paths]}")
links = {}
for ino, paths in seen.items():
    for p, s in paths:
        links.setdefault(s, set()).add(ino)
for s, inos in links.items():
    if len(inos) != 1:
        errors.append(f"one source file under several inode numbers: {sorted(inos)}")
for e in errors[:20]:
    print(e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
}

run_mount() {
    local b=$PRAFS_TEST_BACKEND repo m="$TMP/mnt-$PRAFS_TEST_BACKEND" out="$TMP/out-$PRAFS_TEST_BACKEND"
    export XDG_CACHE_HOME="$TMP/cache-$b"
    rm -rf "$out" "$XDG_CACHE_HOME"
    mkdir -p "$out"
    repo=$(make_repo "mount")
    prafs_ok snapshot "$repo" --tag t1 --tag second-tag --host test-host main="$SRC" grafana="$SRC/grafana" small="$TMP/small1"
    local id1 l1 short1
    id1=$(snapshot_ids "$repo")
    short1=${id1:0:8}

    log "mount (foreground, refresh=2)"
    start_mount "$repo" "$m" "$TMP/mount-$b.log" -o refresh=2
    local pid=$MOUNT_PID
    l1=$(readlink "$m/snapshots/latest") || fail "no snapshots/latest"
    check_layout "$m" "$l1" "$short1"

    log "the tree through the mount equals the source"
    local t0=$SECONDS
    assert_same_tree "$SRC" "$m/snapshots/$l1/main"
    log "treecmp of the main volume (cold): $((SECONDS - t0)) s"
    assert_same_tree "$SRC/grafana" "$m/volumes/grafana/$l1"
    assert_same_tree "$TMP/small1" "$m/snapshots/$l1/small"
    # the ACLs and xattrs are there as stored, and the kernel enforces them (default_permissions)
    [[ -n $(getfattr -h -d -m - "$m/snapshots/$l1/main/acl/file" 2>/dev/null | grep posix_acl_access) ]] ||
        fail "no system.posix_acl_access on main/acl/file"
    # an attribute an entry lacks: ENODATA, except the SELinux label, which (like a filesystem
    # without labels) is "not supported" so that `ls -l` stops asking for it per entry
    local got
    got=$(python3 -c 'import errno, os, sys
for n in ("user.prafs.absent", "security.selinux"):
    try: os.getxattr(sys.argv[1], n, follow_symlinks=False); print("found")
    except OSError as e: print("EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode[e.errno])' \
        "$m/snapshots/$l1/main/acl/file" | paste -sd' ')
    assert_eq "ENODATA EOPNOTSUPP" "$got" "errors for absent attributes"

    log "inode numbers"
    inode_report "$m/snapshots/$l1/main" "$TMP/inos1"
    inode_report "$m/volumes/main/$l1" "$TMP/inos-vol"
    sync
    echo 2 >/proc/sys/vm/drop_caches # the kernel forgets the inodes: the numbers must not change
    inode_report "$m/snapshots/$l1/main" "$TMP/inos2"
    cmp -s "$TMP/inos1" "$TMP/inos2" || { diff "$TMP/inos1" "$TMP/inos2" | head -5 >&2; fail "inode numbers changed after the kernel forgot them"; }
    assert_eq "$(stat -c %i "$m/snapshots/$l1/main/hard/one/triple")" \
        "$(stat -c %i "$m/snapshots/$l1/main/hard/two/triple-3")" "hardlinks share one inode"

    log "cp -a of a file and of whole volumes out of the mount"
    cp -a "$m/snapshots/$l1/main/hard/one/triple" "$out/" || fail "cp -a of one file failed"
    assert_same_tree "$SRC/hard/one/triple" "$out/triple"
    cp -a "$m/snapshots/$l1/main/sparse/1GiB-three-blocks" "$out/" || fail "cp -a of a sparse file failed"
    assert_same_tree "$SRC/sparse/1GiB-three-blocks" "$out/1GiB-three-blocks"
    cp -a "$m/volumes/grafana/$l1" "$out/grafana" || fail "cp -a of the grafana volume failed"
    assert_same_tree "$SRC/grafana" "$out/grafana"
    t0=$SECONDS
    cp -a "$m/snapshots/$l1/main" "$out/main" || fail "cp -a of the main volume failed"
    log "cp -a of the main volume: $((SECONDS - t0)) s"
    assert_same_tree "$SRC" "$out/main"
    rm -rf "$out"

    log "writes of every kind fail with EROFS"
    local d="$m/snapshots/$l1/main"
    expect_erofs "touch of a file" touch "$d/hard/two/pair"
    expect_erofs "creating a file" touch "$d/new-file"
    expect_erofs "mkdir" mkdir "$d/newdir"
    expect_erofs "mkdir in the top" mkdir "$m/snapshots/new"
    expect_erofs "rm" rm -f "$d/hard/two/pair"
    expect_erofs "rmdir" rmdir "$d/xattr/dir"
    expect_erofs "mv" mv "$d/hard/two/pair" "$d/hard/two/pair-moved"
    expect_erofs "chmod" chmod 0777 "$d/hard/two/pair"
    expect_erofs "chown" chown 1:1 "$d/hard/two/pair"
    expect_erofs "setfattr" setfattr -n user.x -v y "$d/hard/two/pair"
    expect_erofs "setfattr -x" setfattr -x user.prafs.test "$d/xattr/file"
    expect_erofs "truncate" truncate -s 0 "$d/hard/two/pair"
    expect_erofs "echo >>" bash -c 'echo more >>"$1"' _ "$d/hard/two/pair"
    expect_erofs "ln" ln "$d/hard/two/pair" "$d/hard/two/pair-3"
    expect_erofs "ln -s" ln -s pair "$d/hard/two/pair-link"
    expect_erofs "mkfifo" mkfifo "$d/fifo-new"
    python3 - "$d/hard/two/pair" <<'EOF' || fail "open for writing did not fail with EROFS"
import errno, os, sys
for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
    try:
        os.close(os.open(sys.argv[1], flags))
        sys.exit(f"open with flags {flags:#o} succeeded")
    except OSError as e:
        if e.errno != errno.EROFS:
            sys.exit(f"open with flags {flags:#o}: {e}")
EOF
    assert_same_tree "$SRC/hard" "$d/hard"

    log "a snapshot taken while mounted appears within the refresh interval"
    # listed before: the kernel keeps these listings, and must list them again once they change
    local before_snaps before_small
    before_snaps=$(ls "$m/snapshots" | xargs)
    before_small=$(ls "$m/volumes/small" | xargs)
    prafs_ok snapshot "$repo" --tag t2 --host test-host small="$TMP/small2" bigs="$TMP/bigs"
    local id2 l2="" i
    id2=$(new_snapshot_id "$repo" "$id1")
    for ((i = 0; i < 150; i++)); do
        [[ -L $m/ids/${id2:0:8} ]] && break
        sleep 0.2
    done
    [[ -L $m/ids/${id2:0:8} ]] || fail "the new snapshot did not appear within 30 s (refresh=2)"
    l2=$(readlink "$m/ids/${id2:0:8}")
    l2=${l2#../snapshots/}
    # `latest` moved: a new link, which the kernel sees once its 1 s entry timeout has passed
    for ((i = 0; i < 50; i++)); do
        [[ $(readlink "$m/snapshots/latest") == "$l2" && $(readlink "$m/volumes/small/latest") == "$l2" ]] && break
        sleep 0.2
    done
    assert_eq "$l2" "$(readlink "$m/snapshots/latest")" "snapshots/latest after the new snapshot"
    assert_eq "$l2" "$(readlink "$m/volumes/small/latest")" "volumes/small/latest"
    assert_eq "$l1" "$(readlink "$m/volumes/main/latest")" "volumes/main/latest (not in the new snapshot)"
    assert_eq "$l2" "$(ls "$m/tags/t2" | xargs)" "tags/t2"
    # the listings read before the snapshot: the new one in them (within the 1 s attribute timeout)
    for ((i = 0; i < 50; i++)); do
        [[ $(ls "$m/snapshots" | xargs) == *"$l2"* && $(ls "$m/volumes/small" | xargs) == *"$l2"* ]] && break
        sleep 0.2
    done
    # shellcheck disable=SC2086 # word lists
    assert_eq "$(printf '%s\n' $before_snaps "$l2" | sort | xargs)" "$(ls "$m/snapshots" | sort | xargs)" \
        "snapshots/ listed again after the new snapshot"
    # shellcheck disable=SC2086
    assert_eq "$(printf '%s\n' $before_small "$l2" | sort | xargs)" "$(ls "$m/volumes/small" | sort | xargs)" \
        "volumes/small/ listed again after the new snapshot"
    log "two snapshots side by side"
    assert_eq "one" "$(cat "$m/snapshots/$l1/small/v")" "the first snapshot's small/v"
    assert_eq "two" "$(cat "$m/snapshots/$l2/small/v")" "the second snapshot's small/v"
    [[ ! -e $m/snapshots/$l1/small/new && -f $m/snapshots/$l2/small/new ]] || fail "small/new in the wrong snapshot"
    assert_same_tree "$TMP/small2" "$m/volumes/small/$l2"
    assert_same_tree "$TMP/small1" "$m/volumes/small/$l1"

    log "four concurrent readers of different big files"
    local pids=() k
    for k in 1 2 3 4; do
        (cd "$m/snapshots/$l2/bigs" && timeout 300 sha256sum "f$k") >"$TMP/sum$k" 2>&1 &
        pids+=($!)
    done
    for k in 0 1 2 3; do wait "${pids[$k]}" || fail "reader $((k + 1)) failed: $(cat "$TMP/sum$((k + 1))")"; done
    cat "$TMP/sum1" "$TMP/sum2" "$TMP/sum3" "$TMP/sum4" >"$TMP/sums"
    cmp -s "$TMP/bigs.sha256" "$TMP/sums" || { cat "$TMP/sums" >&2; fail "concurrent readers got wrong bytes"; }

    log "figures"
    local big="$m/snapshots/$l1/main/big/random-300MiB" s e
    sync
    echo 3 >/proc/sys/vm/drop_caches
    s=$(date +%s.%N)
    timeout 300 cat "$big" >/dev/null || fail "cat of the 300 MiB file failed"
    e=$(date +%s.%N)
    log "cat of 300 MiB (after the treecmp, page cache dropped): $(python3 -c "print(f'{300*1.048576/($e-$s):.0f}')") MB/s"
    s=$(date +%s.%N)
    timeout 300 cat "$big" >/dev/null || fail "warm cat failed"
    e=$(date +%s.%N)
    log "cat of 300 MiB, warm (page cache): $(python3 -c "print(f'{300*1.048576/($e-$s):.0f}')") MB/s"
    s=$(date +%s.%N)
    timeout 300 ls -lR "$m/snapshots/$l1" >/dev/null || fail "ls -lR failed"
    e=$(date +%s.%N)
    log "ls -lR of a snapshot ($(wc -l <"$TMP/inos1") entries): $(python3 -c "print(f'{$e-$s:.2f}')") s"

    log "fusermount3 -u: clean exit"
    stop_mount "$m" "$pid" "$TMP/mount-$b.log"

    log "mount(8) helper convention: daemon mode, options after the positionals, -o password_file"
    local helper="$TMP/mount.fuse.prafs" mh="$TMP/mnt-helper-$b"
    printf '#!/bin/sh\nexec "%s" mount "$@"\n' "$PRAFS" >"$helper"
    chmod 0755 "$helper"
    printf '%s\n' "$PRAFS_PASSWORD" >"$TMP/password"
    chmod 0600 "$TMP/password"
    mkdir -p "$mh"
    MOUNTS+=("$mh")
    env -u PRAFS_PASSWORD timeout 60 "$helper" "$repo" "$mh" -o "rw,nosuid,nodev,noauto,_netdev,refresh=5,password_file=$TMP/password,log=$TMP/helper-$b.log" -t fuse.prafs ||
        { show_file "$TMP/helper-$b.log"; fail "the mount helper failed"; }
    wait_mounted "$mh" "" "$TMP/helper-$b.log"
    grep -qs " $mh fuse.prafs ro," /proc/mounts || fail "the mount is not listed as fuse.prafs ro: $(grep " $mh " /proc/mounts)"
    assert_eq "two" "$(cat "$mh/snapshots/$l2/small/v")" "reading through the helper's mount"
    local dpid="" p
    for p in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF " mount $repo $mh "; then dpid=${p#/proc/}; fi
    done
    [[ -n $dpid ]] || fail "the background prafs process was not found"
    timeout 30 umount "$mh" || fail "umount $mh failed"
    wait_gone "$dpid" 20 || fail "the background prafs (pid $dpid) did not exit after umount"
    ! is_mounted "$mh" || fail "$mh still mounted after umount"

    if [[ ! -e /sbin/mount.fuse.prafs && -d /sbin && -w /sbin ]] && command -v mount >/dev/null; then
        log "mount -t fuse.prafs through /sbin/mount.fuse.prafs (installed for the test, removed after)"
        # shellcheck disable=SC2016
        printf '#!/bin/sh\n# prafs mount helper: mount -t fuse.prafs REPO DIR -o OPTS\nexec "${PRAFS_BIN:-prafs}" mount "$@"\n' >/sbin/mount.fuse.prafs
        chmod 0755 /sbin/mount.fuse.prafs
        HELPER_INSTALLED=1
        PRAFS_BIN=$PRAFS timeout 60 mount -t fuse.prafs -o "refresh=5,log=$TMP/mount8-$b.log" "$repo" "$mh" ||
            { show_file "$TMP/mount8-$b.log"; fail "mount -t fuse.prafs failed"; }
        wait_mounted "$mh" "" "$TMP/mount8-$b.log"
        assert_eq "one" "$(cat "$mh/volumes/small/$l1/v")" "reading through mount -t fuse.prafs"
        timeout 30 umount "$mh" || fail "umount $mh failed"
        rm -f /sbin/mount.fuse.prafs
        HELPER_INSTALLED=0
    fi

    log "SIGTERM and SIGINT: clean exit, nothing left mounted; allow_other and ACLs enforced"
    local um
    um=$(mktemp -d /tmp/prafs-mnt.XXXXXX)
    chmod 0755 "$um"
    MOUNTS+=("$um")
    start_mount "$repo" "$um" "$TMP/mount-$b-term.log" -o allow_other
    [[ -d $um/snapshots/$l1 ]] || fail "second mount is empty"
    if [[ $HAVE_ACL -eq 1 ]]; then
        local f="$um/snapshots/$l1/small/acl-only"
        assert_eq "secret" "$(setpriv --reuid=1000 --regid=1000 --clear-groups cat "$f" 2>&1)" "uid 1000 reading through its ACL entry"
        local rc=0 err
        err=$(setpriv --reuid=2000 --regid=2000 --clear-groups cat "$f" 2>&1) || rc=$?
        [[ $rc -ne 0 && $err == *"Permission denied"* ]] || fail "uid 2000 could read a file its mode and ACL deny: $err"
    fi
    stop_mount "$um" "$MOUNT_PID" "$TMP/mount-$b-term.log" TERM
    rmdir "$um"
    start_mount "$repo" "$m" "$TMP/mount-$b-int.log"
    cat "$m/snapshots/$l2/small/v" >/dev/null

    log "a second mount on a mount point that has one is refused (no stacked daemons)"
    assert_exit 1 mount "$repo" "$m"
    assert_contains "$TMP/err" "$m has a prafs mount already; 'fusermount3 -u \"$m\"' unmounts it" "the refusal"
    assert_eq 1 "$(grep -c " $m fuse" /proc/mounts)" "mounts on $m after the refused second mount"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-int.log" INT

    log "a mount whose process was killed: named as such, with the command that removes it"
    start_mount "$repo" "$m" "$TMP/mount-$b-kill.log"
    kill -KILL "$MOUNT_PID"
    wait_gone "$MOUNT_PID" 20 || fail "the mount process outlived SIGKILL"
    wait "$MOUNT_PID" 2>/dev/null || true
    is_mounted "$m" || fail "the killed mount's file system is gone by itself (nothing to test)"
    assert_exit 1 mount "$repo" "$m"
    assert_contains "$TMP/err" "has no process any more; 'fusermount3 -u \"$m\"' removes it" "a dead mount named"
    timeout 30 fusermount3 -u "$m" || fail "fusermount3 -u of the dead mount failed"
    start_mount "$repo" "$m" "$TMP/mount-$b-again.log"
    cat "$m/snapshots/$l2/small/v" >/dev/null || fail "no reads through the mount made after the dead one"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-again.log"

    log "a snapshot forgotten while mounted leaves the listings the kernel keeps"
    start_mount "$repo" "$m" "$TMP/mount-$b-forget.log" -o refresh=1
    assert_eq "$(printf '%s\n' "$l1" "$l2" latest | sort | xargs)" "$(ls "$m/snapshots" | sort | xargs)" "snapshots/ before forget"
    prafs_ok forget "$repo" --tag t1 --keep-tag no-such-tag
    for ((i = 0; i < 50; i++)); do
        [[ $(ls "$m/snapshots" | xargs) != *"$l1"* ]] && break
        sleep 0.2
    done
    assert_eq "$(printf '%s\n' "$l2" latest | sort | xargs)" "$(ls "$m/snapshots" | sort | xargs)" "snapshots/ after forget"
    [[ ! -e $m/snapshots/$l1 ]] || fail "snapshots/$l1 still there after forget"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-forget.log"

    log "a repository without xattrs: the kernel is told so once, and answers every later lookup itself"
    local plain
    plain=$(make_repo noxattr)
    prafs_ok snapshot "$plain" v="$TMP/small2"
    # 3 entries x (ACL, SELinux label, a user attribute, the list): "no data" or "not supported"
    local probe='import errno, os, sys
seen = set()
for p in sys.argv[1:]:
    for n in ("system.posix_acl_access", "security.selinux", "user.x", None):
        try:
            os.listxattr(p) if n is None else os.getxattr(p, n)
            seen.add("found")
        except OSError as e:
            seen.add("EOPNOTSUPP" if e.errno == errno.EOPNOTSUPP else errno.errorcode[e.errno])
print(" ".join(sorted(seen)))'
    local d="$m/snapshots/latest/v"
    start_mount "$plain" "$m" "$TMP/mount-$b-noxattr.log" -d
    [[ $(python3 -c "$probe" "$d" "$d/v" "$d/new") != *found* ]] || fail "an attribute found in a repository without any"
    assert_same_tree "$TMP/small2" "$d"
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-noxattr.log"
    assert_le "$(grep -c 'opcode: GETXATTR' "$TMP/mount-$b-noxattr.log")" 1 "GETXATTR requests without xattrs"
    assert_le "$(grep -c 'opcode: LISTXATTR' "$TMP/mount-$b-noxattr.log")" 1 "LISTXATTR requests without xattrs"
    # with -o acl the requests come through (the kernel asks for each entry's ACL once)
    start_mount "$plain" "$m" "$TMP/mount-$b-acl.log" -d -o acl
    python3 -c "$probe" "$d" "$d/v" "$d/new" >/dev/null
    stop_mount "$m" "$MOUNT_PID" "$TMP/mount-$b-acl.log"
    assert_le 3 "$(grep -c 'opcode: GETXATTR' "$TMP/mount-$b-acl.log")" "GETXATTR requests with -o acl"
    rm -rf "$XDG_CACHE_HOME"
}

for_each_backend run_mount
log "pass"
